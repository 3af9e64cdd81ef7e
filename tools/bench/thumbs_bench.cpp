// Thumbnails on the thread pool against the multiprocess pool (and, with
// --with-process, the process pool running `vips thumbnail` per image): a few
// hundred generated 1-4 megapixel JPEGs, the same -j, alternating rounds,
// medians and their ratio. See docs/performance.md, "Thumbnails".
//   thumbs_bench [--images 300] [--rounds 5] [-j N] [--size 256] [--dir DIR] [--with-process]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <pools/pools.hpp>

#include "runner.hpp"
#include "scan.hpp"
#include "thumbnail.hpp"

namespace fs = std::filesystem;
using namespace pools_thumbs;

namespace {

struct Args {
  int images = 300, rounds = 5, size = 256;
  std::size_t jobs = std::max(1u, std::thread::hardware_concurrency());
  std::string dir;
  bool with_process = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) throw std::runtime_error(arg + ": needs a value");
      return std::string(argv[++i]);
    };
    if (arg == "--images") a.images = std::stoi(value());
    else if (arg == "--rounds") a.rounds = std::stoi(value());
    else if (arg == "-j") a.jobs = std::stoul(value());
    else if (arg == "--size") a.size = std::stoi(value());
    else if (arg == "--dir") a.dir = value();
    else if (arg == "--with-process") a.with_process = true;
    else throw std::runtime_error(arg + ": unknown option");
  }
  if (a.dir.empty()) a.dir = (fs::temp_directory_path() / fmt::format("pools-thumbs-bench-{}", a.images)).string();
  return a;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Image i: 1 to 4 megapixels, five aspect ratios, noisy gradients (they
// compress like photographs). Made once; a marker file says the set is whole.
void generate(const Args& a) {
  fs::path marker = fs::path(a.dir) / ".complete";
  if (fs::exists(marker)) {
    fmt::print("images: reusing {} ({} JPEGs)\n", a.dir, a.images);
    return;
  }
  fs::create_directories(a.dir);
  constexpr double aspects[] = {4.0 / 3, 3.0 / 2, 16.0 / 9, 1.0, 3.0 / 4};
  auto start = std::chrono::steady_clock::now();
  pools::PoolBase& pool = pools::get_thread_pool("thumbs-bench-generate", a.jobs);
  std::vector<pools::Task<void>> tasks;
  for (int i = 0; i < a.images; ++i) {
    double megapixels = 1.0 + 3.0 * (i % 7) / 6.0;
    double aspect = aspects[i % 5];
    int w = static_cast<int>(std::sqrt(megapixels * 1e6 * aspect));
    int h = static_cast<int>(megapixels * 1e6 / w);
    std::string path = (fs::path(a.dir) / fmt::format("img{:04}.jpg", i)).string();
    tasks.push_back(pool.add_task("generate", write_test_image, path, w, h, i, true));
  }
  pools::wait_all(tasks);
  std::ofstream(marker) << "complete\n";
  fmt::print("images: generated {} JPEGs of 1-4 megapixels in {} in {:.1f} s\n", a.images, a.dir,
             seconds_since(start));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct Contender {
  std::string label;
  pools::PoolBase* pool;
  std::vector<double> times;
};

}  // namespace

int main(int argc, char** argv) {
  pools::init(argc, argv);
  try {
    Args a = parse(argc, argv);
    init_vips();
    generate(a);
    fs::path out = fs::path(a.dir).parent_path() / (fs::path(a.dir).filename().string() + "-out");
    Scan scan = scan_directory(a.dir, out, "jpg");
    Settings settings{a.size, "jpg", 80};
    std::string vips = find_vips_program();

    std::vector<Contender> contenders = {{"thread", &thumbnail_pool("thread", a.jobs), {}},
                                         {"multiprocess", &thumbnail_pool("multiprocess", a.jobs), {}}};
    if (a.with_process) {
      if (vips.empty()) throw std::runtime_error("--with-process: the vips command is not on PATH");
      contenders.push_back({"process (vips thumbnail)", &thumbnail_pool("process", a.jobs), {}});
    }
    auto run = [&](Contender& c, const std::vector<Image>& images) {
      fs::remove_all(out);
      auto start = std::chrono::steady_clock::now();
      Outcome o = make_thumbnails(*c.pool, images, settings, {}, vips);
      double s = seconds_since(start);
      if (!o.failures.empty())
        throw std::runtime_error(fmt::format("{}: {} failed: {}", c.label, o.failures[0].relative, o.failures[0].reason));
      return s;
    };
    // Warm-up, not timed: starts the workers (libvips in each) on a few images.
    std::vector<Image> few(scan.images.begin(), scan.images.begin() + std::min<std::size_t>(scan.images.size(), 4 * a.jobs));
    for (auto& c : contenders) run(c, few);

    fmt::print("{} images -> {} px JPEG, -j {}, {} rounds, alternating order\n", scan.images.size(), a.size,
               a.jobs, a.rounds);
    for (int r = 0; r < a.rounds; ++r) {
      std::string line = fmt::format("round {}:", r + 1);
      for (std::size_t k = 0; k < contenders.size(); ++k) {
        auto& c = contenders[(k + r) % contenders.size()];  // each goes first in turn
        c.times.push_back(run(c, scan.images));
        line += fmt::format("  {} {:.2f} s", c.label, c.times.back());
      }
      fmt::print("{}\n", line);
      std::fflush(stdout);
    }
    // Two ratios to the thread pool: of the medians, and the median of the
    // rounds' ratios (each round's contenders ran back to back).
    double base = median(contenders[0].times);
    for (const auto& c : contenders) {
      double m = median(c.times);
      std::vector<double> ratios;
      for (std::size_t r = 0; r < c.times.size(); ++r) ratios.push_back(c.times[r] / contenders[0].times[r]);
      fmt::print("{:<26} median {:6.2f} s  {:6.1f} images/s  time / thread pool's: {:.2f} (medians), {:.2f} "
                 "(median of the rounds' ratios)\n",
                 c.label, m, scan.images.size() / m, m / base, median(ratios));
    }
    fs::remove_all(out);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "thumbs_bench: {}\n", e.what());
    return 1;
  }
}
