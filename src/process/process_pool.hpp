// The process pool: commands in bulk, at most max_running at once, all watched
// by one event loop (ProcessEngine). Functions given to add_task run on a
// thread pool of max_running threads that the pool makes on first use.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include <pools/lifecycle.hpp>
#include <pools/pool_base.hpp>

#include "process/process_engine.hpp"
#include "process/process_node.hpp"

namespace pools::detail {

class ThreadPool;

class ProcessPool final : public PoolBase {
public:
  /// With hooks, the threads for functions start now and run them
  /// (ProcessPoolOptions); without, they start at the first add_task.
  ProcessPool(std::string name, std::size_t max_running, WorkerHook on_start = {},
              WorkerHook on_stop = {});
  const WorkerHook& on_start() const noexcept { return on_start_; }
  const WorkerHook& on_stop() const noexcept { return on_stop_; }
  PoolState state() const noexcept override;
  ~ProcessPool() override;

  std::size_t num_workers() const noexcept override { return max_running_; }
  std::size_t num_active_tasks() const noexcept override;
  std::size_t tasks_on_calling_thread() const noexcept override;
  void wait_completion() noexcept override;
  void shutdown() override;

protected:
  void shutdown_now() override;
  void submit(TaskState* s) override;
  void submit_process(TaskState* s) override;

private:
  static void command_done(ProcessNode* n, ProcessOutcome outcome, void* pool) noexcept;
  static void command_started(ProcessNode* n, void* pool) noexcept;
  ThreadPool& functions();
  ThreadPool* functions_if_made() const noexcept;

  std::size_t max_running_;
  ProcessEngine engine_;
  std::atomic<std::size_t> commands_{0};  // added and not finished
  std::mutex idle_mutex_;
  std::condition_variable idle_cv_;
  std::mutex functions_mutex_;
  std::atomic<ThreadPool*> functions_{nullptr};
  std::unique_ptr<ThreadPool> functions_owner_;
  std::once_flag shutdown_once_;
  WorkerHook on_start_, on_stop_;
};

}  // namespace pools::detail
