// Job streams: the payloads round-trip and reject bad bytes clearly; the
// reader judges whole streams; a running pools-run --worker starts jobs before
// its input ends (driven through pipes, no sleeps).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <functional>
#include <string>

#include <fmt/format.h>

#include <catch2/catch.hpp>

#include "job_stream.hpp"

using namespace pools_run::stream;
using Catch::Matchers::Contains;

namespace {

JobsHeader sample_header() {
  JobsHeader h;
  h.host = "node1";
  h.input_jobs = 5;
  h.skipped = {2, 4};
  h.resumed = true;
  h.timeout = std::chrono::milliseconds(1500);
  h.retries = 3;
  h.jobs = 7;
  h.halt = pools_run::HaltPolicy::parse("soon,fail=20%");
  return h;
}

// The payload of the only frame in `bytes`.
std::string payload_of(const std::string& bytes) {
  pools::wire::FrameDecoder d;
  d.feed(bytes.data(), bytes.size());
  auto f = d.next();
  REQUIRE(f);
  return std::string(f->payload);
}

// A pipe whose read end a StreamReader reads; the bytes are written first.
struct Fed {
  int fds[2] = {-1, -1};
  explicit Fed(const std::string& bytes) {
    REQUIRE(::pipe(fds) == 0);
    REQUIRE(bytes.size() < 60000);  // fits the pipe: no writer thread needed
    REQUIRE(write_all(fds[1], bytes));
    ::close(fds[1]);
  }
  ~Fed() { ::close(fds[0]); }
};

std::string job_stream(std::uint64_t n) {
  JobsHeader h;
  h.input_jobs = n;
  std::string s;
  append_jobs_header(s, h);
  for (std::uint64_t i = 1; i <= n; ++i) append_job(s, {i, "echo " + std::to_string(i), {}, {std::to_string(i)}});
  append_jobs_end(s, n);
  return s;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const StreamError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("job streams: headers, jobs and results round-trip") {
  const auto h = sample_header();
  const auto back = decode_jobs_header(encode_jobs_header(h));
  CHECK(back.host == "node1");
  CHECK(back.input_jobs == 5);
  CHECK(back.skipped == std::vector<std::uint64_t>{2, 4});
  CHECK(back.transmitted() == 3);
  CHECK(back.resumed);
  CHECK(back.timeout == std::chrono::milliseconds(1500));
  CHECK(back.retries == 3);
  CHECK(back.jobs == std::optional<std::uint32_t>(7));
  CHECK(back.halt.when == pools_run::HaltPolicy::When::soon);
  CHECK(back.halt.threshold == 20);
  CHECK(back.halt.percent);

  std::string s;
  append_job(s, {9, "printf 'a\\0b'", {}, {"x y", std::string("\0z", 2)}});
  auto j = decode_job(9, payload_of(s));
  CHECK(j.command == "printf 'a\\0b'");
  CHECK(j.argv.empty());
  CHECK(j.args == std::vector<std::string>{"x y", std::string("\0z", 2)});
  s.clear();
  append_job(s, {3, "", {"ls", "-l", "a b"}, {}});
  j = decode_job(3, payload_of(s));
  CHECK(j.argv == std::vector<std::string>{"ls", "-l", "a b"});
  CHECK(j.command == "ls -l a b");

  JobResult r;
  r.seq = 4;
  r.status = JobStatus::ran;
  r.command = "kill -9 $$";
  r.args = {"a"};
  r.result.exit_code = -1;
  r.result.signal = 9;
  r.result.timed_out = true;
  r.result.stderr_truncated = true;
  r.result.attempts = 2;
  r.result.started = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  r.result.elapsed = std::chrono::microseconds(1234);
  r.result.pid = 4242;
  r.result.stdout_text = std::string("out\0put", 7);
  r.result.stderr_text = "err";
  s.clear();
  append_result(s, r);
  const auto rb = decode_result(4, payload_of(s));
  CHECK(rb.status == JobStatus::ran);
  CHECK(rb.command == r.command);
  CHECK(rb.args == r.args);
  CHECK(rb.result.exit_code == -1);
  CHECK(rb.result.signal == 9);
  CHECK(rb.result.timed_out);
  CHECK(!rb.result.stdout_truncated);
  CHECK(rb.result.stderr_truncated);
  CHECK(rb.result.attempts == 2);
  CHECK(rb.result.started == r.result.started);
  CHECK(rb.result.elapsed == r.result.elapsed);
  CHECK(rb.result.pid == 4242);
  CHECK(rb.result.stdout_text == r.result.stdout_text);
  CHECK(rb.result.stderr_text == "err");

  ResultsHeader rh{"worker-host", 77, h};
  s.clear();
  append_results_header(s, rh);
  const auto rhb = decode_results_header(payload_of(s));
  CHECK(rhb.host == "worker-host");
  CHECK(rhb.pid == 77);
  CHECK(rhb.jobs.skipped == h.skipped);
}

TEST_CASE("job streams: every cut of a payload is refused, naming the field") {
  std::string s;
  append_job(s, {1, "echo hello", {}, {"hello"}});
  const auto p = payload_of(s);
  for (std::size_t n = 0; n < p.size(); ++n)
    CHECK_THROWS_WITH(decode_job(1, std::string_view(p).substr(0, n)), Contains("job 1: field '"));
  CHECK_THROWS_WITH(decode_job(1, p + "x"), Contains("1 bytes left over after the last field"));
  const auto hp = encode_jobs_header(sample_header());
  for (std::size_t n = 0; n < hp.size(); ++n) CHECK_THROWS_AS(decode_jobs_header(hp.substr(0, n)), StreamError);
  std::string bad = p;
  bad[0] = 5;  // the form
  CHECK_THROWS_WITH(decode_job(1, bad), Contains("field 'form' (payload byte 1): 5 is not a shell command"));
  // A string count that cannot fit must not allocate.
  std::string huge = p.substr(0, 1 + 4 + 10) + std::string("\xff\xff\xff\xff", 4);
  CHECK_THROWS_WITH(decode_job(1, huge), Contains("says 4294967295 strings"));
}

TEST_CASE("job streams: the reader takes a whole stream and counts its jobs") {
  Fed in(job_stream(3));
  StreamReader r(in.fds[0], StreamReader::Kind::jobs, "the pipe");
  CHECK(r.read_jobs_header().input_jobs == 3);
  for (std::uint64_t i = 1; i <= 3; ++i) {
    auto j = r.next_job();
    REQUIRE(j);
    CHECK(j->seq == i);
  }
  CHECK(!r.next_job());
  CHECK(!r.next_job());
  CHECK(r.count() == 3);
}

TEST_CASE("job streams: bad streams say what was expected, and where") {
  const auto good = job_stream(2);
  SECTION("junk") {
    Fed in("#!/bin/sh\necho this is a script, not a stream\n");
    StreamReader r(in.fds[0], StreamReader::Kind::jobs, "stdin");
    CHECK_THAT(error_of([&] { r.read_jobs_header(); }),
               Contains("job stream on stdin, at byte 0: expected the hello frame of a job stream") &&
                   Contains("not a pools stream: the magic is \"#!/b\""));
  }
  SECTION("a result stream where jobs are expected") {
    std::string s;
    append_results_header(s, {"h", 1, {}});
    Fed in(s);
    StreamReader r(in.fds[0], StreamReader::Kind::jobs, "stdin");
    CHECK_THAT(error_of([&] { r.read_jobs_header(); }), Contains("this is a result stream (from pools-run --worker)"));
  }
  SECTION("another version") {
    std::string s = good;
    // The version follows the name's length and bytes in the hello payload.
    const std::size_t at = pools::wire::header_size + 4 + jobs_name.size();
    s[at] = 9;
    // The frame's check covers its header only: the payload is ours to change.
    Fed in(s);
    StreamReader r(in.fds[0], StreamReader::Kind::jobs, "stdin");
    CHECK_THAT(error_of([&] { r.read_jobs_header(); }),
               Contains("job stream format version 9 is not supported (this pools-run reads version 1)"));
  }
  SECTION("cut inside a frame") {
    Fed in(good.substr(0, good.size() - 40));
    StreamReader r(in.fds[0], StreamReader::Kind::jobs, "stdin");
    r.read_jobs_header();
    REQUIRE(r.next_job());
    const auto at = r.offset();
    CHECK_THAT(error_of([&] { r.next_job(); }),
               Contains(fmt::format("at byte {}: expected a job frame or the end frame (stop), but the stream is "
                                    "cut short: pools wire: truncated frame: the stream ended inside a job frame",
                                    at)));
  }
  SECTION("no end frame") {
    Fed in(good.substr(0, good.size() - 32));
    StreamReader r(in.fds[0], StreamReader::Kind::jobs, "stdin");
    r.read_jobs_header();
    REQUIRE(r.next_job());
    REQUIRE(r.next_job());
    CHECK_THAT(error_of([&] { r.next_job(); }), Contains("the stream ended after 2 jobs without its end frame"));
  }
  SECTION("an end frame that disagrees") {
    std::string s = good.substr(0, good.size() - 32);
    append_jobs_end(s, 5);
    Fed in(s);
    StreamReader r(in.fds[0], StreamReader::Kind::jobs, "stdin");
    r.read_jobs_header();
    r.next_job();
    r.next_job();
    CHECK_THAT(error_of([&] { r.next_job(); }), Contains("the end frame says 5 jobs were sent, but 2 arrived"));
  }
  SECTION("job numbers that do not increase") {
    JobsHeader h;
    h.input_jobs = 3;
    std::string s;
    append_jobs_header(s, h);
    append_job(s, {2, "true", {}, {}});
    append_job(s, {2, "true", {}, {}});
    Fed in(s);
    StreamReader r(in.fds[0], StreamReader::Kind::jobs, "stdin");
    r.read_jobs_header();
    r.next_job();
    CHECK_THAT(error_of([&] { r.next_job(); }), Contains("job 2 comes after job 2: job numbers must increase"));
  }
  SECTION("a frame of another kind") {
    std::string s = good.substr(0, good.size() - 32);
    pools::wire::append_frame(s, pools::wire::FrameKind::call, 0, "x");
    Fed in(s);
    StreamReader r(in.fds[0], StreamReader::Kind::jobs, "stdin");
    r.read_jobs_header();
    r.next_job();
    r.next_job();
    CHECK_THAT(error_of([&] { r.next_job(); }),
               Contains("expected a job frame or the end frame (stop), not a call frame"));
  }
}

// A running pools-run --worker: its stdin and stdout are our pipes.
class WorkerProcess {
public:
  WorkerProcess() {
    const char* exe = std::getenv("POOLS_RUN");
    REQUIRE(exe);
    int in[2], out[2];
    REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::execl(exe, exe, "--worker", "-j", "2", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  ~WorkerProcess() {
    close_input();
    if (from_ >= 0) ::close(from_);
    if (pid_ > 0) wait();
  }
  void send(const std::string& bytes) { REQUIRE(write_all(to_, bytes)); }
  void close_input() {
    if (to_ >= 0) ::close(to_);
    to_ = -1;
  }
  int results_fd() const { return from_; }
  int wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

private:
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
};

TEST_CASE("job streams: --worker runs a job before its input ends, and reports a bad stream after the results") {
  WorkerProcess w;
  JobsHeader h;
  h.input_jobs = 3;
  std::string s;
  append_jobs_header(s, h);
  append_job(s, {1, "echo first", {}, {}});
  w.send(s);  // stdin stays open: the worker cannot know whether more will come
  StreamReader results(w.results_fd(), StreamReader::Kind::results, "the worker's stdout");
  CHECK(results.read_results_header().jobs.input_jobs == 3);
  auto r1 = results.next_result();  // arrives while the job stream is still open
  REQUIRE(r1);
  CHECK(r1->seq == 1);
  CHECK(r1->result.stdout_text == "first\n");
  CHECK(r1->status == JobStatus::ran);

  SECTION("then the rest and the end") {
    s.clear();
    append_job(s, {3, "exit 4", {}, {}});
    append_jobs_end(s, 2);
    w.send(s);
    w.close_input();
    auto r3 = results.next_result();
    REQUIRE(r3);
    CHECK(r3->seq == 3);
    CHECK(r3->result.exit_code == 4);
    CHECK(!results.next_result());
    CHECK(results.end().results == 2);
    CHECK(results.end().error.empty());
    const int status = w.wait();
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  }
  SECTION("then part of a frame") {
    s.clear();
    append_job(s, {2, "echo never", {}, {}});
    w.send(s.substr(0, s.size() - 3));  // the header and part of the payload
    w.close_input();
    CHECK(!results.next_result());
    CHECK_THAT(results.end().error, Contains("truncated frame: the stream ended inside a job frame"));
    CHECK(results.end().results == 1);
    const int status = w.wait();
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 255));
  }
}
