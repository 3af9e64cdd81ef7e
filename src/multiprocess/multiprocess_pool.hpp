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

#include "wire/remote_pool.hpp"

namespace pools::detail {

class MultiprocessPool final : public RemotePool {
public:
  MultiprocessPool(std::string name, std::size_t workers, const MultiprocessOptions& options);
  ~MultiprocessPool() override;

  std::size_t num_workers() const noexcept override { return size_; }
  const MultiprocessOptions& options() const noexcept { return options_; }
  void shutdown() override;

protected:
  void shutdown_now() override;
  void post(std::vector<RemoteUnit>&& units) override;
  void attach_poll(RemoteCall* call) noexcept override;

private:
  struct Loop;  // the I/O thread's state (multiprocess_pool.cpp)
  friend struct Loop;

  std::size_t size_;
  MultiprocessOptions options_;
  std::unique_ptr<Loop> loop_;
  std::thread io_thread_;
  std::once_flag shutdown_once_;
};

}  // namespace pools::detail
