// The shared state behind a task handle: a small, intrusively counted node that
// the pools queue directly (no separate queue cell) and recycle through a
// per-thread cache (src/core/task_memory.cpp).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace pools {
class PoolBase;
}

namespace pools::detail {

/// Where a task is in its life. The low bits of TaskState::status.
enum class TaskStatus : std::uint32_t {
  pending = 0,    // queued, not started
  running = 1,
  succeeded = 2,
  failed = 3,
  cancelled = 4,  // cancelled before it started; never ran
};

inline constexpr std::uint32_t status_mask = 0x7;
inline constexpr std::uint32_t waiter_bit = 0x8;     // a thread sleeps on status
inline constexpr std::uint32_t observed_bit = 0x10;  // a wait saw the failure
inline constexpr std::uint32_t taken_bit = 0x20;     // a move-only result was moved out
inline constexpr std::uint32_t reported_bit = 0x40;  // an unobserved failure was reported, or a fast close listed the task

constexpr bool is_final(TaskStatus s) noexcept { return s >= TaskStatus::succeeded; }

struct TaskState;

/// The per-type operations of a task node (a hand-rolled vtable keeps the node
/// free of a vptr and lets one table serve every node of a type).
struct TaskOps {
  // Runs the callable, stores its result or exception, destroys the callable.
  // Returns true on success. Never throws.
  bool (*run)(TaskState*) noexcept;
  // Destroys the callable without running it (cancelled or refused task).
  void (*discard)(TaskState*) noexcept;
  // Destroys the stored result or exception and frees the node.
  void (*destroy)(TaskState*) noexcept;
  // The stored exception of a failed task.
  const std::exception_ptr& (*error)(const TaskState*) noexcept;
  // Asks a running task to stop (a command's process group is terminated).
  // Null for tasks that cannot be stopped once started. True when it will stop.
  bool (*interrupt)(TaskState*) noexcept = nullptr;
  // How long a waiter polls before it sleeps; 0: a moment only.
  std::uint32_t poll_ns = 0;
  // Called by a polling waiter: may complete the task on the waiter's own
  // thread (a remote task reads its reply). Null: the waiter yields instead.
  void (*poll)(TaskState*) noexcept = nullptr;
};

/// Called once when a task reaches a final status (see add_continuation).
struct Continuation {
  void (*fn)(void* arg, TaskState* task) noexcept;
  void* arg;
  Continuation* next;
};

/// Everything a handle needs, independent of the callable's type.
/// Layout is kept to 48 bytes so a trivial task fits a 64-byte block.
struct TaskState {
  std::atomic<std::uint32_t> refs{1};
  std::atomic<std::uint32_t> status{0};
  TaskState* next = nullptr;  // queue link, owned by whichever queue holds the task
  const TaskOps* ops = nullptr;
  std::uint64_t id = 0;
  std::string* name = nullptr;  // null for an unnamed task: no allocation
  std::atomic<Continuation*> continuations{nullptr};

  TaskStatus load_status(std::memory_order o = std::memory_order_acquire) const noexcept {
    return static_cast<TaskStatus>(status.load(o) & status_mask);
  }
};

// ---- core functions (src/core/task_state.cpp) ----------------------------

/// Allocates size bytes for a node from the calling thread's cache.
void* allocate_node(std::size_t size);
/// Returns a node's memory; size must be what allocate_node was given.
void free_node(void* p, std::size_t size) noexcept;

/// A fresh id, unique in this process.
std::uint64_t next_task_id() noexcept;

inline void retain(TaskState* s) noexcept { s->refs.fetch_add(1, std::memory_order_relaxed); }
inline void release(TaskState* s) noexcept {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) s->ops->destroy(s);
}

const std::string& task_name(const TaskState* s) noexcept;

/// Blocks until s is final. Helps run its own pool's work when called on a pool thread.
void wait_final(TaskState* s) noexcept;
/// As wait_final, for at most ns nanoseconds. True when final.
bool wait_final_for(TaskState* s, std::int64_t ns) noexcept;
/// Waits, then throws the task's failure (its own exception, or pools::Cancelled).
void wait_and_check(TaskState* s);
/// Moves s from pending to running, keeping its waiter bit. False when it had
/// left pending already: the one claim that decides between running a task
/// and cancelling it.
bool try_start(TaskState* s) noexcept;
/// Cancels s if it has not started, or interrupts it when it is running and
/// can be interrupted. True when it was cancelled or interrupted by this call.
bool cancel(TaskState* s) noexcept;

