#include "multiprocess/multiprocess_pool.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <list>

#include <fmt/core.h>

#include "core/diag.hpp"
#include "core/registry_internal.hpp"
#include "multiprocess/fork_server.hpp"
#include "multiprocess/remote_process.hpp"
#include "multiprocess/worker.hpp"
#include "process/termination_signals.hpp"
#include "wire/frame.hpp"
#include "wire/remote_call.hpp"
#include "wire/reply.hpp"

namespace pools::detail {

using Clock = std::chrono::steady_clock;
using wire::FrameKind;

namespace {

constexpr std::size_t inline_payload = 16 * 1024;  // larger payloads are written in place
constexpr int max_start_failures = 3;               // workers that die before any reply
constexpr auto stop_grace = std::chrono::seconds(30);  // for finalizers, then SIGKILL
// After SIGTERM on a termination signal: workers stop their own commands (TERM,
// then KILL after the commands' grace) and die; then SIGKILL.
constexpr auto terminate_grace = std::chrono::seconds(5);
char signal_marker;  // epoll data of the termination-signal pipe

// One frame for a worker, and how far the worker's output must get for it to
// be out whole.
struct Unit : RemoteUnit {
  std::uint64_t out_end = 0;  // the worker's output byte count once this frame is out
};

struct OutChunk {
  std::string bytes;     // owned bytes...
  std::string_view ref;  // ...or a payload that lives in its task until the reply
  std::string_view view() const noexcept { return ref.data() ? ref : std::string_view(bytes); }
};

struct Worker {
  pid_t pid = 0;
  int fd = -1;
  std::string host;
  wire::FrameDecoder in;
  std::deque<Unit> in_flight;  // in the order sent; the worker runs them in that order
  std::deque<OutChunk> out;
  std::size_t out_offset = 0;  // written bytes of out.front()
  std::uint64_t bytes_queued = 0, bytes_written = 0;
  bool want_write = false;  // EPOLLOUT armed
  std::size_t calls_sent = 0, replies = 0;
  bool retiring = false, stop_sent = false;
  bool timed_out = false;  // killed by the pool for its head's timeout
  bool ready = false;      // said hello: its initializer ran
  std::string last_words;  // why its initializer failed
  Clock::time_point head_since{};
  double service_ns = 0;  // moving average of a call's time, for max_in_flight
  Clock::time_point stop_deadline{};
};

std::string describe_exit(const WorkerExit& e) {
  if (!e.known) return "it exited (status unknown)";
  if (e.signal)
    return fmt::format("it was killed by signal {} ({})", e.signal, ::strsignal(e.signal));
  if (e.exit_status == exit_initializer_failed) return "its initializer failed";
  return fmt::format("it exited with status {}", e.exit_status);
}

}  // namespace

struct MultiprocessPool::Loop {
  MultiprocessPool& pool;
  int epoll = -1;
  int wake = -1;  // eventfd: new work, or stop
  int signal_read = -1, signal_write = -1;  // a byte when SIGINT/SIGTERM/... arrived
  int signal_slot = -1;
  std::string config;
  std::string host;

  // Filled by submitters, taken by the I/O thread.
  std::mutex incoming_mutex;
  std::vector<Unit> incoming;
  std::atomic<bool> sleeping{false};
  std::atomic<bool> stopping{false};
  std::atomic<bool> closing_now{false};  // shutdown_now: cancel, kill the workers

  // The state below belongs to whoever holds state_mutex: the I/O thread,
  // except while it sleeps in epoll_wait, when a submitter may take it to
  // send its call itself (one thread hand-off less per round trip).
  std::mutex state_mutex;
  std::deque<Unit> pending;
  std::list<Worker> workers;
  std::uint64_t next_seq = 1;
  // A termination signal arrived: workers are being stopped; their calls are
  // held (the program is about to die of the signal) until acknowledged.
  bool terminating = false;
  bool acknowledged = false;
  Clock::time_point terminate_deadline{};
  std::vector<std::pair<Unit, std::string>> held;  // calls of stopped workers, and why
  int start_failures = 0;       // workers in a row that died before they were ready
  bool respawn_blocked = false;  // after too many: until new work comes
  std::size_t first_ready = 0;   // workers that said hello (for PoolState::running)
  bool workers_killed = false;   // by close_now

