// Observers: every pool kind reports queued, started and finished once per task
// with the right outcome and worker; throwing and removed observers; the
// built-in JSON log, progress bar and summary.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using pools::TaskEventKind;
using pools::TaskOutcome;
using pools::WorkerKind;
using pools_test::Gate;
using pools_test::TempDir;

namespace {

int square(int x) { return x * x; }
int fail_on(int x) {
  if (x < 0) throw std::runtime_error("negative input");
  return x;
}

struct Recorded {
  TaskEventKind kind;
  std::uint64_t id;
  std::string name, pool;
  pools::WorkerId worker;
  TaskOutcome outcome;
  std::string error;
  std::int64_t command_pid;
  long long duration_ns;
};

class Recorder : public pools::Observer {
public:
  void on_queued(const pools::TaskEvent& e) override { add(e); }
  void on_started(const pools::TaskEvent& e) override { add(e); }
  void on_finished(const pools::TaskEvent& e) override { add(e); }

  std::vector<Recorded> of(std::uint64_t id) const {
    std::lock_guard lock(mutex_);
    std::vector<Recorded> out;
    for (const auto& r : events_)
      if (r.id == id) out.push_back(r);
    return out;
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return events_.size();
  }

private:
  void add(const pools::TaskEvent& e) {
    std::lock_guard lock(mutex_);
    events_.push_back({e.kind, e.task_id, std::string(e.task_name), e.pool ? e.pool->name() : "",
                       e.worker, e.outcome, std::string(e.error), e.command_pid,
                       static_cast<long long>(e.duration.count())});
  }
  mutable std::mutex mutex_;
  std::vector<Recorded> events_;
};

// The events of one task that ran: queued, started, finished in this order.
Recorded check_ran(const Recorder& rec, const pools::TaskBase& t, TaskOutcome outcome,
                   WorkerKind worker, const std::string& pool) {
  INFO("task '" << t.name() << "' id " << t.id());
  const auto ev = rec.of(t.id());
  REQUIRE(ev.size() == 3);
  CHECK(ev[0].kind == TaskEventKind::queued);
  CHECK(ev[1].kind == TaskEventKind::started);
  CHECK(ev[2].kind == TaskEventKind::finished);
  for (const auto& e : ev) {
    CHECK(e.name == t.name());
    CHECK(e.pool == pool);
  }
  CHECK(ev[1].worker.kind == worker);
  CHECK(ev[2].worker.kind == worker);
  CHECK(ev[2].worker.id == ev[1].worker.id);
  CHECK(ev[2].outcome == outcome);
  CHECK(ev[2].duration_ns >= 0);
  CHECK(ev[2].error.empty() == (outcome == TaskOutcome::succeeded));
  return ev[2];
}

// The events of a task that never started: queued, then finished.
Recorded check_unstarted(const Recorder& rec, const pools::TaskBase& t, TaskOutcome outcome) {
  INFO("task '" << t.name() << "' id " << t.id());
  const auto ev = rec.of(t.id());
  REQUIRE(ev.size() == 2);
  CHECK(ev[0].kind == TaskEventKind::queued);
  CHECK(ev[1].kind == TaskEventKind::finished);
  CHECK(ev[1].outcome == outcome);
  CHECK(ev[1].worker.kind == WorkerKind::none);
  CHECK(ev[1].duration_ns == 0);
  return ev[1];
}

// Redirects this process's stderr (fd 2) to a file while it lives.
class CaptureStderr {
public:
  explicit CaptureStderr(std::string path) : path_(std::move(path)) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    FILE* f = std::fopen(path_.c_str(), "w");
    ::dup2(fileno(f), 2);
    std::fclose(f);
  }
  std::string finish() {
    if (saved_ >= 0) {
      std::fflush(stderr);
      ::dup2(saved_, 2);
      ::close(saved_);
      saved_ = -1;
    }
    return pools_test::read_text(path_);
  }
  ~CaptureStderr() { finish(); }

private:
  std::string path_;
  int saved_ = -1;
};

}  // namespace

