#include "multiprocess/fork_server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio_ext.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include <fmt/core.h>
#include <pools/errors.hpp>

#include "core/diag.hpp"
#include "multiprocess/worker.hpp"

namespace pools::detail {
namespace {

// Messages on the control socket (SOCK_SEQPACKET keeps their boundaries).
enum : std::uint32_t { msg_spawn = 1, msg_spawned = 2, msg_exited = 3 };
struct Notice {
  std::uint32_t type;
  std::int32_t pid;    // the worker (msg_spawned: -errno when fork failed)
  std::int32_t value;  // msg_exited: the wait status
};
constexpr std::size_t max_request = 1 << 20;

bool worker_process = false;

void send_notice(int control, std::uint32_t type, std::int32_t pid, std::int32_t value) {
  const Notice n{type, pid, value};
  if (::send(control, &n, sizeof n, MSG_NOSIGNAL) < 0 && errno != EINTR) _exit(0);  // parent gone
}

// The server's loop, in the forked child. Single-threaded; never returns.
[[noreturn]] void serve(int control) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_SETMASK, &chld, nullptr);
  const int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) _exit(1);
  std::string request(max_request, '\0');
  for (;;) {
    pollfd fds[2] = {{control, POLLIN, 0}, {sigfd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(sigfd, &info, sizeof info) > 0) {
      }
      int status = 0;
      pid_t pid;
      while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) send_notice(control, msg_exited, pid, status);
    }
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    iovec iov{request.data(), request.size()};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    const ssize_t n = ::recvmsg(control, &msg, MSG_CMSG_CLOEXEC);
    if (n == 0) _exit(0);  // the program is gone; workers follow (PDEATHSIG)
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      _exit(0);
    }
    int socket = -1;
    if (cmsghdr* c = CMSG_FIRSTHDR(&msg); c && c->cmsg_type == SCM_RIGHTS)
      std::memcpy(&socket, CMSG_DATA(c), sizeof socket);
    std::uint32_t type = 0;
    if (static_cast<std::size_t>(n) >= sizeof type) std::memcpy(&type, request.data(), sizeof type);
    if (type != msg_spawn || socket < 0) {
      if (socket >= 0) ::close(socket);
      send_notice(control, msg_spawned, -EINVAL, 0);
      continue;
    }
    const pid_t server = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(control);
      ::close(sigfd);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      run_worker(socket, std::string_view(request.data() + sizeof type, n - sizeof type), server);
    }
    ::close(socket);
    send_notice(control, msg_spawned, pid < 0 ? -errno : pid, 0);
  }
}

// In the child of the program: leave the program's terminal signals, its
// descriptors and its stdio buffers behind, then serve.
[[noreturn]] void become_server(int control) {
  worker_process = true;
  // Its own process group: Ctrl-C reaches the program, not the workers; they
  // follow the program when it goes (EOF here, then PDEATHSIG).
  ::setpgid(0, 0);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler != SIG_DFL &&
        old.sa_handler != SIG_IGN)
      ::signal(sig, SIG_DFL);
  }
  ::signal(SIGPIPE, SIG_IGN);
  // Keep 0-2 and the control socket (moved to 3): a copy of any other
  // descriptor (a pipe a command is writing to, say) would keep it open.
  if (control != 3) {
    if (::dup2(control, 3) < 0) _exit(1);
    control = 3;
  }
  ::close_range(4, ~0U, 0);
  __fpurge(stdout);
  __fpurge(stderr);
  serve(control);
}

}  // namespace

bool in_worker_process() noexcept { return worker_process; }

ForkServer& ForkServer::instance() {
  static auto* s = new ForkServer;  // never destroyed: pools close at exit after statics
  return *s;
}

void ForkServer::start_early() {
  ForkServer& s = instance();
  std::lock_guard lock(s.mutex_);
  s.ensure_running();
}

