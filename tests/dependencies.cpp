// Tasks that run after other tasks: add_task_after with after(...) and
// after_all(...), results passed on, skipping on failure, cancellation, and
// dependencies across pools and processes.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

using pools_test::Gate;

namespace {

int square(int x) { return x * x; }
int fail_with(int code) { throw std::runtime_error("failed with " + std::to_string(code)); }

}  // namespace

TEST_CASE("dependencies: a task gets its dependencies' results, in order, then its own arguments",
          "[dependencies]") {
  auto& pool = pools::get_thread_pool("deps.results", 2);
  auto a = pool.add_task("a", square, 3);
  auto b = pool.add_task("b", [] { return std::string("x"); });
  auto c = pools::add_task_after(pool, "c", pools::after(a, b),
                                 [](int x, std::string s, int extra) {
                                   return s + std::to_string(x + extra);
                                 },
                                 100);
  REQUIRE(c.wait_return() == "x109");
  REQUIRE(c.name() == "c");
  // void dependencies pass nothing.
  auto v = pool.add_task("void", [] {});
  auto after_void = pools::add_task_after(pool, "after void", pools::after(v, a),
                                          [](int x) { return x + 1; });
  REQUIRE(after_void.wait_return() == 10);
}

TEST_CASE("dependencies: a task does not start before its dependencies finished",
          "[dependencies]") {
  auto& pool = pools::get_thread_pool("deps.order", 2);
  Gate gate;
  auto held = pools_test::hold_worker(pool, gate, "held", 5);
  std::atomic<int> ran{0};
  auto dependent = pools::add_task_after(pool, "dependent", pools::after(held),
                                         [&ran](int x) {
                                           ran.fetch_add(1);
                                           return x * 2;
                                         });
  pool.add_task("other", square, 1).wait();  // the pool runs other work meanwhile
  REQUIRE_FALSE(dependent.iscompleted());
  REQUIRE(ran.load() == 0);
  gate.open();
  REQUIRE(dependent.wait_return() == 10);
  REQUIRE(ran.load() == 1);
}

TEST_CASE("dependencies: a failed, cancelled or skipped dependency skips the task",
          "[dependencies]") {
  auto& pool = pools::get_thread_pool("deps.skip", 2);
  std::atomic<int> ran{0};
  auto bad = pool.add_task("bad", fail_with, 7);
  auto skipped = pools::add_task_after(pool, "needs bad", pools::after(bad), [&ran](int) {
    ran.fetch_add(1);
    return 0;
  });
  REQUIRE_THROWS_MATCHES(skipped.wait(), pools::Skipped,
                         Catch::Matchers::Message(
                             "task 'needs bad' was skipped: its dependency 'bad' (id " +
                             std::to_string(bad.id()) + ") failed: std::runtime_error: failed with 7"));
  // Skipping spreads down a chain.
  auto next = pools::add_task_after(pool, "next", pools::after(skipped), [&ran](int) {
    ran.fetch_add(1);
    return 0;
  });
  REQUIRE_THROWS_WITH(next.wait(), Catch::Contains("'needs bad'") && Catch::Contains("was skipped"));
  // A cancelled dependency.
  Gate gate;
  auto held = pools_test::hold_worker(pool, gate);
  auto held2 = pools_test::hold_worker(pool, gate, "held 2");
  auto queued = pool.add_task("queued", square, 2);
  REQUIRE(queued.cancel());
  auto after_cancelled = pools::add_task_after(pool, "after cancelled", pools::after(queued),
                                               [&ran](int) {
                                                 ran.fetch_add(1);
                                                 return 0;
                                               });
  gate.open();
  REQUIRE_THROWS_WITH(after_cancelled.wait(), Catch::Contains("was cancelled"));
  REQUIRE_THROWS_AS(after_cancelled.wait(), pools::Skipped);
  REQUIRE(ran.load() == 0);
  REQUIRE_THROWS_AS(bad.wait(), std::runtime_error);
  // The dependent's own failure comes through as itself.
  auto good = pool.add_task("good", square, 2);
  auto throws = pools::add_task_after(pool, "throws", pools::after(good), [](int x) -> int {
    throw std::invalid_argument("bad " + std::to_string(x));
  });
  REQUIRE_THROWS_MATCHES(throws.wait(), std::invalid_argument, Catch::Matchers::Message("bad 4"));
}

