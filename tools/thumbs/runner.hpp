// Fans the thumbnails of a scanned directory out over a pool, and the summary.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include <pools/pools.hpp>

#include "scan.hpp"

namespace pools_thumbs {

struct Settings {
  int size = 256;
  std::string format = "jpg";
  int quality = 80;
};

struct Failure {
  std::string relative;  // the image, relative to the input directory
  std::string reason;
};

struct Outcome {
  std::size_t succeeded = 0;
  std::vector<Failure> failures;  // in the order of the images
  std::chrono::nanoseconds wall{0};
};

/// Called on the runner's thread after each image: done (failed included),
/// failed, running.
using OnProgress = std::function<void(std::size_t, std::size_t, std::size_t)>;

/// The pool of `kind` (thread, multiprocess, process, serial) named
/// "pools-thumbs-KIND" with `workers` workers; multiprocess workers start libvips
/// in their initializer. Throws pools::Error.
pools::PoolBase& thumbnail_pool(const std::string& kind, std::size_t workers);

/// The `vips` program the process kind runs, found on PATH, or empty.
std::string find_vips_program();

/// Makes the thumbnails of `images` on `pool`, keeping about four images per
/// worker in flight, and returns what happened to each. Every image is
/// counted: one whose output directory cannot be made, whose thumbnail would
/// overwrite an input, that fails to decode, or whose worker process dies, is
/// a failure with its reason, and the others go on. Functions run
/// make_thumbnail (only paths cross to a multiprocess worker); a process pool
/// runs `vips thumbnail` per image instead (`vips_program`). Blocks; throws
/// only what the pool's add_task throws (a pool that was shut down).
Outcome make_thumbnails(pools::PoolBase& pool, const std::vector<Image>& images, const Settings& settings,
                        const OnProgress& on_progress = {}, const std::string& vips_program = "vips");

/// The summary pools-thumbs prints:
///   pools-thumbs: thread pool, 2 workers, 256 px jpg
///   images: 12
///   succeeded: 10
///   failed: 2
///     bad.jpg: cannot decode: ...
///   skipped: 1
///   wall time: 1.234 s
///   images per second: 9.7
std::string summary_text(const std::string& pool_description, const Settings& settings, const Scan& scan,
                         const Outcome& outcome);

}  // namespace pools_thumbs
