// The command engine: one Asio event loop per engine, on its own thread, and
// a few launcher threads that start and reap the children.
//
// Why it is built this way (see docs/process-pool.md):
// - Children start with Boost.Process and vfork (the parent's page tables are
//   not copied) on launcher threads, as many as there are cores (at most 8):
//   vfork holds the calling thread until the child has exec'ed, and the loop
//   must go on draining pipes meanwhile.
// - Each launcher reaps its own children, by pid: it sees their exits through
//   pidfds in its own epoll set (no SIGCHLD handler, no thread per child) and
//   fills the freed slot itself at once, without waking another thread first.
//   The loop drains pipes, feeds stdin, runs timeouts and kills, and settles
//   tasks; it learns of starts and exits from the launchers' posts.
// - Our pipes are made with O_CLOEXEC, so a child spawned at the same moment
//   from another engine cannot inherit them (Boost.Process v1's pipes are not).
// - The loop's and launchers' threads block every signal (the launchers all
//   but SIGCHLD, see start_launcher), so a child starts with a clean mask
//   that we set ourselves, and a write to a closed stdin gives EPIPE rather
//   than killing the program.
#define BOOST_ASIO_DISABLE_CO_AWAIT 1
// Boost.Process 1.74 hides its vfork launcher behind a test of old feature
// macros that glibc no longer matches; Linux has vfork.
#define BOOST_POSIX_HAS_VFORK 1
#include "process/process_engine.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/process/child.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/posix.hpp>
#include <fmt/core.h>

#include <pools/errors.hpp>

#include "core/diag.hpp"
#include "process/process_node.hpp"
#include "process/program_path.hpp"
#include "process/termination_signals.hpp"

extern char** environ;

namespace pools::detail {
namespace {

namespace asio = boost::asio;
namespace bp = boost::process;
using Clock = std::chrono::steady_clock;

constexpr std::size_t read_chunk = 64 * 1024;
// Launcher threads per engine at most (each waits in vfork until its child
// has exec'ed); more than this gains nothing on machines we know.
constexpr std::size_t max_launchers = 8;
// After SIGKILL, how long a pipe may stay open (held by a process that left
// the group) before the engine stops reading it.
constexpr auto abandon_after = std::chrono::seconds(1);

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

// Keeps fd away from 0-2, which the child's stdio is dup2'ed onto.
int above_stdio(int fd) {
  if (fd > 2) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int err = errno;
  ::close(fd);
  errno = err;
  return moved;
}

// {read end, write end}, both close-on-exec; errno set on failure.
bool make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end.reset(above_stdio(fds[0]));
  write_end.reset(above_stdio(fds[1]));
  return read_end.fd >= 0 && write_end.fd >= 0;
}

// argv[0] looked up as execvp does, in the PATH the child will get.
// Empty with `why` set when there is nothing to run.
std::string find_on_path(const std::string& name, const ProcessOptions& o, std::string& why) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = nullptr;
  if (auto it = o.env.find("PATH"); it != o.env.end()) path = it->second.c_str();
  else if (!o.replace_env) path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/bin:/usr/bin";
  // Remembered per launcher thread, as a shell hashes commands: a hit costs one
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
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(stdin_fd, 0) < 0 || ::dup2(stdout_fd, 1) < 0 || ::dup2(stderr_fd, 2) < 0)
      fail(ChildStep::dup2);
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
// system calls per command).
#if defined(__SANITIZE_THREAD__)
constexpr bool vfork_may_be_fork = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool vfork_may_be_fork = true;
#else
constexpr bool vfork_may_be_fork = false;
#endif
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

// A child that was started, or why it was not.
struct Spawned {
  pid_t pid = -1;
  Fd out, err, in;  // our ends; err closed with merge_stderr, in without stdin_text
  std::string error;
  std::chrono::system_clock::time_point started;
  Clock::time_point spawned;
};

