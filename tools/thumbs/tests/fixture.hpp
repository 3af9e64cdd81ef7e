// Test images for pools-thumbs' tests: a temporary directory and a tree of
// generated images (gradients of several sizes and aspect ratios, JPEG, PNG,
// WebP), a corrupt file, a truncated one and a text file.
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "thumbnail.hpp"

namespace thumbs_test {

namespace fs = std::filesystem;

/// A fresh directory, removed with everything in it at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "pools-thumbs-test.XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

/// The good images of the fixture: relative path -> width, height.
inline const std::map<std::string, std::pair<int, int>>& good_images() {
  static const std::map<std::string, std::pair<int, int>> images = {
      {"wide.jpg", {640, 200}},   {"tall.png", {150, 400}},          {"square.jpg", {300, 300}},
      {"tiny.png", {40, 20}},     {"sub/deep/photo.webp", {500, 375}}, {"sub/upper.JPG", {320, 240}},
  };
  return images;
}

/// The images that must fail: relative path -> what the reason contains.
inline const std::map<std::string, std::string>& bad_images() {
  static const std::map<std::string, std::string> images = {
      {"corrupt.jpg", "cannot decode"},
      {"truncated.jpg", "cannot decode"},
  };
  return images;
}

inline void write_file(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Writes the fixture into `dir`: good_images(), bad_images() and notes.txt.
inline void make_fixture(const fs::path& dir) {
  int seed = 1;
  for (const auto& [name, size] : good_images()) {
    fs::create_directories((dir / name).parent_path());
    pools_thumbs::write_test_image((dir / name).string(), size.first, size.second, seed++);
  }
  // Bytes that no decoder recognizes (a fixed pattern: deterministic).
  std::string garbage(4096, '\0');
  for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>((i * 7919 + 13) % 251);
  write_file(dir / "corrupt.jpg", garbage);
  // A real JPEG cut off after 40% of its bytes.
  pools_thumbs::write_test_image((dir / ".whole.jpg").string(), 400, 300, 99, true);
  std::string whole = read_file(dir / ".whole.jpg");
  fs::remove(dir / ".whole.jpg");
  write_file(dir / "truncated.jpg", whole.substr(0, whole.size() * 2 / 5));
  write_file(dir / "notes.txt", "not an image\n");
}

/// The thumbnail size expected for a `w` x `h` image at `size`: the longest
/// side is `size`, the other keeps the aspect ratio (libvips rounds).
inline std::pair<int, int> expected_size(int w, int h, int size) {
  if (w >= h) return {size, std::max(1, static_cast<int>(static_cast<double>(h) * size / w + 0.5))};
  return {std::max(1, static_cast<int>(static_cast<double>(w) * size / h + 0.5)), size};
}

/// Every regular file under `dir`, relative, sorted.
inline std::vector<std::string> files_under(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path().lexically_relative(dir).generic_string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace thumbs_test
