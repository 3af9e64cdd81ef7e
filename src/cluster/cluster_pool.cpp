#include "cluster/cluster_pool.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/core.h>

#include "cluster/mpi_session.hpp"
#include "core/diag.hpp"
#include "core/registry_internal.hpp"
#include "multiprocess/fork_server.hpp"
#include "wire/frame.hpp"
#include "wire/remote_call.hpp"
#include "wire/remote_pool.hpp"

namespace pools::detail {

using Clock = std::chrono::steady_clock;
using wire::FrameKind;
using cluster::mpi_lock;

namespace {

// How long rank 0 waits for the worker ranks' hellos, and for their byes.
constexpr auto hello_limit = std::chrono::seconds(60);
constexpr auto bye_limit = std::chrono::seconds(30);
constexpr std::size_t message_limit = 1 << 20;  // a rank's calls per message, in bytes

// A worker hook run on some ranks (ClusterOptions::on_start/on_stop): how
// many have not answered, and what failed.
struct HookRun {
  std::mutex mutex;
  std::condition_variable done;
  std::size_t left = 0;
  std::vector<std::string> failures;  // "worker rank 2 on node7: type: what"
  void answer(std::string failure) {
    std::lock_guard lock(mutex);
    if (!failure.empty()) failures.push_back(std::move(failure));
    if (--left == 0) done.notify_all();
  }
};

// One frame for a rank: calls of one of the cluster pools, or a hook.
struct Unit : RemoteUnit {
  ClusterPool* pool = nullptr;  // null for a hook
  HookRun* hook = nullptr;
  bool abandoned = false;  // timed out: failed already; its reply is dropped
  Clock::time_point sent{};
};

// A worker rank, as rank 0 sees it.
struct Peer {
  ClusterNode node;
  std::string exe;
  bool ready = false;  // said hello
  bool lost = false;   // stopped answering
  bool stuck = false;  // runs a timed-out call: no new work until it answers
  std::map<std::uint64_t, Unit> in_flight;  // by seq
  std::size_t calls = 0;  // calls in in_flight that still count
  std::string outbox;     // frames for the next message
  Clock::time_point last_heard{}, head_since{};
  double service_ns = 0;  // moving average of a call's time
};

struct Send {
  std::string bytes;
  MPI_Request request = MPI_REQUEST_NULL;
};

// Per pool: its calls not yet sent, and the ranks it may use.
struct PoolQueue {
  ClusterPool* pool = nullptr;
  std::deque<Unit> pending;
  std::size_t ranks = 0;  // uses peers 0..ranks-1 (ranks 1..ranks)
};

std::string where(const Peer& p) {
  return fmt::format("rank {} on {} (pid {})", p.node.rank, p.node.host, p.node.pid);
}

}  // namespace

/// Rank 0's side of the job: the worker ranks, and the one thread that talks
/// MPI to them for every cluster pool. Its state belongs to whoever holds
/// mpi_lock(): the communication thread, or while it sleeps a submitter or
/// waiter (see poll_replies).
class ClusterEngine {
public:
  static ClusterEngine& instance();
  static ClusterEngine* existing() noexcept { return the_engine.load(std::memory_order_acquire); }

  std::size_t worker_ranks() const noexcept { return peers_.size(); }
  const std::string& mismatch() const noexcept { return mismatch_; }
  std::vector<ClusterNode> nodes() const;

  void attach(ClusterPool* pool, std::size_t ranks);
  /// Runs an encoded void() call on ranks 1..ranks and waits for them;
  /// returns what failed, one line a rank.
  std::vector<std::string> run_on_ranks(const std::string& call, std::size_t ranks);
  /// shutdown_now: cancels the pool's calls not yet sent.
  void cancel_pending(ClusterPool* pool, const std::string& why);
  void detach(ClusterPool* pool);
  void post(std::vector<Unit>&& units);
  static void poll_replies(void* self) noexcept;

