// A Chase-Lev work-stealing deque of task pointers: the owner pushes and pops
// at the bottom (LIFO), thieves steal from the top (FIFO).
//
// After Lê, Pop, Cohen, Zappa Nardelli, "Correct and Efficient Work-Stealing
// for Weak Memory Models" (PPoPP 2013), with seq_cst operations instead of
// standalone fences: ThreadSanitizer does not model fences, and on x86 the
// cost is the same.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace pools::detail {

template <class T>
class WorkStealingDeque {
public:
  explicit WorkStealingDeque(std::int64_t capacity = 256)
      : array_(new Array(capacity)) {}
  ~WorkStealingDeque() { delete array_.load(std::memory_order_relaxed); }
  WorkStealingDeque(const WorkStealingDeque&) = delete;
  WorkStealingDeque& operator=(const WorkStealingDeque&) = delete;

  /// Owner only.
  void push(T* item) {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    const std::int64_t t = top_.load(std::memory_order_acquire);
    Array* a = array_.load(std::memory_order_relaxed);
    if (b - t > a->capacity - 1) a = grow(a, t, b);
    a->put(b, item);
    // seq_cst: pairs with the sleepers check in Notifier (a worker that is
    // about to park either sees this item or is seen as a sleeper).
    bottom_.store(b + 1, std::memory_order_seq_cst);
  }

  /// Owner only. Null when empty.
  T* pop() {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    Array* a = array_.load(std::memory_order_relaxed);
    bottom_.store(b, std::memory_order_seq_cst);
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    if (t > b) {
      bottom_.store(b + 1, std::memory_order_relaxed);
      return nullptr;
    }
    T* item = a->get(b);
    if (t == b) {
      // Last item: race the thieves for it.
      if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed))
        item = nullptr;
      bottom_.store(b + 1, std::memory_order_relaxed);
    }
    return item;
  }

  /// Any thread. Null when empty or when another thief won the race.
  T* steal() {
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    const std::int64_t b = bottom_.load(std::memory_order_seq_cst);
    if (t >= b) return nullptr;
    Array* a = array_.load(std::memory_order_acquire);
    T* item = a->get(t);
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed))
      return nullptr;
    return item;
  }

  /// Any thread; a hint only.
  bool empty() const noexcept {
    return top_.load(std::memory_order_relaxed) >= bottom_.load(std::memory_order_relaxed);
  }

private:
  struct Array {
    explicit Array(std::int64_t cap) : capacity(cap), mask(cap - 1), slots(new std::atomic<T*>[cap]) {}
    std::int64_t capacity;
    std::int64_t mask;
    std::unique_ptr<std::atomic<T*>[]> slots;
    void put(std::int64_t i, T* x) noexcept { slots[i & mask].store(x, std::memory_order_relaxed); }
    T* get(std::int64_t i) const noexcept { return slots[i & mask].load(std::memory_order_relaxed); }
  };

  Array* grow(Array* old, std::int64_t t, std::int64_t b) {
    auto* bigger = new Array(old->capacity * 2);
    for (std::int64_t i = t; i < b; ++i) bigger->put(i, old->get(i));
    // Thieves may still read the old array: keep it until the deque dies.
    retired_.emplace_back(old);
    array_.store(bigger, std::memory_order_release);
    return bigger;
  }

  alignas(64) std::atomic<std::int64_t> top_{0};
  alignas(64) std::atomic<std::int64_t> bottom_{0};
  std::atomic<Array*> array_;
  std::vector<std::unique_ptr<Array>> retired_;  // owner only
};

}  // namespace pools::detail
