// Starting one command: its pipes, the child's set-up between vfork and exec,
// and why it could not start. The engine (process_engine.cpp) decides when,
// and on which thread, and watches the command once it runs.
#pragma once

#include <chrono>
#include <string>
#include <utility>

#include <sys/types.h>
#include <unistd.h>

#include "process/process_node.hpp"

namespace pools::detail {

// A descriptor that closes itself.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(std::exchange(o.fd, -1));
    return *this;
  }
  ~Fd() { reset(); }
  void reset(int f = -1) noexcept {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
  int release() noexcept { return std::exchange(fd, -1); }
};

// Keeps fd away from 0-2, which the child's stdio is dup2'ed onto (closes fd
// when it moves it); -1 with errno set on failure.
int above_stdio(int fd);

// {read end, write end}, both close-on-exec; errno set on failure.
bool make_pipe(Fd& read_end, Fd& write_end);

// A child that was started, or why it was not.
struct Spawned {
  pid_t pid = -1;
  Fd out, err, in;  // our ends; none without capture_output, err none with merge_stderr,
                    // in none without stdin_text
  std::string error;
  std::chrono::system_clock::time_point started;
  std::chrono::steady_clock::time_point spawned;
  bool exited = false;  // reaped by the spawner that waited for it
  int wait_status = 0;
};

// Starts spec's command with stdin on null_fd unless it has stdin_text; with
// normal_policy, the child sets itself to SCHED_OTHER before exec (the spawner
// that calls this runs SCHED_BATCH around vfork). Runs on a spawner thread:
// vfork suspends the calling thread until the child has exec'ed.
Spawned spawn_command(const ProcessSpec& spec, int null_fd, bool normal_policy);

}  // namespace pools::detail
