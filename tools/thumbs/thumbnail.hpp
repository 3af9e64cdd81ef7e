// One image to one thumbnail with libvips, and the images that tests and the benchmark make.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace pools_thumbs {

/// One thumbnail to make. Crosses to a multiprocess worker as it is: paths and
/// settings, never pixels.
struct ThumbJob {
  std::string input;   // the image
  std::string output;  // the thumbnail; its directory exists
  int size = 256;      // the longest side of the thumbnail, in pixels
  std::string format = "jpg";  // jpg, png or webp
  int quality = 80;            // jpg and webp

  template <class Archive>
  void serialize(Archive& ar) {
    ar(input, output, size, format, quality);
  }
};

/// What became of a ThumbJob. Small on purpose: this is what comes back from a
/// worker process.
struct ThumbResult {
  std::string input, output;
  int width = 0, height = 0;  // of the thumbnail
  std::uint64_t bytes = 0;    // of the thumbnail file
  std::string error;          // empty: the thumbnail was written

  bool ok() const noexcept { return error.empty(); }
  template <class Archive>
  void serialize(Archive& ar) {
    ar(input, output, width, height, bytes, error);
  }
};

/// Sets libvips up once per process: its own threads off (one image per pool
/// worker: the pool is the parallelism), its operation cache off (every file is
/// read once; a cache would only hold memory and descriptors), its warnings
/// silenced (a truncated image fails with an error instead). Thread-safe;
/// throws std::runtime_error when libvips cannot start.
void init_vips();

/// "8.14.1": the version of libvips in use.
std::string vips_version_text();

/// A multiprocess pool's initializer: init_vips() in each worker.
void init_vips_in_worker();

/// Decodes job.input, shrinks it so that its longest side is job.size (keeping
/// the aspect ratio, upscaling small images), encodes it to a temporary name
/// beside job.output and renames it into place, so that a failure leaves no
/// partial file. Never throws: a failure is in the result's error, and says
/// what went wrong ("cannot decode: ...", "cannot write ...").
///
/// Test hook: when the environment variable POOLS_THUMBS_TEST_CRASH is set and
/// job.input contains its value, the process dies of SIGSEGV, as a decoder
/// crashing on a hostile file would.
ThumbResult make_thumbnail(ThumbJob job);

/// Where make_thumbnail writes before renaming: ".part-NAME" beside `output`
/// (same suffix, so that savers chosen by suffix pick the same format).
std::string partial_path(const std::string& output);

/// The width and height in an image file's header (without decoding its
/// pixels), or nothing when the file is not a readable image.
std::optional<std::pair<int, int>> image_size(const std::string& path);

/// Writes a width x height test image to `path`, in the format of its suffix
/// (.jpg, .png, .webp, ...): colour gradients, plus noise when `noise` (which
/// makes it compress like a photograph). The same arguments make the same
/// image. Throws std::runtime_error with libvips's message on failure.
void write_test_image(const std::string& path, int width, int height, int seed, bool noise = false);

}  // namespace pools_thumbs