TEST_CASE("observers: a thread pool reports each task once, with its outcome and thread",
          "[observers][thread]") {
  auto& pool = pools::get_thread_pool("obs.thread", 2);
  auto rec = std::make_shared<Recorder>();
  pool.add_observer(rec);
  std::vector<pools::Task<int>> ok;
  for (int i = 0; i < 20; ++i) ok.push_back(pool.add_task("sq" + std::to_string(i), square, i));
  auto bad = pool.add_task("bad", fail_on, -1);
  pool.wait_completion();
  for (auto& t : ok) {
    const auto fin = check_ran(*rec, t, TaskOutcome::succeeded, WorkerKind::thread, "obs.thread");
    CHECK(fin.worker.id >= 0);
    CHECK(fin.worker.id < 2);
  }
  const auto fin = check_ran(*rec, bad, TaskOutcome::failed, WorkerKind::thread, "obs.thread");
  CHECK(pools_test::contains(fin.error, "negative input"));
  CHECK(pools_test::contains(fin.error, "runtime_error"));
  CHECK_THROWS(bad.wait());
  CHECK(pool.remove_observer(rec));
}

TEST_CASE("observers: a task's finished event is delivered before its wait returns",
          "[observers][thread]") {
  auto& pool = pools::get_thread_pool("obs.order", 2);
  auto rec = std::make_shared<Recorder>();
  pool.add_observer(rec);
  for (int i = 0; i < 50; ++i) {
    auto t = pool.add_task("t", square, i);
    t.wait();
    REQUIRE(rec->of(t.id()).size() == 3);
  }
  pool.remove_observer(rec);
}

TEST_CASE("observers: the serial pool reports the calling thread", "[observers][serial]") {
  auto& pool = pools::get_serial_pool("obs.serial");
  auto rec = std::make_shared<Recorder>();
  pool.add_observer(rec);
  auto t = pool.add_task("one", square, 3);
  auto bad = pool.add_task("bad", fail_on, -2);
  const auto fin = check_ran(*rec, t, TaskOutcome::succeeded, WorkerKind::caller, "obs.serial");
  CHECK(fin.worker.id == static_cast<std::int64_t>(::syscall(SYS_gettid)));
  check_ran(*rec, bad, TaskOutcome::failed, WorkerKind::caller, "obs.serial");
  CHECK_THROWS(bad.wait());
  pool.remove_observer(rec);
}

TEST_CASE("observers: a process pool reports commands with their pid and functions as its own",
          "[observers][process]") {
  auto& pool = pools::get_process_pool("obs.process", 2);
  auto rec = std::make_shared<Recorder>();
  pool.add_observer(rec);
  auto ok = pool.add_process("ok", "true");
  auto bad = pool.add_process("bad", "exit 3");
  auto missing = pool.add_process("missing", std::vector<std::string>{"/nonexistent/program"});
  auto fn = pool.add_task("fn", square, 4);
  pool.wait_completion();
  const auto fin = check_ran(*rec, ok, TaskOutcome::succeeded, WorkerKind::command, "obs.process");
  CHECK(fin.worker.id > 0);
  CHECK(fin.command_pid == fin.worker.id);
  const auto failed = check_ran(*rec, bad, TaskOutcome::failed, WorkerKind::command, "obs.process");
  CHECK(pools_test::contains(failed.error, "exited with status 3"));
  const auto not_run =
      check_ran(*rec, missing, TaskOutcome::failed, WorkerKind::command, "obs.process");
  CHECK(not_run.worker.id == -1);
  CHECK_THROWS_AS(bad.wait(), pools::ProcessError);
  CHECK_THROWS_AS(missing.wait(), pools::ProcessError);
  check_ran(*rec, fn, TaskOutcome::succeeded, WorkerKind::thread, "obs.process");
  pool.remove_observer(rec);
}

TEST_CASE("observers: the thread pool reports a command's pid in its finished event",
          "[observers][thread]") {
  auto& pool = pools::get_thread_pool("obs.thread_cmd", 1);
  auto rec = std::make_shared<Recorder>();
  pool.add_observer(rec);
  auto t = pool.add_process("echo", "echo hi");
  CHECK(t.wait_return() == "hi\n");
  const auto fin =
      check_ran(*rec, t, TaskOutcome::succeeded, WorkerKind::thread, "obs.thread_cmd");
  CHECK(fin.command_pid == t.result().pid);
  pool.remove_observer(rec);
}

