// as_completed's queue: a continuation per task appends its index as the task
// finishes; the iterating thread takes them in that order.
#include <pools/as_completed.hpp>

#include <mutex>

#include "core/futex.hpp"
#include "core/helping.hpp"

namespace pools::detail {

struct CompletionQueue::Shared {
  struct Link {
    Continuation continuation;
    Shared* shared;
    std::size_t index;
  };
  std::mutex mutex;
  std::vector<std::size_t> finished;  // indexes, in completion order
  std::size_t taken = 0;              // how many next() handed out
  std::atomic<std::uint32_t> epoch{0};  // bumped on every completion (futex word)
  std::atomic<std::size_t> refs;        // the queue + one per task not final yet
  std::vector<Link> links;

  explicit Shared(std::size_t n) : refs(n + 1), links(n) { finished.reserve(n); }

  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  static void on_final(void* arg, TaskState*) noexcept {
    auto* link = static_cast<Link*>(arg);
    Shared* self = link->shared;
    {
      std::lock_guard lock(self->mutex);
      self->finished.push_back(link->index);  // reserved: does not allocate
    }
    self->epoch.fetch_add(1, std::memory_order_release);
    futex_wake(self->epoch, INT32_MAX);
    self->release();
  }
};

CompletionQueue::CompletionQueue(const std::vector<TaskState*>& states)
    : shared_(new Shared(states.size())) {
  for (std::size_t i = 0; i < states.size(); ++i) {
    auto& link = shared_->links[i];
    link.shared = shared_;
    link.index = i;
    link.continuation = Continuation{&Shared::on_final, &link, nullptr};
    // A task that is final already calls back at once, on this thread.
    add_continuation(states[i], &link.continuation);
  }
}

CompletionQueue::~CompletionQueue() { shared_->release(); }

std::size_t CompletionQueue::next() noexcept {
  Helper* helper = current_helper();
  for (;;) {
    const std::uint32_t seen = shared_->epoch.load(std::memory_order_acquire);
    {
      std::lock_guard lock(shared_->mutex);
      if (shared_->taken < shared_->finished.size()) return shared_->finished[shared_->taken++];
    }
    if (helper && helper->run_one()) continue;
    // A pool thread keeps an eye on its queue; other threads sleep until a completion.
    futex_wait(shared_->epoch, seen, helper ? 200'000 : -1);
  }
}

}  // namespace pools::detail
