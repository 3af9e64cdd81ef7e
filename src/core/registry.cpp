// The pool registry: pools by name, the global pools, close_pools and the
// automatic close at process exit.
#include <pools/registry.hpp>

#include "pools_config.h"

#include <pools/lifecycle.hpp>

#include <cerrno>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <type_traits>

#include <fmt/core.h>

#include "core/diag.hpp"
#include "core/registry_internal.hpp"
#if POOLS_HAVE_MPI
#include "cluster/cluster_pool.hpp"
#endif
#include "multiprocess/fork_server.hpp"
#include "multiprocess/multiprocess_pool.hpp"
#include "process/process_pool.hpp"
#include "serial/serial_pool.hpp"
#include "thread/thread_pool.hpp"

namespace pools {
namespace {

constexpr std::size_t max_pool_size = 4096;

// Never destroyed: pools may be used from static destructors, and every
// PoolBase& handed out stays valid for the life of the process.
struct Registry {
  std::mutex mutex;
  std::map<std::string, PoolBase*, std::less<>> pools;
  std::vector<std::unique_ptr<PoolBase>> all;  // owns every pool ever made
  bool exit_hook_registered = false;
  bool exiting = false;
  // The global pool of each kind, readable without the lock: code that calls
  // global_thread_pool() for every task pays one atomic load.
  std::atomic<PoolBase*> globals[5] = {};
};

std::atomic<Registry*> the_registry{nullptr};

Registry& registry() {
  if (Registry* r = the_registry.load(std::memory_order_acquire)) return *r;
  auto* fresh = new Registry;
  Registry* expected = nullptr;
  if (!the_registry.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) {
    delete fresh;
    return *expected;
  }
  return *fresh;
}

void close_at_exit() noexcept {
  Registry& r = registry();
  {
    std::lock_guard lock(r.mutex);
    r.exiting = true;
    r.exit_hook_registered = false;  // a pool made after this point registers again
  }
  detail::diag("process exit: closing all pools");
  close_pools();
}

std::string global_name(PoolKind kind) { return fmt::format("(global {})", to_string(kind)); }

// POOLS_MAX_THREADS, or 0 when unset.
std::size_t max_threads_from_env() {
  const char* v = std::getenv("POOLS_MAX_THREADS");
  if (!v || !*v) return 0;
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (errno || *end || n == 0 || v[0] == '-')
    throw Error(fmt::format("POOLS_MAX_THREADS='{}' is not a positive whole number", v));
  return static_cast<std::size_t>(n);
}

std::size_t default_size() {
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? hw : 1;
}

// The size a new pool gets: checked, then capped by POOLS_MAX_THREADS.
std::size_t resolve_size(PoolKind kind, std::string_view name, std::optional<std::size_t> asked) {
  if (asked) {
    if (*asked == 0)
      throw Error(fmt::format("{} pool '{}': size 0 is not allowed (at least 1)", to_string(kind),
                              name));
    if (*asked > max_pool_size)
      throw Error(fmt::format("{} pool '{}': size {} is absurd (the limit is {})", to_string(kind),
                              name, *asked, max_pool_size));
  }
  std::size_t n = asked.value_or(default_size());
  if (std::size_t cap = max_threads_from_env(); cap && n > cap) n = cap;
  return n;
}

using Factory = std::function<std::unique_ptr<PoolBase>(std::string name, std::size_t size)>;
// For a caller that gave options: true when an existing pool has the same.
using SameOptions = std::function<bool(PoolBase& existing)>;

PoolBase& get_pool(PoolKind kind, std::string_view name, std::optional<std::size_t> size,
                   const Factory& make, const SameOptions& same_options = nullptr) {
  Registry& r = registry();
  if (name.empty() && !size && !same_options) {
    if (PoolBase* g = r.globals[static_cast<int>(kind)].load(std::memory_order_acquire)) return *g;
  }
  std::string key = name.empty() ? global_name(kind) : std::string(name);
  std::lock_guard lock(r.mutex);
  if (auto it = r.pools.find(key); it != r.pools.end()) {
    PoolBase& pool = *it->second;
    if (same_options && pool.kind() == kind && !same_options(pool))
      throw Error(fmt::format("{} pool '{}' exists already with other options (they cannot change)",
                              to_string(kind), key));
    if (pool.kind() != kind)
      throw Error(fmt::format("pool '{}' is a {} pool, not a {} pool", key, to_string(pool.kind()),
                              to_string(kind)));
    if (size && resolve_size(kind, key, size) != pool.num_workers())
      throw Error(fmt::format("{} pool '{}' exists with {} workers; asked for {}", to_string(kind),
                              key, pool.num_workers(), *size));
    return pool;
  }
  const std::size_t n = resolve_size(kind, key, size);
  std::unique_ptr<PoolBase> made = make(key, n);
  PoolBase* pool = made.get();
  r.all.push_back(std::move(made));
  r.pools.emplace(key, pool);
  if (name.empty()) r.globals[static_cast<int>(kind)].store(pool, std::memory_order_release);
  if (!r.exit_hook_registered) {
    // Pools made during exit (from static destructors) register again; the C
    // library runs handlers added while it runs the others.
    r.exit_hook_registered = std::atexit(&close_at_exit) == 0;
  }
  detail::diag("created {} pool '{}' with {} workers{}", to_string(kind), key, pool->num_workers(),
               r.exiting ? " (during process exit)" : "");
  return *pool;
}

}  // namespace

PoolBase& get_thread_pool(std::string_view name, std::optional<std::size_t> num_threads) {
  return get_pool(PoolKind::thread, name, num_threads, [](std::string n, std::size_t size) {
    return std::unique_ptr<PoolBase>(new detail::ThreadPool(std::move(n), size));
  });
}

PoolBase& get_serial_pool(std::string_view name) {
  return get_pool(PoolKind::serial, name, std::nullopt, [](std::string n, std::size_t) {
    return std::unique_ptr<PoolBase>(new detail::SerialPool(std::move(n)));
  });
}

PoolBase& get_process_pool(std::string_view name, std::optional<std::size_t> max_running) {
  return get_pool(PoolKind::process, name, max_running, [](std::string n, std::size_t size) {
    return std::unique_ptr<PoolBase>(new detail::ProcessPool(std::move(n), size));
  });
}

PoolBase& get_multiprocess_pool(std::string_view name, std::optional<std::size_t> num_workers) {
  MultiprocessOptions options;
  options.workers = num_workers;
  return get_pool(PoolKind::multiprocess, name, num_workers,
                  [&](std::string n, std::size_t size) -> std::unique_ptr<PoolBase> {
                    return std::make_unique<detail::MultiprocessPool>(std::move(n), size, options);
                  });
}

namespace {

// Hooks are the same when both are empty, the same function pointer, or
// closures of one type (one lambda expression; their state cannot be compared).
bool same_hook(const WorkerHook& a, const WorkerHook& b) noexcept {
  if (!a || !b) return !a && !b;
  if (a.target_type() != b.target_type()) return false;
  if (auto* pa = a.target<void (*)()>()) return *pa == *b.target<void (*)()>();
  return true;
}

// A thread-kind pool with hooks (get_thread_pool(name, options) and friends).
template <class Pool>
PoolBase& get_pool_with_hooks(PoolKind kind, std::string_view name,
                              std::optional<std::size_t> size, const WorkerHook& on_start,
                              const WorkerHook& on_stop) {
  return get_pool(
      kind, name, size,
      [&](std::string n, std::size_t workers) -> std::unique_ptr<PoolBase> {
        if constexpr (std::is_same_v<Pool, detail::SerialPool>) {
          return std::make_unique<Pool>(std::move(n), on_start, on_stop);
        } else {
          return std::make_unique<Pool>(std::move(n), workers, on_start, on_stop);
        }
      },
      [&](PoolBase& existing) {
        auto& pool = static_cast<Pool&>(existing);
        return same_hook(pool.on_start(), on_start) && same_hook(pool.on_stop(), on_stop);
      });
}

// on_start/on_stop are the initializer/finalizer under their common names:
// one spelling is kept (initializer), so that either compares equal.
MultiprocessOptions normalized(std::string_view name, const MultiprocessOptions& o) {
  MultiprocessOptions n = o;
  if ((o.on_start && o.initializer && o.on_start != o.initializer) ||
      (o.on_stop && o.finalizer && o.on_stop != o.finalizer))
    throw Error(fmt::format("multiprocess pool '{}': on_start/on_stop are other names for "
                            "initializer/finalizer; give one of each pair, not two functions",
                            name));
  if (o.on_start) n.initializer = o.on_start;
  if (o.on_stop) n.finalizer = o.on_stop;
  n.on_start = n.on_stop = nullptr;
  return n;
}

}  // namespace

PoolBase& get_thread_pool(std::string_view name, const ThreadPoolOptions& options) {
  return get_pool_with_hooks<detail::ThreadPool>(PoolKind::thread, name, options.threads,
                                                 options.on_start, options.on_stop);
}

PoolBase& get_process_pool(std::string_view name, const ProcessPoolOptions& options) {
  return get_pool_with_hooks<detail::ProcessPool>(PoolKind::process, name, options.max_running,
                                                  options.on_start, options.on_stop);
}

PoolBase& get_serial_pool(std::string_view name, const SerialPoolOptions& options) {
  return get_pool_with_hooks<detail::SerialPool>(PoolKind::serial, name, std::nullopt,
                                                 options.on_start, options.on_stop);
}

PoolBase& get_multiprocess_pool(std::string_view name, const MultiprocessOptions& given) {
  const MultiprocessOptions options = normalized(name, given);
  return get_pool(PoolKind::multiprocess, name, options.workers,
                  [&](std::string n, std::size_t size) -> std::unique_ptr<PoolBase> {
                    return std::make_unique<detail::MultiprocessPool>(std::move(n), size, options);
                  },
                  [&](PoolBase& existing) {
                    return static_cast<detail::MultiprocessPool&>(existing).options() == options;
                  });
}

PoolBase& global_thread_pool() { return get_thread_pool(); }
PoolBase& global_multiprocess_pool() { return get_multiprocess_pool(); }
PoolBase& global_process_pool() { return get_process_pool(); }

PoolBase& detail::registered_pool(
    PoolKind kind, std::string_view name, std::optional<std::size_t> size,
    const std::function<std::unique_ptr<PoolBase>(std::string, std::size_t)>& make,
    const std::function<bool(PoolBase&)>& same_options) {
  return get_pool(kind, name, size, make, same_options);
}

void detail::unregister_pool(const PoolBase* pool) noexcept {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (auto it = r.pools.begin(); it != r.pools.end(); ++it) {
    if (it->second == pool) {
      r.pools.erase(it);
      break;
    }
  }
  for (auto& g : r.globals) {
    PoolBase* expected = const_cast<PoolBase*>(pool);
    g.compare_exchange_strong(expected, nullptr, std::memory_order_acq_rel);
  }
}

void detail::forget_pools_after_fork() noexcept {
  // The pools copied from the program have no threads here; leak them.
  the_registry.store(nullptr, std::memory_order_relaxed);
}

PoolBase& find_pool(std::string_view name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (auto it = r.pools.find(name); it != r.pools.end()) return *it->second;
  std::string known;
  for (auto& [n, pool] : r.pools) known += fmt::format("{}'{}'", known.empty() ? "" : ", ", n);
  throw Error(fmt::format("no pool is called '{}' (existing pools: {})", name,
                          known.empty() ? "none" : known));
}

namespace {
std::vector<PoolBase*> registered_pools() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<PoolBase*> out;
  for (auto& [name, pool] : r.pools) out.push_back(pool);
  return out;
}

// Unregisters every pool (their names are free again) and returns them.
std::vector<PoolBase*> unregister_all() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<PoolBase*> pools;
  for (auto& [name, pool] : r.pools) pools.push_back(pool);
  r.pools.clear();
  for (auto& g : r.globals) g.store(nullptr, std::memory_order_release);
  return pools;
}

