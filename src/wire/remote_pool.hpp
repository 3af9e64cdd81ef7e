// What the pools whose tasks cross a process share (the multiprocess pool's
// worker processes, the cluster pool's MPI ranks): the unit a worker is sent
// (one call or a chunk), its call frame, completing tasks from reply frames,
// failing and cancelling them, and the pool's count of active tasks. The
// backends bring the transport: sockets and an epoll thread, or MPI.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <pools/observer.hpp>
#include <pools/pool_base.hpp>

#include "wire/frame.hpp"

namespace pools::detail {

/// One frame for a worker: a single call or a chunk of calls.
struct RemoteUnit {
  TaskState* task = nullptr;  // a single call...
  RemoteCall* call = nullptr;
  std::vector<RemoteSubmission> batch;  // ...or a chunk
  bool claimed = false;    // moved to running (try_start) already
  bool announced = false;  // its started events were delivered (observers)
  std::uint64_t seq = 0;   // the frame's task id on the wire

  std::size_t items() const noexcept { return batch.empty() ? 1 : batch.size(); }
  template <class Fn>
  void for_each(Fn&& fn) {
    if (batch.empty()) {
      fn(task, call);
    } else {
      for (auto& s : batch) fn(s.task, s.call);
    }
  }
  /// "task 'x'" or "a chunk of N tasks", for messages.
  std::string describe() const;
};

/// An encoded call of fn (a worker hook: initializer, on_start, ...); empty
/// for a null fn.
std::string encode_hook_call(void (*fn)());

/// Appends u's frame (call, or call_batch for a chunk) with id u.seq to out.
void append_call_frame(std::string& out, const RemoteUnit& u);

/// Where a reply came from, for the errors it becomes.
struct ReplySource {
  int pid = 0;
  std::string_view host;
  int rank = -1;          // cluster pool: the worker rank
  std::string_view name;  // "worker process 123", "rank 2 on node7 (pid 123)"
};

class RemotePool : public PoolBase {
public:
  std::size_t num_active_tasks() const noexcept override {
    return active_.load(std::memory_order_acquire);
  }
  void wait_completion() noexcept override;

  // ---- for the backend's transport --------------------------------------------

  /// Claims a unit's calls (pending -> running); the cancelled ones are
  /// dropped. False when none is left.
  bool claim(RemoteUnit& u);
  /// Delivers the started events of u's tasks (observers), once.
  void announce(RemoteUnit& u, WorkerId worker);
  /// Completes one call of u with the reply item (kind, bytes).
  void settle_reply(TaskState* t, RemoteCall* c, wire::FrameKind kind, std::string_view bytes,
                    const ReplySource& from);
  /// Completes u from its reply frame (a single reply, or a result_batch).
  /// Throws wire::WireError when the frame does not fit the unit.
  void settle_frame(RemoteUnit& u, const wire::Frame& f, const ReplySource& from);
  /// Fails every call of u with error (unclaimed ones that were cancelled
  /// are dropped instead).
  void fail_unit(RemoteUnit& u, const std::exception_ptr& error);
  /// fail_unit for the unit a worker was running when the fast close killed
  /// it: its tasks are listed with the close (report_cancelled_at_close).
  void fail_unit_stopped_at_close(RemoteUnit& u, const std::exception_ptr& error);
  /// shutdown_now: cancels u's calls; `why` names the pool's fast close.
  void cancel_unit(RemoteUnit& u, const std::string& why);

protected:
  RemotePool(std::string name, PoolKind kind) : PoolBase(std::move(name), kind) {}

  /// The backend takes these units (it owns them from here).
  virtual void post(std::vector<RemoteUnit>&& units) = 0;
  /// Points a call's waiter at the backend's poll (see RemoteCall::poll).
  virtual void attach_poll(RemoteCall* call) noexcept = 0;

  void submit(TaskState* s) override;
  void submit_remote(TaskState* s, RemoteCall* call) override;
  void submit_remote_batch(const std::vector<RemoteSubmission>& calls,
                           std::size_t chunk_size) override;
  void submit_process(TaskState* s) override;

  void count_out(std::size_t n) noexcept;
  void drop_cancelled(TaskState* t, RemoteCall* c);

private:
  void settle(TaskState* t, RemoteCall* c, bool ok, std::string_view result,
              std::exception_ptr error);

  std::atomic<std::size_t> active_{0};  // added and not finished
  std::mutex idle_mutex_;
  std::condition_variable idle_cv_;
};

}  // namespace pools::detail
