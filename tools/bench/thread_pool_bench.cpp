// Thread pool benchmark: pools' thread pool against Boost.Asio's thread_pool and
// oneTBB's task_group, 2 threads each, alternating rounds (issue 2, "Speed and
// memory"). Results and the command line are in docs/performance.md.
//
//   thread_pool_bench [--rounds N] [--only trivial|values|fib|memory]
//                     [--tasks N] [--fib N] [--no-tbb3] [--runtime NAME]
//
// Each workload is written against every runtime that can run it, one function
// per runtime, as Taskflow's benchmarks/ do. Every run checks its result and the
// program exits with status 1 on a mismatch.
#include <pools/pools.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t num_threads = 2;

struct Options {
  int rounds = 7;
  std::string only;          // empty: every workload
  std::int64_t tasks = 1'000'000;
  int fib_n = 25;
  bool tbb3 = true;          // also time a task_arena(3) (2 workers + the caller)
  std::string runtime;       // for profiling: run only this runtime (pools, tbb, asio)
};
Options opt;

[[noreturn]] void mismatch(const char* what, std::int64_t got, std::int64_t want) {
  std::fprintf(stderr, "thread_pool_bench: %s: got %lld, expected %lld\n", what,
               static_cast<long long>(got), static_cast<long long>(want));
  std::exit(1);
}

void check(const char* what, std::int64_t got, std::int64_t want) {
  if (got != want) mismatch(what, got, want);
}

using Clock = std::chrono::steady_clock;

template <class F>
double time_s(F&& f) {
  auto t0 = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---- the runtimes ------------------------------------------------------------

pools::PoolBase& pools_pool() { return pools::get_thread_pool("bench", num_threads); }

// oneTBB: task_arena(2) reserves one of its two slots for the calling thread, so
// it has one worker thread and the caller joins it inside tg.wait(). The global
// limit is raised so that task_arena(3) (two workers + the caller) really gets
// two workers on a 2-core machine (the default is cores - 1 workers).
tbb::global_control& tbb_limit() {
  static tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 3);
  return gc;
}
tbb::task_arena& tbb_arena(int concurrency) {
  static tbb::task_arena a2(2), a3(3);
  tbb_limit();
  auto& a = concurrency == 2 ? a2 : a3;
  a.initialize();
  return a;
}

// ---- workload 1: trivial tasks, handles dropped --------------------------------

double trivial_pools(std::int64_t n) {
  auto& pool = pools_pool();
  std::atomic<std::int64_t> count{0};
  double t = time_s([&] {
    for (std::int64_t i = 0; i < n; ++i)
      (void)pool.add_task("", [&count] { count.fetch_add(1, std::memory_order_relaxed); });
    pool.wait_completion();
  });
  check("trivial/pools: tasks run", count.load(), n);
  return t;
}

double trivial_asio(std::int64_t n) {
  boost::asio::thread_pool pool(num_threads);  // threads start outside the timing
  std::atomic<std::int64_t> count{0};
  double t = time_s([&] {
    for (std::int64_t i = 0; i < n; ++i)
      boost::asio::post(pool, [&count] { count.fetch_add(1, std::memory_order_relaxed); });
    pool.join();  // waits until the queue is empty, then stops the threads
  });
  check("trivial/asio: tasks run", count.load(), n);
  return t;
}

double trivial_tbb(std::int64_t n, int concurrency) {
  auto& arena = tbb_arena(concurrency);
  std::atomic<std::int64_t> count{0};
  double t = time_s([&] {
    arena.execute([&] {
      tbb::task_group tg;
      for (std::int64_t i = 0; i < n; ++i)
        tg.run([&count] { count.fetch_add(1, std::memory_order_relaxed); });
      tg.wait();
    });
  });
  check("trivial/tbb: tasks run", count.load(), n);
  return t;
}

// ---- workload 2: tasks returning a value, every handle kept --------------------

std::int64_t expected_sum(std::int64_t n) { return n * (n - 1) / 2; }

