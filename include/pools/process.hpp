// Running commands: the options, the result, the error and the task handle of
// PoolBase::add_process. Every pool kind runs commands; the process pool
// (get_process_pool) is built for running many at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>

#include <pools/errors.hpp>
#include <pools/task.hpp>

namespace pools {

namespace detail {
struct PoolAccess;
}

/// How to run one command. The defaults run it like a shell would, in the
/// caller's directory and environment, with stdin from /dev/null.
struct ProcessOptions {
  /// Fail the task (wait() throws pools::ProcessError) when the command exits
  /// non-zero, is killed by a signal or times out. Off: the task succeeds and
  /// result() tells what happened.
  bool check = true;
  /// Working directory of the command; empty: the caller's.
  std::string cwd;
  /// Variables set for the command, added to the caller's environment, or
  /// replacing it entirely when replace_env is true.
  std::map<std::string, std::string> env;
  bool replace_env = false;
  /// Written to the command's stdin, which is then closed. None: /dev/null.
  std::optional<std::string> stdin_text;
  /// Kill the command (its whole process group) when it runs longer; zero: never.
  std::chrono::nanoseconds timeout{0};
  /// How long a command has to exit after SIGTERM (timeout, cancel, Ctrl-C)
  /// before its process group gets SIGKILL.
  std::chrono::nanoseconds kill_grace = std::chrono::seconds(2);
  /// Send stderr to the same pipe as stdout (result().stderr_text stays empty).
  bool merge_stderr = false;
  /// Read the command's stdout and stderr into the result (wait_return() is
  /// its stdout). Off: the command writes to this program's own stdout and
  /// stderr (on a multiprocess or cluster pool, the worker's), as a shell
  /// runs it: its output shows as it comes, the result's texts stay empty,
  /// and its task ends when it exits, even if a process it left behind still
  /// holds them open. merge_stderr then sends its stderr to our stdout.
  bool capture_output = true;
  /// Close every descriptor beyond stdin, stdout and stderr in the command,
  /// as Python's subprocess does: a socket or file the program opened
  /// without O_CLOEXEC does not leak into (and is not held open by) its
  /// commands. Off: the command inherits them, as with posix_spawn or a shell
  /// (to pass a descriptor on). Kernels before Linux 5.11 inherit them anyway.
  bool close_fds = true;
  /// Keep at most this many bytes of each stream (the rest is read and
  /// dropped, and the result says it was truncated); zero: keep everything.
  std::size_t max_output = 0;
  /// Run the command again, up to this many more times, when it exits
  /// non-zero, is killed by a signal or times out.
  unsigned retries = 0;
};

/// What a command did. For a command that was retried, the last attempt.
struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // 0 unless killed by a signal
  std::string stdout_text, stderr_text;
  std::chrono::nanoseconds elapsed{0};  // of the last attempt, spawn to exit
  // Additions to the design brief's fields:
  std::string command;        // as given: the shell string, or the argv joined by spaces
  unsigned attempts = 0;      // 1 + the retries it took
  bool timed_out = false;     // the last attempt was killed for running too long
  bool stdout_truncated = false, stderr_truncated = false;  // max_output was reached
  std::chrono::system_clock::time_point started{};  // wall clock at the last spawn
  int pid = 0;                                       // of the last attempt

  /// Exited with status 0 (not signalled, not timed out).
  bool succeeded() const noexcept { return exit_code == 0 && signal == 0 && !timed_out; }
};

/// A command that exited non-zero, was killed, timed out (with check on), or
/// could not start at all (exit_code() -1, signal() 0; what() says why).
class ProcessError : public Error {
public:
  ProcessError(const std::string& what, std::string command, int exit_code, int signal,
               std::string stderr_text, bool timed_out = false);
  int exit_code() const noexcept { return exit_code_; }
  int signal() const noexcept { return signal_; }
  const std::string& stderr_text() const noexcept { return stderr_text_; }
  const std::string& command() const noexcept { return command_; }
  bool timed_out() const noexcept { return timed_out_; }

private:
  std::string command_;
  std::string stderr_text_;
  int exit_code_;
  int signal_;
  bool timed_out_;
};

/// The handle add_process returns: wait_return() is the command's stdout.
/// cancel() also stops a command that is already running: its process group is
/// terminated and wait() throws pools::Cancelled.
class ProcessTask : public Task<std::string> {
public:
  ProcessTask() noexcept = default;

  /// Waits, then returns what the command did; does not throw for a non-zero
  /// exit, a signal or a timeout. Throws the task's failure when the command
  /// never ran (it could not start, or was cancelled before it started).
  /// Counts as looking at a failure: it is not reported at shutdown.
  const ProcessResult& result() const&;
  /// On a temporary handle (`pool.add_process(...).result()`): a copy, which
  /// outlives the handle and the task.
  ProcessResult result() const&& { return static_cast<const ProcessTask&>(*this).result(); }

private:
  explicit ProcessTask(detail::TaskState* adopted) noexcept : Task<std::string>() {
    s_ = adopted;
  }
  friend class PoolBase;
  friend struct detail::PoolAccess;
};

}  // namespace pools