  /// At exit: stops the thread (the pools closed already).
  void stop() noexcept;
  /// True when a worker rank stopped answering (then MPI_Finalize would hang).
  bool any_lost() const noexcept { return any_lost_; }
  bool lost(int rank) const noexcept {
    return rank >= 1 && static_cast<std::size_t>(rank) <= peers_.size() &&
           peers_[static_cast<std::size_t>(rank - 1)].lost;
  }

private:
  ClusterEngine();
  void gather_hellos();
  void run() noexcept;
  bool step();
  void take_incoming();
  void dispatch();
  Peer* pick(PoolQueue& q);
  void send_unit(Peer& p, Unit&& u);
  void answer_hook(Unit& u, const Peer& p, FrameKind kind, std::string_view bytes);
  void announce(Peer& p);
  void flush_outboxes();
  void test_sends();
  bool receive_all();
  void receive(cluster::Message m);
  void handle_frame(Peer& p, const wire::Frame& f);
  void withdrawn(Peer& p, std::string_view ids);
  void check_peers();
  void lose(Peer& p, Clock::time_point now);
  bool idle() const;
  std::size_t in_flight_limit(const Peer& p, const ClusterPool& pool) const;
  void post_send(int to, int tag, std::string bytes);
  void note_busy() noexcept;

  static inline std::atomic<ClusterEngine*> the_engine{nullptr};

  std::vector<Peer> peers_;  // index i: rank i + 1
  std::string mismatch_;     // why the ranks cannot serve (empty: they can)
  std::list<Send> sends_;
  std::vector<PoolQueue> queues_;
  std::uint64_t next_seq_ = 1;
  std::chrono::milliseconds silence_limit_;
  Clock::time_point next_check_{};
  bool any_lost_ = false;
  const bool recovery_ = cluster::recovery_enabled();  // send rank 0's heartbeats

