// The serial pool: runs each task at once in the calling thread.
#pragma once

#include <atomic>
#include <string>

#include <pools/pool_base.hpp>

namespace pools::detail {

class SerialPool final : public PoolBase {
public:
  explicit SerialPool(std::string name);

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
};

}  // namespace pools::detail
