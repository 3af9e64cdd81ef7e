// Helpers shared by the test files.
#pragma once

#include <future>
#include <mutex>
#include <string>

#include <pools/pools.hpp>

namespace pools_test {

// A gate a task can be held at until the test opens it. Tasks hold a copy of
// waiter(), which stays valid should the test end early; the destructor opens
// the gate so that no pool thread is left stuck behind a failed REQUIRE.
class Gate {
public:
  std::shared_future<void> waiter() const { return opened_; }
  void open() {
    std::call_once(once_, [this] { promise_.set_value(); });
  }
  ~Gate() { open(); }

private:
  std::promise<void> promise_;
  std::shared_future<void> opened_ = promise_.get_future().share();
  std::once_flag once_;
};

// Adds a task that holds one worker of `pool` at `gate` and then returns
// `result` (none: void); returns its handle once the task runs.
template <class... Result>
auto hold_worker(pools::PoolBase& pool, const Gate& gate, std::string name = "held",
                 Result... result) {
  static_assert(sizeof...(Result) <= 1, "at most one result");
  std::promise<void> started;
  auto running = started.get_future();
  auto held = pool.add_task(std::move(name), [&started, w = gate.waiter(), result...] {
    started.set_value();
    w.wait();
    return (result, ...);  // an empty pack folds to void()
  });
  running.wait();
  return held;
}

}  // namespace pools_test
