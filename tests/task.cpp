// Task<T> handles: result kinds, timed waits, cancellation, wait_all/wait_any, copies.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

using pools_test::Gate;

namespace {


struct Boom : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

TEST_CASE("task: a void task's wait_return returns void", "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.void", 2);
  std::atomic<int> ran{0};
  pools::Task<void> t = pool.add_task("void", [&ran] { ran.fetch_add(1); });
  static_assert(std::is_same_v<decltype(t.wait_return()), void>);
  t.wait_return();
  REQUIRE(ran.load() == 1);
  REQUIRE(t.iscompleted());
  REQUIRE_FALSE(t.failed());
}

TEST_CASE("task: a move-only result is moved out once and a second wait_return throws pools::Error",
          "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.move-only", 2);
  auto t = pool.add_task("unique", [] { return std::make_unique<int>(42); });
  static_assert(std::is_same_v<decltype(t), pools::Task<std::unique_ptr<int>>>);
  std::unique_ptr<int> first = t.wait_return();
  REQUIRE(first);
  REQUIRE(*first == 42);
  REQUIRE_THROWS_AS(t.wait_return(), pools::Error);
  // wait() only reports success or failure, so it still succeeds.
  REQUIRE_NOTHROW(t.wait());
  REQUIRE_FALSE(t.failed());
}

TEST_CASE("task: a move-only result taken through one copy is gone for the others",
          "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.move-only", 2);
  auto t = pool.add_task("unique", [] { return std::make_unique<std::string>("payload"); });
  auto copy = t;
  REQUIRE(*copy.wait_return() == "payload");
  REQUIRE_THROWS_AS(t.wait_return(), pools::Error);
}

TEST_CASE("task: a move-only result that is never taken is destroyed with the task",
          "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.move-only", 2);
  auto alive = std::make_shared<int>(1);
  std::weak_ptr<int> watch = alive;
  {
    auto t = pool.add_task("holder", [p = std::move(alive)]() mutable {
      return std::make_unique<std::shared_ptr<int>>(std::move(p));
    });
    t.join();
    REQUIRE_FALSE(watch.expired());  // the result holds it
  }
  pool.wait_completion();
  // The worker may drop its own reference a moment after the task completed.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!watch.expired() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  REQUIRE(watch.expired());
}

TEST_CASE("task: large results come back whole", "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.large", 2);
  using Big = std::array<char, 1 << 16>;
  auto arr = pool.add_task("array", [] {
    Big b;
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<char>(i * 7 % 251);
    return b;
  });
  auto vec = pool.add_task("vector", [](std::size_t n) {
    std::vector<std::uint64_t> v(n);
    std::iota(v.begin(), v.end(), std::uint64_t{0});
    return v;
  }, std::size_t{1} << 20);

  Big b = arr.wait_return();
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (b[i] != static_cast<char>(i * 7 % 251)) FAIL("array byte " << i << " differs");
  }
  auto v = vec.wait_return();
  REQUIRE(v.size() == (std::size_t{1} << 20));
  std::uint64_t n = v.size();
  REQUIRE(std::accumulate(v.begin(), v.end(), std::uint64_t{0}) == n * (n - 1) / 2);
  // A copyable result is copied: every call returns it.
  REQUIRE(vec.wait_return().size() == n);
}

TEST_CASE("task: wait_for times out while the task is held and then sees it finish",
          "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.wait-for", 2);
  Gate gate;
  auto t = pool.add_task("held", [w = gate.waiter()] {
    w.wait();
    return 7;
  });
  auto start = std::chrono::steady_clock::now();
  REQUIRE_FALSE(t.wait_for(50ms));
  // It did wait (allow the clock's granularity some slack).
  REQUIRE(std::chrono::steady_clock::now() - start >= 45ms);
  REQUIRE_FALSE(t.wait_for(0ms));
  REQUIRE_FALSE(t.wait_for(-5ms));
  REQUIRE_FALSE(t.iscompleted());

  gate.open();
  REQUIRE(t.wait_for(60s));
  REQUIRE(t.iscompleted());
  REQUIRE(t.wait_return() == 7);
  // A finished task needs no waiting.
  REQUIRE(t.wait_for(0ms));
}

TEST_CASE("task: wait_for does not throw the task's failure", "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.wait-for", 2);
  auto t = pool.add_task("fails", []() -> int { throw Boom("boom"); });
  REQUIRE(t.wait_for(60s));
  REQUIRE(t.failed());
  REQUIRE_THROWS_AS(t.wait(), Boom);
}

