// Failure-domain groups: each task waits in its group's queue, holding its own
// (not yet queued) task node, until the group hands it to the pool; the
// node's completion hands on the next one, or skips the rest after a failure.
#include <pools/groups.hpp>

#include <algorithm>
#include <condition_variable>
#include <list>
#include <map>
#include <mutex>
#include <new>

#include <fmt/core.h>

#include "core/diag.hpp"
#include "core/helping.hpp"
#include "process/process_node.hpp"

namespace pools {
namespace detail {

struct GroupEntry;

struct Group {
  std::string name;
  GroupOptions options;
  bool has_options = false;     // set_options() was called for it
  std::list<GroupEntry*> held;  // waiting for their turn, in the order added
  std::size_t running = 0;      // handed to the pool, not finished
  std::size_t skipping = 0;     // taken out of `held` to be skipped, not yet final
  bool stopped = false;         // a failure stopped the group
  std::string failed_task;      // the failure that stopped it
  std::uint64_t failed_id = 0;
  GroupReport report;           // counts and names (running and waiting are filled in later)
  // Task ids of report.skipped_tasks, kept sorted: tasks are skipped together
  // but their completions are accounted in any order, and the report lists
  // them in the order they were added (ids grow with each add).
  std::vector<std::uint64_t> skipped_ids;
};

enum class EntryState : unsigned char {
  held,      // in its group's queue; owns the node's queue reference
  released,  // handed to the pool (or about to be), which owns that reference
  skipping,  // taken out of the queue to be skipped; the skipper owns it
};

/// One task of a group, from enqueue until its node is final.
struct GroupEntry {
  std::shared_ptr<GroupsState> owner;  // the state outlives the Groups object while tasks remain
  Group* group = nullptr;
  HeldTask held;
  EntryState state = EntryState::held;
  std::list<GroupEntry*>::iterator queued;  // in group->held while held
  std::list<GroupEntry*>::iterator live;    // in owner->live until final
  Continuation link{};
};

/// A task to skip: its node, and why.
struct SkipOrder {
  HeldTask held;
  std::string group, cause;
  std::uint64_t cause_id = 0;
  std::string cause_error;
};

class GroupsState {
public:
  GroupsState(PoolBase& p, GroupOptions d) : pool(p), defaults(d) {}

  PoolBase& pool;
  const GroupOptions defaults;
  mutable std::mutex mutex;
  std::condition_variable finished;  // an entry left `live`
  std::map<std::string, std::unique_ptr<Group>, std::less<>> groups;
  std::vector<Group*> order;  // in the order first used
  std::list<GroupEntry*> live;
  std::size_t in_pool = 0;

