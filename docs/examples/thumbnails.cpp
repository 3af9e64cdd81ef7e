// Thumbnails of a directory on a pool, with libvips: only paths go to the
// workers and a small result comes back, and an image that fails to decode
// fails alone. Without a directory it makes a few images of its own first.
//   example_thumbnails [multiprocess|thread] [DIR]
#include <pools/pools.hpp>
#include <vips/vips.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;

// What a worker sends back: never the pixels.
struct Thumb {
  std::string output, error;
  int width = 0, height = 0;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(output, error, width, height);
  }
};

// Once in every process that decodes: each worker of a multiprocess pool too.
void start_vips() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (VIPS_INIT("thumbnails") != 0) vips_error_exit("cannot start libvips");
    vips_concurrency_set(1);  // one thread per image: the pool runs images side by side
    vips_cache_set_max(0);    // each file is read once
  });
}

// A plain function with serializable arguments and result: it can run on a
// thread pool and in a worker process alike.
Thumb thumbnail(std::string input, std::string output, int size) {
  start_vips();
  Thumb t;
  t.output = output;
  VipsImage* image = nullptr;
  // The longest side becomes `size`; a truncated file fails instead of
  // becoming a thumbnail with a grey band.
  if (vips_thumbnail(input.c_str(), &image, size, "height", size, "fail_on", VIPS_FAIL_ON_TRUNCATED,
                     nullptr) == 0 &&
      vips_image_write_to_file(image, output.c_str(), nullptr) == 0) {
    t.width = vips_image_get_width(image);
    t.height = vips_image_get_height(image);
  } else {
    t.error = vips_error_buffer();  // one buffer per process: exact in a worker
    vips_error_clear();
    while (!t.error.empty() && t.error.back() == '\n') t.error.pop_back();
  }
  if (image) g_object_unref(image);
  return t;
}

// Gradients of a few sizes, and one file that only claims to be a JPEG.
void make_images(const fs::path& dir) {
  start_vips();
  for (int i = 0; i < 6; ++i) {
    VipsImage *xy = nullptr, *rgb = nullptr;
    vips_xyz(&xy, 200 + 100 * i, 600 - 50 * i, nullptr);
    vips_bandjoin_const1(xy, &rgb, 40.0 * i, nullptr);
    auto name = (dir / ("image" + std::to_string(i) + (i % 2 ? ".png" : ".jpg"))).string();
    if (vips_image_write_to_file(rgb, name.c_str(), nullptr) != 0) vips_error_exit("cannot write %s", name.c_str());
    g_object_unref(rgb);
    g_object_unref(xy);
  }
  std::ofstream(dir / "broken.jpg") << "not a JPEG at all";
}

int main(int argc, char** argv) {
  pools::init(argc, argv);  // first: the fork server starts while the program is single-threaded

  std::string kind = argc > 1 ? argv[1] : "multiprocess";
  bool demo = argc <= 2;
  fs::path in;
  if (demo) {
    std::string dir = (fs::temp_directory_path() / "pools-thumbnails.XXXXXX").string();
    in = ::mkdtemp(dir.data());
    make_images(in);
  } else {
    in = argv[2];
  }
  fs::path out = in / "thumbnails";
  fs::create_directories(out);

  pools::PoolBase& pool =
      kind == "thread" ? pools::get_thread_pool("thumbs", 2) : pools::get_multiprocess_pool("thumbs", 2);

  std::vector<pools::Task<Thumb>> tasks;
  for (const auto& entry : fs::directory_iterator(in)) {
    if (!entry.is_regular_file()) continue;
    auto output = (out / entry.path().filename()).replace_extension(".jpg");
    tasks.push_back(pool.add_task(entry.path().filename().string(), thumbnail, entry.path().string(),
                                  output.string(), 128));
  }

  int failed = 0;
  for (const auto& task : tasks) {
    try {
      Thumb t = task.wait_return();
      if (!t.error.empty()) throw std::runtime_error(t.error);
      std::printf("%s: %dx%d\n", task.name().c_str(), t.width, t.height);
    } catch (const std::exception& e) {  // a decoder error, or pools::WorkerLost for a crash
      ++failed;
      std::printf("%s failed: %s\n", task.name().c_str(), e.what());
    }
  }
  std::printf("%zu images on the %s pool, %d failed\n", tasks.size(), kind.c_str(), failed);
  if (demo) fs::remove_all(in);
  return failed == (demo ? 1 : 0) ? 0 : 1;
}
