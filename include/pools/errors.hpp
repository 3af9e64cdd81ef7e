// The exceptions that pools raises itself; every one derives from pools::Error.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace pools {

/// Base of every error the library raises itself (bad arguments, a closed pool,
/// a cancelled task, ...). A task's own exception is rethrown as it was thrown,
/// not wrapped, by the thread and serial pools.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Thrown by wait()/wait_return() of a task that was cancelled before it started.
class Cancelled : public Error {
public:
  using Error::Error;
};

/// Thrown by wait()/wait_return() of a task that never ran because a task it
/// depended on failed, was cancelled or was skipped (add_task_after), or
/// because an earlier task of its failure-domain group failed (groups.hpp).
class Skipped : public Error {
public:
  using Error::Error;
  /// A task of `group` skipped because `cause`, a task of the same group, failed.
  Skipped(const std::string& what, std::string group, std::string cause)
      : Error(what), group_(std::move(group)), cause_(std::move(cause)) {}
  /// The group whose failure skipped the task; empty when a dependency skipped it.
  const std::string& group() const noexcept { return group_; }
  /// The name of the failed task of the group; empty when a dependency skipped it.
  const std::string& cause() const noexcept { return cause_; }

private:
  std::string group_, cause_;
};

/// A task that ran in another process (multiprocess pool) or on another rank
/// (cluster pool) threw. Exceptions cannot cross a process, so this carries
/// what can: the original type's name and what() (both also in this what()),
/// and where it ran.
class RemoteError : public Error {
public:
  RemoteError(std::string remote_type, std::string remote_what, int pid, std::string host,
              int rank = -1);
  /// The type of the exception the task threw, demangled ("std::out_of_range").
  const std::string& remote_type() const noexcept { return remote_type_; }
  /// Its what().
  const std::string& remote_what() const noexcept { return remote_what_; }
  /// The worker process it ran in, the host, and for the cluster pool the rank (else -1).
  int pid() const noexcept { return pid_; }
  const std::string& host() const noexcept { return host_; }
  int rank() const noexcept { return rank_; }

private:
  std::string remote_type_, remote_what_, host_;
  int pid_, rank_;
};

/// The worker process (or rank) running the task died: a crash, abort(),
/// _Exit(), the out-of-memory killer, kill -9, or the pool's timeout for the
/// task. Only the task it was running fails; the worker is replaced.
class WorkerLost : public Error {
public:
  /// `signal` 0 means it exited with `exit_status`; `exit_status` -1 means it
  /// was killed by `signal`.
  WorkerLost(const std::string& what, int pid, int signal, int exit_status, bool timed_out = false);
  int pid() const noexcept { return pid_; }
  int signal() const noexcept { return signal_; }
  int exit_status() const noexcept { return exit_status_; }
  /// True when the pool killed the worker because the task exceeded its timeout.
  bool timed_out() const noexcept { return timed_out_; }

private:
  int pid_, signal_, exit_status_;
  bool timed_out_;
};

}  // namespace pools