// Starts spec's command. Runs on a launcher thread: vfork suspends the calling
// thread until the child has exec'ed, so several threads start children at
// once while the event loop keeps draining pipes.
Spawned spawn_command(const ProcessSpec& spec, int null_fd) {
  Spawned out;
  const ProcessOptions& o = spec.options;
  std::string exe = find_on_path(spec.argv[0], o, out.error);
  if (exe.empty()) return out;

  Fd out_w, err_w, in_r, error_r, error_w;
  if (!make_pipe(out.out, out_w) || (!o.merge_stderr && !make_pipe(out.err, err_w)) ||
      (o.stdin_text && !make_pipe(in_r, out.in)) ||
      (vfork_may_be_fork && !make_pipe(error_r, error_w))) {
    out.error = fmt::format("cannot make a pipe: {}", std::strerror(errno));
    return out;
  }
  // Our read ends never block (Job::read reads until EAGAIN); the child's ends do.
  ::fcntl(out.out.fd, F_SETFL, O_NONBLOCK);
  if (out.err.fd >= 0) ::fcntl(out.err.fd, F_SETFL, O_NONBLOCK);
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
  setup.stdout_fd = out_w.fd;
  setup.stderr_fd = o.merge_stderr ? out_w.fd : err_w.fd;
  setup.error_fd = error_w.fd;
  setup.parent = ::getpid();

  std::error_code ec;
  out.started = std::chrono::system_clock::now();
  out.spawned = Clock::now();
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

// A command handed to the launchers (FIFO).
struct Pending {
  ProcessNode* node = nullptr;
  bool claim = false;           // still pending: claimed (try_start) when its turn comes
  std::uint64_t cancel_round = 0;  // cancel_all calls made before a launcher took it
};

// What a launcher made of a Pending, for the loop.
struct Launched {
  enum class What { spawned, cancelled_while_queued, interrupted, failed };
  Pending pending;
  What what = What::failed;
  Spawned child;  // spawned: the child; failed: child.error says why
};

// A child a launcher reaped, for the loop.
struct Exited {
  ProcessNode* node = nullptr;
  int wait_status = 0;
  Clock::duration elapsed{};
};

// How long a launcher may keep what it started before telling the loop: a
// command that exits sooner is told in the same post as its exit, which
// wakes the loop once per command instead of twice. Its output waits that
// long at most (in the pipe, which holds 64 KiB before the command blocks).
constexpr auto tell_within = std::chrono::milliseconds(1);

// A launcher's own child, watched until it is reaped.
struct LiveChild {
  pid_t pid = -1;
  ProcessNode* node = nullptr;
  Fd pidfd;  // -1: no pidfd (Linux before 5.3, or out of descriptors): polled
  Clock::time_point spawned;
};

}  // namespace

// ---- one command being run -------------------------------------------------

struct ProcessEngine::Impl {
  struct Job;
  struct Launcher;

  Impl(std::string name, std::size_t max_running);
  ~Impl();

  // Loop thread.
  void enqueue(Pending p, bool first) noexcept;
  void on_launched(Launched l) noexcept;
  void on_exited(ProcessNode* n, int wait_status, Clock::duration elapsed) noexcept;
  void job_done(const std::shared_ptr<Job>& job);
  void settle_and_notify(ProcessNode* n, ProcessOutcome outcome) noexcept;
  void notify(ProcessNode* n, ProcessOutcome outcome) noexcept;
  void terminate_all() noexcept;
  bool all_stopped() const noexcept;
  bool has_room() const noexcept { return max_running == 0 || live < max_running; }
  void acknowledge_termination() noexcept;
  void release_held_if_alive(int seen_raised) noexcept;
  void watch_wake();
  void cancel_queued(ProcessNode* n, bool claim) noexcept;

  // Launcher threads.
  void start_launcher();
  void run_launcher(Launcher& l) noexcept;
  bool launch(Launcher& l, Pending p) noexcept;
  bool watch(Launcher& l, pid_t pid, ProcessNode* n, Clock::time_point spawned) noexcept;
  bool reap(Launcher& l, LiveChild& c) noexcept;
  void tell_loop(Launcher& l) noexcept;
  void stop_launchers() noexcept;

  std::string name;
  std::size_t max_running;
  asio::io_context io;
  std::thread thread;
  Fd null_fd;  // /dev/null, stdin of commands without stdin_text
  Fd wake_read, wake_write;
  asio::posix::stream_descriptor wake;
  char wake_byte = 0;
  int signal_slot = -1;
  bool terminating = false;
  bool termination_acknowledged = false;
  // After cancel_all: commands are cancelled instead of run, and noted.
  void (*cancel_note)(TaskState*, bool, void*) = nullptr;
  void* cancel_note_arg = nullptr;

  // Loop thread only.
  std::unordered_map<ProcessNode*, std::shared_ptr<Job>> running;  // spawned, not done
  std::vector<ProcessNode*> held;  // finished while terminating (see job_done)
  asio::steady_timer held_timer{io};
  std::array<char, read_chunk> read_buffer;  // every read of every job (see Job::read)

