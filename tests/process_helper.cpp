// The command that the process tests run: argv[1] names a mode, so the tests do
// not depend on what the system's tools happen to do.
//
//   exit CODE [STDERR_TEXT]          write STDERR_TEXT to stderr, exit with CODE
//   signal SIGNUM                    die by signal SIGNUM
//   sleep SECONDS [READYFILE]        create READYFILE, then sleep
//   ignore-term SECONDS READYFILE    ignore SIGTERM, create READYFILE, then sleep
//   output OUT_BYTES ERR_BYTES       write both streams at once, in turns of 64 KiB
//                                    (stdout: 'a'..'z' repeated; stderr: 'A'..'Z')
//   echo ARG...                      each argument on a line of its own
//   grandchild RECORD SECONDS [ignore-term]
//                                    fork a grandchild; both sleep SECONDS; appends
//                                    "PID GRANDCHILD_PID" as one line to RECORD once
//                                    both exist (with ignore-term both ignore SIGTERM)
//   fail-until COUNTER N [hang]      count this attempt in the file COUNTER; attempts
//                                    before the Nth exit 1 (with hang: sleep 300 s)
//   getenv NAME...                   "NAME=value" or "NAME unset" per name
//   environ                          the whole environment, a variable per line
//   cwd                              the working directory
//   cat                              copy stdin to stdout
//   count-stdin                      the number of bytes on stdin until end of file
//   pgid                             "PID PGID"
//   signal-state                     the SigBlk and SigIgn lines of /proc/self/status,
//                                    then "Policy: N" (its scheduling policy)
//   fds                              the descriptors above 2 that are open, one per line
//   wait-for FILE [READYFILE]        create READYFILE, then wait until FILE exists
//   slot DIR MAX                     mark itself running in DIR for a moment; writes
//                                    DIR/../over when more than MAX were running at once
//
// Built a second time as process_parent (POOLS_TEST_PARENT defined), a program
// that itself uses pools to run commands, for the tests that signal such a
// program or watch what it reports at exit:
//
//   interrupt KIND HELPER RECORD N [ignore-term]
//                                    run N "HELPER grandchild RECORD 300" commands on
//                                    a pool of KIND (process, thread: N at once;
//                                    serial: N must be 1), print "ready" once all N
//                                    grandchildren exist, then wait for the commands
//   keep-disposition HOW HELPER RECORD STOP
//                                    set SIGINT to HOW (ignore, or handler: one of
//                                    our own) before using pools; run one
//                                    "HELPER grandchild RECORD 300"; print "ready";
//                                    when the file STOP exists or our handler ran,
//                                    say so and whether the command still runs
//   running-at-exit FILE             start a command that writes "done" to FILE
//                                    after a moment, and return from main at once
//   unobserved KIND                  add a failing command named doomed-command to a
//                                    pool of KIND (process, thread, serial); return
//   unobserved-shutdown KIND         the same, keeping the handle, then shutdown()
//                                    and print marker:after-shutdown on stderr
//
// Output goes through write(2): unbuffered, so nothing is lost to a signal.
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#ifdef POOLS_TEST_PARENT
#include <pools/pools.hpp>

#include <chrono>
#include <thread>
#endif

extern char** environ;

namespace {

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) std::_Exit(70);  // the reader went away
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}
void write_all(int fd, const std::string& s) { write_all(fd, s.data(), s.size()); }
void out(const std::string& line) { write_all(1, line + "\n"); }

[[noreturn]] void die(const std::string& why) {
  write_all(2, "process_helper: " + why + "\n");
  std::_Exit(90);
}

void sleep_seconds(double s) {
  timespec t{static_cast<time_t>(s), static_cast<long>((s - static_cast<time_t>(s)) * 1e9)};
  while (::nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

void create_file(const std::string& path, const std::string& text = {}) {
  // Written under another name and renamed, so a reader never sees it half done.
  std::string tmp = path + ".tmp" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die("cannot create " + tmp + ": " + std::strerror(errno));
  write_all(fd, text);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) die("cannot rename to " + path);
}

// One write with O_APPEND: lines from several processes never mix.
void append_line(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) die("cannot open " + path + ": " + std::strerror(errno));
  write_all(fd, line + "\n");
  ::close(fd);
}

std::string read_file(const std::string& path) {
  std::string text;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return text;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void ignore_term() { ::signal(SIGTERM, SIG_IGN); }

int count_entries(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) die("cannot open " + dir);
  int n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

long number(const char* s) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end) die(std::string("not a number: ") + s);
  return v;
}

