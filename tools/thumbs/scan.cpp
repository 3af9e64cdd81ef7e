#include "scan.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

namespace fs = std::filesystem;

namespace pools_thumbs {

bool has_image_suffix(const fs::path& name) {
  static constexpr std::array<std::string_view, 20> suffixes = {
      ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".tif", ".tiff", ".heic",
      ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".bmp", ".pnm", ".ppm", ".pgm", ".pbm"};
  std::string ext = name.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::find(suffixes.begin(), suffixes.end(), ext) != suffixes.end();
}

namespace {

struct Walker {
  fs::path root;
  fs::path skip_dir;  // the output directory, when inside the input one
  Scan scan;

  std::string relative(const fs::path& p) const { return p.lexically_relative(root).generic_string(); }

  void walk(const fs::path& dir) {
    std::error_code ec;
    std::vector<fs::directory_entry> entries;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      entries.push_back(*it);
    if (ec) {
      if (dir == root) throw std::runtime_error(fmt::format("cannot read {}: {}", dir.string(), ec.message()));
      scan.skipped.push_back({relative(dir) + "/", "cannot read the directory: " + ec.message()});
      return;
    }
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.path().filename() < b.path().filename(); });
    for (const auto& e : entries) {
      const fs::path& p = e.path();
      bool is_link = e.is_symlink(ec);
      if (e.is_directory(ec)) {
        if (is_link)
          scan.skipped.push_back({relative(p) + "/", "a symbolic link to a directory (not followed)"});
        else if (!skip_dir.empty() && fs::equivalent(p, skip_dir, ec))
          continue;  // the output directory itself
        else
          walk(p);
      } else if (!e.is_regular_file(ec)) {
        scan.skipped.push_back({relative(p), is_link ? "a broken symbolic link" : "not a regular file"});
      } else if (!has_image_suffix(p.filename())) {
        std::string ext = p.extension().string();
        scan.skipped.push_back(
            {relative(p), ext.empty() ? "not an image (no suffix)" : "not an image (" + ext + ")"});
      } else {
        scan.images.push_back({relative(p), p.string(), {}});
      }
    }
  }
};

}  // namespace

Scan scan_directory(const fs::path& input_dir, const fs::path& output_dir, const std::string& format) {
  Walker w;
  w.root = input_dir;
  std::error_code ec;
  if (fs::is_directory(output_dir, ec)) w.skip_dir = output_dir;
  w.walk(input_dir);

  // The thumbnail names, and the names two images would share.
  auto short_name = [&](const Image& im) {
    return fs::path(im.relative).replace_extension(format).generic_string();
  };
  std::map<std::string, int> uses;
  for (const auto& im : w.scan.images) ++uses[short_name(im)];
  for (auto& im : w.scan.images) {
    std::string name = short_name(im);
    if (uses[name] > 1) name = im.relative + "." + format;
    im.output = (output_dir / name).string();
  }
  return std::move(w.scan);
}

}  // namespace pools_thumbs