  // Shared by the loop and the launchers, under queue_mutex.
  std::mutex queue_mutex;
  std::deque<Pending> queue;
  std::vector<std::unique_ptr<Launcher>> launchers;
  std::size_t live = 0;  // slots taken: commands starting, or running until reaped
  std::uint64_t cancel_round = 0;
  bool paused = false;    // a termination signal: start nothing more
  bool stopping = false;  // the engine ends: launchers leave once their children are reaped
  // Taken by a launcher, not yet back on the loop (on_launched).
  std::atomic<std::size_t> in_flight{0};

  // Any thread.
  std::atomic<std::size_t> size{0};
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stopped = false;
};

// A thread that starts commands and reaps them: vfork holds it until the
// child has exec'ed, and it sees its own children's exits (pidfds), so a
// freed slot is filled by the thread that saw it free, at once, with no
// hand-off to another thread on the way (docs/performance.md).
struct ProcessEngine::Impl::Launcher {
  std::thread thread;
  Fd epoll;     // its children's pidfds and the doorbell
  Fd doorbell;  // an eventfd: work for it, or stop
  bool asleep = false;    // under queue_mutex: in epoll_wait, ring the doorbell for work
  // Launcher thread only.
  std::unordered_map<pid_t, std::unique_ptr<LiveChild>> children;
  std::size_t unwatched = 0;  // children without a pidfd: polled every few ms
  // Not yet told to the loop (see tell_within).
  std::vector<Launched> launched;
  std::vector<Exited> exited;
  Clock::time_point first_untold;

  void ring() noexcept {
    asleep = false;
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(doorbell.fd, &one, sizeof one);
  }
};

struct ProcessEngine::Impl::Job : std::enable_shared_from_this<Job> {
  Job(Impl& e, ProcessNode* n)
      : engine(e), node(n), out(e.io), err(e.io), in(e.io), timer(e.io) {}

  Impl& engine;
  ProcessNode* node;
  pid_t pid = -1;
  asio::posix::stream_descriptor out, err, in;
  asio::steady_timer timer;
  Clock::time_point spawned;
  bool exited = false;
  int wait_status = 0;
  int open_streams = 0;
  enum class Kill { none, term_sent, kill_sent } kill = Kill::none;

  void begin();
  void read(asio::posix::stream_descriptor& d, std::string& text, bool& truncated);
  void terminate() noexcept;
  void on_timer(const boost::system::error_code& ec);
  void stream_closed();
  void maybe_done();
};

// ---- the launchers ------------------------------------------------------------

