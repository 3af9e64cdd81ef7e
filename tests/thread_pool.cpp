// The thread pool: exceptions, nested (helping) waits, concurrent submission,
// shutdown, use of every worker, many pools at once.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <latch>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

using pools_test::Gate;

namespace {

struct Oops {  // not a std::exception, thrown by value
  int code;
};

struct DerivedError : std::logic_error {
  explicit DerivedError(int c) : std::logic_error("derived " + std::to_string(c)), code(c) {}
  int code;
};


// fib with one task per call: every parent waits for its two children, so on a
// pool of one thread this only finishes if waiting runs queued work.
int fib(pools::PoolBase* pool, int n) {
  if (n < 2) return n;
  auto a = pool->add_task("fib", fib, pool, n - 1);
  auto b = pool->add_task("fib", fib, pool, n - 2);
  return a.wait_return() + b.wait_return();
}

int fib_plain(int n) { return n < 2 ? n : fib_plain(n - 1) + fib_plain(n - 2); }

}  // namespace

TEST_CASE("thread pool: tasks run on pool threads and not on the caller's", "[thread]") {
  auto& pool = pools::get_thread_pool("tp.threads", 2);
  REQUIRE(pool.kind() == pools::PoolKind::thread);
  REQUIRE(pool.num_workers() == 2);
  auto caller = std::this_thread::get_id();
  auto t = pool.add_task("where", [] { return std::this_thread::get_id(); });
  REQUIRE(t.wait_return() != caller);
}

TEST_CASE("thread pool: wait rethrows the task's exception as the same type", "[thread]") {
  auto& pool = pools::get_thread_pool("tp.exceptions", 2);

  SECTION("a std exception keeps its type and message") {
    auto t = pool.add_task("range", []() -> int { throw std::out_of_range("index 12"); });
    REQUIRE_THROWS_MATCHES(t.wait_return(), std::out_of_range, Catch::Matchers::Message("index 12"));
  }
  SECTION("a type derived from a std exception keeps its own type and members") {
    auto t = pool.add_task("derived", [] { throw DerivedError(17); });
    try {
      t.wait();
      FAIL("wait did not throw");
    } catch (const DerivedError& e) {
      REQUIRE(e.code == 17);
      REQUIRE(std::string(e.what()) == "derived 17");
    }
  }
  SECTION("a non-std type thrown by value comes back as that type") {
    auto t = pool.add_task("oops", [](int c) -> std::string { throw Oops{c}; }, 99);
    try {
      (void)t.wait_return();
      FAIL("wait_return did not throw");
    } catch (const Oops& o) {
      REQUIRE(o.code == 99);
    }
    // And again, to every later waiter.
    REQUIRE_THROWS_AS(t.wait(), Oops);
  }
  SECTION("a thrown int comes back as an int") {
    auto t = pool.add_task("int", [] { throw 42; });
    REQUIRE_THROWS_AS(t.wait(), int);
  }
  SECTION("the library's own errors thrown by a task are not wrapped") {
    auto t = pool.add_task("cancelled", []() -> int { throw pools::Cancelled("by hand"); });
    REQUIRE_THROWS_MATCHES(t.wait(), pools::Cancelled, Catch::Matchers::Message("by hand"));
  }
  SECTION("a failing task does not take its worker down") {
    std::vector<pools::Task<void>> failing;
    for (int i = 0; i < 50; ++i) failing.push_back(pool.add_task("fails", [] { throw Oops{1}; }));
    pool.wait_completion();
    for (auto& f : failing) REQUIRE_THROWS_AS(f.wait(), Oops);
    auto t = pool.add_task("after", [] { return 5; });
    REQUIRE(t.wait_return() == 5);
  }
}

TEST_CASE("thread pool: recursive fib with a task per call finishes on 1 and 2 threads",
          "[thread]") {
  auto threads = GENERATE(std::size_t{1}, std::size_t{2});
  INFO("threads: " << threads);
  auto& pool = pools::get_thread_pool("tp.fib." + std::to_string(threads), threads);
  REQUIRE(pool.num_workers() == threads);
  auto t = pool.add_task("fib", fib, &pool, 18);
  REQUIRE(t.wait_for(60s));  // a deadlock fails here instead of hanging the suite
  REQUIRE(t.wait_return() == fib_plain(18));
  pool.wait_completion();
  REQUIRE(pool.num_active_tasks() == 0);
}

