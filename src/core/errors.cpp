// The errors that carry more than a message.
#include <pools/errors.hpp>

#include <fmt/core.h>

#include <pools/dependencies.hpp>

#include "core/diag.hpp"

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

namespace detail {

std::string skipped_message(const std::string& task, const TaskState* dependency) {
  const char* why = "was cancelled";  // a cancelled task stores no exception
  if (dependency->load_status() == TaskStatus::failed) {
    const std::exception_ptr& e = dependency->ops->error(dependency);
    try {
      std::rethrow_exception(e);
    } catch (const Skipped&) {
      return fmt::format("task '{}' was skipped: its dependency '{}' (id {}) was skipped", task,
                         task_name(dependency), dependency->id);
    } catch (...) {
    }
    return fmt::format("task '{}' was skipped: its dependency '{}' (id {}) failed: {}", task,
                       task_name(dependency), dependency->id, describe_exception(e));
  }
  return fmt::format("task '{}' was skipped: its dependency '{}' (id {}) {}", task,
                     task_name(dependency), dependency->id, why);
}

std::string fmt_cancelled(const TaskState* s) {
  return fmt::format("task '{}' (id {}) was cancelled", task_name(s), s->id);
}

void throw_no_dependencies(const std::string& task) {
  throw Error(fmt::format("add_task_after '{}': no dependencies given", task));
}

}  // namespace detail
}  // namespace pools