TEST_CASE("dependencies: cancelling a waiting task keeps it from ever running", "[dependencies]") {
  auto& pool = pools::get_thread_pool("deps.cancel", 2);
  Gate gate;
  auto held = pools_test::hold_worker(pool, gate, "held", 1);
  std::atomic<int> ran{0};
  auto dependent = pools::add_task_after(pool, "dependent", pools::after(held), [&ran](int) {
    ran.fetch_add(1);
    return 0;
  });
  REQUIRE(dependent.cancel());
  REQUIRE_THROWS_AS(dependent.wait(), pools::Cancelled);
  gate.open();
  REQUIRE(held.wait_return() == 1);
  pool.wait_completion();
  REQUIRE(ran.load() == 0);
}

TEST_CASE("dependencies: after_all passes a list of results; chains and fan-ins",
          "[dependencies]") {
  auto& pool = pools::get_thread_pool("deps.all", 2);
  std::vector<pools::Task<int>> parts;
  for (int i = 1; i <= 10; ++i) parts.push_back(pool.add_task("part", square, i));
  auto total = pools::add_task_after(pool, "total", pools::after_all(parts),
                                     [](std::vector<int> v) {
                                       return std::accumulate(v.begin(), v.end(), 0);
                                     });
  REQUIRE(total.wait_return() == 385);
  REQUIRE_THROWS_AS(pools::add_task_after(pool, "none", pools::after_all(std::vector<pools::Task<int>>{}),
                                          [](std::vector<int>) { return 0; }),
                    pools::Error);
  // A chain of 1000 on the serial pool (each runs as its dependency completes).
  auto& serial = pools::get_serial_pool("deps.serial");
  auto link = serial.add_task("first", [] { return 0; });
  for (int i = 0; i < 1000; ++i)
    link = pools::add_task_after(serial, "link", pools::after(link), [](int x) { return x + 1; });
  REQUIRE(link.wait_return() == 1000);
}

TEST_CASE("dependencies: across pools and across processes", "[dependencies][multiprocess]") {
  auto& threads = pools::get_thread_pool("deps.threads", 2);
  auto& processes = pools::get_multiprocess_pool("deps.processes", 2);
  auto a = threads.add_task("a", square, 6);
  auto b = processes.add_task("b", square, 7);
  // Results travel to the worker process as arguments.
  auto sum = pools::add_task_after(processes, "sum", pools::after(a, b),
                                   [](int x, int y) { return x + y; });
  REQUIRE(sum.wait_return() == 85);
  auto back = pools::add_task_after(threads, "back", pools::after(sum), [](int s) { return -s; });
  REQUIRE(back.wait_return() == -85);
  // A worker crash in a dependency skips the dependent.
  auto crash = processes.add_task("crash", [](int) -> int {
    volatile int* p = nullptr;
    return *p;
  }, 0);
  auto never = pools::add_task_after(threads, "never", pools::after(crash), [](int x) { return x; });
  REQUIRE_THROWS_AS(never.wait(), pools::Skipped);
  REQUIRE_THROWS_AS(crash.wait(), pools::WorkerLost);
}

TEST_CASE("dependencies: a skipped task nobody waited for is reported", "[dependencies]") {
  auto& pool = pools::get_thread_pool("deps.report", 1);
  {
    auto bad = pool.add_task("root cause", fail_with, 3);
    (void)pools::add_task_after(pool, "orphan", pools::after(bad), [](int x) { return x; });
    REQUIRE_THROWS(bad.wait());
  }
  // Both handles are gone: wait_completion reports the skipped task on stderr.
  const std::string text = pools_test::stderr_of("deps-report", [&pool] { pool.wait_completion(); });
  REQUIRE_THAT(text, Catch::Contains("task 'orphan'") && Catch::Contains("nobody waited for it") &&
                         Catch::Contains("its dependency 'root cause'"));
}
