// Helpers shared by the test files.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include <pools/pools.hpp>

namespace pools_test {

// A gate a task can be held at until the test opens it. Tasks hold a copy of
// waiter(), which stays valid should the test end early; the destructor opens
// the gate so that no pool thread is left stuck behind a failed REQUIRE.
class Gate {
public:
  std::shared_future<void> waiter() const { return opened_; }
  void open() {
    std::call_once(once_, [this] { promise_.set_value(); });
  }
  ~Gate() { open(); }

private:
  std::promise<void> promise_;
  std::shared_future<void> opened_ = promise_.get_future().share();
  std::once_flag once_;
};

// Adds a task that holds one worker of `pool` at `gate` and then returns
// `result` (none: void); returns its handle once the task runs.
template <class... Result>
auto hold_worker(pools::PoolBase& pool, const Gate& gate, std::string name = "held",
                 Result... result) {
  static_assert(sizeof...(Result) <= 1, "at most one result");
  std::promise<void> started;
  auto running = started.get_future();
  auto held = pool.add_task(std::move(name), [&started, w = gate.waiter(), result...] {
    started.set_value();
    w.wait();
    return (result, ...);  // an empty pack folds to void()
  });
  running.wait();
  return held;
}

// ---------------------------------------------------------------------------
// Files, processes and descriptors, for the tests that run commands.

// A directory of our own under the system's temp dir, removed at the end.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& what) {
    path = std::filesystem::temp_directory_path() /
           ("pools-test-" + what + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
    path = std::filesystem::canonical(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// What `fn` writes to file descriptor 2 (the pools' reports of failures
// nobody waited for, for one).
template <class Fn>
std::string stderr_of(const std::string& what, Fn&& fn) {
  TempDir dir(what);
  const std::string log = (dir.path / "stderr").string();
  const int saved = ::dup(2);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE((saved >= 0 && fd >= 0));
  ::dup2(fd, 2);
  fn();
  ::dup2(saved, 2);
  ::close(fd);
  ::close(saved);
  return read_text(log);
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Polls pred() every few milliseconds until it holds or `limit` passed; the
// limit is a generous bound for things that happen by themselves soon.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// The program a test runs as its command (tests/process_helper.cpp), and the
// same program built to act as a parent that uses pools; meson passes both.
inline std::string env_path(const char* variable) {
  const char* p = std::getenv(variable);
  return p ? p : "";
}
inline std::string process_helper() { return env_path("POOLS_PROCESS_HELPER"); }
inline std::string process_parent() { return env_path("POOLS_PROCESS_PARENT"); }

// An argv that runs process_helper in `mode` with `args`.
inline std::vector<std::string> helper(std::vector<std::string> mode_and_args) {
  mode_and_args.insert(mode_and_args.begin(), process_helper());
  return mode_and_args;
}

// What /proc/PID/stat says about a process; none once it is gone.
struct ProcStat {
  char state = '?';
  long ppid = 0;
  unsigned long long starttime = 0;
};
inline std::optional<ProcStat> proc_stat(long pid) {
  std::string text = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto close_paren = text.rfind(')');
  if (text.empty() || close_paren == std::string::npos) return std::nullopt;
  std::istringstream in(text.substr(close_paren + 2));
  ProcStat st;
  in >> st.state >> st.ppid;
  std::string skip;
  for (int field = 5; field < 22; ++field) in >> skip;  // pgrp .. itrealvalue
  in >> st.starttime;
  if (!in) return std::nullopt;
  return st;
}

// A process we saw running, told apart from a later one that reuses its pid.
struct SeenProcess {
  long pid = 0;
  unsigned long long starttime = 0;
  bool running() const {  // a zombie has finished running
    auto st = proc_stat(pid);
    return st && st->starttime == starttime && st->state != 'Z' && st->state != 'X';
  }
};
inline std::optional<SeenProcess> see_process(long pid) {
  auto st = proc_stat(pid);
  if (!st) return std::nullopt;
  return SeenProcess{pid, st->starttime};
}

// The processes listed in a record file of "PID GRANDCHILD_PID" lines
// (process_helper's grandchild mode). Whatever still runs when this goes out
// of scope (a failed test) is killed, so it cannot outlive the test.
struct RecordedProcesses {
  std::vector<SeenProcess> seen;
  std::size_t lines = 0;
  // Reads the record once it has `n` lines; false when it did not get them in time.
  bool read(const std::string& record, std::size_t n) {
    std::vector<std::string> got;
    if (!wait_until([&] { return (got = lines_of(read_text(record))).size() >= n; })) return false;
    lines = got.size();
    for (auto& line : got) {
      std::istringstream in(line);
      for (long pid; in >> pid;)
        if (auto p = see_process(pid)) seen.push_back(*p);
    }
    return true;
  }
  std::vector<long> running() const {
    std::vector<long> alive;
    for (auto& p : seen)
      if (p.running()) alive.push_back(p.pid);
    return alive;
  }
  // True once none of them runs; waits up to `limit` for them to go.
  bool all_gone(std::chrono::milliseconds limit = std::chrono::seconds(30)) const {
    return wait_until([&] { return running().empty(); }, limit);
  }
  ~RecordedProcesses() {
    for (auto& p : seen)
      if (p.running()) ::kill(static_cast<pid_t>(p.pid), SIGKILL);
  }
};

// The pids of the children of this process that are zombies (<defunct>).
inline std::vector<long> zombie_children() {
  std::vector<long> zombies;
  DIR* d = ::opendir("/proc");
  if (!d) return zombies;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end) continue;
    auto st = proc_stat(pid);
    if (st && st->ppid == ::getpid() && st->state == 'Z') zombies.push_back(pid);
  }
  ::closedir(d);
  return zombies;
}

// The descriptors open in this process (without the one that lists them).
inline std::set<int> open_fds() {
  std::set<int> fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return fds;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd != ::dirfd(d)) fds.insert(fd);
  }
  ::closedir(d);
  return fds;
}

