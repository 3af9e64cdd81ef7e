// PoolBase: the one interface that every kind of pool implements.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <pools/detail/remote_call.hpp>
#include <pools/detail/task_state.hpp>
#include <pools/errors.hpp>
#include <pools/observer.hpp>
#include <pools/process.hpp>
#include <pools/task.hpp>

namespace pools {

class PoolBase;
namespace detail {
/// Keeps the failure of a task that completed outside the pool's own paths (a
/// dependent task, see dependencies.hpp) for the pool's report of failures
/// nobody waited for.
void track_failure(PoolBase& pool, TaskState* s) noexcept;
/// Observer hooks for tasks made outside PoolBase (add_task_after): the queued
/// event of s, and the finished event of a task that never started (skipped,
/// cancelled) with its error (null: cancelled).
void observe_queued(PoolBase& pool, TaskState* s) noexcept;
void observe_unstarted(PoolBase& pool, TaskState* s, const std::exception_ptr& error) noexcept;
struct ObserverList;
/// Holds tasks back and queues them later (groups.hpp).
struct PoolAccess;
}  // namespace detail

/// The kinds of pool. Every kind implements PoolBase.
enum class PoolKind { thread, multiprocess, process, cluster, serial };

/// "thread", "multiprocess", "process", "cluster" or "serial".
std::string_view to_string(PoolKind kind) noexcept;

/// Where a pool is in its life (PoolBase::state()). It only moves forward.
enum class PoolState {
  starting,  // workers are being started and run their on_start hooks
  running,   // every worker is ready (a failed on_start also ends starting)
  draining,  // shutdown began: no new work; queued and running work finishes
  stopped,   // shutdown is done: the workers ran their on_stop and are gone
};

/// "starting", "running", "draining" or "stopped".
std::string_view to_string(PoolState state) noexcept;

/// How shutdown(mode) ends a pool.
enum class ShutdownMode {
  wait,  // as shutdown(): queued and running work finishes first
  now,   // cancel queued work, stop running work where the kind can (see close_pools_now)
};

/// A pool runs tasks concurrently (or, for the serial kind, at once in the
/// caller). Pools are created and owned by the registry (get_thread_pool() and
/// friends); a PoolBase& stays valid for the life of the process, also after
/// shutdown (it then refuses new work).
///
/// All members are thread-safe.
class PoolBase {
public:
  PoolBase(const PoolBase&) = delete;
  PoolBase& operator=(const PoolBase&) = delete;

  /// The name the pool was created under (global pools have a reserved name).
  const std::string& name() const noexcept { return name_; }
  PoolKind kind() const noexcept { return kind_; }

  /// How many tasks the pool runs at once (threads, worker processes, ranks).
  virtual std::size_t num_workers() const noexcept = 0;
  /// Tasks added and not yet finished: queued plus running. Non-blocking.
  virtual std::size_t num_active_tasks() const noexcept = 0;

  /// Calls f(args...) on the pool and returns a handle to the result.
  /// f and args are decay-copied (moved when given as rvalues) into the task,
  /// as std::thread does, and f is invoked with them as rvalues. R is the
  /// result type of f (void allowed; move-only types allowed).
  /// Does not block (the serial pool runs f before returning). Throws
  /// pools::Error when the pool was shut down; nothing is queued then.
  /// A failure of f is not thrown here: wait()/wait_return() rethrow it.
  ///
  /// On the multiprocess and cluster pools the call crosses a process: f must
  /// be a plain function, a captureless lambda or a function object with a
  /// serialize function, and the arguments (converted to f's parameter types
  /// when f has one signature) and the result must be serializable (cereal).
  /// Anything else throws pools::Error here, naming the type.
  template <class F, class... Args>
  Task<detail::call_result_t<F, Args...>> add_task(std::string name, F&& f, Args&&... args) {
    using R = detail::call_result_t<F, Args...>;
    if (crosses_processes_)
      return add_remote_task<R, std::decay_t<F>>(detail::remote_params_t<std::decay_t<F>, Args...>{},
                                                 std::move(name), f, args...);
    detail::ResultState<R>* node =
        detail::make_task_node(std::move(name), std::forward<F>(f), std::forward<Args>(args)...);
    Task<R> handle(node);  // adopts one reference; submit() adopts the other
    if (detail::hooks_active()) [[unlikely]] notify_queued(node);
    submit(node);
    return handle;
  }

