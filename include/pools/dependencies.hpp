// Tasks that run after other tasks (noob's DAG): a task added with
// add_task_after starts once all its dependencies succeeded, receives their
// results, and is skipped when one of them failed, was cancelled or was
// skipped. A task can only depend on tasks that exist already, so there can
// be no cycle.
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <pools/detail/task_state.hpp>
#include <pools/errors.hpp>
#include <pools/pool_base.hpp>
#include <pools/task.hpp>

namespace pools {

/// The dependencies of a task: handles of tasks of any pools and result types.
/// Their results are passed to the dependent task in this order (void results
/// are left out).
template <class... Ts>
struct After {
  std::tuple<Task<Ts>...> tasks;
};

/// after(t1, t2, ...): the task added with add_task_after runs once t1, t2, ...
/// succeeded, as f(result of t1, result of t2, ..., args...).
template <class... Ts>
After<Ts...> after(const Task<Ts>&... tasks) {
  return After<Ts...>{std::tuple<Task<Ts>...>(tasks...)};
}

/// The dependencies as a list of handles of one type: f receives a
/// std::vector of their results (in the list's order).
template <class T>
struct AfterAll {
  std::vector<Task<T>> tasks;
};
template <class T>
AfterAll<T> after_all(std::vector<Task<T>> tasks) {
  return AfterAll<T>{std::move(tasks)};
}

namespace detail {

std::string skipped_message(const std::string& task, const TaskState* dependency);
std::string fmt_cancelled(const TaskState* s);
[[noreturn]] void throw_no_dependencies(const std::string& task);

template <class T>
using result_list_t = std::conditional_t<std::is_void_v<T>, std::tuple<>, std::tuple<T>>;

template <class T>
result_list_t<T> result_list(const Task<T>& t) {
  if constexpr (std::is_void_v<T>) {
    return {};
  } else {
    return std::tuple<T>(t.wait_return());
  }
}

template <class F, class Tuple>
struct apply_result;
template <class F, class... Xs>
struct apply_result<F, std::tuple<Xs...>> {
  using type = std::invoke_result_t<F&, Xs...>;
};

template <class F, class T, class... Args>
struct list_call_result {
  using type = std::invoke_result_t<F&, std::vector<T>, Args...>;
};
template <class F, class... Args>
struct list_call_result<F, void, Args...> {
  using type = std::invoke_result_t<F&, Args...>;
};

// The arguments of the dependent call: the dependencies' results (void ones
// left out; a move-only result is moved out), then its own arguments.
template <class... Ts, class... Args>
auto results_then_args(const std::tuple<Task<Ts>...>& deps, std::tuple<Args...>& args) {
  return std::apply(
      [&](auto&... ts) {
        return std::tuple_cat(result_list(ts)..., std::move(args));
      },
      deps);
}

/// The state behind the handle of a dependent task: it completes when the task
/// it became (on the pool, once its dependencies succeeded) completes, or at
/// once as skipped.
template <class R>
struct DependentNode final : ResultState<R> {
  static bool run(TaskState*) noexcept { return false; }  // never queued itself
  static void discard(TaskState*) noexcept {}
  static void destroy(TaskState* base) noexcept { NodeOps<DependentNode>::destroy(base); }
  static constexpr TaskOps table{&run, &discard, &destroy, &NodeOps<DependentNode>::error_of,
                                 nullptr};

  // Takes the outcome of the task it became.
  void adopt(TaskState* inner) noexcept {
    if (inner->load_status() == TaskStatus::succeeded) {
      try {
        if constexpr (!std::is_void_v<R>) {
          auto* r = static_cast<ResultState<R>*>(inner);
          if constexpr (std::is_copy_constructible_v<R>) {
            ::new (static_cast<void*>(std::addressof(this->value))) R(r->value);
          } else {
            ::new (static_cast<void*>(std::addressof(this->value))) R(std::move(r->value));
            r->value.~R();
            r->status.fetch_or(taken_bit, std::memory_order_relaxed);
          }
        }
        complete(this, TaskStatus::succeeded);
        return;
      } catch (...) {
        fail(std::current_exception());
        return;
      }
    }
    if (inner->load_status() == TaskStatus::failed) {
      // The inner task's failure is seen through this handle, not the inner one.
      inner->status.fetch_or(observed_bit, std::memory_order_relaxed);
      fail(inner->ops->error(inner));
      return;
    }
    fail(std::make_exception_ptr(Cancelled(fmt_cancelled(this))));
  }

  void fail(std::exception_ptr e) noexcept {
    ::new (static_cast<void*>(std::addressof(this->error))) std::exception_ptr(std::move(e));
    complete(this, TaskStatus::failed);
  }
};

/// Waits for the dependencies, then adds the task or skips it. Lives until the
/// task it became completed.
template <class R, class Deps, class Start>
struct Join {
  PoolBase* pool;          // reports the task's failure if nobody waits for it
  DependentNode<R>* node;  // holds one reference
  Deps deps;               // holds the dependencies alive
  Start start;             // adds the task to the pool: Task<R>(Join&)
  std::atomic<std::size_t> remaining;
  std::vector<Continuation> links;
  Continuation inner_link{};
  Task<R> inner;

  static void on_dependency(void* arg, TaskState*) noexcept {
    auto* j = static_cast<Join*>(arg);
    if (j->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) j->all_done();
  }

