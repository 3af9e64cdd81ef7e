// get_cluster_pool and friends, with or without MPI: without it (not built
// with OpenMPI, not started by mpirun, or a job of one rank) the cluster pool
// is the multiprocess pool of that name, and the program is told so once.
#include <pools/cluster.hpp>

#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include <fmt/core.h>

#include <pools/multiprocess.hpp>
#include <pools/registry.hpp>

#include "core/diag.hpp"
#include "core/registry_internal.hpp"
#include "pools_config.h"
#if POOLS_HAVE_MPI
#include "cluster/cluster_pool.hpp"
#include "cluster/mpi_session.hpp"
#endif

namespace pools {
namespace {

// Why there is no cluster here, or empty when there is one.
std::string why_no_cluster() {
#if POOLS_HAVE_MPI
  if (detail::cluster::mpi_running()) {
    if (detail::cluster::rank() != 0)
      throw Error(fmt::format("get_cluster_pool: called on worker rank {}; the cluster pool is "
                              "used from rank 0 (a task on a worker rank may use a thread or "
                              "multiprocess pool of its rank)",
                              detail::cluster::rank()));
    if (!detail::cluster_available()) return "the MPI job has a single rank";
    return {};
  }
  if (detail::cluster::launched_by_mpi())
    return "started by mpirun, but pools::init(argc, argv) was not called first in main";
  return "not started by mpirun or srun";
#else
  return "this build of pools has no MPI (-Dmpi=disabled, or OpenMPI was not found)";
#endif
}

void say_fallback_once(const std::string& why) {
  static std::atomic<bool> said{false};
  if (!said.exchange(true))
    detail::write_line(fmt::format("the cluster pool runs as a multiprocess pool on this "
                                   "machine: {}",
                                   why));
}

MultiprocessOptions as_multiprocess(const ClusterOptions& o) {
  MultiprocessOptions m;
  m.workers = o.workers;
  m.task_timeout = o.task_timeout;
  m.max_in_flight = o.max_in_flight;
  return m;
}

#if POOLS_HAVE_MPI
PoolBase& cluster_pool(std::string_view name, std::optional<std::size_t> workers,
                       const ClusterOptions* options) {
  detail::check_cluster_usable();
  const std::size_t ranks = detail::cluster_worker_ranks();
  if (workers && *workers > ranks)
    throw Error(fmt::format("cluster pool '{}': {} workers asked for, but the job has {} worker "
                            "ranks (mpirun -np {})",
                            name, *workers, ranks, ranks + 1));
  ClusterOptions made = options ? *options : ClusterOptions{};
  made.workers = workers;
  return detail::registered_pool(
      PoolKind::cluster, name, workers,
      [&](std::string n, std::size_t) -> std::unique_ptr<PoolBase> {
        // The size is the worker ranks, not the registry's default (threads).
        return std::make_unique<detail::ClusterPool>(std::move(n), workers.value_or(ranks), made);
      },
      options ? std::function<bool(PoolBase&)>([&](PoolBase& existing) {
        return static_cast<detail::ClusterPool&>(existing).options() == made;
      })
              : nullptr);
}
#endif

}  // namespace

PoolBase& get_cluster_pool(std::string_view name, std::optional<std::size_t> num_workers) {
  if (const std::string why = why_no_cluster(); !why.empty()) {
    say_fallback_once(why);
    return get_multiprocess_pool(name, num_workers);
  }
#if POOLS_HAVE_MPI
  return cluster_pool(name, num_workers, nullptr);
#else
  return get_multiprocess_pool(name, num_workers);
#endif
}

PoolBase& get_cluster_pool(std::string_view name, const ClusterOptions& options) {
  if (options.silence_limit.count() <= 0)
    throw Error(fmt::format("cluster pool '{}': silence_limit must be positive", name));
  if (const std::string why = why_no_cluster(); !why.empty()) {
    say_fallback_once(why);
    return get_multiprocess_pool(name, as_multiprocess(options));
  }
#if POOLS_HAVE_MPI
  return cluster_pool(name, options.workers, &options);
#else
  return get_multiprocess_pool(name, as_multiprocess(options));
#endif
}

PoolBase& global_cluster_pool() { return get_cluster_pool(); }

bool in_cluster() noexcept {
#if POOLS_HAVE_MPI
  return detail::cluster_available();
#else
  return false;
#endif
}

std::vector<ClusterNode> cluster_nodes() {
  ClusterNode self;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  self.host = host;
  self.pid = static_cast<int>(::getpid());
  self.cores = static_cast<unsigned>(std::max(1, get_nprocs()));
  std::vector<ClusterNode> out{self};
#if POOLS_HAVE_MPI
  if (detail::cluster_available()) {
    for (ClusterNode& n : detail::cluster_job_nodes()) out.push_back(std::move(n));
  }
#endif
  return out;
}

}  // namespace pools