// Shuts p down; a failure is reported, never thrown.
void shut_down_reporting(PoolBase* p, ShutdownMode mode) noexcept {
  try {
    p->shutdown(mode);
  } catch (const std::exception& e) {
    detail::write_line(fmt::format("shutting down {} pool '{}'{} failed: {}", to_string(p->kind()),
                                   p->name(), mode == ShutdownMode::now ? " at once" : "",
                                   e.what()));
  } catch (...) {
  }
}
}  // namespace

void wait_on_all_pools() noexcept {
  // Tasks of one pool may add work to another: repeat until a pass finds all idle.
  for (;;) {
    std::vector<PoolBase*> pools;
    try {
      pools = registered_pools();
    } catch (...) {
      return;
    }
    bool idle = true;
    for (PoolBase* p : pools) {
      if (p->num_active_tasks() > p->tasks_on_calling_thread()) idle = false;
      p->wait_completion();
    }
    if (idle) return;
  }
}

void close_pools() noexcept {
  wait_on_all_pools();
  for (PoolBase* p : unregister_all()) shut_down_reporting(p, ShutdownMode::wait);
}

void release_stage_pools() noexcept {
  detail::diag("release_stage_pools: closing the thread-kind pools, keeping the others warm");
  wait_on_all_pools();
  std::vector<PoolBase*> pools;
  try {
    pools = registered_pools();
  } catch (...) {
    return;
  }
  for (PoolBase* p : pools)
    if (is_thread_kind(p->kind())) shut_down_reporting(p, ShutdownMode::wait);
}

