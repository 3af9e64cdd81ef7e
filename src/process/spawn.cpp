// Starting one command (see spawn.hpp): Boost.Process with vfork, and the
// child's set-up between vfork and exec.
// Boost.Process 1.74 hides its vfork launcher behind a test of old feature
// macros that glibc no longer matches; Linux has vfork.
#define BOOST_POSIX_HAS_VFORK 1
#include "process/spawn.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <boost/process/child.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/posix.hpp>
#include <fmt/core.h>

#include "process/program_path.hpp"

extern char** environ;

namespace pools::detail {
namespace {

namespace bp = boost::process;

// argv[0] looked up as execvp does, in the PATH the child will get.
// Empty with `why` set when there is nothing to run.
std::string find_on_path(const std::string& name, const ProcessOptions& o, std::string& why) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = nullptr;
  if (auto it = o.env.find("PATH"); it != o.env.end()) path = it->second.c_str();
  else if (!o.replace_env) path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/bin:/usr/bin";
  // Remembered per spawner thread, as a shell hashes commands: a hit costs one
  // access() instead of a stat per PATH entry.
  thread_local std::unordered_map<std::string, std::string> found;
  std::string key = fmt::format("{}\n{}", name, dirs);
  if (auto it = found.find(key); it != found.end()) {
    if (::access(it->second.c_str(), X_OK) == 0) return it->second;
    found.erase(it);
  }
  bool denied = false;
  std::string file = search_path(name, dirs, &denied);
  if (!file.empty()) {
    if (found.size() > 1024) found.clear();
    found.emplace(std::move(key), file);
    return file;
  }
  why = denied ? "permission denied (found on PATH, but not executable)"
               : fmt::format("command not found (PATH={})", path ? path : "/bin:/usr/bin");
  return {};
}

// "KEY=VALUE" strings of the child's environment (empty: inherit ours).
std::vector<std::string> child_environment(const ProcessOptions& o) {
  std::vector<std::string> out;
  if (o.env.empty() && !o.replace_env) return out;
  if (!o.replace_env) {
    for (char** e = environ; e && *e; ++e) {
      std::string_view entry(*e);
      const std::string_view key = entry.substr(0, entry.find('='));
      if (!o.env.count(std::string(key))) out.emplace_back(entry);
    }
  }
  for (const auto& [k, v] : o.env) out.push_back(k + "=" + v);
  return out;
}

std::vector<char*> pointers_to(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// What the child reports through its error pipe when it cannot run the command.
enum class ChildStep : int { exec, setpgid, dup2, chdir };
struct ChildFailure {
  int error;
  ChildStep step;
};

// The Boost.Process extension that sets up the child between vfork and exec,
// and execs the command itself. It runs in the vfork child, which shares our
// memory: only system calls here. A failure is written to that memory and,
// when there is one (see vfork_may_be_fork), to the error pipe, which stays
// empty and closes on a successful exec (O_CLOEXEC).
struct ChildSetup : bp::extend::handler {
  const char* exe = nullptr;
  char** argv = nullptr;
  char** envp = nullptr;
  const char* cwd = nullptr;
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1, error_fd = -1;
  bool normal_policy = false;  // the spawner runs SCHED_BATCH; the command must not
  bool close_fds = true;       // every descriptor beyond 0-2 closes at exec
  pid_t parent = 0;
  // The pid Boost.Process gives up on when it reports an error (to reap it).
  pid_t failed_pid = -1;
  // Written by the child. Under a real vfork it shares our memory and we run
  // again only once it has exec'ed or exited, so these tell at once what
  // happened; reading the error pipe would wait a second time, until the
  // kernel closes the child's close-on-exec descriptors after the exec. Under
  // fork (ThreadSanitizer's substitute for vfork) child_ran stays false here.
  std::atomic<bool> child_ran{false};
  std::atomic<bool> child_failed{false};
  ChildFailure failure{};

  template <class Executor>
  void on_setup(Executor& e) {
    e.exe = exe;
    e.cmd_line = argv;
    e.env = envp;
  }

  template <class Executor>
  void on_exec_setup(Executor&) {
    child_ran.store(true, std::memory_order_relaxed);
    // Own process group: the whole command can be signalled at once, and a
    // Ctrl-C at the terminal reaches only us, who then decide.
    if (::setpgid(0, 0) != 0) fail(ChildStep::setpgid);
    // Die with us, even when we are killed with SIGKILL.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    reset_signal_handlers();
    if (normal_policy) {
      sched_param normal{};
      ::sched_setscheduler(0, SCHED_OTHER, &normal);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(stdin_fd, 0) < 0 || ::dup2(stdout_fd, 1) < 0 || ::dup2(stderr_fd, 2) < 0)
      fail(ChildStep::dup2);
    // Close-on-exec rather than closed: the error pipe must outlive a failed
    // exec. One system call (Linux 5.11); an older kernel leaves them open.
    if (close_fds) ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    if (cwd && ::chdir(cwd) != 0) fail(ChildStep::chdir);
    ::execve(exe, argv, envp);
    fail(ChildStep::exec);
  }

  // exec resets caught signals to the default by itself. Before it, in this
  // vfork child that shares our memory, no handler of ours may run once the
  // mask is emptied. Only two kinds of signal can still arrive here: one sent
  // to our process group before setpgid (pending now: then every handler is
  // reset, as posix_spawn does) and one sent to every process (kill -1, at
  // shutdown: the termination signals). Looking at all 64 costs ~20 µs per
  // command, a tenth of the rate at J = 2 (docs/performance.md).
  void reset_signal_handlers() {
    auto reset = [](int sig) {
      struct sigaction old {};
      if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler == SIG_DFL) return;
      // Ignored signals stay ignored across exec (nohup relies on that), but
      // SIGPIPE, which a program ignores for itself, not for its commands.
      if (old.sa_handler == SIG_IGN && sig != SIGPIPE) return;
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(sig, &dfl, nullptr);
    };
    sigset_t pending;
    if (::sigpending(&pending) != 0 || !sigisemptyset(&pending)) {
      for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) reset(sig);
      return;
    }
    for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE}) reset(sig);
  }

  template <class Executor>
  void on_error(Executor& e, const std::error_code&) {
    failed_pid = e.pid;
  }

  [[noreturn]] void fail(ChildStep step) {
    const ChildFailure f{errno, step};
    failure = f;
    child_failed.store(true, std::memory_order_relaxed);
    if (error_fd >= 0) {
      [[maybe_unused]] auto n = ::write(error_fd, &f, sizeof f);
    }
    ::_exit(127);
  }
};