double values_pools(std::int64_t n) {
  auto& pool = pools_pool();
  std::int64_t sum = 0;
  double t = time_s([&] {
    std::vector<pools::Task<std::int64_t>> tasks;
    tasks.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) tasks.push_back(pool.add_task("", [i] { return i; }));
    for (auto& task : tasks) sum += task.wait_return();
  });  // the handles are released inside the timing, as the futures are below
  check("values/pools: sum of results", sum, expected_sum(n));
  return t;
}

double values_asio(std::int64_t n) {
  boost::asio::thread_pool pool(num_threads);
  std::int64_t sum = 0;
  double t = time_s([&] {
    std::vector<std::future<std::int64_t>> futures;
    futures.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i)
      futures.push_back(boost::asio::post(pool, boost::asio::use_future([i] { return i; })));
    for (auto& f : futures) sum += f.get();
  });
  pool.join();
  check("values/asio: sum of results", sum, expected_sum(n));
  return t;
}

// TBB has no per-task result handle: each task writes its slot of a vector.
double values_tbb(std::int64_t n, int concurrency) {
  auto& arena = tbb_arena(concurrency);
  std::int64_t sum = 0;
  double t = time_s([&] {
    std::vector<std::int64_t> out(static_cast<std::size_t>(n));
    arena.execute([&] {
      tbb::task_group tg;
      for (std::int64_t i = 0; i < n; ++i) tg.run([&out, i] { out[static_cast<std::size_t>(i)] = i; });
      tg.wait();
    });
    for (auto v : out) sum += v;
  });
  check("values/tbb: sum of results", sum, expected_sum(n));
  return t;
}

// ---- workload 3: fib(n), a task per call, the parent waiting on its children --

std::int64_t fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

std::int64_t fib_pools(pools::PoolBase& pool, int n) {
  if (n < 2) return n;
  auto a = pool.add_task("", [&pool, n] { return fib_pools(pool, n - 1); });
  auto b = pool.add_task("", [&pool, n] { return fib_pools(pool, n - 2); });
  // On a pool thread these waits run queued tasks instead of blocking.
  return a.wait_return() + b.wait_return();
}

std::int64_t fib_tbb(int n) {
  if (n < 2) return n;
  std::int64_t a = 0, b = 0;
  tbb::task_group tg;
  tg.run([&a, n] { a = fib_tbb(n - 1); });
  tg.run([&b, n] { b = fib_tbb(n - 2); });
  tg.wait();
  return a + b;
}

double fib_pools_run(int n) {
  auto& pool = pools_pool();
  std::int64_t r = 0;
  // The root is a task too: the main thread is not a pool thread and would
  // only block, whereas TBB's caller works inside the arena.
  double t = time_s([&] { r = pool.add_task("", [&pool, n] { return fib_pools(pool, n); }).wait_return(); });
  check("fib/pools: result", r, fib_serial(n));
  return t;
}

double fib_tbb_run(int n, int concurrency) {
  auto& arena = tbb_arena(concurrency);
  std::int64_t r = 0;
  double t = time_s([&] { arena.execute([&] { r = fib_tbb(n); }); });
  check("fib/tbb: result", r, fib_serial(n));
  return t;
}

// ---- alternating rounds ---------------------------------------------------------

struct Contender {
  std::string name;
  std::function<double()> run;
  std::vector<double> times;
};

struct Row {
  std::string workload;
  std::optional<double> pools, tbb, tbb3, asio;  // medians, seconds or bytes
  std::string ratio_text;
  std::string goal;
  bool met = false;
  bool is_memory = false;
};
std::vector<Row> table;

