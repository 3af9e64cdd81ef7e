// Task handles: cheap, copyable references to the shared state of one task.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <pools/detail/task_state.hpp>
#include <pools/errors.hpp>

namespace pools {

class PoolBase;
class TaskBase;

template <class T>
class Task;

namespace detail {
struct TaskAccess {
  static TaskState* state(const TaskBase& t);
};
/// A handle that adopts one reference of s (for task kinds made outside PoolBase).
template <class T>
Task<T> adopt_task(ResultState<T>* s) noexcept;
std::size_t wait_any(TaskState* const* states, std::size_t n);
}  // namespace detail

/// What every task handle offers, whatever its result type. Copies refer to the
/// same task. All members are thread-safe. A default-constructed handle is empty:
/// its members other than valid() throw pools::Error.
///
/// Memory ordering: everything the task did happens-before the return of a
/// wait()/wait_return()/wait_for() that saw it complete, and before
/// iscompleted() returns true.
class TaskBase {
public:
  TaskBase() noexcept = default;
  TaskBase(const TaskBase& o) noexcept : s_(o.s_) {
    if (s_) detail::retain(s_);
  }
  TaskBase(TaskBase&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  TaskBase& operator=(TaskBase o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~TaskBase() {
    if (s_) detail::release(s_);
  }

  /// False for a default-constructed or moved-from handle.
  bool valid() const noexcept { return s_ != nullptr; }

  /// Blocks until the task finished. Rethrows the task's own exception (same
  /// type) when it failed, or throws pools::Cancelled when it was cancelled.
  /// On a thread of the task's pool it runs other queued tasks meanwhile.
  void wait() const { detail::wait_and_check(state()); }

  /// Blocks for at most `timeout`. True when the task finished (failed or not);
  /// never throws the task's failure (call wait() for that).
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
    return detail::wait_final_for(state(), ns < 0 ? 0 : static_cast<std::int64_t>(ns));
  }

  /// Blocks until the task finished, failed or not; unlike wait(), never
  /// throws the task's failure.
  void join() const { detail::wait_final(state()); }

  /// Non-blocking: true once the task finished, failed or was cancelled. Never throws.
  bool iscompleted() const noexcept { return s_ && detail::is_final(s_->load_status()); }

  /// Cancels the task if it has not started yet: it will never run, and its
  /// wait() throws pools::Cancelled. Returns false when it had already started
  /// or finished (it then runs to completion), except for a running command
  /// (add_process), which is stopped: its process group is terminated and
  /// wait() throws pools::Cancelled. Does not block.
  bool cancel() const noexcept { return s_ && detail::cancel(s_); }

  /// True when the task finished with an exception (or was cancelled). Non-blocking.
  bool failed() const noexcept {
    if (!s_) return false;
    auto st = s_->load_status();
    return st == detail::TaskStatus::failed || st == detail::TaskStatus::cancelled;
  }

  /// The name given to add_task (may be empty; names need not be unique).
  const std::string& name() const { return detail::task_name(state()); }
  /// A number unique among the tasks of this process.
  std::uint64_t id() const { return state()->id; }

protected:
  explicit TaskBase(detail::TaskState* adopted) noexcept : s_(adopted) {}
  detail::TaskState* state() const {
    if (!s_) detail::throw_empty_handle();
    return s_;
  }
  detail::TaskState* s_ = nullptr;

  friend class PoolBase;
  friend struct detail::TaskAccess;
};

/// A handle to a task whose callable returns T (void allowed).
template <class T>
class Task : public TaskBase {
public:
  Task() noexcept = default;

  /// Blocks until the task finished and returns its result, or rethrows its
  /// exception (see wait()). A copyable result is copied, so every call returns
  /// it; a move-only result is moved out by the first call, and a later call
  /// throws pools::Error.
  T wait_return() const {
    auto* s = result_state();
    detail::wait_and_check(s);
    if constexpr (std::is_void_v<T>) {
      return;
    } else if constexpr (std::is_copy_constructible_v<T>) {
      return s->value;
    } else {
      if (s->status.fetch_or(detail::taken_bit, std::memory_order_acq_rel) & detail::taken_bit)
        detail::throw_result_taken(s);
      T out(std::move(s->value));
      s->value.~T();
      return out;
    }
  }

private:
  explicit Task(detail::ResultState<T>* adopted) noexcept : TaskBase(adopted) {}
  detail::ResultState<T>* result_state() const {
    return static_cast<detail::ResultState<T>*>(state());
  }
  friend class PoolBase;
  friend Task detail::adopt_task<T>(detail::ResultState<T>* s) noexcept;
};

template <class T>
Task<T> detail::adopt_task(ResultState<T>* s) noexcept {
  return Task<T>(s);
}

inline detail::TaskState* detail::TaskAccess::state(const TaskBase& t) { return t.state(); }

/// Blocks until every task in `tasks` (any range of handles) finished, then
/// rethrows the failure of the first failed one in range order, if any.
template <class Range>
void wait_all(const Range& tasks) {
  for (const TaskBase& t : tasks) t.join();
  for (const TaskBase& t : tasks) t.wait();
}

/// wait_all over a list of handles of any result types.
template <class... Ts>
void wait_all(const Task<Ts>&... tasks) {
  const std::vector<TaskBase> list{tasks...};
  wait_all(list);
}

/// Blocks until at least one task in `tasks` finished (failed or not) and
/// returns the index of a finished one. Never throws the tasks' failures.
/// Throws pools::Error for an empty range.
template <class Range>
std::size_t wait_any(const Range& tasks) {
  std::vector<detail::TaskState*> states;
  for (const TaskBase& t : tasks) states.push_back(detail::TaskAccess::state(t));
  return detail::wait_any(states.data(), states.size());
}

}  // namespace pools
