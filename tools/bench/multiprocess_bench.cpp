// Multiprocess benchmark: the multiprocess pool against Python's
// concurrent.futures.ProcessPoolExecutor and multiprocessing.Pool, 2 worker
// processes each, alternating rounds. Results and the command line are in
// docs/performance.md ("Multiprocess pool").
//
//   multiprocess_bench [--rounds N] [--tasks N] [--roundtrips N] [--python PATH]
//                      [--script PATH] [--only throughput|roundtrip|ready|bulk]
//
// Each round measures, the contenders' order rotating from round to round:
//   throughput  --tasks calls of square(i), one add_task (submit / apply_async)
//               per call, every result collected and checked;
//   round trip  one call submitted and waited for, --roundtrips times: the mean;
//   ready       from asking for a new pool to the first result of a call. pools
//               twice: in this process, where pools::init already started the
//               fork server, and in a child process of this program run with
//               POOLS_FORK_SERVER=lazy (--startup-only), where the pool starts it;
//   bulk        (information) the same calls through add_tasks with its default
//               chunking, against multiprocessing.Pool.map with its default
//               chunksize.
// The Python side is tools/bench/py_pool_bench.py (its path is compiled in,
// PY_BENCH_SCRIPT), run with --python (default: Debian's /usr/bin/python3, else python3 on PATH; when
// there is none, the Python peers are skipped with a note). Pools used for
// throughput, round trip and bulk are created and warmed up outside the timed
// region, on both sides. A wrong result exits with status 1.
#include <pools/pools.hpp>

#include "bench_support.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef PY_BENCH_SCRIPT
#define PY_BENCH_SCRIPT "py_pool_bench.py"
#endif

extern char** environ;

namespace {

using namespace bench;

constexpr std::size_t num_workers = 2;

// The goals of the issue.
constexpr double goal_ratio_pool = 0.1;   // pools' time per task / multiprocessing.Pool's
constexpr double goal_roundtrip_us = 30;  // one call there and back
constexpr double goal_ready_ms = 20;      // a new pool's first result

struct Options {
  int rounds = 5;
  int tasks = 20'000;
  int roundtrips = 2'000;
  std::string python;  // empty: python3 on PATH
  std::string script = PY_BENCH_SCRIPT;
  std::string only;           // one measurement alone (for a profiler); empty: all
  bool startup_only = false;  // the child run: print one ready time, exit
};
Options opt;

int square(int x) { return x * x; }
int trivial() { return 1; }

using Clock = std::chrono::steady_clock;

std::int64_t sum_of_squares(int n) {
  std::int64_t s = 0;
  for (std::int64_t i = 0; i < n; ++i) s += i * i;
  return s;
}

// ---- child processes: the Python peers and this program's lazy run ---------------

std::string python_version;  // from the script's first answer

// One measurement by py_pool_bench.py: seconds (mean seconds for roundtrip).
double run_python(const std::string& peer, const std::string& mode, int tasks) {
  const std::string out =
      run_capture("python " + peer + " " + mode,
                  {opt.python, opt.script, "--peer", peer, "--tasks", std::to_string(tasks),
                   "--workers", std::to_string(num_workers), "--mode", mode},
                  environ);
  if (python_version.empty()) python_version = field(out, "python");
  return number_field("python " + peer + " " + mode, out, "seconds");
}

// This program again, with POOLS_FORK_SERVER=lazy and --startup-only: the
// time to a new pool's first result when the pool has to start the fork
// server itself.
double run_lazy_startup() {
  std::vector<std::string> env_strings{"POOLS_FORK_SERVER=lazy"};
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "POOLS_FORK_SERVER=", 18) != 0) env_strings.push_back(*e);
  std::vector<char*> env;
  for (auto& s : env_strings) env.push_back(s.data());
  env.push_back(nullptr);
  const std::string out = run_capture("pools (lazy)", {self_exe(), "--startup-only"}, env.data());
  return number_field("pools (lazy)", out, "seconds");
}

// ---- pools ---------------------------------------------------------------------------

pools::PoolBase& bench_pool() { return pools::get_multiprocess_pool("bench", num_workers); }

double throughput_pools(int n) {
  auto& pool = bench_pool();
  std::vector<pools::Task<int>> tasks;
  tasks.reserve(static_cast<std::size_t>(n));
  std::int64_t sum = 0;
  const double s = time_s([&] {
    for (int i = 0; i < n; ++i) tasks.push_back(pool.add_task("", square, i));
    for (auto& t : tasks) sum += t.wait_return();
  });
  if (sum != sum_of_squares(n)) fail("pools throughput: wrong sum of squares");
  return s;
}

double roundtrip_pools(int n) {
  auto& pool = bench_pool();
  bool ok = true;
  const double s = time_s([&] {
    for (int i = 0; i < n; ++i) ok = pool.add_task("", square, i).wait_return() == i * i && ok;
  });
  if (!ok) fail("pools round trip: wrong square");
  return s / n;
}

