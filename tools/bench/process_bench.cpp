// Process benchmark (issue 3): the process pool and pools-run against xargs -P,
// GNU parallel and "the limit", a minimal loop of vfork + execve + waitpid from
// J threads. Two workloads, 1,000 `/bin/true` and 1,000 `echo N` (stdout
// captured and checked), at concurrency 2 and 8, alternating rounds. Results
// and the command line are in docs/performance.md.
//
//   process_bench [--rounds N] [--count N] [--parallel-count N] [--jobs 2,8]
//                 [--only true|echo] [--pools-run PATH]
//                 [--skip limit,pool,pools-run,xargs,parallel]
//
// The pool and the limit run inside this process; pools-run, xargs and
// parallel are external programs timed as the wall clock of one whole run
// (their start-up included). Every run checks its output (each number exactly
// once for echo, nothing for true) and exit status; a mismatch exits with 1.
#include <pools/pools.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

enum class Workload { True, Echo };
const char* workload_name(Workload w) { return w == Workload::True ? "true" : "echo"; }

struct Options {
  int rounds = 5;
  int count = 1000;
  int parallel_count = 1000;  // GNU parallel is slow: it may run fewer commands
  std::vector<int> jobs{2, 8};
  std::string only;           // empty: both workloads
  std::string pools_run;      // empty: next to this program in the build tree
  std::vector<std::string> skip;  // contenders not to run
};
Options opt;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "process_bench: %s\n", what.c_str());
  std::exit(1);
}

[[noreturn]] void fail_errno(const char* what) { fail(std::string(what) + ": " + std::strerror(errno)); }

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string load_average() {
  std::ifstream la("/proc/loadavg");
  std::string l1, l5, l15;
  la >> l1 >> l5 >> l15;
  return l1 + " " + l5 + " " + l15;
}

std::string status_text(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// The output of n commands, in any order: echo must have printed each of
// 1..n exactly once, one per line; true nothing at all.
void check_output(const std::string& who, Workload w, const std::string& out, int n) {
  if (w == Workload::True) {
    if (!out.empty()) fail(who + ": /bin/true printed \"" + out.substr(0, 80) + "\"");
    return;
  }
  std::vector<char> seen(static_cast<std::size_t>(n) + 1, 0);
  std::istringstream in(out);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    char* end = nullptr;
    const long v = std::strtol(line.c_str(), &end, 10);
    if (line.empty() || *end != '\0' || v < 1 || v > n || seen[static_cast<std::size_t>(v)])
      fail(who + ": unexpected or repeated output line \"" + line + "\"");
    seen[static_cast<std::size_t>(v)] = 1;
  }
  if (lines != n) fail(who + ": " + std::to_string(lines) + " output lines, expected " + std::to_string(n));
}

// Reads fd to EOF and closes it.
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t k = read(fd, buf, sizeof buf);
    if (k > 0) {
      out.append(buf, static_cast<std::size_t>(k));
    } else if (k == 0) {
      break;
    } else if (errno != EINTR) {
      fail_errno("read");
    }
  }
  close(fd);
  return out;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) fail_errno("waitpid");
  return status;
}

std::vector<char*> c_argv(std::vector<std::string>& args) {
  std::vector<char*> v;
  for (auto& a : args) v.push_back(a.data());
  v.push_back(nullptr);
  return v;
}

std::vector<std::string> numbers(int n) {
  std::vector<std::string> v;
  for (int i = 1; i <= n; ++i) v.push_back(std::to_string(i));
  return v;
}

// The command each contender runs, as an argv prefix; the number follows.
std::vector<std::string> command(Workload w) {
  return w == Workload::True ? std::vector<std::string>{"/bin/true"} : std::vector<std::string>{"echo"};
}

// ---- external programs: posix_spawnp, stdin from a file, stdout captured -------

struct Finished {
  int status;
  std::string out;
};

// A new empty file in /tmp, removed at exit.
std::string temp_file() {
  static std::vector<std::string> made;
  char tmpl[] = "/tmp/process_bench.XXXXXX";
  const int fd = mkstemp(tmpl);
  if (fd < 0) fail_errno("mkstemp");
  close(fd);
  if (made.empty())
    std::atexit([] {
      for (auto& f : made) unlink(f.c_str());
    });
  made.push_back(tmpl);
  return tmpl;
}

// The stderr of the external programs (pools-run prints a summary there):
// shown only when a run fails.
const std::string& stderr_file() {
  static const std::string path = temp_file();
  return path;
}

Finished run_program(std::vector<std::string> args, const std::string& stdin_path) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) fail_errno("pipe2");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, stdin_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, stderr_file().c_str(), O_WRONLY | O_TRUNC, 0);
  auto argv = c_argv(args);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (rc != 0) fail(args[0] + ": cannot start: " + std::strerror(rc));
  std::string out = read_all(p[0]);
  return {wait_for(pid), std::move(out)};
}

