// The command engine: spawner threads and one Asio event loop per engine.
//
// Why it is built this way (see docs/process-pool.md):
// - Children start with Boost.Process and vfork (spawn.cpp: the parent's page
//   tables are not copied) on a few spawner threads: vfork holds the calling
//   thread until the child has exec'ed, and the loop must go on draining pipes
//   meanwhile. Every child is ours to reap, by pid: no exit status is lost
//   between threads.
// - A spawner with nothing else to start waits for its command a short while
//   and settles it itself: a short command then costs one thread and no
//   hand-off, as in a loop of vfork and waitpid. Whatever outlasts that wait,
//   however many, is the loop's (see "the engine" below).
// - Our pipes are made with O_CLOEXEC, so a child spawned at the same moment
//   from another engine cannot inherit them (Boost.Process v1's pipes are not).
// - A child's exit is seen through a pidfd, watched like any descriptor: no
//   SIGCHLD handler.
// - The loop's and spawners' threads block every signal (the spawners all but
//   SIGCHLD, see start_spawner_locked), so a child starts with a clean mask
//   that we set ourselves, and a write to a closed stdin gives EPIPE rather
//   than killing the program.
#define BOOST_ASIO_DISABLE_CO_AWAIT 1
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
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <fmt/core.h>

#include <pools/errors.hpp>

#include "core/diag.hpp"
#include "process/process_node.hpp"
#include "process/spawn.hpp"
#include "process/termination_signals.hpp"

