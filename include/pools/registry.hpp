// Getting pools by name, the global pools, and closing every pool.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include <pools/multiprocess.hpp>
#include <pools/pool_base.hpp>

namespace pools {

/// Returns the thread pool called `name`, creating it on first use with
/// `num_threads` threads (default: the hardware threads). An empty name gives
/// the global thread pool. Sizes are capped by the environment variable
/// POOLS_MAX_THREADS. Throws pools::Error when a pool of another kind has that
/// name, when the size is 0 or absurd (more than 4096), or when an existing
/// pool is asked for with a different explicit size. Thread-safe.
PoolBase& get_thread_pool(std::string_view name = {},
                          std::optional<std::size_t> num_threads = {});

/// Returns the process pool called `name` (empty: the global one), creating it
/// on first use. It runs commands (add_process), at most `max_running` at once
/// (default: the hardware threads), started and watched by a few threads of its
/// own (one event loop and up to 9 spawners), never one thread per command.
/// Functions given to its add_task run on max_running threads of its own.
/// Same errors as get_thread_pool.
PoolBase& get_process_pool(std::string_view name = {},
                           std::optional<std::size_t> max_running = {});

/// Returns the serial pool called `name` (empty: the global one). A serial
/// pool runs each task at once in the calling thread: for debugging and
/// profiling. Throws pools::Error on a kind clash.
PoolBase& get_serial_pool(std::string_view name = {});

/// Returns the registered pool called `name`, whatever its kind, without
/// creating one. Throws pools::Error naming the pool, and the pools that do
/// exist, when there is none. Thread-safe.
PoolBase& find_pool(std::string_view name);

/// The global thread pool; the same as get_thread_pool().
PoolBase& global_thread_pool();

/// The global process pool; the same as get_process_pool().
PoolBase& global_process_pool();

/// Blocks until every registered pool is idle. Pools stay usable. Does not throw.
void wait_on_all_pools() noexcept;

/// Waits for every pool, then shuts each down and unregisters it: a later
/// get_*_pool call with the same name creates a new pool. Runs by itself at
/// process exit (after queued work finished). Safe to call repeatedly.
void close_pools() noexcept;

/// Call first thing in main(). Harmless in programs that never use the cluster
/// pool; reads the pools environment variables.
void init(int& argc, char**& argv);

}  // namespace pools
