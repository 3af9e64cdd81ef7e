// The lifecycle helpers every backend shares: the pool's state, running worker
// hooks, failing tasks a broken pool will not run, and the fast close's report.
#include <pools/pool_base.hpp>

#include <algorithm>
#include <new>

#include <fmt/core.h>

#include "core/diag.hpp"

namespace pools {

using detail::TaskState;
using detail::TaskStatus;

std::string_view to_string(PoolState state) noexcept {
  switch (state) {
    case PoolState::starting: return "starting";
    case PoolState::running: return "running";
    case PoolState::draining: return "draining";
    case PoolState::stopped: return "stopped";
  }
  return "unknown";
}

void PoolBase::set_state(PoolState next) noexcept {
  PoolState now = state_.load(std::memory_order_acquire);
  while (now < next &&
         !state_.compare_exchange_weak(now, next, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
  }
  if (now < next) detail::diag("{} pool '{}' is {}", to_string(kind_), name_, to_string(next));
}

std::exception_ptr PoolBase::run_worker_hook(const std::function<void()>& hook, const char* which,
                                             std::size_t worker) noexcept {
  if (!hook) return nullptr;
  try {
    hook();
    return nullptr;
  } catch (...) {
    std::string why = detail::describe_exception(std::current_exception());
    try {
      return std::make_exception_ptr(Error(fmt::format("{} pool '{}': {} of worker {} failed: {}",
                                                       to_string(kind_), name_, which, worker,
                                                       why)));
    } catch (...) {
      return std::current_exception();  // out of memory: that is the failure then
    }
  }
}

void PoolBase::fail_unstarted(TaskState* s, const std::exception_ptr& error) noexcept {
  if (!detail::try_start(s)) {
    // cancel() won: the task never runs and is not a failure.
    if (detail::hooks_active()) [[unlikely]] notify_dropped(s);
    s->ops->discard(s);
    detail::release(s);
    return;
  }
  s->ops->discard(s);
  // Every node keeps its failure where ops->error() points (ResultState::error);
  // construct it there as a task that threw would have.
  ::new (const_cast<std::exception_ptr*>(&s->ops->error(s))) std::exception_ptr(error);
  finish(s, false);
}

bool PoolBase::cancel_at_close(TaskState* s) noexcept {
  if (s->load_status() != TaskStatus::pending || !detail::cancel(s)) return false;
  note_at_close(s, false);
  return true;
}

void PoolBase::note_at_close(TaskState* s, bool was_running) noexcept {
  // The close's one line names it: not again as a failure nobody waited for.
  s->status.fetch_or(detail::reported_bit, std::memory_order_acq_rel);
  std::lock_guard lock(failures_mutex_);
  AtClose& list = at_close_[was_running ? 1 : 0];
  ++list.count;
  // The line names the ten added first (lowest ids), whatever order they end in.
  auto highest = std::max_element(list.names.begin(), list.names.end());
  if (list.names.size() < 10 || s->id < highest->first) {
    try {
      std::string name = fmt::format("'{}' (id {})", detail::task_name(s), s->id);
      if (list.names.size() < 10) {
        list.names.emplace_back(s->id, std::move(name));
      } else {
        *highest = {s->id, std::move(name)};
      }
    } catch (...) {
    }
  }
}

void PoolBase::report_cancelled_at_close() noexcept {
  AtClose lists[2];
  {
    std::lock_guard lock(failures_mutex_);
    for (int i = 0; i < 2; ++i) lists[i] = std::exchange(at_close_[i], AtClose{});
  }
  if (lists[0].count + lists[1].count == 0) return;
  try {
    std::string line = fmt::format("{} pool '{}' was closed at once:", to_string(kind_), name_);
    for (int i = 0; i < 2; ++i) {
      AtClose& l = lists[i];
      if (l.count == 0) continue;
      std::sort(l.names.begin(), l.names.end());
      std::string names;
      for (const auto& [id, n] : l.names) names += (names.empty() ? "" : ", ") + n;
      if (l.count > l.names.size()) names += fmt::format(" and {} more", l.count - l.names.size());
      line += fmt::format("{} {} {} task{} {}: {}", i == 1 && lists[0].count ? ";" : "", l.count,
                          i == 0 ? "queued" : "running", l.count == 1 ? "" : "s",
                          i == 0 ? "cancelled" : "stopped", names);
    }
    detail::write_line(line);
  } catch (...) {
  }
}

}  // namespace pools
