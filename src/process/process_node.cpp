// Command tasks: add_process on every pool, the outcome of a command, and the
// worker side for pools that run a command from one of their workers.
#include "process/process_node.hpp"

#include <climits>
#include <csignal>
#include <cstring>

#include <fmt/core.h>

#include <pools/pool_base.hpp>
#include <pools/process.hpp>

#include "core/futex.hpp"
#include "process/process_engine.hpp"

namespace pools {

ProcessError::ProcessError(const std::string& what, std::string command, int exit_code,
                           int signal, std::string stderr_text, bool timed_out)
    : Error(what),
      command_(std::move(command)),
      stderr_text_(std::move(stderr_text)),
      exit_code_(exit_code),
      signal_(signal),
      timed_out_(timed_out) {}

const ProcessResult& ProcessTask::result() const& {
  auto* n = static_cast<detail::ProcessNode*>(state());
  join();
  if (!n->ran) {
    wait();  // throws why it never ran
    throw Error(fmt::format("command task '{}' has no result", name()));
  }
  if (n->load_status() == detail::TaskStatus::succeeded) {
    std::call_once(n->stdout_copied, [n] { n->result.stdout_text = n->value; });
  } else {
    // The caller sees the exit status here: the failure was looked at.
    n->status.fetch_or(detail::observed_bit, std::memory_order_relaxed);
  }
  return n->result;
}

namespace detail {
namespace {

std::string describe_signal(int sig) {
  const char* text = ::strsignal(sig);
  return fmt::format("signal {} ({})", sig, text ? text : "unknown");
}

// The end of a command's stderr, for an error message.
std::string stderr_tail(const std::string& text) {
  constexpr std::size_t keep = 400;
  std::string_view tail(text);
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.remove_suffix(1);
  if (tail.size() > keep) return fmt::format("...{}", tail.substr(tail.size() - keep));
  return std::string(tail);
}

std::string failure_message(const ProcessResult& r, const ProcessOptions& o) {
  std::string what;
  if (r.timed_out) {
    what = fmt::format("command '{}' timed out after {:.3g} s and was killed ({})", r.command,
                       std::chrono::duration<double>(o.timeout).count(),
                       describe_signal(r.signal ? r.signal : SIGTERM));
  } else if (r.signal) {
    what = fmt::format("command '{}' was killed by {}", r.command, describe_signal(r.signal));
  } else {
    what = fmt::format("command '{}' exited with status {}", r.command, r.exit_code);
  }
  if (r.attempts > 1) what += fmt::format(" (after {} attempts)", r.attempts);
  if (std::string tail = stderr_tail(r.stderr_text); !tail.empty())
    what += fmt::format("; stderr: {}", tail);
  return what;
}

template <class E, class... A>
void store_error(ProcessNode& n, A&&... a) noexcept {
  try {
    ::new (static_cast<void*>(std::addressof(n.error)))
        std::exception_ptr(std::make_exception_ptr(E(std::forward<A>(a)...)));
  } catch (...) {
    ::new (static_cast<void*>(std::addressof(n.error))) std::exception_ptr(std::current_exception());
  }
}

bool run_on_worker(TaskState* base) noexcept {
  auto* n = static_cast<ProcessNode*>(base);
  n->on_done = [](ProcessNode* node, ProcessOutcome outcome, void*) noexcept {
    node->outcome = outcome;
    node->done.store(1, std::memory_order_release);
    futex_wake(node->done, INT32_MAX);  // the engine holds a reference across this call
  };
  try {
    ProcessEngine::shared().start(n, false);
  } catch (const std::exception& e) {  // the shared engine could not start
    return settle(*n, e.what(), false) == ProcessOutcome::succeeded;
  }
  while (n->done.load(std::memory_order_acquire) == 0) futex_wait(n->done, 0);
  return n->outcome == ProcessOutcome::succeeded;
}

void discard(TaskState*) noexcept {}  // the spec is freed with the node

void destroy(TaskState* base) noexcept {
  auto* n = static_cast<ProcessNode*>(base);
  n->destroy_result();
  delete n->name;
  delete n;
}

const std::exception_ptr& error_of(const TaskState* base) noexcept {
  return static_cast<const ProcessNode*>(base)->error;
}

bool interrupt(TaskState* base) noexcept {
  auto* n = static_cast<ProcessNode*>(base);
  if (n->interrupt_requested.exchange(true, std::memory_order_seq_cst)) return false;
  // The engine checks the flag when it spawns; whichever of us comes second acts.
  if (ProcessEngine* e = n->engine.load(std::memory_order_seq_cst)) e->interrupt(n);
  return true;
}

}  // namespace

const TaskOps ProcessNode::table{&run_on_worker, &discard, &destroy, &error_of, &interrupt};

std::string display_command(const ProcessSpec& spec) {
  if (spec.argv.size() == 3 && spec.argv[0] == "/bin/sh" && spec.argv[1] == "-c")
    return spec.argv[2];
  std::string out;
  for (const auto& a : spec.argv) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return out;
}

ProcessNode* make_process_node(std::string name, ProcessSpec spec) {
  if (spec.argv.empty() || spec.argv[0].empty())
    throw Error(fmt::format("add_process '{}': the command is empty", name));
  for (const auto& a : spec.argv) {
    if (a.find('\0') != std::string::npos)
      throw Error(fmt::format("add_process '{}': an argument contains a NUL byte", name));
  }
  const ProcessOptions& o = spec.options;
  if (o.timeout.count() < 0 || o.kill_grace.count() < 0)
    throw Error(fmt::format("add_process '{}': timeout and kill_grace must not be negative", name));
  for (const auto& [k, v] : o.env) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos)
      throw Error(fmt::format("add_process '{}': bad environment variable name '{}'", name, k));
  }
  auto* n = new ProcessNode;
  n->ops = &ProcessNode::table;
  n->id = next_task_id();
  n->refs.store(2, std::memory_order_relaxed);
  try {
    n->result.command = display_command(spec);
    n->spec = std::move(spec);
    if (!name.empty()) n->name = new std::string(std::move(name));
  } catch (...) {
    delete n;
    throw;
  }
  return n;
}

