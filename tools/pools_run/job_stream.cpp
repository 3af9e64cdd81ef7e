#include "job_stream.hpp"

#include <poll.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

namespace pools_run::stream {

using pools::wire::Frame;
using pools::wire::FrameKind;

namespace {

// ---- the payload layout: little-endian integers, strings as u32 length + bytes

class Writer {
public:
  void u8(std::uint8_t v) { s_ += static_cast<char>(v); }
  void u16(std::uint16_t v) { le(v); }
  void u32(std::uint32_t v) { le(v); }
  void u64(std::uint64_t v) { le(v); }
  void i32(std::int32_t v) { le(static_cast<std::uint32_t>(v)); }
  void i64(std::int64_t v) { le(static_cast<std::uint64_t>(v)); }
  void f64(double v) { le(std::bit_cast<std::uint64_t>(v)); }
  void str(std::string_view v) {
    if (v.size() > UINT32_MAX)
      throw StreamError(fmt::format("job stream: a string of {} bytes does not fit (at most {})", v.size(),
                                    UINT32_MAX));
    u32(static_cast<std::uint32_t>(v.size()));
    s_ += v;
  }
  void strs(const std::vector<std::string>& v) {
    u32(static_cast<std::uint32_t>(v.size()));
    for (const auto& s : v) str(s);
  }
  std::string take() { return std::move(s_); }

private:
  template <class T>
  void le(T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) s_ += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  std::string s_;
};

// Reads a payload, field by field; every read checks the bytes are there.
class Reader {
public:
  Reader(std::string_view p, std::string_view what) : p_(p), what_(what) {}

  std::uint8_t u8(const char* field) { return static_cast<std::uint8_t>(*take(1, field)); }
  std::uint16_t u16(const char* field) { return le<std::uint16_t>(field); }
  std::uint32_t u32(const char* field) { return le<std::uint32_t>(field); }
  std::uint64_t u64(const char* field) { return le<std::uint64_t>(field); }
  std::int32_t i32(const char* field) { return static_cast<std::int32_t>(le<std::uint32_t>(field)); }
  std::int64_t i64(const char* field) { return static_cast<std::int64_t>(le<std::uint64_t>(field)); }
  double f64(const char* field) { return std::bit_cast<double>(le<std::uint64_t>(field)); }
  bool flag(const char* field) {
    auto v = u8(field);
    if (v > 1) bad(field, fmt::format("{} is not a boolean (0 or 1)", v));
    return v == 1;
  }
  std::string str(const char* field) {
    const auto n = u32(field);
    return std::string(take(n, field), n);
  }
  std::vector<std::string> strs(const char* field) {
    const auto n = u32(field);
    // Each string takes at least its 4-byte length: a count larger than that
    // cannot be right, and must not reserve memory.
    if (n > left() / 4) bad(field, fmt::format("says {} strings, but only {} bytes are left", n, left()));
    std::vector<std::string> v;
    v.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) v.push_back(str(field));
    return v;
  }
  std::size_t left() const noexcept { return p_.size() - at_; }
  void done() const {
    if (left() != 0)
      throw StreamError(fmt::format("{}: {} bytes left over after the last field (written by a newer "
                                    "pools-run, or corrupt)",
                                    what_, left()));
  }
  [[noreturn]] void bad(const char* field, const std::string& why) const {
    throw StreamError(fmt::format("{}: field '{}' (payload byte {}): {}", what_, field, at_, why));
  }

private:
  const char* take(std::size_t n, const char* field) {
    if (n > left()) bad(field, fmt::format("needs {} bytes, only {} are left in the payload", n, left()));
    const char* p = p_.data() + at_;
    at_ += n;
    return p;
  }
  template <class T>
  T le(const char* field) {
    const char* p = take(sizeof(T), field);
    T v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<unsigned char>(p[i])) << (8 * i);
    return v;
  }

  std::string_view p_;
  std::size_t at_ = 0;
  std::string what_;
};

void write_hello(Writer& w, std::string_view name) {
  w.str(name);
  w.u16(format_version);
}

// The hello's name and version: checked first, so that another stream is
// named as such before its fields are judged.
void read_hello(Reader& r, std::string_view expected) {
  const auto name = r.str("name");
  if (name != expected) {
    if (name == jobs_name || name == results_name)
      throw StreamError(fmt::format("this is a {} stream (from pools-run {}), not a {} stream (from pools-run {})",
                                    name == jobs_name ? "job" : "result",
                                    name == jobs_name ? "--transmit" : "--worker",
                                    expected == jobs_name ? "job" : "result",
                                    expected == jobs_name ? "--transmit" : "--worker"));
    throw StreamError(fmt::format("this is a pools stream, but not from pools-run: its hello frame does not "
                                  "start with \"{}\"",
                                  expected));
  }
  const auto v = r.u16("version");
  if (v != format_version)
    throw StreamError(fmt::format("{} stream format version {} is not supported (this pools-run reads version {})",
                                  expected == jobs_name ? "job" : "result", v, format_version));
}