namespace pools::detail {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

constexpr std::size_t read_chunk = 64 * 1024;
// Threads that start children, at most: one per slot (each waits in vfork
// until its child has exec'ed, and for a short command until it ends) and one
// more, so that a slot the loop frees finds a spawner free. More than 8 at
// once gains nothing on machines we know.
constexpr std::size_t max_spawners = 9;
// After SIGKILL, how long a pipe may stay open (held by a process that left
// the group) before the engine stops reading it.
constexpr auto abandon_after = std::chrono::seconds(1);

// Reads what fd holds now (at most 16 reads, so that one flooding command
// cannot starve the rest) into text, keeping at most cap bytes (0: no cap).
// False at EOF, or at an error that ends the stream as EOF would.
bool drain(int fd, char* buf, std::string& text, bool& truncated, std::size_t cap) {
  for (int i = 0; i < 16; ++i) {
    const ssize_t n = ::read(fd, buf, read_chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    if (n <= 0) return false;
    std::size_t keep = static_cast<std::size_t>(n);
    if (cap && text.size() + keep > cap) {
      keep = cap > text.size() ? cap - text.size() : 0;
      truncated = true;
    }
    text.append(buf, keep);
  }
  return true;
}

// Kills and reaps a command that cannot be watched (out of memory). One
// already reaped is left alone: its pid may be another's by now.
void end_now(Spawned& child) {
  if (child.exited) return;
  ::kill(-child.pid, SIGKILL);
  ::waitpid(child.pid, nullptr, 0);
  child.exited = true;
}

// waitpid(pid, WNOHANG): pid once reaped (status set), 0 while it runs, -1 on
// an error (ECHILD when SIGCHLD is ignored and the kernel reaped it).
pid_t reap_if_exited(pid_t pid, int& status) {
  pid_t got;
  do {
    got = ::waitpid(pid, &status, WNOHANG);
  } while (got < 0 && errno == EINTR);
  return got;
}

// What is left until deadline (zero when passed), for ppoll.
timespec time_until(Clock::time_point deadline) {
  const auto left = std::max(deadline - Clock::now(), Clock::duration::zero());
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  return {static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

// The exit code or signal of a wait status, into r.
void record_exit(ProcessResult& r, int wait_status) {
  if (WIFSIGNALED(wait_status)) {
    r.signal = WTERMSIG(wait_status);
    r.exit_code = -1;
  } else {
    r.exit_code = WEXITSTATUS(wait_status);
  }
}

}  // namespace

// ---- the engine --------------------------------------------------------------
//
// Who does what. A spawner thread takes the next command from the queue,
// starts it, and when nothing else could start meanwhile (every slot taken, or
// nothing queued) waits for it a short while itself: a short command (most of
// a bulk run) is read to EOF, reaped and settled right there, and the spawner
// goes on to the next one, as a loop of vfork and waitpid would. Nothing else
// wakes for it but whoever waits for its task. Any other command, and one
// still running after the short wait, is handed to the event loop, which
// drains its pipes, feeds its stdin, watches its exit and enforces its timeout
// however long it runs: never one thread per running child.

struct ProcessEngine::Impl {
  struct Job;

  Impl(std::string name, std::size_t max_running);
  ~Impl();

  // Any thread.
  void enqueue(ProcessNode* n, bool claim) noexcept;
  void wake_spawner_locked();
  void start_spawner_locked();
  bool retry_waiting_locked() const noexcept { return !retries.empty(); }
  bool queued_can_start_locked() const noexcept {
    return !queue.empty() && !terminating.load() && (max_running == 0 || active < max_running);
  }
  void forget_on_spawner(ProcessNode* n) noexcept;

  // Spawner threads.
  void spawner_main() noexcept;
  void run(ProcessNode* n, bool claim, char* buf, bool batch) noexcept;
  bool begin_attempt(ProcessNode* n) noexcept;
  bool wait_briefly(ProcessNode* n, Spawned& child, char* buf) noexcept;
  bool should_hand_off() noexcept;
  void hand_off(ProcessNode* n, Spawned child) noexcept;
  void finish(ProcessNode* n, ProcessOutcome outcome) noexcept;

  // The loop thread.
  void on_spawned(ProcessNode* n, Spawned child);
  void job_done(const std::shared_ptr<Job>& job);
  void terminate_all() noexcept;
  void acknowledge_termination() noexcept;
  void release_held_if_alive(int seen_raised) noexcept;
  void watch_wake();

  // Both.
  bool should_retry(ProcessNode* n) const noexcept;
  void announce_start(ProcessNode* n) noexcept;
  bool free_slot(bool wake) noexcept;
  void settle_done(ProcessNode* n, ProcessOutcome outcome, bool on_loop) noexcept;
  void notify(ProcessNode* n, ProcessOutcome outcome) noexcept;

  std::string name;
  std::size_t max_running;
  asio::io_context io;
  std::thread thread;
  Fd null_fd;  // /dev/null, stdin of commands without stdin_text
  Fd wake_read, wake_write;
  asio::posix::stream_descriptor wake;
  char wake_byte = 0;
  int signal_slot = -1;

  // Loop thread only.
  bool termination_acknowledged = false;
  std::unordered_map<ProcessNode*, std::shared_ptr<Job>> running;  // handed to the loop
  std::vector<ProcessNode*> held;  // finished while terminating (see job_done)
  asio::steady_timer held_timer{io};
  std::array<char, read_chunk> read_buffer;  // every read of every job (see Job::read)

  // Under `mutex`.
  std::mutex mutex;
  std::condition_variable spawner_cv;
  std::deque<std::pair<ProcessNode*, bool>> queue;  // node, claim
  std::deque<ProcessNode*> retries;                 // to run again; they keep their slot
  std::vector<ProcessNode*> on_spawners;  // taken by a spawner, not yet handed to the loop
  std::size_t active = 0;                 // slots taken: on a spawner or in the loop
  std::vector<std::thread> spawners;
  std::size_t spawner_cap;
  std::size_t idle_spawners = 0;
  bool spawners_stopping = false;
  // Readable while work waits that no idle spawner can take: a spawner waiting
  // for its child then hands it to the loop and goes to start that work.
  Fd work_waiting;
  bool work_nudged = false;
  // Set under `mutex`, read anywhere.
  std::atomic<bool> terminating{false};
  // After cancel_all: commands are cancelled instead of run, and noted.
  std::atomic<void (*)(TaskState*, bool, void*)> cancel_note{nullptr};
  void* cancel_note_arg = nullptr;  // written before cancel_note

  // Any thread.
  std::atomic<std::size_t> size{0};
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stopped = false;
};

// How long a spawner waits for a command it started before handing it to the
// loop: longer than /bin/true takes on a loaded machine, short enough that a
// cancel() or a signal meanwhile is acted on at once to a person.
constexpr auto wait_on_spawner = std::chrono::milliseconds(20);

struct ProcessEngine::Impl::Job : std::enable_shared_from_this<Job> {
  Job(Impl& e, ProcessNode* n)
      : engine(e), node(n), out(e.io), err(e.io), in(e.io), exit_watch(e.io), timer(e.io) {}

  Impl& engine;
  ProcessNode* node;
  pid_t pid = -1;
  asio::posix::stream_descriptor out, err, in, exit_watch;
  asio::steady_timer timer;
  Clock::time_point spawned;
  bool exited = false;
  int wait_status = 0;
  int open_streams = 0;
  enum class Kill { none, term_sent, kill_sent } kill = Kill::none;

  void begin();
  void read(asio::posix::stream_descriptor& d, std::string& text, bool& truncated);
  void watch_exit();
  void reap() noexcept;
  void terminate() noexcept;
  void on_timer(const boost::system::error_code& ec);
  void stream_closed();
  void maybe_done();
};

// ---- spawner threads ---------------------------------------------------------

// Queues n, and sees that a spawner will take it.
void ProcessEngine::Impl::enqueue(ProcessNode* n, bool claim) noexcept {
  // After cancel_all, a command added later is cancelled before any spawner
  // can take it, and the spawner's try_start then drops it as not_started.
  if (auto note = cancel_note.load(std::memory_order_acquire); note && claim && cancel(n))
    note(n, false, cancel_note_arg);
  std::unique_lock lock(mutex);
  try {
    queue.emplace_back(n, claim);
  } catch (...) {
    lock.unlock();  // out of memory: fail it here
    notify(n, claim && !try_start(n) ? ProcessOutcome::not_started
                                     : settle(*n, "out of memory", false));
    return;
  }
  try {
    wake_spawner_locked();
  } catch (const std::exception& e) {
    if (!spawners.empty()) return;  // those there will take it
    queue.pop_back();  // no thread could start at all
    lock.unlock();
    notify(n, claim && !try_start(n) ? ProcessOutcome::not_started
                                     : settle(*n, e.what(), false));
  }
}

// Someone must take queued or retried work: an idle spawner, a new one, or
// (all busy, none to add) one waiting for its child, told through work_waiting.
// Throws only when a new spawner was needed and could not start.
void ProcessEngine::Impl::wake_spawner_locked() {
  if (!retry_waiting_locked() && !queued_can_start_locked()) return;
  if (idle_spawners > 0) {
    spawner_cv.notify_one();
  } else if (spawners.size() < spawner_cap) {
    start_spawner_locked();
  } else if (!work_nudged) {
    work_nudged = true;
    const std::uint64_t one = 1;
    [[maybe_unused]] auto w = ::write(work_waiting.fd, &one, sizeof one);
  }
}

void ProcessEngine::Impl::start_spawner_locked() {
  // Every signal blocked (see the top of this file), but SIGCHLD: the kernel
  // sends a child's exit signal to the thread that started it, and drops it at
  // once when that thread does not block it and its action is the default
  // (ignore). Blocked, it would wake another thread of the program for every
  // command, only to be ignored there.
  sigset_t all, old;
  sigfillset(&all);
  sigdelset(&all, SIGCHLD);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  try {
    spawners.emplace_back([this] { spawner_main(); });
  } catch (...) {
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    throw;
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void ProcessEngine::Impl::spawner_main() noexcept {
  // See run(). A program that runs with a policy of its own keeps it.
  const bool batch = ::sched_getscheduler(0) == SCHED_OTHER;
  std::array<char, read_chunk> buf;  // what it reads of its commands' output
  std::unique_lock lock(mutex);
  for (;;) {
    ProcessNode* n = nullptr;
    bool claim = false;
    if (retry_waiting_locked()) {
      n = retries.front();
      retries.pop_front();
    } else if (queued_can_start_locked()) {
      std::tie(n, claim) = queue.front();
      queue.pop_front();
      ++active;
    }
    if (n) {
      if (work_nudged) {  // taken: whoever else it woke need not hand off
        work_nudged = false;
        std::uint64_t count;
        [[maybe_unused]] auto r = ::read(work_waiting.fd, &count, sizeof count);
      }
      on_spawners.push_back(n);
      lock.unlock();
      run(n, claim, buf.data(), batch);
      lock.lock();
      continue;
    }
    if (spawners_stopping) return;
    ++idle_spawners;
    spawner_cv.wait(lock);
    --idle_spawners;
  }
}

// Runs n's command until it is settled here or handed to the loop.
void ProcessEngine::Impl::run(ProcessNode* n, bool claim, char* buf, bool batch) noexcept {
  if (claim && !try_start(n)) return finish(n, ProcessOutcome::not_started);  // cancelled while queued
  for (;;) {
    if (!begin_attempt(n)) return finish(n, settle(*n, {}, true));
    // SCHED_BATCH while it starts the command: vfork wakes this thread when
    // the child's exec has replaced its memory, and at the normal policy it
    // would preempt the child there, in the middle of its exec (most of the
    // context switches the pool had beyond the limit's at J = 2). It waits
    // for the command at the normal policy, so that on a busy machine the
    // command's end wakes it at once to start the next one; under SCHED_BATCH
    // that waits for the next tick (docs/performance.md). The child goes back
    // to the normal policy itself.
    sched_param normal{};
    const bool as_batch = batch && ::sched_setscheduler(0, SCHED_BATCH, &normal) == 0;
    Spawned child = spawn_command(n->spec, null_fd.fd, as_batch);
    if (as_batch) ::sched_setscheduler(0, SCHED_OTHER, &normal);
    if (child.pid < 0) return finish(n, settle(*n, child.error, false));
    ProcessResult& r = n->result;
    n->ran = true;
    r.pid = child.pid;
    r.started = child.started;
    announce_start(n);
    if (!wait_briefly(n, child, buf) || terminating.load()) return hand_off(n, std::move(child));
    record_exit(r, child.wait_status);
    if (should_retry(n)) continue;
    return finish(n, settle(*n, {}, n->interrupt_requested.load(std::memory_order_seq_cst)));
  }
}

// A new attempt's result; false when the command was cancelled meanwhile.
bool ProcessEngine::Impl::begin_attempt(ProcessNode* n) noexcept {
  ProcessResult& r = n->result;
  ++r.attempts;
  r.stdout_text.clear();
  r.stderr_text.clear();
  r.stdout_truncated = r.stderr_truncated = false;
  r.timed_out = false;
  r.exit_code = -1;
  r.signal = 0;
  return !n->interrupt_requested.load(std::memory_order_seq_cst);
}

// When no other command could start meanwhile, waits up to wait_on_spawner
// (or the command's timeout, if shorter) for the command to close its pipes
// and exit, reading its output. True when it has: child.exited and
// child.wait_status say how. Otherwise child holds what is still open.
bool ProcessEngine::Impl::wait_briefly(ProcessNode* n, Spawned& child, char* buf) noexcept {
  const ProcessOptions& o = n->spec.options;
  if (child.in.fd >= 0 || should_hand_off()) return false;
  auto deadline = child.spawned + wait_on_spawner;
  if (o.timeout.count() > 0) deadline = std::min(deadline, child.spawned + o.timeout);
  ProcessResult& r = n->result;
  // Reads what a pipe holds; closes it at EOF.
  auto read_pipe = [&](Fd& pipe) {
    const bool is_out = &pipe == &child.out;
    if (!drain(pipe.fd, buf, is_out ? r.stdout_text : r.stderr_text,
               is_out ? r.stdout_truncated : r.stderr_truncated, o.max_output))
      pipe.reset();
  };
  // Its output, until one of its pipes closes: it is most likely exiting.
  for (bool closed = false; !closed;) {
    pollfd fds[3];
    Fd* pipes[2];
    nfds_t count = 0;
    for (Fd* pipe : {&child.out, &child.err})
      if (pipe->fd >= 0) pipes[count] = pipe, fds[count++] = {pipe->fd, POLLIN, 0};
    if (count == 0) break;
    fds[count] = {work_waiting.fd, POLLIN, 0};
    if (Clock::now() >= deadline) return false;
    const timespec left = time_until(deadline);
    if (::ppoll(fds, count + 1, &left, nullptr) < 0 && errno != EINTR) return false;
    if (fds[count].revents) return false;  // work for this thread
    for (nfds_t i = 0; i < count; ++i) {
      if (!fds[i].revents) continue;
      read_pipe(*pipes[i]);
      closed = closed || pipes[i]->fd < 0;
    }
  }
  // Then its exit, through a pidfd only: waiting on its other pipe too would
  // wake this thread again as the exit closes it, a moment before the exit.
  pid_t got = reap_if_exited(child.pid, child.wait_status);
  if (got == 0) {
    Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child.pid, 0)));
    if (pidfd.fd < 0) return false;  // no pidfds: the loop watches its exit
    pollfd exit_fd{pidfd.fd, POLLIN, 0};
    const timespec left = time_until(deadline);
    ::ppoll(&exit_fd, 1, &left, nullptr);
    got = reap_if_exited(child.pid, child.wait_status);
    if (got == 0) return false;  // still running (or writing to its other pipe): the loop's
  }
  child.exited = true;
  if (got != child.pid) child.wait_status = 0;  // ECHILD: SIGCHLD ignored, status lost
  r.elapsed = Clock::now() - child.spawned;
  // What is left in a pipe; one still open after the exit is held by a
  // process the command left behind, and the loop reads it to its end.
  for (Fd* pipe : {&child.out, &child.err})
    if (pipe->fd >= 0) read_pipe(*pipe);
  return child.out.fd < 0 && child.err.fd < 0;
}

// True when other work could start now and no idle spawner is there to take it.
bool ProcessEngine::Impl::should_hand_off() noexcept {
  std::lock_guard lock(mutex);
  return idle_spawners == 0 && (retry_waiting_locked() || queued_can_start_locked());
}

void ProcessEngine::Impl::hand_off(ProcessNode* n, Spawned child) noexcept {
  try {
    asio::post(io, [this, n, child = std::move(child)]() mutable { on_spawned(n, std::move(child)); });
  } catch (...) {  // out of memory: end the command rather than lose it
    end_now(child);
    finish(n, settle(*n, "out of memory", false));
  }
}

// The command is done on this spawner: free its slot, then tell its waiters.
void ProcessEngine::Impl::finish(ProcessNode* n, ProcessOutcome outcome) noexcept {
  forget_on_spawner(n);
  settle_done(n, outcome, false);
}

// n is no longer a spawner's: settled there, or handed to the loop.
void ProcessEngine::Impl::forget_on_spawner(ProcessNode* n) noexcept {
  std::lock_guard lock(mutex);
  on_spawners.erase(std::find(on_spawners.begin(), on_spawners.end(), n));
}

// ---- the loop ----------------------------------------------------------------

// A command a spawner started and did not see to its end: from here the loop
// drains what is still open, watches its exit and enforces its timeout.
void ProcessEngine::Impl::on_spawned(ProcessNode* n, Spawned child) {
  forget_on_spawner(n);
  std::shared_ptr<Job> job;
  try {
    job = std::make_shared<Job>(*this, n);
    running.emplace(n, job);
  } catch (const std::exception& e) {  // out of memory: end the command rather than lose it
    end_now(child);
    running.erase(n);
    return settle_done(n, settle(*n, e.what(), false), true);
  }
  job->pid = child.pid;
  job->spawned = child.spawned;
  job->exited = child.exited;
  job->wait_status = child.wait_status;
  if (child.out.fd >= 0) {
    job->out.assign(child.out.release());
    ++job->open_streams;
  }
  if (child.err.fd >= 0) {
    job->err.assign(child.err.release());
    ++job->open_streams;
  }
  if (child.in.fd >= 0) job->in.assign(child.in.release());
  job->begin();
  if (terminating.load()) job->terminate();
}

void ProcessEngine::Impl::Job::begin() {
  ProcessResult& r = node->result;
  if (out.is_open()) read(out, r.stdout_text, r.stdout_truncated);
  if (err.is_open()) read(err, r.stderr_text, r.stderr_truncated);
  if (in.is_open()) {
    // A command that exits without reading its stdin ends the write with EPIPE.
    asio::async_write(in, asio::buffer(*node->spec.options.stdin_text),
                      [self = shared_from_this()](const boost::system::error_code&, std::size_t) {
                        boost::system::error_code ignored;
                        self->in.close(ignored);
                      });
  }
  // The timeout counts from the spawn, not from when the loop heard of it.
  const ProcessOptions& o = node->spec.options;
  if (o.timeout.count() > 0) {
    timer.expires_at(spawned + o.timeout);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->kill != Kill::none) return;
      self->node->result.timed_out = true;
      self->terminate();
    });
  }
  if (node->interrupt_requested.load(std::memory_order_seq_cst)) terminate();
  // The exit is watched once the pipes are closed (see stream_closed).
  if (open_streams > 0) return;
  if (exited) return maybe_done();
  reap();  // ends in maybe_done once it has exited
  if (!exited) watch_exit();
}

