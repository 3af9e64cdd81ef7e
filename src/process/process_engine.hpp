// What runs commands: a few spawner threads start them (Boost.Process, vfork)
// and see short ones to their end; one event-loop thread drains the stdout and
// stderr of every longer one, feeds its stdin and notices its exit (a pidfd),
// for any number of children at once. Boost.Process and Asio stay inside
// process_engine.cpp: they are costly to compile.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace pools::detail {

struct ProcessNode;
struct TaskState;

class ProcessEngine {
public:
  /// Starts the event-loop thread. max_running 0: no limit of its own (the
  /// caller limits, as a thread pool does with its workers).
  /// Throws pools::Error when the thread or its descriptors cannot be made.
  ProcessEngine(std::string name, std::size_t max_running);
  ~ProcessEngine();
  ProcessEngine(const ProcessEngine&) = delete;
  ProcessEngine& operator=(const ProcessEngine&) = delete;

  /// Runs n's command once a slot is free (FIFO), retrying it as its options
  /// say, and then calls n->on_done exactly once, on one of the engine's
  /// threads (a spawner or the loop; never with an engine lock held). With
  /// `claim`, n is still pending and is claimed (detail::try_start) when its
  /// turn comes; a task cancelled meanwhile ends as ProcessOutcome::not_started.
  /// Without, the caller already claimed it. Never throws.
  void start(ProcessNode* n, bool claim) noexcept;

  /// cancel() of a running command: terminate its process group.
  void interrupt(ProcessNode* n) noexcept;

  /// The fast close (close_pools_now): every command queued now or started
  /// later is cancelled when its turn comes (with `claim`; then note(n, false)
  /// is called, on the loop or on the thread that adds it), and every running one is interrupted
  /// (note(n, true)): its process group gets SIGTERM, SIGKILL after its
  /// kill_grace. Never throws.
  void cancel_all(void (*note)(TaskState* n, bool was_running, void* arg), void* arg) noexcept;

  /// Commands queued or running. Non-blocking.
  std::size_t size() const noexcept;

  /// Waits until no command is queued or running, then ends the thread. Idempotent.
  void stop() noexcept;

  /// The engine of commands run by the worker of a thread or serial pool.
  static ProcessEngine& shared();
  /// In a worker process: the shared engine copied from the program has no
  /// threads here; forget it (and the program's signal watchers).
  static void forget_shared_after_fork() noexcept;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pools::detail
