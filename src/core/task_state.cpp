// Completing, waiting for and cancelling tasks: the part of a task's life that
// does not depend on its callable's type.
#include <sched.h>
#include <pools/detail/task_state.hpp>
#include <pools/errors.hpp>
#include <pools/task.hpp>

#include <memory>
#include <vector>

#include <fmt/core.h>

#include "core/tls.hpp"
#include "core/futex.hpp"
#include "core/helping.hpp"

namespace pools::detail {
namespace {

// Marks a continuation list as run: later continuations run at once.
Continuation* const closed_list = reinterpret_cast<Continuation*>(alignof(Continuation));

}  // namespace

Helper*& current_helper() noexcept {
  POOLS_FAST_TLS thread_local Helper* helper = nullptr;
  return helper;
}

const std::string& task_name(const TaskState* s) noexcept {
  static const std::string unnamed;
  return s->name ? *s->name : unnamed;
}

void complete(TaskState* s, TaskStatus final_status) noexcept {
  // The waiter bit is dropped: nobody needs to sleep on a final task.
  // seq_cst: a helper that announced itself as a sleeper and then reads the
  // status, and this store followed by the continuation's sleeper check,
  // form a Dekker pair (see ThreadPool::Context::help_until_final).
  const std::uint32_t old = s->status.exchange(static_cast<std::uint32_t>(final_status),
                                               std::memory_order_seq_cst);
  // The reported bit stays (a fast close that lists the task sets it first).
  // Restored before this returns, so before the failure is tracked (finish).
  if (old & reported_bit) [[unlikely]]
    s->status.fetch_or(reported_bit, std::memory_order_relaxed);
  if (old & waiter_bit) futex_wake(s->status, INT32_MAX);
  Continuation* list = s->continuations.exchange(closed_list, std::memory_order_acq_rel);
  while (list) {
    Continuation* next = list->next;  // fn may free the node
    list->fn(list->arg, s);
    list = next;
  }
}

void add_continuation(TaskState* s, Continuation* c) noexcept {
  Continuation* head = s->continuations.load(std::memory_order_acquire);
  for (;;) {
    if (head == closed_list) {
      c->fn(c->arg, s);
      return;
    }
    c->next = head;
    if (s->continuations.compare_exchange_weak(head, c, std::memory_order_acq_rel,
                                               std::memory_order_acquire))
      return;
  }
}

bool block_until_final(TaskState* s, std::int64_t deadline_ns) noexcept {
  // A short spin catches tasks that are about to finish without a syscall.
  for (int i = 0; i < 64; ++i) {
    if (is_final(s->load_status())) return true;
    __builtin_ia32_pause();
  }
  // A task whose completion is a reply from another process polls a while
  // longer: the reply tends to come sooner than a sleeping thread would be
  // woken (on these VMs an idle CPU takes tens of microseconds to wake), and
  // the task's poll may read the reply on this thread.
  if (const std::uint32_t poll_ns = s->ops->poll_ns) {
    const std::int64_t until = now_ns() + poll_ns;
    while (deadline_ns < 0 || now_ns() < deadline_ns) {
      if (is_final(s->load_status())) return true;
      if (now_ns() >= until) break;
      if (s->ops->poll) {
        s->ops->poll(s);
      } else {
        sched_yield();
      }
    }
  }
  std::uint32_t v = s->status.load(std::memory_order_acquire);
  for (;;) {
    if (is_final(static_cast<TaskStatus>(v & status_mask))) return true;
    if (!(v & waiter_bit)) {
      if (!s->status.compare_exchange_weak(v, v | waiter_bit, std::memory_order_acq_rel,
                                           std::memory_order_acquire))
        continue;
      v |= waiter_bit;
    }
    std::int64_t timeout = -1;
    if (deadline_ns >= 0) {
      timeout = deadline_ns - now_ns();
      if (timeout <= 0) return false;
    }
    futex_wait(s->status, v, timeout);
    v = s->status.load(std::memory_order_acquire);
  }
}

bool wait_final_for(TaskState* s, std::int64_t ns) noexcept {
  if (is_final(s->load_status())) return true;
  const std::int64_t deadline = ns >= INT64_MAX / 2 ? -1 : now_ns() + ns;
  if (Helper* h = current_helper()) return h->help_until_final(s, deadline);
  return block_until_final(s, deadline);
}

void wait_final(TaskState* s) noexcept { wait_final_for(s, INT64_MAX); }

void wait_and_check(TaskState* s) {
  wait_final(s);
  switch (s->load_status()) {
    case TaskStatus::failed:
      s->status.fetch_or(observed_bit, std::memory_order_relaxed);
      std::rethrow_exception(s->ops->error(s));
    case TaskStatus::cancelled:
      s->status.fetch_or(observed_bit, std::memory_order_relaxed);
      throw Cancelled(fmt::format("task '{}' (id {}) was cancelled before it started",
                                  task_name(s), s->id));
    default: return;
  }
}

bool try_start(TaskState* s) noexcept {
  std::uint32_t v = s->status.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<TaskStatus>(v & status_mask) != TaskStatus::pending) return false;
    // Keep the waiter bit so complete() wakes whoever sleeps.
    if (s->status.compare_exchange_weak(v, (v & (waiter_bit | reported_bit)) | std::uint32_t(TaskStatus::running),
                                        std::memory_order_acq_rel, std::memory_order_acquire))
      return true;
  }
}

bool cancel(TaskState* s) noexcept {
  if (!try_start(s)) {
    return s->ops->interrupt && s->load_status() == TaskStatus::running && s->ops->interrupt(s);
  }
  // The queue still holds the task; the pool drops it unrun when it comes up.
  complete(s, TaskStatus::cancelled);
  return true;
}

[[noreturn]] void throw_result_taken(const TaskState* s) {
  throw Error(fmt::format("the result of task '{}' (id {}) was already moved out by an earlier "
                          "wait_return()",
                          task_name(s), s->id));
}

[[noreturn]] void throw_empty_handle() {
  throw Error("empty task handle: it was default-constructed or moved from");
}

// ---- wait_any ----------------------------------------------------------------

namespace {

struct AnyWaiter {
  std::atomic<std::uint32_t> fired{0};
  std::atomic<std::size_t> refs;
  std::vector<Continuation> links;

  explicit AnyWaiter(std::size_t n) : refs(n + 1), links(n) {}
  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  static void on_final(void* arg, TaskState*) noexcept {
    auto* self = static_cast<AnyWaiter*>(arg);
    self->fired.store(1, std::memory_order_release);
    futex_wake(self->fired, INT32_MAX);
    self->release();
  }
};

std::size_t first_final(TaskState* const* states, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (is_final(states[i]->load_status())) return i;
  return n;
}

}  // namespace

std::size_t wait_any(TaskState* const* states, std::size_t n) {
  if (n == 0) throw Error("wait_any: no tasks to wait for");
  if (std::size_t i = first_final(states, n); i < n) return i;

  auto* waiter = new AnyWaiter(n);
  for (std::size_t i = 0; i < n; ++i) {
    waiter->links[i] = Continuation{&AnyWaiter::on_final, waiter, nullptr};
    add_continuation(states[i], &waiter->links[i]);
  }
  Helper* helper = current_helper();
  std::size_t found;
  while ((found = first_final(states, n)) == n) {
    if (waiter->fired.load(std::memory_order_acquire)) continue;  // final status is published first
    if (helper && helper->run_one()) continue;
    // A pool thread keeps an eye on its queue; other threads sleep until fired.
    futex_wait(waiter->fired, 0, helper ? 200'000 : -1);
  }
  waiter->release();
  return found;
}

}  // namespace pools::detail
