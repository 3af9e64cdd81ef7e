// Unit tests of pools-thumbs' parts: the command line, the directory scan,
// one thumbnail, and a directory on the thread and serial pools in-process.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "fixture.hpp"
#include "options.hpp"
#include "runner.hpp"
#include "scan.hpp"
#include "thumbnail.hpp"

using namespace pools_thumbs;
using namespace thumbs_test;

namespace {

Options parse(std::vector<std::string> args) { return parse_options(args, 4); }

void check_size(const ThumbResult& r, int w, int h, int size) {
  auto [ew, eh] = expected_size(w, h, size);
  CHECK(std::max(r.width, r.height) == size);
  CHECK(std::abs(r.width - ew) <= 1);
  CHECK(std::abs(r.height - eh) <= 1);
}

}  // namespace

TEST_CASE("options: the defaults and two directories", "[options]") {
  Options o = parse({"in", "out"});
  CHECK(o.pool == "thread");
  CHECK(o.jobs == 4);
  CHECK(o.size == 256);
  CHECK(o.format == "jpg");
  CHECK(o.quality == 80);
  CHECK(o.bar);
  CHECK(o.input_dir == "in");
  CHECK(o.output_dir == "out");
}

TEST_CASE("options: every option, separate and with =", "[options]") {
  Options o = parse({"--pool", "multiprocess", "-j", "3", "--size=64", "--format", "webp", "--quality=55",
                     "--no-bar", "a", "b"});
  CHECK(o.pool == "multiprocess");
  CHECK(o.jobs == 3);
  CHECK(o.size == 64);
  CHECK(o.format == "webp");
  CHECK(o.quality == 55);
  CHECK_FALSE(o.bar);
  CHECK(parse({"-j7", "a", "b"}).jobs == 7);
  CHECK(parse({"--format", "jpeg", "a", "b"}).format == "jpg");
  CHECK(parse({"--", "-dir", "b"}).input_dir == "-dir");
  CHECK(parse({"--help"}).help);
}

TEST_CASE("options: usage errors say what is wrong", "[options]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(parse({}), Contains("expected INPUT_DIR and OUTPUT_DIR"));
  CHECK_THROWS_WITH(parse({"a"}), Contains("got 1 argument"));
  CHECK_THROWS_WITH(parse({"a", "b", "c"}), Contains("got 3 arguments"));
  CHECK_THROWS_WITH(parse({"--pool", "cluster", "a", "b"}), Contains("unknown pool kind"));
  CHECK_THROWS_WITH(parse({"--size", "0", "a", "b"}), Contains("from 1 to"));
  CHECK_THROWS_WITH(parse({"--size", "12px", "a", "b"}), Contains("whole number"));
  CHECK_THROWS_WITH(parse({"--quality", "101", "a", "b"}), Contains("from 1 to 100"));
  CHECK_THROWS_WITH(parse({"--format", "gif", "a", "b"}), Contains("jpg, png or webp"));
  CHECK_THROWS_WITH(parse({"--bar=yes", "a", "b"}), Contains("takes no value"));
  CHECK_THROWS_WITH(parse({"--frobnicate", "a", "b"}), Contains("unknown option"));
  CHECK_THROWS_WITH(parse({"a", "b", "-j"}), Contains("needs a value"));
}

TEST_CASE("scan: images by suffix, mirrored names, notes for the rest", "[scan]") {
  TempDir tmp;
  auto in = tmp.path / "in";
  write_file(in / "a.jpg", "x");
  write_file(in / "B.PNG", "x");
  write_file(in / "notes.txt", "x");
  write_file(in / "README", "x");
  write_file(in / "sub/c.webp", "x");
  write_file(in / "same.png", "x");
  write_file(in / "same.jpg", "x");
  write_file(in / "thumbs/old.jpg", "x");  // the output directory: not walked
  fs::create_directory_symlink(in / "sub", in / "loop");

  Scan s = scan_directory(in, in / "thumbs", "jpg");
  std::vector<std::string> rel, out;
  for (const auto& im : s.images) {
    rel.push_back(im.relative);
    out.push_back(fs::path(im.output).lexically_relative(in / "thumbs").generic_string());
    CHECK(im.input == (in / im.relative).string());
  }
  CHECK(rel == std::vector<std::string>{"B.PNG", "a.jpg", "same.jpg", "same.png", "sub/c.webp"});
  CHECK(out == std::vector<std::string>{"B.jpg", "a.jpg", "same.jpg.jpg", "same.png.jpg", "sub/c.jpg"});
  REQUIRE(s.skipped.size() == 3);
  CHECK(s.skipped[0].relative == "README");
  CHECK(s.skipped[0].why == "not an image (no suffix)");
  CHECK(s.skipped[1].relative == "loop/");
  CHECK_THAT(s.skipped[1].why, Catch::Matchers::Contains("not followed"));
  CHECK(s.skipped[2].why == "not an image (.txt)");

  CHECK(has_image_suffix("x.JPEG"));
  CHECK(has_image_suffix("x.tiff"));
  CHECK_FALSE(has_image_suffix("x.pdf"));
  CHECK_FALSE(has_image_suffix("jpg"));
  CHECK_THROWS_WITH(scan_directory(tmp.path / "missing", tmp.path / "out", "jpg"),
                    Catch::Matchers::Contains("cannot read"));
}

