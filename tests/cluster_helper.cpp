// A program of the cluster tests, run under mpirun (or, for the fallback,
// without it) by tests/cluster_launch.cpp. One mode per run; it checks what it
// can itself, prints what the test checks, and exits 0 when all went as
// expected.
#include <pools/pools.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

int square(int x) { return x * x; }
int pid_of_worker(int) { return static_cast<int>(::getpid()); }

// Dies the way a crashed or OOM-killed rank does.
int die_if(int x, int victim) {
  if (x == victim) ::raise(SIGKILL);
  return x;
}

int fail(const char* what) {
  std::fprintf(stderr, "cluster_helper: FAILED: %s\n", what);
  return 1;
}

// Tasks square numbers; prints the pool's kind.
int mode_squares() {
  auto& pool = pools::global_cluster_pool();
  std::printf("kind %s workers %zu\n", std::string(pools::to_string(pool.kind())).c_str(),
              pool.num_workers());
  long sum = 0;
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 100; ++i) tasks.push_back(pool.add_task("square", square, i));
  for (auto& t : tasks) sum += t.wait_return();
  std::printf("sum %ld\n", sum);
  return sum == 328350 ? 0 : fail("the squares' sum");
}

// A task kills its rank (SIGKILL): under mpirun --enable-recovery its task
// fails with WorkerLost and the other rank runs the rest.
int mode_kill_rank() {
  auto& pool = pools::global_cluster_pool();
  // Which worker pid runs what: the victim is a task on the first worker.
  std::vector<pools::Task<int>> before;
  for (int i = 0; i < 8; ++i) before.push_back(pool.add_task("warm", pid_of_worker, i));
  for (auto& t : before) t.wait();
  auto victim = pool.add_task("victim", die_if, 7, 7);
  int lost = 0;
  try {
    victim.wait();
  } catch (const pools::WorkerLost& e) {
    std::printf("lost: %s\n", e.what());
    lost = 1;
  }
  if (!lost) return fail("the victim's task did not fail with WorkerLost");
  long sum = 0;
  std::vector<pools::Task<int>> after;
  for (int i = 0; i < 200; ++i) after.push_back(pool.add_task("after", square, i));
  int failed = 0;
  for (auto& t : after) {
    try {
      sum += t.wait_return();
    } catch (const pools::WorkerLost&) {
      ++failed;  // sent to the dead rank before it was found out
    }
  }
  std::printf("after: sum %ld, lost %d\n", sum, failed);
  // Every task either ran or failed with WorkerLost, and most ran elsewhere.
  return failed < 200 ? 0 : fail("nothing ran after the rank died");
}

// Creates `mine`, then waits (at most 60 s) for `theirs`: two such tasks
// finish only when they run at the same time.
bool meet(std::string mine, std::string theirs) {
  std::FILE* f = std::fopen(mine.c_str(), "w");
  if (f) std::fclose(f);
  for (int i = 0; i < 6000; ++i) {
    if (::access(theirs.c_str(), F_OK) == 0) return true;
    ::usleep(10000);
  }
  return false;
}

// POOLS_RANK_THREADS=2: a rank runs two of the pool's tasks at once.
int mode_rank_threads(const char* dir) {
  const auto nodes = pools::cluster_nodes();
  for (std::size_t i = 1; i < nodes.size(); ++i)
    if (nodes[i].threads != 2) return fail("a worker rank does not report 2 threads");
  pools::ClusterOptions one_rank;
  one_rank.workers = 1;
  auto& pool = pools::get_cluster_pool("one rank", one_rank);
  const std::string a = std::string(dir) + "/a", b = std::string(dir) + "/b";
  auto t1 = pool.add_task("a", meet, a, b);
  auto t2 = pool.add_task("b", meet, b, a);
  if (!t1.wait_return() || !t2.wait_return()) return fail("the two tasks did not run at once");
  std::printf("two tasks ran at once on rank 1\n");
  return 0;
}

// Rank 0 dies after a round trip (and again while the ranks are idle, before
// any pool, with "early"): under --enable-recovery the worker ranks must
// notice by themselves and leave, or the job would never end.
int mode_kill_rank0(bool early) {
  if (!early) {
    auto& pool = pools::global_cluster_pool();
    std::printf("rank 0 got %d\n", pool.add_task("square", square, 7).wait_return());
  }
  std::fflush(stdout);
  ::raise(SIGKILL);
  return fail("rank 0 outlived SIGKILL");
}

int nap_ms(int ms) {
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  return ms;
}

// Leaves work on its rank's own thread pool, which the rank finishes when it
// stops (it closes its pools before its goodbye).
int leave_work(int ms) {
  pools::get_thread_pool("rank work", 1).add_task("later", nap_ms, ms);
  return ms;
}

// A rank still busy for seconds after rank 0 told it to stop: rank 0 waits for
// its goodbye and (under --enable-recovery) keeps sending it heartbeats
// meanwhile, so that the rank does not take rank 0 for dead.
int mode_busy_at_exit() {
  auto& pool = pools::get_cluster_pool("busy", 1);
  std::printf("left %d ms of work\n", pool.add_task("leave", leave_work, 3000).wait_return());
  return 0;
}

// Rank 0 asks for the cluster pool while another rank runs another program.
int mode_mismatch() {
  try {
    pools::global_cluster_pool();
  } catch (const pools::Error& e) {
    std::printf("refused: %s\n", e.what());
    return 0;
  }
  return fail("a job of two programs was accepted");
}

}  // namespace

int main(int argc, char** argv) {
  pools::init(argc, argv);
  const std::string_view mode = argc > 1 ? argv[1] : "";
  if (mode == "squares") return mode_squares();
  if (mode == "kill-rank") return mode_kill_rank();
  if (mode == "mismatch") return mode_mismatch();
  if (mode == "busy-at-exit") return mode_busy_at_exit();
  if (mode == "kill-rank0") return mode_kill_rank0(argc > 2 && std::string_view(argv[2]) == "early");
  if (mode == "rank-threads" && argc > 2) return mode_rank_threads(argv[2]);
  std::fprintf(stderr, "usage: cluster_helper squares|kill-rank|kill-rank0 [early]|busy-at-exit|mismatch|rank-threads DIR\n");
  return 2;
}