TEST_CASE("observers: a multiprocess pool reports its worker processes",
          "[observers][multiprocess]") {
  auto& pool = pools::get_multiprocess_pool("obs.mp", 2);
  auto rec = std::make_shared<Recorder>();
  pool.add_observer(rec);
  std::vector<pools::Task<int>> ok;
  for (int i = 0; i < 10; ++i) ok.push_back(pool.add_task("sq", square, i));
  auto chunked = pool.add_tasks("chunk", square, std::vector<int>{1, 2, 3, 4, 5, 6}, 3);
  auto bad = pool.add_task("bad", fail_on, -1);
  auto cmd = pool.add_process("cmd", "true");
  pool.wait_completion();
  for (auto& t : ok) {
    const auto fin = check_ran(*rec, t, TaskOutcome::succeeded, WorkerKind::process, "obs.mp");
    CHECK(fin.worker.id > 0);
    CHECK(fin.worker.id != ::getpid());
  }
  for (auto& t : chunked) check_ran(*rec, t, TaskOutcome::succeeded, WorkerKind::process, "obs.mp");
  const auto fin = check_ran(*rec, bad, TaskOutcome::failed, WorkerKind::process, "obs.mp");
  CHECK(pools_test::contains(fin.error, "negative input"));
  CHECK_THROWS_AS(bad.wait(), pools::RemoteError);
  check_ran(*rec, cmd, TaskOutcome::succeeded, WorkerKind::process, "obs.mp");
  pool.remove_observer(rec);
}

TEST_CASE("observers: a task cancelled before it started is finished as cancelled, never started",
          "[observers][thread]") {
  auto& pool = pools::get_thread_pool("obs.cancel", 1);
  auto rec = std::make_shared<Recorder>();
  pool.add_observer(rec);
  Gate gate;
  auto held = pools_test::hold_worker(pool, gate);
  auto t = pool.add_task("later", square, 2);
  REQUIRE(t.cancel());
  gate.open();
  pool.wait_completion();
  const auto fin = check_unstarted(*rec, t, TaskOutcome::cancelled);
  CHECK_FALSE(fin.error.empty());
  pool.remove_observer(rec);
}

TEST_CASE("observers: a task cancelled while the pool's on_start fails is finished as cancelled",
          "[observers][thread]") {
  Gate gate;
  pools::ThreadPoolOptions o;
  o.threads = 1;
  o.on_start = [w = gate.waiter()] {
    w.wait();
    throw std::runtime_error("no licence");
  };
  auto& pool = pools::get_thread_pool("obs.broken start", o);
  auto rec = std::make_shared<Recorder>();
  pool.add_observer(rec);
  auto cancelled = pool.add_task("cancelled", square, 2);
  auto failed = pool.add_task("failed", square, 3);
  REQUIRE(cancelled.cancel());  // the worker is still in on_start
  gate.open();
  CHECK_THROWS_WITH(failed.wait(), Catch::Contains("no licence"));
  check_unstarted(*rec, cancelled, TaskOutcome::cancelled);
  check_unstarted(*rec, failed, TaskOutcome::failed);
  pool.remove_observer(rec);
}

TEST_CASE("observers: dependencies: a dependent task is one task; a skipped one is finished as "
          "skipped",
          "[observers][dependencies]") {
  auto& pool = pools::get_thread_pool("obs.deps", 2);
  auto rec = std::make_shared<Recorder>();
  pool.add_observer(rec);
  auto good = pool.add_task("good", square, 3);
  auto bad = pool.add_task("bad", fail_on, -1);
  auto runs = pools::add_task_after(pool, "runs", pools::after(good), [](int x) { return x + 1; });
  auto skipped = pools::add_task_after(pool, "skipped", pools::after(bad), [](int x) { return x; });
  auto skipped2 =
      pools::add_task_after(pool, "skipped2", pools::after(skipped), [](int x) { return x; });
  CHECK(runs.wait_return() == 10);
  CHECK_THROWS_AS(skipped.wait(), pools::Skipped);
  CHECK_THROWS_AS(skipped2.wait(), pools::Skipped);
  pool.wait_completion();
  check_ran(*rec, runs, TaskOutcome::succeeded, WorkerKind::thread, "obs.deps");
  const auto fin = check_unstarted(*rec, skipped, TaskOutcome::skipped);
  CHECK(pools_test::contains(fin.error, "Skipped"));
  CHECK(pools_test::contains(fin.error, "'bad'"));
  CHECK_THROWS(bad.wait());
  check_unstarted(*rec, skipped2, TaskOutcome::skipped);
  pool.remove_observer(rec);
}