TEST_CASE("make_thumbnail: the longest side is the size, the aspect ratio is kept", "[thumbnail]") {
  TempDir tmp;
  make_fixture(tmp.path);
  for (const auto& [name, wh] : good_images()) {
    for (const char* format : {"jpg", "png", "webp"}) {
      INFO(name << " as " << format);
      std::string output = (tmp.path / (fs::path(name).filename().string() + "." + format)).string();
      ThumbResult r = make_thumbnail({(tmp.path / name).string(), output, 100, format, 80});
      REQUIRE(r.error == "");
      check_size(r, wh.first, wh.second, 100);
      CHECK(r.bytes == fs::file_size(output));
      CHECK(image_size(output) == std::pair{r.width, r.height});
      CHECK_FALSE(fs::exists(partial_path(output)));
    }
  }
}

TEST_CASE("make_thumbnail: failures say why and leave no file", "[thumbnail]") {
  TempDir tmp;
  make_fixture(tmp.path);
  auto out = [&](const char* name) { return (tmp.path / "out" / name).string(); };
  fs::create_directory(tmp.path / "out");
  using Catch::Matchers::Contains;
  using Catch::Matchers::StartsWith;

  ThumbResult corrupt = make_thumbnail({(tmp.path / "corrupt.jpg").string(), out("c.jpg"), 64, "jpg", 80});
  CHECK_THAT(corrupt.error, StartsWith("cannot decode") && Contains("not a known file format"));
  ThumbResult truncated = make_thumbnail({(tmp.path / "truncated.jpg").string(), out("t.jpg"), 64, "jpg", 80});
  CHECK_THAT(truncated.error, StartsWith("cannot decode"));
  ThumbResult text = make_thumbnail({(tmp.path / "notes.txt").string(), out("n.jpg"), 64, "jpg", 80});
  CHECK_THAT(text.error, StartsWith("cannot decode"));
  ThumbResult missing = make_thumbnail({(tmp.path / "missing.jpg").string(), out("m.jpg"), 64, "jpg", 80});
  CHECK(missing.error == "cannot read: No such file or directory");
  fs::create_directory(out("dir.jpg"));  // the thumbnail's name is taken by a directory
  ThumbResult taken = make_thumbnail({(tmp.path / "wide.jpg").string(), out("dir.jpg"), 64, "jpg", 80});
  CHECK_THAT(taken.error, StartsWith("cannot write") && Contains("dir.jpg"));
  ThumbResult nowhere =
      make_thumbnail({(tmp.path / "wide.jpg").string(), out("no/such/dir/w.jpg"), 64, "jpg", 80});
  CHECK_THAT(nowhere.error, StartsWith("cannot write") && Contains("No such file or directory"));
  CHECK(files_under(tmp.path / "out").empty());
}

TEST_CASE("make_thumbnails: every image counted, failures in order, on the thread and serial pools",
          "[runner]") {
  TempDir tmp;
  make_fixture(tmp.path / "in");
  Scan scan = scan_directory(tmp.path / "in", tmp.path / "out", "jpg");
  REQUIRE(scan.images.size() == good_images().size() + bad_images().size());
  for (auto* pool : {&pools::get_thread_pool("thumbs-unit", 2), &pools::get_serial_pool("thumbs-unit-serial")}) {
    INFO(pools::to_string(pool->kind()));
    fs::remove_all(tmp.path / "out");
    std::size_t calls = 0, last_done = 0;
    Outcome o = make_thumbnails(*pool, scan.images, Settings{48, "jpg", 80},
                                [&](std::size_t done, std::size_t failed, std::size_t) {
                                  ++calls;
                                  CHECK(done >= last_done);
                                  CHECK(failed <= done);
                                  last_done = done;
                                });
    CHECK(o.succeeded == good_images().size());
    REQUIRE(o.failures.size() == 2);
    CHECK(o.failures[0].relative == "corrupt.jpg");
    CHECK(o.failures[1].relative == "truncated.jpg");
    CHECK(calls == scan.images.size() + 1);
    CHECK(last_done == scan.images.size());
    CHECK(files_under(tmp.path / "out").size() == good_images().size());
  }
}

TEST_CASE("make_thumbnails: an unusable output directory fails its images only", "[runner]") {
  TempDir tmp;
  make_fixture(tmp.path / "in");
  write_file(tmp.path / "out/sub", "a file where the directory sub/ should go");
  Scan scan = scan_directory(tmp.path / "in", tmp.path / "out", "png");
  Outcome o = make_thumbnails(pools::get_thread_pool("thumbs-unit", 2), scan.images, Settings{32, "png", 80});
  std::vector<std::string> failed;
  for (const auto& f : o.failures) {
    failed.push_back(f.relative);
    if (f.relative.rfind("sub/", 0) == 0)
      CHECK_THAT(f.reason, Catch::Matchers::StartsWith("cannot create the output directory"));
  }
  CHECK(failed == std::vector<std::string>{"corrupt.jpg", "sub/deep/photo.webp", "sub/upper.JPG", "truncated.jpg"});
  CHECK(o.succeeded == good_images().size() - 2);
}

TEST_CASE("summary: counts, each failure with its reason, wall time and rate", "[runner]") {
  Scan scan;
  scan.images.resize(4);
  scan.skipped.push_back({"notes.txt", "not an image (.txt)"});
  Outcome o;
  o.succeeded = 3;
  o.failures.push_back({"bad.jpg", "cannot decode: broken"});
  o.wall = std::chrono::milliseconds(2000);
  CHECK(summary_text("thread pool, 2 workers", Settings{128, "png", 80}, scan, o) ==
        "pools-thumbs: thread pool, 2 workers, 128 px png\n"
        "images: 4\n"
        "succeeded: 3\n"
        "failed: 1\n"
        "  bad.jpg: cannot decode: broken\n"
        "skipped: 1\n"
        "wall time: 2.000 s\n"
        "images per second: 2.0\n");
}
