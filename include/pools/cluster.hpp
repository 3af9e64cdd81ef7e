// The cluster pool: tasks run on the worker ranks of an MPI job (OpenMPI).
//
//   int main(int argc, char** argv) {
//     pools::init(argc, argv);   // worker ranks serve tasks here and never return
//     auto& pool = pools::global_cluster_pool();
//     auto t = pool.add_task("square", square, 7);
//     ...
//   }
//
// Run it with `mpirun -np 5 ./prog` (rank 0 runs main, ranks 1..4 serve). Started
// without mpirun, or built without MPI, the cluster pool is a multiprocess pool
// on this machine (said once on stderr). See docs/cluster-pool.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <pools/pool_base.hpp>

namespace pools {

/// How a cluster pool runs its tasks. The same name with the same options
/// returns the same pool; other options throw pools::Error.
struct ClusterOptions {
  /// How many worker ranks the pool uses (ranks 1..workers); default: all.
  std::optional<std::size_t> workers;
  /// A task running longer fails with pools::WorkerLost (timed_out() true).
  /// A rank cannot be stopped without ending the job: it goes on running the
  /// task and gets no new work until that task returns (its result is
  /// dropped); the calls queued behind it go to other ranks. 0: no limit.
  std::chrono::milliseconds task_timeout{0};
  /// Calls in flight per worker rank; 0: adaptive (about 2 ms of work ahead).
  std::size_t max_in_flight = 0;
  /// A worker rank that sends nothing (not even its heartbeat, every 250 ms)
  /// for this long is taken as dead and its calls fail with WorkerLost. Only
  /// matters under `mpirun --enable-recovery`: otherwise Open MPI ends the
  /// whole job when a rank dies. Also set by POOLS_CLUSTER_SILENCE_MS.
  std::chrono::milliseconds silence_limit{10000};
  /// Run on each of the pool's worker ranks: on_start when the pool is made,
  /// before any of its tasks (with POOLS_RANK_THREADS above 1, before the
  /// first only), on_stop at its shutdown after its tasks. Plain functions:
  /// they run on the ranks. An on_start that throws fails every task of the
  /// pool with a pools::Error naming the rank and the error; an on_stop that
  /// throws is reported on stderr.
  void (*on_start)() = nullptr;
  void (*on_stop)() = nullptr;

  bool operator==(const ClusterOptions&) const = default;
};

/// Returns the cluster pool called `name` (empty: the global one), creating
/// it on first use over `num_workers` worker ranks (default: all of them).
/// Needs pools::init(argc, argv) at the start of main and a start by mpirun
/// (or srun) with at least 2 ranks; otherwise it returns the multiprocess pool
/// of that name and says so once on stderr. Throws pools::Error when asked
/// for more workers than there are worker ranks, when the ranks run different
/// executables, or when called on a worker rank.
PoolBase& get_cluster_pool(std::string_view name = {},
                           std::optional<std::size_t> num_workers = {});
PoolBase& get_cluster_pool(std::string_view name, const ClusterOptions& options);

/// The global cluster pool; the same as get_cluster_pool().
PoolBase& global_cluster_pool();

/// One process of the MPI job.
struct ClusterNode {
  int rank = 0;
  std::string host;
  int pid = 0;
  unsigned cores = 0;  // hardware threads of its host
  unsigned threads = 1;  // threads it runs tasks on (POOLS_RANK_THREADS)
};

/// Every rank of the job, rank 0 (this process) first. Outside an MPI job:
/// this process alone.
std::vector<ClusterNode> cluster_nodes();

/// True when this program runs under MPI with worker ranks to serve it.
bool in_cluster() noexcept;

}  // namespace pools
