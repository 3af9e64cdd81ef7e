// Job streams (pools-run --transmit | --worker | --process): the frames a job
// stream and a result stream are made of, their payloads, and a reader that
// checks a stream as it arrives. The format is documented in docs/pools-run.md
// ("Job streams"); frames are the wire format of src/wire/frame.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <pools/errors.hpp>
#include <pools/process.hpp>

#include "halt.hpp"
#include "wire/frame.hpp"

namespace pools_run::stream {

/// The version of the payload layouts below; a reader refuses another one.
inline constexpr std::uint16_t format_version = 1;
/// What the first frame (hello) of each stream says it is.
inline constexpr std::string_view jobs_name = "pools-run jobs";
inline constexpr std::string_view results_name = "pools-run results";

/// A stream that cannot be used: malformed, truncated, of the wrong kind, or
/// not a pools stream at all. what() says what was expected and at which
/// byte offset of the stream.
class StreamError : public pools::Error {
public:
  using pools::Error::Error;
};

/// The first frame of a job stream: the batch and how its jobs run.
struct JobsHeader {
  std::string host;                    // where --transmit ran
  std::uint64_t input_jobs = 0;        // jobs in the input: numbers 1..input_jobs
  std::vector<std::uint64_t> skipped;  // not sent (done in the joblog), increasing
  bool resumed = false;                // --resume/--resume-failed: --process appends to its joblog
  std::chrono::nanoseconds timeout{0};
  unsigned retries = 0;
  std::optional<std::uint32_t> jobs;   // -j given to --transmit (0: all at once)
  HaltPolicy halt;

  /// How many jobs the stream carries.
  std::uint64_t transmitted() const noexcept { return input_jobs - skipped.size(); }
};

/// One job: a shell command (argv empty) or an argv run without a shell.
struct Job {
  std::uint64_t seq = 0;
  std::string command;            // the shell command; with argv: argv joined by spaces
  std::vector<std::string> argv;  // non-empty: run this instead of /bin/sh -c command
  std::vector<std::string> args;  // the job's arguments (for --tag)
};

/// The first frame of a result stream: who ran the jobs, and the header of
/// the job stream they came from (so --process knows the batch).
struct ResultsHeader {
  std::string host;  // where --worker ran
  std::int32_t pid = 0;
  JobsHeader jobs;
};

/// What became of a job on the worker.
enum class JobStatus : std::uint8_t {
  ran = 0,          // result holds what the command did
  not_run = 1,      // it could not start: problem says why
  killed = 2,       // --halt now killed it
  not_started = 3,  // --halt stopped the run before it started
};

struct JobResult {
  std::uint64_t seq = 0;
  JobStatus status = JobStatus::ran;
  std::string command;
  std::vector<std::string> args;
  std::string problem;
  pools::ProcessResult result;  // exit_code, signal, outputs, times, attempts, pid
};

/// The last frame of a result stream.
struct ResultsEnd {
  std::uint64_t results = 0;  // job_result frames sent
  std::string error;          // what was wrong with the job stream; empty: nothing
};

// ---- writing: each appends one whole frame to out ----------------------------
void append_jobs_header(std::string& out, const JobsHeader& h);
void append_job(std::string& out, const Job& j);
void append_jobs_end(std::string& out, std::uint64_t jobs);
void append_results_header(std::string& out, const ResultsHeader& h);
void append_result(std::string& out, const JobResult& r);
void append_results_end(std::string& out, const ResultsEnd& e);

// ---- payloads: decoding throws StreamError naming the field that is wrong ----
std::string encode_jobs_header(const JobsHeader& h);
JobsHeader decode_jobs_header(std::string_view payload);
ResultsHeader decode_results_header(std::string_view payload);
/// seq is the frame's task id.
Job decode_job(std::uint64_t seq, std::string_view payload);
JobResult decode_result(std::uint64_t seq, std::string_view payload);
std::uint64_t decode_jobs_end(std::string_view payload);
ResultsEnd decode_results_end(std::string_view payload);

/// Reads one stream from a descriptor, frame by frame, checking that it is
/// the kind expected and well formed. Blocks in read(2). Not thread-safe.
class StreamReader {
public:
  enum class Kind { jobs, results };
  /// `what` names the input in messages ("stdin").
  StreamReader(int fd, Kind expect, std::string what);

  /// The first frame. Throws StreamError (junk, an empty or truncated
  /// stream, the other kind of stream, another version).
  JobsHeader read_jobs_header();
  ResultsHeader read_results_header();

  /// The next job, or nullopt after the end frame. Throws StreamError for a
  /// malformed frame, or a stream that ends without its end frame.
  std::optional<Job> next_job();
  /// The next result, or nullopt after the end frame (then end() is set).
  std::optional<JobResult> next_result();
  const ResultsEnd& end() const noexcept { return end_; }

  /// While waiting for input, also watch this descriptor: once it is
  /// readable, reading throws StreamError ("stopped"). -1: none.
  void set_cancel_fd(int fd) noexcept { cancel_fd_ = fd; }

  /// Bytes of the stream taken as whole frames so far.
  std::uint64_t offset() const noexcept { return decoder_.offset(); }
  /// Job or result frames read so far.
  std::uint64_t count() const noexcept { return count_; }

private:
  /// The next frame; throws StreamError at the end of the input.
  pools::wire::Frame next_frame(std::string_view expecting);
  std::string_view read_hello_frame();
  /// The next frame of kind `item`, or nullopt after the `end` frame (its payload in end_payload).
  std::optional<pools::wire::Frame> next_item(pools::wire::FrameKind item, pools::wire::FrameKind end,
                                              std::string_view& end_payload);
  /// f(), with a StreamError it throws placed at byte `at` of the stream.
  template <class F>
  auto at_frame(std::uint64_t at, F&& f) -> decltype(f());
  [[noreturn]] void fail(const std::string& problem, std::uint64_t at) const;
  std::string stream_name() const;

  int fd_;
  int cancel_fd_ = -1;
  Kind expect_;
  std::string what_;
  pools::wire::FrameDecoder decoder_;
  std::uint64_t count_ = 0;
  std::uint64_t last_seq_ = 0;
  bool ended_ = false;
  ResultsEnd end_;
};

/// Writes all of data to fd (retrying short writes and EINTR). Returns false
/// with errno set when the write fails (EPIPE: the reader went away).
bool write_all(int fd, std::string_view data) noexcept;

}  // namespace pools_run::stream
