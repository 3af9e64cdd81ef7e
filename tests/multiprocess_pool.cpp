// The multiprocess pool: work in worker processes, crash isolation, what may
// cross a process, options (initializer, finalizer, recycling, timeouts,
// environment), bulk calls and the exit-time guarantees. The behaviour shared
// with the other kinds is in conformance.cpp.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "wire/remote_call.hpp"

namespace fs = std::filesystem;
using pools_test::RecordedProcesses;
using pools_test::TempDir;

namespace {

int square(int x) { return x * x; }
int my_pid() { return static_cast<int>(::getpid()); }

int pid_after_sleep(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return static_cast<int>(::getpid());
}

// Ways for a worker to die while running a task.
int die(std::string how) {
  if (how == "segv") {
    volatile int* p = nullptr;
    *p = 1;
  } else if (how == "abort") {
    std::abort();
  } else if (how == "exit") {
    std::_Exit(7);
  } else if (how == "oom-kill") {
    ::kill(::getpid(), SIGKILL);  // what the kernel's out-of-memory killer sends
  } else if (how == "bad-alloc") {
    // A real allocation failure: with the address space capped, new throws.
    rlimit lim{512u << 20, 512u << 20};
    ::setrlimit(RLIMIT_AS, &lim);
    std::vector<char> huge(std::size_t{4} << 30);
    return static_cast<int>(huge.size());
  }
  for (;;) ::pause();  // "wait": until killed from outside
}

// Writes its pid where the test can read it, then waits to be killed.
int wait_for_kill(std::string pidfile) {
  {
    std::ofstream tmp(pidfile + ".tmp");
    tmp << ::getpid();
  }
  std::rename((pidfile + ".tmp").c_str(), pidfile.c_str());
  for (;;) ::pause();
}

struct NoSerialize {
  int a = 0;
};
int take_widget(NoSerialize w) { return w.a; }
NoSerialize make_widget(int a) { return NoSerialize{a}; }

struct Scaled {  // a function object that travels with its state
  int factor = 1;
  int operator()(int x) const { return x * factor; }
  template <class A>
  void serialize(A& ar) {
    ar(factor);
  }
};

struct Point {  // a user type with a serialize function
  double x = 0, y = 0;
  std::string label;
  template <class A>
  void serialize(A& ar) {
    ar(x, y, label);
  }
};
Point mirror(Point p) { return Point{-p.x, -p.y, p.label + "'"}; }

std::string env_of(std::string name) {
  const char* v = std::getenv(name.c_str());
  return v ? v : "(unset)";
}

// Initializer and finalizer: a worker records itself in a directory named by
// its environment.
int initialized = 0;
void initialize_worker() { initialized = 42; }
int read_initialized(int) { return initialized; }
void finalize_worker() {
  std::ofstream(std::string(std::getenv("POOLS_TEST_DIR")) + "/finalized." +
                std::to_string(::getpid()))
      << "bye\n";
}
void failing_initializer() { throw std::runtime_error("no database here"); }

std::vector<std::uint8_t> reverse_bytes(std::vector<std::uint8_t> v) {
  std::reverse(v.begin(), v.end());
  return v;
}

// A task that uses a multiprocess pool of its own inside its worker process.
int sum_in_nested_processes(int n) {
  auto& inner = pools::get_multiprocess_pool("nested inside a worker", 2);
  std::vector<pools::Task<int>> parts;
  for (int i = 1; i <= n; ++i) parts.push_back(inner.add_task("", square, i));
  int sum = 0;
  for (auto& t : parts) sum += t.wait_return();
  return sum;
}

// A task that uses a thread pool inside its worker process.
int sum_on_worker_threads(int n) {
  std::vector<pools::Task<int>> parts;
  for (int i = 1; i <= n; ++i) parts.push_back(pools::global_thread_pool().add_task("", square, i));
  int sum = 0;
  for (auto& t : parts) sum += t.wait_return();
  return sum;
}

std::string pool_name(const std::string& test) { return "mp." + test; }

pools::PoolBase& make_pool(const std::string& test, pools::MultiprocessOptions options) {
  return pools::get_multiprocess_pool(pool_name(test), options);
}

}  // namespace

