// The process pool: the registry, the max_running limit, queued and cancelled
// commands, many commands from many threads, no zombies or descriptor growth,
// functions on its threads, and a program using it that gets Ctrl-C or SIGTERM.
// What every kind does with add_process is in add_process.cpp.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using pools_test::contains;
using pools_test::helper;
using pools_test::lines_of;
using pools_test::RecordedProcesses;
using pools_test::TempDir;
using pools_test::wait_until;

namespace {

#define REQUIRE_HELPERS()                                                                   \
  REQUIRE(fs::exists(pools_test::process_helper())); /* both set by tests/meson.build */    \
  REQUIRE(fs::exists(pools_test::process_parent()))

void touch(const std::string& path) { std::ofstream(path) << "x"; }

// A program of ours (process_parent) run as a child, with stdout and stderr
// collected, that a test can signal while it runs.
class Child {
public:
  explicit Child(std::vector<std::string> args) {
    args.insert(args.begin(), pools_test::process_parent());
    pools_test::PipedChild child = pools_test::spawn_piped(std::move(args), environ);
    pid_ = child.pid;
    fds_[0] = child.out_fd;
    fds_[1] = child.err_fd;
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0) {  // a failed test: do not leave it running
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : fds_)
      if (fd >= 0) ::close(fd);
  }

  // Reads until stdout holds `marker` (true) or both streams end or `limit` passed.
  bool read_until(const std::string& marker, std::chrono::seconds limit = 120s) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!contains(out, marker)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left <= 0ms || (fds_[0] < 0 && fds_[1] < 0)) return false;
      pollfd p[2] = {{fds_[0], POLLIN, 0}, {fds_[1], POLLIN, 0}};
      int n = ::poll(p, 2, static_cast<int>(left.count()));
      if (n < 0 && errno != EINTR) return false;
      for (int i = 0; i < 2 && n > 0; ++i) {
        if (p[i].fd < 0 || p[i].revents == 0) continue;
        char buf[4096];
        ssize_t got = ::read(p[i].fd, buf, sizeof buf);
        if (got > 0) {
          (i == 0 ? out : err).append(buf, static_cast<std::size_t>(got));
        } else if (got == 0 || errno != EINTR) {
          ::close(fds_[i]);
          fds_[i] = -1;
        }
      }
    }
    return true;
  }

  void signal(int sig) { REQUIRE(::kill(pid_, sig) == 0); }

  // Reads both streams to their end and reaps the child; false when that took
  // longer than `limit` (the child is then killed).
  bool finish(std::chrono::seconds limit = 120s) {
    read_until(std::string(1, '\0'), limit);  // a marker never written: reads to the end
    int status = 0;
    bool in_time = wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; },
                              std::chrono::duration_cast<std::chrono::milliseconds>(limit));
    if (!in_time) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = -1;
    exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return in_time;
  }

  std::string describe() const {
    return "exit code " + std::to_string(exit_code) + ", signal " + std::to_string(term_signal) +
           "\n--- stdout ---\n" + out + "--- stderr ---\n" + err + "--------------";
  }

  std::string out, err;
  int exit_code = -1;
  int term_signal = 0;

private:
  pid_t pid_ = -1;
  int fds_[2] = {-1, -1};
};

}  // namespace

TEST_CASE("process pool: the registry gives it by name, and refuses kind clashes",
          "[process][registry]") {
  auto& a = pools::get_process_pool("pp.reg", 3);
  REQUIRE(a.kind() == pools::PoolKind::process);
  REQUIRE(a.name() == "pp.reg");
  REQUIRE(a.num_workers() == 3);
  REQUIRE(&pools::get_process_pool("pp.reg") == &a);
  REQUIRE(&pools::get_process_pool("pp.reg", 3) == &a);
  REQUIRE(&pools::find_pool("pp.reg") == &a);
  REQUIRE_THROWS_AS(pools::get_process_pool("pp.reg", 4), pools::Error);
  REQUIRE_THROWS_AS(pools::get_thread_pool("pp.reg"), pools::Error);
  REQUIRE_THROWS_AS(pools::get_serial_pool("pp.reg"), pools::Error);

  (void)pools::get_thread_pool("pp.reg.thread", 1);
  (void)pools::get_serial_pool("pp.reg.serial");
  REQUIRE_THROWS_AS(pools::get_process_pool("pp.reg.thread"), pools::Error);
  REQUIRE_THROWS_AS(pools::get_process_pool("pp.reg.serial", 2), pools::Error);
  REQUIRE_THROWS_AS(pools::get_process_pool("pp.reg.zero", 0), pools::Error);

  auto& g = pools::global_process_pool();
  REQUIRE(&g == &pools::get_process_pool());
  REQUIRE(g.kind() == pools::PoolKind::process);
  REQUIRE(g.num_workers() >= 1);
  REQUIRE(&g != &pools::global_thread_pool());
  REQUIRE(g.add_process("global", helper({"echo", "global"})).wait_return() == "global\n");
}