TEST_CASE("thread pool: a task fans out 100 children and waits for all of them", "[thread]") {
  auto threads = GENERATE(std::size_t{1}, std::size_t{2});
  INFO("threads: " << threads);
  auto& pool = pools::get_thread_pool("tp.fan." + std::to_string(threads), threads);

  SECTION("through wait_all") {
    auto parent = pool.add_task("parent", [&pool] {
      std::vector<pools::Task<int>> children;
      for (int i = 0; i < 100; ++i) children.push_back(pool.add_task("child", [i] { return i; }));
      pools::wait_all(children);
      int sum = 0;
      for (auto& c : children) sum += c.wait_return();
      return sum;
    });
    REQUIRE(parent.wait_for(60s));
    REQUIRE(parent.wait_return() == 4950);
  }
  SECTION("through wait_completion called from the task") {
    auto parent = pool.add_task("parent", [&pool] {
      std::vector<pools::Task<int>> children;
      for (int i = 0; i < 100; ++i) children.push_back(pool.add_task("child", [i] { return i; }));
      pool.wait_completion();  // waits for all but the calling task
      int done = 0;
      for (auto& c : children) done += c.iscompleted() ? 1 : 0;
      return done;
    });
    REQUIRE(parent.wait_for(60s));
    REQUIRE(parent.wait_return() == 100);
  }
  SECTION("two levels deep, each level waiting with wait_any and wait") {
    auto parent = pool.add_task("parent", [&pool] {
      std::vector<pools::Task<int>> mids;
      for (int i = 0; i < 10; ++i) {
        mids.push_back(pool.add_task("mid", [&pool, i] {
          std::vector<pools::Task<int>> leaves;
          for (int j = 0; j < 10; ++j) leaves.push_back(pool.add_task("leaf", [i, j] { return i * 10 + j; }));
          (void)pools::wait_any(leaves);
          int s = 0;
          for (auto& l : leaves) s += l.wait_return();
          return s;
        }));
      }
      int s = 0;
      for (auto& m : mids) s += m.wait_return();
      return s;
    });
    REQUIRE(parent.wait_for(60s));
    REQUIRE(parent.wait_return() == 4950);
  }
}

TEST_CASE("thread pool: 8 threads submitting 20000 tasks each lose nothing", "[thread]") {
  auto& pool = pools::get_thread_pool("tp.submit", 2);
  constexpr int submitters = 8;
  constexpr int per_thread = 20000;
  std::atomic<std::uint64_t> count{0};
  std::atomic<std::uint64_t> sum{0};
  std::latch start(submitters);
  {
    std::vector<std::jthread> threads;
    for (int s = 0; s < submitters; ++s) {
      threads.emplace_back([&, s] {
        start.arrive_and_wait();  // all submit at once
        for (int i = 0; i < per_thread; ++i) {
          std::uint64_t v = static_cast<std::uint64_t>(s) * per_thread + i;
          (void)pool.add_task("", [&count, &sum, v] {
            count.fetch_add(1, std::memory_order_relaxed);
            sum.fetch_add(v, std::memory_order_relaxed);
          });
        }
      });
    }
  }
  pool.wait_completion();
  constexpr std::uint64_t n = std::uint64_t{submitters} * per_thread;
  REQUIRE(count.load() == n);
  REQUIRE(sum.load() == n * (n - 1) / 2);  // each task ran once: none lost, none twice
  REQUIRE(pool.num_active_tasks() == 0);
}

TEST_CASE("thread pool: submitting from inside tasks while others submit loses nothing",
          "[thread]") {
  auto& pool = pools::get_thread_pool("tp.submit-inner", 2);
  std::atomic<int> count{0};
  std::vector<pools::Task<void>> outer;
  std::mutex m;
  {
    std::vector<std::jthread> threads;
    for (int s = 0; s < 4; ++s) {
      threads.emplace_back([&] {
        for (int i = 0; i < 200; ++i) {
          auto t = pool.add_task("outer", [&pool, &count] {
            for (int j = 0; j < 10; ++j) (void)pool.add_task("inner", [&count] { count.fetch_add(1); });
            count.fetch_add(1);
          });
          std::lock_guard lock(m);
          outer.push_back(t);
        }
      });
    }
  }
  pools::wait_all(outer);
  pool.wait_completion();  // also covers tasks added while waiting
  REQUIRE(count.load() == 4 * 200 * 11);
}

