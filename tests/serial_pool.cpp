// The serial pool: every task runs at once, in the calling thread.
#include <catch2/catch.hpp>

#include <pools/pools.hpp>

#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace {
struct Oops {
  int code;
};
}  // namespace

// First in this file on purpose: with the calling thread's node cache still
// fresh, this exact sequence (one node freed right after the first chunk was
// carved, then a long run of live handles, then one freed) walks the cache's
// bookkeeping through a refill from the shared depot. Everything happens on one
// thread, so it fails the same way on every run if that bookkeeping is off.
TEST_CASE("serial pool: one handle dropped and then 1000 held and one dropped", "[serial][core]") {
  auto& pool = pools::get_serial_pool("serial.memory");
  { auto first = pool.add_task("", [] { return 1; }); }
  std::vector<pools::Task<int>> held;
  for (int i = 0; i < 1000; ++i) held.push_back(pool.add_task("", [i] { return i; }));
  held.pop_back();
  for (int i = 0; i < 999; ++i) REQUIRE(held[i].wait_return() == i);
  held.clear();
  REQUIRE(pool.add_task("", [] { return 5; }).wait_return() == 5);
}

TEST_CASE("serial pool: a task runs in the calling thread before add_task returns", "[serial]") {
  auto& pool = pools::get_serial_pool("serial.inline");
  REQUIRE(pool.kind() == pools::PoolKind::serial);
  REQUIRE(pool.num_workers() >= 1);
  bool ran = false;
  auto t = pool.add_task("where", [&ran] {
    ran = true;
    return std::this_thread::get_id();
  });
  REQUIRE(ran);              // no wait needed
  REQUIRE(t.iscompleted());  // already final
  REQUIRE(pool.num_active_tasks() == 0);
  REQUIRE(t.wait_return() == std::this_thread::get_id());

  // The same from another thread: it runs on that thread.
  std::thread::id other_id, seen_id;
  std::thread other([&] {
    other_id = std::this_thread::get_id();
    seen_id = pool.add_task("elsewhere", [] { return std::this_thread::get_id(); }).wait_return();
  });
  other.join();
  REQUIRE(seen_id == other_id);
}

TEST_CASE("serial pool: tasks run in the order they are added", "[serial]") {
  auto& pool = pools::get_serial_pool("serial.order");
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) (void)pool.add_task("", [&order, i] { order.push_back(i); });
  REQUIRE(order.size() == 100);
  for (int i = 0; i < 100; ++i) REQUIRE(order[i] == i);
}

TEST_CASE("serial pool: handles are the same Task<T> type as the thread pool's", "[serial]") {
  auto& serial = pools::get_serial_pool("serial.types");
  auto& thread = pools::get_thread_pool("serial.types.thread", 1);
  auto a = serial.add_task("", [] { return 1; });
  auto b = thread.add_task("", [] { return 1; });
  static_assert(std::is_same_v<decltype(a), decltype(b)>);
  std::vector<pools::Task<int>> both{a, b};
  pools::wait_all(both);
  REQUIRE(a.wait_return() + b.wait_return() == 2);
}

TEST_CASE("serial pool: a task's exception is thrown by wait as the same type and not by add_task",
          "[serial]") {
  auto& pool = pools::get_serial_pool("serial.exceptions");
  pools::Task<int> t;
  REQUIRE_NOTHROW(t = pool.add_task("fails", []() -> int { throw std::invalid_argument("bad"); }));
  REQUIRE(t.iscompleted());
  REQUIRE(t.failed());
  REQUIRE_THROWS_MATCHES(t.wait_return(), std::invalid_argument, Catch::Matchers::Message("bad"));
  auto o = pool.add_task("oops", [] { throw Oops{3}; });
  try {
    o.wait();
    FAIL("wait did not throw");
  } catch (const Oops& e) {
    REQUIRE(e.code == 3);
  }
}

TEST_CASE("serial pool: a task may add tasks to the serial pool", "[serial]") {
  auto& pool = pools::get_serial_pool("serial.nested");
  auto t = pool.add_task("outer", [&pool] {
    auto inner = pool.add_task("inner", [] { return 20; });
    return inner.wait_return() + 1;
  });
  REQUIRE(t.wait_return() == 21);
}

TEST_CASE("serial pool: nothing is left to cancel", "[serial]") {
  auto& pool = pools::get_serial_pool("serial.cancel");
  auto t = pool.add_task("", [] { return 1; });
  REQUIRE_FALSE(t.cancel());
  REQUIRE(t.wait_return() == 1);
}