// Waits until d is readable, then reads what is there into the loop's one
// buffer (handlers run one at a time) and appends it, up to max_output.
void ProcessEngine::Impl::Job::read(asio::posix::stream_descriptor& d, std::string& text,
                                    bool& truncated) {
  d.async_wait(asio::posix::stream_descriptor::wait_read,
               [self = shared_from_this(), &d, &text, &truncated](const boost::system::error_code& ec) {
                 // Cancelled: a pipe held open after the group was killed.
                 if (ec || !drain(d.native_handle(), self->engine.read_buffer.data(), text,
                                  truncated, self->node->spec.options.max_output)) {
                   boost::system::error_code ignored;
                   d.close(ignored);
                   return self->stream_closed();
                 }
                 self->read(d, text, truncated);
               });
}

void ProcessEngine::Impl::Job::watch_exit() {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    exit_watch.assign(pidfd);
    exit_watch.async_wait(asio::posix::stream_descriptor::wait_read,
                          [self = shared_from_this()](const boost::system::error_code&) {
                            self->reap();
                          });
    return;
  }
  // No pidfds (Linux before 5.3): look every few milliseconds.
  auto poll = std::make_shared<asio::steady_timer>(engine.io);
  auto tick = std::make_shared<std::function<void()>>();
  *tick = [self = shared_from_this(), poll, tick]() {
    self->reap();
    if (self->exited) {
      *tick = nullptr;  // break the cycle
      return;
    }
    poll->expires_after(std::chrono::milliseconds(5));
    poll->async_wait([tick](const boost::system::error_code&) {
      if (*tick) (*tick)();
    });
  };
  (*tick)();
}