  std::mutex incoming_mutex_;
  std::vector<Unit> incoming_;
  std::condition_variable wake_cv_;
  bool wake_ = false;
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> busy_{false};  // calls in flight (a hint for post)
  std::atomic<bool> stopping_{false};
  std::atomic<Clock::rep> last_poll_{0};  // when a waiter last polled (poll_replies)
  std::thread thread_;
};

// ---- setup -------------------------------------------------------------------

ClusterEngine& ClusterEngine::instance() {
  // Made on first use, under the registry's lock (get_cluster_pool) or
  // cluster_nodes' own; never destroyed (stop() runs at exit).
  static std::once_flag once;
  std::call_once(once, [] { the_engine.store(new ClusterEngine, std::memory_order_release); });
  return *the_engine.load(std::memory_order_relaxed);
}

ClusterEngine::ClusterEngine() : silence_limit_(cluster::silence_from_env(ClusterOptions{}.silence_limit)) {
  peers_.resize(static_cast<std::size_t>(cluster::world_size() - 1));
  for (std::size_t i = 0; i < peers_.size(); ++i) peers_[i].node.rank = static_cast<int>(i + 1);
  gather_hellos();
  thread_ = std::thread([this] {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals go to the program's threads
    run();
  });
}

// Every worker rank says hello (pid, host, executable, cores, threads) once it
// serves. A rank that runs another program is refused here.
void ClusterEngine::gather_hellos() {
  std::lock_guard lock(mpi_lock());
  const std::string exe = wire::executable_identity();
  std::size_t missing = peers_.size();
  const auto deadline = Clock::now() + hello_limit;
  cluster::Backoff backoff;
  while (missing) {
    if (Clock::now() > deadline) {
      std::string who;
      for (const Peer& p : peers_)
        if (!p.ready) who += fmt::format("{}{}", who.empty() ? "" : ", ", p.node.rank);
      mismatch_ = fmt::format("worker ranks {} did not say hello within {} s: does every rank run "
                              "a program that calls pools::init(argc, argv) first in main?",
                              who, hello_limit.count());
      return;
    }
    // The ranks that said hello must not take our wait for the others as
    // rank 0's death (see the heartbeats at the end of this file).
    if (recovery_) cluster::send_heartbeats_from_rank0(nullptr);
    auto m = cluster::try_receive();
    if (!m) {
      backoff.pause();
      continue;
    }
    backoff.reset();
    const auto source = static_cast<std::size_t>(m->source - 1);
    const bool was_ready = source < peers_.size() && peers_[source].ready;
    receive(std::move(*m));
    if (!was_ready && source < peers_.size() && peers_[source].ready) --missing;
  }
  for (const Peer& p : peers_) {
    if (p.exe != exe && mismatch_.empty())
      mismatch_ = fmt::format("worker rank {} on {} runs another executable ({}) than rank 0 ({}): "
                              "every rank must run the same program, built once",
                              p.node.rank, p.node.host, p.exe, exe);
  }
}

std::vector<ClusterNode> ClusterEngine::nodes() const {
  std::vector<ClusterNode> out;
  for (const Peer& p : peers_) out.push_back(p.node);
  return out;
}

void ClusterEngine::attach(ClusterPool* pool, std::size_t ranks) {
  std::lock_guard lock(mpi_lock());
  queues_.push_back(PoolQueue{pool, {}, ranks});
}

std::vector<std::string> ClusterEngine::run_on_ranks(const std::string& call, std::size_t ranks) {
  HookRun run;
  {
    std::lock_guard lock(mpi_lock());
    for (std::size_t i = 0; i < ranks && i < peers_.size(); ++i) {
      Peer& p = peers_[i];
      if (p.lost) {
        run.failures.push_back(fmt::format("{}: it was lost earlier", where(p)));
        continue;
      }
      Unit u;
      u.hook = &run;
      u.claimed = true;
      u.seq = next_seq_++;
      u.sent = Clock::now();
      wire::append_frame(p.outbox, FrameKind::call, u.seq, call);
      p.in_flight.emplace(u.seq, std::move(u));
      ++run.left;
    }
    flush_outboxes();
    note_busy();
    busy_.store(true, std::memory_order_relaxed);
  }
  {
    std::lock_guard w(incoming_mutex_);
    wake_ = true;
  }
  wake_cv_.notify_one();
  std::unique_lock lock(run.mutex);
  run.done.wait(lock, [&] { return run.left == 0; });
  return run.failures;
}

// A hook's reply, or its rank's loss.
void ClusterEngine::answer_hook(Unit& u, const Peer& p, FrameKind kind, std::string_view bytes) {
  std::string failure;
  try {
    if (kind == FrameKind::error) {
      std::string type, what;
      decode(bytes, "an error reply", type, what);
      failure = fmt::format("{}: {}: {}", where(p), type, what);
    } else if (kind == FrameKind::reject) {
      std::string why;
      decode(bytes, "a refusal", why);
      failure = fmt::format("{} refused it: {}", where(p), why);
    } else if (kind != FrameKind::result) {
      failure = fmt::format("{}: it was lost", where(p));
    }
  } catch (const std::exception& e) {
    failure = fmt::format("{}: {}", where(p), e.what());
  }
  u.hook->answer(std::move(failure));
}

void ClusterEngine::cancel_pending(ClusterPool* pool, const std::string& why) {
  std::lock_guard lock(mpi_lock());
  take_incoming();
  for (PoolQueue& q : queues_) {
    if (q.pool != pool) continue;
    for (Unit& u : q.pending) pool->cancel_unit(u, why);
    q.pending.clear();
  }
}

void ClusterEngine::detach(ClusterPool* pool) {
  std::lock_guard lock(mpi_lock());
  std::erase_if(queues_, [&](const PoolQueue& q) { return q.pool == pool; });
}

// ---- submitting ----------------------------------------------------------------

void ClusterEngine::post(std::vector<Unit>&& units) {
  {
    std::lock_guard lock(incoming_mutex_);
    for (Unit& u : units) incoming_.push_back(std::move(u));
    wake_ = true;
  }
  // With nothing in flight (a round trip), send the calls from here when
  // nobody else talks MPI right now: one thread hand-off less, and a waiter
  // that polls may have its reply before the thread looks again. With calls
  // in flight the thread is probing anyway, and sends many in one message.
  if (!busy_.load(std::memory_order_relaxed) || sleeping_.load(std::memory_order_relaxed)) {
    std::unique_lock lock(mpi_lock(), std::try_to_lock);
    if (lock.owns_lock()) {
      take_incoming();
      dispatch();
      flush_outboxes();
      note_busy();
    }
  }
  // The thread must watch the calls in flight; one between probes does anyway.
  if (sleeping_.load(std::memory_order_seq_cst)) wake_cv_.notify_one();
}

void ClusterEngine::poll_replies(void* self) noexcept {
  auto* e = static_cast<ClusterEngine*>(self);
  e->last_poll_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  std::unique_lock lock(mpi_lock(), std::try_to_lock);
  if (!lock.owns_lock()) {
    sched_yield();
    return;
  }
  if (e->receive_all()) {
    e->take_incoming();
    e->dispatch();
    e->flush_outboxes();
    e->note_busy();
  }
}

void ClusterEngine::note_busy() noexcept {
  bool busy = false;
  for (const Peer& p : peers_) busy |= !p.lost && !p.in_flight.empty();
  busy_.store(busy, std::memory_order_relaxed);
}

void ClusterEngine::take_incoming() {
  std::vector<Unit> got;
  {
    std::lock_guard lock(incoming_mutex_);
    got.swap(incoming_);
  }
  for (Unit& u : got) {
    auto q = std::find_if(queues_.begin(), queues_.end(),
                          [&](const PoolQueue& x) { return x.pool == u.pool; });
    if (q == queues_.end()) {  // cannot happen: a pool detaches after its last task
      u.pool->fail_unit(u, std::make_exception_ptr(Error("cluster pool is gone")));
      continue;
    }
    q->pending.push_back(std::move(u));
  }
}

// ---- dispatching ---------------------------------------------------------------

std::size_t ClusterEngine::in_flight_limit(const Peer& p, const ClusterPool& pool) const {
  if (pool.options().max_in_flight) return pool.options().max_in_flight;
  const std::size_t threads = std::max(1u, p.node.threads);
  if (p.service_ns <= 0) return 4 * threads;
  // Enough calls ahead to cover about 2 ms of work per thread.
  const double n = 2e6 / p.service_ns;
  return threads * static_cast<std::size_t>(std::clamp(n, 2.0, 256.0));
}

Peer* ClusterEngine::pick(PoolQueue& q) {
  Peer* best = nullptr;
  for (std::size_t i = 0; i < q.ranks && i < peers_.size(); ++i) {
    Peer& p = peers_[i];
    if (p.lost || p.stuck || p.calls >= in_flight_limit(p, *q.pool)) continue;
    if (p.outbox.size() >= message_limit) continue;
    if (!best || p.calls < best->calls) best = &p;
  }
  return best;
}

void ClusterEngine::dispatch() {
  for (PoolQueue& q : queues_) {
    while (!q.pending.empty()) {
      Peer* p = pick(q);
      if (!p) {
        bool any_alive = false;
        for (std::size_t i = 0; i < q.ranks && i < peers_.size(); ++i)
          any_alive |= !peers_[i].lost;
        if (any_alive) break;
        // Every rank of this pool is gone: nothing can run its calls.
        Unit u = std::move(q.pending.front());
        q.pending.pop_front();
        q.pool->fail_unit(u, std::make_exception_ptr(WorkerLost(
                         fmt::format("cluster pool '{}' has no worker rank left: all {} stopped "
                                     "answering",
                                     q.pool->name(), q.ranks),
                         0, 0, -1)));
        continue;
      }
      Unit u = std::move(q.pending.front());
      q.pending.pop_front();
      if (!q.pool->claim(u)) continue;
      send_unit(*p, std::move(u));
    }
  }
}

void ClusterEngine::send_unit(Peer& p, Unit&& u) {
  u.seq = next_seq_++;
  u.sent = Clock::now();
  append_call_frame(p.outbox, u);
  if (p.calls == 0) p.head_since = u.sent;
  p.calls += u.items();
  p.in_flight.emplace(u.seq, std::move(u));
  if (hooks_active()) [[unlikely]] announce(p);
}

// Observers: a rank runs its calls in the order sent, `threads` at a time;
// those are reported started (not the ones queued behind them).
void ClusterEngine::announce(Peer& p) {
  std::size_t running = 0;
  for (auto& [seq, u] : p.in_flight) {
    if (running++ >= std::max(1u, p.node.threads)) break;
    if (!u.abandoned && !u.hook) u.pool->announce(u, {WorkerKind::rank, p.node.rank});
  }
}

void ClusterEngine::post_send(int to, int tag, std::string bytes) {
  Send& s = sends_.emplace_back();
  s.bytes = std::move(bytes);
  const int rc = MPI_Isend(s.bytes.data(), static_cast<int>(s.bytes.size()), MPI_BYTE, to, tag,
                           cluster::comm(), &s.request);
  if (rc != MPI_SUCCESS) {
    write_line(fmt::format("cluster pool: sending to rank {} failed: {}", to, cluster::mpi_error(rc)));
    sends_.pop_back();
  }
}

void ClusterEngine::flush_outboxes() {
  for (Peer& p : peers_) {
    if (p.outbox.empty()) continue;
    post_send(p.node.rank, cluster::tag_frames, std::move(p.outbox));
    p.outbox.clear();
  }
  test_sends();
}

void ClusterEngine::test_sends() {
  for (auto it = sends_.begin(); it != sends_.end();) {
    int done = 0;
    MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
    it = done ? sends_.erase(it) : std::next(it);
  }
}

// ---- replies -------------------------------------------------------------------

bool ClusterEngine::receive_all() {
  bool got = false;
  while (auto m = cluster::try_receive()) {
    receive(std::move(*m));
    got = true;
  }
  return got;
}

void ClusterEngine::receive(cluster::Message m) {
  const int source = m.source, tag = m.tag;
  const std::string& bytes = m.bytes;
  if (source < 1 || static_cast<std::size_t>(source) > peers_.size()) return;
  Peer& p = peers_[static_cast<std::size_t>(source - 1)];
  p.last_heard = Clock::now();
  if (tag == cluster::tag_withdraw) return withdrawn(p, bytes);
  if (tag != cluster::tag_frames) return;  // a heartbeat
  wire::FrameDecoder in;
  in.feed(bytes.data(), bytes.size());
  try {
    while (auto f = in.next()) handle_frame(p, *f);
    in.finish();
  } catch (const std::exception& e) {
    // A rank that speaks garbage cannot be trusted with more work.
    write_line(fmt::format("cluster pool: {} sent a bad message: {}", where(p), e.what()));
    lose(p, Clock::now());
  }
}

void ClusterEngine::handle_frame(Peer& p, const wire::Frame& f) {
  const FrameKind kind = f.header.kind;
  if (kind == FrameKind::hello) {
    int pid = 0;
    unsigned cores = 0, threads = 1;
    std::string host, exe;
    decode(f.payload, "a hello", pid, host, exe, cores, threads);
    p.node.pid = pid;
    p.node.host = host;
    p.node.cores = cores;
    p.node.threads = threads;
    p.exe = exe;
    p.ready = true;
    return;
  }
  if (kind == FrameKind::bye) return;
  const bool reply = kind == FrameKind::result || kind == FrameKind::error ||
                     kind == FrameKind::reject || kind == FrameKind::result_batch;
  if (!reply) throw wire::WireError(fmt::format("unexpected {} frame", wire::to_string(kind)));
  auto it = p.in_flight.find(f.header.task_id);
  if (it == p.in_flight.end())
    throw wire::WireError(fmt::format("a reply to call {}, which it was not sent", f.header.task_id));
  Unit u = std::move(it->second);
  p.in_flight.erase(it);
  const auto now = Clock::now();
  if (u.hook) return answer_hook(u, p, kind, f.payload);
  if (u.abandoned) {  // timed out earlier: the rank is free again
    p.stuck = false;
    p.head_since = now;
    return;
  }
  p.calls -= u.items();
  const double took =
      std::chrono::duration<double, std::nano>(now - std::max(p.head_since, u.sent)).count() /
      static_cast<double>(u.items());
  p.service_ns = p.service_ns <= 0 ? took : 0.8 * p.service_ns + 0.2 * took;
  p.head_since = now;
  const std::string name = where(p);
  u.pool->settle_frame(u, f, ReplySource{p.node.pid, p.node.host, p.node.rank, name});
  if (hooks_active()) [[unlikely]] announce(p);
}

// The rank dropped these calls (not started) after a withdraw: they go first
// to another rank.
void ClusterEngine::withdrawn(Peer& p, std::string_view ids) {
  for (std::size_t at = 0; at + 8 <= ids.size(); at += 8) {
    std::uint64_t seq = 0;
    std::memcpy(&seq, ids.data() + at, 8);
    auto it = p.in_flight.find(seq);
    if (it == p.in_flight.end() || it->second.abandoned) continue;
    Unit u = std::move(it->second);
    p.in_flight.erase(it);
    p.calls -= u.items();
    for (PoolQueue& q : queues_)
      if (q.pool == u.pool) q.pending.push_front(std::move(u));
  }
}

// ---- faults and timeouts -------------------------------------------------------

void ClusterEngine::lose(Peer& p, Clock::time_point now) {
  if (p.lost) return;
  p.lost = true;
  any_lost_ = true;
  const auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(now - p.last_heard);
  diag("cluster pool: {} lost (silent for {} ms)", where(p), silent.count());
  for (auto& [seq, u] : p.in_flight) {
    if (u.hook) {
      answer_hook(u, p, FrameKind::bye, {});
      continue;
    }
    if (u.abandoned) continue;
    const std::string names = u.describe();
    u.pool->fail_unit(u, std::make_exception_ptr(WorkerLost(
                     fmt::format("worker {} of cluster pool '{}' was lost while it had {}: it sent "
                                 "nothing for {} ms (it died, or its node did)",
                                 where(p), u.pool->name(), names, silent.count()),
                     p.node.pid, 0, -1)));
  }
  p.in_flight.clear();
  p.calls = 0;
  p.outbox.clear();
}

// Holding mpi_lock: rank 0's heartbeats skip the ranks it lost.
static bool lost_rank(int rank) {
  const ClusterEngine* e = ClusterEngine::existing();
  return e && e->lost(rank);
}

void ClusterEngine::check_peers() {
  const auto now = Clock::now();
  if (now < next_check_) return;
  next_check_ = now + std::chrono::milliseconds(5);
  if (recovery_) cluster::send_heartbeats_from_rank0(&lost_rank);
  for (Peer& p : peers_) {
    if (p.lost || !p.ready) continue;
    if (!p.in_flight.empty() && now - p.last_heard > silence_limit_) {
      lose(p, now);
      continue;
    }
    if (p.stuck || p.in_flight.empty()) continue;
    // The oldest call: started when it was sent or when the call before it
    // finished, whichever is later.
    Unit& oldest = p.in_flight.begin()->second;
    if (oldest.hook) continue;  // hooks have no timeout
    const auto limit = oldest.pool->options().task_timeout;
    if (limit.count() <= 0) continue;
    const auto since = std::max(oldest.sent, p.head_since);
    if (now - since < limit * static_cast<long>(oldest.items())) continue;
    const std::string names = oldest.describe();
    oldest.pool->fail_unit(oldest, std::make_exception_ptr(WorkerLost(
                          fmt::format("{} ran longer than the timeout of {} ms on {} of cluster "
                                      "pool '{}'; the rank goes on running it and gets no new "
                                      "work until it returns",
                                      names, limit.count(), where(p), oldest.pool->name()),
                          p.node.pid, 0, -1, true)));
    oldest.abandoned = true;
    p.calls -= oldest.items();
    p.stuck = true;
    // The calls queued behind it on the rank: dropped there if not started,
    // and then sent elsewhere (see withdrawn).
    std::string ids;
    for (auto& [seq, u] : p.in_flight) {
      if (u.abandoned || u.hook) continue;
      ids.append(reinterpret_cast<const char*>(&seq), 8);
    }
    if (!ids.empty()) post_send(p.node.rank, cluster::tag_withdraw, std::move(ids));
  }
}

bool ClusterEngine::idle() const {
  if (!sends_.empty()) return false;
  for (const Peer& p : peers_)
    if (!p.lost && !p.in_flight.empty()) return false;
  for (const PoolQueue& q : queues_)
    if (!q.pending.empty()) return false;
  return true;
}

// ---- the thread ----------------------------------------------------------------

bool ClusterEngine::step() {
  take_incoming();
  dispatch();
  flush_outboxes();
  const bool got = receive_all();
  check_peers();
  note_busy();
  return got;
}

void ClusterEngine::run() noexcept {
  std::unique_lock lock(mpi_lock());
  cluster::Backoff backoff;
  for (;;) {
    if (step()) {
      backoff.reset();
      continue;
    }
    if (stopping_.load() && idle()) return;
    if (idle()) {
      // Nothing in flight: sleep until work comes (or, to read heartbeats
      // before MPI's queue of them grows, a second).
      sleeping_.store(true, std::memory_order_seq_cst);
      lock.unlock();
      {
        std::unique_lock w(incoming_mutex_);
        wake_cv_.wait_for(w, std::chrono::seconds(1), [&] { return wake_ || stopping_.load(); });
        wake_ = false;
      }
      sleeping_.store(false, std::memory_order_seq_cst);
      lock.lock();
      backoff.reset();
      continue;
    }
    lock.unlock();
    // A waiter polling for its reply reads it itself: stay off the (few)
    // cores meanwhile, and look again soon in case it stops.
    const auto polled = Clock::duration(last_poll_.load(std::memory_order_relaxed));
    if (Clock::now().time_since_epoch() - polled < std::chrono::microseconds(100)) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      backoff.reset();
    } else {
      backoff.pause();
    }
    lock.lock();
  }
}

