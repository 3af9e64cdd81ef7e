// Delivering task events to observers: the lists (per pool and global), the
// start times behind a finished event's duration, and the hook entry points
// that the backends call (declared in pool_base.hpp).
#include <pools/observer.hpp>
#include <pools/pool_base.hpp>

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <typeinfo>

#include <fmt/core.h>

#include "core/diag.hpp"
#include "core/tls.hpp"
#include "process/process_node.hpp"

namespace pools {

std::string_view to_string(TaskEventKind kind) noexcept {
  switch (kind) {
    case TaskEventKind::queued: return "queued";
    case TaskEventKind::started: return "started";
    case TaskEventKind::finished: return "finished";
  }
  return "unknown";
}

std::string_view to_string(TaskOutcome outcome) noexcept {
  switch (outcome) {
    case TaskOutcome::succeeded: return "succeeded";
    case TaskOutcome::failed: return "failed";
    case TaskOutcome::cancelled: return "cancelled";
    case TaskOutcome::skipped: return "skipped";
  }
  return "unknown";
}

std::string_view to_string(WorkerKind kind) noexcept {
  switch (kind) {
    case WorkerKind::none: return "none";
    case WorkerKind::thread: return "thread";
    case WorkerKind::caller: return "caller";
    case WorkerKind::process: return "process";
    case WorkerKind::command: return "command";
    case WorkerKind::rank: return "rank";
  }
  return "unknown";
}

namespace detail {

std::atomic<std::uint32_t> observers_installed{0};

struct ObserverEntry {
  std::shared_ptr<Observer> observer;
  std::atomic<bool> complained{false};  // its first exception was reported
};

// Copy-on-write: a delivery loads the current list and calls it without a lock;
// add/remove publish a new list.
struct ObserverList {
  std::vector<std::shared_ptr<ObserverEntry>> entries;
};

namespace {

using ListPtr = std::shared_ptr<const ObserverList>;

std::mutex& lists_mutex() {  // serializes every add and remove (global and per pool)
  static std::mutex m;
  return m;
}

std::atomic<ListPtr>& global_list() {
  static std::atomic<ListPtr> list;
  return list;
}

// The start of every task started while observers were installed, for the
// duration and worker of its finished event. Sharded: workers of several
// pools start and finish tasks at once.
struct StartInfo {
  std::chrono::steady_clock::time_point time;
  WorkerId worker;
};
struct alignas(64) StartShard {
  std::mutex mutex;
  std::unordered_map<const TaskState*, StartInfo> map;
};
constexpr std::size_t shard_count = 16;
std::array<StartShard, shard_count>& start_shards() {
  static std::array<StartShard, shard_count> shards;
  return shards;
}
StartShard& shard_of(const TaskState* s) {
  return start_shards()[(reinterpret_cast<std::uintptr_t>(s) >> 6) % shard_count];
}

void forget_starts() {
  for (StartShard& sh : start_shards()) {
    std::lock_guard lock(sh.mutex);
    sh.map.clear();
  }
}

// add_task_after (ReuseTaskId): the id of the dependent task's handle, given
// to the next task made on this thread, whose queued event is not reported.
POOLS_FAST_TLS thread_local std::uint64_t suppressed_queued_id = 0;

void publish(std::atomic<ListPtr>& slot, std::shared_ptr<Observer> observer) {
  if (!observer) throw Error("add_observer: the observer is empty");
  std::lock_guard lock(lists_mutex());
  auto next = std::make_shared<ObserverList>();
  if (ListPtr old = slot.load()) next->entries = old->entries;
  auto entry = std::make_shared<ObserverEntry>();
  entry->observer = std::move(observer);
  next->entries.push_back(std::move(entry));
  slot.store(std::move(next));
  observers_installed.fetch_add(1, std::memory_order_relaxed);
}

bool unpublish(std::atomic<ListPtr>& slot, const std::shared_ptr<Observer>& observer) {
  std::lock_guard lock(lists_mutex());
  ListPtr old = slot.load();
  if (!old) return false;
  auto next = std::make_shared<ObserverList>(*old);
  auto it = std::find_if(next->entries.begin(), next->entries.end(),
                         [&](const auto& e) { return e->observer == observer; });
  if (it == next->entries.end()) return false;
  next->entries.erase(it);
  slot.store(next->entries.empty() ? ListPtr() : ListPtr(std::move(next)));
  if (observers_installed.fetch_sub(1, std::memory_order_relaxed) == 1) forget_starts();
  return true;
}

const char* hook_name(TaskEventKind kind) {
  switch (kind) {
    case TaskEventKind::queued: return "on_queued";
    case TaskEventKind::started: return "on_started";
    default: return "on_finished";
  }
}

void call_one(ObserverEntry& entry, const TaskEvent& e) noexcept {
  try {
    switch (e.kind) {
      case TaskEventKind::queued: entry.observer->on_queued(e); break;
      case TaskEventKind::started: entry.observer->on_started(e); break;
      case TaskEventKind::finished: entry.observer->on_finished(e); break;
    }
  } catch (...) {
    if (entry.complained.exchange(true)) return;
    const Observer& o = *entry.observer;
    write_line(fmt::format(
        "an observer ({}) threw in {} for task '{}' (id {}): {}; the pool goes on, and further "
        "exceptions of this observer are not reported",
        typeid(o).name(), hook_name(e.kind), e.task_name, e.task_id,
        describe_exception(std::current_exception())));
  }
}

std::int64_t this_thread_tid() noexcept { return static_cast<std::int64_t>(::syscall(SYS_gettid)); }

}  // namespace

void deliver(std::atomic<ListPtr>& pool_list, const TaskEvent& e) noexcept {
  // Both snapshots are held across the calls: an observer removed meanwhile
  // stays alive until they return.
  const ListPtr mine = pool_list.load();
  const ListPtr all = global_list().load();
  if (mine)
    for (const auto& entry : mine->entries) call_one(*entry, e);
  if (all)
    for (const auto& entry : all->entries) call_one(*entry, e);
}

void note_reused_id(std::uint64_t id) noexcept;  // task_memory.cpp: next_task_id() returns it once
std::uint64_t pending_reused_id() noexcept;

ReuseTaskId::ReuseTaskId(std::uint64_t id) noexcept : id_(id) {
  note_reused_id(id);
  suppressed_queued_id = id;
}

ReuseTaskId::~ReuseTaskId() {
  if (pending_reused_id() == id_) note_reused_id(0);
  if (suppressed_queued_id == id_) suppressed_queued_id = 0;
}

bool ReuseTaskId::taken() const noexcept { return pending_reused_id() != id_; }

void observe_queued(PoolBase& pool, TaskState* s) noexcept { pool.notify_queued(s); }

void observe_unstarted(PoolBase& pool, TaskState* s, const std::exception_ptr& error) noexcept {
  pool.notify_finished_unstarted(s, error);
}

}  // namespace detail

using detail::TaskState;

void add_global_observer(std::shared_ptr<Observer> observer) {
  detail::publish(detail::global_list(), std::move(observer));
}

bool remove_global_observer(const std::shared_ptr<Observer>& observer) {
  return detail::unpublish(detail::global_list(), observer);
}

void PoolBase::add_observer(std::shared_ptr<Observer> observer) {
  detail::publish(observers_, std::move(observer));
}

bool PoolBase::remove_observer(const std::shared_ptr<Observer>& observer) {
  return detail::unpublish(observers_, observer);
}

void PoolBase::report_events_to(PoolBase& owner) noexcept { event_owner_ = &owner; }

namespace {

TaskEvent make_event(TaskEventKind kind, const PoolBase& owner, const TaskState* s) {
  TaskEvent e;
  e.kind = kind;
  e.pool = &owner;
  e.task_id = s->id;
  e.task_name = detail::task_name(s);
  e.time = std::chrono::system_clock::now();
  return e;
}

std::int64_t command_pid_of(const TaskState* s) noexcept {
  if (s->ops != &detail::ProcessNode::table) return 0;
  const auto* n = static_cast<const detail::ProcessNode*>(s);
  return n->ran ? n->result.pid : 0;
}

}  // namespace

void PoolBase::notify_queued(TaskState* s) noexcept {
  if (detail::suppressed_queued_id != 0 && detail::suppressed_queued_id == s->id) {
    detail::suppressed_queued_id = 0;  // the dependent task's handle was reported
    return;
  }
  PoolBase& owner = *event_owner_;
  detail::deliver(owner.observers_, make_event(TaskEventKind::queued, owner, s));
}

void PoolBase::notify_started(TaskState* s, WorkerId worker) noexcept {
  if (worker.kind == WorkerKind::caller && worker.id < 0) worker.id = detail::this_thread_tid();
  const auto now = std::chrono::steady_clock::now();
  try {
    detail::StartShard& sh = detail::shard_of(s);
    std::lock_guard lock(sh.mutex);
    sh.map.insert_or_assign(s, detail::StartInfo{now, worker});
  } catch (...) {
    // Out of memory: the finished event will lack the duration and worker.
  }
  PoolBase& owner = *event_owner_;
  TaskEvent e = make_event(TaskEventKind::started, owner, s);
  e.worker = worker;
  detail::deliver(owner.observers_, e);
}

void PoolBase::notify_finished(TaskState* s, bool ok, const std::exception_ptr* error) noexcept {
  const auto now = std::chrono::steady_clock::now();
  PoolBase& owner = *event_owner_;
  TaskEvent e = make_event(TaskEventKind::finished, owner, s);
  {
    detail::StartShard& sh = detail::shard_of(s);
    std::lock_guard lock(sh.mutex);
    if (auto it = sh.map.find(s); it != sh.map.end()) {
      e.duration = now - it->second.time;
      e.worker = it->second.worker;
      sh.map.erase(it);
    }
  }
  e.command_pid = command_pid_of(s);
  std::string text;
  if (!ok) {
    const std::exception_ptr& ep = error ? *error : s->ops->error(s);
    e.outcome = TaskOutcome::failed;
    if (!ep) {
      e.outcome = TaskOutcome::cancelled;
      text = "cancelled before it started";
    } else {
      try {
        std::rethrow_exception(ep);
      } catch (const Skipped&) {
        e.outcome = TaskOutcome::skipped;
      } catch (const Cancelled&) {
        e.outcome = TaskOutcome::cancelled;
      } catch (...) {
      }
      text = detail::describe_exception(ep);
    }
    e.error = text;
  }
  detail::deliver(owner.observers_, e);
}

void PoolBase::notify_finished_unstarted(TaskState* s, const std::exception_ptr& error) noexcept {
  notify_finished(s, false, &error);
}

}  // namespace pools
