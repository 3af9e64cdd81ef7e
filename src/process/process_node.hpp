// The task node of a command (add_process): what to run, what it did, and the
// hand-off between whoever runs it (a pool) and the engine that watches it.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <pools/detail/task_state.hpp>
#include <pools/process.hpp>

namespace pools::detail {

class ProcessEngine;

/// A command ready to spawn.
struct ProcessSpec {
  std::vector<std::string> argv;  // a shell command is {"/bin/sh", "-c", command};
                                  // argv[0] without a '/' is looked up on PATH
  ProcessOptions options;
};

/// How a command's run ended, from the engine's point of view.
enum class ProcessOutcome : std::uint8_t {
  succeeded,    // ran; exit status accepted (or check off)
  failed,       // ran or could not start; `error` holds why
  not_started,  // cancelled while queued: never claimed, nothing stored
};

struct ProcessNode final : ResultState<std::string> {
  ProcessSpec spec;
  ProcessResult result;  // stdout_text is moved into `value` on success
  bool ran = false;      // spawned at least once: result() is meaningful

  // Called once on an engine thread (a spawner or the loop) when the command
  // is done (the engine holds a reference across the call). Set before the
  // node reaches the engine.
  void (*on_done)(ProcessNode*, ProcessOutcome, void* arg) noexcept = nullptr;
  void* done_arg = nullptr;
  // Called at most once on an engine thread when the command starts (its
  // first spawn, or before on_done of a first attempt that could not spawn),
  // with done_arg; for observers (the process pool). Null: not called.
  void (*on_started)(ProcessNode*, void* arg) noexcept = nullptr;
  bool start_announced = false;  // by whichever engine thread has the command

  // cancel() of a running command: set first, then the engine is told.
  std::atomic<bool> interrupt_requested{false};
  std::atomic<ProcessEngine*> engine{nullptr};

  // For a worker that waits for its command (thread and serial pools).
  std::atomic<std::uint32_t> done{0};
  ProcessOutcome outcome = ProcessOutcome::failed;

  std::once_flag stdout_copied;  // result() copies stdout back on first use

  static const TaskOps table;
};

/// Builds a pending command node with two references (queue + handle).
/// Throws pools::Error for options that cannot work (an empty argv).
ProcessNode* make_process_node(std::string name, ProcessSpec spec);

/// The command as people read it: the shell string, or the argv joined by spaces.
std::string display_command(const ProcessSpec& spec);

/// Turns what the engine recorded in node.result into the task's outcome:
/// constructs `value` (stdout) on success or `error` on failure. `start_error`
/// non-empty: the command could not start, for that reason. `interrupted`: it
/// was stopped by cancel().
ProcessOutcome settle(ProcessNode& node, const std::string& start_error, bool interrupted) noexcept;

}  // namespace pools::detail