TEST_CASE("multiprocess: every worker does work, none of them the parent", "[multiprocess]") {
  pools::MultiprocessOptions o;
  o.workers = 4;
  o.max_in_flight = 1;  // a worker takes the next call only when it is free
  auto& pool = make_pool("spread", o);
  REQUIRE(pool.kind() == pools::PoolKind::multiprocess);
  REQUIRE(pool.num_workers() == 4);
  std::mt19937 rng(7);
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 40; ++i)
    tasks.push_back(pool.add_task("sleepy", pid_after_sleep, static_cast<int>(rng() % 20)));
  std::set<int> pids;
  for (auto& t : tasks) pids.insert(t.wait_return());
  REQUIRE(pids.size() == 4);
  REQUIRE(pids.count(static_cast<int>(::getpid())) == 0);
  pool.shutdown();
}

TEST_CASE("multiprocess: a task's exception arrives as RemoteError with its type and origin",
          "[multiprocess]") {
  auto& pool = pools::get_multiprocess_pool(pool_name("remote-error"), 2);
  auto t = pool.add_task("throws", [](int i) -> int {
    throw std::out_of_range("index " + std::to_string(i) + " is past the end");
  }, 9);
  try {
    t.wait();
    FAIL("no exception");
  } catch (const pools::RemoteError& e) {
    CHECK(e.remote_type() == "std::out_of_range");
    CHECK(e.remote_what() == "index 9 is past the end");
    CHECK(e.pid() > 0);
    CHECK(e.pid() != ::getpid());
    CHECK_FALSE(e.host().empty());
    CHECK(e.rank() == -1);
    CHECK_THAT(e.what(), Catch::Contains("std::out_of_range") &&
                             Catch::Contains("index 9 is past the end"));
  }
  // A non-std exception still names its type.
  auto odd = pool.add_task("throws an int", [](int) -> int { throw 17; }, 0);
  REQUIRE_THROWS_MATCHES(odd.wait(), pools::RemoteError,
                         Catch::Predicate<pools::RemoteError>(
                             [](const pools::RemoteError& e) { return e.remote_type() == "int"; }));
  REQUIRE(pool.add_task("after", square, 4).wait_return() == 16);
}

TEST_CASE("multiprocess: a worker that dies fails only its task, and is replaced",
          "[multiprocess]") {
  auto& pool = pools::get_multiprocess_pool(pool_name("crash"), 2);
  struct Way {
    std::string how;
    int signal;
    int exit_status;
  };
#if defined(__SANITIZE_ADDRESS__)
  // ASan+UBSan report the bad store and exit with status 1 instead of SIGSEGV.
  const Way segv{"segv", 0, 1};
#else
  const Way segv{"segv", SIGSEGV, -1};
#endif
  const std::vector<Way> ways = {
      segv, {"abort", SIGABRT, -1}, {"exit", 0, 7}, {"oom-kill", SIGKILL, -1}};
  for (const Way& way : ways) {
    INFO("dies by " << way.how);
    std::vector<pools::Task<int>> before, after;
    for (int i = 0; i < 20; ++i) before.push_back(pool.add_task("before", square, i));
    auto doomed = pool.add_task("doomed", die, way.how);
    for (int i = 0; i < 20; ++i) after.push_back(pool.add_task("after", square, i));
    try {
      doomed.wait();
      FAIL("the task did not fail");
    } catch (const pools::WorkerLost& e) {
      CHECK(e.signal() == way.signal);
      CHECK(e.exit_status() == way.exit_status);
      CHECK_FALSE(e.timed_out());
      CHECK_THAT(e.what(), Catch::Contains("doomed"));
    }
    for (int i = 0; i < 20; ++i) {
      REQUIRE(before[i].wait_return() == i * i);
      REQUIRE(after[i].wait_return() == i * i);
    }
  }
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
  // Running out of memory inside a task is an exception of the task's own.
  // (A sanitizer's allocator reports and exits instead of throwing.)
  auto oom = pool.add_task("bad alloc", die, std::string("bad-alloc"));
  REQUIRE_THROWS_MATCHES(oom.wait(), pools::RemoteError,
                         Catch::Predicate<pools::RemoteError>([](const pools::RemoteError& e) {
                           return e.remote_type() == "std::bad_alloc";
                         }));
#endif
  REQUIRE(pool.num_workers() == 2);
  pool.wait_completion();
  REQUIRE(pool.num_active_tasks() == 0);
}