double bulk_pools(int n) {
  auto& pool = bench_pool();
  std::vector<int> items(static_cast<std::size_t>(n));
  std::iota(items.begin(), items.end(), 0);
  std::int64_t sum = 0;
  const double s = time_s([&] {
    auto tasks = pool.add_tasks("", square, items);  // default chunking
    for (auto& t : tasks) sum += t.wait_return();
  });
  if (sum != sum_of_squares(n)) fail("pools add_tasks: wrong sum of squares");
  return s;
}

// A new pool (a name never used before) to its first result; shut down after.
double ready_pools() {
  static int made = 0;
  const std::string name = "ready-" + std::to_string(++made);
  int got = 0;
  const double s = time_s([&] {
    auto& pool = pools::get_multiprocess_pool(name, num_workers);
    got = pool.add_task("", trivial).wait_return();
  });
  if (got != 1) fail("pools ready: wrong result");
  pools::find_pool(name).shutdown();
  return s;
}

// ---- rounds ---------------------------------------------------------------------------

struct Contender {
  std::string name;
  std::function<double()> run;  // seconds (per call for the round trip)
  std::vector<double> times;
};

struct Measure {
  std::string title;
  std::string unit;  // "s", "us" or "ms": how a time is printed
  double per = 1;    // divide by this for "per task" (throughput), else 1
  std::vector<Contender> cs;
};

double scaled(const Measure& m, double seconds) {
  return m.unit == "us" ? seconds * 1e6 : m.unit == "ms" ? seconds * 1e3 : seconds;
}

// The order rotates each round, so that no contender always runs first.
void run_round(Measure& m, int round) {
  const std::size_t n = m.cs.size();
  for (std::size_t k = 0; k < n; ++k) {
    Contender& c = m.cs[(k + static_cast<std::size_t>(round)) % n];
    c.times.push_back(c.run());
  }
  std::printf("round %d  %-10s", round + 1, m.title.c_str());
  for (auto& c : m.cs) {
    std::printf("  %s %.3f %s", c.name.c_str(), scaled(m, c.times.back()), m.unit.c_str());
    if (m.per > 1) std::printf(" (%.1f us/task)", c.times.back() / m.per * 1e6);
  }
  std::printf("\n");
  std::fflush(stdout);
}

const Contender* find(const Measure& m, const std::string& name) {
  for (auto& c : m.cs)
    if (c.name == name) return &c;
  return nullptr;
}

// The median of the rounds' ratios a/b (both ran seconds apart, under the same load).
std::optional<double> ratio(const Measure& m, const std::string& a, const std::string& b) {
  const Contender *x = find(m, a), *y = find(m, b);
  if (!x || !y) return std::nullopt;
  std::vector<double> q;
  for (std::size_t r = 0; r < x->times.size(); ++r) q.push_back(x->times[r] / y->times[r]);
  return median(q);
}

bool selected(const Measure& m) {
  return opt.only.empty() || opt.only == m.title || (opt.only == "roundtrip" && m.title == "round trip");
}

// The median of a pools contender (k-th), scaled; none when it did not run.
std::optional<double> pools_median(const Measure& m, double scale, std::size_t k = 0) {
  if (m.cs[k].times.empty()) return std::nullopt;
  return median(m.cs[k].times) * scale;
}

bool all_met = true;
void goal_line(const char* what, std::optional<double> value, const char* unit, double goal) {
  if (!value) {
    std::printf("  %-44s n/a (not run)          goal <= %g%s  MISS\n", what, goal, unit);
    all_met = false;
    return;
  }
  const bool met = *value <= goal;
  all_met = all_met && met;
  char cell[32];
  std::snprintf(cell, sizeof cell, "%.3f%s", *value, unit);
  std::printf("  %-44s %-22s goal <= %g%s  %s\n", what, cell, goal, unit, met ? "PASS" : "MISS");
}

void usage() {
  std::fprintf(stderr,
               "usage: multiprocess_bench [--rounds N] [--tasks N] [--roundtrips N] [--python PATH]\n"
               "                          [--script PATH] [--only throughput|roundtrip|ready|bulk]\n");
}

