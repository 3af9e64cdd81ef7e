// The pool registry: names, kinds, sizes, the global pools, close_pools, wait_on_all_pools.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <latch>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

using pools_test::Gate;

namespace {


bool max_threads_set() { return std::getenv("POOLS_MAX_THREADS") != nullptr; }

}  // namespace

TEST_CASE("registry: the same name gives the same pool", "[registry][thread][serial]") {
  auto& a = pools::get_thread_pool("reg.same", 2);
  auto& b = pools::get_thread_pool("reg.same");
  auto& c = pools::get_thread_pool("reg.same", 2);  // the same explicit size is fine
  REQUIRE(&a == &b);
  REQUIRE(&a == &c);
  REQUIRE(a.name() == "reg.same");
  REQUIRE(a.kind() == pools::PoolKind::thread);
  REQUIRE(a.num_workers() == 2);

  auto& s1 = pools::get_serial_pool("reg.same-serial");
  auto& s2 = pools::get_serial_pool("reg.same-serial");
  REQUIRE(&s1 == &s2);
  REQUIRE(s1.kind() == pools::PoolKind::serial);
  REQUIRE(s1.name() == "reg.same-serial");

  REQUIRE(&pools::get_thread_pool("reg.other", 2) != &a);
}

TEST_CASE("registry: a name with no size creates a pool of the default size", "[registry][thread]") {
  auto& p = pools::get_thread_pool("reg.default-size");
  if (!max_threads_set()) {
    auto hw = std::thread::hardware_concurrency();
    REQUIRE(p.num_workers() == (hw == 0 ? p.num_workers() : hw));
  }
  REQUIRE(p.num_workers() >= 1);
}

TEST_CASE("registry: a name used by another kind throws pools::Error", "[registry][thread][serial]") {
  auto& t = pools::get_thread_pool("reg.clash.t", 1);
  REQUIRE_THROWS_AS(pools::get_serial_pool("reg.clash.t"), pools::Error);
  auto& s = pools::get_serial_pool("reg.clash.s");
  REQUIRE_THROWS_AS(pools::get_thread_pool("reg.clash.s"), pools::Error);
  REQUIRE_THROWS_AS(pools::get_thread_pool("reg.clash.s", 2), pools::Error);
  // The clash changed nothing.
  REQUIRE(&pools::get_thread_pool("reg.clash.t") == &t);
  REQUIRE(&pools::get_serial_pool("reg.clash.s") == &s);
  REQUIRE(t.kind() == pools::PoolKind::thread);
  REQUIRE(s.kind() == pools::PoolKind::serial);
}

TEST_CASE("registry: a size of 0 or an absurd size throws pools::Error", "[registry][thread]") {
  REQUIRE_THROWS_AS(pools::get_thread_pool("reg.bad-size", 0), pools::Error);
  REQUIRE_THROWS_AS(pools::get_thread_pool("reg.bad-size", 100000), pools::Error);
  REQUIRE_THROWS_AS(pools::get_thread_pool("reg.bad-size", 4097), pools::Error);
  REQUIRE_THROWS_AS(pools::get_thread_pool("", 0), pools::Error);
  // A refused request registers nothing: the name is still free.
  auto& p = pools::get_thread_pool("reg.bad-size", 2);
  REQUIRE(p.num_workers() == (max_threads_set() ? p.num_workers() : 2));
  auto t = p.add_task("", [] { return 1; });
  REQUIRE(t.wait_return() == 1);
}

TEST_CASE("registry: an existing pool asked for with a different size throws pools::Error",
          "[registry][thread]") {
  auto& p = pools::get_thread_pool("reg.resize", 2);
  REQUIRE_THROWS_AS(pools::get_thread_pool("reg.resize", 3), pools::Error);
  REQUIRE_THROWS_AS(pools::get_thread_pool("reg.resize", 1), pools::Error);
  REQUIRE(&pools::get_thread_pool("reg.resize") == &p);
  REQUIRE(p.num_workers() == 2);
}