  explicit Loop(MultiprocessPool& p) : pool(p) {}

  ~Loop() {
    forget_termination_signals(signal_slot);
    for (int fd : {signal_read, signal_write})
      if (fd >= 0) ::close(fd);
    for (Worker& w : workers)
      if (w.fd >= 0) ::close(w.fd);
    if (wake >= 0) ::close(wake);
    if (epoll >= 0) ::close(epoll);
  }

  void setup() {
    epoll = ::epoll_create1(EPOLL_CLOEXEC);
    wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (epoll < 0 || wake < 0)
      throw Error(fmt::format("multiprocess pool '{}': {}", pool.name(), std::strerror(errno)));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;
    ::epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &ev);
    // SIGINT, SIGTERM, SIGHUP, SIGPIPE: the workers' commands must not outlive
    // the program, and a worker killed outright (by PDEATHSIG when the
    // program dies) cannot stop them. See terminate_workers.
    int sp[2];
    if (::pipe2(sp, O_CLOEXEC | O_NONBLOCK) == 0) {
      signal_read = sp[0];
      signal_write = sp[1];
      ev.data.ptr = &signal_marker;
      ::epoll_ctl(epoll, EPOLL_CTL_ADD, signal_read, &ev);
      signal_slot = watch_termination_signals(signal_write);
    }
    char h[256] = {};
    ::gethostname(h, sizeof h - 1);
    host = h;
    WorkerConfig c;
    c.pool_name = pool.name();
    c.environment = pool.options_.environment;
    c.initializer = encode_hook_call(pool.options_.initializer);
    c.finalizer = encode_hook_call(pool.options_.finalizer);
    config = encode_config(c);
    for (std::size_t i = 0; i < pool.size_; ++i) spawn();
  }

  void spawn() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      throw Error(fmt::format("multiprocess pool '{}': socketpair: {}", pool.name(),
                              std::strerror(errno)));
    pid_t pid;
    try {
      pid = ForkServer::instance().spawn(sv[1], config);
    } catch (...) {
      ::close(sv[0]);
      ::close(sv[1]);
      throw;
    }
    ::close(sv[1]);
    ::fcntl(sv[0], F_SETFL, ::fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    Worker& w = workers.emplace_back();
    w.pid = pid;
    w.fd = sv[0];
    w.host = host;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = &w;
    ::epoll_ctl(epoll, EPOLL_CTL_ADD, w.fd, &ev);
    diag("multiprocess pool '{}': worker {} started", pool.name(), pid);
  }

  // Spawns a replacement, or when that fails fails the queued work.
  void replace_worker() {
    try {
      spawn();
    } catch (const std::exception& e) {
      fail_pending(e.what());
    }
  }

  // New work after the workers kept failing to start: try again (and fail
  // that work too if they still cannot start).
  void retry_workers() {
    respawn_blocked = false;
    std::size_t serving = 0;
    for (const Worker& w : workers)
      if (!w.retiring) ++serving;
    for (; serving < pool.size_; ++serving) replace_worker();
  }

  // A waiter's poll: while the I/O thread sleeps, read the replies that have
  // arrived on this thread, so that the waiter's task completes without a
  // wake-up of the I/O thread and then of the waiter. A worker found gone is
  // left for the I/O thread, which epoll tells.
  // Not with a task timeout: the I/O thread must see every call start to time
  // it. What the I/O thread would do next (send queued calls, stop a retiring
  // worker) is done here too, or left to it with a poke.
  static void poll_replies(void* self) noexcept {
    auto* loop = static_cast<Loop*>(self);
    if (loop->pool.options_.task_timeout.count() > 0 ||
        !loop->sleeping.load(std::memory_order_relaxed)) {
      sched_yield();
      return;
    }
    std::unique_lock lock(loop->state_mutex, std::try_to_lock);
    if (!lock.owns_lock() || loop->terminating || loop->respawn_blocked) return;
    bool received = false;
    for (Worker& w : loop->workers) {
      if (w.fd < 0 || w.in_flight.empty()) continue;
      const std::size_t before = w.in_flight.size();
      loop->receive(w);
      received |= w.in_flight.size() != before;
    }
    if (!received) return;
    loop->take_incoming();
    loop->dispatch();
    bool need_loop = !loop->pending.empty();
    for (Worker& w : loop->workers) {
      if (!w.out.empty() && w.fd >= 0) loop->flush(w);
      need_loop |= w.retiring;
    }
    lock.unlock();
    if (need_loop) loop->poke();
  }