TEST_CASE("observers: an observer that throws does not break the pool and is reported once",
          "[observers][thread]") {
  struct Thrower : pools::Observer {
    std::atomic<int> calls{0};
    void on_queued(const pools::TaskEvent&) override { ++calls, throw std::logic_error("boom"); }
    void on_started(const pools::TaskEvent&) override { ++calls, throw std::logic_error("boom"); }
    void on_finished(const pools::TaskEvent&) override { ++calls, throw 42; }
  };
  TempDir dir("observers-throw");
  auto& pool = pools::get_thread_pool("obs.throw", 2);
  auto thrower = std::make_shared<Thrower>();
  auto rec = std::make_shared<Recorder>();
  CaptureStderr capture(dir / "stderr");
  pool.add_observer(thrower);
  pool.add_observer(rec);  // after it: still called
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 10; ++i) tasks.push_back(pool.add_task("t", square, i));
  for (int i = 0; i < 10; ++i) CHECK(tasks[i].wait_return() == i * i);
  pool.wait_completion();
  pool.remove_observer(thrower);
  pool.remove_observer(rec);
  const std::string err = capture.finish();
  CHECK(thrower->calls.load() == 30);
  for (auto& t : tasks) check_ran(*rec, t, TaskOutcome::succeeded, WorkerKind::thread, "obs.throw");
  std::size_t reports = 0;
  for (const auto& line : pools_test::lines_of(err))
    if (pools_test::contains(line, "an observer")) ++reports;
  CHECK(reports == 1);
  CHECK(pools_test::contains(err, "boom"));
}

TEST_CASE("observers: a removed observer receives nothing more; removing twice is false",
          "[observers][thread]") {
  auto& pool = pools::get_thread_pool("obs.remove", 2);
  auto rec = std::make_shared<Recorder>();
  pool.add_observer(rec);
  pool.add_task("a", square, 1).wait();
  pool.wait_completion();
  const std::size_t seen = rec->size();
  CHECK(seen == 3);
  CHECK(pool.remove_observer(rec));
  CHECK_FALSE(pool.remove_observer(rec));
  pool.add_task("b", square, 2).wait();
  pool.wait_completion();
  CHECK(rec->size() == seen);
  CHECK_THROWS_AS(pool.add_observer(nullptr), pools::Error);
}

TEST_CASE("observers: a global observer sees every pool, also one made later",
          "[observers][serial]") {
  auto rec = std::make_shared<Recorder>();
  pools::add_global_observer(rec);
  auto& later = pools::get_serial_pool("obs.global.new");
  auto t = later.add_task("g", square, 5);
  auto& threads = pools::get_thread_pool("obs.global.threads", 1);
  auto u = threads.add_task("h", square, 6);
  u.wait();
  threads.wait_completion();
  CHECK(pools::remove_global_observer(rec));
  CHECK_FALSE(pools::remove_global_observer(rec));
  check_ran(*rec, t, TaskOutcome::succeeded, WorkerKind::caller, "obs.global.new");
  check_ran(*rec, u, TaskOutcome::succeeded, WorkerKind::thread, "obs.global.threads");
}

