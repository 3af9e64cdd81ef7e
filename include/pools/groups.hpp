// Failure-domain groups (Nornir's DCAwareRunner): tasks that name a group run
// at most K of that group at a time, in the order they were added; groups run
// in parallel with each other; a failure in a group skips the group's tasks
// that have not started, and a report tells what happened to every task.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <pools/detail/task_state.hpp>
#include <pools/errors.hpp>
#include <pools/pool_base.hpp>
#include <pools/process.hpp>
#include <pools/task.hpp>

namespace pools {

/// How a group runs its tasks.
struct GroupOptions {
  /// At most this many of the group's tasks run (or wait in the pool's queue)
  /// at once. Must be at least 1.
  std::size_t limit = 1;
  /// A failed task does not skip the rest of the group: every task runs.
  bool keep_going = false;
};

/// What happened to the tasks of one group (see Groups::report()).
struct GroupReport {
  std::string group;
  std::size_t added = 0;      // every task added to the group: the sum of the next six
  std::size_t succeeded = 0;
  std::size_t failed = 0;     // ran and failed (or could not be handed to the pool)
  std::size_t skipped = 0;    // never ran: an earlier task of the group failed
  std::size_t cancelled = 0;  // cancel() before it started, or a command stopped by cancel()
  std::size_t running = 0;    // handed to the pool, not finished
  std::size_t waiting = 0;    // waiting for its turn in the group
  std::vector<std::string> failed_tasks;     // names, in the order they failed
  std::vector<std::string> skipped_tasks;    // names, in the order they were added
  std::vector<std::string> cancelled_tasks;  // names, in the order they were cancelled
  std::string first_failed_task;             // empty when none failed
  std::string first_error;  // "type: what()" of the first failure; empty when none failed
  /// Every task finished and succeeded.
  bool ok() const noexcept { return added == succeeded; }
};

/// What happened to every task of a Groups object, group by group.
struct GroupsReport {
  std::vector<GroupReport> groups;  // in the order the groups were first used
  std::size_t added = 0, succeeded = 0, failed = 0, skipped = 0, cancelled = 0, running = 0,
              waiting = 0;  // the sums over the groups
  bool ok() const noexcept { return added == succeeded; }
  /// A printable form: one line with the totals, then, for every group that
  /// did not simply succeed, its counts, first error and task names.
  std::string to_string() const;
};

class Groups;

namespace detail {

/// A task that exists (it has a handle) but has not been given to its pool.
/// `task` holds the reference the pool's queue will adopt.
struct HeldTask {
  enum class Kind : unsigned char { local, remote, process };
  TaskState* task = nullptr;
  RemoteCall* call = nullptr;  // for remote tasks
  Kind kind = Kind::local;
};

/// Builds task nodes without queueing them, and queues them later, through
/// the same PoolBase paths add_task and add_process use.
struct PoolAccess {
  template <class R, class F, class... Args>
  static std::pair<Task<R>, HeldTask> hold_task(PoolBase& pool, std::string&& name, F&& f,
                                                Args&&... args) {
    if (pool.crosses_processes_) {
      auto* node = pool.template make_remote_task<R, std::decay_t<F>>(
          remote_params_t<std::decay_t<F>, Args...>{}, std::move(name), f, args...);
      return {adopt_task<R>(node), HeldTask{node, &node->call, HeldTask::Kind::remote}};
    }
    ResultState<R>* node =
        make_task_node(std::move(name), std::forward<F>(f), std::forward<Args>(args)...);
    return {adopt_task<R>(node), HeldTask{node, nullptr, HeldTask::Kind::local}};
  }
  static std::pair<ProcessTask, HeldTask> hold_process(std::string&& name,
                                                       std::vector<std::string>&& argv,
                                                       ProcessOptions&& options);
  /// Queues a held task on `pool`; the pool adopts its reference.
  static void submit(PoolBase& pool, const HeldTask& held);
};

class GroupsState;

}  // namespace detail

/// Runs tasks on one pool in failure-domain groups. A task names its group (a
/// non-empty string); the group hands at most `limit` of its tasks to the
/// pool at a time, in the order they were added, and the next when one
/// finishes. Different groups run in parallel, as far as the pool's workers
/// allow. When a task of a group fails, the group's tasks that it has not yet
/// handed to the pool are skipped (their wait() throws pools::Skipped), and so
/// is every task added to the group later, unless the group keeps going.
///
/// Works on every pool kind: the tasks are the pool's own (add_task and
/// add_process handles, with their results, cancel() and errors). Failures and
/// skips nobody waited for are reported on stderr by the pool, as for any task.
///
/// All members are thread-safe, also from inside the tasks. Destroying the
/// Groups object does not wait: tasks already added still run in turn.
class Groups {
public:
  /// Groups over `pool`; `defaults` apply to every group without options of
  /// its own. Throws pools::Error for a limit of 0.
  explicit Groups(PoolBase& pool, GroupOptions defaults = {});
  Groups(const Groups&) = delete;
  Groups& operator=(const Groups&) = delete;
  ~Groups();