TEST_CASE("thread pool: shutdown runs everything queued and then add_task throws pools::Error",
          "[thread]") {
  auto& pool = pools::get_thread_pool("tp.shutdown", 2);
  Gate gate;
  std::atomic<int> ran{0};
  std::vector<pools::Task<int>> tasks;
  // Hold both workers so the rest is still queued when shutdown starts.
  for (int i = 0; i < 2; ++i) {
    tasks.push_back(pool.add_task("holder", [w = gate.waiter(), &ran] {
      w.wait();
      ran.fetch_add(1);
      return 0;
    }));
  }
  for (int i = 0; i < 5000; ++i) {
    tasks.push_back(pool.add_task("queued", [&ran, i] {
      ran.fetch_add(1);
      return i;
    }));
  }
  std::jthread opener([&] {
    std::this_thread::sleep_for(30ms);  // likely lets shutdown begin with work queued
    gate.open();
  });
  pool.shutdown();
  REQUIRE_FALSE(pool.accepting());
  REQUIRE(ran.load() == 5002);
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    REQUIRE(tasks[i].iscompleted());
    REQUIRE_FALSE(tasks[i].failed());
  }
  REQUIRE(tasks[2 + 4999].wait_return() == 4999);
  REQUIRE_THROWS_AS(pool.add_task("late", [] { return 1; }), pools::Error);
  REQUIRE(ran.load() == 5002);
  REQUIRE_NOTHROW(pool.shutdown());
  REQUIRE(pool.num_active_tasks() == 0);
}

TEST_CASE("thread pool: concurrent shutdowns all return after the work is done", "[thread]") {
  auto& pool = pools::get_thread_pool("tp.shutdown-concurrent", 2);
  std::atomic<int> ran{0};
  for (int i = 0; i < 2000; ++i) (void)pool.add_task("", [&ran] { ran.fetch_add(1); });
  std::vector<std::future<int>> seen;
  for (int i = 0; i < 4; ++i) {
    seen.push_back(std::async(std::launch::async, [&] {
      pool.shutdown();
      return ran.load();
    }));
  }
  for (auto& f : seen) {
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    REQUIRE(f.get() == 2000);
  }
}

TEST_CASE("thread pool: a task submitting to its own pool during shutdown either runs or throws",
          "[thread]") {
  auto& pool = pools::get_thread_pool("tp.shutdown-inner", 2);
  std::atomic<int> added{0}, ran{0}, refused{0};
  for (int i = 0; i < 200; ++i) {
    (void)pool.add_task("spawner", [&] {
      try {
        (void)pool.add_task("child", [&ran] { ran.fetch_add(1); });
        added.fetch_add(1);
      } catch (const pools::Error&) {
        refused.fetch_add(1);
      }
    });
  }
  pool.shutdown();
  REQUIRE(added.load() + refused.load() == 200);
  REQUIRE(ran.load() == added.load());  // nothing accepted was dropped
}

TEST_CASE("thread pool: every worker runs a task at the same time", "[thread]") {
  // Each task waits until all num_workers tasks have arrived; a pool that does
  // not use every worker at once would leave them waiting until the deadline.
  auto check_all_workers = [](pools::PoolBase& pool) {
    const std::size_t n = pool.num_workers();
    INFO("pool " << pool.name() << " with " << n << " workers");
    std::latch all_in(static_cast<std::ptrdiff_t>(n));
    std::vector<pools::Task<bool>> tasks;
    std::mutex ids_mutex;
    std::set<std::thread::id> ids;
    for (std::size_t i = 0; i < n; ++i) {
      tasks.push_back(pool.add_task("rendezvous", [&] {
        {
          std::lock_guard lock(ids_mutex);
          ids.insert(std::this_thread::get_id());
        }
        all_in.count_down();
        auto deadline = std::chrono::steady_clock::now() + 20s;
        while (!all_in.try_wait()) {
          if (std::chrono::steady_clock::now() > deadline) return false;
          std::this_thread::sleep_for(1ms);
        }
        return true;
      }));
    }
    for (auto& t : tasks) REQUIRE(t.wait_return());
    REQUIRE(ids.size() == n);
  };
  SECTION("a pool of 4 threads") { check_all_workers(pools::get_thread_pool("tp.rendezvous.4", 4)); }
  SECTION("a pool of the default size") {
    auto& pool = pools::get_thread_pool("tp.rendezvous.default");
    REQUIRE(pool.num_workers() >= 1);
    check_all_workers(pool);
  }
  SECTION("a pool of 16 threads on fewer cores") {
    check_all_workers(pools::get_thread_pool("tp.rendezvous.16", 16));
  }
}

