// The multiprocess pool: calls encoded by add_task run in worker processes
// forked by the fork server. One I/O thread per pool writes calls to the
// workers' sockets (several ahead per worker, batched into few system calls),
// reads their replies and completes the tasks; a worker that dies fails only
// the call it was running and is replaced.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <pools/multiprocess.hpp>
#include <pools/pool_base.hpp>

namespace pools::detail {

class MultiprocessPool final : public PoolBase {
public:
  MultiprocessPool(std::string name, std::size_t workers, const MultiprocessOptions& options);
  ~MultiprocessPool() override;

  std::size_t num_workers() const noexcept override { return size_; }
  const MultiprocessOptions& options() const noexcept { return options_; }
  std::size_t num_active_tasks() const noexcept override;
  void wait_completion() noexcept override;
  void shutdown() override;

protected:
  void shutdown_now() override;
  void submit(TaskState* s) override;
  void submit_remote(TaskState* s, RemoteCall* call) override;
  void submit_remote_batch(const std::vector<RemoteSubmission>& calls,
                           std::size_t chunk_size) override;
  void submit_process(TaskState* s) override;

private:
  struct Loop;  // the I/O thread's state (multiprocess_pool.cpp)
  friend struct Loop;

  void count_in(std::size_t n);  // refuses (throws) after shutdown began
  void count_out(std::size_t n) noexcept;
  void complete_task(TaskState* s, bool ok) noexcept { finish(s, ok); }

  std::size_t size_;
  MultiprocessOptions options_;
  std::atomic<std::size_t> active_{0};  // added and not finished
  std::mutex idle_mutex_;
  std::condition_variable idle_cv_;
  std::unique_ptr<Loop> loop_;
  std::thread io_thread_;
  std::once_flag shutdown_once_;
};

}  // namespace pools::detail