void close_pools_now() noexcept {
  const std::vector<PoolBase*> pools = unregister_all();
  detail::diag("close_pools_now: {} pools", pools.size());
  auto close = [](PoolBase* p) noexcept { shut_down_reporting(p, ShutdownMode::now); };
  // Concurrently: a pool waiting for a task on a thread must not keep another
  // pool's commands and worker processes alive meanwhile.
  std::vector<std::thread> closers;
  for (PoolBase* p : pools) {
    try {
      closers.emplace_back(close, p);
    } catch (...) {
      close(p);  // no thread to spare: close it here
    }
  }
  for (std::thread& t : closers) t.join();
}

void init(int& argc, char**& argv) {
  (void)argc;  // (read by MPI_Init when built with MPI)
  (void)argv;
  // Validate the environment early, where an error is easy to see.
  max_threads_from_env();
#if POOLS_HAVE_MPI
  // A worker rank of an MPI job serves the cluster pool's calls and never
  // returns; it needs no fork server of its own up front.
  if (detail::launched_as_worker_rank()) detail::start_cluster(argc, argv);
#endif
  // The fork server forks the multiprocess pools' workers: started here, it
  // is a copy of the program before main did anything (POOLS_FORK_SERVER=lazy
  // leaves it to the first multiprocess pool).
  const char* fs = std::getenv("POOLS_FORK_SERVER");
  if (!detail::in_worker_process() && !(fs && std::string_view(fs) == "lazy"))
    detail::ForkServer::start_early();
#if POOLS_HAVE_MPI
  // Rank 0 (or a program mpirun started alone): MPI starts after the fork
  // server, so that the server is a copy of a process without MPI.
  detail::start_cluster(argc, argv);
#endif
}

}  // namespace pools
