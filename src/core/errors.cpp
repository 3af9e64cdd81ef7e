// The errors that carry more than a message.
#include <pools/errors.hpp>

#include <fmt/core.h>

namespace pools {

namespace {
std::string remote_message(const std::string& type, const std::string& what, int pid,
                           const std::string& host, int rank) {
  const std::string where = rank >= 0 ? fmt::format("rank {} (process {} on {})", rank, pid, host)
                                      : fmt::format("worker process {} on {}", pid, host);
  return fmt::format("{}: {} (raised in {})", type, what, where);
}
}  // namespace

RemoteError::RemoteError(std::string remote_type, std::string remote_what, int pid,
                         std::string host, int rank)
    : Error(remote_message(remote_type, remote_what, pid, host, rank)),
      remote_type_(std::move(remote_type)),
      remote_what_(std::move(remote_what)),
      host_(std::move(host)),
      pid_(pid),
      rank_(rank) {}

WorkerLost::WorkerLost(const std::string& what, int pid, int signal, int exit_status,
                       bool timed_out)
    : Error(what), pid_(pid), signal_(signal), exit_status_(exit_status), timed_out_(timed_out) {}

}  // namespace pools
