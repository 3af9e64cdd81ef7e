// Observers: hooks on a task being queued, started and finished, called by every
// pool kind, and the built-in observers (progress bar, JSON-lines log, summary).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <pools/progress.hpp>

namespace pools {

class PoolBase;

/// Which of a task's three events this is.
enum class TaskEventKind : std::uint8_t { queued, started, finished };

/// How a task ended (finished events).
enum class TaskOutcome : std::uint8_t {
  succeeded,
  failed,     // it threw (or its command failed, or its worker was lost)
  cancelled,  // cancelled before it started, refused by a pool that was shut
              // down, or a running command stopped by cancel()
  skipped,    // a dependency failed, was cancelled or skipped (add_task_after)
};

/// What ran a task.
enum class WorkerKind : std::uint8_t {
  none,     // not known (queued events; finished events of tasks that never started)
  thread,   // a thread of a thread pool (or of a process pool's functions): id = its index
  caller,   // the serial pool: the calling thread; id = its Linux thread id
  process,  // a worker process of a multiprocess pool: id = its pid
  command,  // a command of a process pool: id = the command's pid (-1: it could not start)
  rank,     // a cluster pool's MPI rank: id = the rank
};

struct WorkerId {
  WorkerKind kind = WorkerKind::none;
  std::int64_t id = -1;
};

/// "queued", "started", "finished"; "succeeded", "failed", ...; "thread", "process", ...
std::string_view to_string(TaskEventKind kind) noexcept;
std::string_view to_string(TaskOutcome outcome) noexcept;
std::string_view to_string(WorkerKind kind) noexcept;

/// One event of one task. The views and the pool reference are valid only
/// during the call that receives the event: copy what you keep.
struct TaskEvent {
  TaskEventKind kind = TaskEventKind::queued;
  const PoolBase* pool = nullptr;  // the pool the task was added to
  std::uint64_t task_id = 0;       // the id of the task's handle (Task::id())
  std::string_view task_name;
  std::chrono::system_clock::time_point time;  // when it happened (wall clock)
  /// started and finished events: what ran it (none for a finished task that
  /// never started).
  WorkerId worker;
  // ---- finished events only ----
  TaskOutcome outcome = TaskOutcome::succeeded;
  /// "Type: what()" of the task's failure; empty when it succeeded.
  std::string_view error;
  /// From started to finished, measured in the program (steady clock); zero
  /// when the task never started or the observers came after it started.
  std::chrono::nanoseconds duration{0};
  /// A command task (add_process): the pid of its command's last attempt; 0
  /// otherwise or when it never spawned.
  std::int64_t command_pid = 0;
};

/// Receives the events of the pools it is added to (PoolBase::add_observer) or
/// of every pool (add_global_observer). Override what you need; the defaults
/// do nothing.
///
/// Threads: the calls come from whichever thread the event happens on (the
/// submitting thread for queued, worker and I/O threads for the others), often
/// from several threads at once: an observer must be thread-safe. For one
/// task, queued happens-before started happens-before finished, and finished
/// is delivered before the task completes (a wait() that returns has seen its
/// on_finished return), except for a task cancelled before it started, whose
/// finished comes when its pool drops it from its queue.
///
/// An observer must not block for long (it delays the worker) and must not
/// wait for tasks. It may add tasks. An exception it throws is caught and
/// reported once on stderr (the pool and the task go on).
class Observer {
public:
  virtual ~Observer() = default;
  /// The task was added (add_task, add_process, add_task_after, add_tasks).
  virtual void on_queued(const TaskEvent&) {}
  /// A worker began it.
  virtual void on_started(const TaskEvent&) {}
  /// It ended; exactly once per queued task. outcome says how.
  virtual void on_finished(const TaskEvent&) {}
};

/// Adds an observer of every pool, present and future (and of the tasks
/// already queued, from their next event on). Thread-safe.
void add_global_observer(std::shared_ptr<Observer> observer);
/// Removes it; false when it was not there. Events that began before remain
/// delivered on other threads (the pools keep it alive until they are done);
/// none begins after this returns. Thread-safe; may be called from an observer.
bool remove_global_observer(const std::shared_ptr<Observer>& observer);

// ---- built-in observers --------------------------------------------------------

/// A terminal progress bar with ETA over the tasks it observes: on a terminal
/// it redraws "[####....]  40% 4/10 done, 1 failed, 2 running, ETA 0:03" in
/// place; otherwise (a file, a pipe) it prints "LABEL: 40% 4/10 done, ..."
/// lines at most once a second, and always the last one at finish().
/// The total is the number of tasks queued while it observes, unless given.
class ProgressBar final : public Observer {
public:
  /// label: the prefix of plain lines ("pools" gives "pools: 40% ..."). total
  /// 0: count the queued tasks. out: where to draw (stderr by default).
  explicit ProgressBar(std::string label = "pools", std::uint64_t total = 0,
                       std::FILE* out = stderr);
  void on_queued(const TaskEvent&) override;
  void on_started(const TaskEvent&) override;
  void on_finished(const TaskEvent&) override;
  /// Draws the final state and ends the terminal line. Call after the tasks
  /// finished (wait_completion); later events are not drawn.
  void finish();
  std::uint64_t done() const;

private:
  mutable std::mutex mutex_;
  ProgressView view_;
  bool fixed_total_;
  bool finished_ = false;
  std::uint64_t total_ = 0, done_ = 0, failed_ = 0, running_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
};

/// Writes one JSON object per line for every event, to a file, a FILE* or an
/// ostream (docs/observers.md lists the fields). Strings are escaped as JSON
/// requires (control characters as \uXXXX; bytes that are not valid UTF-8 as
/// U+FFFD). Each line is written whole and flushed.
class JsonLog final : public Observer {
public:
  /// Opens (truncates) path. Throws pools::Error when it cannot.
  explicit JsonLog(const std::string& path);
  /// Writes to out, which stays the caller's (not closed).
  explicit JsonLog(std::FILE* out);
  explicit JsonLog(std::ostream& out);
  ~JsonLog() override;
  JsonLog(const JsonLog&) = delete;
  JsonLog& operator=(const JsonLog&) = delete;
  void on_queued(const TaskEvent& e) override { write(e); }
  void on_started(const TaskEvent& e) override { write(e); }
  void on_finished(const TaskEvent& e) override { write(e); }