  // ---- submitting -----------------------------------------------------------

  void post_all(std::vector<Unit>&& us) {
    {
      std::lock_guard lock(incoming_mutex);
      for (Unit& u : us) incoming.push_back(std::move(u));
    }
    if (!send_directly()) poke();
  }

  // While the I/O thread sleeps, queue and write the new calls from the
  // submitting thread. Not when the I/O thread must look at the calls itself:
  // to time them, or to start workers. A worker found gone here is left for
  // the I/O thread, which epoll tells.
  bool send_directly() {
    if (pool.options_.task_timeout.count() > 0 || !sleeping.load(std::memory_order_seq_cst))
      return false;
    std::unique_lock lock(state_mutex, std::try_to_lock);
    if (!lock.owns_lock() || respawn_blocked || terminating || stopping.load()) return false;
    take_incoming();
    dispatch();
    for (Worker& w : workers)
      if (!w.out.empty() && w.fd >= 0) flush(w);
    return true;
  }
  // Wakes the I/O thread if it sleeps (a busy one finds the work itself).
  void poke() {
    if (sleeping.exchange(false, std::memory_order_seq_cst)) {
      const std::uint64_t one = 1;
      [[maybe_unused]] auto r = ::write(wake, &one, sizeof one);
    }
  }

  // ---- completing --------------------------------------------------------------

  void fail_pending(const std::string& why) {
    fail_pending(std::make_exception_ptr(
        Error(fmt::format("multiprocess pool '{}' cannot run tasks: {}", pool.name(), why))));
  }
  void fail_pending(const std::exception_ptr& error) {
    take_incoming();
    for (Unit& u : pending) pool.fail_unit(u, error);
    pending.clear();
  }

  // ---- the loop --------------------------------------------------------------------

  void take_incoming() {
    std::lock_guard lock(incoming_mutex);
    for (Unit& u : incoming) pending.push_back(std::move(u));
    incoming.clear();
  }

  std::size_t in_flight_limit(const Worker& w) const {
    if (pool.options_.max_in_flight) return pool.options_.max_in_flight;
    if (w.service_ns <= 0) return 4;
    // Enough calls ahead to cover about 2 ms of work: tiny calls travel many at
    // a time, long ones one or two, so that an idle worker gets the next one.
    const double n = 2e6 / w.service_ns;
    return static_cast<std::size_t>(std::clamp(n, 2.0, 256.0));
  }

  Worker* pick_worker() {
    Worker* best = nullptr;
    for (Worker& w : workers) {
      if (w.retiring || w.fd < 0 || w.in_flight.size() >= in_flight_limit(w)) continue;
      if (!best || w.in_flight.size() < best->in_flight.size()) best = &w;
    }
    return best;
  }

  void dispatch() {
    if (terminating) return;
    while (!pending.empty()) {
      Worker* w = pick_worker();
      if (!w) return;
      Unit u = std::move(pending.front());
      pending.pop_front();
      if (!pool.claim(u)) continue;
      send(*w, std::move(u));
    }
  }

  void queue_bytes(Worker& w, std::string_view bytes, bool may_reference) {
    w.bytes_queued += bytes.size();
    if (may_reference && bytes.size() > inline_payload) {
      w.out.push_back(OutChunk{{}, bytes});
      return;
    }
    if (w.out.empty() || w.out.back().ref.data() || w.out.back().bytes.size() > 256 * 1024)
      w.out.emplace_back();
    w.out.back().bytes.append(bytes);
  }

