// Failure-domain groups: at most K tasks of a group at once in the order
// added, groups in parallel, skipping after a failure, keep-going, the report,
// cancel, commands and worker processes in groups, bad input.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using pools_test::Gate;

namespace {

// Counts how many tasks run at once and the most there ever were.
struct Occupancy {
  std::atomic<int> now{0};
  std::atomic<int> most{0};
  void enter() {
    const int n = now.fetch_add(1) + 1;
    int m = most.load();
    while (n > m && !most.compare_exchange_weak(m, n)) {
    }
  }
  void leave() { now.fetch_sub(1); }
};

int fail_with(int code) { throw std::runtime_error("failed with " + std::to_string(code)); }

// For the worker processes: appends "i\n" to the file at `path`.
int append_line(std::string path, int i) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  const std::string line = std::to_string(i) + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + path);
  return i;
}
int fail_in_worker(int i) { throw std::invalid_argument("device " + std::to_string(i) + " broke"); }

// Rethrows t's failure and returns its pools::Skipped.
template <class T>
pools::Skipped skipped_of(const T& t) {
  try {
    t.wait();
  } catch (const pools::Skipped& e) {
    return e;
  }
  FAIL("the task was not skipped");
  throw;
}

}  // namespace

TEST_CASE("groups: limit 1 runs a group's tasks one at a time, in the order added",
          "[groups][thread]") {
  auto& pool = pools::get_thread_pool("groups.order", 4);
  pools::Groups groups(pool);
  constexpr int n_groups = 4, per_group = 50;
  Occupancy occ[n_groups];
  std::mutex m;
  std::vector<int> order[n_groups];
  std::vector<pools::Task<void>> tasks;
  // Interleaved across groups, as the input of a real run would be.
  for (int i = 0; i < per_group; ++i) {
    for (int g = 0; g < n_groups; ++g) {
      tasks.push_back(groups.add_task("g" + std::to_string(g), "t", [&, g, i] {
        occ[g].enter();
        {
          std::lock_guard lock(m);
          order[g].push_back(i);
        }
        std::this_thread::yield();
        occ[g].leave();
      }));
    }
  }
  pools::wait_all(tasks);
  groups.wait();  // the accounting follows the tasks' completion
  for (int g = 0; g < n_groups; ++g) {
    REQUIRE(occ[g].most.load() == 1);
    std::vector<int> expected(per_group);
    for (int i = 0; i < per_group; ++i) expected[i] = i;
    REQUIRE(order[g] == expected);
  }
  auto r = groups.report();
  REQUIRE(r.added == n_groups * per_group);
  REQUIRE(r.succeeded == r.added);
  REQUIRE(r.ok());
  REQUIRE(r.groups.size() == n_groups);
  REQUIRE(r.groups[0].group == "g0");
  REQUIRE(groups.in_pool() == 0);
}

TEST_CASE("groups: a limit of K runs up to K of a group at once, never more", "[groups][thread]") {
  constexpr std::size_t k = 3;
  auto& pool = pools::get_thread_pool("groups.limit", 4);
  pools::Groups groups(pool, {.limit = k});
  // The first K meet at a latch: they can only pass it if K run at once.
  std::latch together(k);
  Occupancy occ;
  std::vector<pools::Task<void>> tasks;
  for (std::size_t i = 0; i < 30; ++i) {
    tasks.push_back(groups.add_task("rack", "t" + std::to_string(i), [&, i] {
      occ.enter();
      if (i < k) together.arrive_and_wait();
      std::this_thread::yield();
      occ.leave();
    }));
  }
  pools::wait_all(tasks);
  REQUIRE(occ.most.load() == static_cast<int>(k));
}

TEST_CASE("groups: different groups run in parallel", "[groups][thread]") {
  auto& pool = pools::get_thread_pool("groups.parallel", 2);
  pools::Groups groups(pool);
  // The first task of "a" can only finish once the first of "b" ran: were the
  // groups not run side by side this would never end.
  std::promise<void> b_ran;
  auto b_future = b_ran.get_future().share();
  auto a1 = groups.add_task("a", "a1", [b_future] { b_future.wait(); return 1; });
  auto a2 = groups.add_task("a", "a2", [] { return 2; });
  auto b1 = groups.add_task("b", "b1", [&b_ran] {
    b_ran.set_value();
    return 3;
  });
  REQUIRE(a1.wait_return() + a2.wait_return() + b1.wait_return() == 6);
}

