// The cluster pool on rank 0. Calls encoded by add_task (the multiprocess
// pool's wire format) travel to the worker ranks in MPI messages; one
// communication thread per program (the ClusterEngine, shared by every
// cluster pool) dispatches them, several ahead per rank, and completes the
// tasks from the replies. Worker ranks serve in rank_server.cpp.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

#include <pools/cluster.hpp>
#include <pools/pool_base.hpp>

#include "wire/remote_pool.hpp"

namespace pools::detail {

class ClusterEngine;

class ClusterPool final : public RemotePool {
public:
  ClusterPool(std::string name, std::size_t workers, const ClusterOptions& options);
  ~ClusterPool() override;

  std::size_t num_workers() const noexcept override { return size_; }
  const ClusterOptions& options() const noexcept { return options_; }
  void shutdown() override;

protected:
  void shutdown_now() override;
  void post(std::vector<RemoteUnit>&& units) override;
  void attach_poll(RemoteCall* call) noexcept override;

private:

  std::size_t size_;
  ClusterOptions options_;
  ClusterEngine& engine_;
  std::exception_ptr start_error_;  // on_start failed: every task fails with it
  std::once_flag shutdown_once_;
};

/// pools::init under mpirun: starts MPI. On a worker rank it serves tasks and
/// exits the process when rank 0 is done; on rank 0 it returns.
void start_cluster(int& argc, char**& argv);

/// True when the launcher's environment names this process a rank other than
/// 0 (known before MPI starts: such a process starts no fork server).
bool launched_as_worker_rank() noexcept;

/// Rank 0: true when MPI runs and there are worker ranks.
bool cluster_available() noexcept;

/// The worker ranks' count, and the job's processes (rank 0 first).
std::size_t cluster_worker_ranks();
std::vector<ClusterNode> cluster_job_nodes();

/// Throws pools::Error when the worker ranks cannot serve this program (a
/// rank runs another executable, or did not say hello).
void check_cluster_usable();

/// A worker rank's serving loop (rank_server.cpp). Never returns.
[[noreturn]] void serve_rank();

}  // namespace pools::detail
