// Worker lifecycle: per-worker on_start/on_stop hooks, pool options that carry
// them, and nornir_pools' stage helpers (release_stage_pools, close_pools_now).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string_view>

#include <pools/pool_base.hpp>

namespace pools {

/// A hook run by a worker: on_start before its first task, on_stop as it ends.
/// Thread-kind pools (thread, process, serial) take any callable, closures
/// included; the multiprocess pool takes plain functions (MultiprocessOptions).
using WorkerHook = std::function<void()>;

/// Options of a thread pool (get_thread_pool(name, options)).
struct ThreadPoolOptions {
  /// Worker threads (default: the hardware threads, capped by POOLS_MAX_THREADS).
  std::optional<std::size_t> threads;
  /// Run by each worker thread, on that thread: on_start once before the
  /// thread takes its first task, on_stop once as it exits at shutdown (only
  /// when its on_start succeeded). No worker takes a task before every
  /// worker's on_start returned, so a task may rely on all of them.
  /// An on_start that throws breaks the pool: no task runs, every task queued
  /// or added later fails with pools::Error naming the hook and its error. An
  /// on_stop that throws is reported on stderr.
  WorkerHook on_start;
  WorkerHook on_stop;
};

/// Options of a process pool (get_process_pool(name, options)). The hooks run
/// on the threads that run the pool's functions (add_task), which then start
/// with the pool instead of at its first add_task. Commands (add_process) have
/// no worker of their own (the pool's engine starts them all), so no hook runs
/// for them, and a failed on_start does not stop them.
struct ProcessPoolOptions {
  /// Commands running at once, and threads for functions (default: the
  /// hardware threads).
  std::optional<std::size_t> max_running;
  WorkerHook on_start;
  WorkerHook on_stop;
};

/// Options of a serial pool (get_serial_pool(name, options)). A serial pool
/// has one notional worker, the calling thread: on_start runs once, on the
/// thread that adds the first task, before that task (a thread adding a task
/// meanwhile waits for it); on_stop runs once at shutdown on the thread that
/// calls it, if on_start ran and succeeded. Failures as for ThreadPoolOptions.
struct SerialPoolOptions {
  WorkerHook on_start;
  WorkerHook on_stop;
};

/// The thread pool called `name` with these options, created on first use.
/// Asking for an existing pool returns it when the options are the same and
/// throws pools::Error otherwise. Hooks are the same when both are empty, the
/// same function pointer, or closures of the same type (the same lambda
/// expression in the source: a closure's captured state cannot be compared).
/// Other errors as get_thread_pool(name, num_threads). Thread-safe.
PoolBase& get_thread_pool(std::string_view name, const ThreadPoolOptions& options);
/// The same for a process pool.
PoolBase& get_process_pool(std::string_view name, const ProcessPoolOptions& options);
/// The same for a serial pool.
PoolBase& get_serial_pool(std::string_view name, const SerialPoolOptions& options);

/// True for the kinds whose workers live in this process (thread, process,
/// serial): cheap to make, so release_stage_pools() closes them. False for
/// the multiprocess and cluster kinds, whose worker processes are kept warm.
constexpr bool is_thread_kind(PoolKind kind) noexcept {
  return kind == PoolKind::thread || kind == PoolKind::process || kind == PoolKind::serial;
}

/// nornir_pools' ReleaseStagePools, for the end of a pipeline stage: waits for
/// every registered pool (wait_on_all_pools), then shuts down and unregisters
/// the thread-kind pools (is_thread_kind) so that their idle threads do not
/// linger, and keeps the multiprocess and cluster pools registered and their
/// worker processes running, so that the next stage reuses them (no on_stop,
/// no fork). Blocks; does not throw (failures are reported on stderr).
void release_stage_pools() noexcept;

/// Closes every registered pool at once, without finishing their work: each
/// pool's shutdown(ShutdownMode::now). Queued tasks are cancelled (their wait
/// throws pools::Cancelled; each pool lists them in one line on stderr),
/// running commands are terminated (SIGTERM to their process group, SIGKILL
/// after their kill_grace: their wait throws pools::Cancelled), worker
/// processes are killed (the task each was running fails with
/// pools::WorkerLost; their on_stop does not run). Threads cannot be killed:
/// a task running on a thread is waited for. The pools are closed
/// concurrently. Blocks until all are stopped; does not throw.
void close_pools_now() noexcept;

}  // namespace pools
