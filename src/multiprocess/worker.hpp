// A worker process of the multiprocess pool: what the pool tells it at birth,
// and its loop (read calls, run them, write replies).
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>

namespace pools::detail {

/// Sent to the fork server with each spawn request (cereal-encoded).
struct WorkerConfig {
  std::string pool_name;
  std::map<std::string, std::string> environment;
  std::string initializer;  // an encoded call (see remote_call.hpp), or empty
  std::string finalizer;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(pool_name, environment, initializer, finalizer);
  }
};

std::string encode_config(const WorkerConfig& c);

/// The worker's life, in the process the fork server just forked: set up,
/// say hello, run the initializer, serve calls on `socket` until told to
/// stop (or the program is gone), run the finalizer, exit. Never returns.
[[noreturn]] void run_worker(int socket, std::string_view config, pid_t server);

/// Exit statuses with a meaning of their own.
inline constexpr int exit_initializer_failed = 3;
inline constexpr int exit_protocol_error = 4;

}  // namespace pools::detail
