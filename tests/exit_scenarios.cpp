// Process exit: runs tests/exit_helper in each of its modes as a child process and
// checks its exit status, its output and the files it leaves, within a deadline.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

struct ChildResult {
  bool timed_out = false;
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out, err;
};

std::string describe(const ChildResult& r) {
  std::ostringstream s;
  if (r.timed_out) s << "TIMED OUT and was killed; ";
  s << "exit code " << r.exit_code << ", signal " << r.signal << "\n--- stdout ---\n"
    << r.out << "--- stderr ---\n" << r.err << "--------------";
  return s.str();
}

std::string helper_path() {
  const char* p = std::getenv("POOLS_EXIT_HELPER");
  return p ? p : "";
}

// Runs the helper with `args` and our environment changed by `env` (a value
// replaces or adds the variable, nullopt removes it),
// collecting stdout and stderr; kills it when it outlives `deadline`.
ChildResult run_helper(const std::vector<std::string>& args,
                       const std::map<std::string, std::optional<std::string>>& env_changes = {},
                       std::chrono::seconds deadline = 60s) {
  // The pools variables of whoever runs the suite must not change the scenarios.
  auto env = env_changes;
  env.try_emplace("POOLS_DIAG", std::nullopt);
  env.try_emplace("POOLS_MAX_THREADS", std::nullopt);
  ChildResult r;
  std::string exe = helper_path();
  std::vector<std::string> argv_s{exe};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto key = kv.substr(0, kv.find('='));
    if (!env.count(key)) env_s.push_back(kv);
  }
  for (auto& [k, v] : env)
    if (v) env_s.push_back(k + "=" + *v);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  pools_test::PipedChild child = pools_test::spawn_piped(argv_s, envp.data());
  const pid_t pid = child.pid;

  auto until = std::chrono::steady_clock::now() + deadline;
  auto left_ms = [&] {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<long long>(0, ms.count()));
  };
  pollfd fds[2] = {{child.out_fd, POLLIN, 0}, {child.err_fd, POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    int ms = left_ms();
    if (ms == 0) {
      r.timed_out = true;
      break;
    }
    int n = ::poll(fds, 2, ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<std::size_t>(got));
      } else if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  // The pipes are closed; the child may still be exiting (or hang without output).
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (r.timed_out || left_ms() == 0) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(2ms);
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
  }
  return r;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

std::vector<std::string> lines_of_file(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::size_t count_of(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto pos = text.find(part); pos != std::string::npos; pos = text.find(part, pos + 1)) ++n;
  return n;
}

// The lines of stderr that report a failure: they name the task and its message.
std::vector<std::string> report_lines(const std::string& err, const std::string& task,
                                      const std::string& message) {
  std::vector<std::string> found;
  for (auto& l : lines_of(err))
    if (contains(l, task) && contains(l, message)) found.push_back(l);
  return found;
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("pools-exit-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

#define REQUIRE_HELPER_PATH() \
  REQUIRE_FALSE(helper_path().empty()); /* set by tests/meson.build */ \
  REQUIRE(fs::exists(helper_path()))

}  // namespace

TEST_CASE("exit: queued work is finished when main returns", "[exit][thread]") {
  REQUIRE_HELPER_PATH();
  TempDir dir;
  auto file = dir.path / "lines.txt";
  auto r = run_helper({"queued-work", file.string()});
  INFO(describe(r));
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.exit_code == 0);
  REQUIRE(contains(r.out, "submitted"));
  auto lines = lines_of_file(file);
  REQUIRE(lines.size() == 1000);
  std::set<std::string> distinct(lines.begin(), lines.end());
  REQUIRE(distinct.size() == 1000);  // each task ran exactly once
}

TEST_CASE("exit: a pool works in a static object's constructor and destructor", "[exit][thread]") {
  REQUIRE_HELPER_PATH();
  auto r = run_helper({"static-object"});
  INFO(describe(r));
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.exit_code == 0);
  REQUIRE(lines_of(r.out) == std::vector<std::string>{"ctor:42", "main", "dtor:54"});
}