void ClusterEngine::stop() noexcept {
  if (thread_.joinable()) {
    {
      std::lock_guard w(incoming_mutex_);
      stopping_.store(true);
    }
    wake_cv_.notify_one();
    thread_.join();
  }
}

// ---- the pool ------------------------------------------------------------------

ClusterPool::ClusterPool(std::string name, std::size_t workers, const ClusterOptions& options)
    : RemotePool(std::move(name), PoolKind::cluster),
      size_(workers),
      options_(options),
      engine_(ClusterEngine::instance()) {
  engine_.attach(this, size_);
  if (options_.on_start) {
    const auto failures = engine_.run_on_ranks(encode_hook_call(options_.on_start), size_);
    if (!failures.empty()) {
      std::string all;
      for (const auto& f : failures) all += (all.empty() ? "" : "; ") + f;
      start_error_ = std::make_exception_ptr(
          Error(fmt::format("cluster pool '{}': on_start failed on {} of its {} worker ranks: {}",
                            this->name(), failures.size(), size_, all)));
      write_line(fmt::format("cluster pool '{}': on_start failed: {}", this->name(), all));
    }
  }
  set_state(PoolState::running);  // (a failed on_start also ends starting)
}

ClusterPool::~ClusterPool() { engine_.detach(this); }

void ClusterPool::post(std::vector<RemoteUnit>&& units) {
  if (start_error_) {
    for (RemoteUnit& u : units) fail_unit(u, start_error_);
    return;
  }
  std::vector<Unit> us(units.size());
  for (std::size_t i = 0; i < units.size(); ++i) {
    static_cast<RemoteUnit&>(us[i]) = std::move(units[i]);
    us[i].pool = this;
  }
  engine_.post(std::move(us));
}