// Starts a launcher. Its thread blocks every
// signal, as the loop does (see the top of this file), but SIGCHLD: the kernel
// sends a child's exit signal to the thread that started it, and drops it at
// once when that thread does not block it and its action is the default
// (ignore). Blocked, it would wake another thread of the program for every
// command, only to be ignored there. Under queue_mutex; throws when it cannot.
void ProcessEngine::Impl::start_launcher() {
  auto l = std::make_unique<Launcher>();
  l->epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
  l->doorbell.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  epoll_event bell{};
  bell.events = EPOLLIN;
  bell.data.ptr = nullptr;
  if (l->epoll.fd < 0 || l->doorbell.fd < 0 ||
      ::epoll_ctl(l->epoll.fd, EPOLL_CTL_ADD, l->doorbell.fd, &bell) != 0)
    throw Error(fmt::format("process engine '{}': cannot make a launcher: {}", name,
                            std::strerror(errno)));
  sigset_t all, old;
  sigfillset(&all);
  sigdelset(&all, SIGCHLD);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  Launcher& ref = *l;
  try {
    l->thread = std::thread([this, &ref] { run_launcher(ref); });
  } catch (const std::system_error& e) {
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    throw Error(fmt::format("process engine '{}': cannot start a launcher thread: {}", name,
                            e.what()));
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  launchers.push_back(std::move(l));
}

// Queues a command for the launchers (`first`: before the others, a retry)
// and wakes one if a slot is free.
void ProcessEngine::Impl::enqueue(Pending p, bool first) noexcept {
  std::unique_lock lock(queue_mutex);
  try {
    if (first) queue.push_front(p);
    else queue.push_back(p);
  } catch (const std::exception& e) {  // out of memory
    lock.unlock();
    if (p.claim && !try_start(p.node)) return settle_and_notify(p.node, ProcessOutcome::not_started);
    return settle_and_notify(p.node, settle(*p.node, e.what(), false));
  }
  if (paused || !has_room()) return;  // a launcher takes it when a slot frees
  for (auto& l : launchers)
    if (l->asleep) return l->ring();
  // All are starting children: each looks at the queue again next.
}

void ProcessEngine::Impl::run_launcher(Launcher& l) noexcept {
  std::size_t freed = 0;
  for (;;) {
    Pending next;
    {
      std::lock_guard lock(queue_mutex);
      live -= std::exchange(freed, 0);
      l.asleep = false;
      if (!paused && !queue.empty() && has_room()) {
        next = queue.front();
        queue.pop_front();
        next.cancel_round = cancel_round;
        ++live;
        in_flight.fetch_add(1, std::memory_order_relaxed);
      } else if (stopping && l.children.empty()) {
        tell_loop(l);
        return;
      } else {
        l.asleep = true;
      }
    }
    if (next.node) {
      if (!launch(l, next)) ++freed;
      if (Clock::now() - l.first_untold >= tell_within) tell_loop(l);
      continue;
    }
    int timeout_ms = l.unwatched ? 5 : -1;
    if (!l.launched.empty()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(l.first_untold + tell_within -
                                                                     Clock::now());
      if (left.count() <= 0) tell_loop(l);
      else timeout_ms = static_cast<int>(left.count());
    }
    epoll_event events[64];
    const int n = ::epoll_wait(l.epoll.fd, events, 64, timeout_ms);
    for (int i = 0; i < n; ++i) {
      if (auto* child = static_cast<LiveChild*>(events[i].data.ptr)) {
        if (reap(l, *child)) ++freed;
        continue;
      }
      std::uint64_t rings;
      [[maybe_unused]] auto got = ::read(l.doorbell.fd, &rings, sizeof rings);
    }
    if (l.unwatched) {
      std::vector<LiveChild*> polled;
      for (auto& [pid, c] : l.children)
        if (c->pidfd.fd < 0) polled.push_back(c.get());
      for (LiveChild* c : polled)
        if (reap(l, *c)) ++freed;
    }
    if (!l.exited.empty() || (n == 0 && !l.launched.empty())) tell_loop(l);
  }
}

// Hands what this launcher started and reaped to the loop, in one post (the
// starts first: an exit may be of a command started in the same batch).
void ProcessEngine::Impl::tell_loop(Launcher& l) noexcept {
  if (l.launched.empty() && l.exited.empty()) return;
  asio::post(io, [this, launched = std::move(l.launched), exited = std::move(l.exited)]() mutable {
    for (Launched& x : launched) on_launched(std::move(x));
    for (const Exited& x : exited) on_exited(x.node, x.wait_status, x.elapsed);
  });
  l.launched.clear();
  l.exited.clear();
}

// Starts one command (see the loop's on_launched for what follows). Returns
// whether it runs, as a child of this launcher.
bool ProcessEngine::Impl::launch(Launcher& l, Pending p) noexcept {
  ProcessNode* n = p.node;
  Launched out;
  out.pending = p;
  try {
    if (p.claim && !try_start(n)) {  // cancelled while queued
      out.what = Launched::What::cancelled_while_queued;
    } else {
      ProcessResult& r = n->result;
      ++r.attempts;
      r.stdout_text.clear();
      r.stderr_text.clear();
      r.stdout_truncated = r.stderr_truncated = false;
      r.timed_out = false;
      r.exit_code = -1;
      r.signal = 0;
      if (n->interrupt_requested.load(std::memory_order_seq_cst)) {
        out.what = Launched::What::interrupted;
      } else {
        out.child = spawn_command(n->spec, null_fd.fd);
        out.what = out.child.pid < 0 ? Launched::What::failed : Launched::What::spawned;
      }
    }
  } catch (const std::exception& e) {  // out of memory
    out.what = Launched::What::failed;
    out.child.error = e.what();
  }
  const bool runs =
      out.what == Launched::What::spawned && watch(l, out.child.pid, n, out.child.spawned);
  if (l.launched.empty()) l.first_untold = Clock::now();
  l.launched.push_back(std::move(out));
  return runs;
}

// From now on this launcher reaps the child. A pidfd is readable once the
// child has exited (and a zombie's can still be opened); without one, the
// child is polled every few milliseconds.
bool ProcessEngine::Impl::watch(Launcher& l, pid_t pid, ProcessNode* n,
                                Clock::time_point spawned) noexcept {
  std::unique_ptr<LiveChild> child;
  try {
    child = std::make_unique<LiveChild>(LiveChild{pid, n, Fd(), spawned});
    l.children.reserve(l.children.size() + 1);
  } catch (const std::exception&) {  // out of memory: it cannot be watched, so it ends now
    ::kill(-pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    l.exited.push_back(Exited{n, status, Clock::now() - spawned});  // told after its start
    return false;
  }
  child->pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, child->pid, 0)));
  if (child->pidfd.fd >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = child.get();
    if (::epoll_ctl(l.epoll.fd, EPOLL_CTL_ADD, child->pidfd.fd, &ev) != 0) child->pidfd.reset();
  }
  if (child->pidfd.fd < 0) ++l.unwatched;
  l.children.emplace(pid, std::move(child));
  return true;
}