// Runs every contender once untimed (warm-up: threads, caches), then `rounds`
// rounds, rotating the order each round so no runtime always goes first. A
// short pause between runs lets the previous runtime's threads go idle (TBB's
// workers spin for a while before they sleep).
void run_rounds(const std::string& title, std::vector<Contender>& cs,
                const std::function<void(const std::vector<Contender>&, int)>& print_ratios) {
  std::printf("\n== %s ==\n", title.c_str());
  if (!opt.runtime.empty()) {
    // Profiling mode: one runtime, timed rounds only.
    std::erase_if(cs, [](const Contender& c) { return c.name.rfind(opt.runtime, 0) != 0; });
    for (int r = 0; r < opt.rounds; ++r) {
      std::printf("round %d:", r + 1);
      for (auto& c : cs) std::printf("  %s %.3f s", c.name.c_str(), c.run());
      std::printf("\n");
    }
    return;
  }
  auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(30)); };
  for (auto& c : cs) {
    (void)c.run();
    pause();
  }
  for (int r = 0; r < opt.rounds; ++r) {
    for (std::size_t k = 0; k < cs.size(); ++k) {
      auto& c = cs[(k + static_cast<std::size_t>(r)) % cs.size()];
      c.times.push_back(c.run());
      pause();
    }
    std::printf("round %d:", r + 1);
    for (auto& c : cs) std::printf("  %s %.3f s", c.name.c_str(), c.times.back());
    print_ratios(cs, r);
    std::printf("\n");
    std::fflush(stdout);
  }
  std::printf("median: ");
  for (auto& c : cs) std::printf("  %s %.3f s", c.name.c_str(), median(c.times));
  print_ratios(cs, -1);
  std::printf("\n");
}

double at(const Contender& c, int round) { return round < 0 ? median(c.times) : c.times[static_cast<std::size_t>(round)]; }

std::string fmt_ratio(const char* label, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s %.2f", label, v);
  return buf;
}

void workload_trivial() {
  const auto n = opt.tasks;
  std::vector<Contender> cs;
  cs.push_back({"pools", [n] { return trivial_pools(n); }, {}});
  cs.push_back({"tbb(2)", [n] { return trivial_tbb(n, 2); }, {}});
  cs.push_back({"asio", [n] { return trivial_asio(n); }, {}});
  if (opt.tbb3) cs.push_back({"tbb(3)", [n] { return trivial_tbb(n, 3); }, {}});
  auto ratios = [](const std::vector<Contender>& c, int r) {
    std::printf("  | pools/tbb(2) %.2f  pools/asio %.2f", at(c[0], r) / at(c[1], r), at(c[0], r) / at(c[2], r));
  };
  run_rounds(std::to_string(n) + " trivial tasks, handles dropped, then wait for all", cs, ratios);
  if (!opt.runtime.empty()) return;
  Row row{"trivial", median(cs[0].times), median(cs[1].times), std::nullopt, median(cs[2].times), "", "", false, false};
  if (opt.tbb3) row.tbb3 = median(cs[3].times);
  const double q = *row.pools / *row.tbb;
  row.ratio_text = fmt_ratio("pools/tbb", q) + ", " + fmt_ratio("pools/asio", *row.pools / *row.asio);
  if (row.tbb3) row.ratio_text += ", " + fmt_ratio("pools/tbb(3)", *row.pools / *row.tbb3);
  row.goal = "pools/tbb <= 1.0";
  row.met = q <= 1.0;
  table.push_back(row);
}

void workload_values() {
  const auto n = opt.tasks;
  std::vector<Contender> cs;
  cs.push_back({"pools", [n] { return values_pools(n); }, {}});
  cs.push_back({"tbb(2)", [n] { return values_tbb(n, 2); }, {}});
  cs.push_back({"asio", [n] { return values_asio(n); }, {}});
  if (opt.tbb3) cs.push_back({"tbb(3)", [n] { return values_tbb(n, 3); }, {}});
  auto ratios = [](const std::vector<Contender>& c, int r) {
    std::printf("  | pools/asio %.2f  pools/tbb(2) %.2f", at(c[0], r) / at(c[2], r), at(c[0], r) / at(c[1], r));
  };
  run_rounds(std::to_string(n) +
                 " tasks returning a value, all handles kept, results summed"
                 " (asio: post(use_future) -> std::future; tbb: no handle, each task writes a slot)",
             cs, ratios);
  if (!opt.runtime.empty()) return;
  Row row{"values", median(cs[0].times), median(cs[1].times), std::nullopt, median(cs[2].times), "", "", false, false};
  if (opt.tbb3) row.tbb3 = median(cs[3].times);
  const double q = *row.pools / *row.asio;
  row.ratio_text = fmt_ratio("pools/asio", q) + ", " + fmt_ratio("pools/tbb", *row.pools / *row.tbb);
  row.goal = "pools/asio <= 0.25";
  row.met = q <= 0.25;
  table.push_back(row);
}

