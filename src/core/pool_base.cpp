// What every pool kind shares: running a queued task, refusing work after
// shutdown, and keeping failures nobody waited for until they are reported.
#include <pools/pool_base.hpp>

#include <algorithm>

#include <fmt/core.h>

#include "core/diag.hpp"

namespace pools {

using detail::TaskState;
using detail::TaskStatus;

std::string_view to_string(PoolKind kind) noexcept {
  switch (kind) {
    case PoolKind::thread: return "thread";
    case PoolKind::multiprocess: return "multiprocess";
    case PoolKind::process: return "process";
    case PoolKind::cluster: return "cluster";
    case PoolKind::serial: return "serial";
  }
  return "unknown";
}

PoolBase::PoolBase(std::string name, PoolKind kind)
    : name_(std::move(name)),
      kind_(kind),
      crosses_processes_(kind == PoolKind::multiprocess || kind == PoolKind::cluster) {}

void PoolBase::drop_unqueued(TaskState* s) noexcept {
  if (detail::hooks_active()) [[unlikely]] notify_dropped(s);
  s->ops->discard(s);
  detail::complete(s, TaskStatus::cancelled);
  detail::release(s);
}

void PoolBase::submit_remote(TaskState* s, detail::RemoteCall*) {
  drop_unqueued(s);
  throw Error(fmt::format("{} pool '{}' cannot run encoded calls", to_string(kind_), name_));
}

void PoolBase::submit_remote_batch(const std::vector<detail::RemoteSubmission>& calls, std::size_t) {
  std::size_t i = 0;
  try {
    for (; i < calls.size(); ++i) submit_remote(calls[i].task, calls[i].call);
  } catch (...) {
    // The rest were never queued: drop the references the queue would have had.
    for (++i; i < calls.size(); ++i) {
      if (detail::hooks_active()) [[unlikely]] notify_dropped(calls[i].task);
      detail::complete(calls[i].task, TaskStatus::cancelled);
      detail::release(calls[i].task);
    }
    throw;
  }
}

void PoolBase::throw_unsendable(const std::string& task, const std::string& why) const {
  throw Error(fmt::format("{} pool '{}': cannot add task '{}': {}", to_string(kind_), name_, task,
                          why));
}

PoolBase::~PoolBase() {
  for (TaskState* s : failures_) detail::release(s);
}

void PoolBase::execute(TaskState* s, WorkerId worker) noexcept {
  if (!detail::try_start(s)) {
    // cancel() won: the task never runs.
    if (detail::hooks_active()) [[unlikely]] notify_dropped(s);
    s->ops->discard(s);
    detail::release(s);
    return;
  }
  if (detail::hooks_active()) [[unlikely]] notify_started(s, worker);
  finish(s, s->ops->run(s));
}

void PoolBase::finish(TaskState* s, bool ok) noexcept {
  // Before complete(): a wait() that returns has seen the observers run.
  if (detail::hooks_active()) [[unlikely]] notify_finished(s, ok, nullptr);
  detail::complete(s, ok ? TaskStatus::succeeded : TaskStatus::failed);
  if (!ok) note_failure(s);
  detail::release(s);
}

void PoolBase::refuse(TaskState* s) {
  if (detail::hooks_active()) [[unlikely]] notify_dropped(s);
  s->ops->discard(s);
  // Complete it as cancelled so that the handle the caller never receives
  // (add_task throws) cannot be waited on by anyone; then drop our reference.
  // A task that waited outside the pool (groups.hpp) may have been cancelled
  // already: it is final, and completing it again would run its
  // continuations twice.
  if (detail::try_start(s)) detail::complete(s, TaskStatus::cancelled);
  const std::string task = detail::task_name(s);
  detail::release(s);
  throw Error(fmt::format("{} pool '{}' was shut down: cannot add task '{}'", to_string(kind_),
                          name_, task));
}

void detail::track_failure(PoolBase& pool, TaskState* s) noexcept { pool.note_failure(s); }

void PoolBase::note_failure(TaskState* s) noexcept {
  if (s->status.load(std::memory_order_acquire) & detail::observed_bit) return;
  std::lock_guard lock(failures_mutex_);
  ++failure_count_;
  try {
    failures_.push_back(s);
  } catch (...) {
    // Out of memory: report now rather than lose it.
    detail::write_line(fmt::format("task '{}' in {} pool '{}' failed and nobody waited for it: {}",
                                   detail::task_name(s), to_string(kind_), name_,
                                   detail::describe_exception(s->ops->error(s))));
    return;
  }
  detail::retain(s);
}

std::uint64_t PoolBase::failures_seen() const noexcept {
  std::lock_guard lock(failures_mutex_);
  return failure_count_;
}

void PoolBase::report_unobserved_failures(bool at_shutdown) noexcept {
  std::vector<TaskState*> to_report, to_release;
  {
    std::lock_guard lock(failures_mutex_);
    auto keep = std::partition(failures_.begin(), failures_.end(), [&](TaskState* s) {
      const bool observed = s->status.load(std::memory_order_acquire) & detail::observed_bit;
      // Only our reference left: no handle exists, so no wait() can come.
      const bool orphaned = s->refs.load(std::memory_order_acquire) == 1;
      return !(observed || orphaned || at_shutdown);
    });
    for (auto it = keep; it != failures_.end(); ++it) {
      const bool observed = (*it)->status.load(std::memory_order_acquire) & detail::observed_bit;
      (observed ? to_release : to_report).push_back(*it);
    }
    failures_.erase(keep, failures_.end());
  }
  for (TaskState* s : to_report) {
    if (!(s->status.fetch_or(detail::reported_bit) & detail::reported_bit)) {
      detail::write_line(fmt::format(
          "task '{}' (id {}) in {} pool '{}' failed and nobody waited for it: {}",
          detail::task_name(s), s->id, to_string(kind_), name_,
          detail::describe_exception(s->ops->error(s))));
    }
    detail::release(s);
  }
  for (TaskState* s : to_release) detail::release(s);
}

}  // namespace pools