TEST_CASE("groups: a failure skips the group's waiting tasks and later ones; other groups go on",
          "[groups][thread]") {
  auto& pool = pools::get_thread_pool("groups.skip", 2);
  pools::Groups groups(pool);
  Gate gate;
  std::atomic<int> ran{0};
  auto count = [&ran](int x) {
    ran.fetch_add(1);
    return x;
  };
  auto first = groups.add_task("dc1/spine", "spine1", [w = gate.waiter()] {
    w.wait();
    return fail_with(5);
  });
  auto second = groups.add_task("dc1/spine", "spine2", count, 2);
  auto third = groups.add_task("dc1/spine", "spine3", count, 3);
  auto other = groups.add_task("dc1/edge", "edge1", count, 10);
  REQUIRE(other.wait_return() == 10);  // another group is not held up
  gate.open();
  REQUIRE_THROWS_MATCHES(first.wait(), std::runtime_error, Catch::Matchers::Message("failed with 5"));
  const pools::Skipped s = skipped_of(second);
  REQUIRE(std::string(s.what()) ==
          "task 'spine2' was skipped: task 'spine1' (id " + std::to_string(first.id()) +
              ") of its group 'dc1/spine' failed: std::runtime_error: failed with 5");
  REQUIRE(s.group() == "dc1/spine");
  REQUIRE(s.cause() == "spine1");
  REQUIRE_THROWS_AS(third.wait_return(), pools::Skipped);
  // A task added to the stopped group is skipped at once.
  auto late = groups.add_task("dc1/spine", "spine4", count, 4);
  REQUIRE(late.iscompleted());
  REQUIRE_THROWS_AS(late.wait(), pools::Skipped);
  REQUIRE(ran.load() == 1);  // only edge1

  groups.wait();
  auto r = groups.report();
  REQUIRE(r.added == 5);
  REQUIRE(r.succeeded == 1);
  REQUIRE(r.failed == 1);
  REQUIRE(r.skipped == 3);
  REQUIRE_FALSE(r.ok());
  const pools::GroupReport& spine = r.groups.at(0);
  REQUIRE(spine.group == "dc1/spine");
  REQUIRE(spine.failed_tasks == std::vector<std::string>{"spine1"});
  REQUIRE(spine.skipped_tasks == std::vector<std::string>{"spine2", "spine3", "spine4"});
  REQUIRE(spine.first_failed_task == "spine1");
  REQUIRE(spine.first_error == "std::runtime_error: failed with 5");
  REQUIRE(r.groups.at(1).ok());
  REQUIRE(r.to_string() ==
          "5 tasks in 2 groups: 1 succeeded, 1 failed, 3 skipped, 0 cancelled\n"
          "  group 'dc1/spine': 0 succeeded, 1 failed, 3 skipped, 0 cancelled\n"
          "    first error: spine1: std::runtime_error: failed with 5\n"
          "    failed: spine1\n"
          "    skipped: spine2 spine3 spine4\n");
}

TEST_CASE("groups: keep_going runs every task of a group; set_options overrides one group",
          "[groups][thread]") {
  auto& pool = pools::get_thread_pool("groups.keep", 2);
  pools::Groups groups(pool, {.limit = 1, .keep_going = true});
  groups.set_options("strict", {.limit = 1, .keep_going = false});
  std::vector<pools::Task<int>> loose, strict;
  for (int i = 0; i < 5; ++i) {
    loose.push_back(groups.add_task("loose", "l" + std::to_string(i),
                                    [](int x) { return x == 1 || x == 3 ? fail_with(x) : x; }, i));
    strict.push_back(groups.add_task("strict", "s" + std::to_string(i),
                                     [](int x) { return x == 1 ? fail_with(x) : x; }, i));
  }
  groups.wait();
  REQUIRE(loose[4].wait_return() == 4);
  REQUIRE_THROWS_AS(loose[3].wait(), std::runtime_error);
  REQUIRE_THROWS_AS(strict[2].wait(), pools::Skipped);
  auto r = groups.report();
  REQUIRE(r.groups.size() == 2);
  const auto& s = r.groups[0];  // "strict" was named first, by set_options
  const auto& l = r.groups[1];
  REQUIRE(s.group == "strict");
  REQUIRE((s.succeeded == 1 && s.failed == 1 && s.skipped == 3));
  REQUIRE((l.succeeded == 3 && l.failed == 2 && l.skipped == 0));
  REQUIRE(l.failed_tasks == std::vector<std::string>{"l1", "l3"});
  REQUIRE(l.first_error == "std::runtime_error: failed with 1");
  REQUIRE(r.added == r.succeeded + r.failed + r.skipped + r.cancelled);
  for (const auto& list : {loose, strict}) {
    for (const auto& t : list) {
      try {
        t.wait();  // seen: not reported at exit
      } catch (const std::exception&) {
      }
    }
  }
}