  // Everything below with the mutex held.
  Group& group(std::string_view name) {
    if (auto it = groups.find(name); it != groups.end()) return *it->second;
    auto g = std::make_unique<Group>();
    g->name = std::string(name);
    g->report.group = g->name;
    order.reserve(order.size() + 1);
    Group& ref = *g;
    groups.emplace(ref.name, std::move(g));
    order.push_back(&ref);
    return ref;
  }
  const GroupOptions& options(const Group& g) const noexcept {
    return g.has_options ? g.options : defaults;
  }
  // Moves the tasks whose turn has come from the queue to `out`.
  void pump(Group& g, std::vector<HeldTask>& out) {
    while (!g.stopped && g.running < options(g).limit && !g.held.empty()) {
      GroupEntry* e = g.held.front();
      out.push_back(e->held);
      g.held.pop_front();
      e->state = EntryState::released;
      ++g.running;
      ++in_pool;
    }
  }
  // Stops the group after a failure: every queued task is to be skipped.
  void stop(Group& g, std::vector<SkipOrder>& out) {
    g.stopped = true;
    for (GroupEntry* e : g.held) {
      out.push_back(SkipOrder{e->held, g.name, g.failed_task, g.failed_id, g.report.first_error});
      e->state = EntryState::skipping;
      ++g.skipping;
    }
    g.held.clear();
  }
};

namespace {

std::string display_name(const TaskState* s) {
  const std::string& n = task_name(s);
  return n.empty() ? fmt::format("(id {})", s->id) : n;
}

void store_error(TaskState* s, std::exception_ptr e) noexcept {
  // Every node keeps its failure where ops->error points (a pending node has
  // stored nothing yet).
  ::new (const_cast<std::exception_ptr*>(&s->ops->error(s))) std::exception_ptr(std::move(e));
}

// Drops a held task that cancel() finished (a pool drops a cancelled task it
// holds in its queue the same way). The caller owns its queue reference.
void drop_cancelled(PoolBase& pool, TaskState* s) noexcept {
  if (hooks_active()) [[unlikely]] observe_unstarted(pool, s, nullptr);
  s->ops->discard(s);
  release(s);
}

// Fails a held task that will never be handed to the pool. The caller owns
// its queue reference, which is dropped here.
void fail_held(PoolBase& pool, TaskState* s, std::exception_ptr error) noexcept {
  if (!try_start(s)) return drop_cancelled(pool, s);  // cancel() won
  if (hooks_active()) [[unlikely]] observe_unstarted(pool, s, error);
  s->ops->discard(s);
  store_error(s, std::move(error));
  complete(s, TaskStatus::failed);
  track_failure(pool, s);  // reported when nobody waits for it, as any failure
  release(s);
}

void skip(PoolBase& pool, const SkipOrder& o) noexcept {
  TaskState* s = o.held.task;
  std::exception_ptr error;
  try {
    error = std::make_exception_ptr(Skipped(
        fmt::format("task '{}' was skipped: task '{}' (id {}) of its group '{}' failed: {}",
                    task_name(s), o.cause, o.cause_id, o.group, o.cause_error),
        o.group, o.cause));
  } catch (...) {
    error = std::current_exception();
  }
  fail_held(pool, s, std::move(error));
}

void submit_one(PoolBase& pool, const HeldTask& h) noexcept {
  if (!pool.accepting()) {
    std::exception_ptr error;
    try {
      error = std::make_exception_ptr(Error(fmt::format(
          "{} pool '{}' was shut down before task '{}' of a group could start",
          to_string(pool.kind()), pool.name(), task_name(h.task))));
    } catch (...) {
      error = std::current_exception();
    }
    // Not counted by the pool: the group's accounting sees it through the
    // continuation as a failure of a released task.
    return fail_held(pool, h.task, std::move(error));
  }
  try {
    PoolAccess::submit(pool, h);
  } catch (...) {
    // Refused (shut down meanwhile): the pool completed the task as cancelled
    // and dropped the reference; the continuation accounted it.
  }
}

// Tasks handed on from a continuation: the serial pool runs a task inside
// submit(), whose completion hands on the next, and so on; queueing them here
// keeps the stack flat however long a group is.
thread_local std::vector<std::pair<PoolBase*, HeldTask>>* submitting = nullptr;

void submit_all(PoolBase& pool, std::vector<HeldTask>& tasks) noexcept {
  if (tasks.empty()) return;
  try {
    if (submitting) {
      for (const HeldTask& h : tasks) submitting->emplace_back(&pool, h);
      return;
    }
    std::vector<std::pair<PoolBase*, HeldTask>> queue;
    for (const HeldTask& h : tasks) queue.emplace_back(&pool, h);
    submitting = &queue;
    for (std::size_t i = 0; i < queue.size(); ++i) {
      const auto [p, h] = queue[i];  // a copy: submit_one may append
      submit_one(*p, h);
    }
    submitting = nullptr;
  } catch (...) {
    // Out of memory for the list: submit directly rather than lose tasks.
    submitting = nullptr;
    for (const HeldTask& h : tasks) submit_one(pool, h);
  }
}

void skip_all(PoolBase& pool, const std::vector<SkipOrder>& orders) noexcept {
  for (const SkipOrder& o : orders) skip(pool, o);
}

enum class Outcome { succeeded, failed, skipped, cancelled };

// Called once when a group's task is final, on the thread that finished it.
void on_final(void* arg, TaskState* s) noexcept {
  auto* e = static_cast<GroupEntry*>(arg);
  std::shared_ptr<GroupsState> owner = std::move(e->owner);
  GroupsState& st = *owner;

  Outcome outcome = Outcome::succeeded;
  std::string error;
  switch (s->load_status()) {
    case TaskStatus::succeeded: break;
    case TaskStatus::cancelled: outcome = Outcome::cancelled; break;
    default: {
      const std::exception_ptr& ep = s->ops->error(s);
      outcome = Outcome::failed;
      try {
        std::rethrow_exception(ep);
      } catch (const Cancelled&) {
        outcome = Outcome::cancelled;  // a command stopped by cancel()
      } catch (...) {
      }
      if (outcome == Outcome::failed) error = describe_exception(ep);
    }
  }

  std::vector<HeldTask> to_submit;
  std::vector<SkipOrder> to_skip;
  bool dispose = false;
  try {
    std::lock_guard lock(st.mutex);
    Group& g = *e->group;
    GroupReport& r = g.report;
    st.live.erase(e->live);
    switch (e->state) {
      case EntryState::held:
        // Only cancel() finishes a task that waits for its turn: the queue's
        // reference is ours to drop, and nothing changes for the others.
        g.held.erase(e->queued);
        dispose = true;
        break;
      case EntryState::skipping:
        --g.skipping;
        if (outcome == Outcome::failed) outcome = Outcome::skipped;
        break;
      case EntryState::released:
        --g.running;
        --st.in_pool;
        break;
    }
    const std::string name = display_name(s);
    switch (outcome) {
      case Outcome::succeeded: ++r.succeeded; break;
      case Outcome::skipped:
      {
        ++r.skipped;
        const auto at = std::upper_bound(g.skipped_ids.begin(), g.skipped_ids.end(), s->id);
        r.skipped_tasks.insert(r.skipped_tasks.begin() + (at - g.skipped_ids.begin()), name);
        g.skipped_ids.insert(at, s->id);
        break;
      }
      case Outcome::cancelled:
        ++r.cancelled;
        r.cancelled_tasks.push_back(name);
        break;
      case Outcome::failed:
        ++r.failed;
        r.failed_tasks.push_back(name);
        if (r.first_error.empty()) {
          r.first_failed_task = name;
          r.first_error = error;
        }
        if (!g.stopped && !st.options(g).keep_going) {
          g.failed_task = name;
          g.failed_id = s->id;
          st.stop(g, to_skip);
        }
        break;
    }
    st.pump(g, to_submit);
    st.finished.notify_all();
  } catch (...) {
    write_line("groups: out of memory while accounting a task; the group may stall");
  }
  delete e;
  // cancel()'s caller holds a handle: the node outlives complete().
  if (dispose) drop_cancelled(st.pool, s);
  skip_all(st.pool, to_skip);
  submit_all(st.pool, to_submit);
}

}  // namespace

std::pair<ProcessTask, HeldTask> PoolAccess::hold_process(std::string&& name,
                                                          std::vector<std::string>&& argv,
                                                          ProcessOptions&& options) {
  ProcessNode* n = make_process_node(std::move(name), ProcessSpec{std::move(argv), std::move(options)});
  return {ProcessTask(n), HeldTask{n, nullptr, HeldTask::Kind::process}};
}

void PoolAccess::submit(PoolBase& pool, const HeldTask& held) {
  switch (held.kind) {
    case HeldTask::Kind::local: return pool.submit(held.task);
    case HeldTask::Kind::remote: return pool.submit_remote(held.task, held.call);
    case HeldTask::Kind::process: return pool.submit_process(held.task);
  }
}

}  // namespace detail

using detail::GroupEntry;
using detail::HeldTask;

namespace {
void check_options(const GroupOptions& o, std::string_view group) {
  if (o.limit == 0)
    throw Error(group.empty() ? std::string("groups: a group's limit must be at least 1")
                              : fmt::format("groups: the limit of group '{}' must be at least 1",
                                            group));
}
}  // namespace

Groups::Groups(PoolBase& pool, GroupOptions defaults) : pool_(pool) {
  check_options(defaults, {});
  state_ = std::make_shared<detail::GroupsState>(pool, defaults);
}

Groups::~Groups() = default;

void Groups::check_group(const std::string& group) {
  if (group.empty()) throw Error("groups: a task's group name must not be empty");
}

void Groups::set_options(std::string_view group, GroupOptions options) {
  if (group.empty()) throw Error("groups: a group name must not be empty");
  check_options(options, group);
  std::vector<HeldTask> to_submit;
  {
    std::lock_guard lock(state_->mutex);
    detail::Group& g = state_->group(group);
    g.options = options;
    g.has_options = true;
    state_->pump(g, to_submit);
  }
  detail::submit_all(pool_, to_submit);
}

void Groups::enqueue(std::string&& group, const HeldTask& held) {
  detail::TaskState* s = held.task;
  std::vector<HeldTask> to_submit;
  std::vector<detail::SkipOrder> to_skip;
  try {
    auto* e = new GroupEntry;
    e->owner = state_;
    e->held = held;
    e->link = detail::Continuation{&detail::on_final, e, nullptr};
    // List cells made before the lock, spliced in under it (cannot throw).
    std::list<GroupEntry*> queued_cell{e}, live_cell{e};
    to_submit.reserve(1);
    to_skip.reserve(1);
    std::lock_guard lock(state_->mutex);
    detail::Group* g;
    try {
      g = &state_->group(group);
    } catch (...) {
      delete e;
      throw;
    }
    e->group = g;
    ++g->report.added;
    e->live = live_cell.begin();
    state_->live.splice(state_->live.end(), live_cell);
    if (g->stopped) {
      e->state = detail::EntryState::skipping;
      ++g->skipping;
      to_skip.push_back(detail::SkipOrder{held, g->name, g->failed_task, g->failed_id,
                                          g->report.first_error});
    } else {
      e->queued = queued_cell.begin();
      g->held.splice(g->held.end(), queued_cell);
      state_->pump(*g, to_submit);
    }
    // Pending, so it cannot fire before the lock is let go.
    detail::add_continuation(s, &e->link);
  } catch (...) {
    // Never queued: drop the queue's reference as a refused task would.
    s->ops->discard(s);
    if (detail::try_start(s)) detail::complete(s, detail::TaskStatus::cancelled);
    detail::release(s);
    throw;
  }
  // Only this thread has the handle yet: nothing else can have happened to it.
  if (detail::hooks_active()) [[unlikely]] detail::observe_queued(pool_, s);
  detail::skip_all(pool_, to_skip);
  detail::submit_all(pool_, to_submit);
}

std::size_t Groups::cancel_waiting() noexcept {
  std::vector<HeldTask> to_cancel;
  {
    std::lock_guard lock(state_->mutex);
    std::size_t n = 0;
    for (const detail::Group* g : state_->order) n += g->held.size();
    try {
      to_cancel.reserve(n);
    } catch (...) {
      return 0;
    }
    for (detail::Group* g : state_->order) {
      // Taken out of the queue as for a skip, so that no hand-over can race
      // with the cancel and start one of them.
      for (GroupEntry* e : g->held) {
        to_cancel.push_back(e->held);
        e->state = detail::EntryState::skipping;
        ++g->skipping;
      }
      g->held.clear();
    }
  }
  for (const HeldTask& h : to_cancel) {
    detail::TaskState* s = h.task;
    if (!detail::try_start(s)) {
      detail::drop_cancelled(pool_, s);  // cancel() came first
      continue;
    }
    if (detail::hooks_active()) [[unlikely]] detail::observe_unstarted(pool_, s, nullptr);
    s->ops->discard(s);
    detail::complete(s, detail::TaskStatus::cancelled);
    detail::release(s);
  }
  return to_cancel.size();
}

ProcessTask Groups::add_process(std::string group, std::string name, std::string command,
                                ProcessOptions options) {
  return add_process(std::move(group), std::move(name),
                     std::vector<std::string>{"/bin/sh", "-c", std::move(command)},
                     std::move(options));
}

ProcessTask Groups::add_process(std::string group, std::string name, std::vector<std::string> argv,
                                ProcessOptions options) {
  check_group(group);
  auto [handle, held] =
      detail::PoolAccess::hold_process(std::move(name), std::move(argv), std::move(options));
  enqueue(std::move(group), held);
  return std::move(handle);
}

void Groups::wait() noexcept {
  if (!detail::current_helper()) {
    // Off the pool's threads there is nothing to help with: sleep until the
    // last task is accounted. (This also keeps waiters away from the reply
    // polling of remote tasks that are being handed to their pool.)
    std::unique_lock lock(state_->mutex);
    state_->finished.wait(lock, [this] { return state_->live.empty(); });
    return;
  }
  for (;;) {
    detail::TaskState* s = nullptr;
    {
      std::unique_lock lock(state_->mutex);
      for (;;) {
        if (state_->live.empty()) return;
        for (GroupEntry* e : state_->live) {
          if (!detail::is_final(e->held.task->load_status())) {
            s = e->held.task;
            detail::retain(s);
            break;
          }
        }
        if (s) break;
        // Final, their accounting under way on other threads.
        state_->finished.wait(lock);
      }
    }
    detail::wait_final(s);
    detail::release(s);
  }
}

GroupsReport Groups::report() const {
  GroupsReport out;
  std::lock_guard lock(state_->mutex);
  out.groups.reserve(state_->order.size());
  for (const detail::Group* g : state_->order) {
    GroupReport r = g->report;
    r.running = g->running;
    r.waiting = g->held.size() + g->skipping;
    out.added += r.added;
    out.succeeded += r.succeeded;
    out.failed += r.failed;
    out.skipped += r.skipped;
    out.cancelled += r.cancelled;
    out.running += r.running;
    out.waiting += r.waiting;
    out.groups.push_back(std::move(r));
  }
  return out;
}

std::size_t Groups::in_pool() const noexcept {
  std::lock_guard lock(state_->mutex);
  return state_->in_pool;
}

namespace {
void append_names(std::string& out, const char* what, const std::vector<std::string>& names) {
  if (names.empty()) return;
  out += fmt::format("    {}:", what);
  for (const auto& n : names) out += fmt::format(" {}", n);
  out += '\n';
}
}  // namespace

std::string GroupsReport::to_string() const {
  std::string out = fmt::format(
      "{} tasks in {} groups: {} succeeded, {} failed, {} skipped, {} cancelled", added,
      groups.size(), succeeded, failed, skipped, cancelled);
  if (running || waiting) out += fmt::format(", {} running, {} waiting", running, waiting);
  out += '\n';
  for (const GroupReport& g : groups) {
    if (g.ok()) continue;
    out += fmt::format("  group '{}': {} succeeded, {} failed, {} skipped, {} cancelled", g.group,
                       g.succeeded, g.failed, g.skipped, g.cancelled);
    if (g.running || g.waiting) out += fmt::format(", {} running, {} waiting", g.running, g.waiting);
    out += '\n';
    if (!g.first_error.empty())
      out += fmt::format("    first error: {}: {}\n", g.first_failed_task, g.first_error);
    append_names(out, "failed", g.failed_tasks);
    append_names(out, "skipped", g.skipped_tasks);
    append_names(out, "cancelled", g.cancelled_tasks);
  }
  return out;
}

}  // namespace pools
