// The serial pool: runs each task at once in the calling thread.
#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include <pools/lifecycle.hpp>
#include <pools/pool_base.hpp>

namespace pools::detail {

class SerialPool final : public PoolBase {
public:
  /// on_start runs before the first task, on_stop at shutdown (SerialPoolOptions).
  explicit SerialPool(std::string name, WorkerHook on_start = {}, WorkerHook on_stop = {});
  const WorkerHook& on_start() const noexcept { return on_start_; }
  const WorkerHook& on_stop() const noexcept { return on_stop_; }

  std::size_t num_workers() const noexcept override { return 1; }
  std::size_t num_active_tasks() const noexcept override;
  std::size_t tasks_on_calling_thread() const noexcept override;
  void wait_completion() noexcept override;
  void shutdown() override;

protected:
  void submit(TaskState* s) override;

private:
  std::atomic<std::size_t> running_{0};
  std::atomic<std::uint64_t> completed_{0};
  void start_once() noexcept;
  WorkerHook on_start_, on_stop_;
  std::once_flag start_flag_;
  std::atomic<bool> started_{false};  // on_start ran (or there is none)
  std::exception_ptr start_error_;    // its failure; written before started_
};

}  // namespace pools::detail