  /// Calls f(item) for every item of `items` (any range), as add_task(name, f,
  /// item) would, and returns the handles in the order of the items. Where
  /// calls cross a process (multiprocess, cluster) they travel in chunks of
  /// `chunk_size` calls that one worker runs together (0: about four chunks
  /// per worker, as Python's Pool.map chooses), which saves a round trip per
  /// call; a worker lost during a chunk fails the chunk's unfinished calls.
  template <class F, class Range>
  auto add_tasks(std::string name, F&& f, const Range& items, std::size_t chunk_size = 0)
      -> std::vector<Task<detail::call_result_t<F, decltype(*std::begin(items))>>> {
    using Item = decltype(*std::begin(items));
    using R = detail::call_result_t<F, Item>;
    std::vector<Task<R>> handles;
    if constexpr (requires { std::size(items); }) handles.reserve(std::size(items));
    if (!crosses_processes_) {
      for (auto&& item : items) handles.push_back(add_task(name, f, item));
      return handles;
    }
    using Fn = std::decay_t<F>;
    using Params = detail::remote_params_t<Fn, Item>;
    if (chunk_size == 0) {
      // As Python's Pool.map: about four chunks per worker.
      std::size_t count = 0;
      if constexpr (requires { std::size(items); }) {
        count = std::size(items);
      } else {
        for ([[maybe_unused]] auto&& item : items) ++count;
      }
      const std::size_t per = 4 * num_workers();
      chunk_size = count / per + (count % per ? 1 : 0);
      if (chunk_size == 0) chunk_size = 1;
    }
    // Each chunk is submitted as soon as it is encoded: workers start on the
    // first while the rest are encoded.
    std::vector<detail::RemoteSubmission> chunk;
    chunk.reserve(chunk_size);
    for (auto&& item : items) {
      auto* node = make_remote_task<R, Fn>(Params{}, std::string(name), f, item);
      handles.push_back(Task<R>(node));
      if (detail::hooks_active()) [[unlikely]] notify_queued(node);
      chunk.push_back({node, &node->call});
      if (chunk.size() == chunk_size) {
        submit_remote_batch(chunk, chunk_size);
        chunk.clear();
      }
    }
    if (!chunk.empty()) submit_remote_batch(chunk, chunk_size);
    return handles;
  }

  /// Runs a command through /bin/sh -c and returns a handle whose wait_return()
  /// is the command's stdout. Every pool kind runs commands: the process pool
  /// many at once from its engine, the other kinds on one of their workers.
  /// Does not block, and does not throw for a command that cannot start (its
  /// task fails with pools::ProcessError saying why). Throws pools::Error when
  /// the pool was shut down or the options are invalid.
  ProcessTask add_process(std::string name, std::string command, ProcessOptions options = {});
  /// Runs argv without a shell; argv[0] is looked up on PATH as execvp does.
  ProcessTask add_process(std::string name, std::vector<std::string> argv,
                          ProcessOptions options = {});
  /// add_process(name, {"prog", "arg"}) picks the argv form.
  ProcessTask add_process(std::string name, std::initializer_list<std::string> argv,
                          ProcessOptions options = {}) {
    return add_process(std::move(name), std::vector<std::string>(argv), std::move(options));
  }

  /// How many of this pool's tasks are running on the calling thread's stack
  /// (a task that waits inside another task). 0 outside the pool. Non-blocking.
  virtual std::size_t tasks_on_calling_thread() const noexcept { return 0; }

  /// Blocks until every task added so far has finished (also those added while
  /// waiting, until the pool is idle). Does not throw; failures nobody waited
  /// for whose handles are gone are reported on stderr here. Called from a task
  /// of this pool, it runs queued tasks meanwhile and waits for all but the
  /// calling task(s).
  virtual void wait_completion() noexcept = 0;

  /// wait_completion(), then stops the workers and unregisters the pool; later
  /// add_task calls throw pools::Error. Reports on stderr every failure nobody
  /// waited for. Idempotent; blocks.
  virtual void shutdown() = 0;

  /// shutdown(ShutdownMode::wait) is shutdown(). shutdown(ShutdownMode::now)
  /// closes the pool without finishing its work: queued tasks are cancelled
  /// (their wait throws pools::Cancelled, and one line on stderr lists them),
  /// running commands are terminated (their wait throws pools::Cancelled) and
  /// worker processes killed (the task each ran fails with pools::WorkerLost);
  /// a task running on a thread cannot be stopped and is waited for. Blocks
  /// until the pool is stopped. Called while a graceful shutdown runs, it
  /// hurries it along where the kind can. Thread-safe.
  void shutdown(ShutdownMode mode) {
    if (mode == ShutdownMode::now) return shutdown_now();
    shutdown();
  }

  /// True until shutdown() began.
  bool accepting() const noexcept { return accepting_.load(std::memory_order_seq_cst); }