TEST_CASE("registry: the global pools", "[registry][thread][serial]") {
  auto& g = pools::global_thread_pool();
  REQUIRE(&pools::get_thread_pool() == &g);
  REQUIRE(&pools::get_thread_pool("") == &g);
  REQUIRE(&pools::get_thread_pool({}, std::nullopt) == &g);
  REQUIRE(g.kind() == pools::PoolKind::thread);
  REQUIRE(g.num_workers() >= 1);
  if (!max_threads_set() && std::thread::hardware_concurrency() != 0)
    REQUIRE(g.num_workers() == std::thread::hardware_concurrency());

  auto& s = pools::get_serial_pool();
  REQUIRE(&pools::get_serial_pool("") == &s);
  REQUIRE(s.kind() == pools::PoolKind::serial);
  REQUIRE(static_cast<pools::PoolBase*>(&s) != &g);

  REQUIRE(&pools::get_thread_pool("reg.not-global") != &g);

  auto t = g.add_task("on global", [] { return 2; });
  REQUIRE(t.wait_return() == 2);
}

TEST_CASE("registry: kinds have names", "[registry]") {
  REQUIRE(pools::to_string(pools::PoolKind::thread) == "thread");
  REQUIRE(pools::to_string(pools::PoolKind::multiprocess) == "multiprocess");
  REQUIRE(pools::to_string(pools::PoolKind::process) == "process");
  REQUIRE(pools::to_string(pools::PoolKind::cluster) == "cluster");
  REQUIRE(pools::to_string(pools::PoolKind::serial) == "serial");
}

TEST_CASE("registry: threads asking for the same new name at once get one pool",
          "[registry][thread]") {
  constexpr int threads = 8;
  constexpr int names = 20;
  std::vector<std::vector<pools::PoolBase*>> seen(threads, std::vector<pools::PoolBase*>(names));
  std::latch start(threads);
  {
    std::vector<std::jthread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        start.arrive_and_wait();
        for (int n = 0; n < names; ++n)
          seen[t][n] = &pools::get_thread_pool("reg.race." + std::to_string(n), 1);
      });
    }
  }
  for (int n = 0; n < names; ++n) {
    for (int t = 1; t < threads; ++t) REQUIRE(seen[t][n] == seen[0][n]);
  }
  for (int n = 0; n < names; ++n) seen[0][n]->shutdown();
}

TEST_CASE("registry: shutdown unregisters; the name then gives a new pool", "[registry][thread]") {
  auto& old_pool = pools::get_thread_pool("reg.reuse", 2);
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) (void)old_pool.add_task("", [&ran] { ran.fetch_add(1); });
  old_pool.shutdown();
  REQUIRE(ran.load() == 100);

  auto& new_pool = pools::get_thread_pool("reg.reuse", 3);  // a new size is fine now
  REQUIRE(&new_pool != &old_pool);
  REQUIRE(new_pool.accepting());
  REQUIRE(new_pool.num_workers() == (max_threads_set() ? new_pool.num_workers() : 3));
  REQUIRE(new_pool.add_task("", [] { return 4; }).wait_return() == 4);
  // The old reference stays valid and keeps refusing.
  REQUIRE_FALSE(old_pool.accepting());
  REQUIRE(old_pool.name() == "reg.reuse");
  REQUIRE_THROWS_AS(old_pool.add_task("", [] { return 1; }), pools::Error);
  new_pool.shutdown();
  // Unregistered, the name is even free for another kind.
  auto& serial = pools::get_serial_pool("reg.reuse");
  REQUIRE(serial.kind() == pools::PoolKind::serial);
}

TEST_CASE("registry: wait_on_all_pools waits for the work of every pool and they stay usable",
          "[registry][thread][serial]") {
  auto& a = pools::get_thread_pool("reg.wait-all.a", 2);
  auto& b = pools::get_thread_pool("reg.wait-all.b", 1);
  auto& g = pools::global_thread_pool();
  Gate gate;
  std::atomic<int> done{0};
  for (auto* p : {&a, &b, &g}) {
    for (int i = 0; i < 10; ++i) {
      (void)p->add_task("", [w = gate.waiter(), &done] {
        w.wait();
        done.fetch_add(1);
      });
    }
  }
  std::jthread opener([&] {
    std::this_thread::sleep_for(30ms);  // likely makes wait_on_all_pools really wait
    gate.open();
  });
  pools::wait_on_all_pools();
  REQUIRE(done.load() == 30);
  REQUIRE(a.num_active_tasks() == 0);
  REQUIRE(b.num_active_tasks() == 0);
  REQUIRE(g.num_active_tasks() == 0);
  // Still usable, still registered.
  REQUIRE(a.accepting());
  REQUIRE(&pools::get_thread_pool("reg.wait-all.a") == &a);
  REQUIRE(b.add_task("", [] { return 9; }).wait_return() == 9);
  pools::wait_on_all_pools();  // idle pools: returns at once
}