TEST_CASE("process pool: no more than max_running commands run at once", "[process]") {
  REQUIRE_HELPERS();
  auto& pool = pools::get_process_pool("pp.limit", 2);
  TempDir dir("limit");
  fs::create_directories(dir.path / "slots");
  std::vector<pools::ProcessTask> tasks;
  for (int i = 0; i < 12; ++i)
    tasks.push_back(pool.add_process("slot", helper({"slot", dir / "slots", "2"})));
  pools::wait_all(tasks);
  REQUIRE_FALSE(fs::exists(dir.path / "over"));

  // With max_running 2, two commands do run at once: each waits for the gate,
  // which is opened once both have started.
  auto a = pool.add_process("a", helper({"wait-for", dir / "gate", dir / "a-ready"}));
  auto b = pool.add_process("b", helper({"wait-for", dir / "gate", dir / "b-ready"}));
  REQUIRE(wait_until([&] { return fs::exists(dir.path / "a-ready") && fs::exists(dir.path / "b-ready"); }));
  touch(dir / "gate");
  REQUIRE_NOTHROW(a.wait());
  REQUIRE_NOTHROW(b.wait());
}

TEST_CASE("process pool: a command starts with no signal blocked, SIGPIPE at its default and "
          "the normal scheduling policy",
          "[process]") {
  REQUIRE_HELPERS();
  // What the program did to its own signals: ignored SIGPIPE (as servers do)
  // and SIGUSR1, a handler for SIGUSR2 and SIGHUP, SIGQUIT blocked before the
  // pool exists (as a program that takes signals with sigwait does), so that
  // the pool's threads start with it blocked.
  struct sigaction ignore {}, handle {}, old_pipe {}, old_usr1 {}, old_usr2 {}, old_hup {};
  ignore.sa_handler = SIG_IGN;
  handle.sa_handler = [](int) {};
  ::sigaction(SIGPIPE, &ignore, &old_pipe);
  ::sigaction(SIGUSR1, &ignore, &old_usr1);
  ::sigaction(SIGUSR2, &handle, &old_usr2);
  ::sigaction(SIGHUP, &handle, &old_hup);
  sigset_t quit, old_mask;
  sigemptyset(&quit);
  sigaddset(&quit, SIGQUIT);
  ::pthread_sigmask(SIG_BLOCK, &quit, &old_mask);
  auto& pool = pools::get_process_pool("pp.signal-state", 2);
  std::vector<pools::ProcessTask> tasks;
  for (int i = 0; i < 20; ++i) tasks.push_back(pool.add_process("state", helper({"signal-state"})));
  std::vector<std::string> states;
  for (auto& t : tasks) states.push_back(t.wait_return());
  ::sigaction(SIGPIPE, &old_pipe, nullptr);
  ::sigaction(SIGUSR1, &old_usr1, nullptr);
  ::sigaction(SIGUSR2, &old_usr2, nullptr);
  ::sigaction(SIGHUP, &old_hup, nullptr);
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);

  auto mask_of = [](const std::string& state, const std::string& field) {
    const auto at = state.find(field + ":");
    REQUIRE(at != std::string::npos);
    return std::stoull(state.substr(at + field.size() + 1), nullptr, 16);
  };
  auto bit = [](int sig) { return 1ull << (sig - 1); };
  for (const auto& state : states) {
    INFO(state);
    CHECK(mask_of(state, "SigBlk") == 0);  // (what it catches is its own: exec resets handlers)
    const auto ignored = mask_of(state, "SigIgn");
    CHECK((ignored & bit(SIGPIPE)) == 0);
    CHECK((ignored & bit(SIGHUP)) == 0);
    CHECK((ignored & bit(SIGUSR1)) != 0);  // ignored signals stay ignored across exec, as in a shell
    // Not the SCHED_BATCH of the pool's threads.
    CHECK(std::stoi(state.substr(state.find("Policy:") + 7)) == SCHED_OTHER);
  }
}