  /// The pool's state: starting until every worker ran its on_start hook,
  /// running, draining from the start of shutdown, stopped once it is done.
  /// Non-blocking. A pool that delegates to another (the process pool's
  /// function threads) may override it to report the earlier of the two.
  virtual PoolState state() const noexcept { return state_.load(std::memory_order_acquire); }

  /// Adds an observer of this pool's tasks (see observer.hpp): it receives
  /// the events that begin after this returns. The same observer may watch
  /// several pools. Thread-safe. Throws pools::Error for an empty pointer.
  void add_observer(std::shared_ptr<Observer> observer);
  /// Removes it; false when it was not there. No event begins for it after
  /// this returns (one being delivered on another thread may still finish; the
  /// pool keeps it alive until then). Thread-safe; may be called from an observer.
  bool remove_observer(const std::shared_ptr<Observer>& observer);

  virtual ~PoolBase();

protected:
  PoolBase(std::string name, PoolKind kind);

  /// Queues s, adopting one reference. When the pool no longer accepts work it
  /// must call refuse(s) (which discards s and throws pools::Error).
  virtual void submit(detail::TaskState* s) = 0;

  /// Queues an encoded call (multiprocess and cluster pools), adopting one
  /// reference. The default refuses: only pools that cross processes get these.
  virtual void submit_remote(detail::TaskState* s, detail::RemoteCall* call);
  /// Queues many, in chunks of chunk_size calls (0: the pool chooses). The
  /// default submits them one by one.
  virtual void submit_remote_batch(const std::vector<detail::RemoteSubmission>& calls,
                                   std::size_t chunk_size);

  /// Queues a command task made by add_process (adopting one reference). The
  /// default queues it as any task: a worker runs the command and waits for it.
  virtual void submit_process(detail::TaskState* s) { submit(s); }

  /// Runs a queued task (unless it was cancelled), completes it and drops the
  /// queue's reference. Never throws.
  /// `worker` is what runs it, for the started event (observers).
  void execute(detail::TaskState* s, WorkerId worker = {}) noexcept;

  /// Completes a task that ran (ok: it succeeded), keeps its failure for the
  /// report if nobody waits for it, and drops the queue's reference. For
  /// backends that run tasks without execute(). Never throws.
  /// Delivers the task's finished event (observers) before completing it.
  void finish(detail::TaskState* s, bool ok) noexcept;

  // ---- observer hooks, for backends (src/core/observer.cpp) ----------------
  // Every task gets queued (PoolBase does it in add_task/add_process), then
  // at most one started, then exactly one finished. A backend that runs tasks
  // through execute() gets started and finished for free (pass the worker).
  // One that runs them itself (the multiprocess and cluster pools) calls
  // notify_started(s, worker) when a worker begins s (after try_start claimed
  // it) and finish(s, ok) when it ends (finish delivers finished); a task it
  // drops unrun (cancelled while queued) gets notify_dropped(s) before its
  // reference is released. Each is guarded by detail::hooks_active(), one
  // relaxed load, so that a pool without observers pays nothing more:
  //   if (detail::hooks_active()) [[unlikely]] notify_started(s, {WorkerKind::rank, r});
  // All three never throw and may run on any thread.

  void notify_started(detail::TaskState* s, WorkerId worker) noexcept;
  void notify_dropped(detail::TaskState* s) noexcept { notify_finished_unstarted(s, nullptr); }
  /// Events of this pool's tasks are delivered as `owner`'s (the process
  /// pool's function threads report as the process pool).
  void report_events_to(PoolBase& owner) noexcept;

  /// Discards a task the pool will not run and throws pools::Error saying why.
  [[noreturn]] void refuse(detail::TaskState* s);
  /// Discards a task that could not be queued (the caller then rethrows why):
  /// observers hear it was dropped, it completes as cancelled, and the pool's
  /// reference goes.
  void drop_unqueued(detail::TaskState* s) noexcept;

  /// Marks the pool as no longer accepting work. True for the first caller.
  /// seq_cst, as accepting(): a submitter counts its task and then checks
  /// accepting(), shutdown stops accepting and then reads the count, so one
  /// of the two sees the other (no task is counted and then lost).
  bool stop_accepting() noexcept { return accepting_.exchange(false, std::memory_order_seq_cst); }

  /// Prints a line for each failed task that no wait() has seen: all of them
  /// (at shutdown) or only those whose handles are all gone.
  void report_unobserved_failures(bool at_shutdown) noexcept;

  /// Counters for diagnostics (POOLS_DIAG) and the shutdown summary.
  std::uint64_t failures_seen() const noexcept;