void workload_fib() {
  const int n = opt.fib_n;
  std::vector<Contender> cs;
  cs.push_back({"pools", [n] { return fib_pools_run(n); }, {}});
  cs.push_back({"tbb(2)", [n] { return fib_tbb_run(n, 2); }, {}});
  if (opt.tbb3) cs.push_back({"tbb(3)", [n] { return fib_tbb_run(n, 3); }, {}});
  auto ratios = [](const std::vector<Contender>& c, int r) {
    std::printf("  | pools/tbb(2) %.2f", at(c[0], r) / at(c[1], r));
  };
  const std::int64_t calls = 2 * fib_serial(n + 1) - 1;
  std::printf("\nfib: Boost.Asio's thread_pool (and BS::thread_pool) would deadlock here: a parent\n"
              "blocks its thread waiting for children queued behind it. Asio is not run.\n");
  run_rounds("fib(" + std::to_string(n) + "), a task per call (" + std::to_string(calls - 1) +
                 " tasks), each parent waits on its two children",
             cs, ratios);
  if (!opt.runtime.empty()) return;
  Row row{"fib(" + std::to_string(n) + ")", median(cs[0].times), median(cs[1].times), std::nullopt, std::nullopt,
          "", "", false, false};
  if (opt.tbb3) row.tbb3 = median(cs[2].times);
  const double q = *row.pools / *row.tbb;
  row.ratio_text = fmt_ratio("pools/tbb", q);
  if (row.tbb3) row.ratio_text += ", " + fmt_ratio("pools/tbb(3)", *row.pools / *row.tbb3);
  row.goal = "pools/tbb <= 1.5";
  row.met = q <= 1.5;
  table.push_back(row);
}

// ---- workload 4: memory per pending task ---------------------------------------
//
// Each measurement runs in a fresh process (this program re-executed with
// --memory-probe KIND): pools keeps freed task blocks for reuse, so a process
// that already ran a million tasks would show no growth at all. In the probe
// the workers are held busy, a small warm-up has primed thread caches, and the
// growth of resident memory (and of malloc's heap) while N tasks are pending is
// divided by N.

std::size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

std::size_t heap_bytes() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

struct Snapshot {
  std::size_t rss, heap;
};
Snapshot snap() { return {rss_bytes(), heap_bytes()}; }

void wait_started(const std::atomic<int>& started, int want) {
  while (started.load(std::memory_order_acquire) < want) std::this_thread::sleep_for(std::chrono::microseconds(100));
}