void parse_args(int argc, char** argv) {
  const struct {
    const char* name;
    int* count;
    std::string* text;
  } options[] = {{"--rounds", &opt.rounds, nullptr},      {"--tasks", &opt.tasks, nullptr},
                 {"--roundtrips", &opt.roundtrips, nullptr}, {"--python", nullptr, &opt.python},
                 {"--script", nullptr, &opt.script},
                 {"--only", nullptr, &opt.only}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--startup-only") {
      opt.startup_only = true;
      continue;
    }
    auto o = std::find_if(std::begin(options), std::end(options), [&](auto& x) { return a == x.name; });
    if (o == std::end(options) || i + 1 >= argc) {
      usage();
      std::exit(a == "--help" || a == "-h" ? 0 : 2);
    }
    const char* v = argv[++i];
    if (o->count) *o->count = std::max(1, std::atoi(v));
    else *o->text = v;
  }
  if (!opt.only.empty() && opt.only != "throughput" && opt.only != "roundtrip" &&
      opt.only != "ready" && opt.only != "bulk") {
    usage();
    std::exit(2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const auto before_init = Clock::now();
  pools::init(argc, argv);
  const double init_s = std::chrono::duration<double>(Clock::now() - before_init).count();
  parse_args(argc, argv);

  if (opt.startup_only) {  // the lazy child: one figure on stdout
    std::printf("seconds=%.9f\n", ready_pools());
    return 0;
  }

  std::string python_note;
  if (opt.python.empty()) opt.python = find_python3();
  if (opt.python.empty())
    python_note = "no python3 on PATH (give --python PATH): the Python peers are skipped";
  else if (access(opt.python.c_str(), X_OK) != 0)
    python_note = opt.python + " is not executable: the Python peers are skipped";
  else if (access(opt.script.c_str(), R_OK) != 0)
    python_note = opt.script + " not found (give --script PATH): the Python peers are skipped";
  const bool py = python_note.empty();

  std::printf("multiprocess_bench: %d rounds, %d worker processes, %d calls per throughput run, "
              "%d round trips, %u hardware threads, load average %s\n",
              opt.rounds, static_cast<int>(num_workers), opt.tasks, opt.roundtrips,
              std::thread::hardware_concurrency(), load_average().c_str());
  std::printf("pools::init started the fork server before main's work (%.2f ms): 'pools' ready "
              "times exclude it; 'pools-lazy' is this program run again with "
              "POOLS_FORK_SERVER=lazy, where the first pool starts it\n",
              init_s * 1e3);
  if (py) {
    std::printf("python: %s, script %s\n", opt.python.c_str(), opt.script.c_str());
  } else {
    std::printf("python: %s\n", python_note.c_str());
  }

  const int n = opt.tasks, rt = opt.roundtrips;
  Measure thr{"throughput", "ms", static_cast<double>(n), {{"pools", [n] { return throughput_pools(n); }, {}}}};
  Measure trip{"round trip", "us", 1, {{"pools", [rt] { return roundtrip_pools(rt); }, {}}}};
  Measure ready{"ready", "ms", 1, {{"pools", ready_pools, {}}, {"pools-lazy", run_lazy_startup, {}}}};
  Measure bulk{"bulk", "ms", static_cast<double>(n), {{"pools", [n] { return bulk_pools(n); }, {}}}};
  if (py) {
    for (const char* peer : {"executor", "pool"}) {
      const std::string p = peer;
      thr.cs.push_back({p, [p, n] { return run_python(p, "throughput", n); }, {}});
      trip.cs.push_back({p, [p, rt] { return run_python(p, "roundtrip", rt); }, {}});
      ready.cs.push_back({p, [p] { return run_python(p, "startup", 1); }, {}});
    }
    bulk.cs.push_back({"pool.map", [n] { return run_python("pool", "map", n); }, {}});
  }

  try {
    // Warm-up, untimed: the bench pool's workers, the page cache, Python's imports.
    (void)throughput_pools(std::min(n, 1000));
    if (py) (void)run_python("pool", "throughput", 100);
    if (py) std::printf("python version: %s (start method fork)\n", python_version.c_str());
    std::fflush(stdout);
    for (int r = 0; r < opt.rounds; ++r)
      for (Measure* m : {&thr, &trip, &ready, &bulk})
        if (selected(*m)) run_round(*m, r);
  } catch (const std::exception& e) {
    fail(e.what());
  }

  std::printf("\n== medians over %d rounds; ratios: the median of the rounds' ratios ==\n",
              opt.rounds);
  for (const Measure* m : {&thr, &trip, &ready, &bulk}) {
    if (!selected(*m)) continue;
    std::printf("%-10s", m->title.c_str());
    for (auto& c : m->cs) {
      const double t = median(c.times);
      std::printf("  %s %.3f %s", c.name.c_str(), scaled(*m, t), m->unit.c_str());
      if (m->per > 1) std::printf(" (%.2f us/task)", t / m->per * 1e6);
    }
    std::printf("\n");
  }
  std::printf("ratios (pools / peer, time per task; lower is better):\n");
  if (auto q = ratio(thr, "pools", "executor")) std::printf("  throughput pools/executor %.3f\n", *q);
  if (auto q = ratio(trip, "pools", "pool")) std::printf("  round trip pools/pool %.3f\n", *q);
  if (auto q = ratio(trip, "pools", "executor")) std::printf("  round trip pools/executor %.3f\n", *q);
  if (auto q = ratio(bulk, "pools", "pool.map"))
    std::printf("  bulk pools add_tasks/Pool.map %.3f (information, no goal)\n", *q);
  std::printf("goals:\n");
  goal_line("throughput pools/pool (time per task)", ratio(thr, "pools", "pool"), "x", goal_ratio_pool);
  goal_line("round trip, pools (mean)", pools_median(trip, 1e6), " us", goal_roundtrip_us);
  goal_line("ready, pools (fork server started by init)", pools_median(ready, 1e3), " ms",
            goal_ready_ms);
  goal_line("ready, pools-lazy (pool starts fork server)", pools_median(ready, 1e3, 1), " ms",
            goal_ready_ms);
  std::printf("%s\n", all_met ? "all goals met" : "not all goals met (see above)");
  std::printf("load average at the end: %s\n", load_average().c_str());
  return 0;
}