  void send(Worker& w, Unit&& u) {
    u.seq = next_seq++;
    if (u.batch.empty()) {
      const std::string& p = u.call->payload;
      const auto h = wire::encode_header(
          {FrameKind::call, 0, u.seq, static_cast<std::uint32_t>(p.size())});
      queue_bytes(w, std::string_view(h.data(), h.size()), false);
      queue_bytes(w, p, true);
    } else {
      std::string frame;
      append_call_frame(frame, u);
      queue_bytes(w, frame, false);
    }
    u.out_end = w.bytes_queued;
    if (w.in_flight.empty()) w.head_since = Clock::now();
    w.calls_sent += u.items();
    w.in_flight.push_back(std::move(u));
    if (w.in_flight.size() == 1 && hooks_active()) [[unlikely]] announce_head(w);
    const std::size_t recycle = pool.options_.max_tasks_per_worker;
    if (recycle && w.calls_sent >= recycle && !w.retiring) {
      w.retiring = true;  // no more calls; a fresh worker takes over
      replace_worker();
    }
  }

  // Observers: a worker runs its calls in the order sent, so the call at the
  // head of its queue is the one it runs; its tasks are reported started when
  // they get there (a chunk's tasks all at once), not when they were sent.
  void announce_head(Worker& w) {
    if (!w.in_flight.empty())
      pool.announce(w.in_flight.front(), {WorkerKind::process, static_cast<std::int64_t>(w.pid)});
  }