TEST_CASE("registry: wait_on_all_pools called from a task waits for the rest and returns",
          "[registry][thread]") {
  auto& p = pools::get_thread_pool("reg.wait-all-inner", 1);
  auto& other = pools::get_thread_pool("reg.wait-all-other", 1);
  std::atomic<int> done{0};
  auto t = p.add_task("waits for everything", [&] {
    for (int i = 0; i < 20; ++i) {
      (void)p.add_task("", [&done] { done.fetch_add(1); });  // only this thread can run these
      (void)other.add_task("", [&done] { done.fetch_add(1); });
    }
    pools::wait_on_all_pools();  // must not wait for the calling task itself
    return done.load();
  });
  REQUIRE(t.wait_for(60s));
  REQUIRE(t.wait_return() == 40);
}

TEST_CASE("registry: close_pools finishes the work and closes every pool and names then give new pools",
          "[registry][thread][serial]") {
  auto& named = pools::get_thread_pool("reg.close", 2);
  auto& global = pools::global_thread_pool();
  auto& serial = pools::get_serial_pool("reg.close-serial");
  std::atomic<int> ran{0};
  for (int i = 0; i < 500; ++i) {
    (void)named.add_task("", [&ran] { ran.fetch_add(1); });
    (void)global.add_task("", [&ran] { ran.fetch_add(1); });
  }
  pools::close_pools();
  REQUIRE(ran.load() == 1000);

  for (auto* p : {&named, &global, &serial}) {
    INFO("pool " << p->name());
    REQUIRE_FALSE(p->accepting());
    REQUIRE_THROWS_AS(p->add_task("", [] { return 1; }), pools::Error);
    REQUIRE(p->num_active_tasks() == 0);
  }

  auto& named2 = pools::get_thread_pool("reg.close", 2);
  REQUIRE(&named2 != &named);
  REQUIRE(named2.add_task("", [] { return 5; }).wait_return() == 5);
  auto& global2 = pools::global_thread_pool();
  REQUIRE(&global2 != &global);
  REQUIRE(global2.accepting());
  REQUIRE(global2.add_task("", [] { return 6; }).wait_return() == 6);
  auto& serial2 = pools::get_serial_pool("reg.close-serial");
  REQUIRE(&serial2 != &serial);
  REQUIRE(serial2.add_task("", [] { return 7; }).wait_return() == 7);

  REQUIRE_NOTHROW(pools::close_pools());
  REQUIRE_NOTHROW(pools::close_pools());  // repeatable, also with nothing registered
  REQUIRE_FALSE(named2.accepting());
}

TEST_CASE("registry: close_pools waits for work that tasks add while it waits",
          "[registry][thread]") {
  auto& p = pools::get_thread_pool("reg.close-nested", 2);
  std::atomic<int> leaves{0};
  for (int i = 0; i < 50; ++i) {
    (void)p.add_task("root", [&p, &leaves] {
      for (int j = 0; j < 10; ++j) {
        try {
          (void)p.add_task("leaf", [&leaves] { leaves.fetch_add(1); });
        } catch (const pools::Error&) {
          leaves.fetch_add(1000000);  // refused while its parent was accepted: flagged below
        }
      }
    });
  }
  pools::close_pools();
  // close_pools waits before it shuts down, so no root was refused its leaves.
  REQUIRE(leaves.load() == 500);
}

TEST_CASE("registry: find_pool returns a registered pool and names the unknown one",
          "[registry][thread][serial]") {
  auto& t = pools::get_thread_pool("reg.find.thread", 1);
  auto& s = pools::get_serial_pool("reg.find.serial");
  REQUIRE(&pools::find_pool("reg.find.thread") == &t);
  REQUIRE(&pools::find_pool("reg.find.serial") == &s);
  try {
    (void)pools::find_pool("reg.find.nobody");
    FAIL("find_pool of an unknown name did not throw");
  } catch (const pools::Error& e) {
    const std::string what = e.what();
    REQUIRE(what.find("reg.find.nobody") != std::string::npos);
    REQUIRE(what.find("reg.find.thread") != std::string::npos);  // says what does exist
  }
  t.shutdown();
  REQUIRE_THROWS_AS(pools::find_pool("reg.find.thread"), pools::Error);
}
