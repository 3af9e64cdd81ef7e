// The fork server: a small process forked from the program once (by
// pools::init, or at the first multiprocess pool), which forks every worker
// process on request. Workers so start from the program's state at that early
// point, and never from a copy of a busy, many-threaded program (where a lock
// held by another thread at fork time would stay locked forever in the child).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace pools::detail {

/// How a worker process ended, as waitpid reported it.
struct WorkerExit {
  bool known = false;  // false: the fork server could not tell (it is gone)
  int exit_status = -1;
  int signal = 0;
};

class ForkServer {
public:
  /// The process-wide server, started on first use. Thread-safe.
  static ForkServer& instance();
  /// Starts the server now if it is not running (pools::init calls this).
  static void start_early();
  /// In a worker: the copy of the program's server connection is not ours
  /// (its descriptor number may now be another file); a multiprocess pool
  /// made by a task in the worker starts a server of its own.
  static void forget_after_fork() noexcept;

  /// Forks a worker that runs run_worker(socket, config) (see worker.hpp).
  /// `socket` is the worker's end of its connection; the caller keeps the
  /// other and closes this one afterwards. Returns the worker's pid. Throws
  /// pools::Error when no worker could be made.
  pid_t spawn(int socket, const std::string& config);

  /// Waits up to timeout_ms for the worker's exit status.
  WorkerExit wait_exit(pid_t pid, int timeout_ms);

  /// The pid of the server (0 before it started).
  pid_t pid() const noexcept { return pid_; }

private:
  ForkServer() = default;
  void ensure_running();  // with mutex_ held
  // Reads one message from the server (waiting up to timeout_ms). Exit
  // notices are filed in exits_; a spawn reply is returned through the args.
  bool read_message(int timeout_ms, pid_t* spawned, int* spawn_errno);

  std::mutex mutex_;
  int control_ = -1;
  pid_t pid_ = 0;
  std::map<pid_t, WorkerExit> exits_;
};

/// True in a worker process (and in the fork server).
bool in_worker_process() noexcept;

}  // namespace pools::detail