TEST_CASE("groups: a higher limit set later starts waiting tasks at once", "[groups][thread]") {
  auto& pool = pools::get_thread_pool("groups.raise", 2);
  pools::Groups groups(pool);
  std::latch both(2);
  auto a = groups.add_task("pair", "a", [&both] { both.arrive_and_wait(); });
  auto b = groups.add_task("pair", "b", [&both] { both.arrive_and_wait(); });
  REQUIRE(groups.report().groups[0].waiting + groups.report().groups[0].running == 2);
  groups.set_options("pair", {.limit = 2});  // without it, a and b would wait for each other forever
  a.wait();
  b.wait();
}

TEST_CASE("groups: cancel() of a waiting task frees nothing; the next one starts in turn",
          "[groups][thread]") {
  auto& pool = pools::get_thread_pool("groups.cancel", 2);
  pools::Groups groups(pool);
  Gate gate;
  Occupancy occ;
  std::atomic<int> ran{0};
  auto body = [&](int x) {
    occ.enter();
    ran.fetch_add(1);
    occ.leave();
    return x;
  };
  auto first = groups.add_task("g", "first", [&, w = gate.waiter()] {
    occ.enter();
    w.wait();
    occ.leave();
    return 1;
  });
  auto second = groups.add_task("g", "second", body, 2);
  auto third = groups.add_task("g", "third", body, 3);
  REQUIRE(second.cancel());
  REQUIRE_THROWS_AS(second.wait(), pools::Cancelled);
  // The group's one place is still taken by `first`: `third` waits.
  auto r = groups.report();
  REQUIRE((r.running == 1 && r.waiting == 1 && r.cancelled == 1));
  REQUIRE_FALSE(third.iscompleted());
  gate.open();
  REQUIRE(third.wait_return() == 3);
  REQUIRE(first.wait_return() == 1);
  REQUIRE(ran.load() == 1);
  REQUIRE(occ.most.load() == 1);
  groups.wait();
  r = groups.report();
  REQUIRE((r.succeeded == 2 && r.cancelled == 1 && r.failed == 0 && r.skipped == 0));
  REQUIRE(r.groups[0].cancelled_tasks == std::vector<std::string>{"second"});
  REQUIRE(r.ok() == false);
}

TEST_CASE("groups: commands in groups; a stopped command frees its place, a failed one skips",
          "[groups][process]") {
  auto& pool = pools::get_process_pool("groups.process", 4);
  pools::Groups groups(pool);
  auto a = groups.add_process("tor1", "a", "echo a");
  auto b = groups.add_process("tor1", "b", "echo b; exit 3");
  auto c = groups.add_process("tor1", "c", std::vector<std::string>{"echo", "c"});
  REQUIRE(a.wait_return() == "a\n");
  REQUIRE(a.result().exit_code == 0);
  REQUIRE_THROWS_AS(b.wait(), pools::ProcessError);
  REQUIRE(b.result().exit_code == 3);
  REQUIRE_THROWS_AS(c.wait(), pools::Skipped);
  REQUIRE_THROWS_AS(c.result(), pools::Skipped);  // it never ran: no result

  // cancel() stops a running command; that is no failure of the group.
  pools_test::TempDir dir("groups-cancel");
  const std::string started = (dir.path / "started").string();
  auto slow = groups.add_process("tor2", "slow", "touch '" + started + "'; exec sleep 60");
  auto next = groups.add_process("tor2", "next", "echo next");
  while (!std::filesystem::exists(started)) std::this_thread::yield();
  REQUIRE(slow.cancel());
  REQUIRE_THROWS_AS(slow.wait(), pools::Cancelled);
  REQUIRE(next.wait_return() == "next\n");
  groups.wait();
  auto r = groups.report();
  REQUIRE(r.groups.at(1).cancelled_tasks == std::vector<std::string>{"slow"});
  REQUIRE(r.groups.at(1).succeeded == 1);
  REQUIRE(r.groups.at(0).first_error.find("pools::ProcessError") == 0);
}