TEST_CASE("thread pool: many pools work at once and each on its own threads", "[thread]") {
  constexpr int num_pools = 16;
  std::vector<pools::PoolBase*> list;
  for (int i = 0; i < num_pools; ++i)
    list.push_back(&pools::get_thread_pool("tp.many." + std::to_string(i), 2));
  std::set<pools::PoolBase*> distinct(list.begin(), list.end());
  REQUIRE(distinct.size() == num_pools);

  std::vector<std::atomic<int>> counts(num_pools);
  {
    std::vector<std::jthread> threads;
    for (int p = 0; p < num_pools; ++p) {
      threads.emplace_back([&, p] {
        for (int i = 0; i < 500; ++i)
          (void)list[p]->add_task("", [&counts, p] { counts[p].fetch_add(1); });
      });
    }
  }
  pools::wait_on_all_pools();
  for (int p = 0; p < num_pools; ++p) {
    INFO("pool " << p);
    REQUIRE(counts[p].load() == 500);
    REQUIRE(list[p]->num_active_tasks() == 0);
  }
  // A task of one pool may wait for a task of another.
  auto inner = list[1]->add_task("inner", [] { return 3; });
  auto outer = list[0]->add_task("outer", [inner] { return inner.wait_return() * 2; });
  REQUIRE(outer.wait_return() == 6);
  for (auto* p : list) p->shutdown();
}

TEST_CASE("thread pool: num_active_tasks counts queued and running tasks", "[thread]") {
  auto& pool = pools::get_thread_pool("tp.active", 1);
  Gate gate;
  auto running = pools_test::hold_worker(pool, gate, "running");
  std::vector<pools::Task<void>> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(pool.add_task("queued", [] {}));
  REQUIRE(pool.num_active_tasks() == 6);
  gate.open();
  pool.wait_completion();
  REQUIRE(pool.num_active_tasks() == 0);
}

TEST_CASE("thread pool: wait_completion waits for tasks added by running tasks", "[thread]") {
  auto& pool = pools::get_thread_pool("tp.wait-completion", 2);
  std::atomic<int> leaves{0};
  for (int i = 0; i < 20; ++i) {
    (void)pool.add_task("root", [&pool, &leaves] {
      for (int j = 0; j < 20; ++j) {
        (void)pool.add_task("branch", [&pool, &leaves] {
          std::this_thread::sleep_for(50us);  // widens the window; not an outcome
          (void)pool.add_task("leaf", [&leaves] { leaves.fetch_add(1); });
        });
      }
    });
  }
  pool.wait_completion();
  REQUIRE(leaves.load() == 400);
}

TEST_CASE("thread pool: two 1-thread pools whose tasks wait on each other do not deadlock",
          "[thread]") {
  // A (pool 1) waits for B (pool 2), which waits for C, queued on pool 1 behind
  // A: only A's worker can run C, and only while it waits for B.
  auto& p1 = pools::get_thread_pool("tp.ping", 1);
  auto& p2 = pools::get_thread_pool("tp.pong", 1);
  auto a = p1.add_task("A", [&p1, &p2] {
    auto b = p2.add_task("B", [&p1] {
      auto c = p1.add_task("C", [] { return 1; });
      return c.wait_return() + 10;
    });
    return b.wait_return() + 100;
  });
  REQUIRE(a.wait_for(60s));
  REQUIRE(a.wait_return() == 111);
}

TEST_CASE("thread pool: a timed wait inside a task times out and the worker keeps working",
          "[thread]") {
  auto& pool = pools::get_thread_pool("tp.timed-inner", 2);
  Gate gate;
  auto held = pools_test::hold_worker(pool, gate, "held", 1);
  auto waiter = pool.add_task("waiter", [held] {
    const bool first = held.wait_for(50ms);  // held stays blocked: must time out
    return first;
  });
  REQUIRE(waiter.wait_for(60s));
  REQUIRE_FALSE(waiter.wait_return());
  // The same worker still runs tasks.
  REQUIRE(pool.add_task("after", [] { return 2; }).wait_return() == 2);
  gate.open();
  REQUIRE(held.wait_return() == 1);
}

TEST_CASE("thread pool: a task's exception crosses nested waits with its type", "[thread]") {
  auto& pool = pools::get_thread_pool("tp.nested-exception", 1);
  auto outer = pool.add_task("outer", [&pool] {
    auto inner = pool.add_task("inner", []() -> int { throw Oops{7}; });
    return inner.wait_return();  // rethrows Oops inside outer, so outer fails with it
  });
  try {
    (void)outer.wait_return();
    FAIL("no exception");
  } catch (const Oops& o) {
    REQUIRE(o.code == 7);
  }
}

TEST_CASE("thread pool: wait_any and wait_all inside a task on a 1-thread pool", "[thread]") {
  auto& pool = pools::get_thread_pool("tp.any-inner", 1);
  auto outer = pool.add_task("outer", [&pool] {
    std::vector<pools::Task<int>> children;
    for (int i = 0; i < 5; ++i) children.push_back(pool.add_task("child", [i] { return i; }));
    std::size_t first = pools::wait_any(children);  // only runnable by this thread's help
    pools::wait_all(children);
    return static_cast<int>(first < children.size());
  });
  REQUIRE(outer.wait_for(60s));
  REQUIRE(outer.wait_return() == 1);
}