// The descriptors above 2 that a child of this process would inherit (no FD_CLOEXEC).
inline std::set<int> inheritable_fds() {
  std::set<int> fds;
  for (int fd : open_fds()) {
    int flags = ::fcntl(fd, F_GETFD);
    if (fd > 2 && flags >= 0 && !(flags & FD_CLOEXEC)) fds.insert(fd);
  }
  return fds;
}

// Checks that no process of `pids` (commands that finished) is a zombie, that
// soon no child of ours is, and that no descriptor beyond `fds_before` stays open.
inline void require_reaped_and_closed(const std::set<long>& pids, const std::set<int>& fds_before) {
  for (long z : zombie_children()) {
    INFO("zombie child " << z);
    CHECK(pids.count(z) == 0);
  }
  CHECK(wait_until([] { return zombie_children().empty(); }, std::chrono::seconds(10)));
  auto fds_after = open_fds();
  std::string extra;
  for (int fd : fds_after)
    if (!fds_before.count(fd)) extra += std::to_string(fd) + " ";
  INFO("descriptors opened and not closed: " << extra);
  REQUIRE(fds_after.size() <= fds_before.size());
}

/// A program started by spawn_piped: its pid and our ends of its stdout and
/// stderr pipes (the caller closes them and reaps the pid).
struct PipedChild {
  pid_t pid = -1;
  int out_fd = -1, err_fd = -1;
};

/// Starts args[0] (a path) with stdout and stderr on pipes, SIGINT and SIGTERM
/// at their default actions and no signal blocked, whatever the test runner
/// inherited (a background job ignores SIGINT). Fails the test when it cannot start.
inline PipedChild spawn_piped(std::vector<std::string> args, char* const* envp) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out_pipe[2], err_pipe[2];
  REQUIRE(::pipe2(out_pipe, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(err_pipe, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults, none;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  PipedChild child;
  const int rc = ::posix_spawn(&child.pid, argv[0], &fa, &attr, argv.data(), envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    FAIL("cannot start " << args[0] << ": " << std::strerror(rc));
  }
  child.out_fd = out_pipe[0];
  child.err_fd = err_pipe[0];
  return child;
}

}  // namespace pools_test
