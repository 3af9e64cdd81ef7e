// The multiprocess pool: functions run in worker processes, crash-isolated.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <pools/pool_base.hpp>

namespace pools {

/// How a multiprocess pool's workers are made and run. Every field has a
/// default that suits most programs.
struct MultiprocessOptions {
  /// Worker processes (default: the hardware threads).
  std::optional<std::size_t> workers;
  /// Run once in each worker before its first task, and once when it stops
  /// (shutdown, or recycling). Plain functions: they must exist in the
  /// workers, which run the same executable. An initializer that throws makes
  /// the worker exit; a pool whose workers keep failing to start fails its
  /// tasks with pools::WorkerLost rather than retrying forever.
  void (*initializer)() = nullptr;
  void (*finalizer)() = nullptr;
  /// The same two hooks under the names every pool kind uses (lifecycle.hpp):
  /// on_start is the initializer, on_stop the finalizer. Give one name of
  /// each pair; two different functions for one hook throw pools::Error.
  void (*on_start)() = nullptr;
  void (*on_stop)() = nullptr;
  /// Replace a worker after it ran this many tasks (0: never), as
  /// Python's maxtasksperchild: for code that leaks.
  std::size_t max_tasks_per_worker = 0;
  /// A task running longer than this has its worker killed and fails with
  /// pools::WorkerLost (timed_out() true); the worker is replaced. 0: none.
  std::chrono::milliseconds task_timeout{0};
  /// Environment variables set in each worker (before the initializer).
  std::map<std::string, std::string> environment;
  /// Calls sent ahead to a worker before earlier ones finished (0: adapted to
  /// how long tasks take: many for tiny tasks, few for long ones so that
  /// workers share the load evenly).
  std::size_t max_in_flight = 0;

  bool operator==(const MultiprocessOptions&) const = default;
};

/// Returns the multiprocess pool called `name` (empty: the global one),
/// creating it on first use with `num_workers` worker processes (default: the
/// hardware threads). Same errors as get_thread_pool.
PoolBase& get_multiprocess_pool(std::string_view name = {},
                                std::optional<std::size_t> num_workers = {});
/// The same, with every option. Asking for an existing pool this way returns
/// it when its options are the same, and throws pools::Error otherwise (the
/// options are fixed when the pool is made).
PoolBase& get_multiprocess_pool(std::string_view name, const MultiprocessOptions& options);

/// The global multiprocess pool; the same as get_multiprocess_pool().
PoolBase& global_multiprocess_pool();

}  // namespace pools