int run_helper_mode(const std::string& mode, int argc, char** argv) {
  auto arg = [&](int i) -> std::string {
    if (i >= argc) die("mode " + mode + " needs argument " + std::to_string(i));
    return argv[i];
  };
  auto has = [&](int i, const char* word) { return i < argc && std::strcmp(argv[i], word) == 0; };

  if (mode == "exit") {
    if (argc > 3) write_all(2, arg(3));
    return static_cast<int>(number(arg(2).c_str()));
  }
  if (mode == "signal") {
    int sig = static_cast<int>(number(arg(2).c_str()));
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    die("still alive after signal " + arg(2));
  }
  if (mode == "sleep") {
    if (argc > 3) create_file(arg(3));
    sleep_seconds(static_cast<double>(number(arg(2).c_str())));
    return 0;
  }
  if (mode == "ignore-term") {
    ignore_term();
    create_file(arg(3));
    sleep_seconds(static_cast<double>(number(arg(2).c_str())));
    return 0;
  }
  if (mode == "output") {
    std::size_t left[2] = {static_cast<std::size_t>(number(arg(2).c_str())),
                           static_cast<std::size_t>(number(arg(3).c_str()))};
    std::size_t offset[2] = {0, 0};
    const char base[2] = {'a', 'A'};
    std::vector<char> chunk(65536);
    while (left[0] + left[1] > 0) {
      for (int s = 0; s < 2; ++s) {
        std::size_t n = std::min(left[s], chunk.size());
        for (std::size_t i = 0; i < n; ++i) chunk[i] = static_cast<char>(base[s] + (offset[s] + i) % 26);
        write_all(1 + s, chunk.data(), n);
        left[s] -= n;
        offset[s] += n;
      }
    }
    return 0;
  }
  if (mode == "echo") {
    for (int i = 2; i < argc; ++i) out(argv[i]);
    return 0;
  }
  if (mode == "grandchild") {
    std::string record = arg(2);
    double seconds = static_cast<double>(number(arg(3).c_str()));
    if (has(4, "ignore-term")) ignore_term();  // before fork: the grandchild inherits it
    pid_t pid = ::fork();
    if (pid < 0) die("fork failed");
    if (pid == 0) {
      sleep_seconds(seconds);
      std::_Exit(0);
    }
    append_line(record, std::to_string(::getpid()) + " " + std::to_string(pid));
    sleep_seconds(seconds);
    ::waitpid(pid, nullptr, 0);
    return 0;
  }
  if (mode == "fail-until") {
    std::string counter = arg(2);
    long needed = number(arg(3).c_str());
    std::string text = read_file(counter);
    long attempt = (text.empty() ? 0 : number(text.c_str())) + 1;
    create_file(counter, std::to_string(attempt));
    if (attempt < needed) {
      write_all(2, "attempt " + std::to_string(attempt) + " failed\n");
      if (has(4, "hang")) sleep_seconds(300);
      return 1;
    }
    out("succeeded on attempt " + std::to_string(attempt));
    return 0;
  }
  if (mode == "getenv") {
    for (int i = 2; i < argc; ++i) {
      const char* v = std::getenv(argv[i]);
      out(v ? std::string(argv[i]) + "=" + v : std::string(argv[i]) + " unset");
    }
    return 0;
  }
  if (mode == "environ") {
    for (char** e = environ; *e; ++e) out(*e);
    return 0;
  }
  if (mode == "cwd") {
    char buf[4096];
    if (!::getcwd(buf, sizeof buf)) die("getcwd failed");
    out(buf);
    return 0;
  }
  if (mode == "cat" || mode == "count-stdin") {
    char buf[65536];
    std::size_t total = 0;
    for (;;) {
      ssize_t n = ::read(0, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) die(std::string("read failed: ") + std::strerror(errno));
      if (n == 0) break;
      total += static_cast<std::size_t>(n);
      if (mode == "cat") write_all(1, buf, static_cast<std::size_t>(n));
    }
    if (mode == "count-stdin") out(std::to_string(total));
    return 0;
  }
  if (mode == "signal-state") {
    std::ifstream status("/proc/self/status");
    std::string line, lines;
    while (std::getline(status, line))
      if (line.rfind("SigBlk:", 0) == 0 || line.rfind("SigIgn:", 0) == 0)
        lines += line + "\n";
    write_all(1, lines + "Policy: " + std::to_string(::sched_getscheduler(0)) + "\n");
    return 0;
  }
  if (mode == "pgid") {
    out(std::to_string(::getpid()) + " " + std::to_string(::getpgrp()));
    return 0;
  }
  if (mode == "fds") {
    DIR* d = ::opendir("/proc/self/fd");
    if (!d) die("cannot list /proc/self/fd");
    std::string list;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      int fd = static_cast<int>(number(e->d_name));
      if (fd > 2 && fd != ::dirfd(d)) list += std::to_string(fd) + "\n";
    }
    ::closedir(d);
    write_all(1, list);
    return 0;
  }
  if (mode == "wait-for") {
    if (argc > 3) create_file(arg(3));
    for (int i = 0; i < 300 * 200 && !exists(arg(2)); ++i) sleep_seconds(0.005);
    return exists(arg(2)) ? 0 : 1;
  }
  if (mode == "slot") {
    std::string dir = arg(2);
    long max = number(arg(3).c_str());
    std::string mine = dir + "/" + std::to_string(::getpid());
    create_file(mine);
    if (count_entries(dir) > max) append_line(dir + "/../over", std::to_string(::getpid()));
    sleep_seconds(0.05);  // widens the overlap a broken limit would show; not an outcome
    ::unlink(mine.c_str());
    return 0;
  }
  return -1;
}