// Runs `args` (a whole batch of n commands), checks it, returns seconds.
double time_program(const std::string& who, Workload w, int n, std::vector<std::string> args,
                    const std::string& stdin_path = "/dev/null") {
  const auto t0 = Clock::now();
  Finished f = run_program(std::move(args), stdin_path);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (f.status != 0) {
    std::ifstream err(stderr_file());
    std::stringstream text;
    text << err.rdbuf();
    fail(who + ": " + status_text(f.status) + "; its stderr:\n" + text.str());
  }
  check_output(who, w, f.out, n);
  return s;
}

// Input for xargs: the numbers 1..n, one a line, in a temporary file.
const std::string& numbers_file(int n) {
  static const std::string path = temp_file();
  static int written = -1;
  if (written != n) {
    std::ofstream f(path, std::ios::trunc);
    for (auto& s : numbers(n)) f << s << '\n';
    if (!f.flush()) fail("cannot write " + path);
    written = n;
  }
  return path;
}

double run_xargs(Workload w, int j, int n) {
  std::vector<std::string> args{"xargs", "-P", std::to_string(j), "-n", "1"};
  for (auto& a : command(w)) args.push_back(a);
  return time_program("xargs", w, n, std::move(args), numbers_file(n));
}

// GNU parallel syntax, shared by parallel and pools-run: prog -j J cmd ::: 1 .. n
double run_parallel_syntax(const std::string& who, const std::string& prog, Workload w, int j, int n) {
  std::vector<std::string> args{prog, "-j", std::to_string(j)};
  for (auto& a : command(w)) args.push_back(a);
  args.push_back(":::");
  for (auto& s : numbers(n)) args.push_back(std::move(s));
  return time_program(who, w, n, std::move(args));
}

// ---- the limit: vfork + execve + waitpid from J threads --------------------------

// The child only redirects and execs (all it may do after vfork). Kept out of
// line so the parent's locals are not at the mercy of the shared stack.
[[gnu::noinline]] pid_t vfork_exec(const char* path, char* const argv[], int in_fd, int out_fd) {
  const pid_t pid = vfork();
  if (pid == 0) {
    dup2(in_fd, 0);
    dup2(out_fd, 1);
    execve(path, argv, environ);
    _exit(127);
  }
  return pid;
}

double run_limit(Workload w, int j, int n) {
  const int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) fail_errno("/dev/null");
  // execve does not search PATH: the limit names the program's file.
  const char* path = w == Workload::True ? "/bin/true" : "/bin/echo";
  std::atomic<int> next{1};
  std::atomic<bool> bad{false};
  std::string bad_text;  // written by the first thread that sets bad
  auto worker = [&] {
    std::string prog = path;
    for (int i; (i = next.fetch_add(1, std::memory_order_relaxed)) <= n && !bad.load();) {
      std::string num = std::to_string(i);
      char* argv[] = {prog.data(), num.data(), nullptr};
      int p[2] = {-1, devnull};
      if (w == Workload::Echo && pipe2(p, O_CLOEXEC) != 0) fail_errno("pipe2");
      const pid_t pid = vfork_exec(path, argv, devnull, p[1]);
      if (pid < 0) fail_errno("vfork");
      std::string out;
      if (w == Workload::Echo) {
        close(p[1]);
        out = read_all(p[0]);
      }
      const int status = wait_for(pid);
      const std::string want = w == Workload::Echo ? num + "\n" : "";
      if ((status != 0 || out != want) && !bad.exchange(true))
        bad_text = std::string(path) + " " + num + ": " + status_text(status) + ", printed \"" + out + "\"";
    }
  };
  const auto t0 = Clock::now();
  {
    std::vector<std::jthread> threads;
    for (int k = 0; k < j; ++k) threads.emplace_back(worker);
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  close(devnull);
  if (bad) fail("limit: " + bad_text);
  return s;
}

// ---- the process pool --------------------------------------------------------------

pools::PoolBase& bench_pool(int j) {
  return pools::get_process_pool("bench-j" + std::to_string(j), static_cast<std::size_t>(j));
}

double run_pool(Workload w, int j, int n) {
  auto& pool = bench_pool(j);  // created (and its threads started) by the warm-up
  const auto nums = numbers(n);
  std::vector<pools::ProcessTask> tasks;
  tasks.reserve(static_cast<std::size_t>(n));
  const auto t0 = Clock::now();
  for (auto& num : nums) {
    auto argv = command(w);
    argv.push_back(num);
    tasks.push_back(pool.add_process("", std::move(argv)));
  }
  std::string out;
  for (auto& t : tasks) out += t.wait_return();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  check_output("pool", w, out, n);
  return s;
}