ProcessOutcome settle(ProcessNode& n, const std::string& start_error, bool interrupted) noexcept {
  ProcessResult& r = n.result;
  if (!start_error.empty()) {
    store_error<ProcessError>(n, fmt::format("cannot run '{}': {}", r.command, start_error),
                              r.command, -1, 0, std::string());
    return ProcessOutcome::failed;
  }
  if (interrupted) {
    // Whoever called cancel() knows: not a failure to report at shutdown.
    n.status.fetch_or(observed_bit, std::memory_order_relaxed);
    store_error<Cancelled>(n, fmt::format("task '{}' (id {}) was cancelled while running '{}'; "
                                          "its process group was terminated",
                                          task_name(&n), n.id, r.command));
    return ProcessOutcome::failed;
  }
  if (r.succeeded() || !n.spec.options.check) {
    try {
      ::new (static_cast<void*>(std::addressof(n.value))) std::string(std::move(r.stdout_text));
      r.stdout_text.clear();
    } catch (...) {
      ::new (static_cast<void*>(std::addressof(n.error))) std::exception_ptr(std::current_exception());
      return ProcessOutcome::failed;
    }
    return ProcessOutcome::succeeded;
  }
  try {
    store_error<ProcessError>(n, failure_message(r, n.spec.options), r.command, r.exit_code,
                              r.signal, r.stderr_text, r.timed_out);
  } catch (...) {
    store_error<Error>(n, "command failed (and describing it ran out of memory)");
  }
  return ProcessOutcome::failed;
}

}  // namespace detail

ProcessTask PoolBase::add_process(std::string name, std::string command, ProcessOptions options) {
  return add_process(std::move(name), std::vector<std::string>{"/bin/sh", "-c", std::move(command)},
                     std::move(options));
}

ProcessTask PoolBase::add_process(std::string name, std::vector<std::string> argv,
                                  ProcessOptions options) {
  detail::ProcessSpec spec{std::move(argv), std::move(options)};
  detail::ProcessNode* n = detail::make_process_node(std::move(name), std::move(spec));
  ProcessTask handle(n);
  if (detail::hooks_active()) [[unlikely]] notify_queued(n);
  submit_process(n);
  return handle;
}

}  // namespace pools
