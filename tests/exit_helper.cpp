// A helper program for tests/exit_scenarios.cpp: argv[1] names a scenario about
// process exit, which the test runs as a child process and judges by its exit
// status, its stdout/stderr and the files it leaves behind.
//
// Output goes through write(2) on purpose: it is unbuffered and still works in
// static destructors, so nothing the test looks for is lost in a stdio buffer.
#include <pools/pools.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

void say(int fd, const std::string& line) {
  std::string s = line + "\n";
  const char* p = s.data();
  std::size_t left = s.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n <= 0) return;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}
void out(const std::string& line) { say(1, line); }
void err(const std::string& line) { say(2, line); }

// Appends one line with a single O_APPEND write, so lines from several threads never mix.
void append_line(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  std::string s = line + "\n";
  ssize_t n = ::write(fd, s.data(), s.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(s.size())) throw std::runtime_error("short write to " + path);
}

// Static objects run before main() sees argv, so they read the mode from /proc.
std::string mode_from_cmdline() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto first_end = all.find('\0');
  if (first_end == std::string::npos) return {};
  auto second_end = all.find('\0', first_end + 1);
  return all.substr(first_end + 1, second_end == std::string::npos ? std::string::npos
                                                                  : second_end - first_end - 1);
}

// "static-object": uses a pool from a static object's constructor (before main,
// before pools::init) and again from its destructor (during exit).
struct StaticUser {
  bool active = mode_from_cmdline() == "static-object";
  StaticUser() {
    if (!active) return;
    auto& pool = pools::get_thread_pool("static", 2);
    int v = pool.add_task("from constructor", [] { return 6 * 7; }).wait_return();
    out("ctor:" + std::to_string(v));
  }
  ~StaticUser() {
    if (!active) return;
    try {
      auto& pool = pools::get_thread_pool("static");
      int v = pool.add_task("from destructor", [] { return 6 * 9; }).wait_return();
      out("dtor:" + std::to_string(v));
    } catch (const std::exception& e) {
      out(std::string("dtor-error:") + e.what());
    }
  }
};
StaticUser static_user;

// "late-pool": a static object, constructed before any pool exists, whose
// destructor asks for a new pool. main() uses pools first, so the exit-time close
// is registered later and runs before this destructor.
struct LateUser {
  bool active = mode_from_cmdline() == "late-pool";
  ~LateUser() {
    if (!active) return;
    try {
      int v = pools::get_thread_pool("late").add_task("late task", [] { return 5 * 5; }).wait_return();
      out("late:" + std::to_string(v));
    } catch (const std::exception& e) {
      out(std::string("late-error:") + e.what());
    }
  }
};
LateUser late_user;