TEST_CASE("task: a queued task can be cancelled; it never runs and wait throws pools::Cancelled",
          "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.cancel", 1);
  REQUIRE(pool.num_workers() == 1);
  Gate gate;
  auto busy = pools_test::hold_worker(pool, gate, "busy", 1);  // the only worker is held inside

  std::atomic<bool> ran{false};
  auto queued = pool.add_task("queued", [&ran] {
    ran = true;
    return 2;
  });
  REQUIRE_FALSE(busy.cancel());  // already running: cannot be cancelled
  REQUIRE(queued.cancel());
  REQUIRE_FALSE(queued.cancel());  // only the first cancel cancels
  REQUIRE(queued.iscompleted());
  REQUIRE(queued.failed());
  REQUIRE_THROWS_AS(queued.wait(), pools::Cancelled);
  REQUIRE_THROWS_AS(queued.wait_return(), pools::Error);  // Cancelled is a pools::Error

  gate.open();
  REQUIRE(busy.wait_return() == 1);  // a failed cancel leaves the task to run to the end
  pool.wait_completion();
  REQUIRE(pool.num_active_tasks() == 0);
  REQUIRE_FALSE(ran.load());
  REQUIRE_THROWS_AS(queued.wait(), pools::Cancelled);
}

TEST_CASE("task: cancelling a finished task returns false and keeps its result", "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.cancel", 1);
  auto t = pool.add_task("done", [] { return 5; });
  REQUIRE(t.wait_return() == 5);
  REQUIRE_FALSE(t.cancel());
  REQUIRE_FALSE(t.failed());
  REQUIRE(t.wait_return() == 5);

  auto failed = pool.add_task("failed", []() -> int { throw Boom("x"); });
  failed.join();
  REQUIRE_FALSE(failed.cancel());
  REQUIRE_THROWS_AS(failed.wait(), Boom);
}

TEST_CASE("task: a cancelled task's waiters on other threads wake up", "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.cancel", 1);
  Gate gate;
  auto busy = pools_test::hold_worker(pool, gate, "busy");
  auto queued = pool.add_task("queued", [] { return 3; });
  std::promise<void> waiter_ready;
  auto waiter = std::async(std::launch::async, [&] {
    waiter_ready.set_value();
    try {
      queued.wait();
      return std::string("no exception");
    } catch (const pools::Cancelled&) {
      return std::string("cancelled");
    } catch (...) {
      return std::string("other exception");
    }
  });
  waiter_ready.get_future().wait();
  std::this_thread::sleep_for(10ms);  // likely puts the waiter to sleep first; outcome is the same
  REQUIRE(queued.cancel());
  REQUIRE(waiter.wait_for(30s) == std::future_status::ready);
  REQUIRE(waiter.get() == "cancelled");
  gate.open();
  busy.wait();
}

TEST_CASE("task: wait_all waits for every task and then rethrows the first failure in order",
          "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.wait-all", 3);
  Gate gate;
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 10; ++i) {
    tasks.push_back(pool.add_task("t" + std::to_string(i), [i, w = gate.waiter()]() -> int {
      if (i == 9) w.wait();  // still running when the failures are in
      if (i == 7) throw Boom("seven");
      if (i == 3) throw Boom("three");
      return i;
    }));
  }
  // Opened late, so a wait_all that throws before waiting for task 9 is caught below.
  std::jthread opener([&] {
    std::this_thread::sleep_for(50ms);
    gate.open();
  });
  REQUIRE_THROWS_MATCHES(pools::wait_all(tasks), Boom, Catch::Matchers::Message("three"));
  for (auto& t : tasks) REQUIRE(t.iscompleted());
  opener.join();
  REQUIRE(tasks[9].wait_return() == 9);
  // The later failure is kept too, for whoever waits on that task.
  REQUIRE_THROWS_MATCHES(tasks[7].wait(), Boom, Catch::Matchers::Message("seven"));

  std::vector<pools::Task<int>> good;
  for (int i = 0; i < 20; ++i) good.push_back(pool.add_task("", [i] { return i; }));
  REQUIRE_NOTHROW(pools::wait_all(good));
  for (auto& t : good) REQUIRE(t.iscompleted());
  REQUIRE_NOTHROW(pools::wait_all(std::vector<pools::Task<int>>{}));
}

TEST_CASE("task: wait_all takes handles of different result types", "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.wait-all", 3);
  auto a = pool.add_task("int", [] { return 1; });
  auto b = pool.add_task("void", [] {});
  auto c = pool.add_task("string", [] { return std::string("s"); });
  REQUIRE_NOTHROW(pools::wait_all(a, b, c));
  REQUIRE(a.iscompleted());
  REQUIRE(b.iscompleted());
  REQUIRE(c.iscompleted());

  auto d = pool.add_task("fails", []() -> double { throw Boom("d"); });
  auto e = pool.add_task("fails too", [] { throw std::logic_error("e"); });
  REQUIRE_THROWS_MATCHES(pools::wait_all(a, d, e), Boom, Catch::Matchers::Message("d"));
  REQUIRE_THROWS_AS(pools::wait_all(e, d), std::logic_error);
}

