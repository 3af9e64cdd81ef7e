// Conformance: one behaviour suite written against PoolBase&, run over every pool kind.
//
// A new kind joins by adding a line to pool_cases(). Tasks here are captureless
// lambdas or plain functions with serializable arguments and results, so that
// out-of-process kinds (multiprocess, cluster) can run the same suite; where a
// kind legitimately differs (exception types across a process boundary, tasks
// run at once in the caller) the PoolCase flags say so.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;
using pools_test::TempDir;

namespace {

struct PoolCase {
  std::string label;  // shown with every failure
  std::string tag;    // appended to pool names, so each kind gets pools of its own
  pools::PoolKind kind;
  pools::PoolBase& (*get)(std::string_view name);
  // Tasks run in other threads, so add_task returns before the task ran.
  bool concurrent;
  // In-process kinds rethrow the task's own exception object; out-of-process
  // kinds raise a pools::Error whose what() contains the original message.
  bool same_exception_type;
  // Tasks share the caller's memory: they may take pointers, e.g. to the pool.
  bool in_process;
};

const std::vector<PoolCase>& pool_cases() {
#ifdef POOLS_CONFORMANCE_CLUSTER
  // Built into test_cluster, which runs under mpirun -np 3: the cluster pool
  // over its 2 worker ranks, alone (the other kinds run in test_conformance).
  static const std::vector<PoolCase> cases = {
      {"cluster pool of 2 worker ranks", "cluster", pools::PoolKind::cluster,
       [](std::string_view n) -> pools::PoolBase& { return pools::get_cluster_pool(n, 2); }, true,
       false, false},
  };
#else
  static const std::vector<PoolCase> cases = {
      {"thread pool (default size)", "thread", pools::PoolKind::thread,
       [](std::string_view n) -> pools::PoolBase& { return pools::get_thread_pool(n); }, true, true,
       true},
      {"thread pool of 1 thread", "thread1", pools::PoolKind::thread,
       [](std::string_view n) -> pools::PoolBase& { return pools::get_thread_pool(n, 1); }, true,
       true, true},
      {"serial pool", "serial", pools::PoolKind::serial,
       [](std::string_view n) -> pools::PoolBase& { return pools::get_serial_pool(n); }, false,
       true, true},
      // Runs functions on threads of its own, beside its commands.
      {"process pool", "process", pools::PoolKind::process,
       [](std::string_view n) -> pools::PoolBase& { return pools::get_process_pool(n); }, true,
       true, true},
      // Functions run in worker processes: failures arrive as pools::RemoteError.
      {"multiprocess pool of 2 workers", "multiprocess", pools::PoolKind::multiprocess,
       [](std::string_view n) -> pools::PoolBase& { return pools::get_multiprocess_pool(n, 2); },
       true, false, false},
  };
#endif
  return cases;
}

// Declares `pool_case` and `pool`: the test case runs once per pool kind, each
// time on a pool named after the test and the kind.
#define POOL_UNDER_TEST(test_name)                                                               \
  const PoolCase& pool_case =                                                                    \
      pool_cases()[GENERATE(range(std::size_t{0}, pool_cases().size()))];                        \
  INFO("pool kind: " << pool_case.label);                                                        \
  pools::PoolBase& pool = pool_case.get(std::string("conformance.") + (test_name) + "." +       \
                                        pool_case.tag)

// The exception the tasks below throw: a type of our own, so that "same type"
// cannot be satisfied by some library error that also derives from runtime_error.
struct TaskFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Checks that call() throws what a failing task threw: the same type and
// message in-process, a pools::Error mentioning the message otherwise.
template <class Call>
void require_task_failure(const PoolCase& c, Call&& call, const std::string& message) {
  if (c.same_exception_type) {
    REQUIRE_THROWS_MATCHES(call(), TaskFailure, Catch::Matchers::Message(message));
  } else {
    REQUIRE_THROWS_AS(call(), pools::Error);
    REQUIRE_THROWS_WITH(call(), Catch::Contains(message));
  }
}

int square(int x) { return x * x; }

// nornir_pools' file scenario: each task creates one file, reads it back and
// removes it, returning what it read.
std::string create_read_remove(std::string path, int number) {
  {
    std::ofstream out(path);
    if (!out) throw TaskFailure("cannot create " + path);
    out << "file number " << number << "\n";
  }
  std::string text;
  {
    std::ifstream in(path);
    if (!in) throw TaskFailure("cannot open " + path);
    std::ostringstream s;
    s << in.rdbuf();
    text = s.str();
  }
  if (!fs::remove(path)) throw TaskFailure("cannot remove " + path);
  return text;
}

int fail_with(int code) { throw TaskFailure("task failed with code " + std::to_string(code)); }

void touch(std::string path) {
  std::ofstream out(path);
  if (!out) throw TaskFailure("cannot create " + path);
}

}  // namespace

