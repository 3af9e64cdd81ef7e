// Cluster benchmark: the cluster pool against a hand-written MPI master/worker
// farm and against mpi4py.futures' MPIPoolExecutor, each as `mpirun -np 3`
// (rank 0 submits, 2 worker ranks serve), alternating rounds. Results and the
// command line are in docs/performance.md ("Cluster pool").
//
//   cluster_bench [--rounds N] [--tasks N] [--roundtrips N] [--python PATH] [--tcp]
//
// Each round starts one mpirun per contender (their order rotating), and each
// prints what it measured inside the job, after its ranks are up:
//   per task    --tasks tiny calls add_one(i), submitted one by one
//               (add_task; a send per task in the farm, which keeps one task
//               in flight per worker; executor.submit), every result
//               collected and checked, divided by --tasks;
//   round trip  one call submitted and waited for, --roundtrips times: the mean;
//   bulk        (pools, information) the same calls through add_tasks with
//               its default chunking.
// --tcp runs every job with `--mca btl tcp,self` (the path between nodes).
// The mpi4py side is tools/bench/mpi4py_bench.py (path compiled in); without
// mpi4py it is skipped with a note. The job modes (--pools, --farm) are this
// program again under mpirun.
#include <pools/pools.hpp>

#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "bench_support.hpp"

#ifndef MPI4PY_BENCH_SCRIPT
#define MPI4PY_BENCH_SCRIPT "mpi4py_bench.py"
#endif

namespace {

using namespace bench;

// The goals of the issue.
constexpr double goal_vs_farm = 1.0;      // pools' time per task / the farm's
constexpr double goal_vs_mpi4py = 30.0;   // pools' throughput / mpi4py.futures'
constexpr double goal_roundtrip_us = 25;  // one call there and back

struct Options {
  int rounds = 5;
  int tasks = 20'000;
  int roundtrips = 2'000;
  std::string python;
  bool tcp = false;
};
Options opt;

long add_one(long x) { return x + 1; }

// ---- the jobs (under mpirun) ---------------------------------------------------

// User plus system CPU time of these processes (on this host), from /proc.
double cpu_seconds(const std::vector<int>& pids) {
  double total = 0;
  for (int pid : pids) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string f;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i) {
      if (i == 14) utime = std::stoull(f);
      if (i == 15) stime = std::stoull(f);
    }
    total += double(utime + stime) / double(sysconf(_SC_CLK_TCK));
  }
  return total;
}

int job_pools() {
  auto& pool = pools::global_cluster_pool();
  if (pool.kind() != pools::PoolKind::cluster) fail("--pools: not under mpirun");
  const long n = opt.tasks;
  // Warm: the ranks answered, the in-flight depth adapted.
  for (int i = 0; i < 500; ++i) pool.add_task("", add_one, long{i});
  pool.wait_completion();

  std::vector<pools::Task<long>> tasks;
  tasks.reserve(static_cast<std::size_t>(n));
  long sum = 0;
  const double per_task = time_s([&] {
    for (long i = 0; i < n; ++i) tasks.push_back(pool.add_task("", add_one, i));
    for (auto& t : tasks) sum += t.wait_return();
  }) / static_cast<double>(n);
  if (sum != n * (n + 1) / 2) fail("pools: wrong sum");

  bool ok = true;
  const double rt = time_s([&] {
    for (long i = 0; i < opt.roundtrips; ++i) ok = pool.add_task("", add_one, i).wait_return() == i + 1 && ok;
  }) / opt.roundtrips;
  if (!ok) fail("pools round trip: wrong result");

  std::vector<long> items(static_cast<std::size_t>(n));
  std::iota(items.begin(), items.end(), 0L);
  sum = 0;
  const double bulk = time_s([&] {
    auto chunked = pool.add_tasks("", add_one, items);
    for (auto& t : chunked) sum += t.wait_return();
  }) / static_cast<double>(n);
  if (sum != n * (n + 1) / 2) fail("pools add_tasks: wrong sum");

  // What idle worker ranks cost: their CPU time over a second with no work.
  std::vector<int> workers;
  for (const auto& node : pools::cluster_nodes())
    if (node.rank > 0) workers.push_back(node.pid);
  const double before = cpu_seconds(workers);
  const double idle_s = time_s([] { std::this_thread::sleep_for(std::chrono::seconds(1)); });
  const double idle_cpu = (cpu_seconds(workers) - before) / idle_s / workers.size() * 100;
  std::printf("per_task_us=%.3f rt_us=%.3f bulk_us=%.3f idle_cpu_pct=%.2f\n", per_task * 1e6,
              rt * 1e6, bulk * 1e6, idle_cpu);
  return 0;
}

