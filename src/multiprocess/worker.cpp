#include "multiprocess/worker.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <pools/detail/remote_call.hpp>
#include <pools/registry.hpp>

#include "core/registry_internal.hpp"
#include "multiprocess/fork_server.hpp"
#include "wire/reply.hpp"
#include "wire/serve.hpp"
#include "process/process_engine.hpp"
#include "wire/frame.hpp"
#include "wire/remote_call.hpp"

namespace pools::detail {

std::string encode_config(const WorkerConfig& c) {
  std::string out;
  WorkerConfig copy = c;
  encode(out, copy);
  return out;
}

namespace {

void write_all(int fd, const std::string& bytes, std::size_t done = 0) {
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::_Exit(0);  // the program is gone: nobody to reply to
    }
    done += static_cast<std::size_t>(n);
  }
}

// Runs an initializer or finalizer (an encoded call of a void() function).
void run_hook(const std::string& encoded, int socket) {
  if (encoded.empty()) return;
  std::string out;
  std::size_t at = 0;
  if (run_hook_call(encoded, out, at)) return;
  // Tell the pool why, then leave: a worker whose initializer failed is no use.
  write_all(socket, out, at);
  std::fflush(nullptr);
  std::_Exit(exit_initializer_failed);
}

// A call frame: one reply frame of the item's kind. A batch: a result_batch
// frame holding one item per call. Returns where the reply frame starts in out.
std::size_t serve(const wire::Frame& f, std::string& out) {
  try {
    return serve_frame(f, out);
  } catch (const wire::WireError&) {
    std::_Exit(exit_protocol_error);
  }
}

}  // namespace

[[noreturn]] void run_worker(int socket, std::string_view config_bytes, pid_t server) {
  // Die with the fork server (which dies with the program).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != server) std::_Exit(0);
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGCHLD, SIG_DFL);
  // What this process copied from the program but cannot use.
  forget_pools_after_fork();
  ProcessEngine::forget_shared_after_fork();
  ForkServer::forget_after_fork();

  WorkerConfig config;
  try {
    decode(config_bytes, "the worker configuration", config);
  } catch (...) {
    std::_Exit(exit_protocol_error);
  }
  for (const auto& [k, v] : config.environment) ::setenv(k.c_str(), v.c_str(), 1);

  run_hook(config.initializer, socket);
  // Hello says the worker is ready: a worker that dies before it was not
  // running any call (the pool requeues them).
  {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    std::string hello(wire::header_size, '\0');
    int pid = ::getpid();
    std::string h = host, exe = wire::executable_identity();
    encode(hello, pid, h, exe);
    seal_frame(hello, wire::FrameKind::hello, 0);
    write_all(socket, hello);
  }

  wire::FrameDecoder in;
  std::string out;
  for (;;) {
    std::optional<wire::Frame> f;
    try {
      f = in.next();
    } catch (const std::exception&) {
      std::_Exit(exit_protocol_error);
    }
    if (!f) {
      char* room = in.prepare(64 * 1024);
      const ssize_t n = ::read(socket, room, in.prepared_size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the program closed the connection (or is gone)
      in.commit(static_cast<std::size_t>(n));
      continue;
    }
    switch (f->header.kind) {
      case wire::FrameKind::call:
      case wire::FrameKind::call_batch:
        // The reply goes out before the next call starts: when this worker
        // dies, the pool knows which call it was running.
        write_all(socket, out, serve(*f, out));
        break;
      case wire::FrameKind::stop: {
        run_hook(config.finalizer, socket);
        std::string bye(wire::header_size, '\0');
        seal_frame(bye, wire::FrameKind::bye, 0);
        write_all(socket, bye);
        close_pools();  // pools a task made in this worker
        std::fflush(nullptr);
        std::_Exit(0);
      }
      default:
        std::_Exit(exit_protocol_error);
    }
  }
  close_pools();
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace pools::detail