TEST_CASE("groups: a group on a multiprocess pool runs in order and skips after a failure",
          "[groups][multiprocess]") {
  auto& pool = pools::get_multiprocess_pool("groups.mp", 3);
  pools::Groups groups(pool);
  pools_test::TempDir dir("groups-mp");
  const std::string log = (dir.path / "order").string();
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 12; ++i) tasks.push_back(groups.add_task("serial", "t", append_line, log, i));
  auto bad = groups.add_task("other", "bad", fail_in_worker, 7);
  auto after_bad = groups.add_task("other", "after bad", append_line, log, 100);
  // groups.wait() first: a waiter on a remote task that is being handed to
  // the pool races with the pool setting up its reply polling (docs/groups.md,
  // "Known limitation").
  groups.wait();
  pools::wait_all(tasks);
  std::string expected;
  for (int i = 0; i < 12; ++i) expected += std::to_string(i) + "\n";
  REQUIRE(pools_test::read_text(log) == expected);
  REQUIRE_THROWS_AS(bad.wait(), pools::RemoteError);
  REQUIRE_THROWS_AS(after_bad.wait(), pools::Skipped);
  auto r = groups.report();
  REQUIRE(r.groups.at(1).first_error.find("device 7 broke") != std::string::npos);
  // Unsendable work is refused at once, as by add_task, and nothing is added.
  int local = 0;
  REQUIRE_THROWS_AS(groups.add_task("serial", "capture", [&local] { return local; }), pools::Error);
  REQUIRE(groups.report().added == 14);
}

TEST_CASE("groups: a long group on the serial pool does not grow the stack", "[groups][serial]") {
  auto& pool = pools::get_serial_pool("groups.serial");
  pools::Groups groups(pool);
  constexpr int n = 20000;
  std::vector<pools::Task<int>> tasks;
  tasks.reserve(n);
  // The first task adds the rest to its own group: they wait for it, and each
  // completion hands on the next, in the serial pool's one thread.
  auto first = groups.add_task("chain", "first", [&] {
    for (int i = 1; i < n; ++i) tasks.push_back(groups.add_task("chain", "t", [i] { return i; }));
    return 0;
  });
  REQUIRE(first.wait_return() == 0);
  long sum = 0;
  for (auto& t : tasks) sum += t.wait_return();
  REQUIRE(sum == static_cast<long>(n) * (n - 1) / 2);
}

TEST_CASE("groups: bad input is refused with pools::Error and nothing is added",
          "[groups]") {
  auto& pool = pools::get_thread_pool("groups.bad", 2);
  REQUIRE_THROWS_AS(pools::Groups(pool, {.limit = 0}), pools::Error);
  pools::Groups groups(pool);
  REQUIRE_THROWS_AS(groups.set_options("g", {.limit = 0}), pools::Error);
  REQUIRE_THROWS_AS(groups.set_options("", {}), pools::Error);
  std::atomic<int> ran{0};
  REQUIRE_THROWS_WITH(groups.add_task("", "t", [&ran] { ran.fetch_add(1); }),
                      "groups: a task's group name must not be empty");
  REQUIRE_THROWS_AS(groups.add_process("", "p", "true"), pools::Error);
  REQUIRE_THROWS_AS(groups.add_process("g", "p", std::vector<std::string>{}), pools::Error);
  groups.wait();
  REQUIRE(groups.report().added == 0);
  REQUIRE(ran.load() == 0);
}

TEST_CASE("groups: tasks whose turn comes after shutdown fail and skip the rest; nothing is lost",
          "[groups][thread]") {
  auto& pool = pools::get_thread_pool("groups.shutdown", 1);
  Gate gate;
  auto groups = std::make_unique<pools::Groups>(pool);
  auto first = groups->add_task("g", "first", [w = gate.waiter()] { w.wait(); });
  auto second = groups->add_task("g", "second", [] {});
  auto third = groups->add_task("g", "third", [] {});
  std::thread closer([&pool] { pool.shutdown(); });
  while (pool.accepting()) std::this_thread::yield();
  gate.open();
  first.wait();
  REQUIRE_THROWS_WITH(second.wait(), Catch::Contains("was shut down"));
  REQUIRE_THROWS_AS(third.wait(), pools::Skipped);
  closer.join();
  groups->wait();
  auto r = groups->report();
  REQUIRE((r.succeeded == 1 && r.failed == 1 && r.skipped == 1 && r.added == 3));
}