void ClusterPool::attach_poll(RemoteCall* call) noexcept {
  call->set_poll(&ClusterEngine::poll_replies, &engine_);
}

void ClusterPool::shutdown() {
  std::call_once(shutdown_once_, [&] {
    diag("cluster pool '{}': shutting down", name());
    set_state(PoolState::draining);
    wait_completion();
    stop_accepting();
    wait_completion();
    if (options_.on_stop && !start_error_) {
      for (const auto& f : engine_.run_on_ranks(encode_hook_call(options_.on_stop), size_))
        write_line(fmt::format("cluster pool '{}': on_stop failed on {}", name(), f));
    }
    report_unobserved_failures(true);
    unregister_pool(this);
    set_state(PoolState::stopped);
  });
}

// The calls not yet sent are cancelled; those on the ranks cannot be stopped
// (a rank cannot be killed without ending the job) and are waited for.
void ClusterPool::shutdown_now() {
  stop_accepting();
  set_state(PoolState::draining);
  engine_.cancel_pending(this, fmt::format("cluster pool '{}' was closed at once", name()));
  shutdown();
  report_cancelled_at_close();
}

// ---- the job -------------------------------------------------------------------

namespace {

bool cluster_started = false;  // rank 0 of an MPI job with worker ranks

// Under --enable-recovery the worker ranks must be able to tell that rank 0
// died (see rank_server.cpp): rank 0 sends heartbeats from pools::init on,
// before any cluster pool exists, until exit. (The engine's thread sends them
// too while it is busy or gathers hellos: it holds mpi_lock for long stretches
// then. While it sleeps, this thread sends them.)
struct Rank0Heartbeats {
  std::mutex mutex;
  std::condition_variable cv;
  bool stop = false;
  std::thread thread;

