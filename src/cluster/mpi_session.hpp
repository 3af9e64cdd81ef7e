// This process's place in an MPI job: whether it was started by mpirun (or
// srun), MPI's setup and teardown, and the lock that serializes MPI calls.
//
// The pools' own MPI calls are serialized: any thread may make them, one at a
// time, holding mpi_lock() (MPI_THREAD_SERIALIZED is enough; pools::init asks
// for MPI_THREAD_MULTIPLE so that the program may use MPI beside them). Rank 0's communication thread holds it while
// it works and lets go while it sleeps, so that a submitting or waiting thread
// may send a call or read a reply itself (one thread hand-off less per round
// trip), as the multiprocess pool does with its sockets.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

namespace pools::detail::cluster {

/// The MPI tags of the pools' messages, on a communicator of their own (a
/// duplicate of MPI_COMM_WORLD, so a program's own MPI traffic cannot mix in).
enum Tag : int {
  tag_frames = 1,     // one or more wire frames (src/wire/frame.hpp), back to back
  tag_heartbeat = 2,  // empty: a worker rank is alive
  tag_withdraw = 3,   // rank 0 -> worker: u64 task ids to drop if not started
};

/// A worker rank that sent nothing for this long sends a heartbeat; under
/// --enable-recovery rank 0 sends every worker rank one this often.
inline constexpr auto heartbeat_interval = std::chrono::milliseconds(250);

/// True when mpirun runs the job with --enable-recovery: a dead rank does not
/// end the job, so the ranks must notice it themselves.
bool recovery_enabled() noexcept;

/// How long a silent peer is taken as alive: POOLS_CLUSTER_SILENCE_MS, else
/// `fallback`. Throws pools::Error when the variable is not a positive number.
std::chrono::milliseconds silence_from_env(std::chrono::milliseconds fallback);

/// Rank 0 under --enable-recovery: holding mpi_lock(), sends an empty
/// heartbeat to each worker rank that `skip` does not name, when the last ones
/// went out heartbeat_interval ago or more. Worker ranks that hear nothing
/// from rank 0 for their silence limit leave (rank 0 died; see rank_server).
void send_heartbeats_from_rank0(bool (*skip)(int rank)) noexcept;

/// True when the environment says an MPI launcher started this process
/// (Open MPI's mpirun, or a PMI/PMIx launcher such as Slurm's srun).
bool launched_by_mpi() noexcept;

/// MPI_Init_thread (serialized), errors returned rather than fatal, and the
/// pools' communicator. Throws pools::Error when MPI cannot start.
void start_mpi(int& argc, char**& argv);
/// True between start_mpi and finish_mpi.
bool mpi_running() noexcept;
/// MPI_Finalize (skipped when a rank was lost: Open MPI would wait for it).
void finish_mpi(bool peers_lost) noexcept;

int rank() noexcept;
int world_size() noexcept;
MPI_Comm comm() noexcept;
std::mutex& mpi_lock() noexcept;

/// A message of the pools' communicator.
struct Message {
  int source = 0;
  int tag = 0;
  std::string bytes;
};
/// Holding mpi_lock(): receives a message from `source` that has arrived, if
/// any (MPI_Iprobe, then MPI_Recv of its size); never blocks for one.
std::optional<Message> try_receive(int source = MPI_ANY_SOURCE);

/// MPI's error text for code.
std::string mpi_error(int code);

/// Waits between probes while nothing happens, so that an idle rank does not
/// burn a core (a blocking MPI_Recv would: Open MPI spins). For `spin` after
/// the last activity it only yields (a peer that is busy with us answers
/// within microseconds, and the next call of a round trip comes soon); then it
/// sleeps 50 us, doubling up to `cap`. reset() after activity.
class Backoff {
public:
  explicit Backoff(std::chrono::microseconds spin = std::chrono::microseconds(2000),
                   std::chrono::microseconds cap = std::chrono::microseconds(1000))
      : spin_(spin), cap_(cap) {}
  void reset() noexcept { idle_since_ = {}; sleep_ = {}; }
  void pause() noexcept;

private:
  std::chrono::microseconds spin_, cap_;
  std::chrono::steady_clock::time_point idle_since_{};
  std::chrono::microseconds sleep_{};
};

}  // namespace pools::detail::cluster