TEST_CASE("process pool: a queued command can be cancelled and never runs", "[process]") {
  REQUIRE_HELPERS();
  auto& pool = pools::get_process_pool("pp.queued-cancel", 1);
  TempDir dir("queued-cancel");
  auto running = pool.add_process("holds the slot", helper({"wait-for", dir / "gate", dir / "ready"}));
  REQUIRE(wait_until([&] { return fs::exists(dir.path / "ready"); }));
  auto queued = pool.add_process("queued", helper({"sleep", "0", dir / "queued-ran"}));
  REQUIRE(pool.num_active_tasks() == 2);
  std::vector<pools::ProcessTask> more;
  for (int i = 0; i < 20; ++i)
    more.push_back(pool.add_process("more", helper({"sleep", "0", dir / ("ran" + std::to_string(i))})));
  REQUIRE(queued.cancel());
  REQUIRE(queued.iscompleted());
  REQUIRE_THROWS_AS(queued.wait(), pools::Cancelled);
  REQUIRE_THROWS_AS(queued.result(), pools::Cancelled);  // it never ran
  for (auto& m : more) REQUIRE(m.cancel());
  touch(dir / "gate");
  REQUIRE_NOTHROW(running.wait());
  pool.wait_completion();
  REQUIRE(pool.num_active_tasks() == 0);
  REQUIRE_FALSE(fs::exists(dir.path / "queued-ran"));
  for (int i = 0; i < 20; ++i) REQUIRE_FALSE(fs::exists(dir.path / ("ran" + std::to_string(i))));
  REQUIRE(pool.add_process("next", helper({"echo", "next"})).wait_return() == "next\n");
}

TEST_CASE("process pool: commands added from several threads at once", "[process]") {
  REQUIRE_HELPERS();
  auto& pool = pools::get_process_pool("pp.threads", 4);
  constexpr int threads = 4, per_thread = 40;
  std::vector<std::vector<pools::ProcessTask>> tasks(threads);
  std::atomic<int> ready{0};
  std::vector<std::thread> adders;
  for (int t = 0; t < threads; ++t) {
    adders.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();  // start together
      for (int i = 0; i < per_thread; ++i) {
        std::string word = std::to_string(t) + "." + std::to_string(i);
        tasks[t].push_back(i % 2 ? pool.add_process(word, helper({"echo", word}))
                                 : pool.add_process(word, "echo " + word));
      }
    });
  }
  for (auto& a : adders) a.join();
  for (int t = 0; t < threads; ++t)
    for (int i = 0; i < per_thread; ++i) {
      INFO("thread " << t << " command " << i);
      REQUIRE(tasks[t][i].wait_return() == std::to_string(t) + "." + std::to_string(i) + "\n");
    }
}

TEST_CASE("process pool: quick commands finish while a long one still runs", "[process]") {
  // Pipes inherited by a long-running sibling would hold the quick commands'
  // output open, so they would only finish when it does.
  REQUIRE_HELPERS();
  auto& pool = pools::get_process_pool("pp.long-and-quick", 4);
  TempDir dir("long-and-quick");
  auto long_one = pool.add_process("long", helper({"wait-for", dir / "gate", dir / "ready"}));
  REQUIRE(wait_until([&] { return fs::exists(dir.path / "ready"); }));
  std::vector<pools::ProcessTask> quick;
  std::vector<std::thread> adders;
  std::mutex m;
  for (int t = 0; t < 3; ++t)
    adders.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto task = pool.add_process("quick", helper({"output", "5000", "5000"}));
        std::lock_guard lock(m);
        quick.push_back(task);
      }
    });
  for (auto& a : adders) a.join();
  for (auto& q : quick) {
    REQUIRE(q.wait_for(120s));
    REQUIRE(q.wait_return().size() == 5000);
  }
  REQUIRE_FALSE(long_one.iscompleted());
  touch(dir / "gate");
  REQUIRE_NOTHROW(long_one.wait());
}

