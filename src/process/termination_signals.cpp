#include "process/termination_signals.hpp"

#include <atomic>
#include <csignal>
#include <mutex>

#include <unistd.h>

namespace pools::detail {
namespace {

constexpr int max_watchers = 64;
// SIGPIPE too: a program whose output pipe closed (`prog | head`) would die
// at once and orphan its commands' grandchildren.
constexpr int watched_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};

// Lock-free: read by the signal handler.
std::atomic<int> wake_fds[max_watchers];
std::atomic<int> pending_signal{0};
std::atomic<int> engines_busy{0};  // engines still terminating their commands
std::atomic<bool> raised{false};   // the signal was raised again
std::once_flag install_once;

void raise_default(int sig) noexcept {
  raised.store(true, std::memory_order_release);
  std::signal(sig, SIG_DFL);
  ::kill(::getpid(), sig);
}

void on_termination_signal(int sig) {
  int expected = 0;
  if (!pending_signal.compare_exchange_strong(expected, sig)) {
    raise_default(sig);  // a second signal: do not wait for the engines
    return;
  }
  const int saved_errno = errno;
  int woken = 0;
  // Counted before any engine can acknowledge: an engine acknowledges only
  // after it read the byte written below.
  for (auto& slot : wake_fds)
    if (slot.load(std::memory_order_acquire) >= 0) ++woken;
  engines_busy.store(woken, std::memory_order_release);
  int written = 0;
  for (auto& slot : wake_fds) {
    const int fd = slot.load(std::memory_order_acquire);
    if (fd >= 0 && written < woken && ::write(fd, "!", 1) == 1) ++written;
  }
  // An engine that could not be told will not acknowledge.
  if (engines_busy.fetch_sub(woken - written, std::memory_order_acq_rel) == woken - written)
    raise_default(sig);
  errno = saved_errno;
}

void install_handlers() noexcept {
  for (auto& slot : wake_fds) slot.store(-1, std::memory_order_relaxed);
  for (int sig : watched_signals) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;
    struct sigaction sa {};
    sa.sa_handler = &on_termination_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(sig, &sa, nullptr);
  }
}

}  // namespace

int watch_termination_signals(int wake_fd) noexcept {
  std::call_once(install_once, install_handlers);
  for (int i = 0; i < max_watchers; ++i) {
    int expected = -1;
    if (wake_fds[i].compare_exchange_strong(expected, wake_fd, std::memory_order_acq_rel))
      return i;
  }
  return -1;
}

void forget_termination_signals(int slot) noexcept {
  if (slot >= 0 && slot < max_watchers) wake_fds[slot].store(-1, std::memory_order_release);
}

void reset_termination_signals_after_fork() noexcept {
  // The slots name the parent's descriptors; the handlers were reset to the
  // default by the fork server. Start over as a fresh program would.
  for (auto& slot : wake_fds) slot.store(-1, std::memory_order_relaxed);
  pending_signal.store(0, std::memory_order_relaxed);
  engines_busy.store(0, std::memory_order_relaxed);
  raised.store(false, std::memory_order_relaxed);
  install_handlers();
}

bool termination_raised() noexcept { return raised.load(std::memory_order_acquire); }

int pending_termination_signal() noexcept { return pending_signal.load(std::memory_order_acquire); }

void termination_handled() noexcept {
  if (engines_busy.fetch_sub(1, std::memory_order_acq_rel) == 1)
    raise_default(pending_signal.load(std::memory_order_acquire));
}

}  // namespace pools::detail