TEST_CASE("task: wait_any returns the index of the task that finished", "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.wait-any", 5);
  Gate gate;
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 4; ++i) {
    tasks.push_back(pool.add_task("", [i, w = gate.waiter()] {
      if (i != 2) w.wait();  // only task 2 can finish
      return i;
    }));
  }
  REQUIRE(pools::wait_any(tasks) == 2);
  REQUIRE(tasks[2].iscompleted());
  REQUIRE_FALSE(tasks[0].iscompleted());
  gate.open();
  pools::wait_all(tasks);

  // Every index it returns is of a finished task, failed ones included.
  std::vector<pools::Task<int>> mixed;
  mixed.push_back(pool.add_task("", []() -> int { throw Boom("b"); }));
  std::size_t i = pools::wait_any(mixed);
  REQUIRE(i == 0);
  REQUIRE(mixed[0].iscompleted());
  REQUIRE_THROWS_AS(mixed[0].wait(), Boom);  // wait_any itself did not throw it
}

TEST_CASE("task: wait_any on an empty range throws pools::Error", "[core]") {
  std::vector<pools::Task<int>> none;
  REQUIRE_THROWS_AS(pools::wait_any(none), pools::Error);
}

TEST_CASE("task: an empty handle throws pools::Error from every member but valid", "[core]") {
  pools::Task<int> t;
  REQUIRE_FALSE(t.valid());
  REQUIRE_THROWS_AS(t.wait(), pools::Error);
  REQUIRE_THROWS_AS(t.wait_return(), pools::Error);
  REQUIRE_THROWS_AS(t.wait_for(1ms), pools::Error);
  REQUIRE_THROWS_AS(t.join(), pools::Error);
  REQUIRE_THROWS_AS(t.name(), pools::Error);
  REQUIRE_THROWS_AS(t.id(), pools::Error);
  // The non-throwing members answer "no".
  REQUIRE_FALSE(t.iscompleted());
  REQUIRE_FALSE(t.cancel());
  REQUIRE_FALSE(t.failed());

  pools::Task<void> v;
  REQUIRE_THROWS_AS(v.wait_return(), pools::Error);
  std::vector<pools::Task<void>> with_empty{v};
  REQUIRE_THROWS_AS(pools::wait_any(with_empty), pools::Error);
  REQUIRE_THROWS_AS(pools::wait_all(with_empty), pools::Error);
}

TEST_CASE("task: copies share one task; a moved-from handle is empty", "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.copies", 2);
  Gate gate;
  auto original = pool.add_task("shared", [w = gate.waiter()] {
    w.wait();
    return std::string("result");
  });
  pools::Task<std::string> copy = original;
  pools::Task<std::string> assigned;
  assigned = copy;
  REQUIRE(copy.id() == original.id());
  REQUIRE(assigned.id() == original.id());
  REQUIRE(copy.name() == "shared");
  REQUIRE_FALSE(copy.iscompleted());

  pools::Task<std::string> moved = std::move(copy);
  REQUIRE_FALSE(copy.valid());  // NOLINT(bugprone-use-after-move): that is the point
  REQUIRE(moved.valid());
  REQUIRE(moved.id() == original.id());

  gate.open();
  REQUIRE(original.wait_return() == "result");
  // Every copy sees the completion and the (copyable) result.
  REQUIRE(moved.iscompleted());
  REQUIRE(assigned.wait_return() == "result");
  REQUIRE(moved.wait_return() == "result");

  // A copy outlives the handle it was made from.
  pools::Task<int> survivor;
  {
    auto t = pool.add_task("temporary", [] { return 11; });
    survivor = t;
  }
  REQUIRE(survivor.wait_return() == 11);
  // Self-assignment keeps the handle.
  survivor = *&survivor;
  REQUIRE(survivor.wait_return() == 11);
}

TEST_CASE("task: ids are unique across pools and threads", "[core][thread]") {
  auto& a = pools::get_thread_pool("task.ids.a", 2);
  auto& b = pools::get_thread_pool("task.ids.b", 2);
  std::vector<pools::Task<int>> ta, tb;
  std::thread other([&] {
    for (int i = 0; i < 2000; ++i) tb.push_back(b.add_task("", [] { return 0; }));
  });
  for (int i = 0; i < 2000; ++i) ta.push_back(a.add_task("", [] { return 0; }));
  other.join();
  std::set<std::uint64_t> ids;
  for (auto& t : ta) ids.insert(t.id());
  for (auto& t : tb) ids.insert(t.id());
  REQUIRE(ids.size() == 4000);
  pools::wait_all(ta);
  pools::wait_all(tb);
}