TEST_CASE("process pool: 2,000 commands leave no zombie and no extra descriptor", "[process]") {
  REQUIRE_HELPERS();
  auto& pool = pools::get_process_pool("pp.many", 4);
  pools::ProcessOptions unchecked;
  unchecked.check = false;
  // Warm up: whatever the pool opens once (event loop, pipes kept for reuse) is open now.
  for (int i = 0; i < 20; ++i) (void)pool.add_process("warm-up", std::vector<std::string>{"true"});
  pool.wait_completion();
  auto fds_before = pools_test::open_fds();

  std::vector<pools::ProcessTask> tasks;
  tasks.reserve(2000);
  for (int i = 0; i < 2000; ++i) {
    switch (i % 4) {
      case 0: tasks.push_back(pool.add_process("true", {"true"})); break;
      case 1: tasks.push_back(pool.add_process("shell", "exit " + std::to_string(i % 7), unchecked)); break;
      case 2: tasks.push_back(pool.add_process("false", {"false"}, unchecked)); break;
      default: tasks.push_back(pool.add_process("echo", helper({"echo", std::to_string(i)}))); break;
    }
  }
  pool.wait_completion();
  REQUIRE(pool.num_active_tasks() == 0);

  std::set<long> pids;
  for (int i = 0; i < 2000; ++i) {
    INFO("command " << i << ": " << tasks[i].result().command);
    REQUIRE(tasks[i].iscompleted());
    const auto& r = tasks[i].result();
    pids.insert(r.pid);
    switch (i % 4) {
      case 0: REQUIRE(r.exit_code == 0); break;
      case 1: REQUIRE(r.exit_code == i % 7); break;
      case 2: REQUIRE(r.exit_code == 1); break;
      default: REQUIRE(r.stdout_text == std::to_string(i) + "\n"); break;
    }
  }
  tasks.clear();

  pools_test::require_reaped_and_closed(pids, fds_before);
}

TEST_CASE("process pool: add_task runs functions on the pool's own threads", "[process]") {
  REQUIRE_HELPERS();
  auto& pool = pools::get_process_pool("pp.functions", 1);
  auto caller = std::this_thread::get_id();
  auto t = pool.add_task("where", [] { return std::this_thread::get_id(); });
  REQUIRE(t.wait_return() != caller);
  REQUIRE(pool.add_task("sum", [](int a, int b) { return a + b; }, 2, 3).wait_return() == 5);
  auto failing = pool.add_task("throws", []() -> int { throw std::logic_error("from a function"); });
  REQUIRE_THROWS_AS(failing.wait(), std::logic_error);
  // A function that runs a command on its own pool and waits for it (with
  // max_running 1, the function's thread and the command's slot are separate).
  auto nested = pool.add_task("nested", [&pool] {
    return pool.add_process("inner", helper({"echo", "inner"})).wait_return();
  });
  REQUIRE(nested.wait_for(120s));
  REQUIRE(nested.wait_return() == "inner\n");
}

TEST_CASE("process pool: shutdown finishes the commands, then refuses new ones", "[process]") {
  REQUIRE_HELPERS();
  auto& pool = pools::get_process_pool("pp.shutdown", 2);
  std::vector<pools::ProcessTask> tasks;
  for (int i = 0; i < 20; ++i) tasks.push_back(pool.add_process("echo", helper({"echo", std::to_string(i)})));
  pool.shutdown();
  REQUIRE_FALSE(pool.accepting());
  for (int i = 0; i < 20; ++i) {
    REQUIRE(tasks[i].iscompleted());
    REQUIRE(tasks[i].wait_return() == std::to_string(i) + "\n");
  }
  REQUIRE_THROWS_AS(pool.add_process("late", helper({"echo", "late"})), pools::Error);
  REQUIRE_THROWS_AS(pool.add_process("late", std::string("true")), pools::Error);
  REQUIRE_THROWS_AS(pool.add_task("late", [] { return 1; }), pools::Error);
  REQUIRE_NOTHROW(pool.shutdown());
  REQUIRE(pool.num_active_tasks() == 0);
}