TEST_CASE("multiprocess: a worker killed from outside fails its task", "[multiprocess]") {
  TempDir dir("mp-kill9");
  const std::string pidfile = (dir.path / "pid").string();
  pools::MultiprocessOptions o;
  o.workers = 2;
  o.max_in_flight = 1;
  auto& pool = make_pool("kill9", o);
  auto victim = pool.add_task("victim", wait_for_kill, pidfile);
  std::vector<pools::Task<int>> others;
  for (int i = 0; i < 20; ++i) others.push_back(pool.add_task("other", square, i));
  std::string pid;
  REQUIRE(pools_test::wait_until([&] { return !(pid = pools_test::read_text(pidfile)).empty(); }));
  REQUIRE(::kill(std::stoi(pid), SIGKILL) == 0);
  try {
    victim.wait();
    FAIL("no exception");
  } catch (const pools::WorkerLost& e) {
    CHECK(e.pid() == std::stoi(pid));
    CHECK(e.signal() == SIGKILL);
    CHECK_THAT(e.what(), Catch::Contains("victim") && Catch::Contains("signal 9"));
  }
  for (int i = 0; i < 20; ++i) REQUIRE(others[i].wait_return() == i * i);
  REQUIRE(pool.add_task("after", square, 5).wait_return() == 25);
}

TEST_CASE("multiprocess: a task that keeps killing workers is not retried", "[multiprocess]") {
  auto& pool = pools::get_multiprocess_pool(pool_name("no-retry"), 2);
  std::vector<pools::Task<int>> doomed;
  for (int i = 0; i < 5; ++i) doomed.push_back(pool.add_task("doomed", die, std::string("segv")));
  for (auto& t : doomed) REQUIRE_THROWS_AS(t.wait(), pools::WorkerLost);
  REQUIRE(pool.add_task("after", square, 6).wait_return() == 36);
}

TEST_CASE("multiprocess: workers whose initializer fails make tasks fail, not hang",
          "[multiprocess]") {
  pools::MultiprocessOptions o;
  o.workers = 2;
  o.initializer = failing_initializer;
  auto& pool = make_pool("bad-init", o);
  auto t = pool.add_task("never runs", square, 2);
  try {
    t.wait();
    FAIL("no exception");
  } catch (const pools::WorkerLost& e) {
    CHECK(e.exit_status() == 3);
    CHECK_THAT(e.what(), Catch::Contains("initializer failed") &&
                             Catch::Contains("no database here"));
  }
  // Later work gets the same answer, not a hang.
  REQUIRE_THROWS_AS(pool.add_task("again", square, 3).wait(), pools::WorkerLost);
  pool.shutdown();
}

TEST_CASE("multiprocess: what cannot cross a process is refused at add_task, naming the type",
          "[multiprocess]") {
  auto& pool = pools::get_multiprocess_pool(pool_name("refuse"), 1);
  int local = 5;
  REQUIRE_THROWS_WITH(pool.add_task("capturing", [local] { return local; }),
                      Catch::Contains("cannot add task 'capturing'") &&
                          Catch::Contains("lambda") && Catch::Contains("captures"));
  REQUIRE_THROWS_WITH(pool.add_task("pointer", [](int* p) { return *p; }, &local),
                      Catch::Contains("'int*'") && Catch::Contains("raw pointer"));
  REQUIRE_THROWS_WITH(pool.add_task("no serialize", take_widget, NoSerialize{1}),
                      Catch::Contains("NoSerialize") && Catch::Contains("serialize"));
  REQUIRE_THROWS_WITH(pool.add_task("inside", [](std::vector<NoSerialize> v) { return v.size(); },
                                    std::vector<NoSerialize>{}),
                      Catch::Contains("'(anonymous namespace)::NoSerialize'"));
  REQUIRE_THROWS_WITH(pool.add_task("result", make_widget, 1),
                      Catch::Contains("result type") && Catch::Contains("NoSerialize"));
  std::function<int(int)> fn = square;
  REQUIRE_THROWS_WITH(pool.add_task("std::function", fn, 1), Catch::Contains("std::function"));
  // Nothing was queued by the refusals.
  REQUIRE(pool.num_active_tasks() == 0);
  // What can cross: plain functions, captureless lambdas, serializable
  // function objects, user types, standard containers; "text" converts to the
  // std::string parameter before it travels.
  REQUIRE(pool.add_task("object", Scaled{3}, 5).wait_return() == 15);
  Point p = pool.add_task("point", mirror, Point{1.5, -2, "p"}).wait_return();
  REQUIRE((p.x == -1.5 && p.y == 2 && p.label == "p'"));
  using Mixed = std::map<std::string, std::variant<int, std::string, std::optional<double>>>;
  auto mixed = pool.add_task(
      "mixed",
      [](Mixed m, std::pair<int, std::tuple<std::string, std::vector<int>>> x) {
        m["n"] = static_cast<int>(std::get<1>(x.second).size()) + x.first;
        return m;
      },
      Mixed{{"a", 1}, {"b", std::string("two")}, {"c", std::optional<double>{}}},
      std::pair<int, std::tuple<std::string, std::vector<int>>>{10, {"s", {1, 2, 3}}});
  Mixed m = mixed.wait_return();
  REQUIRE(std::get<int>(m.at("n")) == 13);
  REQUIRE(std::get<std::string>(m.at("b")) == "two");
  REQUIRE(pool.add_task("converted", [](std::string s) { return s.size(); }, "text").wait_return() ==
          4);
}

