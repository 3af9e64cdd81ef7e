// Worker lifecycle over every pool kind: on_start/on_stop hooks, the pool's
// state, release_stage_pools and the fast close (close_pools_now).
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using pools::PoolState;
using pools_test::contains;
using pools_test::Gate;
using pools_test::TempDir;
using pools_test::wait_until;

namespace {

// Records the threads that ran each hook.
struct HookLog {
  std::mutex mutex;
  std::multiset<std::thread::id> started, stopped;
  std::atomic<int> starts{0}, stops{0};
  pools::WorkerHook on_start() {
    return [this] {
      std::lock_guard lock(mutex);
      started.insert(std::this_thread::get_id());
      ++starts;
    };
  }
  pools::WorkerHook on_stop() {
    return [this] {
      std::lock_guard lock(mutex);
      stopped.insert(std::this_thread::get_id());
      ++stops;
    };
  }
};

// Waits (polling, no deadline assertion) until the pool reaches `state`.
bool reaches(const pools::PoolBase& pool, PoolState state) {
  return wait_until([&] { return pool.state() == state; });
}

// Redirects stderr (descriptor 2) to a file while alive; text() reads it.
class CaptureStderr {
public:
  explicit CaptureStderr(std::string path) : path_(std::move(path)) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ~CaptureStderr() { restore(); }
  std::string text() {
    restore();
    return pools_test::read_text(path_);
  }

private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  std::string path_;
  int saved_ = -1;
};

template <class Ex, class F>
std::string what_of(F&& f) {
  try {
    f();
  } catch (const Ex& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

// ---- functions for the worker processes (plain functions: they cross) -----

// The multiprocess hooks log "start <pid>" / "stop <pid>" to the file named by
// POOLS_TEST_LOG (set in the workers' environment by the pool's options).
void log_line(const char* what) {
  std::ofstream(std::getenv("POOLS_TEST_LOG"), std::ios::app)
      << what << ' ' << ::getpid() << '\n';
}
void mp_start() { log_line("start"); }
void mp_stop() { log_line("stop"); }
void other_start() {}
int my_pid() { return static_cast<int>(::getpid()); }

// Creates `marker`, then sleeps far longer than any test runs.
int mark_and_sleep(std::string marker) {
  std::ofstream(marker) << "running\n";
  std::this_thread::sleep_for(std::chrono::hours(1));
  return 0;
}

std::multiset<std::string> words(const std::string& file, const std::string& what) {
  std::multiset<std::string> out;
  for (const std::string& line : pools_test::lines_of(pools_test::read_text(file)))
    if (line.rfind(what + " ", 0) == 0) out.insert(line.substr(what.size() + 1));
  return out;
}

}  // namespace

// ---- thread pool -----------------------------------------------------------

TEST_CASE("thread pool: on_start and on_stop run once in each worker thread", "[thread]") {
  HookLog log;
  pools::ThreadPoolOptions o;
  o.threads = 3;
  o.on_start = log.on_start();
  o.on_stop = log.on_stop();
  auto& pool = pools::get_thread_pool("lifecycle hooks", o);
  REQUIRE(reaches(pool, PoolState::running));
  CHECK(log.starts == 3);
  std::mutex m;
  std::set<std::thread::id> ran_on;
  std::vector<pools::Task<void>> tasks;
  for (int i = 0; i < 50; ++i)
    tasks.push_back(pool.add_task("t", [&] {
      std::lock_guard lock(m);
      ran_on.insert(std::this_thread::get_id());
    }));
  for (auto& t : tasks) t.wait();
  CHECK(log.stops == 0);
  pool.shutdown();
  CHECK(pool.state() == PoolState::stopped);
  CHECK(log.starts == 3);
  CHECK(log.stops == 3);
  const std::set<std::thread::id> started(log.started.begin(), log.started.end());
  CHECK(started.size() == 3);                   // three different threads
  CHECK(log.stopped == log.started);            // each stopped on its own thread
  for (auto id : ran_on) CHECK(started.count(id) == 1);  // the workers ran the tasks
}

TEST_CASE("thread pool: starting until every on_start returned; no task runs before",
          "[thread]") {
  Gate gate;
  std::atomic<int> in_hook{0};
  pools::ThreadPoolOptions o;
  o.threads = 2;
  o.on_start = [&, w = gate.waiter()] {
    ++in_hook;
    w.wait();
  };
  auto& pool = pools::get_thread_pool("lifecycle slow start", o);
  REQUIRE(wait_until([&] { return in_hook == 2; }));
  CHECK(pool.state() == PoolState::starting);
  std::atomic<bool> ran{false};
  auto task = pool.add_task("early", [&] { ran = true; });
  CHECK_FALSE(task.iscompleted());  // cannot have run: every worker is in on_start
  CHECK_FALSE(ran);
  CHECK(pool.state() == PoolState::starting);
  gate.open();
  task.wait();
  CHECK(ran);
  // The other worker may still be on its way out of on_start.
  CHECK(reaches(pool, PoolState::running));
  pool.shutdown();
}

TEST_CASE("thread pool: draining while shutdown waits, then stopped", "[thread]") {
  auto& pool = pools::get_thread_pool("lifecycle drain", 1);
  REQUIRE(reaches(pool, PoolState::running));
  Gate gate;
  auto held = pools_test::hold_worker(pool, gate);
  auto queued = pool.add_task("queued", [] { return 7; });
  std::thread closer([&] { pool.shutdown(); });
  REQUIRE(reaches(pool, PoolState::draining));
  CHECK_FALSE(pool.accepting());
  CHECK_THROWS_AS(pool.add_task("late", [] {}), pools::Error);
  gate.open();
  closer.join();
  CHECK(pool.state() == PoolState::stopped);
  CHECK(queued.wait_return() == 7);  // a graceful shutdown runs what was queued
  held.wait();
}

TEST_CASE("thread pool: an on_start that throws fails the tasks with its error, no hang",
          "[thread]") {
  std::atomic<int> calls{0};
  std::atomic<int> stops{0};
  pools::ThreadPoolOptions o;
  o.threads = 2;
  o.on_start = [&] {
    if (calls++ == 0) throw std::runtime_error("no GPU on this node");
  };
  o.on_stop = [&] { ++stops; };
  TempDir dir("lifecycle-start-fails");
  CaptureStderr err(dir / "stderr");
  auto& pool = pools::get_thread_pool("lifecycle broken start", o);
  std::atomic<bool> ran{false};
  auto task = pool.add_task("needs a GPU", [&] { ran = true; });
  const std::string what = what_of<pools::Error>([&] { task.wait(); });
  CHECK(contains(what, "thread pool 'lifecycle broken start'"));
  CHECK(contains(what, "on_start of worker"));
  CHECK(contains(what, "no GPU on this node"));
  CHECK_FALSE(ran);
  CHECK(reaches(pool, PoolState::running));  // started (badly): it does not stay starting
  // Later tasks fail the same way; nothing hangs, nothing runs.
  CHECK_THROWS_AS(pool.add_task("later", [&] { ran = true; }).wait(), pools::Error);
  (void)pool.add_task("nobody waits", [&] { ran = true; });
  pool.shutdown();
  CHECK_FALSE(ran);
  CHECK(stops == 1);  // only the worker whose on_start succeeded
  const std::string text = err.text();
  CHECK(contains(text, "no GPU on this node"));   // the hook's failure, when it happened
  CHECK(contains(text, "'nobody waits'"));        // and the task nobody waited for
}

TEST_CASE("thread pool: an on_stop that throws is reported; shutdown completes", "[thread]") {
  pools::ThreadPoolOptions o;
  o.threads = 2;
  o.on_stop = [] { throw std::runtime_error("flush failed"); };
  TempDir dir("lifecycle-stop-fails");
  CaptureStderr err(dir / "stderr");
  auto& pool = pools::get_thread_pool("lifecycle broken stop", o);
  CHECK(pool.add_task("t", [] { return 1; }).wait_return() == 1);
  pool.shutdown();
  CHECK(pool.state() == PoolState::stopped);
  const auto lines = pools_test::lines_of(err.text());
  int reported = 0;
  for (const auto& l : lines) reported += contains(l, "on_stop of worker") && contains(l, "flush failed");
  CHECK(reported == 2);
}

TEST_CASE("thread pool options: same options give the same pool, other hooks throw",
          "[thread]") {
  auto hook = [] {};
  pools::ThreadPoolOptions o;
  o.threads = 2;
  o.on_start = hook;
  auto& pool = pools::get_thread_pool("lifecycle options", o);
  CHECK(&pools::get_thread_pool("lifecycle options", o) == &pool);
  CHECK(&pools::get_thread_pool("lifecycle options") == &pool);  // plain lookups still work
  CHECK(&pools::get_thread_pool("lifecycle options", 2) == &pool);
  pools::ThreadPoolOptions other = o;
  other.on_start = [] {};  // another lambda: another hook
  CHECK_THROWS_AS(pools::get_thread_pool("lifecycle options", other), pools::Error);
  other = o;
  other.on_start = nullptr;
  CHECK_THROWS_AS(pools::get_thread_pool("lifecycle options", other), pools::Error);
  other = o;
  other.threads = 3;
  CHECK_THROWS_AS(pools::get_thread_pool("lifecycle options", other), pools::Error);
  pool.shutdown();
}

// ---- serial pool -------------------------------------------------------------

TEST_CASE("serial pool: on_start before the first task on the caller, on_stop at shutdown",
          "[serial]") {
  HookLog log;
  pools::SerialPoolOptions o;
  o.on_start = log.on_start();
  o.on_stop = log.on_stop();
  auto& pool = pools::get_serial_pool("lifecycle serial", o);
  CHECK(pool.state() == PoolState::starting);
  CHECK(log.starts == 0);
  int seen = -1;
  pool.add_task("first", [&] { seen = log.starts; }).wait();
  CHECK(seen == 1);
  CHECK(pool.state() == PoolState::running);
  for (int i = 0; i < 5; ++i) pool.add_task("more", [] {}).wait();
  std::thread([&] { pool.add_task("elsewhere", [] {}).wait(); }).join();
  CHECK(log.starts == 1);
  CHECK(log.started.count(std::this_thread::get_id()) == 1);
  pool.shutdown();
  CHECK(pool.state() == PoolState::stopped);
  CHECK(log.stops == 1);
  CHECK(log.stopped.count(std::this_thread::get_id()) == 1);
}

TEST_CASE("serial pool: an on_start that throws fails every task", "[serial]") {
  pools::SerialPoolOptions o;
  int stops = 0;
  o.on_start = [] { throw std::runtime_error("cannot open the log"); };
  o.on_stop = [&] { ++stops; };
  TempDir dir("lifecycle-serial-fails");
  CaptureStderr err(dir / "stderr");
  auto& pool = pools::get_serial_pool("lifecycle serial broken", o);
  bool ran = false;
  for (int i = 0; i < 2; ++i) {
    auto t = pool.add_task("t", [&] { ran = true; });
    CHECK(contains(what_of<pools::Error>([&] { t.wait(); }), "cannot open the log"));
  }
  CHECK_FALSE(ran);
  CHECK(pool.state() == PoolState::running);
  pool.shutdown();
  CHECK(stops == 0);
  CHECK(contains(err.text(), "on_start of worker 0 failed"));
}

// ---- process pool --------------------------------------------------------------

TEST_CASE("process pool: hooks run in each function thread; commands need none", "[process]") {
  HookLog log;
  pools::ProcessPoolOptions o;
  o.max_running = 2;
  o.on_start = log.on_start();
  o.on_stop = log.on_stop();
  auto& pool = pools::get_process_pool("lifecycle process", o);
  REQUIRE(reaches(pool, PoolState::running));
  CHECK(log.starts == 2);  // the function threads started with the pool
  CHECK(pool.add_task("f", [] { return 5; }).wait_return() == 5);
  CHECK(pool.add_process("echo", std::vector<std::string>{"echo", "hi"}).wait_return() == "hi\n");
  CHECK(&pools::get_process_pool("lifecycle process", o) == &pool);
  pool.shutdown();
  CHECK(pool.state() == PoolState::stopped);
  CHECK(log.starts == 2);
  CHECK(log.stops == 2);
  CHECK(log.stopped == log.started);
}

TEST_CASE("process pool: starting while its function threads run on_start", "[process]") {
  Gate gate;
  pools::ProcessPoolOptions o;
  o.max_running = 1;
  o.on_start = [w = gate.waiter()] { w.wait(); };
  auto& pool = pools::get_process_pool("lifecycle process slow start", o);
  CHECK(pool.state() == PoolState::starting);
  // Commands do not wait for the function threads.
  CHECK(pool.add_process("true", std::vector<std::string>{"true"}).wait_return().empty());
  CHECK(pool.state() == PoolState::starting);
  gate.open();
  REQUIRE(reaches(pool, PoolState::running));
  pool.shutdown();
  CHECK(pool.state() == PoolState::stopped);
}

// ---- multiprocess pool -----------------------------------------------------------

TEST_CASE("multiprocess: on_start and on_stop run once in each worker process",
          "[multiprocess]") {
  TempDir dir("lifecycle-mp");
  pools::MultiprocessOptions o;
  o.workers = 2;
  o.on_start = mp_start;
  o.on_stop = mp_stop;
  o.environment = {{"POOLS_TEST_LOG", dir / "log"}};
  auto& pool = pools::get_multiprocess_pool("lifecycle mp", o);
  REQUIRE(reaches(pool, PoolState::running));
  CHECK(words(dir / "log", "start").size() == 2);  // running: every worker ran on_start
  // The old names are the same hooks: the same pool.
  pools::MultiprocessOptions old_names = o;
  old_names.on_start = nullptr;
  old_names.on_stop = nullptr;
  old_names.initializer = mp_start;
  old_names.finalizer = mp_stop;
  CHECK(&pools::get_multiprocess_pool("lifecycle mp", old_names) == &pool);
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 10; ++i) tasks.push_back(pool.add_task("pid", my_pid));
  const auto starts = words(dir / "log", "start");
  for (auto& t : tasks) CHECK(starts.count(std::to_string(t.wait_return())) == 1);
  pool.shutdown();
  CHECK(pool.state() == PoolState::stopped);
  CHECK(words(dir / "log", "stop") == starts);  // each worker stopped once
}

TEST_CASE("multiprocess: two different functions for one hook throw", "[multiprocess]") {
  pools::MultiprocessOptions o;
  o.workers = 1;
  o.initializer = mp_start;
  o.on_start = other_start;
  CHECK_THROWS_AS(pools::get_multiprocess_pool("lifecycle mp clash", o), pools::Error);
}

// ---- stage helpers -------------------------------------------------------------

TEST_CASE("release_stage_pools closes the thread-kind pools and keeps worker processes warm",
          "[multiprocess][thread][process][serial]") {
  TempDir dir("lifecycle-stage");
  pools::MultiprocessOptions mo;
  mo.workers = 2;
  mo.on_start = mp_start;
  mo.on_stop = mp_stop;
  mo.environment = {{"POOLS_TEST_LOG", dir / "log"}};
  auto& warm = pools::get_multiprocess_pool("stage warm", mo);
  auto& threads = pools::get_thread_pool("stage threads", 2);
  auto& commands = pools::get_process_pool("stage commands", 2);
  auto& serial = pools::get_serial_pool("stage serial");

  std::atomic<int> done{0};
  for (int i = 0; i < 20; ++i) (void)threads.add_task("t", [&] { ++done; });
  (void)commands.add_process("c", std::vector<std::string>{"true"});
  (void)serial.add_task("s", [&] { ++done; });
  std::vector<pools::Task<int>> before;
  for (int i = 0; i < 8; ++i) before.push_back(warm.add_task("pid", my_pid));

  pools::release_stage_pools();

  // Everything finished (it waits first).
  CHECK(done == 21);
  for (auto& t : before) CHECK(t.iscompleted());
  // The thread-kind pools are gone...
  for (pools::PoolBase* p : {&threads, &commands, &serial}) {
    CHECK(p->state() == PoolState::stopped);
    CHECK_FALSE(p->accepting());
  }
  CHECK_THROWS_AS(pools::find_pool("stage threads"), pools::Error);
  CHECK_THROWS_AS(pools::find_pool("stage commands"), pools::Error);
  CHECK_THROWS_AS(pools::find_pool("stage serial"), pools::Error);
  // ...the multiprocess pool is not: same pool, same worker processes.
  CHECK(&pools::find_pool("stage warm") == &warm);
  CHECK(warm.state() == PoolState::running);
  const auto starts = words(dir / "log", "start");
  CHECK(starts.size() == 2);
  CHECK(words(dir / "log", "stop").empty());
  for (int i = 0; i < 8; ++i)
    CHECK(starts.count(std::to_string(warm.add_task("pid", my_pid).wait_return())) == 1);
  CHECK(words(dir / "log", "start") == starts);  // no new worker was made
  warm.shutdown();
}

TEST_CASE("close_pools_now: a thread pool cancels its queued tasks, reports them, and waits "
          "for the running one",
          "[thread]") {
  TempDir dir("lifecycle-now-thread");
  auto& pool = pools::get_thread_pool("now threads", 1);
  Gate gate;
  auto held = pools_test::hold_worker(pool, gate, "held", 1);
  std::atomic<int> ran{0};
  std::vector<pools::Task<void>> queued;
  for (int i = 0; i < 3; ++i)
    queued.push_back(pool.add_task("queued " + std::to_string(i), [&] { ++ran; }));
  CaptureStderr err(dir / "stderr");
  std::thread closer([] { pools::close_pools_now(); });
  REQUIRE(reaches(pool, PoolState::draining));
  gate.open();  // a thread cannot be killed: its task finishes
  closer.join();
  CHECK(pool.state() == PoolState::stopped);
  CHECK(held.wait_return() == 1);
  for (auto& t : queued) CHECK_THROWS_AS(t.wait(), pools::Cancelled);
  CHECK(ran == 0);
  const std::string text = err.text();
  CHECK(contains(text, "thread pool 'now threads' was closed at once: 3 queued tasks cancelled"));
  CHECK(contains(text, "'queued 0'"));
  CHECK(contains(text, "'queued 2'"));
}

TEST_CASE("close_pools_now: a process pool kills its running command and cancels the queued",
          "[process]") {
  TempDir dir("lifecycle-now-process");
  auto& pool = pools::get_process_pool("now commands", 1);
  auto running = pool.add_process(
      "long", pools_test::helper({"sleep", "3600", dir / "started"}));
  auto queued = pool.add_process("queued", pools_test::helper({"sleep", "0", dir / "queued-ran"}));
  REQUIRE(wait_until([&] { return fs::exists(dir / "started"); }));
  CaptureStderr err(dir / "stderr");
  pools::close_pools_now();  // returns: the hour-long command was killed
  CHECK(pool.state() == PoolState::stopped);
  CHECK(contains(what_of<pools::Cancelled>([&] { running.wait(); }), "process group was terminated"));
  CHECK(running.result().signal != 0);
  CHECK_THROWS_AS(queued.wait(), pools::Cancelled);
  CHECK_FALSE(fs::exists(dir / "queued-ran"));
  const std::string text = err.text();
  CHECK(contains(text, "process pool 'now commands' was closed at once: 1 queued task cancelled: "
                       "'queued'"));
  CHECK(contains(text, "1 running task stopped: 'long'"));
}

TEST_CASE("close_pools_now: a multiprocess pool kills its workers; the running task fails "
          "with WorkerLost, the queued are cancelled",
          "[multiprocess]") {
  TempDir dir("lifecycle-now-mp");
  pools::MultiprocessOptions o;
  o.workers = 1;
  o.on_stop = mp_stop;  // killed workers do not run it
  o.environment = {{"POOLS_TEST_LOG", dir / "log"}};
  auto& pool = pools::get_multiprocess_pool("now processes", o);
  auto running = pool.add_task("sleeper", mark_and_sleep, dir / "started");
  std::vector<pools::Task<int>> queued;
  for (int i = 0; i < 3; ++i) queued.push_back(pool.add_task("queued", my_pid));
  REQUIRE(wait_until([&] { return fs::exists(dir / "started"); }));
  CaptureStderr err(dir / "stderr");
  pools::close_pools_now();  // returns: the hour-long task's worker was killed
  CHECK(pool.state() == PoolState::stopped);
  CHECK(contains(what_of<pools::WorkerLost>([&] { running.wait(); }),
                 "the pool was closed at once"));
  for (auto& t : queued) CHECK_THROWS_AS(t.wait(), pools::Cancelled);
  CHECK(words(dir / "log", "stop").empty());
  CHECK(contains(err.text(), "multiprocess pool 'now processes' was closed at once: 3 queued"));
}

// Tasks whose handles were dropped: the fast close's one line lists them, in
// the order they were added, and none is reported again as a failure that
// nobody waited for.
TEST_CASE("close_pools_now names each dropped task once and in add order",
          "[multiprocess][process]") {
  TempDir dir("lifecycle-now-once");
  const bool commands = GENERATE(false, true);
  INFO((commands ? "process pool" : "multiprocess pool"));
  pools::MultiprocessOptions o;
  o.workers = 1;
  pools::PoolBase& pool = commands ? pools::get_process_pool("now once commands", 1)
                                   : pools::get_multiprocess_pool("now once processes", o);
  if (commands) {
    pool.add_process("sleeper", pools_test::helper({"sleep", "3600", dir / "started"}));
  } else {
    pool.add_task("sleeper", mark_and_sleep, dir / "started");
  }
  for (int i = 1; i <= 12; ++i) {
    if (commands) {
      pool.add_process("queued " + std::to_string(i), pools_test::helper({"sleep", "0"}));
    } else {
      pool.add_task("queued " + std::to_string(i), my_pid);
    }
  }
  REQUIRE(wait_until([&] { return fs::exists(dir / "started"); }));
  CaptureStderr err(dir / "stderr");
  pools::close_pools_now();
  const std::string text = err.text();
  INFO(text);
  CHECK(contains(text, "12 queued tasks cancelled: 'queued 1' (id "));
  CHECK(contains(text, "'queued 10' (id "));
  CHECK(contains(text, " and 2 more; 1 running task stopped: 'sleeper' (id "));
  CHECK_FALSE(contains(text, "'queued 11'"));
  CHECK_FALSE(contains(text, "nobody waited"));
  // In add order: 'queued 2' comes right after 'queued 1'.
  const auto first = text.find("'queued 1' (id ");
  CHECK(text.find("'queued 2' (id ", first) == text.find("), ", first) + 3);
}

TEST_CASE("shutdown(ShutdownMode::now) closes one pool; the others keep running",
          "[thread]") {
  auto& keep = pools::get_thread_pool("now keep", 1);
  auto& stop = pools::get_thread_pool("now stop", 1);
  stop.shutdown(pools::ShutdownMode::now);
  CHECK(stop.state() == PoolState::stopped);
  CHECK(keep.add_task("t", [] { return 3; }).wait_return() == 3);
  keep.shutdown(pools::ShutdownMode::wait);
  CHECK(keep.state() == PoolState::stopped);
  CHECK(pools::to_string(PoolState::draining) == "draining");
}