  void all_done() noexcept {
    // cancel() of the dependent task before its dependencies finished wins.
    if (!try_start(node)) {
      if (hooks_active()) [[unlikely]] observe_unstarted(*pool, node, nullptr);
      return finished();
    }
    if (const TaskState* bad = first_unsuccessful()) {
      auto skipped = std::make_exception_ptr(Skipped(skipped_message(task_name(node), bad)));
      if (hooks_active()) [[unlikely]] observe_unstarted(*pool, node, skipped);
      node->fail(std::move(skipped));
      return finished();
    }
    // The task it becomes takes this handle's id: observers see one task.
    ReuseTaskId same_id(node->id);
    try {
      inner = start(*this);
    } catch (...) {
      if (hooks_active() && !same_id.taken()) [[unlikely]]
        observe_unstarted(*pool, node, std::current_exception());
      node->fail(std::current_exception());
      return finished();
    }
    // From here the task's outcome comes from the task it became.
    inner_link = Continuation{&on_inner, this, nullptr};
    add_continuation(TaskAccess::state(inner), &inner_link);
  }

  static void on_inner(void* arg, TaskState* inner) noexcept {
    auto* j = static_cast<Join*>(arg);
    j->node->adopt(inner);
    j->finished();
  }

  const TaskState* first_unsuccessful() const noexcept {
    const TaskState* bad = nullptr;
    for_each_dependency([&](TaskState* s) {
      if (!bad && s->load_status() != TaskStatus::succeeded) bad = s;
    });
    return bad;
  }

  template <class Fn>
  void for_each_dependency(Fn&& fn) const {
    if constexpr (requires { deps.tasks.size(); }) {
      for (const auto& t : deps.tasks) fn(TaskAccess::state(t));
    } else {
      std::apply([&](const auto&... t) { (fn(TaskAccess::state(t)), ...); }, deps.tasks);
    }
  }

  void finished() noexcept {
    if (node->load_status() == TaskStatus::failed) track_failure(*pool, node);
    release(node);
    delete this;
  }
};

template <class R, class Deps, class Start>
Task<R> start_join(PoolBase& pool, std::string name, Deps deps, Start start, std::size_t count) {
  using Node = DependentNode<R>;
  void* mem = allocate_node(sizeof(Node));
  Node* node = ::new (mem) Node();
  node->ops = &Node::table;
  node->id = next_task_id();
  node->refs.store(2, std::memory_order_relaxed);  // the handle and the join
  Task<R> handle = adopt_task(static_cast<ResultState<R>*>(node));
  if (!name.empty()) node->name = new std::string(std::move(name));
  if (hooks_active()) [[unlikely]] observe_queued(pool, node);
  using J = Join<R, Deps, Start>;
  auto* join = new J{&pool, node, std::move(deps), std::move(start), {count}, {}, {}, {}};
  join->links.resize(count);
  std::size_t i = 0;
  // Registered last: a dependency that is already final calls back at once.
  std::vector<TaskState*> states;
  join->for_each_dependency([&](TaskState* s) { states.push_back(s); });
  for (TaskState* s : states) {
    join->links[i] = Continuation{&J::on_dependency, join, nullptr};
    add_continuation(s, &join->links[i]);
    ++i;
  }
  return handle;
}

}  // namespace detail

/// Adds f(results of the dependencies..., args...) to `pool`, to run once
/// every dependency succeeded; returns its handle at once. When a dependency
/// failed, was cancelled or was skipped, the task never runs and its wait()
/// throws pools::Skipped naming that dependency. cancel() works until the
/// task was added to the pool. The dependencies may belong to any pools; on
/// the multiprocess pool the results travel as arguments (serializable).
/// Throws pools::Error at once for an empty list of dependencies.
template <class... Ts, class F, class... Args>
auto add_task_after(PoolBase& pool, std::string name, After<Ts...> deps, F f, Args... args) {
  using Values = decltype(std::tuple_cat(std::declval<detail::result_list_t<Ts>>()...,
                                          std::declval<std::tuple<Args...>>()));
  using R = typename detail::apply_result<F, Values>::type;
  if constexpr (sizeof...(Ts) == 0) detail::throw_no_dependencies(name);
  auto start = [&pool, name, f = std::move(f), args = std::tuple<Args...>(std::move(args)...)](
                   auto& join) mutable -> Task<R> {
    auto values = detail::results_then_args(join.deps.tasks, args);
    return std::apply(
        [&](auto&&... v) { return pool.add_task(name, f, std::move(v)...); }, std::move(values));
  };
  return detail::start_join<R>(pool, std::move(name), std::move(deps), std::move(start),
                               sizeof...(Ts));
}

/// The same with a list of dependencies of one type: f(std::vector<T>, args...)
/// (f(args...) for void tasks).
template <class T, class F, class... Args>
auto add_task_after(PoolBase& pool, std::string name, AfterAll<T> deps, F f, Args... args) {
  using R = typename detail::list_call_result<F, T, Args...>::type;
  if (deps.tasks.empty()) detail::throw_no_dependencies(name);
  const std::size_t n = deps.tasks.size();
  auto start = [&pool, name, f = std::move(f), args = std::tuple<Args...>(std::move(args)...)](
                   auto& join) mutable -> Task<R> {
    if constexpr (std::is_void_v<T>) {
      return std::apply([&](auto&... a) { return pool.add_task(name, f, std::move(a)...); }, args);
    } else {
      std::vector<T> results;
      results.reserve(join.deps.tasks.size());
      for (const auto& t : join.deps.tasks) results.push_back(t.wait_return());
      return std::apply(
          [&](auto&... a) { return pool.add_task(name, f, std::move(results), std::move(a)...); },
          args);
    }
  };
  return detail::start_join<R>(pool, std::move(name), std::move(deps), std::move(start), n);
}

}  // namespace pools
