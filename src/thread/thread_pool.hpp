// The thread pool: Boost.Thread workers with per-worker work-stealing deques,
// per-worker lock-free inboxes for tasks from other threads, and helping waits.
// docs/thread-pool.md explains the design.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/thread/thread.hpp>

#include <pools/lifecycle.hpp>
#include <pools/pool_base.hpp>

#include "core/helping.hpp"
#include "thread/notifier.hpp"
#include "thread/work_stealing_deque.hpp"

namespace pools::detail {

class ThreadPool final : public PoolBase {
public:
  /// Starts num_threads workers; each runs on_start before its first task and
  /// on_stop as it exits (see ThreadPoolOptions). Throws pools::Error when a
  /// thread cannot start.
  ThreadPool(std::string name, std::size_t num_threads, WorkerHook on_start = {},
             WorkerHook on_stop = {});
  ~ThreadPool() override;

  std::size_t num_workers() const noexcept override { return workers_.size(); }
  std::size_t num_active_tasks() const noexcept override;
  std::size_t tasks_on_calling_thread() const noexcept override;
  void wait_completion() noexcept override;
  void shutdown() override;
  /// Cancels the queued tasks instead of running them, then shuts down.
  void shutdown_now() override;
  const WorkerHook& on_start() const noexcept { return on_start_; }
  const WorkerHook& on_stop() const noexcept { return on_stop_; }

  struct Context;  // the thread-local identity of a worker (also its Helper)

  // Public so that other backends can run functions on a thread pool they own.
  void submit(TaskState* s) override;
  using PoolBase::report_events_to;

private:
  struct alignas(64) Worker {
    WorkStealingDeque<TaskState> deque;
    // Tasks from threads outside the pool: a Treiber stack the owner (or an
    // idle thief) takes whole with one exchange.
    alignas(64) std::atomic<TaskState*> inbox{nullptr};
    // Tasks this worker added to its own deque, and tasks it finished: written
    // by the owner only, so counting costs no shared cache line (see active()).
    alignas(64) std::atomic<std::uint64_t> submitted{0};
    std::atomic<std::uint64_t> completed{0};
    std::size_t index = 0;
    boost::thread thread;
  };

  void worker_main(Worker* w) noexcept;
  TaskState* find_work(Worker* self) noexcept;
  TaskState* take_inbox(Worker* self, Worker* victim) noexcept;
  void run_task(Worker* w, TaskState* s) noexcept;
  std::int64_t active() const noexcept;
  void signal_if_idle() noexcept;
  bool is_own_thread() const noexcept;
  void wait_idle_from_worker() noexcept;
  void stop_workers() noexcept;
  void start_worker(Worker* w, std::exception_ptr& start_error) noexcept;
  void divert(TaskState* s) noexcept;

  std::vector<std::unique_ptr<Worker>> workers_;
  Notifier notifier_;
  // Tasks from outside the pool, and tasks refused at shutdown.
  alignas(64) std::atomic<std::uint64_t> external_submitted_{0};
  alignas(64) std::atomic<std::uint64_t> refused_{0};
  alignas(64) std::atomic<std::uint32_t> idle_epoch_{0};
  std::atomic<std::uint32_t> idle_waiters_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> stopped_{false};
  // Lifecycle (docs/lifecycle-and-errors.md): the hooks, how many workers ran
  // on_start, and what run_task does instead of running a task: fail it (an
  // on_start failed) or cancel it (shutdown_now). Read once per task, relaxed:
  // it is written at most twice in the pool's life.
  static constexpr std::uint8_t divert_broken = 1, divert_cancel = 2;
  WorkerHook on_start_, on_stop_;
  std::atomic<std::size_t> started_{0};
  std::atomic<std::uint32_t> all_started_{0};
  std::mutex start_error_mutex_;
  std::exception_ptr start_error_;  // the first on_start failure; set before divert_broken
  std::atomic<std::uint8_t> divert_{0};
};

}  // namespace pools::detail