TEST_CASE("task: join waits without throwing; iscompleted and failed follow the task",
          "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.join", 2);
  Gate gate;
  auto t = pool.add_task("fails later", [w = gate.waiter()]() -> int {
    w.wait();
    throw Boom("late");
  });
  REQUIRE_FALSE(t.iscompleted());
  REQUIRE_FALSE(t.failed());
  gate.open();
  REQUIRE_NOTHROW(t.join());
  REQUIRE(t.iscompleted());
  REQUIRE(t.failed());
  REQUIRE_THROWS_AS(t.wait_return(), Boom);
}

TEST_CASE("task: a task's writes are visible after wait", "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.visibility", 2);
  for (int round = 0; round < 1000; ++round) {
    int plain = 0;  // not atomic: the wait must order it
    auto t = pool.add_task("", [&plain, round] { plain = round + 1; });
    t.wait();
    if (plain != round + 1) FAIL("round " << round << ": write not visible after wait");
  }
  for (int round = 0; round < 1000; ++round) {
    int plain = 0;
    auto t = pool.add_task("", [&plain, round] { plain = round + 1; });
    while (!t.iscompleted()) std::this_thread::yield();
    if (plain != round + 1) FAIL("round " << round << ": write not visible after iscompleted");
  }
}

TEST_CASE("task: bursts of live handles created and dropped on one thread stay intact",
          "[core][serial][thread]") {
  // Task memory is recycled through per-thread caches; holding many handles and
  // then dropping them (on the submitting thread or on workers) exercises every
  // path of that cache. The serial pool makes the order fully deterministic.
  auto& serial = pools::get_serial_pool("task.burst");
  auto& thread = pools::get_thread_pool("task.burst.thread", 2);
  for (std::size_t burst : {std::size_t{1}, std::size_t{700}, std::size_t{1500}, std::size_t{3000}}) {
    INFO("burst of " << burst);
    for (pools::PoolBase* pool : {static_cast<pools::PoolBase*>(&serial), &thread}) {
      std::vector<pools::Task<std::size_t>> held;
      for (std::size_t i = 0; i < burst; ++i) held.push_back(pool->add_task("", [i] { return i; }));
      for (std::size_t i = 0; i < burst; i += 2) REQUIRE(held[i].wait_return() == i);
      // Drop every other handle first, then the rest, then one at a time.
      for (std::size_t i = 0; i < burst; i += 2) held[i] = {};
      for (std::size_t i = 1; i < burst; i += 2) REQUIRE(held[i].wait_return() == i);
      while (!held.empty()) held.pop_back();
      auto t = pool->add_task("after", [] { return std::size_t{7}; });
      REQUIRE(t.wait_return() == 7);
    }
  }
}

namespace {
struct Counter {
  int base;
  int add(int x) const { return base + x; }
};
struct CopyThrows {
  CopyThrows() = default;
  CopyThrows(const CopyThrows&) { throw std::runtime_error("copy refused"); }
  CopyThrows(CopyThrows&&) noexcept = default;
};
}  // namespace

TEST_CASE("task: callables and arguments may be move-only, member pointers work",
          "[core][thread][serial]") {
  auto& threads = pools::get_thread_pool("task.callables", 2);
  auto& serial = pools::get_serial_pool("task.callables.serial");
  for (pools::PoolBase* pool : {&threads, &serial}) {
    INFO("pool " << pool->name());
    auto a = pool->add_task("move-only arg", [](std::unique_ptr<int> p) { return *p + 1; },
                            std::make_unique<int>(41));
    REQUIRE(a.wait_return() == 42);
    auto owned = std::make_unique<int>(9);
    auto b = pool->add_task("move-only callable", [p = std::move(owned)] { return *p; });
    REQUIRE(b.wait_return() == 9);
    Counter c{100};
    auto m = pool->add_task("member", &Counter::add, &c, 5);
    REQUIRE(m.wait_return() == 105);
    int calls = 0;
    auto mut = pool->add_task("mutable", [n = 0, &calls]() mutable {
      ++calls;
      return ++n;
    });
    REQUIRE(mut.wait_return() == 1);
    REQUIRE(calls == 1);
  }
}

TEST_CASE("task: an argument whose copy throws makes add_task throw and queues nothing",
          "[core][thread]") {
  auto& pool = pools::get_thread_pool("task.copy-throws", 1);
  CopyThrows arg;
  std::atomic<bool> ran{false};
  REQUIRE_THROWS_WITH(pool.add_task("never", [&ran](const CopyThrows&) { ran = true; }, arg),
                      "copy refused");
  pool.wait_completion();
  REQUIRE(pool.num_active_tasks() == 0);
  REQUIRE_FALSE(ran.load());
  // Moving it in works, and the pool is unharmed.
  auto t = pool.add_task("moved", [&ran](const CopyThrows&) { ran = true; }, std::move(arg));
  t.wait();
  REQUIRE(ran.load());
}