TEST_CASE("multiprocess: 8 MB arguments and results cross intact", "[multiprocess]") {
  auto& pool = pools::get_multiprocess_pool(pool_name("large"), 2);
  std::vector<std::uint8_t> data(8u << 20);
  std::mt19937 rng(1);
  for (auto& b : data) b = static_cast<std::uint8_t>(rng());
  std::vector<pools::Task<std::vector<std::uint8_t>>> tasks;
  for (int i = 0; i < 4; ++i) tasks.push_back(pool.add_task("reverse", reverse_bytes, data));
  std::vector<std::uint8_t> expected(data.rbegin(), data.rend());
  for (auto& t : tasks) REQUIRE(t.wait_return() == expected);
  auto text = pool.add_task("big string", [](int n) { return std::string(std::size_t(n), 'x'); },
                            8 << 20);
  REQUIRE(text.wait_return().size() == (8u << 20));
}

TEST_CASE("multiprocess: initializer and finalizer run once in each worker", "[multiprocess]") {
  TempDir dir("mp-hooks");
  pools::MultiprocessOptions o;
  o.workers = 2;
  o.initializer = initialize_worker;
  o.finalizer = finalize_worker;
  o.environment = {{"POOLS_TEST_DIR", dir.path.string()}, {"POOLS_TEST_COLOUR", "blue"}};
  auto& pool = make_pool("hooks", o);
  REQUIRE(pool.add_task("initialized", read_initialized, 0).wait_return() == 42);
  REQUIRE(pool.add_task("env", env_of, std::string("POOLS_TEST_COLOUR")).wait_return() == "blue");
  REQUIRE(initialized == 0);  // not in this process
  std::set<int> pids;
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 20; ++i) tasks.push_back(pool.add_task("pid", pid_after_sleep, 5));
  for (auto& t : tasks) pids.insert(t.wait_return());
  pool.shutdown();
  std::size_t finalized = 0;
  for (auto& e : fs::directory_iterator(dir.path)) {
    REQUIRE(e.path().filename().string().rfind("finalized.", 0) == 0);
    ++finalized;
  }
  REQUIRE(finalized == 2);
  for (int pid : pids) REQUIRE(fs::exists(dir.path / ("finalized." + std::to_string(pid))));
}

TEST_CASE("multiprocess: a worker is replaced after max_tasks_per_worker tasks",
          "[multiprocess]") {
  pools::MultiprocessOptions o;
  o.workers = 1;
  o.max_tasks_per_worker = 3;
  auto& pool = make_pool("recycle", o);
  std::map<int, int> per_pid;
  for (int i = 0; i < 9; ++i) ++per_pid[pool.add_task("pid", my_pid).wait_return()];
  REQUIRE(per_pid.size() == 3);
  for (auto& [pid, n] : per_pid) REQUIRE(n == 3);
  // Also when the calls are queued all at once.
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 12; ++i) tasks.push_back(pool.add_task("pid", my_pid));
  per_pid.clear();
  for (auto& t : tasks) ++per_pid[t.wait_return()];
  REQUIRE(per_pid.size() == 4);
  for (auto& [pid, n] : per_pid) REQUIRE(n == 3);
}