TEST_CASE("process pool: wait_on_all_pools and close_pools wait for commands", "[process]") {
  REQUIRE_HELPERS();
  auto& pool = pools::get_process_pool("pp.wait-all", 2);
  std::vector<pools::ProcessTask> tasks;
  for (int i = 0; i < 6; ++i) tasks.push_back(pool.add_process("echo", helper({"output", "100000", "0"})));
  pools::wait_on_all_pools();
  for (auto& t : tasks) REQUIRE(t.iscompleted());
  REQUIRE(pool.accepting());
}

TEST_CASE("process pool: Ctrl-C or SIGTERM to a program running commands leaves no process behind",
          "[process][signal]") {
  REQUIRE_HELPERS();
  TempDir dir("interrupt");
  std::string record = dir / "record";
  int sig = GENERATE(SIGINT, SIGTERM);
  bool stubborn = GENERATE(false, true);
  // Commands run by any pool, not only the process pool's.
  std::string kind = GENERATE("process", "thread", "serial");
  INFO("signal " << sig << (stubborn ? ", commands ignoring SIGTERM" : "") << ", " << kind
                 << " pool");
  std::size_t n = kind == "serial" ? 1 : 3;
  std::vector<std::string> args{"interrupt", kind, pools_test::process_helper(), record,
                                std::to_string(n)};
  if (stubborn) args.push_back("ignore-term");
  RecordedProcesses procs;
  {
    Child parent(args);
    // n commands and their n grandchildren, all running now.
    REQUIRE(procs.read(record, n));
    REQUIRE(procs.seen.size() == 2 * n);
    parent.signal(sig);
    REQUIRE(parent.finish());
    INFO(parent.describe());
    // The library re-raises the signal once the commands are stopped, before
    // any of them counts as finished: main never sees them fail.
    CHECK(parent.term_signal == sig);
    CHECK_FALSE(contains(parent.out, "not interrupted"));
  }
  auto left = procs.running();
  INFO("still running: " << left.size());
  REQUIRE(procs.all_gone());
}

TEST_CASE("process pool: SIGINT ignored or handled by the program before pools is left alone",
          "[process][signal]") {
  REQUIRE_HELPERS();
  TempDir dir("keep-disposition");
  std::string record = dir / "record", stop = dir / "stop";
  std::string how = GENERATE("ignore", "handler");
  INFO("SIGINT set to " << how << " by the program");
  RecordedProcesses procs;
  Child parent({"keep-disposition", how, pools_test::process_helper(), record, stop});
  REQUIRE(parent.read_until("ready\n"));
  REQUIRE(procs.read(record, 1));
  parent.signal(SIGINT);
  if (how == "ignore") {
    touch(stop);  // an ignored signal is discarded when sent: nothing to wait for
  } else {
    REQUIRE(parent.read_until("own handler ran\n"));
  }
  REQUIRE(parent.finish());
  INFO(parent.describe());
  CHECK(parent.term_signal == 0);
  CHECK(parent.exit_code == 0);
  CHECK(contains(parent.out, "command still running"));
  REQUIRE(procs.all_gone());  // its cancel() stopped them
}

TEST_CASE("process pool: a command still running when main returns is finished",
          "[process]") {
  REQUIRE_HELPERS();
  TempDir dir("running-at-exit");
  Child parent({"running-at-exit", dir / "done"});
  REQUIRE(parent.finish());
  INFO(parent.describe());
  REQUIRE(parent.exit_code == 0);
  REQUIRE(parent.out == "main returns\n");
  REQUIRE(pools_test::read_text(dir.path / "done") == "done\n");
}

TEST_CASE("process pool: a timeout counts from the start of the command, not from the queue",
          "[process]") {
  REQUIRE_HELPERS();
  auto& pool = pools::get_process_pool("pp.timeout-queue", 1);
  TempDir dir("timeout-queue");
  auto holder = pool.add_process("holds the slot", helper({"wait-for", dir / "gate", dir / "ready"}));
  REQUIRE(wait_until([&] { return fs::exists(dir.path / "ready"); }));
  pools::ProcessOptions options;
  options.timeout = 1s;
  auto queued = pool.add_process("queued", helper({"echo", "ran"}), options);
  // Queued longer than its timeout (a wait of known length, not an ordering).
  std::this_thread::sleep_for(2s);
  CHECK_FALSE(queued.iscompleted());
  touch(dir / "gate");
  REQUIRE_NOTHROW(holder.wait());
  REQUIRE(queued.wait_return() == "ran\n");
}

