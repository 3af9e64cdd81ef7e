// The serial pool: the task runs inside add_task, on the caller's thread.
#include "serial/serial_pool.hpp"

#include <thread>
#include <utility>
#include <vector>

#include "core/diag.hpp"
#include "core/tls.hpp"
#include "core/registry_internal.hpp"

namespace pools::detail {
namespace {

// The serial tasks running on this thread's stack, innermost first, so that
// wait_completion() inside a task does not wait for itself. A plain pointer
// (trivially destructible) stays valid during exit, unlike a container.
struct Frame {
  const SerialPool* pool;
  const Frame* outer;
};
POOLS_FAST_TLS thread_local const Frame* innermost = nullptr;

std::size_t depth_in(const SerialPool* pool) noexcept {
  std::size_t n = 0;
  for (const Frame* f = innermost; f; f = f->outer) n += f->pool == pool;
  return n;
}

}  // namespace

SerialPool::SerialPool(std::string name, WorkerHook on_start, WorkerHook on_stop)
    : PoolBase(std::move(name), PoolKind::serial),
      on_start_(std::move(on_start)),
      on_stop_(std::move(on_stop)) {
  if (!on_start_) {
    started_.store(true, std::memory_order_relaxed);
    set_state(PoolState::running);
  }
}

void SerialPool::start_once() noexcept {
  // A thread adding a task meanwhile waits here: no task runs before on_start.
  std::call_once(start_flag_, [&]() noexcept {
    start_error_ = run_worker_hook(on_start_, "on_start", 0);
    if (start_error_) write_line(describe_exception(start_error_));
    started_.store(true, std::memory_order_release);
    set_state(PoolState::running);
  });
}

std::size_t SerialPool::num_active_tasks() const noexcept {
  return running_.load(std::memory_order_acquire);
}

std::size_t SerialPool::tasks_on_calling_thread() const noexcept { return depth_in(this); }

void SerialPool::submit(TaskState* s) {
  running_.fetch_add(1, std::memory_order_seq_cst);
  if (!accepting()) {
    running_.fetch_sub(1, std::memory_order_seq_cst);
    refuse(s);
  }
  if (!started_.load(std::memory_order_acquire)) [[unlikely]] start_once();
  if (start_error_) [[unlikely]] {
    fail_unstarted(s, start_error_);
    running_.fetch_sub(1, std::memory_order_seq_cst);
    return;
  }
  const Frame frame{this, innermost};
  innermost = &frame;
  execute(s, {WorkerKind::caller, -1});  // the caller's thread id, looked up when observed
  innermost = frame.outer;
  completed_.fetch_add(1, std::memory_order_relaxed);
  running_.fetch_sub(1, std::memory_order_seq_cst);
}

void SerialPool::wait_completion() noexcept {
  // Tasks finish inside add_task; other threads may still be inside one.
  const std::size_t own = depth_in(this);
  for (int i = 0; running_.load(std::memory_order_acquire) > own; ++i) {
    if (i < 100)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  report_unobserved_failures(false);
}

void SerialPool::shutdown() {
  if (!stop_accepting()) return;
  set_state(PoolState::draining);
  unregister_pool(this);
  wait_completion();
  if (started_.load(std::memory_order_acquire) && !start_error_) {
    if (std::exception_ptr e = run_worker_hook(on_stop_, "on_stop", 0))
      write_line(describe_exception(e));
  }
  report_unobserved_failures(true);
  diag("shut down serial pool '{}': {} tasks run, {} failed", name(),
       completed_.load(std::memory_order_relaxed), failures_seen());
  set_state(PoolState::stopped);
}

}  // namespace pools::detail
