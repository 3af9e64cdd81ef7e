// The thread pool: scheduling, parking, helping waits and shutdown.
#include "thread/thread_pool.hpp"

#include <chrono>
#include <climits>
#include <thread>
#include <sched.h>

#include <fmt/core.h>

#include "core/diag.hpp"
#include "core/tls.hpp"
#include "core/registry_internal.hpp"
#include "core/futex.hpp"

namespace pools::detail {

// A worker's thread-local identity. It is the Helper of its thread, so a
// wait() inside a task runs the pool's queued work instead of sleeping.
struct ThreadPool::Context final : Helper {
  ThreadPool* pool = nullptr;
  Worker* worker = nullptr;
  std::int64_t depth = 0;  // tasks of this pool running on this thread's stack

  bool run_one() noexcept override {
    TaskState* s = pool->find_work(worker);
    if (!s) return false;
    pool->run_task(worker, s);
    return true;
  }

  bool help_until_final(TaskState* s, std::int64_t deadline_ns) noexcept override;
};

namespace {

POOLS_FAST_TLS thread_local ThreadPool::Context* this_thread_context = nullptr;

// Wakes the pool's sleepers when a task a helper waits for completes.
struct WakeOnFinal {
  Continuation link;
  Notifier* notifier;
  static void fire(void* arg, TaskState*) noexcept {
    auto* self = static_cast<WakeOnFinal*>(arg);
    self->notifier->notify_all();
    delete self;
  }
};

constexpr int spin_rounds = 64;

// Adds one to a counter that only the calling worker writes: a plain store,
// no locked read-modify-write (seq_cst so active() and the idle handshake see it).
void count_one(std::atomic<std::uint64_t>& counter) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
}

}  // namespace

bool ThreadPool::Context::help_until_final(TaskState* s, std::int64_t deadline_ns) noexcept {
  bool watching = false;
  int idle_spins = 0;
  for (;;) {
    if (is_final(s->load_status())) return true;
    if (TaskState* t = pool->find_work(worker)) {
      pool->run_task(worker, t);
      idle_spins = 0;
      continue;
    }
    if (deadline_ns >= 0 && now_ns() >= deadline_ns) return false;
    if (idle_spins++ < spin_rounds) {
      __builtin_ia32_pause();
      continue;
    }
    if (!watching) {
      // Sleep like an idle worker, but be woken when s completes too.
      auto* w = new (std::nothrow) WakeOnFinal{{&WakeOnFinal::fire, nullptr, nullptr}, &pool->notifier_};
      if (!w) return block_until_final(s, deadline_ns);
      w->link.arg = w;
      add_continuation(s, &w->link);
      watching = true;
      continue;
    }
    const std::uint32_t key = pool->notifier_.prepare_wait();
    if (is_final(s->load_status(std::memory_order_seq_cst))) {
      pool->notifier_.cancel_wait();
      return true;
    }
    if (TaskState* t = pool->find_work(worker)) {
      pool->notifier_.cancel_wait();
      pool->run_task(worker, t);
      continue;
    }
    std::int64_t timeout = -1;
    if (deadline_ns >= 0) timeout = std::max<std::int64_t>(0, deadline_ns - now_ns());
    pool->notifier_.commit_wait(key, timeout);
  }
}

ThreadPool::ThreadPool(std::string name, std::size_t num_threads, WorkerHook on_start,
                       WorkerHook on_stop)
    : PoolBase(std::move(name), PoolKind::thread),
      on_start_(std::move(on_start)),
      on_stop_(std::move(on_stop)) {
  workers_.reserve(num_threads);
  for (std::size_t i = 0; i < num_threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->index = i;
    workers_.push_back(std::move(w));
  }
  std::size_t started = 0;
  try {
    for (; started < num_threads; ++started) {
      Worker* w = workers_[started].get();
      w->thread = boost::thread([this, w] { worker_main(w); });
    }
  } catch (const std::exception& e) {
    stop_.store(true);
    notifier_.notify_all();
    all_started_.store(1);  // the started ones must not wait for the others' on_start
    all_started_.notify_all();
    for (std::size_t i = 0; i < started; ++i) workers_[i]->thread.join();
    throw Error(fmt::format("thread pool '{}': could not start thread {} of {}: {}", this->name(),
                            started + 1, num_threads, e.what()));
  }
}

ThreadPool::~ThreadPool() {
  // Pools are immortal (the registry never deletes them); this only runs if a
  // pool is destroyed explicitly, e.g. in tests.
  try {
    shutdown();
  } catch (...) {
  }
}

