// The Summary observer: counts, wall time, throughput, the slowest tasks and
// the failures of a run.
#include <pools/observer.hpp>
#include <pools/pool_base.hpp>

#include <algorithm>

#include <fmt/format.h>

namespace pools {

Summary::Summary(std::size_t slowest, std::size_t failures)
    : keep_slowest_(slowest), keep_failures_(failures) {}

void Summary::on_queued(const TaskEvent&) {
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (!any_) first_ = now, any_ = true;
  ++r_.queued;
}

void Summary::on_started(const TaskEvent&) {
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (!any_) first_ = now, any_ = true;
  ++r_.started;
}

void Summary::on_finished(const TaskEvent& e) {
  const auto now = std::chrono::steady_clock::now();
  Entry entry{e.task_id, std::string(e.task_name),
              e.pool ? e.pool->name() : std::string(), e.outcome, e.duration, std::string(e.error)};
  std::lock_guard lock(mutex_);
  if (!any_) first_ = now, any_ = true;
  last_ = now;
  ++r_.finished;
  switch (e.outcome) {
    case TaskOutcome::succeeded: ++r_.succeeded; break;
    case TaskOutcome::failed: ++r_.failed; break;
    case TaskOutcome::cancelled: ++r_.cancelled; break;
    case TaskOutcome::skipped: ++r_.skipped; break;
  }
  if (e.outcome != TaskOutcome::succeeded) {
    if (r_.first_error.empty() && e.outcome == TaskOutcome::failed) r_.first_error = entry.error;
    if (r_.failures.size() < keep_failures_) r_.failures.push_back(entry);
  }
  if (keep_slowest_ == 0 || e.worker.kind == WorkerKind::none) return;  // it never ran
  // Kept sorted, slowest first, at most keep_slowest_ long.
  auto& v = r_.slowest;
  if (v.size() == keep_slowest_ && v.back().duration >= entry.duration) return;
  auto at = std::upper_bound(v.begin(), v.end(), entry.duration,
                             [](std::chrono::nanoseconds d, const Entry& x) { return d > x.duration; });
  v.insert(at, std::move(entry));
  if (v.size() > keep_slowest_) v.pop_back();
}

Summary::Report Summary::report() const {
  std::lock_guard lock(mutex_);
  Report r = r_;
  if (any_ && r.finished) r.wall = last_ - first_;
  const double s = std::chrono::duration<double>(r.wall).count();
  r.tasks_per_second = s > 0 ? static_cast<double>(r.finished) / s : 0;
  return r;
}

std::string Summary::text() const {
  const Report r = report();
  std::string out = fmt::format("{} tasks: {} succeeded, {} failed, {} cancelled, {} skipped",
                                r.finished, r.succeeded, r.failed, r.cancelled, r.skipped);
  out += fmt::format("; wall {:.3f} s, {:.1f} tasks/s\n",
                     std::chrono::duration<double>(r.wall).count(), r.tasks_per_second);
  if (!r.slowest.empty()) {
    out += "slowest:\n";
    for (const Entry& e : r.slowest)
      out += fmt::format("  {:.3f} s  '{}' (id {}, pool '{}')\n",
                         std::chrono::duration<double>(e.duration).count(), e.task_name, e.task_id,
                         e.pool);
  }
  if (!r.failures.empty()) {
    out += "failures:\n";
    for (const Entry& e : r.failures)
      out += fmt::format("  {} '{}' (id {}, pool '{}'): {}\n", to_string(e.outcome), e.task_name,
                         e.task_id, e.pool, e.error);
    const std::uint64_t unlisted = r.failed + r.cancelled + r.skipped - r.failures.size();
    if (unlisted) out += fmt::format("  ... and {} more\n", unlisted);
  }
  if (!r.first_error.empty()) out += fmt::format("first error: {}\n", r.first_error);
  return out;
}

}  // namespace pools