#ifdef POOLS_TEST_PARENT

std::size_t line_count(const std::string& path) {
  std::string text = read_file(path);
  std::size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

pools::PoolBase& pool_of_kind(const std::string& kind, std::size_t size = 2) {
  if (kind == "process") return pools::get_process_pool("parent-process", size);
  if (kind == "thread") return pools::get_thread_pool("parent-thread", size);
  if (kind == "serial") return pools::get_serial_pool("parent-serial");
  die("unknown pool kind " + kind);
}

// Waits until every task finished; a signal still gets through (pools' waits
// pass through a call ThreadSanitizer intercepts, see src/core/futex.cpp).
void wait_interruptibly(const std::vector<pools::ProcessTask>& tasks) {
  for (auto& t : tasks) t.join();
}

volatile sig_atomic_t got_sigint = 0;
void on_sigint(int) { got_sigint = 1; }

// Waits until `record` has n lines; dies when the commands that write it ended first.
void wait_for_record(const std::string& record, std::size_t n,
                     const std::vector<pools::ProcessTask>& tasks) {
  for (int i = 0; i < 120 * 200 && line_count(record) < n; ++i) {
    for (auto& t : tasks)
      if (t.iscompleted()) die("a sleeper ended early: " + t.result().stderr_text);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (line_count(record) < n) die("the sleepers did not start");
}

int run_parent_mode(const std::string& mode, int argc, char** argv) {
  auto arg = [&](int i) -> std::string {
    if (i >= argc) die("mode " + mode + " needs argument " + std::to_string(i));
    return argv[i];
  };
  if (mode == "interrupt") {
    std::string helper = arg(3), record = arg(4);
    long n = number(arg(5).c_str());
    bool ignoring = argc > 6 && std::strcmp(argv[6], "ignore-term") == 0;
    auto& pool = pool_of_kind(arg(2), static_cast<std::size_t>(n));
    pools::ProcessOptions options;
    options.kill_grace = std::chrono::milliseconds(500);
    std::vector<pools::ProcessTask> tasks;
    for (long i = 0; i < n; ++i) {
      std::vector<std::string> cmd{helper, "grandchild", record, "300"};
      if (ignoring) cmd.push_back("ignore-term");
      tasks.push_back(pool.add_process("sleeper " + std::to_string(i), cmd, options));
    }
    // Every command runs once its line is in the record (max_running == n).
    wait_for_record(record, static_cast<std::size_t>(n), tasks);
    out("ready");
    wait_interruptibly(tasks);
    out("not interrupted");
    return 1;
  }
  if (mode == "keep-disposition") {
    std::string how = arg(2), helper = arg(3), record = arg(4), stop = arg(5);
    if (how == "ignore") {
      ::signal(SIGINT, SIG_IGN);
    } else {
      struct sigaction sa {};
      sa.sa_handler = on_sigint;
      sigemptyset(&sa.sa_mask);
      ::sigaction(SIGINT, &sa, nullptr);
    }
    auto& pool = pools::get_process_pool("keeping", 1);
    std::vector<pools::ProcessTask> tasks{
        pool.add_process("sleeper", {helper, "grandchild", record, "300"})};
    wait_for_record(record, 1, tasks);
    out("ready");
    while (!exists(stop) && !got_sigint) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (got_sigint) out("own handler ran");
    out(tasks[0].iscompleted() ? "command was stopped" : "command still running");
    tasks[0].cancel();
    tasks[0].join();
    return 0;
  }
  if (mode == "running-at-exit") {
    std::string file = arg(2);
    (void)pools::get_process_pool("at-exit", 1)
        .add_process("late writer", "sleep 0.3; echo done > '" + file + "'");
    out("main returns");
    return 0;
  }
  if (mode == "unobserved" || mode == "unobserved-shutdown") {
    auto& pool = pool_of_kind(arg(2));
    auto doomed = pool.add_process("doomed-command", "echo boom-77 >&2; exit 7");
    auto fine = pool.add_process("fine-command", std::vector<std::string>{"true"});
    if (mode == "unobserved") return 0;
    pool.shutdown();
    write_all(2, "marker:after-shutdown\n");
    return doomed.iscompleted() && fine.iscompleted() ? 0 : 1;
  }
  return -1;
}

#endif

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("usage: process_helper MODE [ARGS]");
  std::string mode = argv[1];
#ifdef POOLS_TEST_PARENT
  pools::init(argc, argv);
  int parent_rc = run_parent_mode(mode, argc, argv);
  if (parent_rc >= 0) return parent_rc;
#endif
  int rc = run_helper_mode(mode, argc, argv);
  if (rc < 0) die("unknown mode '" + mode + "'");
  return rc;
}