std::int64_t ThreadPool::active() const noexcept {
  // Completions first, then submissions: a task whose completion is counted
  // had its submission published before, so it is counted too, and the
  // difference never reads 0 while a task is queued or running.
  std::uint64_t done = refused_.load(std::memory_order_seq_cst);
  for (auto& w : workers_) done += w->completed.load(std::memory_order_seq_cst);
  std::uint64_t added = external_submitted_.load(std::memory_order_seq_cst);
  for (auto& w : workers_) added += w->submitted.load(std::memory_order_seq_cst);
  return static_cast<std::int64_t>(added - done);
}

std::size_t ThreadPool::num_active_tasks() const noexcept {
  const std::int64_t n = active();
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

std::size_t ThreadPool::tasks_on_calling_thread() const noexcept {
  return is_own_thread() ? static_cast<std::size_t>(this_thread_context->depth) : 0;
}

bool ThreadPool::is_own_thread() const noexcept {
  return this_thread_context && this_thread_context->pool == this;
}

void ThreadPool::submit(TaskState* s) {
  // Count first, then check: shutdown() stops accepting, then waits for the
  // count to drain, so a task counted here is either refused or run.
  Context* ctx = this_thread_context;
  const bool own = ctx && ctx->pool == this;
  if (own) {
    count_one(ctx->worker->submitted);
  } else {
    external_submitted_.fetch_add(1, std::memory_order_seq_cst);
  }
  if (!accepting()) {
    refused_.fetch_add(1, std::memory_order_seq_cst);
    refuse(s);
  }
  if (own) {
    ctx->worker->deque.push(s);
  } else {
    // Spread external submissions over the inboxes; a per-thread cursor
    // keeps submitting threads from contending on one counter.
    POOLS_FAST_TLS thread_local std::size_t cursor = 0;
    Worker* w = workers_[cursor++ % workers_.size()].get();
    TaskState* head = w->inbox.load(std::memory_order_relaxed);
    do {
      s->next = head;
    } while (!w->inbox.compare_exchange_weak(head, s, std::memory_order_seq_cst,
                                             std::memory_order_relaxed));
  }
  notifier_.notify_one();
}

TaskState* ThreadPool::take_inbox(Worker* self, Worker* victim) noexcept {
  if (!victim->inbox.load(std::memory_order_relaxed)) return nullptr;
  TaskState* list = victim->inbox.exchange(nullptr, std::memory_order_seq_cst);
  if (!list) return nullptr;
  // The stack is newest first. Pushing it in that order leaves the oldest at
  // the bottom of our deque, so tasks from outside start roughly in order.
  TaskState* oldest = list;
  while (oldest->next) {
    TaskState* next = oldest->next;
    self->deque.push(oldest);
    oldest = next;
  }
  return oldest;
}

TaskState* ThreadPool::find_work(Worker* self) noexcept {
  if (TaskState* s = self->deque.pop()) return s;
  if (TaskState* s = take_inbox(self, self)) return s;
  const std::size_t n = workers_.size();
  for (std::size_t k = 1; k < n; ++k) {
    Worker* victim = workers_[(self->index + k) % n].get();
    if (TaskState* s = victim->deque.steal()) return s;
  }
  for (std::size_t k = 1; k < n; ++k) {
    Worker* victim = workers_[(self->index + k) % n].get();
    if (TaskState* s = take_inbox(self, victim)) return s;
  }
  return nullptr;
}

void ThreadPool::run_task(Worker* w, TaskState* s) noexcept {
  Context* ctx = this_thread_context;
  if (divert_.load(std::memory_order_relaxed) != 0) [[unlikely]] {
    divert(s);
  } else {
    ++ctx->depth;
    execute(s, {WorkerKind::thread, static_cast<std::int64_t>(w->index)});
    --ctx->depth;
  }
  count_one(w->completed);
}

void ThreadPool::divert(TaskState* s) noexcept {
  if (divert_.load(std::memory_order_acquire) & divert_broken) return fail_unstarted(s, start_error_);
  cancel_at_close(s);
  execute(s);  // drops it unrun when it was cancelled (by us or by its owner)
}

// Runs on_start on the worker's thread; no worker takes a task before every
// worker's on_start returned, so that a failure stops the pool before any task
// ran (the tasks then fail, see divert).
void ThreadPool::start_worker(Worker* w, std::exception_ptr& start_error) noexcept {
  start_error = run_worker_hook(on_start_, "on_start", w->index);
  if (start_error) {
    write_line(describe_exception(start_error));
    std::lock_guard lock(start_error_mutex_);
    if (!start_error_) {
      start_error_ = start_error;
      divert_.fetch_or(divert_broken, std::memory_order_seq_cst);
    }
  }
  if (started_.fetch_add(1, std::memory_order_acq_rel) + 1 == workers_.size()) {
    set_state(PoolState::running);
    all_started_.store(1, std::memory_order_release);
    all_started_.notify_all();
  } else if (on_start_) {
    all_started_.wait(0, std::memory_order_acquire);
  }
}

void ThreadPool::signal_if_idle() noexcept {
  // A worker that runs out of work tells the threads in wait_completion() to
  // re-count. Every worker passes here after its last task, so the last
  // completion is always followed by a signal.
  if (idle_waiters_.load(std::memory_order_seq_cst) != 0) {
    idle_epoch_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(idle_epoch_, INT_MAX);
  }
}

void ThreadPool::worker_main(Worker* w) noexcept {
  Context ctx;
  ctx.pool = this;
  ctx.worker = w;
  this_thread_context = &ctx;
  current_helper() = &ctx;
  {
    // "pools:<name>/<n>", cut to the kernel's 15 characters.
    std::string title = fmt::format("pools:{}", name()).substr(0, 11) + fmt::format("/{}", w->index);
    pthread_setname_np(pthread_self(), title.substr(0, 15).c_str());
  }
  std::exception_ptr start_error;
  start_worker(w, start_error);
  for (;;) {
    if (TaskState* s = find_work(w)) {
      run_task(w, s);
      continue;
    }
    // Spin briefly (yielding: on a small machine the producer may need this
    // core), then park.
    TaskState* s = nullptr;
    for (int i = 0; i < spin_rounds && !s; ++i) {
      if (i % 8 == 7) sched_yield(); else __builtin_ia32_pause();
      s = find_work(w);
    }
    if (s) {
      run_task(w, s);
      continue;
    }
    signal_if_idle();
    const std::uint32_t key = notifier_.prepare_wait();
    if ((s = find_work(w))) {
      notifier_.cancel_wait();
      run_task(w, s);
      continue;
    }
    if (stop_.load(std::memory_order_seq_cst)) {
      notifier_.cancel_wait();
      break;
    }
    notifier_.commit_wait(key);
  }
  current_helper() = nullptr;
  this_thread_context = nullptr;
  if (!start_error) {
    if (std::exception_ptr e = run_worker_hook(on_stop_, "on_stop", w->index))
      write_line(describe_exception(e));
  }
}

void ThreadPool::wait_idle_from_worker() noexcept {
  // Called by a task of this pool: wait for everything but the tasks on this
  // thread's own stack, running queued work meanwhile.
  Context* ctx = this_thread_context;
  while (active() > ctx->depth) {
    if (ctx->run_one()) continue;
    const std::uint32_t e = idle_epoch_.load(std::memory_order_acquire);
    futex_wait(idle_epoch_, e, 100'000);
  }
}

void ThreadPool::wait_completion() noexcept {
  diag("wait_completion on thread pool '{}': {} active", name(), num_active_tasks());
  if (is_own_thread()) {
    wait_idle_from_worker();
  } else {
    while (active() != 0) {
      idle_waiters_.fetch_add(1, std::memory_order_seq_cst);
      const std::uint32_t e = idle_epoch_.load(std::memory_order_seq_cst);
      if (active() != 0) futex_wait(idle_epoch_, e);
      idle_waiters_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }
  report_unobserved_failures(false);
}

void ThreadPool::stop_workers() noexcept {
  stop_.store(true, std::memory_order_seq_cst);
  notifier_.notify_all();
  const boost::thread::id self = boost::this_thread::get_id();
  for (auto& w : workers_) {
    if (w->thread.get_id() == self) {
      // shutdown() from inside a task (exit() called in a task): this thread
      // cannot join itself; it finishes its task and leaves the loop.
      w->thread.detach();
    } else if (w->thread.joinable()) {
      w->thread.join();
    }
  }
}

void ThreadPool::shutdown() {
  if (!stop_accepting()) {
    // Another caller is shutting down: wait until it is done.
    if (!is_own_thread())
      while (!stopped_.load(std::memory_order_acquire)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    return;
  }
  set_state(PoolState::draining);
  unregister_pool(this);
  wait_completion();
  stop_workers();
  std::uint64_t completed = 0;
  for (auto& w : workers_) completed += w->completed.load(std::memory_order_relaxed);
  report_unobserved_failures(true);
  diag("shut down thread pool '{}': {} threads, {} tasks run, {} failed", name(), workers_.size(),
       completed, failures_seen());
  set_state(PoolState::stopped);
  stopped_.store(true, std::memory_order_release);
}

void ThreadPool::shutdown_now() {
  // Set before shutdown stops accepting: whoever sees the pool draining sees
  // this too, so a queued task is cancelled, never run.
  divert_.fetch_or(divert_cancel, std::memory_order_seq_cst);
  shutdown();
  report_cancelled_at_close();
}

}  // namespace pools::detail
