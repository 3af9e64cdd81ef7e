// Parking for idle workers: an event count. A worker announces itself
// (prepare_wait), re-checks for work, then sleeps on the epoch (commit_wait);
// a producer that published work wakes a sleeper only when there is one, so
// a busy pool makes no system calls to signal work.
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>

#include "core/futex.hpp"

namespace pools::detail {

class Notifier {
public:
  /// Returns the key for commit_wait. The caller must re-check for work after.
  std::uint32_t prepare_wait() noexcept {
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    return epoch_.load(std::memory_order_seq_cst);
  }
  void cancel_wait() noexcept { sleepers_.fetch_sub(1, std::memory_order_seq_cst); }
  /// Sleeps until a notify after prepare_wait (or timeout_ns, < 0: none).
  void commit_wait(std::uint32_t key, std::int64_t timeout_ns = -1) noexcept {
    futex_wait(epoch_, key, timeout_ns);
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  /// Call after publishing work (with a seq_cst store or RMW).
  void notify_one() noexcept {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(epoch_, 1);
  }
  void notify_all() noexcept {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(epoch_, INT_MAX);
  }

private:
  alignas(64) std::atomic<std::uint32_t> epoch_{0};
  alignas(64) std::atomic<std::uint32_t> sleepers_{0};
};

}  // namespace pools::detail