// Under ThreadSanitizer vfork is fork: the child's memory is its own, so what
// it could not do reaches us only through an error pipe. Under a real vfork
// the shared memory says it, and the pipe is not made (a pipe costs a few
// system calls per command). g++ only: clang cannot build the library.
#if defined(__SANITIZE_THREAD__)
constexpr bool vfork_may_be_fork = true;
#else
constexpr bool vfork_may_be_fork = false;
#endif

// Why a child could not run its command, for the task's error.
std::string describe_child_failure(const ChildFailure& f, const std::string& exe,
                                   const ProcessOptions& o) {
  const char* why = std::strerror(f.error);
  switch (f.step) {
    case ChildStep::exec: return fmt::format("cannot execute '{}': {}", exe, why);
    case ChildStep::chdir: return fmt::format("cannot change directory to '{}': {}", o.cwd, why);
    case ChildStep::setpgid: return fmt::format("cannot make a process group: {}", why);
    case ChildStep::dup2: return fmt::format("cannot set up stdin/stdout/stderr: {}", why);
  }
  return why;
}

}  // namespace

int above_stdio(int fd) {
  if (fd > 2) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int err = errno;
  ::close(fd);
  errno = err;
  return moved;
}

bool make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end.reset(above_stdio(fds[0]));
  write_end.reset(above_stdio(fds[1]));
  return read_end.fd >= 0 && write_end.fd >= 0;
}

Spawned spawn_command(const ProcessSpec& spec, int null_fd, bool normal_policy) {
  Spawned out;
  const ProcessOptions& o = spec.options;
  std::string exe = find_on_path(spec.argv[0], o, out.error);
  if (exe.empty()) return out;

  Fd out_w, err_w, in_r, error_r, error_w;
  const bool capture = o.capture_output;
  if ((capture && (!make_pipe(out.out, out_w) || (!o.merge_stderr && !make_pipe(out.err, err_w)))) ||
      (o.stdin_text && !make_pipe(in_r, out.in)) ||
      (vfork_may_be_fork && !make_pipe(error_r, error_w))) {
    out.error = fmt::format("cannot make a pipe: {}", std::strerror(errno));
    return out;
  }
  // Our read ends never block (Job::read reads until EAGAIN); the child's ends do.
  if (out.out.fd >= 0) ::fcntl(out.out.fd, F_SETFL, O_NONBLOCK);
  if (out.err.fd >= 0) ::fcntl(out.err.fd, F_SETFL, O_NONBLOCK);
  // Not captured: our own stdout and stderr, or /dev/null where we have none.
  auto own = [null_fd](int fd) { return ::fcntl(fd, F_GETFD) >= 0 ? fd : null_fd; };
  const int child_out = capture ? out_w.fd : own(STDOUT_FILENO);
  const int child_err = o.merge_stderr ? child_out : capture ? err_w.fd : own(STDERR_FILENO);
  std::vector<std::string> argv_strings = spec.argv;
  std::vector<char*> argv = pointers_to(argv_strings);
  std::vector<std::string> env_strings = child_environment(o);
  std::vector<char*> envp = pointers_to(env_strings);

  ChildSetup setup;
  setup.exe = exe.c_str();
  setup.argv = argv.data();
  setup.envp = env_strings.empty() && !o.replace_env ? environ : envp.data();
  setup.cwd = o.cwd.empty() ? nullptr : o.cwd.c_str();
  setup.stdin_fd = o.stdin_text ? in_r.fd : null_fd;
  setup.stdout_fd = child_out;
  setup.stderr_fd = child_err;
  setup.error_fd = error_w.fd;
  setup.parent = ::getpid();
  setup.normal_policy = normal_policy;
  setup.close_fds = o.close_fds;

  std::error_code ec;
  out.started = std::chrono::system_clock::now();
  out.spawned = std::chrono::steady_clock::now();
  bp::child child(setup, bp::posix::use_vfork, ec);
  error_w.reset();
  if (ec) {
    if (setup.failed_pid > 0) ::waitpid(setup.failed_pid, nullptr, 0);
    out.error = fmt::format("cannot start a process: {}", ec.message());
    return out;
  }
  bool failed = false;
  if (setup.child_ran.load(std::memory_order_relaxed)) {
    failed = setup.child_failed.load(std::memory_order_relaxed);
  } else if (error_r.fd >= 0) {
    ssize_t got;
    do {
      got = ::read(error_r.fd, &setup.failure, sizeof setup.failure);  // EOF after a good exec
    } while (got < 0 && errno == EINTR);
    failed = got == sizeof setup.failure;
  }
  if (failed) {
    ::waitpid(child.id(), nullptr, 0);  // it exited with 127
    child.detach();
    out.error = describe_child_failure(setup.failure, exe, o);
    return out;
  }
  out.pid = child.id();
  child.detach();  // ours to reap
  return out;
}

}  // namespace pools::detail
