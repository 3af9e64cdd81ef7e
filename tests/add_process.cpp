// add_process on every kind of pool that runs commands in this process: the
// process pool (its event loop), the thread pool and the serial pool (a worker,
// or the caller, waits for the command). Each test case runs once per kind.
//
// The commands are tests/process_helper (its modes are listed there) and, for
// the shell form, /bin/sh with its builtins.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using pools_test::helper;
using pools_test::lines_of;
using pools_test::read_text;
using pools_test::RecordedProcesses;
using pools_test::TempDir;

namespace {

struct CommandPool {
  std::string label;
  std::string tag;
  pools::PoolBase& (*get)(std::string_view name);
  bool runs_in_caller;  // add_process returns when the command has finished
};

const std::vector<CommandPool>& command_pools() {
  static const std::vector<CommandPool> cases = {
      {"process pool", "process",
       [](std::string_view n) -> pools::PoolBase& { return pools::get_process_pool(n, 2); }, false},
      {"thread pool", "thread",
       [](std::string_view n) -> pools::PoolBase& { return pools::get_thread_pool(n, 2); }, false},
      {"serial pool", "serial",
       [](std::string_view n) -> pools::PoolBase& { return pools::get_serial_pool(n); }, true},
  };
  return cases;
}

// Declares `kind` and `pool`: the test case runs once per kind of pool.
#define COMMAND_POOL(test_name)                                                               \
  const CommandPool& kind = command_pools()[GENERATE(range(std::size_t{0}, command_pools().size()))]; \
  INFO("pool kind: " << kind.label);                                                           \
  REQUIRE(fs::exists(pools_test::process_helper())); /* set by tests/meson.build */            \
  pools::PoolBase& pool = kind.get(std::string("commands.") + (test_name) + "." + kind.tag)

// Waits for a task within a bound no healthy run comes near (a hang fails the
// test instead of stalling the suite).
void finishes(const pools::TaskBase& t, std::chrono::seconds limit = 120s) {
  INFO("task " << t.name());
  REQUIRE(t.wait_for(limit));
}

std::string joined(const std::vector<std::string>& argv) {
  std::string s;
  for (auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// True when `text` is `size` bytes of process_helper's output pattern from `base`.
bool is_pattern(const std::string& text, std::size_t size, char base) {
  if (text.size() != size) return false;
  for (std::size_t i = 0; i < size; ++i)
    if (text[i] != static_cast<char>(base + i % 26)) return false;
  return true;
}

std::string describe(const pools::ProcessResult& r) {
  return "exit " + std::to_string(r.exit_code) + " signal " + std::to_string(r.signal) +
         (r.timed_out ? " timed out" : "") + "\nstderr: " + r.stderr_text;
}

// Runs `call` and returns the pools::ProcessError it must throw.
template <class Call>
pools::ProcessError process_error_of(Call&& call) {
  try {
    call();
  } catch (const pools::ProcessError& e) {
    return e;
  }
  FAIL("no pools::ProcessError was thrown");
  throw;  // not reached
}

// A command that cannot start: its task fails (even with check off) with a
// ProcessError naming the command and, in one of `reasons`, why.
void require_cannot_start(pools::PoolBase& pool, const std::vector<std::string>& argv,
                          const std::vector<std::string>& reasons, pools::ProcessOptions options = {}) {
  INFO("command: " << joined(argv));
  pools::ProcessTask t;
  REQUIRE_NOTHROW(t = pool.add_process("cannot start", argv, options));
  finishes(t);
  REQUIRE(t.failed());
  auto e = process_error_of([&] { t.wait(); });
  std::string what = e.what();
  INFO("what(): " << what);
  CHECK_THAT(what, Contains(argv[0]));
  bool named = false;
  for (auto& r : reasons) named = named || Contains(r, Catch::CaseSensitive::No).match(what);
  CHECK(named);
  CHECK(e.exit_code() == -1);
  CHECK(e.signal() == 0);
  CHECK_THROWS_AS(t.wait_return(), pools::ProcessError);
  CHECK_THROWS_AS(t.result(), pools::ProcessError);  // it never ran
}

}  // namespace

TEST_CASE("commands: wait_return is stdout, from an argv and from a shell string", "[process]") {
  COMMAND_POOL("stdout");
  auto before = std::chrono::system_clock::now();
  auto argv = helper({"echo", "one", "two"});
  auto a = pool.add_process("argv", argv);
  auto s = pool.add_process("shell", std::string("echo hi | tr a-z A-Z"));
  auto b = pool.add_process("braced", {pools_test::process_helper(), "echo", "braced"});
  if (kind.runs_in_caller) REQUIRE((a.iscompleted() && s.iscompleted() && b.iscompleted()));
  finishes(a);
  REQUIRE(a.wait_return() == "one\ntwo\n");
  REQUIRE(s.wait_return() == "HI\n");
  REQUIRE(b.wait_return() == "braced\n");
  auto after = std::chrono::system_clock::now();

  const pools::ProcessResult& r = a.result();
  INFO(describe(r));
  CHECK(r.succeeded());
  CHECK(r.exit_code == 0);
  CHECK(r.signal == 0);
  CHECK(r.stdout_text == "one\ntwo\n");
  CHECK(r.stderr_text.empty());
  CHECK(r.command == joined(argv));
  CHECK(r.attempts == 1);
  CHECK_FALSE(r.timed_out);
  CHECK_FALSE(r.stdout_truncated);
  CHECK(r.pid > 0);
  CHECK(r.elapsed > 0ns);
  CHECK(r.elapsed < 60s);
  CHECK(r.started >= before - 60s);  // the wall clock may be stepped; only a sanity bound
  CHECK(r.started <= after + 60s);
  CHECK(s.result().command == "echo hi | tr a-z A-Z");
  CHECK(a.name() == "argv");
  CHECK_FALSE(a.failed());
}

TEST_CASE("commands: a non-zero exit fails the task with check on and not with check off",
          "[process]") {
  COMMAND_POOL("exit-codes");
  for (int code : {1, 2, 42, 255}) {
    INFO("exit code " << code);
    auto argv = helper({"exit", std::to_string(code), "error text " + std::to_string(code)});
    auto checked = pool.add_process("checked", argv);
    finishes(checked);
    REQUIRE(checked.failed());
    auto e = process_error_of([&] { checked.wait(); });
    CHECK(e.exit_code() == code);
    CHECK(e.signal() == 0);
    CHECK_FALSE(e.timed_out());
    CHECK(e.command() == joined(argv));
    CHECK(e.stderr_text() == "error text " + std::to_string(code));
    CHECK_THAT(std::string(e.what()), Contains(std::to_string(code)) && Contains(e.command()));
    CHECK_THROWS_AS(checked.wait_return(), pools::ProcessError);
    // result() tells what happened instead of throwing.
    REQUIRE_NOTHROW(checked.result());
    CHECK(checked.result().exit_code == code);
    CHECK_FALSE(checked.result().succeeded());

    pools::ProcessOptions unchecked;
    unchecked.check = false;
    auto relaxed = pool.add_process("unchecked", argv, unchecked);
    REQUIRE_NOTHROW(relaxed.wait());
    CHECK(relaxed.wait_return().empty());
    CHECK_FALSE(relaxed.failed());
    CHECK(relaxed.result().exit_code == code);
    CHECK(relaxed.result().stderr_text == "error text " + std::to_string(code));
  }
  auto shell = pool.add_process("shell exit", std::string("echo partial; exit 3"));
  auto e = process_error_of([&] { shell.wait(); });
  CHECK(e.exit_code() == 3);
  CHECK(e.command() == "echo partial; exit 3");
  CHECK(shell.result().stdout_text == "partial\n");
  REQUIRE(pool.add_process("zero", helper({"exit", "0"})).wait_return().empty());
}

TEST_CASE("commands: a command killed by a signal reports the signal", "[process]") {
  COMMAND_POOL("signals");
  for (int sig : {SIGKILL, SIGTERM, SIGUSR1, SIGINT}) {
    INFO("signal " << sig);
    auto t = pool.add_process("signalled", helper({"signal", std::to_string(sig)}));
    finishes(t);
    auto e = process_error_of([&] { t.wait(); });
    CHECK(e.signal() == sig);
    CHECK(e.exit_code() == -1);
    CHECK_FALSE(e.timed_out());
    CHECK_THAT(std::string(e.what()), Contains(std::to_string(sig)) && Contains(e.command()));
    CHECK(t.result().signal == sig);
    CHECK(t.result().exit_code == -1);

    pools::ProcessOptions unchecked;
    unchecked.check = false;
    auto u = pool.add_process("signalled unchecked", helper({"signal", std::to_string(sig)}), unchecked);
    REQUIRE_NOTHROW(u.wait());
    CHECK(u.result().signal == sig);
  }
}

TEST_CASE("commands: a command that cannot start fails only its task, saying why", "[process]") {
  COMMAND_POOL("cannot-start");
  TempDir dir("cannot-start-" + kind.tag);
  SECTION("not found on PATH") {
    require_cannot_start(pool, {"pools-test-no-such-program", "arg"},
                         {"not found", "no such file"});
  }
  SECTION("a path that does not exist") {
    require_cannot_start(pool, {(dir.path / "missing" / "prog").string()},
                         {"not found", "no such file"});
  }
  SECTION("not executable") {
    std::string script = dir / "script.sh";
    { std::ofstream(script) << "#!/bin/sh\necho ran\n"; }
    fs::permissions(script, fs::perms::owner_read | fs::perms::owner_write);
    require_cannot_start(pool, {script}, {"permission denied", "not executable", "eacces"});
  }
  SECTION("PATH is searched as execvp does: past a file that is not executable") {
    fs::create_directories(dir.path / "first");
    fs::create_directories(dir.path / "second");
    { std::ofstream(dir / "first/pools-test-prog") << "#!/bin/sh\necho first\n"; }
    { std::ofstream(dir / "second/pools-test-prog") << "#!/bin/sh\necho second\n"; }
    fs::permissions(dir / "first/pools-test-prog", fs::perms::owner_read | fs::perms::owner_write);
    fs::permissions(dir / "second/pools-test-prog",
                    fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
    pools::ProcessOptions options;
    options.env["PATH"] = (dir / "first") + ":" + (dir / "second") + ":/bin:/usr/bin";
    CHECK(pool.add_process("", {"pools-test-prog"}, options).wait_return() == "second\n");
    // Found, but only where it cannot run: said so, not "not found".
    options.env["PATH"] = (dir / "first") + ":/bin:/usr/bin";
    require_cannot_start(pool, {"pools-test-prog"}, {"permission denied"}, options);
  }
  SECTION("a working directory that does not exist") {
    pools::ProcessOptions options;
    options.cwd = dir / "no-such-dir";
    require_cannot_start(pool, helper({"echo", "x"}), {options.cwd, "no such file", "directory"},
                         options);
  }
  SECTION("check off does not make a command that never ran succeed") {
    pools::ProcessOptions options;
    options.check = false;
    require_cannot_start(pool, {"pools-test-no-such-program"}, {"not found", "no such file"},
                         options);
  }
  SECTION("through the shell, the shell's own exit status 127") {
    auto t = pool.add_process("shell not found", std::string("pools-test-no-such-program"));
    auto e = process_error_of([&] { t.wait(); });
    CHECK(e.exit_code() == 127);
    CHECK_THAT(e.stderr_text(), Contains("not found"));
  }
  // The pool keeps working.
  REQUIRE(pool.add_process("after", helper({"echo", "still fine"})).wait_return() == "still fine\n");
}

TEST_CASE("commands: argv arguments arrive literally, spaces and shell characters included",
          "[process]") {
  COMMAND_POOL("literal-argv");
  std::vector<std::string> args = {"a b",  "  leading and trailing  ", "$HOME", "*", "`id`",
                                   "$(echo x)", "'single'", "\"double\"", ";", "|", "&&", "> out",
                                   "\\", "", "tab\there", "~", "#not a comment", "ünïcödé"};
  std::vector<std::string> argv{"echo"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto t = pool.add_process("literal", helper(argv));
  REQUIRE(lines_of(t.wait_return()) == args);
}

TEST_CASE("commands: environment variables are added, overridden or replace all", "[process]") {
  COMMAND_POOL("env");
  SECTION("the caller's environment is inherited, with additions and overrides") {
    pools::ProcessOptions options;
    options.env = {{"POOLS_T_ADDED", "added value"}, {"POOLS_T_EMPTY", ""},
                   {"POOLS_PROCESS_PARENT", "overridden"}};
    auto t = pool.add_process(
        "env", helper({"getenv", "POOLS_T_ADDED", "POOLS_T_EMPTY", "POOLS_PROCESS_PARENT",
                       "POOLS_PROCESS_HELPER", "POOLS_T_NOT_SET"}),
        options);
    REQUIRE(lines_of(t.wait_return()) ==
            std::vector<std::string>{"POOLS_T_ADDED=added value", "POOLS_T_EMPTY=",
                                     "POOLS_PROCESS_PARENT=overridden",
                                     "POOLS_PROCESS_HELPER=" + pools_test::process_helper(),
                                     "POOLS_T_NOT_SET unset"});
    auto s = pool.add_process("shell env", std::string("echo \"$POOLS_T_ADDED\""), options);
    REQUIRE(s.wait_return() == "added value\n");
  }
  SECTION("replace_env: only the given variables") {
    pools::ProcessOptions options;
    options.replace_env = true;
    options.env = {{"ONLY", "1"}, {"ALSO", "two words"}};
    auto t = pool.add_process("replaced", helper({"environ"}), options);
    auto lines = lines_of(t.wait_return());
    REQUIRE(std::set<std::string>(lines.begin(), lines.end()) ==
            std::set<std::string>{"ONLY=1", "ALSO=two words"});
    options.env.clear();
    auto empty = pool.add_process("emptied", helper({"environ"}), options);
    REQUIRE(empty.wait_return().empty());
  }
}

TEST_CASE("commands: cwd sets the working directory of the command only", "[process]") {
  COMMAND_POOL("cwd");
  TempDir dir("cwd-" + kind.tag);
  auto here = fs::current_path();
  pools::ProcessOptions options;
  options.cwd = dir.path.string();
  REQUIRE(pool.add_process("cwd", helper({"cwd"}), options).wait_return() == dir.path.string() + "\n");
  REQUIRE(pool.add_process("pwd", std::string("pwd -P"), options).wait_return() ==
          dir.path.string() + "\n");
  REQUIRE_NOTHROW(pool.add_process("relative", std::string("echo x > made.txt"), options).wait());
  REQUIRE(read_text(dir.path / "made.txt") == "x\n");
  REQUIRE(fs::current_path() == here);
  REQUIRE(pool.add_process("default", helper({"cwd"})).wait_return() == here.string() + "\n");
}

TEST_CASE("commands: stdin is /dev/null unless stdin_text is given", "[process]") {
  COMMAND_POOL("stdin");
  SECTION("none: an empty stdin at once") {
    auto t = pool.add_process("no stdin", helper({"count-stdin"}));
    finishes(t);
    REQUIRE(t.wait_return() == "0\n");
  }
  SECTION("empty text") {
    pools::ProcessOptions options;
    options.stdin_text = "";
    REQUIRE(pool.add_process("empty stdin", helper({"count-stdin"}), options).wait_return() == "0\n");
  }
  SECTION("text with a NUL byte and no final newline") {
    pools::ProcessOptions options;
    options.stdin_text = std::string("hello\nworld\0binary", 18);
    REQUIRE(pool.add_process("cat", helper({"cat"}), options).wait_return() == *options.stdin_text);
  }
  SECTION("4 MB in while 4 MB come out") {
    pools::ProcessOptions options;
    options.stdin_text = std::string();
    for (int i = 0; options.stdin_text->size() < 4u << 20; ++i)
      *options.stdin_text += "line " + std::to_string(i) + "\n";
    auto t = pool.add_process("big cat", helper({"cat"}), options);
    finishes(t);
    REQUIRE(t.wait_return() == *options.stdin_text);
  }
  SECTION("a command that does not read its stdin") {
    pools::ProcessOptions options;
    options.stdin_text = std::string(4u << 20, 'x');
    auto t = pool.add_process("unread stdin", helper({"exit", "0"}), options);
    finishes(t);
    REQUIRE_NOTHROW(t.wait());
    CHECK(t.result().exit_code == 0);
  }
}

TEST_CASE("commands: 8 MB on stdout and on stderr at once", "[process]") {
  COMMAND_POOL("8mb");
  const std::size_t size = 8u << 20;
  auto t = pool.add_process("8 MB", helper({"output", std::to_string(size), std::to_string(size)}));
  finishes(t);
  const pools::ProcessResult& r = t.result();
  INFO("exit " << r.exit_code << " signal " << r.signal);
  REQUIRE(r.succeeded());
  REQUIRE(r.stdout_text.size() == size);
  REQUIRE(r.stderr_text.size() == size);
  REQUIRE(is_pattern(r.stdout_text, size, 'a'));
  REQUIRE(is_pattern(r.stderr_text, size, 'A'));
  REQUIRE_FALSE(r.stdout_truncated);
  REQUIRE_FALSE(r.stderr_truncated);
}

TEST_CASE("commands: max_output keeps the first bytes of each stream and says so", "[process]") {
  COMMAND_POOL("max-output");
  pools::ProcessOptions options;
  options.max_output = 1000;
  auto big = pool.add_process("big", helper({"output", "1000000", "300000"}), options);
  finishes(big);
  const pools::ProcessResult& r = big.result();
  INFO(describe(r));
  REQUIRE(r.succeeded());  // the rest was read and dropped: no SIGPIPE, no error
  REQUIRE(is_pattern(r.stdout_text, 1000, 'a'));
  REQUIRE(is_pattern(r.stderr_text, 1000, 'A'));
  REQUIRE(r.stdout_truncated);
  REQUIRE(r.stderr_truncated);
  REQUIRE(big.wait_return() == r.stdout_text);

  auto small = pool.add_process("small", helper({"output", "10", "20"}), options);
  REQUIRE(is_pattern(small.wait_return(), 10, 'a'));
  REQUIRE_FALSE(small.result().stdout_truncated);
  REQUIRE_FALSE(small.result().stderr_truncated);
}

TEST_CASE("commands: merge_stderr sends stderr into stdout, in order", "[process]") {
  COMMAND_POOL("merge");
  pools::ProcessOptions options;
  options.merge_stderr = true;
  auto s = pool.add_process("shell", std::string("echo o1; echo e1 >&2; echo o2; echo e2 >&2"), options);
  REQUIRE(s.wait_return() == "o1\ne1\no2\ne2\n");
  REQUIRE(s.result().stderr_text.empty());
  auto h = pool.add_process("helper", helper({"output", "100", "100"}), options);
  std::string text = h.wait_return();
  REQUIRE(text.size() == 200);
  REQUIRE(is_pattern(text.substr(0, 100), 100, 'a'));
  REQUIRE(is_pattern(text.substr(100), 100, 'A'));
  // A failing command's error carries the merged output in stdout, not in stderr_text.
  auto f = pool.add_process("failing", helper({"exit", "5", "to stderr"}), options);
  auto e = process_error_of([&] { f.wait(); });
  CHECK(e.exit_code() == 5);
  CHECK(f.result().stdout_text == "to stderr");
}

namespace {
// Points this process's descriptor `fd` at a new file until destroyed: a
// command that does not capture its output inherits it.
struct RedirectFd {
  int fd, saved;
  // The saved copy is close-on-exec: a command holding it would keep the
  // test's own stdout open.
  RedirectFd(int target, const fs::path& path) : fd(target), saved(::fcntl(target, F_DUPFD_CLOEXEC, 3)) {
    std::fflush(nullptr);
    const int file = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(file >= 0);
    ::dup2(file, fd);
    ::close(file);
  }
  ~RedirectFd() {
    std::fflush(nullptr);
    ::dup2(saved, fd);
    ::close(saved);
  }
};
}  // namespace

TEST_CASE("commands: capture_output off: the command writes to our stdout and stderr", "[process]") {
  COMMAND_POOL("uncaptured");
  TempDir dir("uncaptured-" + kind.tag);
  pools::ProcessOptions options;
  options.capture_output = false;
  pools::ProcessTask plain, merged, failing, left_behind;
  {
    RedirectFd out(STDOUT_FILENO, dir.path / "out"), err(STDERR_FILENO, dir.path / "err");
    plain = pool.add_process("plain", helper({"output", "3000", "2000"}), options);
    plain.join();
    failing = pool.add_process("failing", helper({"exit", "4", "said on stderr"}), options);
    failing.join();
    // Its task ends when it exits, though a process it started holds our stdout.
    left_behind = pool.add_process(
        "left behind", "sleep 1000 & echo $! >" + (dir / "sleep.pid") + "; echo started", options);
    const bool ended = left_behind.wait_for(120s);
    const std::string sleep_pid = read_text(dir.path / "sleep.pid");
    if (!sleep_pid.empty()) ::kill(std::stoi(sleep_pid), SIGKILL);
    REQUIRE(ended);
    options.merge_stderr = true;
    merged = pool.add_process("merged", helper({"output", "100", "100"}), options);
    merged.join();
  }
  CHECK(plain.result().succeeded());
  CHECK(plain.wait_return().empty());
  CHECK(plain.result().stderr_text.empty());
  auto e = process_error_of([&] { failing.wait(); });
  CHECK(e.exit_code() == 4);
  CHECK(left_behind.result().succeeded());
  CHECK(merged.result().succeeded());
  const std::string out = read_text(dir.path / "out"), err = read_text(dir.path / "err");
  REQUIRE(out.size() == 3000 + 8 + 200);
  CHECK(is_pattern(out.substr(0, 3000), 3000, 'a'));
  CHECK(out.substr(3000, 8) == "started\n");
  CHECK(is_pattern(out.substr(3008, 100), 100, 'a'));  // merged: stdout, then stderr
  CHECK(is_pattern(out.substr(3108), 100, 'A'));
  CHECK(is_pattern(err.substr(0, 2000), 2000, 'A'));
  CHECK(err.substr(2000) == "said on stderr");
}

TEST_CASE("commands: a timeout kills the command and its grandchild", "[process]") {
  COMMAND_POOL("timeout");
  TempDir dir("timeout-" + kind.tag);
  std::string record = dir / "record";
  pools::ProcessOptions options;
  options.timeout = 2s;
  SECTION("check on: ProcessError with timed_out()") {
    auto start = std::chrono::steady_clock::now();
    auto t = pool.add_process("sleeps", helper({"grandchild", record, "60"}), options);
    RecordedProcesses procs;
    REQUIRE(procs.read(record, 1));
    finishes(t);
    CHECK(std::chrono::steady_clock::now() - start < 30s);
    auto e = process_error_of([&] { t.wait(); });
    CHECK(e.timed_out());
    CHECK_THAT(std::string(e.what()), Contains("time", Catch::CaseSensitive::No));
    CHECK(t.result().timed_out);
    CHECK(t.result().signal == SIGTERM);
    CHECK(t.result().exit_code == -1);
    REQUIRE(procs.all_gone());
  }
  SECTION("check off: the result says it timed out") {
    options.check = false;
    auto t = pool.add_process("sleeps", helper({"grandchild", record, "60"}), options);
    RecordedProcesses procs;
    REQUIRE(procs.read(record, 1));
    REQUIRE_NOTHROW(t.wait());
    CHECK(t.result().timed_out);
    CHECK_FALSE(t.result().succeeded());
    REQUIRE(procs.all_gone());
  }
  SECTION("a command and grandchild that ignore SIGTERM get SIGKILL after kill_grace") {
    options.kill_grace = 500ms;
    options.check = false;
    auto start = std::chrono::steady_clock::now();
    auto t = pool.add_process("stubborn", helper({"grandchild", record, "60", "ignore-term"}), options);
    RecordedProcesses procs;
    REQUIRE(procs.read(record, 1));
    finishes(t);
    CHECK(std::chrono::steady_clock::now() - start < 30s);
    CHECK(t.result().timed_out);
    CHECK(t.result().signal == SIGKILL);
    REQUIRE(procs.all_gone());
  }
  SECTION("a command that finishes in time is not affected") {
    options.timeout = 60s;
    REQUIRE(pool.add_process("quick", helper({"echo", "in time"}), options).wait_return() ==
            "in time\n");
  }
}

TEST_CASE("commands: retries run a failing command again", "[process]") {
  COMMAND_POOL("retries");
  TempDir dir("retries-" + kind.tag);
  std::string counter = dir / "counter";
  pools::ProcessOptions options;
  SECTION("until it succeeds") {
    options.retries = 5;
    auto t = pool.add_process("flaky", helper({"fail-until", counter, "3"}), options);
    REQUIRE(t.wait_return() == "succeeded on attempt 3\n");
    CHECK(t.result().attempts == 3);
    CHECK(read_text(counter) == "3");
  }
  SECTION("no more than `retries` times") {
    options.retries = 2;
    auto t = pool.add_process("hopeless", helper({"fail-until", counter, "10"}), options);
    auto e = process_error_of([&] { t.wait(); });
    CHECK(e.exit_code() == 1);
    CHECK(e.stderr_text() == "attempt 3 failed\n");  // the last attempt's
    CHECK(t.result().attempts == 3);
    CHECK(read_text(counter) == "3");
  }
  SECTION("after a timeout") {
    options.retries = 2;
    options.timeout = 5s;
    options.kill_grace = 500ms;
    auto t = pool.add_process("hangs once", helper({"fail-until", counter, "2", "hang"}), options);
    finishes(t);
    REQUIRE(t.wait_return() == "succeeded on attempt 2\n");
    CHECK(t.result().attempts == 2);
    CHECK_FALSE(t.result().timed_out);
  }
  SECTION("none by default") {
    auto t = pool.add_process("once", helper({"fail-until", counter, "2"}));
    REQUIRE_THROWS_AS(t.wait(), pools::ProcessError);
    CHECK(t.result().attempts == 1);
    CHECK(read_text(counter) == "1");
  }
}

TEST_CASE("commands: each command leads a process group of its own", "[process]") {
  COMMAND_POOL("pgid");
  auto t = pool.add_process("pgid", helper({"pgid"}));
  auto words = lines_of(t.wait_return());
  REQUIRE(words.size() == 1);
  std::istringstream in(words[0]);
  long pid = 0, pgid = 0;
  in >> pid >> pgid;
  CHECK(pid == t.result().pid);
  CHECK(pgid == pid);
  CHECK(pgid != ::getpgrp());
}

TEST_CASE("commands: a command inherits no descriptors beyond stdin, stdout and stderr",
          "[process]") {
  COMMAND_POOL("fds");
  // A descriptor the program opened without O_CLOEXEC, as a library might.
  const int leaky = ::open("/dev/null", O_RDONLY);
  REQUIRE(leaky > 2);
  const auto ours = pools_test::inheritable_fds();  // leaky among them
  REQUIRE(ours.count(leaky) == 1);
  for (int i = 0; i < 3; ++i) {
    auto t = pool.add_process("fds", helper({"fds"}));
    CHECK(lines_of(t.wait_return()).empty());
  }
  // close_fds off: what the program left inheritable reaches the command, and
  // nothing of the pool's own.
  pools::ProcessOptions inherit;
  inherit.close_fds = false;
  std::set<int> seen;
  for (auto& line : lines_of(pool.add_process("fds", helper({"fds"}), inherit).wait_return())) {
    INFO("descriptor " << line << " open in the command");
    CHECK(ours.count(std::stoi(line)) == 1);
    seen.insert(std::stoi(line));
  }
  CHECK(seen.count(leaky) == 1);
  ::close(leaky);
}

TEST_CASE("commands: cancel() stops a running command and its grandchild", "[process]") {
  COMMAND_POOL("cancel");
  if (kind.runs_in_caller) return;  // add_process returns only when the command has finished
  TempDir dir("cancel-" + kind.tag);
  std::string record = dir / "record";
  pools::ProcessOptions options;
  options.kill_grace = 500ms;
  bool stubborn = GENERATE(false, true);
  INFO((stubborn ? "ignoring SIGTERM" : "dying of SIGTERM"));
  std::vector<std::string> args{"grandchild", record, "60"};
  if (stubborn) args.push_back("ignore-term");
  auto start = std::chrono::steady_clock::now();
  auto t = pool.add_process("sleeps", helper(args), options);
  RecordedProcesses procs;
  REQUIRE(procs.read(record, 1));
  REQUIRE(t.cancel());
  finishes(t);
  CHECK(std::chrono::steady_clock::now() - start < 30s);
  REQUIRE_THROWS_AS(t.wait(), pools::Cancelled);
  REQUIRE(t.failed());
  REQUIRE(procs.all_gone());
  // It ran, so result() tells how it ended instead of throwing.
  REQUIRE_NOTHROW(t.result());
  CHECK(t.result().signal != 0);
  CHECK_FALSE(t.cancel());  // already finished
  REQUIRE(pool.add_process("after", helper({"echo", "next"})).wait_return() == "next\n");
}

TEST_CASE("commands: invalid arguments make add_process throw pools::Error at once", "[process]") {
  COMMAND_POOL("invalid");
  auto active = pool.num_active_tasks();
  auto throws = [&](auto&& command, pools::ProcessOptions options) {
    REQUIRE_THROWS_AS(pool.add_process("invalid", command, options), pools::Error);
  };
  throws(std::vector<std::string>{}, {});
  throws(std::vector<std::string>{"echo", std::string("nul\0byte", 8)}, {});
  throws(std::string("echo nul\0byte", 13), {});
  pools::ProcessOptions negative;
  negative.timeout = -1s;
  throws(helper({"echo"}), negative);
  for (std::string name : {std::string(), std::string("A=B"), std::string("N\0UL", 4)}) {
    INFO("variable name '" << name << "'");
    pools::ProcessOptions bad_env;
    bad_env.env[name] = "x";
    throws(helper({"echo"}), bad_env);
  }
  REQUIRE(pool.num_active_tasks() == active);  // nothing was queued
}

TEST_CASE("commands: 200 commands leave no zombie and no extra descriptor", "[process]") {
  COMMAND_POOL("reaped");
  (void)pool.add_process("warm-up", {"true"}).result();
  pool.wait_completion();
  auto fds_before = pools_test::open_fds();
  std::vector<pools::ProcessTask> tasks;
  pools::ProcessOptions unchecked;
  unchecked.check = false;
  for (int i = 0; i < 200; ++i)
    tasks.push_back(i % 2 ? pool.add_process("shell", std::string("echo x; exit 1"), unchecked)
                          : pool.add_process("argv", helper({"output", "1000", "1000"})));
  pool.wait_completion();
  std::set<long> pids;
  for (auto& t : tasks) {
    REQUIRE(t.iscompleted());
    pids.insert(t.result().pid);
  }
  tasks.clear();
  pools_test::require_reaped_and_closed(pids, fds_before);
}

TEST_CASE("commands: the serial pool runs the command before add_process returns", "[process][serial]") {
  auto& pool = pools::get_serial_pool("commands.serial-inline");
  TempDir dir("serial-inline");
  pools::ProcessOptions options;
  options.cwd = dir.path.string();
  auto t = pool.add_process("inline", std::string("echo done > marker"), options);
  REQUIRE(t.iscompleted());
  REQUIRE(fs::exists(dir.path / "marker"));
  auto f = pool.add_process("failing", helper({"exit", "9"}));
  REQUIRE(f.iscompleted());
  REQUIRE(f.failed());
  REQUIRE(process_error_of([&] { f.wait(); }).exit_code() == 9);
}

TEST_CASE("commands: a thread pool runs commands on its workers, as many at once as workers",
          "[process][thread]") {
  auto& pool = pools::get_thread_pool("commands.thread-workers", 2);
  TempDir dir("thread-workers");
  std::string gate = dir / "gate";
  // Two commands run at once: each waits for the gate, opened once both started.
  auto a = pool.add_process("a", helper({"wait-for", gate, dir / "a-ready"}));
  auto b = pool.add_process("b", helper({"wait-for", gate, dir / "b-ready"}));
  REQUIRE(pools_test::wait_until([&] { return fs::exists(dir / "a-ready") && fs::exists(dir / "b-ready"); }));
  { std::ofstream(gate) << "open"; }
  auto f = pool.add_task("after", [] { return 7; });
  REQUIRE(f.wait_return() == 7);
  REQUIRE_NOTHROW(a.wait());
  REQUIRE_NOTHROW(b.wait());
}
