// Linux futex calls behind futex.hpp.
#include "core/futex.hpp"

#include <climits>
#include <ctime>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace pools::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer runs a signal handler only when the thread passes through a
// call it intercepts, which a raw futex wait is not: a main thread blocked in
// wait() would never see Ctrl-C. Under TSan, wait in slices and pass through
// usleep (intercepted) between them.
constexpr std::int64_t tsan_slice_ns = 20'000'000;
#endif

void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::int64_t timeout_ns) noexcept {
#if defined(__SANITIZE_THREAD__)
  if (timeout_ns < 0 || timeout_ns > tsan_slice_ns) timeout_ns = tsan_slice_ns;
#endif
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
    tsp = &ts;
  }
  // EAGAIN (value changed), EINTR and ETIMEDOUT all mean "re-check".
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, tsp,
          nullptr, 0);
#if defined(__SANITIZE_THREAD__)
  ::usleep(0);
#endif
}

void futex_wake(std::atomic<std::uint32_t>& word, int n) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, n, nullptr,
          nullptr, 0);
}

std::int64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace pools::detail
