#include "multiprocess/remote_process.hpp"

#include <exception>
#include <memory>

#include <pools/process.hpp>

namespace pools {

// cereal functions for the command types (found by argument-dependent lookup).
template <class Archive>
void serialize(Archive& ar, ProcessOptions& o) {
  ar(o.check, o.cwd, o.env, o.replace_env, o.stdin_text, o.timeout, o.kill_grace, o.merge_stderr,
     o.max_output, o.retries, o.capture_output, o.close_fds);
}

template <class Archive>
void serialize(Archive& ar, ProcessResult& r) {
  ar(r.exit_code, r.signal, r.stdout_text, r.stderr_text, r.elapsed, r.command, r.attempts,
     r.timed_out, r.stdout_truncated, r.stderr_truncated, r.started, r.pid);
}

namespace detail {

template <class Archive>
void serialize(Archive& ar, ProcessSpec& s) {
  ar(s.argv, s.options);
}

namespace {

// What a command did in the worker, as the node there recorded it.
struct CommandOutcome {
  ProcessResult result;
  bool ran = false;
  bool succeeded = false;
  bool cancelled = false;
  std::string error;  // what() of the failure

  template <class Archive>
  void serialize(Archive& ar) {
    ar(result, ran, succeeded, cancelled, error);
  }
};

// Runs in the worker process, as any plain function called through the pool.
CommandOutcome run_command_in_worker(ProcessSpec spec) {
  ProcessNode* node = make_process_node(std::string(), std::move(spec));
  release(node);  // make_process_node gave two references; we hold one
  const bool ok = try_start(node) && node->ops->run(node);
  CommandOutcome out;
  out.result = std::move(node->result);
  out.ran = node->ran;
  out.succeeded = ok;
  if (ok) {
    out.result.stdout_text = std::move(node->value);
    complete(node, TaskStatus::succeeded);
  } else {
    try {
      std::rethrow_exception(node->error);
    } catch (const Cancelled& e) {
      out.cancelled = true;
      out.error = e.what();
    } catch (const std::exception& e) {
      out.error = e.what();
    }
    complete(node, TaskStatus::failed);
  }
  release(node);
  return out;
}

struct CommandCall : RemoteCall {
  ProcessNode* node;
};

bool settle_command(TaskState* task, std::string_view bytes, std::exception_ptr error) noexcept {
  auto* n = static_cast<ProcessNode*>(task);
  auto store_error = [&](std::exception_ptr e) {
    ::new (static_cast<void*>(std::addressof(n->error))) std::exception_ptr(std::move(e));
    return false;
  };
  if (error) return store_error(std::move(error));
  try {
    CommandOutcome out;
    decode(bytes, "a command's outcome", out);
    n->ran = out.ran;
    n->result = std::move(out.result);
    if (out.succeeded) {
      ::new (static_cast<void*>(std::addressof(n->value))) std::string(std::move(n->result.stdout_text));
      n->result.stdout_text.clear();
      return true;
    }
    const ProcessResult& r = n->result;
    return store_error(std::make_exception_ptr(
        ProcessError(out.error, r.command, r.exit_code, r.signal, r.stderr_text, r.timed_out)));
  } catch (...) {
    return store_error(std::current_exception());
  }
}

}  // namespace

RemoteCall* make_command_call(ProcessNode* node) {
  auto call = std::make_unique<CommandCall>();
  call->node = node;
  call->settle = &settle_command;
  call->dispose = [](RemoteCall* self) noexcept { delete static_cast<CommandCall*>(self); };
  using F = CommandOutcome (*)(ProcessSpec);
  F fn = &run_command_in_worker;
  encode_call<F, CommandOutcome, ProcessSpec>(call->payload, fn, node->spec);
  return call.release();
}

}  // namespace detail
}  // namespace pools
