// pools-thumbs: a thumbnail of every image in a directory, made on a pools
// pool with libvips. See docs/thumbnails.md.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <pools/pools.hpp>

#include "pools_config.h"

#include "options.hpp"
#include "progress_view.hpp"
#include "runner.hpp"
#include "scan.hpp"
#include "thumbnail.hpp"

namespace fs = std::filesystem;

namespace {

using namespace pools_thumbs;

int run(int argc, char** argv) {
  std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  Options o = parse_options(std::vector<std::string>(argv + 1, argv + argc), cores);
  if (o.help) {
    fmt::print("{}", usage_text());
    return 0;
  }
  if (o.version) {
    fmt::print("pools-thumbs (pools) {}, libvips {}\n", POOLS_VERSION, vips_version_text());
    return 0;
  }
  std::error_code ec;
  if (!fs::is_directory(o.input_dir, ec)) throw UsageError(o.input_dir + ": not a directory");
  if (fs::exists(o.output_dir, ec) && fs::equivalent(o.input_dir, o.output_dir, ec))
    throw UsageError("OUTPUT_DIR is INPUT_DIR: the thumbnails would replace the images");
  std::string vips_program;
  if (o.pool == "process") {
    vips_program = find_vips_program();
    if (vips_program.empty())
      throw UsageError("--pool process runs the `vips` command, which is not on PATH "
                       "(Debian package libvips-tools)");
  } else {
    init_vips();  // before the first image: a libvips that cannot start stops here
  }

  Scan scan = scan_directory(o.input_dir, o.output_dir, o.format);
  for (const auto& s : scan.skipped) fmt::print(stderr, "pools-thumbs: skipped {}: {}\n", s.relative, s.why);

  pools::PoolBase& pool = thumbnail_pool(o.pool, o.jobs);
  Settings settings{o.size, o.format, o.quality};
  ProgressView progress(o.bar, scan.images.size(), stderr);
  Outcome outcome = make_thumbnails(
      pool, scan.images, settings,
      [&](std::size_t done, std::size_t failed, std::size_t running) { progress.update(done, failed, running); },
      vips_program);
  progress.finish();

  std::string where = o.pool == "serial" ? "serial pool"
                                         : fmt::format("{} pool, {} workers", o.pool, pool.num_workers());
  fmt::print("{}", summary_text(where, settings, scan, outcome));
  return outcome.failures.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  pools::init(argc, argv);  // first: forks the multiprocess pool's fork server while single-threaded
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    fmt::print(stderr, "pools-thumbs: {}\nUsage: pools-thumbs [OPTIONS] INPUT_DIR OUTPUT_DIR (see --help)\n",
               e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "pools-thumbs: {}\n", e.what());
    return 2;
  }
}