// Reaps c if it has exited and tells the loop; then c is gone.
bool ProcessEngine::Impl::reap(Launcher& l, LiveChild& c) noexcept {
  int status = 0;
  pid_t got;
  do {
    got = ::waitpid(c.pid, &status, WNOHANG);
  } while (got < 0 && errno == EINTR);
  if (got == 0) return false;
  if (got != c.pid) status = 0;  // ECHILD: SIGCHLD ignored, status lost
  const Clock::duration elapsed = Clock::now() - c.spawned;
  l.exited.push_back(Exited{c.node, status, elapsed});
  if (c.pidfd.fd < 0) --l.unwatched;
  // Taken out of the epoll set first: closing it would not, while a child
  // that has just exec'ed still holds a copy (until it closes its
  // close-on-exec descriptors), and the set would report a freed child.
  else ::epoll_ctl(l.epoll.fd, EPOLL_CTL_DEL, c.pidfd.fd, nullptr);
  l.children.erase(c.pid);
  return true;
}

void ProcessEngine::Impl::stop_launchers() noexcept {
  {
    std::lock_guard lock(queue_mutex);
    stopping = true;
    for (auto& l : launchers) l->ring();
  }
  for (auto& l : launchers)
    if (l->thread.joinable()) l->thread.join();
}

// ---- on the loop ----------------------------------------------------------------

void ProcessEngine::Impl::on_launched(Launched l) noexcept {
  ProcessNode* n = l.pending.node;
  in_flight.fetch_sub(1, std::memory_order_relaxed);
  switch (l.what) {
    case Launched::What::cancelled_while_queued:
      return settle_and_notify(n, ProcessOutcome::not_started);
    case Launched::What::interrupted:
      return settle_and_notify(n, settle(*n, {}, true));
    case Launched::What::failed:
      return settle_and_notify(n, settle(*n, l.child.error, false));
    case Launched::What::spawned:
      break;
  }
  std::shared_ptr<Job> job;
  try {
    job = std::make_shared<Job>(*this, n);
    running.emplace(n, job);
  } catch (const std::exception& e) {  // out of memory: not watched, so stopped
    ::kill(-l.child.pid, SIGKILL);
    return settle_and_notify(n, settle(*n, e.what(), false));
  }
  ProcessResult& r = n->result;
  n->ran = true;
  r.pid = job->pid = l.child.pid;
  if (n->on_started && !n->start_announced) {
    n->start_announced = true;
    n->on_started(n, n->done_arg);
  }
  r.started = l.child.started;
  job->spawned = l.child.spawned;
  job->out.assign(l.child.out.release());
  job->open_streams = 1;
  if (l.child.err.fd >= 0) {
    job->err.assign(l.child.err.release());
    ++job->open_streams;
  }
  if (l.child.in.fd >= 0) job->in.assign(l.child.in.release());
  // Taken by a launcher before a cancel_all, started after it: as cancel_all
  // does with the commands it found running.
  if (cancel_note && l.pending.cancel_round != cancel_round &&
      !n->interrupt_requested.exchange(true, std::memory_order_seq_cst))
    cancel_note(n, true, cancel_note_arg);
  job->begin();
  if (terminating) job->terminate();
}

void ProcessEngine::Impl::on_exited(ProcessNode* n, int wait_status, Clock::duration elapsed) noexcept {
  auto it = running.find(n);
  if (it == running.end()) return;  // its Job could not be made (on_launched)
  Job& job = *it->second;
  job.exited = true;
  job.wait_status = wait_status;
  n->result.elapsed = elapsed;
  job.maybe_done();  // the timeout still covers pipes that a grandchild keeps open
}