void ProcessEngine::Impl::Job::reap() noexcept {
  if (exited) return;
  int status = 0;
  const pid_t got = reap_if_exited(pid, status);
  if (got == 0) {  // a pidfd is readable only once the child exited; be safe
    if (exit_watch.is_open())
      exit_watch.async_wait(asio::posix::stream_descriptor::wait_read,
                            [self = shared_from_this()](const boost::system::error_code&) {
                              self->reap();
                            });
    return;
  }
  exited = true;
  wait_status = got == pid ? status : 0;  // ECHILD: SIGCHLD ignored, status lost
  node->result.elapsed = Clock::now() - spawned;
  boost::system::error_code ignored;
  exit_watch.close(ignored);
  maybe_done();  // the timeout still covers pipes that a grandchild keeps open
}

// TERM to the whole group now, KILL after the grace period, then stop
// waiting for pipes held open by processes that escaped the group.
void ProcessEngine::Impl::Job::terminate() noexcept {
  // Reaped, pipes closed: done, and its pid may be another's by now.
  if (kill != Kill::none || (exited && open_streams == 0)) return;
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
  // A command is done when its pipes are closed and it has exited. Its pipes
  // close as it exits, so by the time we see that, it has nearly always
  // exited too: reaped here, without a pidfd to make, watch and wake us.
  if (--open_streams == 0 && !exited) {
    reap();  // ends in maybe_done once it has exited
    if (!exited) watch_exit();
    return;
  }
  maybe_done();
}