TEST_CASE("exit: exit() while tasks run finishes them and keeps the exit code", "[exit][thread]") {
  REQUIRE_HELPER_PATH();
  TempDir dir;
  auto file = dir.path / "tasks.txt";
  auto r = run_helper({"exit-while-running", file.string()});
  INFO(describe(r));
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.signal == 0);
  REQUIRE(r.exit_code == 3);
  REQUIRE(lines_of_file(file).size() == 20);
}

TEST_CASE("exit: exit() called from inside a task ends the process with its code",
          "[exit][thread]") {
  REQUIRE_HELPER_PATH();
  auto r = run_helper({"exit-from-task"});
  INFO(describe(r));
  REQUIRE_FALSE(r.timed_out);  // a close that waits for the exiting task would hang
  REQUIRE(r.signal == 0);
  REQUIRE(r.exit_code == 4);
  REQUIRE(contains(r.out, "task calls exit"));
  REQUIRE_FALSE(contains(r.out, "main continued"));
}

TEST_CASE("exit: a task still running when main returns is finished", "[exit][thread]") {
  REQUIRE_HELPER_PATH();
  auto r = run_helper({"running-at-exit"});
  INFO(describe(r));
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.exit_code == 0);
  REQUIRE(lines_of(r.out) == std::vector<std::string>{"main returns", "marker:task-finished"});
}

TEST_CASE("exit: a pool created during static destruction still runs its task", "[exit][thread]") {
  REQUIRE_HELPER_PATH();
  auto r = run_helper({"late-pool"});
  INFO(describe(r));
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.signal == 0);
  REQUIRE(r.exit_code == 0);
  REQUIRE(lines_of(r.out) == std::vector<std::string>{"early:1", "late:25"});
}

TEST_CASE("exit: a failure nobody waited for is reported on stderr at exit", "[exit][thread]") {
  REQUIRE_HELPER_PATH();
  SECTION("its handle dropped at once") {
    auto r = run_helper({"unobserved-failure"});
    INFO(describe(r));
    REQUIRE_FALSE(r.timed_out);
    REQUIRE(r.exit_code == 0);
    auto found = report_lines(r.err, "doomed-task", "kaboom-42");
    REQUIRE(found.size() == 1);  // one line, reported once
    REQUIRE(contains(found[0], "doomed-pool"));
    REQUIRE_FALSE(contains(r.err, "fine-task"));  // successes are not reported
  }
  SECTION("its handle still alive at exit") {
    auto r = run_helper({"unobserved-failure-kept-handle"});
    INFO(describe(r));
    REQUIRE_FALSE(r.timed_out);
    REQUIRE(r.exit_code == 0);
    auto found = report_lines(r.err, "doomed-task", "kaboom-43");
    REQUIRE(found.size() == 1);
    REQUIRE(contains(found[0], "doomed-pool"));
  }
}

TEST_CASE("exit: an unobserved failure whose handles are gone is reported by wait_completion",
          "[exit][thread]") {
  REQUIRE_HELPER_PATH();
  auto r = run_helper({"unobserved-failure-wait-completion"});
  INFO(describe(r));
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.exit_code == 0);
  auto report = r.err.find("kaboom-44");
  auto marker = r.err.find("marker:after-wait-completion");
  REQUIRE(report != std::string::npos);
  REQUIRE(marker != std::string::npos);
  REQUIRE(report < marker);
  REQUIRE(count_of(r.err, "kaboom-44") == 1);  // not again at exit
  auto found = report_lines(r.err, "doomed-task", "kaboom-44");
  REQUIRE(found.size() == 1);
  REQUIRE(contains(found[0], "doomed-pool"));
}