TEST_CASE("multiprocess: a task over its timeout has its worker killed", "[multiprocess]") {
  pools::MultiprocessOptions o;
  o.workers = 2;
  o.max_in_flight = 1;
  o.task_timeout = std::chrono::milliseconds(300);
  auto& pool = make_pool("timeout", o);
  auto slow = pool.add_task("slow", pid_after_sleep, 60'000);
  std::vector<pools::Task<int>> quick;
  for (int i = 0; i < 10; ++i) quick.push_back(pool.add_task("quick", square, i));
  try {
    slow.wait();
    FAIL("no timeout");
  } catch (const pools::WorkerLost& e) {
    CHECK(e.timed_out());
    CHECK(e.signal() == SIGKILL);
    CHECK_THAT(e.what(), Catch::Contains("slow") && Catch::Contains("300 ms"));
  }
  for (int i = 0; i < 10; ++i) REQUIRE(quick[i].wait_return() == i * i);
  REQUIRE(pool.add_task("after", square, 7).wait_return() == 49);
}

TEST_CASE("multiprocess: add_tasks sends chunks and keeps every call's own result",
          "[multiprocess]") {
  auto& pool = pools::get_multiprocess_pool(pool_name("bulk"), 2);
  std::vector<int> inputs(1000);
  std::iota(inputs.begin(), inputs.end(), 0);
  auto tasks = pool.add_tasks("square", square, inputs);
  REQUIRE(tasks.size() == 1000);
  for (int i = 0; i < 1000; ++i) REQUIRE(tasks[i].wait_return() == i * i);
  // One failing call fails only itself.
  auto mixed = pool.add_tasks(
      "picky",
      [](int x) {
        if (x == 13) throw std::invalid_argument("13 is unlucky");
        return x;
      },
      inputs, 50);
  for (int i = 0; i < 1000; ++i) {
    if (i == 13) {
      REQUIRE_THROWS_WITH(mixed[i].wait(), Catch::Contains("13 is unlucky"));
    } else {
      REQUIRE(mixed[i].wait_return() == i);
    }
  }
  // The same call on a thread pool gives the same handles.
  auto local = pools::get_thread_pool("mp.bulk.threads", 2).add_tasks("square", square, inputs);
  REQUIRE(local[999].wait_return() == 999 * 999);
}

TEST_CASE("multiprocess: a queued task can be cancelled before a worker takes it",
          "[multiprocess]") {
  pools::MultiprocessOptions o;
  o.workers = 1;
  o.max_in_flight = 1;
  auto& pool = make_pool("cancel", o);
  auto busy = pool.add_task("busy", pid_after_sleep, 300);
  auto queued = pool.add_task("queued", square, 3);
  auto kept = pool.add_task("kept", square, 4);
  const bool cancelled = queued.cancel();
  REQUIRE(busy.wait_return() > 0);
  if (cancelled) {
    REQUIRE_THROWS_AS(queued.wait(), pools::Cancelled);
  } else {
    REQUIRE(queued.wait_return() == 9);  // a worker had it already
  }
  REQUIRE(kept.wait_return() == 16);
  pool.wait_completion();
  REQUIRE(pool.num_active_tasks() == 0);
}

TEST_CASE("multiprocess: a task may use pools of its own inside its worker", "[multiprocess]") {
  auto& pool = pools::get_multiprocess_pool(pool_name("nested"), 2);
  REQUIRE(pool.add_task("threads inside", sum_on_worker_threads, 10).wait_return() == 385);
  REQUIRE(pool.add_task("processes inside", sum_in_nested_processes, 10).wait_return() == 385);
  auto cmd = pool.add_process("command", std::string("echo $PPID"));
  const int ran_from = std::stoi(cmd.wait_return());
  REQUIRE(ran_from != ::getpid());  // started by a worker process
}

TEST_CASE("multiprocess: the same name gives the same pool; options only for a new pool",
          "[multiprocess]") {
  auto& a = pools::get_multiprocess_pool(pool_name("same"), 2);
  REQUIRE(&pools::get_multiprocess_pool(pool_name("same")) == &a);
  REQUIRE_THROWS_WITH(pools::get_multiprocess_pool(pool_name("same"), pools::MultiprocessOptions{}),
                      Catch::Contains("other options"));
  pools::MultiprocessOptions o;
  o.workers = 3;
  o.max_tasks_per_worker = 10;
  auto& with_options = make_pool("same-options", o);
  REQUIRE(&make_pool("same-options", o) == &with_options);  // the same options: the same pool
  o.max_tasks_per_worker = 11;
  REQUIRE_THROWS_AS(make_pool("same-options", o), pools::Error);
  REQUIRE_THROWS_AS(pools::get_thread_pool(pool_name("same")), pools::Error);
  REQUIRE_THROWS_AS(pools::get_multiprocess_pool(pool_name("zero"), 0), pools::Error);
  a.shutdown();
  REQUIRE_THROWS_AS(a.add_task("late", square, 1), pools::Error);
}

TEST_CASE("multiprocess: a worker refuses calls it cannot verify", "[multiprocess][wire]") {
  using pools::detail::CallIdentity;
  // A well-formed call resolves.
  std::string good;
  using F = int (*)(int);
  F fn = square;
  int three = 3;
  pools::detail::encode_call<F, int, int>(good, fn, three);
  auto resolved = pools::wire::resolve_call(good);
  REQUIRE(resolved.fn == reinterpret_cast<void*>(&square));
  auto tamper = [&](auto change) {
    std::string bad = good;
    CallIdentity id;
    std::memcpy(&id, bad.data(), sizeof id);
    change(id);
    std::memcpy(bad.data(), &id, sizeof id);
    return bad;
  };
  REQUIRE_THROWS_WITH(pools::wire::resolve_call(tamper([](CallIdentity& id) { id.invoker ^= 1; })),
                      Catch::Contains("cannot verify") && Catch::Contains("same program"));
  REQUIRE_THROWS_WITH(pools::wire::resolve_call(tamper([](CallIdentity& id) { id.fn_offset += 3; })),
                      Catch::Contains("cannot verify"));
  REQUIRE_THROWS_WITH(
      pools::wire::resolve_call(tamper([](CallIdentity& id) { id.fn_offset = ~0ull >> 8; })),
      Catch::Contains("cannot verify"));
  REQUIRE_THROWS_WITH(pools::wire::resolve_call(tamper([](CallIdentity& id) { id.fn_module = 12345; })),
                      Catch::Contains("not loaded"));
  REQUIRE_THROWS_WITH(pools::wire::resolve_call(good.substr(0, 10)), Catch::Contains("malformed"));
  // Arguments that do not decode fail the call with a clear message.
  std::string truncated = good.substr(0, good.size() - 1);
  auto r = pools::wire::resolve_call(truncated);
  std::string out;
  REQUIRE_THROWS_WITH(r.invoke(r.args, r.fn, out), Catch::Contains("could not be decoded"));
}

// ---- exit-time guarantees (tests/multiprocess_helper.cpp) ------------------------

namespace {
std::string mp_helper() { return pools_test::env_path("POOLS_MULTIPROCESS_HELPER"); }

int run_helper_to_exit(const std::string& mode, const std::string& record) {
  auto child = pools_test::spawn_piped({mp_helper(), mode, record}, environ);
  ::close(child.out_fd);
  ::close(child.err_fd);
  int status = 0;
  ::waitpid(child.pid, &status, 0);
  return status;
}
}  // namespace

TEST_CASE("multiprocess: a program that returns from main leaves no worker behind",
          "[multiprocess][exit]") {
  TempDir dir("mp-exit");
  const std::string record = (dir.path / "pids").string();
  const int status = run_helper_to_exit("exit", record);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  RecordedProcesses seen;
  REQUIRE(seen.read(record, 5));  // fork server, 3 workers, "ready"
  REQUIRE(seen.all_gone());
}

TEST_CASE("multiprocess: SIGKILL of the program takes its workers with it",
          "[multiprocess][exit]") {
  for (const char* mode : {"idle", "busy"}) {
    INFO("workers " << mode);
    TempDir dir(std::string("mp-kill-") + mode);
    const std::string record = (dir.path / "pids").string();
    auto child = pools_test::spawn_piped({mp_helper(), mode, record}, environ);
    RecordedProcesses seen;
    const bool ready = seen.read(record, 5);
    ::kill(child.pid, SIGKILL);
    int status = 0;
    ::waitpid(child.pid, &status, 0);
    ::close(child.out_fd);
    ::close(child.err_fd);
    REQUIRE(ready);
    REQUIRE(seen.seen.size() == 4);  // the server and 3 workers were running
    REQUIRE(seen.all_gone());
  }
}