void ProcessEngine::Impl::Job::maybe_done() {
  if (!exited || open_streams > 0) return;
  boost::system::error_code ignored;
  timer.cancel();
  in.close(ignored);
  if (kill != Kill::none) ::kill(-pid, SIGKILL);  // leftovers of a terminated group
  record_exit(node->result, wait_status);
  engine.job_done(shared_from_this());
}

void ProcessEngine::Impl::job_done(const std::shared_ptr<Job>& job) {
  ProcessNode* n = job->node;
  running.erase(n);
  if (should_retry(n)) {
    std::lock_guard lock(mutex);
    try {
      retries.push_back(n);  // it keeps its slot
      wake_spawner_locked();
      return;
    } catch (const std::exception&) {
      if (!retries.empty() && retries.back() == n) retries.pop_back();
    }  // out of memory: it fails as it is
  }
  if (terminating.load()) {
    // The program is about to end by the signal: completing these tasks now
    // would only race the end with wait()s that throw.
    held.push_back(n);
    if (free_slot(true)) acknowledge_termination();
    return;
  }
  settle_done(n, settle(*n, {}, n->interrupt_requested.load(std::memory_order_seq_cst)), true);
}

bool ProcessEngine::Impl::should_retry(ProcessNode* n) const noexcept {
  const ProcessResult& r = n->result;
  if (r.succeeded() || n->interrupt_requested.load(std::memory_order_seq_cst) ||
      terminating.load() || r.attempts > n->spec.options.retries)
    return false;
  diag("command '{}' failed (attempt {} of {}); running it again", r.command, r.attempts,
       n->spec.options.retries + 1);
  return true;
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
      notify(n, settle(*n, {}, n->interrupt_requested.load()));
  });
}