  /// The line (without '\n') written for an event.
  static std::string format(const TaskEvent& e);

private:
  void write(const TaskEvent& e);
  std::mutex mutex_;
  std::FILE* file_ = nullptr;
  bool owns_ = false;
  std::ostream* stream_ = nullptr;
};

/// Appends s to out as a JSON string literal (with the quotes).
void append_json_string(std::string& out, std::string_view s);

/// Counts outcomes and keeps the slowest tasks and the failures, for a report
/// after the run (report(), or text()).
class Summary final : public Observer {
public:
  /// slowest: how many of the slowest tasks to keep; failures: how many failed
  /// or skipped tasks to list (all are counted).
  explicit Summary(std::size_t slowest = 5, std::size_t failures = 10);

  void on_queued(const TaskEvent&) override;
  void on_started(const TaskEvent&) override;
  void on_finished(const TaskEvent&) override;

  struct Entry {
    std::uint64_t task_id;
    std::string task_name;
    std::string pool;
    TaskOutcome outcome;
    std::chrono::nanoseconds duration;
    std::string error;  // failures: "Type: what()"
  };
  struct Report {
    std::uint64_t queued = 0, started = 0, finished = 0;
    std::uint64_t succeeded = 0, failed = 0, cancelled = 0, skipped = 0;
    /// From the first event to the last finished one.
    std::chrono::nanoseconds wall{0};
    double tasks_per_second = 0;  // finished / wall
    std::vector<Entry> slowest;   // slowest first (tasks that ran)
    std::vector<Entry> failures;  // in the order they finished
    std::string first_error;      // of the first failed task
  };
  Report report() const;
  /// The report as lines of text, e.g. "10 tasks: 8 succeeded, 1 failed, ...".
  std::string text() const;

private:
  mutable std::mutex mutex_;
  std::size_t keep_slowest_, keep_failures_;
  Report r_;
  bool any_ = false;
  std::chrono::steady_clock::time_point first_, last_;
};

namespace detail {

/// The switch of the hot paths: non-zero while any observer is installed
/// anywhere. Pools test it with one relaxed load before doing any observer
/// work.
extern std::atomic<std::uint32_t> observers_installed;
inline bool hooks_active() noexcept {
  return observers_installed.load(std::memory_order_relaxed) != 0;
}

/// add_task_after: while one lives on a thread, the next task made on that
/// thread takes `id` (the id of the dependent task's handle) and its queued
/// event is not reported (the handle's was), so observers see one task.
class ReuseTaskId {
public:
  explicit ReuseTaskId(std::uint64_t id) noexcept;
  ~ReuseTaskId();
  ReuseTaskId(const ReuseTaskId&) = delete;
  ReuseTaskId& operator=(const ReuseTaskId&) = delete;
  /// True when a task took the id.
  bool taken() const noexcept;

private:
  std::uint64_t id_;
};

}  // namespace detail
}  // namespace pools