  // ---- lifecycle, for backends (src/core/lifecycle.cpp) --------------------
  // A backend implements the lifecycle with these: its constructor leaves the
  // pool `starting` (or calls set_state(running) when it has nothing to
  // start); each worker runs run_worker_hook(on_start) before its first task
  // and the backend calls set_state(running) once all have; shutdown() calls
  // set_state(draining) when it stops accepting and set_state(stopped) when it
  // is done, after the workers ran run_worker_hook(on_stop). A failed on_start
  // is passed to fail_unstarted() for every task the pool will not run.
  // shutdown_now() does what it can faster (see shutdown(ShutdownMode)).

  /// Moves the state forward to `next` (never back: a late `running` after
  /// `draining` is ignored). Thread-safe.
  void set_state(PoolState next) noexcept;

  /// Runs a worker's hook (nothing when it is empty) and returns its failure,
  /// or null. `which` ("on_start", "on_stop") and `worker` name it in the
  /// pools::Error returned: "thread pool 'x': on_start of worker 2 failed:
  /// std::runtime_error: no GPU". Never throws.
  std::exception_ptr run_worker_hook(const std::function<void()>& hook, const char* which,
                                     std::size_t worker) noexcept;

  /// Completes a task the pool will not run because its workers could not
  /// start: it fails with `error` (if cancel() did not win), is reported when
  /// nobody waits for it, and the queue's reference is dropped. Never throws.
  void fail_unstarted(detail::TaskState* s, const std::exception_ptr& error) noexcept;

  /// The fast close; the default is shutdown().
  virtual void shutdown_now() { shutdown(); }

  /// For shutdown_now(): cancels s if it has not started (true then) and
  /// remembers it for report_cancelled_at_close(). Does not drop a reference.
  bool cancel_at_close(detail::TaskState* s) noexcept;
  /// For shutdown_now(): remembers a running task it stopped (a killed
  /// command) for report_cancelled_at_close().
  void note_at_close(detail::TaskState* s, bool was_running) noexcept;
  /// Prints one line listing the tasks shutdown_now() cancelled or stopped, if any.
  void report_cancelled_at_close() noexcept;

private:
  template <class R, class F, class... A, class Fn, class... Args>
  detail::RemoteNode<R>* make_remote_task(detail::type_list<A...>, std::string&& name, Fn& f,
                                          Args&... args) {
    if constexpr (detail::remote_callable<F, R, A...>) {
      return detail::make_remote_node<R, F, A...>(std::move(name), f, args...);
    } else {
      throw_unsendable(name, detail::why_not_remote<F, R, A...>());
    }
  }
  template <class R, class F, class... A, class Fn, class... Args>
  Task<R> add_remote_task(detail::type_list<A...> params, std::string&& name, Fn& f,
                          Args&... args) {
    auto* node = make_remote_task<R, F>(params, std::move(name), f, args...);
    Task<R> handle(node);
    if (detail::hooks_active()) [[unlikely]] notify_queued(node);
    submit_remote(node, &node->call);
    return handle;
  }
  [[noreturn]] void throw_unsendable(const std::string& task, const std::string& why) const;

  void note_failure(detail::TaskState* s) noexcept;
  friend void detail::track_failure(PoolBase& pool, detail::TaskState* s) noexcept;
  void notify_queued(detail::TaskState* s) noexcept;
  void notify_finished(detail::TaskState* s, bool ok, const std::exception_ptr* error) noexcept;
  void notify_finished_unstarted(detail::TaskState* s, const std::exception_ptr& error) noexcept;
  friend void detail::observe_queued(PoolBase&, detail::TaskState*) noexcept;
  friend void detail::observe_unstarted(PoolBase&, detail::TaskState*,
                                        const std::exception_ptr&) noexcept;
  friend struct detail::PoolAccess;

  std::string name_;
  PoolKind kind_;
  bool crosses_processes_;  // multiprocess and cluster: add_task encodes the call
  std::atomic<bool> accepting_{true};
  mutable std::mutex failures_mutex_;
  std::vector<detail::TaskState*> failures_;  // each holds a reference
  std::uint64_t failure_count_ = 0;
  std::atomic<std::shared_ptr<const detail::ObserverList>> observers_;
  PoolBase* event_owner_ = this;
  std::atomic<PoolState> state_{PoolState::starting};
  struct AtClose {
    std::size_t count = 0;
    std::vector<std::pair<std::uint64_t, std::string>> names;  // the ten lowest ids, with names
  };
  AtClose at_close_[2];  // cancelled queued tasks, stopped running ones; under failures_mutex_
};

}  // namespace pools