// ---- both --------------------------------------------------------------------

// The observers' "started", once per command: at its first spawn, or as it
// ends without one (it could not start).
void ProcessEngine::Impl::announce_start(ProcessNode* n) noexcept {
  if (n->on_started && !n->start_announced) {
    n->start_announced = true;
    n->on_started(n, n->done_arg);
  }
}

// Frees a slot; with `wake`, sees that queued work is taken (a spawner that
// frees its own slot takes it itself). True when that was the last command
// while the program is terminating.
bool ProcessEngine::Impl::free_slot(bool wake) noexcept {
  std::lock_guard lock(mutex);
  --active;
  if (wake) {
    try {
      wake_spawner_locked();
    } catch (...) {  // a spawner exists: this command came through one
    }
  }
  return terminating.load() && active == 0;
}

// The command is done: its slot goes to the next one, then its waiters hear.
void ProcessEngine::Impl::settle_done(ProcessNode* n, ProcessOutcome outcome, bool on_loop) noexcept {
  if (outcome != ProcessOutcome::not_started) announce_start(n);
  const bool last = free_slot(on_loop);
  notify(n, outcome);
  if (!last) return;
  if (on_loop) return acknowledge_termination();
  try {
    asio::post(io, [this] { acknowledge_termination(); });
  } catch (...) {  // out of memory: the signal's own fallback ends the program
  }
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

void ProcessEngine::Impl::terminate_all() noexcept {
  std::size_t commands;
  {
    std::lock_guard lock(mutex);
    terminating.store(true);
    commands = active;
  }
  diag("engine '{}': termination signal; stopping {} commands", name, commands);
  // Queued commands are not started: the program is about to end. Those on a
  // spawner reach the loop within wait_on_spawner and are terminated there.
  if (commands == 0) return acknowledge_termination();
  for (auto& [node, job] : running) job->terminate();
}

void ProcessEngine::Impl::watch_wake() {
  wake.async_read_some(asio::buffer(&wake_byte, 1),
                       [this](const boost::system::error_code& ec, std::size_t) {
                         if (ec) return;
                         if (pending_termination_signal() && !terminating.load()) terminate_all();
                         watch_wake();
                       });
}

ProcessEngine::Impl::Impl(std::string engine_name, std::size_t max)
    : name(std::move(engine_name)),
      max_running(max),
      wake(io),
      spawner_cap(std::min<std::size_t>(max ? max + 1 : max_spawners, max_spawners)) {
  auto fail = [&](const char* what) {
    return Error(fmt::format("process engine '{}': {}: {}", name, what, std::strerror(errno)));
  };
  null_fd.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (null_fd.fd < 0 || (null_fd.reset(above_stdio(null_fd.release())), null_fd.fd < 0))
    throw fail("cannot open /dev/null");
  work_waiting.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (work_waiting.fd < 0 || (work_waiting.reset(above_stdio(work_waiting.release())),
                              work_waiting.fd < 0))
    throw fail("cannot make an eventfd");
  if (!make_pipe(wake_read, wake_write)) throw fail("cannot make a pipe");
  ::fcntl(wake_write.fd, F_SETFL, O_NONBLOCK);
  wake.assign(wake_read.release());
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
    throw Error(fmt::format("process engine '{}': cannot start its thread: {}", name, e.what()));
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

ProcessEngine::Impl::~Impl() {
  forget_termination_signals(signal_slot);
}

// ---- the public face ---------------------------------------------------------

ProcessEngine::ProcessEngine(std::string name, std::size_t max_running)
    : impl_(std::make_unique<Impl>(std::move(name), max_running)) {}

ProcessEngine::~ProcessEngine() { stop(); }

void ProcessEngine::start(ProcessNode* n, bool claim) noexcept {
  retain(n);  // the engine's reference, dropped after on_done
  n->engine.store(this, std::memory_order_seq_cst);
  impl_->size.fetch_add(1, std::memory_order_acq_rel);
  impl_->enqueue(n, claim);
}

void ProcessEngine::interrupt(ProcessNode* n) noexcept {
  // On a spawner, the command sees the flag when it ends or reaches the loop.
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
  impl_->cancel_note_arg = arg;
  impl_->cancel_note.store(note, std::memory_order_release);
  // As cancel() of a running command: no retry, and it fails with
  // pools::Cancelled saying its process group was terminated.
  auto interrupt_running = [note, arg](ProcessNode* n) {
    if (!n->interrupt_requested.exchange(true, std::memory_order_seq_cst)) note(n, true, arg);
  };
  try {
    asio::post(impl_->io, [impl = impl_.get(), note, arg, interrupt_running] {
      std::vector<std::pair<ProcessNode*, bool>> queued;
      {
        std::lock_guard lock(impl->mutex);
        for (auto [n, claim] : impl->queue)
          if (claim) queued.emplace_back(n, false);
        for (ProcessNode* n : impl->on_spawners) queued.emplace_back(n, true);
        for (ProcessNode* n : impl->retries) queued.emplace_back(n, true);
        for (auto& entry : queued) retain(entry.first);  // they may end meanwhile
      }
      for (auto [n, started] : queued) {
        // Still queued: cancelled, and dropped unrun when a spawner takes it.
        // Taken by a spawner meanwhile: it is running.
        if (!started && cancel(n)) note(n, false, arg);
        else interrupt_running(n);
        release(n);
      }
      for (auto& [n, job] : impl->running) {
        interrupt_running(n);
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
  const bool on_loop = impl_->thread.get_id() == std::this_thread::get_id();
  if (on_loop) impl_->thread.detach();
  else impl_->thread.join();
  {
    std::lock_guard lock(impl_->mutex);
    impl_->spawners_stopping = true;
  }
  impl_->spawner_cv.notify_all();
  for (auto& t : impl_->spawners) {
    if (t.get_id() == std::this_thread::get_id()) t.detach();  // a waiter's on_done closed the pool
    else if (t.joinable()) t.join();
  }
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
