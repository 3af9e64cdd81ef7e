// GNU parallel's joblog: writing it, and reading it back for --resume.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pools_run {

/// A joblog that cannot be used for --resume (unreadable, not a joblog).
class JoblogError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The first line of every joblog.
inline constexpr std::string_view joblog_header =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";

/// One line of a joblog.
struct JoblogEntry {
  std::uint64_t seq = 0;
  std::string host = ":";  // where the job ran: ":" is this machine (as GNU parallel)
  std::chrono::system_clock::time_point start{};
  std::chrono::nanoseconds runtime{0};
  std::uint64_t received = 0;  // bytes of stdout
  int exitval = 0;             // -1: killed (timed out, interrupted)
  int signal = 0;
  std::string command;
};

/// The line (without '\n') exactly as GNU parallel writes it:
/// "1\t:\t1700000000.123\t     0.004\t0\t2\t0\t0\techo a". A newline in the
/// command is written as the two characters \n, keeping one job per line.
std::string format_joblog_line(const JoblogEntry& e);

/// What a joblog says about the jobs already run, by sequence number.
struct JoblogState {
  /// Seq -> true when some line for it shows success (exit 0, no signal).
  std::map<std::uint64_t, bool> seen;

  /// Whether job `seq` is skipped: with --resume when it appears at all,
  /// with --resume-failed when it succeeded at least once.
  bool done(std::uint64_t seq, bool resume_failed) const;
};

/// Parses a joblog's text. Throws JoblogError (naming `name` and the line)
/// when the first line is not the header or a line does not start with a
/// sequence number and a tab. Lines cut short after the sequence number
/// (a joblog written by a program that was killed) count as failed runs.
JoblogState parse_joblog(std::string_view text, const std::string& name);

/// Reads and parses a joblog file; a missing or empty file is an empty state.
/// Throws JoblogError when it exists but cannot be read, or is not a joblog.
JoblogState read_joblog(const std::string& path);

}  // namespace pools_run