void write_result_fields(Writer& w, const pools::ProcessResult& p) {
  w.i32(p.exit_code);
  w.i32(p.signal);
  w.u8(static_cast<std::uint8_t>(p.timed_out | p.stdout_truncated << 1 | p.stderr_truncated << 2));
  w.u32(p.attempts);
  w.i64(std::chrono::duration_cast<std::chrono::nanoseconds>(p.started.time_since_epoch()).count());
  w.i64(p.elapsed.count());
  w.i32(p.pid);
  w.str(p.stdout_text);
  w.str(p.stderr_text);
}

void read_result_fields(Reader& r, pools::ProcessResult& p) {
  p.exit_code = r.i32("exit code");
  p.signal = r.i32("signal");
  const auto flags = r.u8("flags");
  if (flags > 7) r.bad("flags", fmt::format("unknown bits in {:#04x}", flags));
  p.timed_out = flags & 1;
  p.stdout_truncated = flags & 2;
  p.stderr_truncated = flags & 4;
  p.attempts = r.u32("attempts");
  p.started = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(r.i64("start time"))));
  p.elapsed = std::chrono::nanoseconds(r.i64("runtime"));
  if (p.elapsed.count() < 0) r.bad("runtime", "negative");
  p.pid = r.i32("pid");
  p.stdout_text = r.str("stdout");
  p.stderr_text = r.str("stderr");
}

}  // namespace

// ---- job stream -----------------------------------------------------------------

std::string encode_jobs_header(const JobsHeader& h) {
  Writer w;
  write_hello(w, jobs_name);
  w.str(h.host);
  w.u64(h.input_jobs);
  w.u64(h.skipped.size());
  for (auto s : h.skipped) w.u64(s);
  w.u8(h.resumed);
  w.i64(h.timeout.count());
  w.u32(h.retries);
  w.u8(h.jobs.has_value());
  w.u32(h.jobs.value_or(0));
  w.u8(static_cast<std::uint8_t>(h.halt.when));
  w.u8(static_cast<std::uint8_t>(h.halt.why));
  w.f64(h.halt.threshold);
  w.u8(h.halt.percent);
  return w.take();
}

JobsHeader decode_jobs_header(std::string_view payload) {
  Reader r(payload, "job stream header");
  read_hello(r, jobs_name);
  JobsHeader h;
  h.host = r.str("host");
  h.input_jobs = r.u64("input jobs");
  const auto n = r.u64("skipped count");
  if (n > h.input_jobs || n > r.left() / 8)
    r.bad("skipped count", fmt::format("{} skipped jobs of {} cannot be", n, h.input_jobs));
  h.skipped.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto s = r.u64("skipped");
    if (s == 0 || s > h.input_jobs || (!h.skipped.empty() && s <= h.skipped.back()))
      r.bad("skipped", fmt::format("job {} is not an increasing job number from 1 to {}", s, h.input_jobs));
    h.skipped.push_back(s);
  }
  h.resumed = r.flag("resumed");
  h.timeout = std::chrono::nanoseconds(r.i64("timeout"));
  if (h.timeout.count() < 0) r.bad("timeout", "negative");
  h.retries = r.u32("retries");
  const bool has_jobs = r.flag("jobs given");
  const auto jobs = r.u32("jobs");
  if (has_jobs) h.jobs = jobs;
  else if (jobs != 0) r.bad("jobs", fmt::format("{}, but -j was not given (it must be 0 then)", jobs));
  const auto when = r.u8("halt when"), why = r.u8("halt why");
  if (when > 2) r.bad("halt when", fmt::format("{} is not never (0), soon (1) or now (2)", when));
  if (why > 2) r.bad("halt why", fmt::format("{} is not fail (0), success (1) or done (2)", why));
  h.halt.when = static_cast<HaltPolicy::When>(when);
  h.halt.why = static_cast<HaltPolicy::Why>(why);
  h.halt.threshold = r.f64("halt threshold");
  if (!std::isfinite(h.halt.threshold) || h.halt.threshold < 0) r.bad("halt threshold", "not a count");
  h.halt.percent = r.flag("halt percent");
  r.done();
  return h;
}

void append_jobs_header(std::string& out, const JobsHeader& h) {
  pools::wire::append_frame(out, FrameKind::hello, 0, encode_jobs_header(h));
}