TEST_CASE("conformance: every kind reports its kind and a worker count", "[core][thread][serial]") {
  POOL_UNDER_TEST("kind");
  CHECK(pool.kind() == pool_case.kind);
  CHECK(pool.num_workers() >= 1);
  CHECK(pool.accepting());
  CHECK(pool.name() == std::string("conformance.kind.") + pool_case.tag);
}

TEST_CASE("conformance: the squares of 0..99 come back in order through wait_return",
          "[core][thread][serial]") {
  POOL_UNDER_TEST("squares");
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 100; ++i) {
    tasks.push_back(pool.add_task("square " + std::to_string(i), square, i));
    // A kind that is not concurrent has run the task before add_task returns.
    if (!pool_case.concurrent) REQUIRE(tasks.back().iscompleted());
  }
  for (int i = 0; i < 100; ++i) {
    INFO("task " << i);
    REQUIRE(tasks[i].wait_return() == i * i);
    REQUIRE(tasks[i].iscompleted());
    REQUIRE_FALSE(tasks[i].failed());
  }
}

TEST_CASE("conformance: 99 files are created and read back and removed through the pool",
          "[core][thread][serial]") {
  POOL_UNDER_TEST("files");
  TempDir dir("files-" + pool_case.tag);
  std::vector<pools::Task<std::string>> tasks;
  for (int i = 0; i < 99; ++i) {
    std::string path = (dir.path / ("file" + std::to_string(i) + ".txt")).string();
    tasks.push_back(pool.add_task("file " + std::to_string(i), create_read_remove, path, i));
  }
  for (int i = 0; i < 99; ++i) {
    INFO("file " << i);
    REQUIRE(tasks[i].wait_return() == "file number " + std::to_string(i) + "\n");
  }
  pool.wait_completion();
  REQUIRE(fs::is_empty(dir.path));
}

TEST_CASE("conformance: a task's exception comes out of wait_return", "[core][thread][serial]") {
  POOL_UNDER_TEST("exception-wait-return");
  auto t = pool.add_task("fails", fail_with, 1);
  require_task_failure(pool_case, [&] { return t.wait_return(); }, "task failed with code 1");
  CHECK(t.iscompleted());
  CHECK(t.failed());
  // A failure is reported again to every later wait, not only the first.
  require_task_failure(pool_case, [&] { return t.wait_return(); }, "task failed with code 1");
}

TEST_CASE("conformance: a task's exception comes out of wait", "[core][thread][serial]") {
  POOL_UNDER_TEST("exception-wait");
  auto t = pool.add_task("fails", fail_with, 2);
  require_task_failure(pool_case, [&] { t.wait(); }, "task failed with code 2");
  // join() waits without throwing.
  REQUIRE_NOTHROW(t.join());
}

TEST_CASE("conformance: a task's exception comes out of wait after wait_completion",
          "[core][thread][serial]") {
  POOL_UNDER_TEST("exception-after-wait-completion");
  auto bad = pool.add_task("fails", fail_with, 3);
  auto good = pool.add_task("succeeds", square, 5);
  REQUIRE_NOTHROW(pool.wait_completion());
  REQUIRE(bad.iscompleted());
  REQUIRE(good.iscompleted());
  REQUIRE(bad.failed());
  REQUIRE_FALSE(good.failed());
  require_task_failure(pool_case, [&] { bad.wait(); }, "task failed with code 3");
  REQUIRE(good.wait_return() == 25);
}

TEST_CASE("conformance: void tasks run and wait_return returns nothing", "[core][thread][serial]") {
  POOL_UNDER_TEST("void");
  TempDir dir("void-" + pool_case.tag);
  std::vector<pools::Task<void>> tasks;
  for (int i = 0; i < 50; ++i)
    tasks.push_back(pool.add_task("touch", touch, (dir.path / std::to_string(i)).string()));
  static_assert(std::is_same_v<decltype(tasks[0].wait_return()), void>);
  for (auto& t : tasks) REQUIRE_NOTHROW(t.wait_return());
  for (int i = 0; i < 50; ++i) REQUIRE(fs::exists(dir.path / std::to_string(i)));

  auto failing = pool.add_task("void failure", [] { throw TaskFailure("void task failed"); });
  require_task_failure(pool_case, [&] { failing.wait_return(); }, "void task failed");
}