void ProcessEngine::Impl::Job::begin() {
  ProcessResult& r = node->result;
  read(out, r.stdout_text, r.stdout_truncated);
  if (err.is_open()) read(err, r.stderr_text, r.stderr_truncated);
  if (in.is_open()) {
    // A command that exits without reading its stdin ends the write with EPIPE.
    asio::async_write(in, asio::buffer(*node->spec.options.stdin_text),
                      [self = shared_from_this()](const boost::system::error_code&, std::size_t) {
                        boost::system::error_code ignored;
                        self->in.close(ignored);
                      });
  }
  // The exit is watched once the pipes are closed (see stream_closed).
  const ProcessOptions& o = node->spec.options;
  if (o.timeout.count() > 0) {
    timer.expires_at(spawned + o.timeout);  // the loop may hear of the start a little later
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->kill != Kill::none) return;
      self->node->result.timed_out = true;
      self->terminate();
    });
  }
  if (node->interrupt_requested.load(std::memory_order_seq_cst)) terminate();
}

// Waits until d is readable, then reads what is there into the loop's one
// buffer (handlers run one at a time) and appends it, up to max_output.
void ProcessEngine::Impl::Job::read(asio::posix::stream_descriptor& d, std::string& text,
                                    bool& truncated) {
  d.async_wait(asio::posix::stream_descriptor::wait_read,
               [self = shared_from_this(), &d, &text, &truncated](const boost::system::error_code& ec) {
                 auto end_stream = [&] {
                   boost::system::error_code ignored;
                   d.close(ignored);
                   self->stream_closed();
                 };
                 std::array<char, read_chunk>& buf = self->engine.read_buffer;
                 const std::size_t cap = self->node->spec.options.max_output;
                 // A bounded number of reads, so one flooding command cannot starve the rest.
                 for (int i = 0; !ec && i < 16; ++i) {
                   const ssize_t n = ::read(d.native_handle(), buf.data(), buf.size());
                   if (n < 0 && errno == EINTR) continue;
                   if (n < 0 && errno == EAGAIN) break;
                   if (n <= 0) return end_stream();  // EOF, or an error that ends it as EOF would
                   std::size_t keep = static_cast<std::size_t>(n);
                   if (cap && text.size() + keep > cap) {
                     keep = cap > text.size() ? cap - text.size() : 0;
                     truncated = true;
                   }
                   text.append(buf.data(), keep);
                 }
                 if (ec) return end_stream();  // cancelled: a pipe held open after the group was killed
                 self->read(d, text, truncated);
               });
}

// TERM to the whole group now, KILL after the grace period, then stop
// waiting for pipes held open by processes that escaped the group.
void ProcessEngine::Impl::Job::terminate() noexcept {
  if (kill != Kill::none || pid <= 0) return;  // still starting: on_spawned checks again
  ::kill(-pid, SIGTERM);
  kill = Kill::term_sent;
  timer.expires_after(node->spec.options.kill_grace);
  timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    self->on_timer(ec);
  });
}

void ProcessEngine::Impl::Job::on_timer(const boost::system::error_code& ec) {
  if (ec) return;
  if (kill == Kill::term_sent) {
    ::kill(-pid, SIGKILL);
    kill = Kill::kill_sent;
    timer.expires_after(abandon_after);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
      self->on_timer(e);
    });
    return;
  }
  boost::system::error_code ignored;
  out.cancel(ignored);
  err.cancel(ignored);
}

void ProcessEngine::Impl::Job::stream_closed() {
  --open_streams;
  maybe_done();
}

void ProcessEngine::Impl::Job::maybe_done() {
  if (!exited || open_streams > 0) return;
  boost::system::error_code ignored;
  timer.cancel();
  in.close(ignored);
  if (kill != Kill::none) ::kill(-pid, SIGKILL);  // leftovers of a terminated group
  ProcessResult& r = node->result;
  if (WIFSIGNALED(wait_status)) {
    r.signal = WTERMSIG(wait_status);
    r.exit_code = -1;
  } else {
    r.exit_code = WEXITSTATUS(wait_status);
  }
  engine.job_done(shared_from_this());
}

void ProcessEngine::Impl::job_done(const std::shared_ptr<Job>& job) {
  ProcessNode* n = job->node;
  running.erase(n);
  const bool interrupted = n->interrupt_requested.load(std::memory_order_seq_cst);
  const ProcessOptions& o = n->spec.options;
  if (!n->result.succeeded() && !interrupted && !terminating && n->result.attempts <= o.retries) {
    diag("command '{}' failed (attempt {} of {}); running it again", n->result.command,
         n->result.attempts, o.retries + 1);
    enqueue(Pending{n, false}, true);
    return;
  }
  if (terminating) {
    // The program is about to end by the signal: completing these tasks now
    // would only race the end with wait()s that throw.
    held.push_back(n);
    if (all_stopped()) acknowledge_termination();
    return;
  }
  settle_and_notify(n, settle(*n, {}, interrupted));
}