// ---- alternating rounds ---------------------------------------------------------

struct Contender {
  std::string name;
  std::function<double(Workload, int, int)> run;  // seconds for n commands
  int count;                                      // commands per run
  std::string missing;                            // non-empty: not available, why
};

// Median commands/s per contender, per workload and concurrency.
struct Cell {
  std::vector<double> rates;
};

std::string find_pools_run(const char* argv0) {
  if (!opt.pools_run.empty()) return opt.pools_run;
  char buf[4096];
  const ssize_t len = readlink("/proc/self/exe", buf, sizeof buf - 1);
  std::string self = len > 0 ? std::string(buf, static_cast<std::size_t>(len)) : std::string(argv0);
  const auto slash = self.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : self.substr(0, slash);
  return dir + "/../pools_run/pools-run";  // the build tree: tools/bench -> tools/pools_run
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> v;
  std::istringstream in(s);
  std::string part;
  while (std::getline(in, part, sep)) v.push_back(part);
  return v;
}

bool on_path(const std::string& prog) {
  const char* path = std::getenv("PATH");
  for (auto& d : split(path ? path : "", ':'))
    if (access((d + "/" + prog).c_str(), X_OK) == 0) return true;
  return false;
}

std::vector<Contender> contenders(const char* argv0) {
  const std::string pr = find_pools_run(argv0);
  std::vector<Contender> cs;
  cs.push_back({"limit", run_limit, opt.count, ""});
  cs.push_back({"pool", run_pool, opt.count, ""});
  cs.push_back({"pools-run", [pr](Workload w, int j, int n) { return run_parallel_syntax("pools-run", pr, w, j, n); },
                opt.count,
                access(pr.c_str(), X_OK) == 0 ? "" : "not available (no executable " + pr + "; pass --pools-run PATH)"});
  cs.push_back({"xargs", run_xargs, opt.count, on_path("xargs") ? "" : "not available (xargs not on PATH)"});
  cs.push_back({"parallel", [](Workload w, int j, int n) { return run_parallel_syntax("parallel", "parallel", w, j, n); },
                opt.parallel_count, on_path("parallel") ? "" : "not available (GNU parallel not on PATH)"});
  for (auto& c : cs)
    if (std::find(opt.skip.begin(), opt.skip.end(), c.name) != opt.skip.end()) c.missing = "skipped (--skip)";
  return cs;
}

struct Goal {
  const char* label;
  std::size_t num, den;  // contender indexes
  double at_least;
};
// Indexes into contenders(): limit 0, pool 1, pools-run 2, xargs 3, parallel 4.
const Goal goals[] = {{"pool/limit", 1, 0, 0.9}, {"pool/xargs", 1, 3, 1.5}, {"pools-run/parallel", 2, 4, 5.0}};
// Not a goal: how far above xargs the machine's limit itself is (a pool
// cannot beat the limit, so this bounds pool/xargs).
const Goal reference{"limit/xargs", 0, 3, 0};

struct Config {
  Workload w;
  int j;
  std::vector<Cell> cells;  // one per contender
};

// A goal's ratio in one round, or (round -1) the median of the rounds' ratios:
// the two contenders of one round ran seconds apart, under the same load.
std::optional<double> ratio(const Config& c, const std::vector<Contender>& cs, const Goal& g, int round) {
  if (!cs[g.num].missing.empty() || !cs[g.den].missing.empty()) return std::nullopt;
  const auto& num = c.cells[g.num].rates;
  const auto& den = c.cells[g.den].rates;
  if (round >= 0) return num[static_cast<std::size_t>(round)] / den[static_cast<std::size_t>(round)];
  std::vector<double> q;
  for (std::size_t r = 0; r < num.size(); ++r) q.push_back(num[r] / den[r]);
  return median(q);
}

void print_ratios(const Config& c, const std::vector<Contender>& cs, int round) {
  for (auto& g : goals)
    if (auto q = ratio(c, cs, g, round)) std::printf("  %s %.2f", g.label, *q);
  if (auto q = ratio(c, cs, reference, round)) std::printf("  (%s %.2f)", reference.label, *q);
}

void usage() {
  std::fprintf(stderr,
               "usage: process_bench [--rounds N] [--count N] [--parallel-count N] [--jobs 2,8] [--only true|echo]\n"
               "                     [--pools-run PATH] [--skip limit,pool,pools-run,xargs,parallel]\n");
}