// The hand-written farm: rank 0 keeps one task in flight per worker and sends
// the next to whichever worker answers; workers block in MPI_Recv.
int job_farm(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  constexpr int tag_task = 0, tag_stop = 1;
  if (rank != 0) {
    for (;;) {
      long x = 0;
      MPI_Status st;
      MPI_Recv(&x, 1, MPI_LONG, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
      if (st.MPI_TAG == tag_stop) break;
      const long y = add_one(x);
      MPI_Send(&y, 1, MPI_LONG, 0, tag_task, MPI_COMM_WORLD);
    }
    MPI_Finalize();
    return 0;
  }
  auto farm = [&](long n) {
    long next = 0, done = 0, sum = 0;
    for (int w = 1; w < size && next < n; ++w, ++next)
      MPI_Send(&next, 1, MPI_LONG, w, tag_task, MPI_COMM_WORLD);
    while (done < n) {
      long y = 0;
      MPI_Status st;
      MPI_Recv(&y, 1, MPI_LONG, MPI_ANY_SOURCE, tag_task, MPI_COMM_WORLD, &st);
      sum += y;
      ++done;
      if (next < n) {
        MPI_Send(&next, 1, MPI_LONG, st.MPI_SOURCE, tag_task, MPI_COMM_WORLD);
        ++next;
      }
    }
    return sum;
  };
  farm(500);  // warm
  const long n = opt.tasks;
  long sum = 0;
  const double per_task = time_s([&] { sum = farm(n); }) / static_cast<double>(n);
  if (sum != n * (n + 1) / 2) fail("farm: wrong sum");
  const double rt = time_s([&] {
    for (long i = 0; i < opt.roundtrips; ++i) {
      long y = 0;
      MPI_Send(&i, 1, MPI_LONG, 1, tag_task, MPI_COMM_WORLD);
      MPI_Recv(&y, 1, MPI_LONG, 1, tag_task, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (y != i + 1) fail("farm round trip: wrong result");
    }
  }) / opt.roundtrips;
  long none = 0;
  for (int w = 1; w < size; ++w) MPI_Send(&none, 1, MPI_LONG, w, tag_stop, MPI_COMM_WORLD);
  MPI_Finalize();
  std::printf("per_task_us=%.3f rt_us=%.3f\n", per_task * 1e6, rt * 1e6);
  return 0;
}

// ---- the driver ------------------------------------------------------------------

std::vector<std::string> mpirun(std::vector<std::string> program) {
  std::vector<std::string> args{"mpirun", "-np", "3"};
  if (opt.tcp) args.insert(args.end(), {"--mca", "btl", "tcp,self"});
  args.insert(args.end(), program.begin(), program.end());
  return args;
}

struct Sample {
  double per_task_us = 0, rt_us = 0, bulk_us = 0, idle_cpu_pct = 0;
};

Sample run_job(const std::string& who, std::vector<std::string> program) {
  const std::string out = run_capture(who, mpirun(std::move(program)));
  Sample s;
  s.per_task_us = number_field(who, out, "per_task_us");
  s.rt_us = number_field(who, out, "rt_us");
  if (!field(out, "bulk_us").empty()) s.bulk_us = number_field(who, out, "bulk_us");
  if (!field(out, "idle_cpu_pct").empty()) s.idle_cpu_pct = number_field(who, out, "idle_cpu_pct");
  if (who == "mpi4py.futures" && field(out, "python").size())
    std::printf("  (python %s, mpi4py %s)\n", field(out, "python").c_str(),
                field(out, "mpi4py").c_str());
  return s;
}

bool have_mpi4py() {
  if (opt.python.empty()) return false;
  const int rc = std::system((opt.python + " -c 'import mpi4py.futures' 2>/dev/null").c_str());
  return rc == 0;
}

int driver() {
  // Root may run mpirun here; more ranks than cores; loopback only.
  for (const char* kv : {"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                         "OMPI_MCA_rmaps_base_oversubscribe=1", "OMPI_MCA_btl_tcp_if_include=lo",
                         "OMPI_MCA_oob_tcp_if_include=lo"})
    putenv(const_cast<char*>(kv));
  const bool py = have_mpi4py();
  std::printf("cluster_bench: mpirun -np 3 (2 worker ranks)%s, %d tasks, %d round trips, %d rounds\n",
              opt.tcp ? " over TCP (btl tcp,self)" : " over shared memory", opt.tasks,
              opt.roundtrips, opt.rounds);
  std::printf("load before: %s\n", load_average().c_str());
  if (!py) std::printf("  (mpi4py.futures not found with %s: skipped)\n", opt.python.c_str());
  const std::string self = self_exe();
  std::vector<double> pools_task, pools_rt, pools_bulk, pools_idle, farm_task, farm_rt, py_task,
      py_rt;
  for (int r = 0; r < opt.rounds; ++r) {
    for (int k = 0; k < 3; ++k) {
      switch ((r + k) % 3) {
        case 0: {
          const Sample s = run_job("pools", {self, "--pools", "--tasks", std::to_string(opt.tasks),
                                             "--roundtrips", std::to_string(opt.roundtrips)});
          pools_task.push_back(s.per_task_us);
          pools_rt.push_back(s.rt_us);
          pools_bulk.push_back(s.bulk_us);
          pools_idle.push_back(s.idle_cpu_pct);
          break;
        }
        case 1: {
          const Sample s = run_job("farm", {self, "--farm", "--tasks", std::to_string(opt.tasks),
                                            "--roundtrips", std::to_string(opt.roundtrips)});
          farm_task.push_back(s.per_task_us);
          farm_rt.push_back(s.rt_us);
          break;
        }
        case 2: {
          if (!py) break;
          const Sample s = run_job("mpi4py.futures",
                                   {opt.python, "-m", "mpi4py.futures", MPI4PY_BENCH_SCRIPT,
                                    std::to_string(opt.tasks), std::to_string(opt.roundtrips / 10)});
          py_task.push_back(s.per_task_us);
          py_rt.push_back(s.rt_us);
          break;
        }
      }
    }
    std::printf("round %d: pools %.2f us/task (rt %.1f us, add_tasks %.2f) | farm %.2f us/task "
                "(rt %.1f us)",
                r + 1, pools_task.back(), pools_rt.back(), pools_bulk.back(), farm_task.back(),
                farm_rt.back());
    if (py) std::printf(" | mpi4py %.1f us/task (rt %.1f us)", py_task.back(), py_rt.back());
    std::printf("\n");
    std::fflush(stdout);
  }
  const double pt = median(pools_task), ft = median(farm_task), prt = median(pools_rt);
  std::printf("\nmedians over %d rounds:\n", opt.rounds);
  std::printf("  pools add_task     %8.2f us/task   round trip %6.1f us\n", pt, prt);
  std::printf("  pools add_tasks    %8.2f us/task   (default chunking; information)\n",
              median(pools_bulk));
  std::printf("  pools idle worker ranks: %.2f%% of a core each (information)\n", median(pools_idle));
  std::printf("  hand-written farm  %8.2f us/task   round trip %6.1f us\n", ft, median(farm_rt));
  if (py)
    std::printf("  mpi4py.futures     %8.2f us/task   round trip %6.1f us\n", median(py_task),
                median(py_rt));
  std::printf("\nratios (goal):\n");
  std::printf("  pools / farm time per task     %6.3f   (<= %.1f)  %s\n", pt / ft, goal_vs_farm,
              pt / ft <= goal_vs_farm ? "met" : "NOT met");
  if (py) {
    const double x = median(py_task) / pt;
    std::printf("  pools / mpi4py throughput      %6.1fx  (>= %.0fx)  %s\n", x, goal_vs_mpi4py,
                x >= goal_vs_mpi4py ? "met" : "NOT met");
  }
  std::printf("  pools round trip               %6.1f us (<= %.0f us)  %s\n", prt, goal_roundtrip_us,
              prt <= goal_roundtrip_us ? "met" : "NOT met");
  std::printf("load after: %s\n", load_average().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  enum { drive, pools_job, farm_job } mode = drive;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) fail(a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--rounds") opt.rounds = std::stoi(value());
    else if (a == "--tasks") opt.tasks = std::stoi(value());
    else if (a == "--roundtrips") opt.roundtrips = std::stoi(value());
    else if (a == "--python") opt.python = value();
    else if (a == "--tcp") opt.tcp = true;
    else if (a == "--pools") mode = pools_job;
    else if (a == "--farm") mode = farm_job;
    else fail("unknown argument " + a +
              " (usage: cluster_bench [--rounds N] [--tasks N] [--roundtrips N] [--python PATH] [--tcp])");
  }
  if (opt.rounds < 1 || opt.tasks < 1000 || opt.roundtrips < 10) fail("too few rounds, tasks or round trips");
  if (mode == farm_job) return job_farm(argc, argv);
  pools::init(argc, argv);  // the worker ranks of --pools serve here
  if (mode == pools_job) return job_pools();
  if (opt.python.empty()) opt.python = find_python3();
  return driver();
}