// Every command of this engine is gone: let the signal be raised again. The
// held tasks complete only if the program outlives that (a handler of its own
// replaced ours): checked twice, a second apart, after the signal was raised.
void ProcessEngine::Impl::acknowledge_termination() noexcept {
  if (termination_acknowledged) return;
  termination_acknowledged = true;
  termination_handled();
  release_held_if_alive(0);
}

void ProcessEngine::Impl::release_held_if_alive(int seen_raised) noexcept {
  held_timer.expires_after(std::chrono::seconds(1));
  held_timer.async_wait([this, seen_raised](const boost::system::error_code& ec) {
    if (ec) return;
    const int seen = seen_raised + (termination_raised() ? 1 : 0);
    if (seen < 2) return release_held_if_alive(seen);
    for (ProcessNode* n : std::exchange(held, {}))
      settle_and_notify(n, settle(*n, {}, n->interrupt_requested.load()));
  });
}

// Hands the outcome to whoever waits, drops the engine's reference.
void ProcessEngine::Impl::notify(ProcessNode* n, ProcessOutcome outcome) noexcept {
  n->on_done(n, outcome, n->done_arg);
  release(n);
  if (size.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::lock_guard lock(stop_mutex);
    stop_cv.notify_all();
  }
}

void ProcessEngine::Impl::settle_and_notify(ProcessNode* n, ProcessOutcome outcome) noexcept {
  // A claimed command that never spawned still started, for its observers.
  if (outcome != ProcessOutcome::not_started && n->on_started && !n->start_announced) {
    n->start_announced = true;
    n->on_started(n, n->done_arg);
  }
  notify(n, outcome);
  if (terminating && all_stopped()) acknowledge_termination();
}

// No command is running or being started (the queue is paused by then).
bool ProcessEngine::Impl::all_stopped() const noexcept {
  return running.empty() && in_flight.load(std::memory_order_relaxed) == 0;
}

void ProcessEngine::Impl::cancel_queued(ProcessNode* n, bool claim) noexcept {
  // Its launcher drops it unrun (not_started) when its turn comes.
  if (cancel_note && claim && cancel(n)) cancel_note(n, false, cancel_note_arg);
}

void ProcessEngine::Impl::terminate_all() noexcept {
  terminating = true;
  diag("engine '{}': termination signal; stopping {} commands", name, running.size());
  {
    // Queued commands are not started: the program is about to end. Those
    // being started now are stopped in on_launched.
    std::lock_guard lock(queue_mutex);
    paused = true;
  }
  if (all_stopped()) {
    acknowledge_termination();
    return;
  }
  for (auto& [node, job] : running) job->terminate();
}

void ProcessEngine::Impl::watch_wake() {
  wake.async_read_some(asio::buffer(&wake_byte, 1),
                       [this](const boost::system::error_code& ec, std::size_t) {
                         if (ec) return;
                         if (pending_termination_signal() && !terminating) terminate_all();
                         watch_wake();
                       });
}