  /// Options for one group, before or after it has tasks. A higher limit
  /// starts waiting tasks at once; a lower one applies as tasks finish. A
  /// group that stopped after a failure stays stopped. Throws pools::Error for
  /// an empty group name or a limit of 0.
  void set_options(std::string_view group, GroupOptions options);

  /// Adds f(args...) to `group`, as pool().add_task(name, f, args...) would,
  /// to be handed to the pool when the group's turn comes. Returns the handle
  /// at once; does not block. Throws pools::Error at once for an empty group
  /// name, and whatever add_task throws for f and args (the multiprocess pool
  /// checks that they can cross a process). When the pool was shut down by the
  /// time the task's turn comes, the task fails with pools::Error.
  template <class F, class... Args>
  [[nodiscard]] Task<detail::call_result_t<F, Args...>> add_task(std::string group,
                                                                 std::string name, F&& f,
                                                                 Args&&... args) {
    using R = detail::call_result_t<F, Args...>;
    check_group(group);
    auto [handle, held] = detail::PoolAccess::hold_task<R>(pool_, std::move(name),
                                                           std::forward<F>(f),
                                                           std::forward<Args>(args)...);
    enqueue(std::move(group), held);
    return std::move(handle);
  }

  /// Adds a command to `group`, as pool().add_process(name, command, options)
  /// would (the same handle: wait_return() is stdout, result(), cancel() stops
  /// a running command). Throws pools::Error at once for an empty group name
  /// or invalid options.
  [[nodiscard]] ProcessTask add_process(std::string group, std::string name, std::string command,
                                        ProcessOptions options = {});
  [[nodiscard]] ProcessTask add_process(std::string group, std::string name,
                                        std::vector<std::string> argv, ProcessOptions options = {});
  [[nodiscard]] ProcessTask add_process(std::string group, std::string name,
                                        std::initializer_list<std::string> argv,
                                        ProcessOptions options = {}) {
    return add_process(std::move(group), std::move(name), std::vector<std::string>(argv),
                       std::move(options));
  }

  /// Cancels every task that waits for its group's turn (tasks already handed
  /// to the pool are left alone): their wait() throws pools::Cancelled.
  /// Returns how many. Groups stay usable. Does not block (beyond the lock).
  std::size_t cancel_waiting() noexcept;

  /// Blocks until every task added so far finished (ran, failed, was skipped
  /// or cancelled), also those added meanwhile. Does not throw. On a thread of
  /// the pool it runs queued tasks meanwhile, as wait() does.
  void wait() noexcept;

  /// What happened to every task so far, group by group. Non-blocking. A
  /// task is counted just after it finished (its handle may show it finished
  /// a moment earlier): call wait() first for the final report.
  GroupsReport report() const;

  /// Tasks handed to the pool and not finished yet. Non-blocking.
  std::size_t in_pool() const noexcept;

  PoolBase& pool() const noexcept { return pool_; }

private:
  static void check_group(const std::string& group);
  // Takes the held task's queue reference, also when it throws.
  void enqueue(std::string&& group, const detail::HeldTask& held);

  PoolBase& pool_;
  std::shared_ptr<detail::GroupsState> state_;
};

}  // namespace pools