TEST_CASE("conformance: arguments are passed by value", "[core][thread][serial]") {
  POOL_UNDER_TEST("by-value");
  std::string text = "original";
  std::vector<int> numbers{1, 2, 3};
  auto t1 = pool.add_task("string", [](std::string s) { return s + "!"; }, text);
  auto t2 = pool.add_task(
      "vector",
      [](std::vector<int> v) {
        v.push_back(4);  // changes the task's copy only
        return v.size();
      },
      numbers);
  // Changing the caller's objects after add_task cannot reach the task's copies.
  text = "changed";
  numbers.clear();
  REQUIRE(t1.wait_return() == "original!");
  REQUIRE(t2.wait_return() == 4);
  REQUIRE(numbers.empty());

  // An argument that is not copied at all: the caller's object is left as it was.
  std::vector<int> kept{7, 8, 9};
  auto t3 = pool.add_task("kept", [](std::vector<int> v) { return v.at(2); }, kept);
  REQUIRE(t3.wait_return() == 9);
  REQUIRE(kept == std::vector<int>{7, 8, 9});
}

TEST_CASE("conformance: num_active_tasks is 0 after wait_completion", "[core][thread][serial]") {
  POOL_UNDER_TEST("active");
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 200; ++i) tasks.push_back(pool.add_task("", square, i));
  CHECK(pool.num_active_tasks() <= 200);
  pool.wait_completion();
  REQUIRE(pool.num_active_tasks() == 0);
  for (auto& t : tasks) REQUIRE(t.iscompleted());
  // An idle pool's wait_completion returns at once.
  pool.wait_completion();
  REQUIRE(pool.num_active_tasks() == 0);
}

TEST_CASE("conformance: tasks keep their names and get distinct ids", "[core][thread][serial]") {
  POOL_UNDER_TEST("names");
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 100; ++i) tasks.push_back(pool.add_task("task #" + std::to_string(i), square, i));
  auto unnamed = pool.add_task("", square, 1);
  std::set<std::uint64_t> ids;
  for (int i = 0; i < 100; ++i) {
    REQUIRE(tasks[i].name() == "task #" + std::to_string(i));
    ids.insert(tasks[i].id());
  }
  ids.insert(unnamed.id());
  REQUIRE(ids.size() == 101);
  REQUIRE(unnamed.name().empty());
  pool.wait_completion();
  // Names and ids survive completion.
  REQUIRE(tasks[42].name() == "task #42");
}

TEST_CASE("conformance: shutdown finishes queued work and then add_task throws pools::Error",
          "[core][thread][serial]") {
  POOL_UNDER_TEST("shutdown");
  TempDir dir("shutdown-" + pool_case.tag);
  std::vector<pools::Task<void>> tasks;
  for (int i = 0; i < 200; ++i)
    tasks.push_back(pool.add_task("touch", touch, (dir.path / std::to_string(i)).string()));
  pool.shutdown();
  REQUIRE_FALSE(pool.accepting());
  for (auto& t : tasks) {
    REQUIRE(t.iscompleted());
    REQUIRE_NOTHROW(t.wait());
  }
  for (int i = 0; i < 200; ++i) REQUIRE(fs::exists(dir.path / std::to_string(i)));
  REQUIRE_THROWS_AS(pool.add_task("late", square, 2), pools::Error);
  REQUIRE_NOTHROW(pool.shutdown());  // idempotent
  REQUIRE_NOTHROW(pool.wait_completion());
  REQUIRE(pool.num_active_tasks() == 0);
}

TEST_CASE("conformance: a task may add tasks to its own pool and wait for them",
          "[core][thread][serial]") {
  POOL_UNDER_TEST("nested");
  if (!pool_case.in_process) return;  // the task below holds a PoolBase*
  auto outer = pool.add_task(
      "outer",
      [](pools::PoolBase* p) {
        std::vector<pools::Task<int>> inner;
        for (int i = 0; i < 10; ++i) inner.push_back(p->add_task("inner", square, i));
        int sum = 0;
        for (auto& t : inner) sum += t.wait_return();
        return sum;
      },
      &pool);
  REQUIRE(outer.wait_return() == 285);
}

TEST_CASE("conformance: add_process runs a command and fails its task when the command fails",
          "[core][thread][serial][process]") {
  POOL_UNDER_TEST("add-process");
  auto shell = pool.add_process("shell", std::string("echo one; echo two"));
  auto argv = pool.add_process("argv", {"echo", "a b", "$HOME"});
  REQUIRE(shell.wait_return() == "one\ntwo\n");
  REQUIRE(argv.wait_return() == "a b $HOME\n");
  auto failing = pool.add_process("failing", std::string("echo why >&2; exit 3"));
  try {
    failing.wait();
    FAIL("a command that exits 3 did not fail its task");
  } catch (const pools::ProcessError& e) {
    CHECK(e.exit_code() == 3);
    CHECK(e.stderr_text() == "why\n");
  }
  CHECK(failing.result().exit_code == 3);
  pool.wait_completion();
  REQUIRE(pool.num_active_tasks() == 0);
}
