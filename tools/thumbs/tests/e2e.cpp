// End-to-end tests of pools-thumbs: runs the built program (POOLS_THUMBS) on
// generated images, on each pool kind, and checks the thumbnails, the summary
// and the exit status. No assertion depends on timing.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include <pools/pools.hpp>

#include "fixture.hpp"
#include "runner.hpp"
#include "thumbnail.hpp"

using namespace thumbs_test;
using Catch::Matchers::Contains;

namespace {

struct Run {
  int status;
  std::string out, err;
};

Run run_tool(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  const char* program = std::getenv("POOLS_THUMBS");
  REQUIRE(program);
  args.insert(args.begin(), program);
  pools::ProcessOptions options;
  options.check = false;
  options.env = std::move(env);
  auto r = pools::get_serial_pool("thumbs-e2e").add_process("pools-thumbs", args, options).result();
  INFO("stdout:\n" << r.stdout_text << "stderr:\n" << r.stderr_text);
  REQUIRE(r.signal == 0);
  return {r.exit_code, r.stdout_text, r.stderr_text};
}

/// Every good image has a thumbnail of the right size (as FORMAT), and there is
/// nothing else in `out`.
void check_thumbnails(const fs::path& out, int size, const std::string& format = "jpg") {
  std::vector<std::string> expected;
  for (const auto& [name, wh] : good_images()) {
    std::string thumb = fs::path(name).replace_extension(format).generic_string();
    expected.push_back(thumb);
    INFO(thumb);
    auto got = pools_thumbs::image_size((out / thumb).string());
    REQUIRE(got);
    auto [ew, eh] = expected_size(wh.first, wh.second, size);
    CHECK(std::max(got->first, got->second) == size);
    CHECK(std::abs(got->first - ew) <= 1);
    CHECK(std::abs(got->second - eh) <= 1);
  }
  std::sort(expected.begin(), expected.end());
  CHECK(files_under(out) == expected);  // no partial files, nothing for the bad images
}

void check_fixture_run(const std::string& kind) {
  TempDir tmp;
  make_fixture(tmp.path / "in");
  Run r = run_tool({"--pool", kind, "-j", "2", "--size", "96", "--no-bar", (tmp.path / "in").string(),
                        (tmp.path / "out").string()});
  INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Contains("pools-thumbs: " + kind + " pool"));
  CHECK_THAT(r.out, Contains("\nimages: 8\nsucceeded: 6\nfailed: 2\n"));
  for (const auto& [name, reason] : bad_images()) CHECK_THAT(r.out, Contains("\n  " + name + ": "));
  CHECK_THAT(r.out, Contains("\nskipped: 1\n"));
  CHECK_THAT(r.out, Contains("\nwall time: "));
  CHECK_THAT(r.out, Contains("\nimages per second: "));
  CHECK_THAT(r.err, Contains("pools-thumbs: skipped notes.txt: not an image (.txt)"));
  check_thumbnails(tmp.path / "out", 96);
}

}  // namespace

TEST_CASE("pools-thumbs on the thread pool: good images done, bad ones fail alone", "[thread]") {
  check_fixture_run("thread");
}

TEST_CASE("pools-thumbs on the multiprocess pool: good images done, bad ones fail alone", "[multiprocess]") {
  check_fixture_run("multiprocess");
}

TEST_CASE("pools-thumbs on the serial pool: good images done, bad ones fail alone", "[serial]") {
  check_fixture_run("serial");
}

TEST_CASE("pools-thumbs on the process pool (vips thumbnail): good images done, bad ones fail alone",
          "[process]") {
  if (pools_thumbs::find_vips_program().empty()) {
    WARN("skipped: the vips command (libvips-tools) is not on PATH");
    return;
  }
  check_fixture_run("process");
}