void parse_args(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    auto count = [&] { return std::max(1, std::atoi(value().c_str())); };
    if (a == "--rounds") {
      opt.rounds = count();
    } else if (a == "--count") {
      opt.count = count();
    } else if (a == "--parallel-count") {
      opt.parallel_count = count();
    } else if (a == "--jobs") {
      opt.jobs.clear();
      for (auto& part : split(value(), ','))
        if (const int j = std::atoi(part.c_str()); j > 0) opt.jobs.push_back(j);
    } else if (a == "--only") {
      opt.only = value();
    } else if (a == "--pools-run") {
      opt.pools_run = value();
    } else if (a == "--skip") {
      opt.skip = split(value(), ',');
    } else {
      usage();
      std::exit(a == "--help" || a == "-h" ? 0 : 2);
    }
  }
  if (opt.jobs.empty() || (!opt.only.empty() && opt.only != "true" && opt.only != "echo")) {
    usage();
    std::exit(2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  pools::init(argc, argv);
  parse_args(argc, argv);
  std::vector<Contender> cs = contenders(argv[0]);
  // --parallel-count above --count would make parallel's figure the larger batch.
  cs[4].count = std::min(cs[4].count, opt.count);

  std::vector<Config> configs;
  for (Workload w : {Workload::True, Workload::Echo})
    if (opt.only.empty() || opt.only == workload_name(w))
      for (int j : opt.jobs) configs.push_back({w, j, std::vector<Cell>(cs.size())});

  std::printf("process_bench: %d rounds, %d commands per run (GNU parallel: %d), concurrency", opt.rounds,
              opt.count, cs[4].count);
  for (int j : opt.jobs) std::printf(" %d", j);
  std::printf(", %u hardware threads, load average %s\n", std::thread::hardware_concurrency(),
              load_average().c_str());
  std::printf("workloads: true = /bin/true N; echo = echo N, stdout captured and checked (N = 1..count)\n");
  for (auto& c : cs)
    if (!c.missing.empty()) std::printf("%s: %s\n", c.name.c_str(), c.missing.c_str());
  if (cs[4].count != opt.count && cs[4].missing.empty())
    std::printf("parallel runs %d commands per run, not %d: its rate is from the smaller batch "
                "(its start-up weighs more)\n",
                cs[4].count, opt.count);
  std::fflush(stdout);

  try {
    // Warm-up, untimed: page cache, the pools' threads, parallel's Perl.
    for (auto& cfg : configs)
      for (auto& c : cs)
        if (c.missing.empty()) (void)c.run(cfg.w, cfg.j, std::min(c.count, 20));

    // Rounds: every configuration, the contenders in an order that rotates
    // each round, so none always runs first (or right after the slow one).
    for (int r = 0; r < opt.rounds; ++r) {
      for (auto& cfg : configs) {
        for (std::size_t k = 0; k < cs.size(); ++k) {
          const std::size_t idx = (k + static_cast<std::size_t>(r)) % cs.size();
          auto& c = cs[idx];
          if (!c.missing.empty()) continue;
          cfg.cells[idx].rates.push_back(c.count / c.run(cfg.w, cfg.j, c.count));
        }
        std::printf("round %d  %-4s -j %d:", r + 1, workload_name(cfg.w), cfg.j);
        for (std::size_t k = 0; k < cs.size(); ++k)
          if (cs[k].missing.empty()) std::printf("  %s %.0f/s", cs[k].name.c_str(), cfg.cells[k].rates.back());
        print_ratios(cfg, cs, r);
        std::printf("\n");
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    fail(e.what());
  }

  std::printf("\n== summary: median commands/s over %d rounds; ratios: median of the rounds' ratios ==\n",
              opt.rounds);
  std::printf("%-8s %3s", "workload", "J");
  for (auto& c : cs) std::printf(" %10s", c.name.c_str());
  for (auto& g : goals) std::printf("  %s (goal >= %.1f)", g.label, g.at_least);
  std::printf("  %s (reference)\n", reference.label);
  bool all_met = true;
  for (auto& cfg : configs) {
    std::printf("%-8s %3d", workload_name(cfg.w), cfg.j);
    for (std::size_t k = 0; k < cs.size(); ++k) {
      if (cs[k].missing.empty())
        std::printf(" %10.0f", median(cfg.cells[k].rates));
      else
        std::printf(" %10s", "n/a");
    }
    for (auto& g : goals) {
      const int width = static_cast<int>(std::strlen(g.label)) + 14;
      if (auto q = ratio(cfg, cs, g, -1)) {
        all_met = all_met && *q >= g.at_least;
        char cell[64];
        std::snprintf(cell, sizeof cell, "%.2f %s", *q, *q >= g.at_least ? "met" : "NOT met");
        std::printf("  %-*s", width, cell);
      } else {
        all_met = false;
        std::printf("  %-*s", width, "n/a");
      }
    }
    if (auto q = ratio(cfg, cs, reference, -1)) std::printf("  %.2f", *q);
    else std::printf("  n/a");
    std::printf("\n");
  }
  std::printf("%s\n", all_met ? "all goals met" : "not all goals met (see above)");
  std::printf("load average at the end: %s\n", load_average().c_str());
  return 0;
}
