#include "thumbnail.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>
#include <vips/vips.h>

namespace pools_thumbs {

namespace {

struct Unref {
  void operator()(VipsImage* image) const noexcept { g_object_unref(image); }
};
using ImagePtr = std::unique_ptr<VipsImage, Unref>;

// libvips keeps one error buffer per process, not per thread: when two images
// fail at once on the thread pool, one may take both messages and the other
// none (the multiprocess pool has a buffer per worker and never mixes them).
std::string take_vips_error() {
  char* copy = vips_error_buffer_copy();  // also clears the buffer
  std::string text;
  for (const char* c = copy; c && *c; ++c) {
    if (*c != '\n') text += *c;
    else if (c[1]) text += "; ";
  }
  g_free(copy);
  if (text.empty())
    return "libvips gave no message (another image that failed at the same time may have "
           "taken it: libvips has one error buffer per process)";
  return text;
}

void drop_log(const gchar*, GLogLevelFlags, const gchar*, gpointer) {}

std::once_flag vips_once;

}  // namespace

void init_vips() {
  std::call_once(vips_once, [] {
    if (VIPS_INIT("pools-thumbs") != 0)
      throw std::runtime_error("cannot start libvips: " + take_vips_error());
    // One thread per image: the pool runs images side by side, and vips's own
    // threads would only compete with the pool's workers for the cores.
    vips_concurrency_set(1);
    vips_cache_set_max(0);
    // "error in tile" and the like, printed from vips's threads, would tear the
    // progress bar; the error that fails the image says the same.
    g_log_set_handler("VIPS", static_cast<GLogLevelFlags>(G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE),
                      drop_log, nullptr);
  });
}

void init_vips_in_worker() { init_vips(); }

std::string vips_version_text() { return vips_version_string(); }

std::string partial_path(const std::string& output) {
  std::filesystem::path p(output);
  return (p.parent_path() / (".part-" + p.filename().string())).string();
}

namespace {

int save(VipsImage* image, const std::string& path, const ThumbJob& job) {
  if (job.format == "png") return vips_pngsave(image, path.c_str(), "strip", TRUE, nullptr);
  if (job.format == "webp")
    return vips_webpsave(image, path.c_str(), "Q", job.quality, "strip", TRUE, nullptr);
  return vips_jpegsave(image, path.c_str(), "Q", job.quality, "strip", TRUE, nullptr);
}

void crash_if_asked(const std::string& input) {
  const char* pattern = std::getenv("POOLS_THUMBS_TEST_CRASH");
  if (pattern && *pattern && input.find(pattern) != std::string::npos) std::raise(SIGSEGV);
}

}  // namespace

ThumbResult make_thumbnail(ThumbJob job) {
  ThumbResult r;
  r.input = job.input;
  r.output = job.output;
  crash_if_asked(job.input);
  if (job.format != "jpg" && job.format != "png" && job.format != "webp") {
    r.error = fmt::format("unknown output format '{}'", job.format);
    return r;
  }
  try {
    init_vips();
  } catch (const std::exception& e) {
    r.error = e.what();
    return r;
  }
  // libvips says "does not exist" or "not a known file format" for a file it
  // cannot open; the system's reason is clearer.
  int fd = ::open(job.input.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.error = fmt::format("cannot read: {}", std::strerror(errno));
    return r;
  }
  ::close(fd);

  VipsImage* raw = nullptr;
  // fail_on truncated: a cut-off file fails instead of becoming a thumbnail
  // with a grey band at the bottom.
  if (vips_thumbnail(job.input.c_str(), &raw, job.size, "height", job.size, "fail_on",
                     VIPS_FAIL_ON_TRUNCATED, nullptr) != 0) {
    r.error = "cannot decode: " + take_vips_error();
    return r;
  }
  ImagePtr thumb(raw);

  // Writing is checked apart from libvips, whose message for an unwritable
  // path does not say why.
  std::string part = partial_path(job.output);
  fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    r.error = fmt::format("cannot write {}: {}", part, std::strerror(errno));
    return r;
  }
  ::close(fd);
  // The pixels are decoded here, during the save: libvips evaluates lazily.
  if (save(thumb.get(), part, job) != 0) {
    r.error = "cannot decode or encode: " + take_vips_error();
    std::remove(part.c_str());
    return r;
  }
  if (std::rename(part.c_str(), job.output.c_str()) != 0) {
    r.error = fmt::format("cannot write {}: {}", job.output, std::strerror(errno));
    std::remove(part.c_str());
    return r;
  }
  r.width = vips_image_get_width(thumb.get());
  r.height = vips_image_get_height(thumb.get());
  struct stat st {};
  if (::stat(job.output.c_str(), &st) == 0) r.bytes = static_cast<std::uint64_t>(st.st_size);
  return r;
}

std::optional<std::pair<int, int>> image_size(const std::string& path) {
  init_vips();
  VipsImage* raw = vips_image_new_from_file(path.c_str(), "access", VIPS_ACCESS_SEQUENTIAL, nullptr);
  if (!raw) {
    vips_error_clear();
    return std::nullopt;
  }
  ImagePtr image(raw);
  return std::pair{vips_image_get_width(raw), vips_image_get_height(raw)};
}

void write_test_image(const std::string& path, int width, int height, int seed, bool noise) {
  init_vips();
  // Intermediate images belong to `owner` and go with it.
  ImagePtr owner(vips_image_new());
  auto** t = reinterpret_cast<VipsImage**>(vips_object_local_array(VIPS_OBJECT(owner.get()), 8));
  double scale[2] = {255.0 / width, 255.0 / height};
  double offset[2] = {0.0, 0.0};
  bool ok = vips_xyz(&t[0], width, height, nullptr) == 0 &&
            vips_linear(t[0], &t[1], scale, offset, 2, nullptr) == 0 &&
            vips_bandjoin_const1(t[1], &t[2], (seed * 53) % 256, nullptr) == 0;
  VipsImage* pixels = t[2];
  if (ok && noise) {
    ok = vips_gaussnoise(&t[3], width, height, "sigma", 24.0, "mean", 0.0, "seed", seed, nullptr) == 0 &&
         vips_add(t[2], t[3], &t[4], nullptr) == 0;
    pixels = t[4];
  }
  ok = ok && vips_cast_uchar(pixels, &t[5], nullptr) == 0 &&
       vips_copy(t[5], &t[6], "interpretation", VIPS_INTERPRETATION_sRGB, nullptr) == 0 &&
       vips_image_write_to_file(t[6], path.c_str(), nullptr) == 0;
  if (!ok) throw std::runtime_error(fmt::format("cannot write test image {}: {}", path, take_vips_error()));
}

}  // namespace pools_thumbs
