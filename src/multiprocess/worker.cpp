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
#include "multiprocess/reply.hpp"
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

// Runs one encoded call, appending its reply item (see reply.hpp) to out.
void run_call(const wire::ResolvedCall& call, std::string& out) {
  const std::size_t start = begin_reply_item(out);
  try {
    call.invoke(call.args, call.fn, out);
    end_reply_item(out, start, wire::FrameKind::result);
  } catch (const std::exception& e) {
    out.resize(start + reply_item_header);
    std::string type = wire::current_exception_type(), what = e.what();
    encode(out, type, what);
    end_reply_item(out, start, wire::FrameKind::error);
  } catch (...) {
    out.resize(start + reply_item_header);
    std::string type = wire::current_exception_type(), what;
    encode(out, type, what);
    end_reply_item(out, start, wire::FrameKind::error);
  }
}

void reject_item(std::string& out, const std::string& why) {
  const std::size_t start = begin_reply_item(out);
  std::string copy = why;
  encode(out, copy);
  end_reply_item(out, start, wire::FrameKind::reject);
}

void run_encoded(std::string_view payload, std::string& out) {
  wire::ResolvedCall call;
  try {
    call = wire::resolve_call(payload);
  } catch (const std::exception& e) {
    reject_item(out, e.what());
    return;
  }
  run_call(call, out);
}

// A call frame: one reply frame of the item's kind. A batch: a result_batch
// frame holding one item per call. Returns where the reply frame starts in out.
std::size_t serve_frame(const wire::Frame& f, std::string& out) {
  out.assign(wire::header_size, '\0');
  if (f.header.kind == wire::FrameKind::call) {
    run_encoded(f.payload, out);
    return seal_single_reply(out, f.header.task_id);
  }
  try {
    for_each_batch_call(f.payload, [&](std::string_view call) { run_encoded(call, out); });
  } catch (const wire::WireError&) {
    std::_Exit(exit_protocol_error);
  }
  seal_frame(out, wire::FrameKind::result_batch, f.header.task_id);
  return 0;
}

// Runs an initializer or finalizer (an encoded call of a void() function).
void run_hook(const std::string& encoded, int socket) {
  if (encoded.empty()) return;
  std::string out(wire::header_size, '\0');
  run_encoded(encoded, out);
  if (reply_item_kind(out, wire::header_size) == wire::FrameKind::result) return;
  // Tell the pool why, then leave: a worker whose initializer failed is no use.
  write_all(socket, out, seal_single_reply(out, 0));
  std::fflush(nullptr);
  std::_Exit(exit_initializer_failed);
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
        write_all(socket, out, serve_frame(*f, out));
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