void ForkServer::forget_after_fork() noexcept {
  ForkServer& s = instance();
  ::new (&s.mutex_) std::mutex;
  s.control_ = -1;
  s.pid_ = 0;
  s.exits_.clear();
}

void ForkServer::ensure_running() {
  if (pid_ > 0) {
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == 0) return;  // still there
    diag("fork server {} is gone; starting another", pid_);
    ::close(control_);
    control_ = -1;
    pid_ = 0;
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    throw Error(fmt::format("cannot start the fork server: socketpair: {}", std::strerror(errno)));
  std::fflush(nullptr);  // so that no buffered output is copied into the server
  pid_t pid = -1;
  int fork_errno = 0;
  // Forked from a fresh thread: the server starts with none of the calling
  // thread's state (a pool worker's thread-locals, say).
  std::thread([&] {
    pid = ::fork();
    if (pid == 0) {
      ::close(sv[0]);
      become_server(sv[1]);
    }
    fork_errno = errno;
  }).join();
  ::close(sv[1]);
  if (pid < 0) {
    ::close(sv[0]);
    throw Error(fmt::format("cannot start the fork server: fork: {}", std::strerror(fork_errno)));
  }
  control_ = sv[0];
  pid_ = pid;
  diag("fork server started: pid {}", pid_);
}

bool ForkServer::read_message(int timeout_ms, pid_t* spawned, int* spawn_errno) {
  pollfd p{control_, POLLIN, 0};
  const int r = ::poll(&p, 1, timeout_ms);
  if (r <= 0) return false;
  Notice n{};
  const ssize_t got = ::recv(control_, &n, sizeof n, 0);
  if (got != static_cast<ssize_t>(sizeof n)) {
    if (got < 0 && errno == EINTR) return false;
    // The server is gone: whoever waits learns it from ensure_running.
    throw Error("the fork server stopped answering");
  }
  if (n.type == msg_exited) {
    WorkerExit e;
    e.known = true;
    if (WIFSIGNALED(n.value)) {
      e.signal = WTERMSIG(n.value);
    } else {
      e.exit_status = WEXITSTATUS(n.value);
    }
    exits_[n.pid] = e;
  } else if (n.type == msg_spawned) {
    if (n.pid < 0) {
      *spawn_errno = -n.pid;
    } else {
      *spawned = n.pid;
    }
  }
  return true;
}

pid_t ForkServer::spawn(int socket, const std::string& config) {
  if (config.size() + 4 > max_request) throw Error("worker configuration too large");
  std::lock_guard lock(mutex_);
  for (int attempt = 0;; ++attempt) {
    ensure_running();
    std::string request(4, '\0');
    const std::uint32_t type = msg_spawn;
    std::memcpy(request.data(), &type, 4);
    request += config;
    iovec iov{request.data(), request.size()};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &socket, sizeof socket);
    if (::sendmsg(control_, &msg, MSG_NOSIGNAL) < 0) {
      if (attempt == 0 && (errno == EPIPE || errno == ECONNRESET)) continue;  // restart it
      throw Error(fmt::format("cannot reach the fork server: {}", std::strerror(errno)));
    }
    pid_t pid = 0;
    int err = 0;
    try {
      while (pid == 0 && err == 0) read_message(-1, &pid, &err);
    } catch (const Error&) {
      if (attempt == 0) continue;
      throw;
    }
    if (err) throw Error(fmt::format("cannot start a worker process: fork: {}", std::strerror(err)));
    return pid;
  }
}

WorkerExit ForkServer::wait_exit(pid_t pid, int timeout_ms) {
  std::lock_guard lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (auto it = exits_.find(pid); it != exits_.end()) {
      WorkerExit e = it->second;
      exits_.erase(it);
      return e;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0 || control_ < 0) return {};
    pid_t ignored_pid = 0;
    int ignored_err = 0;
    try {
      read_message(static_cast<int>(left), &ignored_pid, &ignored_err);
    } catch (const Error&) {
      return {};
    }
  }
}

}  // namespace pools::detail