void append_job(std::string& out, const Job& j) {
  Writer w;
  w.u8(j.argv.empty() ? 0 : 1);
  if (j.argv.empty())
    w.str(j.command);
  else
    w.strs(j.argv);
  w.strs(j.args);
  pools::wire::append_frame(out, FrameKind::job, j.seq, w.take());
}

Job decode_job(std::uint64_t seq, std::string_view payload) {
  Reader r(payload, fmt::format("job {}", seq));
  Job j;
  j.seq = seq;
  const auto form = r.u8("form");
  if (form > 1) r.bad("form", fmt::format("{} is not a shell command (0) or an argv (1)", form));
  if (form == 0) {
    j.command = r.str("command");
  } else {
    j.argv = r.strs("argv");
    if (j.argv.empty()) r.bad("argv", "empty");
    for (const auto& a : j.argv) j.command += (j.command.empty() ? "" : " ") + a;
  }
  j.args = r.strs("args");
  r.done();
  return j;
}

void append_jobs_end(std::string& out, std::uint64_t jobs) {
  Writer w;
  w.u64(jobs);
  pools::wire::append_frame(out, FrameKind::stop, 0, w.take());
}

std::uint64_t decode_jobs_end(std::string_view payload) {
  Reader r(payload, "end of the job stream");
  const auto n = r.u64("jobs");
  r.done();
  return n;
}

// ---- result stream --------------------------------------------------------------

void append_results_header(std::string& out, const ResultsHeader& h) {
  Writer w;
  write_hello(w, results_name);
  w.str(h.host);
  w.i32(h.pid);
  w.str(encode_jobs_header(h.jobs));
  pools::wire::append_frame(out, FrameKind::hello, 0, w.take());
}

ResultsHeader decode_results_header(std::string_view payload) {
  Reader r(payload, "result stream header");
  read_hello(r, results_name);
  ResultsHeader h;
  h.host = r.str("host");
  h.pid = r.i32("pid");
  const auto jobs = r.str("job stream header");
  r.done();
  h.jobs = decode_jobs_header(jobs);
  return h;
}

void append_result(std::string& out, const JobResult& res) {
  Writer w;
  w.u8(static_cast<std::uint8_t>(res.status));
  w.str(res.command);
  w.strs(res.args);
  w.str(res.problem);
  write_result_fields(w, res.result);
  pools::wire::append_frame(out, FrameKind::job_result, res.seq, w.take());
}

JobResult decode_result(std::uint64_t seq, std::string_view payload) {
  Reader r(payload, fmt::format("result of job {}", seq));
  JobResult res;
  res.seq = seq;
  const auto status = r.u8("status");
  if (status > 3)
    r.bad("status", fmt::format("{} is not ran (0), not run (1), killed (2) or not started (3)", status));
  res.status = static_cast<JobStatus>(status);
  res.command = r.str("command");
  res.args = r.strs("args");
  res.problem = r.str("problem");
  read_result_fields(r, res.result);
  r.done();
  res.result.command = res.command;
  return res;
}

void append_results_end(std::string& out, const ResultsEnd& e) {
  Writer w;
  w.u64(e.results);
  w.str(e.error);
  pools::wire::append_frame(out, FrameKind::bye, 0, w.take());
}

ResultsEnd decode_results_end(std::string_view payload) {
  Reader r(payload, "end of the result stream");
  ResultsEnd e;
  e.results = r.u64("results");
  e.error = r.str("error");
  r.done();
  return e;
}

// ---- reading a stream -------------------------------------------------------------

StreamReader::StreamReader(int fd, Kind expect, std::string what)
    : fd_(fd), expect_(expect), what_(std::move(what)) {}

std::string StreamReader::stream_name() const { return expect_ == Kind::jobs ? "job stream" : "result stream"; }

void StreamReader::fail(const std::string& problem, std::uint64_t at) const {
  throw StreamError(fmt::format("{} on {}, at byte {}: {}", stream_name(), what_, at, problem));
}