TEST_CASE("process pool: more commands run at once than the pool has threads", "[process]") {
  // Spawner threads see short commands to their end; longer ones are the event
  // loop's, however many: 20 commands wait for each other here, so all 20 must
  // run at once, and the pool adds no thread per command for that.
  REQUIRE_HELPERS();
  auto count_threads = [] {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/task")) ++n;
    return n;
  };
  const std::size_t threads_before = count_threads();
  auto& pool = pools::get_process_pool("pp.wide", 20);
  TempDir dir("wide");
  std::vector<pools::ProcessTask> tasks;
  for (int i = 0; i < 20; ++i)
    tasks.push_back(pool.add_process(
        "waits", helper({"wait-for", dir / "gate", dir / ("ready-" + std::to_string(i))})));
  auto all_ready = [&] {
    for (int i = 0; i < 20; ++i)
      if (!fs::exists(dir.path / ("ready-" + std::to_string(i)))) return false;
    return true;
  };
  REQUIRE(wait_until(all_ready));
  const std::size_t threads_running = count_threads();
  touch(dir / "gate");
  pools::wait_all(tasks);
  // The event loop and at most 9 spawners.
  CHECK(threads_running - threads_before <= 10);
}

TEST_CASE("process pool: output before and after a command outlasts the spawner's wait is kept",
          "[process]") {
  // A spawner reads a command's first output itself; the event loop reads the
  // rest, and reaps a command that closed its pipes but has not exited.
  REQUIRE_HELPERS();
  auto& pool = pools::get_process_pool("pp.hand-off", 2);
  auto spread = pool.add_process(
      "spread", "printf first; printf e1 >&2; sleep 0.3; printf second; printf e2 >&2");
  REQUIRE(spread.wait_return() == "firstsecond");
  CHECK(spread.result().stderr_text == "e1e2");

  pools::ProcessOptions unchecked;
  unchecked.check = false;
  auto closes_early = pool.add_process("closes early", "exec >&- 2>&-; sleep 0.3; exit 3", unchecked);
  closes_early.wait();
  CHECK(closes_early.result().exit_code == 3);

  // A timeout shorter than the spawner's wait still kills the command.
  pools::ProcessOptions quick_timeout;
  quick_timeout.timeout = 5ms;
  auto slow = pool.add_process("slow", helper({"sleep", "60"}), quick_timeout);
  REQUIRE_THROWS_AS(slow.wait(), pools::ProcessError);
  CHECK(slow.result().timed_out);
  CHECK(slow.result().signal == SIGTERM);
  CHECK(slow.result().elapsed < 30s);
}

TEST_CASE("process pool: a failed command nobody waited for is reported at exit or shutdown",
          "[process]") {
  REQUIRE_HELPERS();
  std::string kind = GENERATE("process", "thread", "serial");
  INFO("pool kind " << kind);
  SECTION("at exit") {
    Child parent({"unobserved", kind});
    REQUIRE(parent.finish());
    INFO(parent.describe());
    REQUIRE(parent.exit_code == 0);
    int reports = 0;
    for (auto& line : lines_of(parent.err)) reports += contains(line, "doomed-command");
    REQUIRE(reports == 1);
    REQUIRE_FALSE(contains(parent.err, "fine-command"));
  }
  SECTION("at shutdown, before it returns") {
    Child parent({"unobserved-shutdown", kind});
    REQUIRE(parent.finish());
    INFO(parent.describe());
    REQUIRE(parent.exit_code == 0);
    auto report = parent.err.find("doomed-command");
    REQUIRE(report != std::string::npos);
    REQUIRE(report < parent.err.find("marker:after-shutdown"));
    REQUIRE(parent.err.find("doomed-command", report + 1) == std::string::npos);  // once
  }
}