/// Runs c->fn once s is final (at once, on this thread, if it already is).
void add_continuation(TaskState* s, Continuation* c) noexcept;

/// Marks s final with `final_status` (which must match what is stored),
/// wakes its waiters and runs its continuations.
void complete(TaskState* s, TaskStatus final_status) noexcept;

[[noreturn]] void throw_result_taken(const TaskState* s);
[[noreturn]] void throw_empty_handle();

// ---- typed nodes -----------------------------------------------------------

/// Holds either a T or the exception_ptr of a failure (status says which).
template <class T>
struct ResultState : TaskState {
  union {
    T value;
    std::exception_ptr error;
  };
  ResultState() noexcept {}
  ~ResultState() {}
  void destroy_result() noexcept {
    switch (load_status(std::memory_order_relaxed)) {
      case TaskStatus::succeeded:
        if (!(status.load(std::memory_order_relaxed) & taken_bit)) value.~T();
        break;
      case TaskStatus::failed: error.~exception_ptr(); break;
      default: break;
    }
  }
};

template <>
struct ResultState<void> : TaskState {
  union {
    std::exception_ptr error;
  };
  ResultState() noexcept {}
  ~ResultState() {}
  void destroy_result() noexcept {
    if (load_status(std::memory_order_relaxed) == TaskStatus::failed) error.~exception_ptr();
  }
};

/// The destroy and error entries of a node type's TaskOps: every node that is
/// a ResultState<R> with a heap name and memory from allocate_node.
template <class Node>
struct NodeOps {
  static void destroy(TaskState* base) noexcept {
    auto* self = static_cast<Node*>(base);
    self->destroy_result();
    delete self->name;
    self->~Node();
    free_node(self, sizeof(Node));
  }
  static const std::exception_ptr& error_of(const TaskState* base) noexcept {
    return static_cast<const Node*>(base)->error;
  }
};

/// The allocation: result slot plus the decayed callable and its arguments.
template <class R, class Call>
struct TaskNode final : ResultState<R> {
  union {
    Call call;
  };
  template <class... A>
  explicit TaskNode(A&&... a) : call(std::forward<A>(a)...) {}
  ~TaskNode() {}

  static bool run(TaskState* base) noexcept {
    auto* self = static_cast<TaskNode*>(base);
    bool ok = true;
    try {
      if constexpr (std::is_void_v<R>) {
        std::apply([](auto& f, auto&... args) { std::invoke(std::move(f), std::move(args)...); },
                   self->call);
      } else {
        ::new (static_cast<void*>(std::addressof(self->value))) R(std::apply(
            [](auto& f, auto&... args) -> R { return std::invoke(std::move(f), std::move(args)...); },
            self->call));
      }
    } catch (...) {
      ::new (static_cast<void*>(std::addressof(self->error))) std::exception_ptr(std::current_exception());
      ok = false;
    }
    self->call.~Call();
    return ok;
  }
  static void discard(TaskState* base) noexcept { static_cast<TaskNode*>(base)->call.~Call(); }
  static void destroy(TaskState* base) noexcept { NodeOps<TaskNode>::destroy(base); }
  static constexpr TaskOps table{&run, &discard, &destroy, &NodeOps<TaskNode>::error_of, nullptr};
};

template <class F, class... Args>
using call_result_t = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;

/// Builds a pending node holding f and args, with two references (queue + handle).
template <class F, class... Args>
ResultState<call_result_t<F, Args...>>* make_task_node(std::string&& name, F&& f, Args&&... args) {
  using R = call_result_t<F, Args...>;
  using Call = std::tuple<std::decay_t<F>, std::decay_t<Args>...>;
  using Node = TaskNode<R, Call>;
  void* mem = allocate_node(sizeof(Node));
  Node* node;
  try {
    node = ::new (mem) Node(std::forward<F>(f), std::forward<Args>(args)...);
  } catch (...) {
    free_node(mem, sizeof(Node));
    throw;
  }
  node->ops = &Node::table;
  node->id = next_task_id();
  node->refs.store(2, std::memory_order_relaxed);
  if (!name.empty()) {
    try {
      node->name = new std::string(std::move(name));
    } catch (...) {
      Node::discard(node);
      Node::destroy(node);
      throw;
    }
  }
  return node;
}

}  // namespace pools::detail