ProcessEngine::Impl::Impl(std::string engine_name, std::size_t max)
    : name(std::move(engine_name)),
      max_running(max),
      wake(io) {
  null_fd.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (null_fd.fd < 0 || (null_fd.reset(above_stdio(null_fd.release())), null_fd.fd < 0))
    throw Error(fmt::format("process engine '{}': cannot open /dev/null: {}", name,
                            std::strerror(errno)));
  if (!make_pipe(wake_read, wake_write))
    throw Error(fmt::format("process engine '{}': cannot make a pipe: {}", name,
                            std::strerror(errno)));
  ::fcntl(wake_write.fd, F_SETFL, O_NONBLOCK);
  wake.assign(wake_read.release());
  {
    // As many as there are cores, so that each can start a child (waiting
    // in vfork) while the others do, and no more than there are slots.
    const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    std::size_t count = std::clamp<std::size_t>(cores, 1, max_launchers);
    if (max_running) count = std::min(count, max_running);
    try {
      std::lock_guard lock(queue_mutex);
      while (launchers.size() < count) start_launcher();
    } catch (...) {
      stop_launchers();  // ~Impl does not run
      throw;
    }
  }
  signal_slot = watch_termination_signals(wake_write.fd);
  watch_wake();

  // The loop thread blocks every signal (see the top of this file).
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  try {
    thread = std::thread([this] {
      // Not woken ahead of what runs: a command closes its pipes and exits in
      // steps, and a loop that preempted it at each step would wake once per
      // step instead of once for all of them. SCHED_BATCH only gives up that
      // wakeup preemption (same nice value); if it cannot be set, no harm.
      sched_param normal{};
      ::pthread_setschedparam(::pthread_self(), SCHED_BATCH, &normal);
      auto guard = asio::make_work_guard(io);
      io.run();
    });
  } catch (const std::system_error& e) {
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    forget_termination_signals(signal_slot);
    stop_launchers();
    throw Error(fmt::format("process engine '{}': cannot start its thread: {}", name, e.what()));
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

ProcessEngine::Impl::~Impl() {
  forget_termination_signals(signal_slot);
  stop_launchers();  // they use this; joined already when the engine stopped
}

// ---- the public face ---------------------------------------------------------

ProcessEngine::ProcessEngine(std::string name, std::size_t max_running)
    : impl_(std::make_unique<Impl>(std::move(name), max_running)) {}

ProcessEngine::~ProcessEngine() { stop(); }

void ProcessEngine::start(ProcessNode* n, bool claim) noexcept {
  retain(n);  // the engine's reference, dropped after on_done
  n->engine.store(this, std::memory_order_seq_cst);
  impl_->size.fetch_add(1, std::memory_order_acq_rel);
  try {
    asio::post(impl_->io, [impl = impl_.get(), n, claim] {
      impl->cancel_queued(n, claim);
      impl->enqueue(Pending{n, claim}, false);
    });
  } catch (const std::exception& e) {
    // Out of memory: the command cannot be queued; fail it here.
    impl_->notify(n, claim && !try_start(n) ? ProcessOutcome::not_started
                                            : settle(*n, e.what(), false));
  }
}

void ProcessEngine::interrupt(ProcessNode* n) noexcept {
  retain(n);
  try {
    asio::post(impl_->io, [impl = impl_.get(), n] {
      if (auto it = impl->running.find(n); it != impl->running.end()) it->second->terminate();
      release(n);
    });
  } catch (...) {
    release(n);
  }
}

void ProcessEngine::cancel_all(void (*note)(TaskState*, bool, void*), void* arg) noexcept {
  try {
    asio::post(impl_->io, [impl = impl_.get(), note, arg] {
      impl->cancel_note = note;
      impl->cancel_note_arg = arg;
      std::vector<Pending> queued;
      {
        std::lock_guard lock(impl->queue_mutex);
        ++impl->cancel_round;  // for those being started now (on_launched)
        queued.assign(impl->queue.begin(), impl->queue.end());
      }
      for (const Pending& p : queued) impl->cancel_queued(p.node, p.claim);
      for (auto& [n, job] : impl->running) {
        // As cancel() of a running command: no retry, and it fails with
        // pools::Cancelled saying its process group was terminated.
        if (n->interrupt_requested.exchange(true, std::memory_order_seq_cst)) continue;
        note(n, true, arg);
        job->terminate();
      }
    });
  } catch (...) {
    // Out of memory: the commands finish instead.
  }
}

std::size_t ProcessEngine::size() const noexcept {
  return impl_->size.load(std::memory_order_acquire);
}

void ProcessEngine::stop() noexcept {
  if (!impl_->thread.joinable()) return;
  {
    std::unique_lock lock(impl_->stop_mutex);
    impl_->stop_cv.wait(lock, [&] { return impl_->size.load(std::memory_order_acquire) == 0; });
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  impl_->io.stop();
  if (impl_->thread.get_id() == std::this_thread::get_id()) {
    impl_->thread.detach();
  } else {
    impl_->thread.join();
  }
  impl_->stop_launchers();
}

namespace {
// Never destroyed: workers of other pools may run commands during exit.
std::atomic<ProcessEngine*> shared_engine{nullptr};
std::mutex shared_engine_mutex;
}  // namespace

ProcessEngine& ProcessEngine::shared() {
  if (ProcessEngine* e = shared_engine.load(std::memory_order_acquire)) return *e;
  std::lock_guard lock(shared_engine_mutex);
  if (!shared_engine.load(std::memory_order_relaxed))
    shared_engine.store(new ProcessEngine("shared", 0), std::memory_order_release);
  return *shared_engine.load(std::memory_order_relaxed);
}

void ProcessEngine::forget_shared_after_fork() noexcept {
  // The copy's threads do not exist in this process: leak it, start afresh.
  shared_engine.store(nullptr, std::memory_order_relaxed);
  ::new (&shared_engine_mutex) std::mutex;
  reset_termination_signals_after_fork();
}

}  // namespace pools::detail