TEST_CASE("groups: the Groups object may go before its tasks; a skipped task nobody waited for "
          "is reported", "[groups][thread]") {
  auto& pool = pools::get_thread_pool("groups.orphans", 2);
  Gate gate;
  pools::Task<int> last;
  {
    pools::Groups groups(pool);
    (void)groups.add_task("g", "root cause", [w = gate.waiter()] {
      w.wait();
      return fail_with(9);
    });
    (void)groups.add_task("g", "orphan", [] { return 1; });
    auto ok = groups.add_task("h", "fine", [] { return 2; });
    REQUIRE(ok.wait_return() == 2);
  }
  gate.open();
  const std::string text = pools_test::stderr_of("groups-report", [&pool] { pool.wait_completion(); });
  REQUIRE_THAT(text, Catch::Contains("task 'orphan'") && Catch::Contains("nobody waited for it") &&
                         Catch::Contains("task 'root cause'") &&
                         Catch::Contains("of its group 'g' failed"));
}

TEST_CASE("groups: observers see every task of a group queued and finished once",
          "[groups][thread]") {
  struct Counter : pools::Observer {
    std::mutex m;
    int queued = 0;
    std::map<pools::TaskOutcome, int> finished;
    void on_queued(const pools::TaskEvent&) override {
      std::lock_guard lock(m);
      ++queued;
    }
    void on_finished(const pools::TaskEvent& e) override {
      std::lock_guard lock(m);
      ++finished[e.outcome];
    }
  };
  auto& pool = pools::get_thread_pool("groups.observed", 2);
  auto counter = std::make_shared<Counter>();
  pool.add_observer(counter);
  {
    pools::Groups groups(pool);
    Gate gate;
    auto a = groups.add_task("g", "a", [w = gate.waiter()] {
      w.wait();
      return fail_with(1);
    });
    auto b = groups.add_task("g", "b", [] { return 2; });
    auto c = groups.add_task("g", "c", [] { return 3; });
    auto d = groups.add_task("h", "d", [] { return 4; });
    REQUIRE(b.cancel());
    gate.open();
    groups.wait();
    REQUIRE_THROWS_AS(c.wait(), pools::Skipped);
    REQUIRE_THROWS_AS(a.wait(), std::runtime_error);
    REQUIRE_THROWS_AS(b.wait(), pools::Cancelled);
    REQUIRE(d.wait_return() == 4);
  }
  pool.wait_completion();
  pool.remove_observer(counter);
  std::lock_guard lock(counter->m);
  REQUIRE(counter->queued == 4);
  REQUIRE(counter->finished[pools::TaskOutcome::succeeded] == 1);
  REQUIRE(counter->finished[pools::TaskOutcome::failed] == 1);
  REQUIRE(counter->finished[pools::TaskOutcome::cancelled] == 1);
  REQUIRE(counter->finished[pools::TaskOutcome::skipped] == 1);
}

TEST_CASE("groups: cancel_waiting cancels the tasks that wait for their turn, not the running ones",
          "[groups][thread]") {
  auto& pool = pools::get_thread_pool("groups.cancel_waiting", 2);
  pools::Groups groups(pool);
  Gate gate;
  auto running = groups.add_task("g", "running", [w = gate.waiter()] {
    w.wait();
    return 1;
  });
  auto waiting1 = groups.add_task("g", "waiting1", [] { return 2; });
  auto waiting2 = groups.add_task("g", "waiting2", [] { return 3; });
  REQUIRE(groups.cancel_waiting() == 2);
  REQUIRE_THROWS_AS(waiting1.wait(), pools::Cancelled);
  REQUIRE_THROWS_AS(waiting2.wait(), pools::Cancelled);
  REQUIRE_FALSE(running.iscompleted());
  gate.open();
  REQUIRE(running.wait_return() == 1);
  // The group goes on with tasks added later.
  REQUIRE(groups.add_task("g", "later", [] { return 4; }).wait_return() == 4);
  groups.wait();
  auto r = groups.report();
  REQUIRE((r.succeeded == 2 && r.cancelled == 2 && r.added == 4));
  REQUIRE(r.groups[0].cancelled_tasks == std::vector<std::string>{"waiting1", "waiting2"});
}
