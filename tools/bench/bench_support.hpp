// What the benchmarks share: timing, medians, the machine's load, and running
// a peer program to read what it printed.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace bench {

using Clock = std::chrono::steady_clock;

/// Prints "<program>: what" on stderr and exits 1 (a benchmark that cannot
/// measure, or measured a wrong result).
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}

template <class F>
double time_s(F&& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// /proc/loadavg as it is: the 1, 5 and 15 minute load averages, then
/// runnable/all threads.
inline std::string load_average() {
  std::string line;
  std::getline(std::ifstream("/proc/loadavg") >> std::ws, line);
  return line;
}

/// Runs args (args[0] a path) with `env` (default: ours), stderr shared with
/// ours; returns its stdout, or fails naming `who` when it does not exit 0.
inline std::string run_capture(const std::string& who, std::vector<std::string> args,
                               char** env = environ) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) fail("pipe2: " + std::string(std::strerror(errno)));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), env);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    fail(who + ": cannot start " + args[0] + ": " + std::strerror(rc));
  }
  std::string out;
  char buf[4096];
  for (ssize_t k; (k = read(p[0], buf, sizeof buf)) != 0;) {
    if (k > 0) out.append(buf, static_cast<std::size_t>(k));
    else if (errno != EINTR) break;
  }
  close(p[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail(who + ": " + args[0] + " failed (status " + std::to_string(status) + "), printed: " + out);
  return out;
}

/// The value of `key=` in text made of key=value fields ("" when absent).
inline std::string field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  for (std::string f; in >> f;)
    if (f.rfind(key + "=", 0) == 0) return f.substr(key.size() + 1);
  return {};
}

/// The number in field `key`, or fail naming `who`.
inline double number_field(const std::string& who, const std::string& text, const std::string& key) {
  const std::string s = field(text, key);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0') fail(who + ": no " + key + "= in its output: " + text);
  return v;
}

inline std::string self_exe() {
  char buf[4096];
  const ssize_t len = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (len <= 0) fail("readlink /proc/self/exe: " + std::string(std::strerror(errno)));
  return std::string(buf, static_cast<std::size_t>(len));
}

/// Debian's python3 when it is there, else python3 on PATH (empty: none).
inline std::string find_python3() {
  if (access("/usr/bin/python3", X_OK) == 0) return "/usr/bin/python3";
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && access((dir + "/python3").c_str(), X_OK) == 0) return dir + "/python3";
  return {};
}

}  // namespace bench