  void set_want_write(Worker& w, bool want) {
    if (w.want_write == want) return;
    w.want_write = want;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u);
    ev.data.ptr = &w;
    ::epoll_ctl(epoll, EPOLL_CTL_MOD, w.fd, &ev);
  }

  // Writes what it can without blocking. False when the worker is gone.
  bool flush(Worker& w) {
    while (!w.out.empty()) {
      iovec iov[64];
      int n = 0;
      std::size_t offset = w.out_offset;
      for (auto it = w.out.begin(); it != w.out.end() && n < 64; ++it, ++n) {
        std::string_view v = it->view();
        iov[n].iov_base = const_cast<char*>(v.data() + offset);
        iov[n].iov_len = v.size() - offset;
        offset = 0;
      }
      // sendmsg, not writev: MSG_NOSIGNAL, so that a worker that died does
      // not raise SIGPIPE in the program.
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<std::size_t>(n);
      const ssize_t wrote = ::sendmsg(w.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (wrote < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        return false;  // EPIPE: its end is closed; the read side reports the loss
      }
      w.bytes_written += static_cast<std::uint64_t>(wrote);
      std::size_t left = static_cast<std::size_t>(wrote);
      while (left) {
        const std::size_t chunk = w.out.front().view().size() - w.out_offset;
        if (left < chunk) {
          w.out_offset += left;
          left = 0;
        } else {
          left -= chunk;
          w.out.pop_front();
          w.out_offset = 0;
        }
      }
    }
    set_want_write(w, !w.out.empty());
    return true;
  }

  // Reads and handles what the worker sent. False when it is gone.
  bool receive(Worker& w) {
    for (;;) {
      char* room = w.in.prepare(64 * 1024);
      const ssize_t n = ::read(w.fd, room, w.in.prepared_size());
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        return false;
      }
      if (n == 0) return false;
      w.in.commit(static_cast<std::size_t>(n));
      if (!handle_frames(w)) return false;
      if (static_cast<std::size_t>(n) < w.in.prepared_size()) break;  // drained
    }
    return true;
  }

  bool handle_frames(Worker& w) {
    try {
      while (auto f = w.in.next()) {
        if (!handle_frame(w, *f)) return false;
      }
    } catch (const std::exception& e) {
      write_line(fmt::format("multiprocess pool '{}': worker {} sent a bad reply: {}",
                             pool.name(), w.pid, e.what()));
      ::kill(w.pid, SIGKILL);
      return false;
    }
    return true;
  }

  bool handle_frame(Worker& w, const wire::Frame& f) {
    const FrameKind kind = f.header.kind;
    if (kind == FrameKind::hello) {
      int pid = 0;
      std::string h, exe;
      decode(f.payload, "a hello", pid, h, exe);
      w.host = h;
      if (!w.ready && ++first_ready == pool.size_) pool.set_state(PoolState::running);
      w.ready = true;
      start_failures = 0;
      return true;
    }
    if (kind == FrameKind::bye) return true;
    const bool reply = kind == FrameKind::result || kind == FrameKind::error ||
                       kind == FrameKind::reject || kind == FrameKind::result_batch;
    if (!reply) throw wire::WireError(fmt::format("unexpected {} frame", wire::to_string(kind)));
    if (f.header.task_id == 0) {  // the initializer or finalizer failed
      std::string type, what;
      if (kind == FrameKind::error) decode(f.payload, "an error reply", type, what);
      w.last_words = fmt::format("{}: {}", type, what);
      return true;
    }
    if (w.in_flight.empty() || w.in_flight.front().seq != f.header.task_id)
      throw wire::WireError(fmt::format("a reply to call {} that is not the next", f.header.task_id));
    Unit u = std::move(w.in_flight.front());
    w.in_flight.pop_front();
    const auto now = Clock::now();
    const double took = std::chrono::duration<double, std::nano>(now - w.head_since).count() /
                        static_cast<double>(u.items());
    w.service_ns = w.service_ns <= 0 ? took : 0.8 * w.service_ns + 0.2 * took;
    w.head_since = now;
    if (hooks_active()) [[unlikely]] announce_head(w);
    w.replies += u.items();
    pool.settle_frame(u, f, ReplySource{w.pid, w.host, -1, fmt::format("worker process {}", w.pid)});
    return true;
  }

  // The worker's connection ended: find out how it died, fail the call it was
  // running, requeue the ones it had not started, and replace it.
  void lose(std::list<Worker>::iterator it) {
    Worker& w = *it;
    ::epoll_ctl(epoll, EPOLL_CTL_DEL, w.fd, nullptr);
    ::close(w.fd);
    w.fd = -1;
    const WorkerExit exit = ForkServer::instance().wait_exit(w.pid, 5000);
    if (terminating) {
      for (Unit& u : w.in_flight)
        held.emplace_back(std::move(u), fmt::format("worker process {} was stopped: the program "
                                                    "received signal {}",
                                                    w.pid, pending_termination_signal()));
      workers.erase(it);
      if (workers.empty()) acknowledge();
      return;
    }
    const bool expected = w.stop_sent && w.in_flight.empty();
    if (!expected) {
      diag("multiprocess pool '{}': worker {} lost: {}", pool.name(), w.pid, describe_exit(exit));
      std::string how = describe_exit(exit);
      if (!w.last_words.empty()) how += " (" + w.last_words + ")";
      if (workers_killed) how += " (the pool was closed at once)";
      if (!w.in_flight.empty() && w.ready) {
        Unit& head = w.in_flight.front();
        // A call still partly unwritten cannot have started.
        if (w.bytes_written >= head.out_end) {
          const std::string names =
              head.batch.empty() ? fmt::format("task '{}'", task_name(head.task))
                                 : fmt::format("a chunk of {} tasks", head.batch.size());
          const std::string what =
              w.timed_out
                  ? fmt::format("{} ran longer than the timeout of {} ms: worker process {} of "
                                "multiprocess pool '{}' was killed",
                                names, pool.options_.task_timeout.count(), w.pid, pool.name())
                  : fmt::format("worker process {} of multiprocess pool '{}' died while running "
                                "{}: {}",
                                w.pid, pool.name(), names, how);
          auto error = std::make_exception_ptr(
              WorkerLost(what, w.pid, exit.signal, exit.exit_status, w.timed_out));
          if (workers_killed) {
            pool.fail_unit_stopped_at_close(head, error);
          } else {
            pool.fail_unit(head, error);
          }
          w.in_flight.pop_front();
        }
      }
      // The rest never started: they go first to another worker.
      while (!w.in_flight.empty()) {
        pending.push_front(std::move(w.in_flight.back()));
        w.in_flight.pop_back();
      }
      if (!w.ready && ++start_failures >= max_start_failures) {
        start_failures = 0;
        respawn_blocked = true;
        pool.set_state(PoolState::running);  // done starting: its tasks fail
        fail_pending(std::make_exception_ptr(WorkerLost(
            fmt::format("multiprocess pool '{}' cannot run tasks: {} workers in a row died "
                        "before they were ready; the last: {}",
                        pool.name(), max_start_failures, how),
            w.pid, exit.signal, exit.exit_status)));
      }
    }
    const bool replace = !w.retiring && !stopping.load() && !respawn_blocked;
    workers.erase(it);  // (a retiring one was replaced when it began to retire)
    if (replace) replace_worker();
  }

  // A termination signal: each worker gets SIGTERM, which its own engine
  // relays to the commands it started (their process groups) before it dies.
  // Once all are gone the signal may be raised again (acknowledge).
  void terminate_workers() {
    terminating = true;
    diag("multiprocess pool '{}': termination signal; stopping {} workers", pool.name(),
         workers.size());
    terminate_deadline = Clock::now() + terminate_grace;
    for (Worker& w : workers)
      if (w.pid > 0) ::kill(w.pid, SIGTERM);
    if (workers.empty()) acknowledge();
  }

  void acknowledge() {
    if (acknowledged) return;
    acknowledged = true;
    termination_handled();
    terminate_deadline = Clock::now() + std::chrono::seconds(2);
  }

  // Still alive after the signal was raised again: the program survives it (a
  // handler of its own). The held calls fail; new workers take the rest.
  void resume_after_termination() {
    terminating = acknowledged = false;
    for (auto& [u, why] : held)
      pool.fail_unit(u, std::make_exception_ptr(WorkerLost(why, 0, 0, -1)));
    held.clear();
    retry_workers();
  }

  // Kills workers whose running call is over its time, and stops finished
  // retiring ones. Returns how long epoll may sleep (ms, -1: no limit).
  int check_workers() {
    int sleep_ms = -1;
    const auto now = Clock::now();
    auto at_most = [&](Clock::duration d) {
      const int ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(d).count() + 1);
      sleep_ms = sleep_ms < 0 ? std::max(ms, 0) : std::min(sleep_ms, std::max(ms, 0));
    };
    if (terminating) {
      if (now < terminate_deadline) {
        at_most(terminate_deadline - now);
      } else if (!acknowledged) {
        for (Worker& w : workers) ::kill(w.pid, SIGKILL);
        terminate_deadline = now + std::chrono::seconds(1);
        at_most(std::chrono::seconds(1));
      } else if (termination_raised()) {
        resume_after_termination();
      } else {
        at_most(std::chrono::milliseconds(100));  // the other engines are still busy
      }
      return sleep_ms;
    }
    const auto timeout = pool.options_.task_timeout;
    for (Worker& w : workers) {
      if (w.fd < 0) continue;
      if (timeout.count() > 0 && !w.in_flight.empty() && !w.timed_out &&
          w.bytes_written >= w.in_flight.front().out_end) {
        const auto limit = timeout * static_cast<long>(w.in_flight.front().items());
        if (now - w.head_since >= limit) {
          w.timed_out = true;
          ::kill(w.pid, SIGKILL);
        } else {
          at_most(w.head_since + limit - now);
        }
      }
      const bool idle = w.in_flight.empty() && w.out.empty();
      if (idle && (w.retiring || stopping.load()) && !w.stop_sent) {
        w.stop_sent = true;
        w.stop_deadline = now + stop_grace;
        const auto h = wire::encode_header({FrameKind::stop, 0, 0, 0});
        queue_bytes(w, std::string_view(h.data(), h.size()), false);
        flush(w);
      }
      if (w.stop_sent) {
        if (now >= w.stop_deadline) {
          ::kill(w.pid, SIGKILL);  // a finalizer that does not finish
        } else {
          at_most(w.stop_deadline - now);
        }
      }
    }
    return sleep_ms;
  }

  // shutdown_now: the queued calls are cancelled, and the workers killed
  // (SIGTERM, which their engines relay to their commands; SIGKILL after the
  // grace): the call each was running fails with WorkerLost, and the calls
  // queued behind it come back here and are cancelled in their turn.
  void close_now() {
    take_incoming();
    const std::string why = fmt::format("multiprocess pool '{}' was closed at once", pool.name());
    for (Unit& u : pending) pool.cancel_unit(u, why);
    pending.clear();
    if (workers_killed) return;
    workers_killed = true;
    const auto deadline = Clock::now() + terminate_grace;
    for (Worker& w : workers) {
      w.retiring = true;  // never picked again
      w.stop_sent = true;
      w.stop_deadline = deadline;  // then SIGKILL (check_workers)
      if (w.pid > 0) ::kill(w.pid, SIGTERM);
    }
  }

  bool finished() {
    if (!stopping.load()) return false;
    std::lock_guard lock(incoming_mutex);
    return incoming.empty() && pending.empty() && workers.empty();
  }

  void run() noexcept {
    epoll_event events[64];
    std::unique_lock state(state_mutex);
    for (;;) {
      take_incoming();
      if (closing_now.load()) close_now();
      if (respawn_blocked && !pending.empty()) retry_workers();
      dispatch();
      for (auto it = workers.begin(); it != workers.end();) {
        auto next = std::next(it);
        if (!it->out.empty() && it->fd >= 0 && !flush(*it)) {
          receive(*it);  // what it said before it went (why its initializer failed)
          lose(it);
        }
        it = next;
      }
      const int sleep_ms = check_workers();
      if (finished()) return;
      sleeping.store(true, std::memory_order_seq_cst);
      {
        std::lock_guard lock(incoming_mutex);
        if (!incoming.empty()) {
          sleeping.store(false, std::memory_order_relaxed);
          continue;
        }
      }
      state.unlock();
      const int n = ::epoll_wait(epoll, events, 64, sleep_ms);
      sleeping.store(false, std::memory_order_seq_cst);
      state.lock();
      for (int i = 0; i < n; ++i) {
        if (!events[i].data.ptr) {
          std::uint64_t v;
          [[maybe_unused]] auto r = ::read(wake, &v, sizeof v);
          continue;
        }
        if (events[i].data.ptr == &signal_marker) {
          char buf[16];
          while (::read(signal_read, buf, sizeof buf) > 0) {
          }
          if (pending_termination_signal() && !terminating) terminate_workers();
          continue;
        }
        auto* w = static_cast<Worker*>(events[i].data.ptr);
        auto it = std::find_if(workers.begin(), workers.end(),
                               [&](const Worker& x) { return &x == w; });
        if (it == workers.end()) continue;  // lost earlier in this batch of events
        bool alive = true;
        if (events[i].events & EPOLLOUT) alive = flush(*w);
        if (alive && (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
          alive = receive(*w);
        if (!alive) {
          // Replies it wrote before it went are still readable.
          receive(*w);
          lose(it);
        }
      }
    }
  }
};

MultiprocessPool::MultiprocessPool(std::string name, std::size_t workers,
                                   const MultiprocessOptions& options)
    : RemotePool(std::move(name), PoolKind::multiprocess),
      size_(workers),
      options_(options),
      loop_(std::make_unique<Loop>(*this)) {
  loop_->setup();
  io_thread_ = std::thread([this] {
    // Signals go to the program's own threads.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    loop_->run();
  });
}

MultiprocessPool::~MultiprocessPool() {
  if (io_thread_.joinable()) {
    loop_->stopping.store(true);
    loop_->poke();
    io_thread_.join();
  }
}

void MultiprocessPool::post(std::vector<RemoteUnit>&& units) {
  std::vector<Unit> us(units.size());
  for (std::size_t i = 0; i < units.size(); ++i) static_cast<RemoteUnit&>(us[i]) = std::move(units[i]);
  loop_->post_all(std::move(us));
}

void MultiprocessPool::attach_poll(RemoteCall* call) noexcept {
  call->set_poll(&Loop::poll_replies, loop_.get());
}

void MultiprocessPool::shutdown() {
  std::call_once(shutdown_once_, [&] {
    diag("multiprocess pool '{}': shutting down", name());
    set_state(PoolState::draining);
    wait_completion();
    stop_accepting();
    wait_completion();
    loop_->stopping.store(true);
    loop_->poke();
    if (io_thread_.joinable()) io_thread_.join();
    report_unobserved_failures(true);
    unregister_pool(this);
    set_state(PoolState::stopped);
  });
}

void MultiprocessPool::shutdown_now() {
  stop_accepting();
  set_state(PoolState::draining);
  loop_->closing_now.store(true);
  loop_->stopping.store(true);
  loop_->poke();
  shutdown();
  report_cancelled_at_close();
}

}  // namespace pools::detail