TEST_CASE("observers: JSON strings are escaped: quotes, control characters, invalid UTF-8",
          "[observers][json]") {
  auto json = [](std::string_view s) {
    std::string out;
    pools::append_json_string(out, s);
    return out;
  };
  CHECK(json("plain") == "\"plain\"");
  CHECK(json("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(json("l1\nl2\t\r") == "\"l1\\nl2\\t\\r\"");
  CHECK(json(std::string_view("\x01\x1f\x7f", 3)) == "\"\\u0001\\u001f\\u007f\"");
  CHECK(json(std::string_view("nul\0x", 5)) == "\"nul\\u0000x\"");
  CHECK(json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") == "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  CHECK(json("bad\xff") == "\"bad\\ufffd\"");
  CHECK(json("\xc3") == "\"\\ufffd\"");                  // truncated sequence
  CHECK(json("\xc0\xaf") == "\"\\ufffd\\ufffd\"");       // overlong
  CHECK(json("\xed\xa0\x80") == "\"\\ufffd\\ufffd\\ufffd\"");  // a surrogate
}

TEST_CASE("observers: the JSON-lines log writes one parseable object per event",
          "[observers][json]") {
  TempDir dir("observers-json");
  const std::string path = dir / "events.jsonl";
  auto& pool = pools::get_thread_pool("obs.json \"pool\"", 2);
  {
    auto log = std::make_shared<pools::JsonLog>(path);
    pool.add_observer(log);
    pool.add_task("quote\" newline\n tab\t bell\x07 bad\xff end", square, 2).wait();
    auto bad = pool.add_task("fails", [] { throw std::runtime_error("line1\nline2 \"q\" \x01"); });
    pool.wait_completion();
    CHECK_THROWS(bad.wait());
    pool.remove_observer(log);
  }
  const auto lines = pools_test::lines_of(pools_test::read_text(path));
  REQUIRE(lines.size() == 6);
  CHECK(pools_test::contains(lines[0], "\"event\":\"queued\""));
  CHECK(pools_test::contains(lines[0], "\"pool\":\"obs.json \\\"pool\\\"\""));
  CHECK(pools_test::contains(lines[0], "\"pool_kind\":\"thread\""));
  CHECK(pools_test::contains(lines[0], "bell\\u0007 bad\\ufffd end"));
  std::size_t finished = 0;
  for (const auto& l : lines) {
    if (!pools_test::contains(l, "\"event\":\"finished\"")) continue;
    ++finished;
    CHECK(pools_test::contains(l, "\"duration_s\":"));
    CHECK(pools_test::contains(l, "\"worker_kind\":\"thread\""));
  }
  CHECK(finished == 2);
  CHECK(pools_test::contains(pools_test::read_text(path),
                             "\"outcome\":\"failed\""));
  // Every line parses as JSON (Python's parser, strict about control characters).
  const std::string check =
      "python3 -c 'import json,sys\n"
      "for line in open(sys.argv[1], encoding=\"utf-8\"):\n"
      "  o = json.loads(line)\n"
      "  assert o[\"event\"] in (\"queued\", \"started\", \"finished\"), o\n"
      "  assert isinstance(o[\"task_id\"], int)\n"
      "  if o[\"event\"] == \"finished\" and o[\"outcome\"] == \"failed\":\n"
      "    assert \"line1\\nline2 \\\"q\\\" \\x01\" in o[\"error\"], o\n"
      "' " + path;
  CHECK(std::system(check.c_str()) == 0);
}

TEST_CASE("observers: the progress bar prints plain lines with a label when not on a terminal",
          "[observers][progress]") {
  TempDir dir("observers-progress");
  const std::string path = dir / "progress.txt";
  FILE* out = std::fopen(path.c_str(), "w");
  REQUIRE(out);
  auto& pool = pools::get_thread_pool("obs.progress", 2);
  auto bar = std::make_shared<pools::ProgressBar>("resize", 0, out);
  pool.add_observer(bar);
  for (int i = 0; i < 4; ++i) pool.add_task("ok", square, i);
  auto bad = pool.add_task("bad", fail_on, -1);
  pool.wait_completion();
  bar->finish();
  CHECK_THROWS(bad.wait());
  pool.remove_observer(bar);
  std::fclose(out);
  const auto lines = pools_test::lines_of(pools_test::read_text(path));
  REQUIRE_FALSE(lines.empty());
  for (const auto& l : lines) CHECK(l.rfind("resize: ", 0) == 0);
  CHECK(lines.back() == "resize: 100% 5/5 done, 1 failed, 0 running, ETA 0:00");
  CHECK(bar->done() == 5);
  CHECK(pools::progress_line(1, 0, 1, 4, std::chrono::seconds(10), 0, false) ==
        " 25% 1/4 done, 1 running, ETA 0:30");
}

TEST_CASE("observers: the summary counts outcomes and keeps the slowest tasks and failures",
          "[observers][summary]") {
  auto& pool = pools::get_thread_pool("obs.summary", 1);
  auto summary = std::make_shared<pools::Summary>(3, 10);
  pool.add_observer(summary);
  Gate gate;
  auto held = pools_test::hold_worker(pool, gate, "slow");
  auto cancelled = pool.add_task("cancelled", square, 1);
  REQUIRE(cancelled.cancel());
  auto bad = pool.add_task("bad", fail_on, -1);
  auto skipped = pools::add_task_after(pool, "skipped", pools::after(bad), [](int x) { return x; });
  std::vector<pools::Task<int>> ok;
  for (int i = 0; i < 5; ++i) ok.push_back(pool.add_task("ok", square, i));
  gate.open();
  pool.wait_completion();
  pool.remove_observer(summary);
  CHECK_THROWS(bad.wait());
  CHECK_THROWS(skipped.wait());
  const auto r = summary->report();
  CHECK(r.queued == 9);
  CHECK(r.finished == 9);
  CHECK(r.started == 7);
  CHECK(r.succeeded == 6);
  CHECK(r.failed == 1);
  CHECK(r.cancelled == 1);
  CHECK(r.skipped == 1);
  REQUIRE(r.slowest.size() == 3);
  CHECK(r.slowest[0].duration >= r.slowest[1].duration);
  CHECK(r.slowest[1].duration >= r.slowest[2].duration);
  REQUIRE(r.failures.size() == 3);
  CHECK(pools_test::contains(r.first_error, "negative input"));
  CHECK(r.wall.count() > 0);
  CHECK(r.tasks_per_second > 0);
  const std::string text = summary->text();
  CHECK(pools_test::contains(text, "9 tasks: 6 succeeded, 1 failed, 1 cancelled, 1 skipped"));
  CHECK(pools_test::contains(text, "first error: std::runtime_error: negative input"));
}

// ---- as_completed -------------------------------------------------------------------

TEST_CASE("as_completed: hands out each task once, in the order they finish",
          "[as_completed][thread]") {
  auto& pool = pools::get_thread_pool("ac.order", 3);
  Gate ga, gb, gc;
  auto a = pool.add_task("a", [w = ga.waiter()] { w.wait(); return 1; });
  auto b = pool.add_task("b", [w = gb.waiter()] { w.wait(); return 2; });
  auto c = pool.add_task("c", [w = gc.waiter()] { w.wait(); throw std::runtime_error("c failed"); return 3; });
  std::vector<pools::Task<int>> tasks{a, b, c};
  auto order = pools::as_completed(tasks);
  CHECK(order.size() == 3);
  gb.open();  // begin() blocks until the first task finished
  auto it = order.begin();
  REQUIRE_FALSE(it == order.end());
  CHECK(it->name() == "b");
  CHECK(it->wait_return() == 2);
  gc.open();
  ++it;
  CHECK(it->name() == "c");
  CHECK_THROWS_WITH(it->wait(), "c failed");
  ga.open();
  ++it;
  CHECK((*it).name() == "a");
  ++it;
  CHECK(it == order.end());
}

TEST_CASE("as_completed: tasks finished already come first, in the range's order",
          "[as_completed][serial]") {
  auto& pool = pools::get_serial_pool("ac.done");
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 5; ++i) tasks.push_back(pool.add_task("t" + std::to_string(i), square, i));
  std::vector<int> seen;
  for (const auto& t : pools::as_completed(tasks)) seen.push_back(t.wait_return());
  CHECK(seen == std::vector<int>{0, 1, 4, 9, 16});
  std::vector<pools::Task<int>> none;
  for ([[maybe_unused]] const auto& t : pools::as_completed(none)) FAIL("an empty range yields nothing");
}

TEST_CASE("as_completed: inside a task it runs the pool's queued work (no deadlock on one thread)",
          "[as_completed][thread]") {
  auto& pool = pools::get_thread_pool("ac.nested", 1);
  auto outer = pool.add_task("outer", [&pool] {
    std::vector<pools::Task<int>> inner;
    for (int i = 0; i < 20; ++i) inner.push_back(pool.add_task("inner", square, i));
    int sum = 0;
    std::size_t n = 0;
    for (const auto& t : pools::as_completed(inner)) sum += t.wait_return(), ++n;
    return n == inner.size() ? sum : -1;
  });
  CHECK(outer.wait_return() == 2470);
}

TEST_CASE("as_completed: many tasks on several threads, each handed out exactly once",
          "[as_completed][thread]") {
  auto& pool = pools::get_thread_pool("ac.many", 2);
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 2000; ++i) tasks.push_back(pool.add_task("t", square, i));
  std::vector<int> count(2000, 0);
  for (const auto& t : pools::as_completed(tasks)) {
    const int v = t.wait_return();
    const int root = static_cast<int>(std::lround(std::sqrt(static_cast<double>(v))));
    REQUIRE(root * root == v);
    ++count[static_cast<std::size_t>(root)];
  }
  CHECK(std::all_of(count.begin(), count.end(), [](int c) { return c == 1; }));
}