Frame StreamReader::next_frame(std::string_view expecting) {
  while (true) {
    std::optional<Frame> f;
    try {
      f = decoder_.next();
    } catch (const pools::wire::WireError& e) {
      fail(fmt::format("expected {}, but {}", expecting, e.what()), decoder_.offset());
    }
    if (f) return *f;
    if (cancel_fd_ >= 0) {
      pollfd p[2] = {{fd_, POLLIN, 0}, {cancel_fd_, POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        fail(fmt::format("cannot wait for input: {}", std::strerror(errno)), decoder_.offset());
      }
      if (p[1].revents) fail("stopped while waiting for input", decoder_.offset() + decoder_.buffered());
    }
    char* room = decoder_.prepare(64 * 1024);
    ssize_t n;
    do n = ::read(fd_, room, decoder_.prepared_size());
    while (n < 0 && errno == EINTR);
    if (n < 0) fail(fmt::format("cannot read: {}", std::strerror(errno)), decoder_.offset() + decoder_.buffered());
    if (n == 0) {
      const auto at = decoder_.offset();
      // Less than a header of something else: say what it is, not that a header is short.
      if (at == 0 && decoder_.buffered() > 0) {
        const std::string_view start(room - decoder_.buffered(), std::min<std::size_t>(decoder_.buffered(), 4));
        if (std::string_view("PLWF").substr(0, start.size()) != start)
          fail(fmt::format("expected {}, but this is not a pools stream: {} bytes that do not start with \"PLWF\"",
                           expecting, decoder_.buffered()),
               0);
      }
      try {
        decoder_.finish();
      } catch (const pools::wire::WireError& e) {
        fail(fmt::format("expected {}, but the stream is cut short: {}", expecting, e.what()), at);
      }
      if (at == 0) fail(fmt::format("the input is empty (expected {})", expecting), 0);
      fail(fmt::format("the stream ended after {} {} without its end frame (expected {}): the sender stopped "
                       "early",
                       count_, expect_ == Kind::jobs ? "jobs" : "results", expecting),
           at);
    }
    decoder_.commit(static_cast<std::size_t>(n));
  }
}

std::string_view StreamReader::read_hello_frame() {
  const bool jobs = expect_ == Kind::jobs;
  const auto f = next_frame(fmt::format("the hello frame of a {} (from pools-run {})", stream_name(),
                                        jobs ? "--transmit" : "--worker"));
  if (f.header.kind != FrameKind::hello)
    fail(fmt::format("not a {}: the first frame is a {} frame, not hello", stream_name(), to_string(f.header.kind)), 0);
  return f.payload;
}

JobsHeader StreamReader::read_jobs_header() {
  const auto payload = read_hello_frame();
  return at_frame(0, [&] { return decode_jobs_header(payload); });
}

ResultsHeader StreamReader::read_results_header() {
  const auto payload = read_hello_frame();
  return at_frame(0, [&] { return decode_results_header(payload); });
}

template <class F>
auto StreamReader::at_frame(std::uint64_t at, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const StreamError& e) {
    if (std::string_view(e.what()).starts_with(stream_name())) throw;  // placed already
    fail(e.what(), at);
  }
}

std::optional<Frame> StreamReader::next_item(FrameKind item, FrameKind end, std::string_view& end_payload) {
  const auto at = decoder_.offset();
  const auto expecting = fmt::format("a {} frame or the end frame ({})", to_string(item), to_string(end));
  const auto f = next_frame(expecting);
  if (f.header.kind == end) {
    ended_ = true;
    end_payload = f.payload;
    return std::nullopt;
  }
  if (f.header.kind != item) fail(fmt::format("expected {}, not a {} frame", expecting, to_string(f.header.kind)), at);
  return f;
}

std::optional<Job> StreamReader::next_job() {
  if (ended_) return std::nullopt;
  const auto at = decoder_.offset();
  std::string_view end;
  const auto f = next_item(FrameKind::job, FrameKind::stop, end);
  return at_frame(at, [&]() -> std::optional<Job> {
    if (!f) {
      if (const auto n = decode_jobs_end(end); n != count_)
        fail(fmt::format("the end frame says {} jobs were sent, but {} arrived", n, count_), at);
      return std::nullopt;
    }
    if (f->header.task_id <= last_seq_)
      fail(fmt::format("job {} comes after job {}: job numbers must increase", f->header.task_id, last_seq_), at);
    auto j = decode_job(f->header.task_id, f->payload);
    last_seq_ = j.seq;
    ++count_;
    return j;
  });
}

std::optional<JobResult> StreamReader::next_result() {
  if (ended_) return std::nullopt;
  const auto at = decoder_.offset();
  std::string_view end;
  const auto f = next_item(FrameKind::job_result, FrameKind::bye, end);
  return at_frame(at, [&]() -> std::optional<JobResult> {
    if (!f) {
      end_ = decode_results_end(end);
      if (end_.results != count_)
        fail(fmt::format("the end frame says {} results were sent, but {} arrived", end_.results, count_), at);
      return std::nullopt;
    }
    auto r = decode_result(f->header.task_id, f->payload);
    ++count_;
    return r;
  });
}

bool write_all(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace pools_run::stream