TEST_CASE("pools-thumbs on the multiprocess pool: a decoder crash fails only its image", "[multiprocess]") {
  TempDir tmp;
  make_fixture(tmp.path / "in");
  pools_thumbs::write_test_image((tmp.path / "in/crashes.png").string(), 64, 64, 7);
  Run r = run_tool({"--pool", "multiprocess", "-j", "2", "--size", "80", "--no-bar",
                        (tmp.path / "in").string(), (tmp.path / "out").string()},
                       {{"POOLS_THUMBS_TEST_CRASH", "crashes"}});
  INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Contains("\nimages: 9\nsucceeded: 6\nfailed: 3\n"));
  CHECK_THAT(r.out, Contains("\n  crashes.png: its worker process ") && Contains("died of signal 11"));
  check_thumbnails(tmp.path / "out", 80);
}

TEST_CASE("pools-thumbs: all images good exits 0; png and webp outputs", "[cli]") {
  TempDir tmp;
  make_fixture(tmp.path / "in");
  for (const auto& [name, reason] : bad_images()) fs::remove(tmp.path / "in" / name);
  for (const char* format : {"png", "webp"}) {
    Run r = run_tool({"--format", format, "--size", "50", "--no-bar", (tmp.path / "in").string(),
                          (tmp.path / format).string()});
    INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
    CHECK(r.status == 0);
    CHECK_THAT(r.out, Contains("\nimages: 6\nsucceeded: 6\nfailed: 0\n"));
    check_thumbnails(tmp.path / format, 50, format);
  }
}

TEST_CASE("pools-thumbs: progress lines when stderr is not a terminal", "[cli]") {
  TempDir tmp;
  make_fixture(tmp.path / "in");
  Run r = run_tool({"--bar", (tmp.path / "in").string(), (tmp.path / "out").string()});
  CHECK(r.status == 1);
  CHECK_THAT(r.err, Contains("pools-thumbs: 100% 8/8 done, 2 failed"));
  Run quiet = run_tool({"--no-bar", (tmp.path / "in").string(), (tmp.path / "out2").string()});
  CHECK_THAT(quiet.err, !Contains("% "));
}

TEST_CASE("pools-thumbs: an output directory that cannot be written fails its images only", "[cli]") {
  TempDir tmp;
  make_fixture(tmp.path / "in");
  write_file(tmp.path / "out/sub", "a file where the directory sub/ should go");
  fs::create_directories(tmp.path / "out/square.jpg");  // a directory where a thumbnail should go
  Run r = run_tool({"--no-bar", "--size", "64", (tmp.path / "in").string(), (tmp.path / "out").string()});
  INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Contains("\nimages: 8\nsucceeded: 3\nfailed: 5\n"));
  CHECK_THAT(r.out, Contains("\n  sub/upper.JPG: cannot create the output directory "));
  CHECK_THAT(r.out, Contains("\n  sub/deep/photo.webp: cannot create the output directory "));
  CHECK_THAT(r.out, Contains("\n  square.jpg: cannot write "));
}

TEST_CASE("pools-thumbs: an output directory inside the input one is not scanned", "[cli]") {
  TempDir tmp;
  make_fixture(tmp.path);
  for (int round = 0; round < 2; ++round) {
    Run r = run_tool({"--no-bar", tmp.path.string(), (tmp.path / "thumbs").string()});
    CHECK_THAT(r.out, Contains("\nimages: 8\nsucceeded: 6\nfailed: 2\n"));
  }
}

TEST_CASE("pools-thumbs: usage errors exit 2 and say why", "[cli]") {
  TempDir tmp;
  fs::create_directory(tmp.path / "in");
  std::string in = (tmp.path / "in").string(), out = (tmp.path / "out").string();
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const auto& c : std::vector<Case>{
           {{}, "expected INPUT_DIR and OUTPUT_DIR"},
           {{"--pool", "cluster", in, out}, "unknown pool kind"},
           {{"--size", "-3", in, out}, "--size"},
           {{"--format", "bmp", in, out}, "jpg, png or webp"},
           {{(tmp.path / "missing").string(), out}, "not a directory"},
           {{in, in}, "OUTPUT_DIR is INPUT_DIR"},
       }) {
    Run r = run_tool(c.args);
    INFO(r.err);
    CHECK(r.status == 2);
    CHECK_THAT(r.err, Contains(c.says) && Contains("Usage: pools-thumbs"));
  }
  Run help = run_tool({"--help"});
  CHECK(help.status == 0);
  CHECK_THAT(help.out, Contains("Usage: pools-thumbs"));
}