int run(const std::string& mode, int argc, char** argv) {
  auto arg = [&](int i) -> std::string {
    if (i >= argc) {
      err("exit_helper: mode " + mode + " needs argument " + std::to_string(i));
      std::exit(90);
    }
    return argv[i];
  };

  if (mode == "queued-work") {
    // 1000 tasks, most still queued when main returns: exit must run them all.
    std::string file = arg(2);
    auto& pool = pools::get_thread_pool("queued", 2);
    for (int i = 0; i < 1000; ++i) {
      (void)pool.add_task("append", [file, i] {
        std::this_thread::sleep_for(100us);  // keeps work queued at exit; not an outcome
        append_line(file, "line " + std::to_string(i));
      });
    }
    out("submitted");
    return 0;
  }

  if (mode == "static-object") {
    out("main");
    return 0;
  }

  if (mode == "exit-while-running") {
    // exit() while tasks run and more are queued: the exit-time close finishes them.
    std::string file = arg(2);
    auto& pool = pools::get_thread_pool("exiting", 2);
    // Shared, so the tasks never touch an object of main's frame.
    auto started = std::make_shared<std::promise<void>>();
    auto started_future = started->get_future();
    for (int i = 0; i < 20; ++i) {
      (void)pool.add_task("slow", [file, i, started] {
        if (i == 0) started->set_value();
        std::this_thread::sleep_for(20ms);
        append_line(file, "task " + std::to_string(i));
      });
    }
    started_future.wait();
    std::exit(3);
  }

  if (mode == "exit-from-task") {
    auto& pool = pools::get_thread_pool("exit-inside", 2);
    auto t = pool.add_task("exits", [] {
      out("task calls exit");
      std::exit(4);
    });
    t.wait();  // never returns: the process exits from the task
    out("main continued after the exiting task");
    return 1;
  }

  if (mode == "running-at-exit") {
    // main returns while a task is in the middle of running.
    auto& pool = pools::get_thread_pool("running", 2);
    auto started = std::make_shared<std::promise<void>>();
    auto started_future = started->get_future();
    (void)pool.add_task("sleeper", [started] {
      started->set_value();
      std::this_thread::sleep_for(200ms);
      out("marker:task-finished");
    });
    started_future.wait();
    out("main returns");
    return 0;
  }

  if (mode == "late-pool") {
    auto& pool = pools::get_thread_pool("early", 1);
    out("early:" + std::to_string(pool.add_task("", [] { return 1; }).wait_return()));
    return 0;
  }

  if (mode == "unobserved-failure") {
    // A failure nobody waits for: reported at the latest when the pool shuts down at exit.
    auto& pool = pools::get_thread_pool("doomed-pool", 2);
    (void)pool.add_task("doomed-task", []() -> int { throw std::runtime_error("kaboom-42"); });
    (void)pool.add_task("fine-task", [] { return 1; });
    return 0;
  }

  if (mode == "unobserved-failure-kept-handle") {
    // As above, but the handle is still alive when main returns (a static one).
    static pools::Task<int> kept;
    auto& pool = pools::get_thread_pool("doomed-pool", 2);
    kept = pool.add_task("doomed-task", []() -> int { throw std::runtime_error("kaboom-43"); });
    kept.join();  // finished, but no wait() saw the failure
    return 0;
  }

  if (mode == "unobserved-failure-wait-completion") {
    // All handles gone: wait_completion reports it (before the marker), once.
    auto& pool = pools::get_thread_pool("doomed-pool", 2);
    (void)pool.add_task("doomed-task", []() -> int { throw std::runtime_error("kaboom-44"); });
    pool.wait_completion();
    err("marker:after-wait-completion");
    return 0;
  }

  if (mode == "unobserved-failure-shutdown") {
    // A live handle that never waited: shutdown reports it (before the marker), once.
    auto& pool = pools::get_thread_pool("doomed-pool", 2);
    auto t = pool.add_task("doomed-task", []() -> int { throw std::runtime_error("kaboom-45"); });
    pool.shutdown();
    err("marker:after-shutdown");
    return t.iscompleted() ? 0 : 1;
  }

  if (mode == "observed-failure") {
    // A failure that a wait() saw is the caller's business: nothing on stderr.
    auto& pool = pools::get_thread_pool("seen-pool", 2);
    auto t = pool.add_task("seen-task", []() -> int { throw std::runtime_error("seen-error"); });
    try {
      t.wait();
      return 1;
    } catch (const std::runtime_error&) {
    }
    pool.shutdown();
    out("caught");
    return 0;
  }

  if (mode == "diag") {
    auto& pool = pools::get_thread_pool("diag-pool", 2);
    for (int i = 0; i < 10; ++i) (void)pool.add_task("", [] { return 1; });
    pool.wait_completion();
    out("done");
    return 0;
  }

  if (mode == "max-threads") {
    auto& global = pools::global_thread_pool();
    auto& named = pools::get_thread_pool("max-named");
    auto& explicit8 = pools::get_thread_pool("max-explicit", 8);
    out("workers:" + std::to_string(global.num_workers()) + " " +
        std::to_string(named.num_workers()) + " " + std::to_string(explicit8.num_workers()));
    // Still works, nested waits included, on what may be one thread.
    auto t = global.add_task("outer", [&global] {
      return global.add_task("inner", [] { return 8; }).wait_return() + 1;
    });
    out("result:" + std::to_string(t.wait_return()));
    return 0;
  }

  err("exit_helper: unknown mode '" + mode + "'");
  return 99;
}

}  // namespace

int main(int argc, char** argv) {
  pools::init(argc, argv);
  if (argc < 2) {
    err("usage: exit_helper MODE [ARGS]");
    return 99;
  }
  return run(argv[1], argc, argv);
}