TEST_CASE("exit: shutdown reports an unobserved failure whose handle is alive", "[exit][thread]") {
  REQUIRE_HELPER_PATH();
  auto r = run_helper({"unobserved-failure-shutdown"});
  INFO(describe(r));
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.exit_code == 0);
  auto report = r.err.find("kaboom-45");
  auto marker = r.err.find("marker:after-shutdown");
  REQUIRE(report != std::string::npos);
  REQUIRE(marker != std::string::npos);
  REQUIRE(report < marker);
  REQUIRE(count_of(r.err, "kaboom-45") == 1);
  auto found = report_lines(r.err, "doomed-task", "kaboom-45");
  REQUIRE(found.size() == 1);
  REQUIRE(contains(found[0], "doomed-pool"));
}

TEST_CASE("exit: a failure that a wait saw is not reported", "[exit][thread]") {
  REQUIRE_HELPER_PATH();
  auto r = run_helper({"observed-failure"});
  INFO(describe(r));
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.exit_code == 0);
  REQUIRE(contains(r.out, "caught"));
  REQUIRE_FALSE(contains(r.err, "seen-task"));
  REQUIRE_FALSE(contains(r.err, "seen-error"));
}

TEST_CASE("exit: POOLS_DIAG=1 logs pool lifecycle lines starting with pools:", "[exit][thread]") {
  REQUIRE_HELPER_PATH();
  auto is_diag = [](const std::string& l) { return l.rfind("pools:", 0) == 0; };
  SECTION("on") {
    auto r = run_helper({"diag"}, {{"POOLS_DIAG", "1"}});
    INFO(describe(r));
    REQUIRE_FALSE(r.timed_out);
    REQUIRE(r.exit_code == 0);
    std::vector<std::string> diag;
    for (auto& l : lines_of(r.err))
      if (is_diag(l)) diag.push_back(l);
    REQUIRE(diag.size() >= 2);  // at least creation and shutdown
    bool names_pool = false;
    for (auto& l : diag) names_pool = names_pool || contains(l, "diag-pool");
    REQUIRE(names_pool);
  }
  SECTION("off") {
    auto r = run_helper({"diag"}, {{"POOLS_DIAG", std::nullopt}});
    INFO(describe(r));
    REQUIRE_FALSE(r.timed_out);
    REQUIRE(r.exit_code == 0);
    for (auto& l : lines_of(r.err)) REQUIRE_FALSE(is_diag(l));
  }
}

TEST_CASE("exit: POOLS_MAX_THREADS caps every thread pool's size", "[exit][thread][registry]") {
  REQUIRE_HELPER_PATH();
  SECTION("to 1") {
    auto r = run_helper({"max-threads"}, {{"POOLS_MAX_THREADS", "1"}});
    INFO(describe(r));
    REQUIRE_FALSE(r.timed_out);
    REQUIRE(r.exit_code == 0);
    REQUIRE(lines_of(r.out) == std::vector<std::string>{"workers:1 1 1", "result:9"});
  }
  SECTION("unset: the default is the hardware threads, explicit sizes are kept") {
    auto r = run_helper({"max-threads"}, {{"POOLS_MAX_THREADS", std::nullopt}});
    INFO(describe(r));
    REQUIRE_FALSE(r.timed_out);
    REQUIRE(r.exit_code == 0);
    auto hw = std::thread::hardware_concurrency();
    if (hw != 0) {
      REQUIRE(lines_of(r.out) ==
              std::vector<std::string>{"workers:" + std::to_string(hw) + " " + std::to_string(hw) + " 8",
                                       "result:9"});
    }
  }
}

TEST_CASE("exit: an unknown helper mode fails (the harness notices failures)", "[exit]") {
  REQUIRE_HELPER_PATH();
  auto r = run_helper({"no-such-mode"});
  INFO(describe(r));
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.exit_code == 99);
  REQUIRE(contains(r.err, "unknown mode"));
}
