#include "process/process_pool.hpp"

#include <fmt/core.h>

#include "core/diag.hpp"
#include "core/registry_internal.hpp"
#include "thread/thread_pool.hpp"

namespace pools::detail {

ProcessPool::ProcessPool(std::string name, std::size_t max_running, WorkerHook on_start,
                         WorkerHook on_stop)
    : PoolBase(name, PoolKind::process),
      max_running_(max_running),
      engine_(name, max_running),
      on_start_(std::move(on_start)),
      on_stop_(std::move(on_stop)) {
  // The hooks belong to the function threads: start them now, so that the
  // pool is `starting` until they ran on_start (see state()).
  if (on_start_ || on_stop_) functions();
  set_state(PoolState::running);
}

PoolState ProcessPool::state() const noexcept {
  const PoolState own = PoolBase::state();
  const ThreadPool* f = functions_if_made();
  if (own == PoolState::running && f && f->state() == PoolState::starting)
    return PoolState::starting;
  return own;
}

ProcessPool::~ProcessPool() = default;

ThreadPool* ProcessPool::functions_if_made() const noexcept {
  return functions_.load(std::memory_order_acquire);
}

ThreadPool& ProcessPool::functions() {
  if (ThreadPool* p = functions_if_made()) return *p;
  std::lock_guard lock(functions_mutex_);
  if (!functions_owner_) {
    // Not registered: it belongs to this pool and closes with it.
    functions_owner_ =
        std::make_unique<ThreadPool>(name() + " (functions)", max_running_, on_start_, on_stop_);
    functions_owner_->report_events_to(*this);  // observers see this pool's tasks
    functions_.store(functions_owner_.get(), std::memory_order_release);
  }
  return *functions_owner_;
}

std::size_t ProcessPool::num_active_tasks() const noexcept {
  const ThreadPool* f = functions_if_made();
  return commands_.load(std::memory_order_acquire) + (f ? f->num_active_tasks() : 0);
}

std::size_t ProcessPool::tasks_on_calling_thread() const noexcept {
  const ThreadPool* f = functions_if_made();
  return f ? f->tasks_on_calling_thread() : 0;
}

void ProcessPool::submit(TaskState* s) {
  if (!accepting()) refuse(s);
  ThreadPool* f;
  try {
    f = &functions();
  } catch (...) {
    drop_unqueued(s);
    throw;
  }
  f->submit(s);
}

void ProcessPool::submit_process(TaskState* s) {
  // Counted before the check, as in the thread pool: shutdown stops accepting
  // and then waits for the count, so no command is counted and then lost.
  commands_.fetch_add(1, std::memory_order_seq_cst);
  if (!accepting()) {
    commands_.fetch_sub(1, std::memory_order_seq_cst);
    refuse(s);
  }
  auto* n = static_cast<ProcessNode*>(s);
  n->on_done = &ProcessPool::command_done;
  n->done_arg = this;
  n->on_started = &ProcessPool::command_started;
  engine_.start(n, true);
}

void ProcessPool::command_started(ProcessNode* n, void* arg) noexcept {
  if (hooks_active()) [[unlikely]]
    static_cast<ProcessPool*>(arg)->notify_started(
        n, {WorkerKind::command, n->result.pid > 0 ? n->result.pid : -1});
}

void ProcessPool::command_done(ProcessNode* n, ProcessOutcome outcome, void* arg) noexcept {
  auto* self = static_cast<ProcessPool*>(arg);
  if (outcome == ProcessOutcome::not_started) {
    if (hooks_active()) [[unlikely]] self->notify_dropped(n);
    release(n);  // cancel() completed it already
  } else {
    self->finish(n, outcome == ProcessOutcome::succeeded);
  }
  if (self->commands_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::lock_guard lock(self->idle_mutex_);
    self->idle_cv_.notify_all();
  }
}

void ProcessPool::wait_completion() noexcept {
  for (;;) {
    {
      std::unique_lock lock(idle_mutex_);
      idle_cv_.wait(lock, [&] { return commands_.load(std::memory_order_acquire) == 0; });
    }
    if (ThreadPool* f = functions_if_made()) f->wait_completion();
    // A function may have added commands meanwhile.
    if (commands_.load(std::memory_order_acquire) == 0) break;
  }
  report_unobserved_failures(false);
}

void ProcessPool::shutdown() {
  std::call_once(shutdown_once_, [&] {
    diag("process pool '{}': shutting down", name());
    set_state(PoolState::draining);
    wait_completion();
    stop_accepting();
    wait_completion();
    if (ThreadPool* f = functions_if_made()) f->shutdown();
    engine_.stop();
    report_unobserved_failures(true);
    unregister_pool(this);
    set_state(PoolState::stopped);
  });
}

void ProcessPool::shutdown_now() {
  stop_accepting();
  set_state(PoolState::draining);
  engine_.cancel_all(
      [](TaskState* n, bool was_running, void* self) noexcept {
        static_cast<ProcessPool*>(self)->note_at_close(n, was_running);
      },
      this);
  // Commands die while the function threads finish their running tasks.
  if (ThreadPool* f = functions_if_made()) f->shutdown_now();
  shutdown();
  report_cancelled_at_close();
}

}  // namespace pools::detail
