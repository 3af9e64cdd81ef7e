// The thread pool: Boost.Thread workers with per-worker work-stealing deques,
// per-worker lock-free inboxes for tasks from other threads, and helping waits.
// docs/thread-pool.md explains the design.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/thread/thread.hpp>

#include <pools/pool_base.hpp>

#include "core/helping.hpp"
#include "thread/notifier.hpp"
#include "thread/work_stealing_deque.hpp"

namespace pools::detail {

class ThreadPool final : public PoolBase {
public:
  /// Starts num_threads workers. Throws pools::Error when a thread cannot start.
  ThreadPool(std::string name, std::size_t num_threads);
  ~ThreadPool() override;

  std::size_t num_workers() const noexcept override { return workers_.size(); }
  std::size_t num_active_tasks() const noexcept override;
  std::size_t tasks_on_calling_thread() const noexcept override;
  void wait_completion() noexcept override;
  void shutdown() override;

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

  std::vector<std::unique_ptr<Worker>> workers_;
  Notifier notifier_;
  // Tasks from outside the pool, and tasks refused at shutdown.
  alignas(64) std::atomic<std::uint64_t> external_submitted_{0};
  alignas(64) std::atomic<std::uint64_t> refused_{0};
  alignas(64) std::atomic<std::uint32_t> idle_epoch_{0};
  std::atomic<std::uint32_t> idle_waiters_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> stopped_{false};
};

}  // namespace pools::detail
