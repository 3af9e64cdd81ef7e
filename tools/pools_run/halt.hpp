// --halt (when to stop early) and the exit status, as GNU parallel has them.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pools_run {

/// A --halt value that cannot be parsed.
class HaltError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct HaltPolicy {
  enum class When { never, soon, now } when = When::never;
  enum class Why { fail, success, done } why = Why::fail;
  double threshold = 0;   // a count, or a percentage when percent is true
  bool percent = false;

  /// Parses "now,fail=1", "soon,success=30%", "now,done=3", and GNU parallel's
  /// old forms 0, 1, 2, -1, -2 and "1-99%". Throws HaltError.
  static HaltPolicy parse(std::string_view text);

  /// Whether the counts so far meet the condition (never: false).
  bool triggered(std::uint64_t succeeded, std::uint64_t failed, std::uint64_t total) const;

  /// "fail", "success" or "done", for messages.
  std::string_view why_name() const noexcept;
};

/// The tallies the exit status depends on.
struct Outcome {
  std::uint64_t succeeded = 0, failed = 0, total = 0;
  bool halted = false;                 // the --halt condition was met
  std::optional<int> halting_exit;     // exit code of the job that met fail=1
};

/// GNU parallel's exit status: 0 when no job failed (or when a success=
/// condition halted the run), otherwise the number of failed jobs, 101 for
/// more than 100; with fail=Y% (halted or not) the percentage of all jobs
/// that failed, rounded; with fail=1 the exit code of the failing job.
int exit_status(const HaltPolicy& policy, const Outcome& o);

/// Exit status for usage and other errors.
inline constexpr int exit_error = 255;

}  // namespace pools_run
