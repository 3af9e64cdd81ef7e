// The one seam to the kernel's futex: sleeping on a 32-bit word until it changes.
#pragma once

#include <atomic>
#include <cstdint>

namespace pools::detail {

/// Sleeps while *word == expected, for at most timeout_ns (< 0: no limit).
/// May return spuriously; callers re-check their condition.
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::int64_t timeout_ns = -1) noexcept;
/// Wakes up to n threads sleeping on word.
void futex_wake(std::atomic<std::uint32_t>& word, int n) noexcept;

/// Monotonic clock in nanoseconds.
std::int64_t now_ns() noexcept;

}  // namespace pools::detail