int memory_probe(const std::string& kind, std::int64_t n) {
  constexpr std::int64_t warmup = 1000;
  std::atomic<std::int64_t> count{0};
  std::atomic<int> started{0};
  auto trivial = [&count] { count.fetch_add(1, std::memory_order_relaxed); };
  Snapshot before{}, after{};

  if (kind == "pools" || kind == "pools-kept") {
    auto& pool = pools_pool();
    {
      std::vector<pools::Task<void>> warm;
      for (std::int64_t i = 0; i < warmup; ++i) warm.push_back(pool.add_task("", trivial));
      pool.wait_completion();
    }
    std::latch release(1);
    for (std::size_t i = 0; i < num_threads; ++i)
      (void)pool.add_task("", [&] { started.fetch_add(1, std::memory_order_release); release.wait(); });
    wait_started(started, static_cast<int>(num_threads));
    std::vector<pools::Task<void>> kept;
    before = snap();
    if (kind == "pools") {
      for (std::int64_t i = 0; i < n; ++i) (void)pool.add_task("", trivial);
    } else {
      kept.reserve(static_cast<std::size_t>(n));  // the user's 8 bytes per handle count
      for (std::int64_t i = 0; i < n; ++i) kept.push_back(pool.add_task("", trivial));
    }
    after = snap();
    release.count_down();
    pool.wait_completion();
    check("memory/pools: tasks run", count.load(), warmup + n);
  } else if (kind == "asio") {
    boost::asio::thread_pool pool(num_threads);
    for (std::int64_t i = 0; i < warmup; ++i) boost::asio::post(pool, trivial);
    while (count.load() < warmup) std::this_thread::sleep_for(std::chrono::microseconds(100));
    std::latch release(1);
    for (std::size_t i = 0; i < num_threads; ++i)
      boost::asio::post(pool, [&] { started.fetch_add(1, std::memory_order_release); release.wait(); });
    wait_started(started, static_cast<int>(num_threads));
    before = snap();
    for (std::int64_t i = 0; i < n; ++i) boost::asio::post(pool, trivial);
    after = snap();
    release.count_down();
    pool.join();
    check("memory/asio: tasks run", count.load(), warmup + n);
  } else if (kind == "tbb") {
    // task_arena(2) has one worker thread; the caller only joins in tg.wait().
    auto& arena = tbb_arena(2);
    arena.execute([&] {
      tbb::task_group tg;
      for (std::int64_t i = 0; i < warmup; ++i) tg.run(trivial);
      tg.wait();
      std::latch release(1);
      tg.run([&] { started.fetch_add(1, std::memory_order_release); release.wait(); });
      wait_started(started, 1);
      before = snap();
      for (std::int64_t i = 0; i < n; ++i) tg.run(trivial);
      after = snap();
      release.count_down();
      tg.wait();
    });
    check("memory/tbb: tasks run", count.load(), warmup + n);
  } else {
    std::fprintf(stderr, "thread_pool_bench: unknown memory probe '%s'\n", kind.c_str());
    return 2;
  }
  const double dn = static_cast<double>(n);
  std::printf("%.3f %.3f\n", (static_cast<double>(after.rss) - static_cast<double>(before.rss)) / dn,
              (static_cast<double>(after.heap) - static_cast<double>(before.heap)) / dn);
  return 0;
}

std::string self_exe;

// Runs one probe in a child process; returns {rss bytes/task, heap bytes/task}.
std::pair<double, double> run_probe(const std::string& kind) {
  std::string cmd = "'" + self_exe + "' --memory-probe " + kind + " --tasks " + std::to_string(opt.tasks);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    std::perror("popen");
    std::exit(2);
  }
  double rss = 0, heap = 0;
  const int got = std::fscanf(p, "%lf %lf", &rss, &heap);
  const int status = pclose(p);
  if (got != 2 || status != 0) {
    std::fprintf(stderr, "thread_pool_bench: memory probe '%s' failed (status %d)\n", kind.c_str(), status);
    std::exit(1);
  }
  return {rss, heap};
}

