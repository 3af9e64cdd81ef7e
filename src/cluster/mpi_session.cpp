#include "cluster/mpi_session.hpp"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include <fmt/core.h>

#include <pools/errors.hpp>

namespace pools::detail::cluster {
namespace {

struct Session {
  bool running = false;
  int rank = 0;
  int size = 1;
  MPI_Comm comm = MPI_COMM_NULL;
  std::mutex lock;
};

Session& session() {
  static Session* s = new Session;  // never destroyed: used from exit handlers
  return *s;
}

}  // namespace

bool launched_by_mpi() noexcept {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(text, static_cast<std::size_t>(len));
}

void start_mpi(int& argc, char**& argv) {
  Session& s = session();
  int provided = 0, already = 0;
  MPI_Initialized(&already);
  if (already) {
    // The program started MPI itself (before pools::init): use it as it is.
    MPI_Query_thread(&provided);
  } else {
    // MULTIPLE where MPI has it (Open MPI does), so that the program's own
    // MPI calls may run beside the pools' (which take mpi_lock() anyway).
    const int rc = MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    if (rc != MPI_SUCCESS) throw Error("pools::init: MPI_Init_thread failed: " + mpi_error(rc));
  }
  if (provided < MPI_THREAD_SERIALIZED)
    throw Error(fmt::format("pools::init: MPI runs at thread level {}; the cluster pool needs "
                            "MPI_THREAD_SERIALIZED or more (start MPI with MPI_Init_thread(..., "
                            "MPI_THREAD_MULTIPLE, ...), or let pools::init start it)",
                            provided));
  // A failed call returns an error (the pool reports it) instead of ending the job.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_dup(MPI_COMM_WORLD, &s.comm);
  MPI_Comm_set_errhandler(s.comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(s.comm, &s.rank);
  MPI_Comm_size(s.comm, &s.size);
  s.running = true;
}

std::optional<Message> try_receive(int source) {
  int flag = 0;
  MPI_Status st;
  MPI_Iprobe(source, MPI_ANY_TAG, comm(), &flag, &st);
  if (!flag) return std::nullopt;
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  Message m{st.MPI_SOURCE, st.MPI_TAG, std::string(static_cast<std::size_t>(count), '\0')};
  MPI_Recv(m.bytes.data(), count, MPI_BYTE, m.source, m.tag, comm(), MPI_STATUS_IGNORE);
  return m;
}

bool mpi_running() noexcept { return session().running; }

bool recovery_enabled() noexcept {
  const char* v = std::getenv("OMPI_MCA_orte_enable_recovery");
  return v && (std::string_view(v) == "1" || std::string_view(v) == "true");
}

std::chrono::milliseconds silence_from_env(std::chrono::milliseconds fallback) {
  const char* v = std::getenv("POOLS_CLUSTER_SILENCE_MS");
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long ms = std::strtol(v, &end, 10);
  if (*end || ms <= 0)
    throw Error(fmt::format("POOLS_CLUSTER_SILENCE_MS='{}' is not a positive number of ms", v));
  return std::chrono::milliseconds(ms);
}

void send_heartbeats_from_rank0(bool (*skip)(int rank)) noexcept {
  static std::chrono::steady_clock::time_point last{};  // under mpi_lock
  const auto now = std::chrono::steady_clock::now();
  if (now - last < heartbeat_interval) return;
  last = now;
  static const char nothing = 0;
  for (int r = 1; r < world_size(); ++r) {
    if (skip && skip(r)) continue;
    // Fire and forget: an empty message, nothing to keep alive until it is sent.
    MPI_Request request;
    if (MPI_Isend(&nothing, 0, MPI_BYTE, r, tag_heartbeat, comm(), &request) == MPI_SUCCESS)
      MPI_Request_free(&request);
  }
}

void finish_mpi(bool peers_lost) noexcept {
  Session& s = session();
  if (!s.running) return;
  s.running = false;
  if (peers_lost) return;  // MPI_Finalize would wait for the lost rank
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;  // the program did (too early: see docs/cluster-pool.md)
  MPI_Comm_free(&s.comm);
  MPI_Finalize();
}

int rank() noexcept { return session().rank; }
int world_size() noexcept { return session().size; }
MPI_Comm comm() noexcept { return session().comm; }
std::mutex& mpi_lock() noexcept { return session().lock; }

void Backoff::pause() noexcept {
  const auto now = std::chrono::steady_clock::now();
  if (idle_since_ == std::chrono::steady_clock::time_point{}) idle_since_ = now;
  if (now - idle_since_ < spin_) {
    sched_yield();
    return;
  }
  sleep_ = std::min(cap_, sleep_.count() ? sleep_ * 2 : std::chrono::microseconds(50));
  timespec ts{0, static_cast<long>(sleep_.count()) * 1000};
  nanosleep(&ts, nullptr);
}

}  // namespace pools::detail::cluster