  void start() {
    thread = std::thread([this] {
      sigset_t all;
      sigfillset(&all);
      pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals go to the program's threads
      for (;;) {
        {
          std::unique_lock l(mutex);
          if (cv.wait_for(l, std::chrono::milliseconds(100), [&] { return stop; })) return;
        }
        std::lock_guard lock(mpi_lock());
        cluster::send_heartbeats_from_rank0(&lost_rank);
      }
    });
  }
  void finish() noexcept {
    if (!thread.joinable()) return;
    {
      std::lock_guard l(mutex);
      stop = true;
    }
    cv.notify_all();
    thread.join();
  }
};
Rank0Heartbeats* rank0_heartbeats = nullptr;  // never destroyed: used at exit

// At exit, after the pools closed (registered before any pool, so it runs
// after the registry's handler): stops the communication thread, tells every
// worker rank to stop, waits for their byes, and finalizes MPI.
void stop_cluster_at_exit() noexcept {
  if (rank0_heartbeats) rank0_heartbeats->finish();  // the stop below says more
  ClusterEngine* engine = ClusterEngine::existing();
  if (engine) engine->stop();
  std::lock_guard lock(mpi_lock());
  const int size = cluster::world_size();
  std::vector<bool> gone(static_cast<std::size_t>(size), false);
  bool lost = false;
  // The stop says whether a rank was lost: the others then leave without
  // MPI_Finalize too, which would wait for the lost one (see finish_mpi).
  const bool lost_before = engine && engine->any_lost();
  std::string stop;
  wire::append_frame(stop, FrameKind::stop, 0, lost_before ? std::string_view("\1", 1) : std::string_view());
  int waiting = size - 1;
  for (int r = 1; r < size; ++r) {
    if (engine && engine->lost(r)) {  // nobody to tell
      gone[static_cast<std::size_t>(r)] = true;
      --waiting;
      continue;
    }
    MPI_Send(stop.data(), static_cast<int>(stop.size()), MPI_BYTE, r, cluster::tag_frames,
             cluster::comm());
  }
  const auto deadline = Clock::now() + bye_limit;
  cluster::Backoff backoff;
  while (waiting > 0) {
    if (Clock::now() > deadline) {
      write_line(fmt::format("cluster pool: {} worker ranks did not stop within {} s; leaving "
                             "without MPI_Finalize",
                             waiting, bye_limit.count()));
      lost = true;
      break;
    }
    auto m = cluster::try_receive();
    if (!m) {
      backoff.pause();
      continue;
    }
    backoff.reset();
    if (m->tag != cluster::tag_frames) continue;
    wire::FrameDecoder in;
    in.feed(m->bytes.data(), m->bytes.size());
    try {
      while (auto f = in.next()) {
        if (f->header.kind == FrameKind::bye && !gone[static_cast<std::size_t>(m->source)]) {
          gone[static_cast<std::size_t>(m->source)] = true;
          --waiting;
        }
      }
    } catch (...) {
    }
  }
  cluster::finish_mpi(lost || (engine && engine->any_lost()));
}

}  // namespace

bool launched_as_worker_rank() noexcept {
  if (!cluster::launched_by_mpi()) return false;
  for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char* r = std::getenv(v)) return std::string_view(r) != "0";
  return false;
}

void start_cluster(int& argc, char**& argv) {
  if (!cluster::launched_by_mpi() || cluster::mpi_running()) return;
  cluster::start_mpi(argc, argv);
  if (cluster::rank() != 0) serve_rank();
  if (cluster::world_size() < 2) return;  // no worker ranks: the fallback
  cluster_started = true;
  std::atexit(&stop_cluster_at_exit);
  if (cluster::recovery_enabled()) {
    rank0_heartbeats = new Rank0Heartbeats;
    rank0_heartbeats->start();
  }
}

bool cluster_available() noexcept { return cluster_started; }

std::size_t cluster_worker_ranks() { return static_cast<std::size_t>(cluster::world_size() - 1); }

std::vector<ClusterNode> cluster_job_nodes() { return ClusterEngine::instance().nodes(); }

void check_cluster_usable() {
  const std::string& why = ClusterEngine::instance().mismatch();
  if (!why.empty()) throw Error("cluster pool: " + why);
}

}  // namespace pools::detail
