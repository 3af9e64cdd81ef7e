// as_completed: the tasks of a list in the order they finish, each handed out
// once, without rescanning the list for every one (unlike calling wait_any in
// a loop).
#pragma once

#include <cstddef>
#include <iterator>
#include <type_traits>
#include <utility>
#include <vector>

#include <pools/detail/task_state.hpp>
#include <pools/task.hpp>

namespace pools {
namespace detail {

/// Collects the indexes of tasks as they reach a final status (a
/// continuation on each), for next() to hand out in that order.
class CompletionQueue {
public:
  /// Watches every state (each must stay alive: the caller holds handles).
  explicit CompletionQueue(const std::vector<TaskState*>& states);
  ~CompletionQueue();
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;
  /// Blocks until a task not handed out yet is final; returns its index. On a
  /// pool thread it runs the pool's queued work meanwhile. Call at most as
  /// many times as there are states.
  std::size_t next() noexcept;

private:
  struct Shared;
  Shared* shared_;
};

}  // namespace detail

/// The handles of a range of tasks in the order they finish (failed or not),
/// each once: `for (auto& t : pools::as_completed(tasks)) use(t.wait_return());`.
/// begin() and ++ block until the next task finished; on a thread of a pool they
/// run that pool's queued work meanwhile (nested waits do not deadlock).
/// Never throws the tasks' failures (wait() on the handle does). Setting up
/// costs O(n); each step O(1). Tasks that finished before as_completed was
/// called come first, in the range's order. Not thread-safe: iterate on one thread.
template <class Handle>
class AsCompleted {
public:
  explicit AsCompleted(std::vector<Handle> handles)
      : handles_(std::move(handles)), queue_(states(handles_)) {}

  class iterator {
  public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Handle;
    using difference_type = std::ptrdiff_t;
    using pointer = const Handle*;
    using reference = const Handle&;

    iterator() = default;
    const Handle& operator*() const { return owner_->handles_[current_]; }
    const Handle* operator->() const { return &owner_->handles_[current_]; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    bool operator==(std::default_sentinel_t) const noexcept { return !owner_; }

  private:
    friend class AsCompleted;
    explicit iterator(AsCompleted* owner) : owner_(owner) { advance(); }
    void advance() {
      if (owner_->handed_out_ == owner_->handles_.size()) {
        owner_ = nullptr;
        return;
      }
      current_ = owner_->queue_.next();
      ++owner_->handed_out_;
    }
    AsCompleted* owner_ = nullptr;
    std::size_t current_ = 0;
  };

  /// Starts handing out; call once.
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }
  std::size_t size() const noexcept { return handles_.size(); }

private:
  static std::vector<detail::TaskState*> states(const std::vector<Handle>& hs) {
    std::vector<detail::TaskState*> out;
    out.reserve(hs.size());
    for (const TaskBase& h : hs) out.push_back(detail::TaskAccess::state(h));
    return out;
  }
  std::vector<Handle> handles_;
  detail::CompletionQueue queue_;
  std::size_t handed_out_ = 0;
};

/// as_completed over any range of task handles (copied: the handles are cheap).
/// Throws pools::Error for an empty handle in the range.
template <class Range>
auto as_completed(const Range& tasks) {
  using Handle = std::decay_t<decltype(*std::begin(tasks))>;
  static_assert(std::is_base_of_v<TaskBase, Handle>, "as_completed takes task handles");
  return AsCompleted<Handle>(std::vector<Handle>(std::begin(tasks), std::end(tasks)));
}

}  // namespace pools