void workload_memory() {
  std::printf("\n== memory per pending task: %lld trivial tasks queued behind %zu busy workers ==\n"
              "(each figure from a fresh process; resident memory growth / N, malloc heap growth / N;\n"
              " tbb: task_arena(2) has one worker, held busy; the caller is the submitter)\n",
              static_cast<long long>(opt.tasks), num_threads);
  const char* kinds[] = {"pools", "pools-kept", "asio", "tbb"};
  std::vector<std::vector<double>> rss(4), heap(4);
  const int reps = std::min(opt.rounds, 3);
  for (int r = 0; r < reps; ++r) {
    std::printf("round %d:", r + 1);
    for (int k = 0; k < 4; ++k) {
      auto [a, b] = run_probe(kinds[k]);
      rss[k].push_back(a);
      heap[k].push_back(b);
      std::printf("  %s %.2f B (heap %.2f B)", kinds[k], a, b);
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  double m[4];
  for (int k = 0; k < 4; ++k) m[k] = median(rss[k]);
  std::printf("median RSS bytes/task: pools %.2f, pools with handle kept %.2f, asio %.2f, tbb %.2f\n", m[0], m[1],
              m[2], m[3]);
  std::printf("median heap bytes/task: pools %.2f, pools with handle kept %.2f, asio %.2f, tbb %.2f"
              " (tbb allocates through tbbmalloc, which malloc's counters do not see)\n",
              median(heap[0]), median(heap[1]), median(heap[2]), median(heap[3]));
  table.push_back({"memory, handle dropped", m[0], m[3], std::nullopt, m[2], "", "pools <= 64 B/task", m[0] <= 64,
                   true});
  table.push_back({"memory, handle kept", m[1], std::nullopt, std::nullopt, std::nullopt, "(incl. 8 B handle)",
                   "pools <= 128 B/task", m[1] <= 128, true});
}

void print_table() {
  std::printf("\n== summary (medians; %d rounds; %zu threads; tbb(2) = task_arena(2): 1 worker + the waiting caller,"
              " tbb(3) = task_arena(3): 2 workers + the caller) ==\n",
              opt.rounds, num_threads);
  std::printf("%-24s %10s %10s %10s %10s  %-50s %-20s %s\n", "workload", "pools", "tbb(2)", "tbb(3)", "asio", "ratio",
              "goal", "met");
  for (auto& r : table) {
    auto cell = [&](const std::optional<double>& v) {
      char buf[32];
      if (!v) return std::string("-");
      if (r.is_memory)
        std::snprintf(buf, sizeof buf, "%.2f B", *v);
      else
        std::snprintf(buf, sizeof buf, "%.3f s", *v);
      return std::string(buf);
    };
    const std::string& ratio = r.ratio_text;
    std::printf("%-24s %10s %10s %10s %10s  %-50s %-20s %s\n", r.workload.c_str(), cell(r.pools).c_str(),
                cell(r.tbb).c_str(), cell(r.tbb3).c_str(), cell(r.asio).c_str(), ratio.c_str(), r.goal.c_str(),
                r.met ? "met" : "NOT met");
  }
  std::printf("fib: asio not run (its thread_pool deadlocks when a task waits on tasks queued behind it)\n");
}

// The 1, 5 and 15 minute load averages: a benchmark run on a busy machine says so.
std::string load_average() {
  std::ifstream la("/proc/loadavg");
  std::string l1, l5, l15;
  la >> l1 >> l5 >> l15;
  return l1 + " " + l5 + " " + l15;
}

void usage() {
  std::fprintf(stderr,
               "usage: thread_pool_bench [--rounds N] [--only trivial|values|fib|memory] [--tasks N] [--fib N]"
               " [--no-tbb3] [--runtime pools|tbb|asio (profiling: run only that one)]\n");
}

}  // namespace

int main(int argc, char** argv) {
  pools::init(argc, argv);
  std::string probe;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--rounds")
      opt.rounds = std::max(1, std::atoi(value().c_str()));
    else if (a == "--only")
      opt.only = value();
    else if (a == "--tasks")
      opt.tasks = std::max<std::int64_t>(1, std::atoll(value().c_str()));
    else if (a == "--fib")
      opt.fib_n = std::max(2, std::atoi(value().c_str()));
    else if (a == "--no-tbb3")
      opt.tbb3 = false;
    else if (a == "--runtime")
      opt.runtime = value();
    else if (a == "--memory-probe")
      probe = value();
    else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else {
      usage();
      return 2;
    }
  }
  if (!opt.only.empty() && opt.only != "trivial" && opt.only != "values" && opt.only != "fib" &&
      opt.only != "memory") {
    usage();
    return 2;
  }
  try {
    if (!probe.empty()) return memory_probe(probe, opt.tasks);

    char buf[4096];
    const ssize_t len = readlink("/proc/self/exe", buf, sizeof buf - 1);
    self_exe = len > 0 ? std::string(buf, static_cast<std::size_t>(len)) : std::string(argv[0]);
    {
      std::printf("thread_pool_bench: %zu threads per runtime, %d rounds, %u hardware threads, load average %s\n",
                  num_threads, opt.rounds, std::thread::hardware_concurrency(), load_average().c_str());
      std::printf("oneTBB: the thread that calls task_group::wait() works in the arena; task_arena(2) = 1 worker + "
                  "that caller.\n");
    }
    auto want = [](const char* w) { return opt.only.empty() || opt.only == w; };
    if (want("trivial")) workload_trivial();
    if (want("values")) workload_values();
    if (want("fib")) workload_fib();
    if (want("memory") && opt.runtime.empty()) workload_memory();
    if (opt.runtime.empty()) print_table();
    std::printf("load average at the end: %s\n", load_average().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thread_pool_bench: %s\n", e.what());
    return 2;
  }
  return 0;
}
