// PoolBase: the one interface that every kind of pool implements.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <pools/detail/task_state.hpp>
#include <pools/errors.hpp>
#include <pools/process.hpp>
#include <pools/task.hpp>

namespace pools {

/// The kinds of pool. Every kind implements PoolBase.
enum class PoolKind { thread, multiprocess, process, cluster, serial };

/// "thread", "multiprocess", "process", "cluster" or "serial".
std::string_view to_string(PoolKind kind) noexcept;

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
  template <class F, class... Args>
  Task<detail::call_result_t<F, Args...>> add_task(std::string name, F&& f, Args&&... args) {
    using R = detail::call_result_t<F, Args...>;
    detail::ResultState<R>* node =
        detail::make_task_node(std::move(name), std::forward<F>(f), std::forward<Args>(args)...);
    Task<R> handle(node);  // adopts one reference; submit() adopts the other
    submit(node);
    return handle;
  }

  /// Runs a command through /bin/sh -c and returns a handle whose wait_return()
  /// is the command's stdout. Every pool kind runs commands: the process pool
  /// many at once from one event loop, the other kinds on one of their workers.
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

  /// True until shutdown() began.
  bool accepting() const noexcept { return accepting_.load(std::memory_order_seq_cst); }

  virtual ~PoolBase();

protected:
  PoolBase(std::string name, PoolKind kind);

  /// Queues s, adopting one reference. When the pool no longer accepts work it
  /// must call refuse(s) (which discards s and throws pools::Error).
  virtual void submit(detail::TaskState* s) = 0;

  /// Queues a command task made by add_process (adopting one reference). The
  /// default queues it as any task: a worker runs the command and waits for it.
  virtual void submit_process(detail::TaskState* s) { submit(s); }

  /// Runs a queued task (unless it was cancelled), completes it and drops the
  /// queue's reference. Never throws.
  void execute(detail::TaskState* s) noexcept;

  /// Completes a task that ran (ok: it succeeded), keeps its failure for the
  /// report if nobody waits for it, and drops the queue's reference. For
  /// backends that run tasks without execute(). Never throws.
  void finish(detail::TaskState* s, bool ok) noexcept;

  /// Discards a task the pool will not run and throws pools::Error saying why.
  [[noreturn]] void refuse(detail::TaskState* s);

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

private:
  void note_failure(detail::TaskState* s) noexcept;

  std::string name_;
  PoolKind kind_;
  std::atomic<bool> accepting_{true};
  mutable std::mutex failures_mutex_;
  std::vector<detail::TaskState*> failures_;  // each holds a reference
  std::uint64_t failure_count_ = 0;
};

}  // namespace pools
