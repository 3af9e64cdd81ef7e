// The cluster pool under mpirun -np 3 (rank 0 runs these tests; ranks 1 and 2
// serve): what only a cluster shows. Built into test_cluster with the
// conformance suite (tests/conformance.cpp) and tests/mpi_main.cpp.
#include <catch2/catch.hpp>

#include <pools/pools.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

int worker_pid(int) { return static_cast<int>(::getpid()); }

// Sleeps, so that tasks take long enough for both ranks to get some; returns
// the worker's pid.
int nap_and_pid(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return static_cast<int>(::getpid());
}

long add_one(long x) { return x + 1; }

int throw_out_of_range(int x) { throw std::out_of_range("index " + std::to_string(x)); }

}  // namespace

TEST_CASE("cluster: the job's nodes are listed, rank 0 first", "[cluster]") {
  const auto nodes = pools::cluster_nodes();
  REQUIRE(nodes.size() == 3);
  std::set<int> pids;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    CHECK(nodes[i].rank == static_cast<int>(i));
    CHECK_FALSE(nodes[i].host.empty());
    CHECK(nodes[i].cores >= 1);
    CHECK(nodes[i].threads >= 1);
    pids.insert(nodes[i].pid);
  }
  CHECK(nodes[0].pid == static_cast<int>(::getpid()));
  CHECK(pids.size() == 3);
  CHECK(pools::in_cluster());
}

TEST_CASE("cluster: the global pool is a cluster pool over every worker rank", "[cluster]") {
  auto& pool = pools::global_cluster_pool();
  CHECK(pool.kind() == pools::PoolKind::cluster);
  CHECK(pool.num_workers() == 2);
  CHECK(&pool == &pools::get_cluster_pool());
  CHECK_THROWS_WITH(pools::get_cluster_pool("cluster.too-many", 3),
                    Catch::Contains("3 workers asked for, but the job has 2 worker ranks"));
  CHECK(pools::get_cluster_pool("cluster.one", 1).num_workers() == 1);
}

TEST_CASE("cluster: tasks run on the worker ranks, spread over both", "[cluster]") {
  pools::ClusterOptions options;
  options.max_in_flight = 2;  // so that a rank cannot take more than its share up front
  auto& pool = pools::get_cluster_pool("cluster.spread", options);
  const auto nodes = pools::cluster_nodes();
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 60; ++i) tasks.push_back(pool.add_task("nap", nap_and_pid, 5));
  std::map<int, int> per_pid;
  for (auto& t : tasks) ++per_pid[t.wait_return()];
  REQUIRE(per_pid.size() == 2);
  for (auto& [pid, n] : per_pid) {
    INFO("pid " << pid << " ran " << n << " of 60");
    CHECK((pid == nodes[1].pid || pid == nodes[2].pid));
    // Dynamic balancing over two equal ranks, 2 in flight each: neither
    // starves. (Both nap the same; a rank descheduled for a while still gets
    // its 2 in flight.)
    CHECK(n >= 10);
  }
  CHECK(per_pid.count(static_cast<int>(::getpid())) == 0);
}

TEST_CASE("cluster: 20,000 tasks, one by one and in chunks", "[cluster][many]") {
  auto& pool = pools::global_cluster_pool();
  std::vector<pools::Task<long>> tasks;
  tasks.reserve(20000);
  for (long i = 0; i < 20000; ++i) tasks.push_back(pool.add_task("add", add_one, i));
  long sum = 0;
  for (auto& t : tasks) sum += t.wait_return();
  CHECK(sum == 20000L * 20001L / 2);

  std::vector<long> items(20000);
  std::iota(items.begin(), items.end(), 0L);
  auto chunked = pool.add_tasks("add", add_one, items, 100);
  sum = 0;
  for (auto& t : chunked) sum += t.wait_return();
  CHECK(sum == 20000L * 20001L / 2);
  pool.wait_completion();
  CHECK(pool.num_active_tasks() == 0);
}

TEST_CASE("cluster: a task's exception names the rank and the host", "[cluster]") {
  auto& pool = pools::global_cluster_pool();
  auto t = pool.add_task("oops", throw_out_of_range, 4);
  try {
    t.wait();
    FAIL("no exception");
  } catch (const pools::RemoteError& e) {
    CHECK(e.remote_type() == "std::out_of_range");
    CHECK(e.remote_what() == "index 4");
    CHECK((e.rank() == 1 || e.rank() == 2));
    CHECK_FALSE(e.host().empty());
    CHECK(e.pid() != static_cast<int>(::getpid()));
  }
  // The rank lives on.
  CHECK(pool.add_task("after", add_one, 1L).wait_return() == 2);
}

TEST_CASE("cluster: add_process runs commands on the worker ranks", "[cluster]") {
  auto& pool = pools::global_cluster_pool();
  std::set<std::string> ranks;
  std::vector<pools::ProcessTask> tasks;
  for (int i = 0; i < 20; ++i)
    tasks.push_back(pool.add_process("rank", "sleep 0.05; echo $OMPI_COMM_WORLD_RANK"));
  for (auto& t : tasks) ranks.insert(t.wait_return());
  for (const auto& r : ranks) CHECK((r == "1\n" || r == "2\n"));
  CHECK_FALSE(ranks.empty());

  auto bad = pool.add_process("bad", std::vector<std::string>{"sh", "-c", "echo no >&2; exit 3"});
  try {
    bad.wait();
    FAIL("no exception");
  } catch (const pools::ProcessError& e) {
    CHECK(e.exit_code() == 3);
    CHECK(e.stderr_text() == "no\n");
  }
  CHECK(bad.result().exit_code == 3);
}

TEST_CASE("cluster: an unsendable task is refused at add_task", "[cluster]") {
  auto& pool = pools::global_cluster_pool();
  int local = 3;
  pool.wait_completion();
  CHECK_THROWS_AS(pool.add_task("capture", [&local] { return local; }), pools::Error);
  CHECK(pool.num_active_tasks() == 0);
}

TEST_CASE("cluster: a task over its timeout fails; the calls behind it run elsewhere",
          "[cluster][timeout]") {
  pools::ClusterOptions options;
  options.task_timeout = std::chrono::milliseconds(300);
  options.max_in_flight = 4;
  auto& pool = pools::get_cluster_pool("cluster.timeout", options);
  // One long nap fills a rank; the short ones queued behind it on that rank
  // are withdrawn and run on the other.
  auto slow = pool.add_task("slow", nap_and_pid, 3000);
  std::vector<pools::Task<int>> quick;
  for (int i = 0; i < 12; ++i) quick.push_back(pool.add_task("quick", nap_and_pid, 10));
  try {
    slow.wait();
    FAIL("no timeout");
  } catch (const pools::WorkerLost& e) {
    CHECK(e.timed_out());
    CHECK_THAT(e.what(), Catch::Contains("ran longer than the timeout of 300 ms"));
  }
  for (auto& t : quick) CHECK(t.wait_return() > 0);
  pool.wait_completion();
  CHECK(pool.num_active_tasks() == 0);
  CHECK_THROWS_WITH(pools::get_cluster_pool("cluster.timeout", pools::ClusterOptions{}),
                    Catch::Contains("other options"));
}

TEST_CASE("cluster: the ranks hand tasks to worker_pid in parallel with chunks",
          "[cluster]") {
  auto& pool = pools::global_cluster_pool();
  std::vector<int> items(40, 0);
  auto tasks = pool.add_tasks("pid", worker_pid, items, 5);
  std::set<int> pids;
  for (auto& t : tasks) pids.insert(t.wait_return());
  CHECK_FALSE(pids.empty());
  CHECK(pids.count(static_cast<int>(::getpid())) == 0);
}

namespace {
std::string reverse_text(std::string s) { return std::string(s.rbegin(), s.rend()); }
}  // namespace

TEST_CASE("cluster: 8 MB each way, several at once", "[cluster]") {
  auto& pool = pools::global_cluster_pool();
  std::string big(8 << 20, 'a');
  for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + i / 4096 % 26);
  std::vector<pools::Task<std::string>> tasks;
  for (int i = 0; i < 3; ++i) tasks.push_back(pool.add_task("reverse", reverse_text, big));
  const std::string expected(big.rbegin(), big.rend());
  for (auto& t : tasks) CHECK(t.wait_return() == expected);
}

namespace {
// Counts the events of a pool's tasks, and the worker ranks they started on.
struct RankRecorder : pools::Observer {
  std::mutex mutex;
  int queued = 0, started = 0, succeeded = 0, failed = 0;
  std::set<std::int64_t> ranks;
  void on_queued(const pools::TaskEvent&) override {
    std::lock_guard lock(mutex);
    ++queued;
  }
  void on_started(const pools::TaskEvent& e) override {
    std::lock_guard lock(mutex);
    ++started;
    if (e.worker.kind == pools::WorkerKind::rank) ranks.insert(e.worker.id);
  }
  void on_finished(const pools::TaskEvent& e) override {
    std::lock_guard lock(mutex);
    (e.outcome == pools::TaskOutcome::succeeded ? succeeded : failed)++;
  }
};
}  // namespace

TEST_CASE("cluster: observers see every task start on a rank and finish; the pool's state",
          "[cluster]") {
  auto& pool = pools::get_cluster_pool("cluster.observed");
  CHECK(pool.state() == pools::PoolState::running);
  auto recorder = std::make_shared<RankRecorder>();
  pool.add_observer(recorder);
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 40; ++i) tasks.push_back(pool.add_task("nap", nap_and_pid, 2));
  auto bad = pool.add_task("oops", throw_out_of_range, 1);
  for (auto& t : tasks) t.wait();
  CHECK_THROWS_AS(bad.wait(), pools::RemoteError);
  pool.wait_completion();
  pool.remove_observer(recorder);
  {
    // (Not held across shutdown: the pool's locks are taken inside observers.)
    std::lock_guard lock(recorder->mutex);
    CHECK(recorder->queued == 41);
    CHECK(recorder->started == 41);
    CHECK(recorder->succeeded == 40);
    CHECK(recorder->failed == 1);
    for (auto r : recorder->ranks) CHECK((r == 1 || r == 2));
    CHECK_FALSE(recorder->ranks.empty());
  }
  pool.shutdown();
  CHECK(pool.state() == pools::PoolState::stopped);
}

namespace {
// The worker hooks append a line to a file of this job's (the ranks share the
// job id), which rank 0 reads.
std::string hook_log() {
  const char* job = std::getenv("OMPI_MCA_ess_base_jobid");
  return (std::filesystem::temp_directory_path() /
          ("pools-cluster-hooks-" + std::string(job ? job : "none")))
      .string();
}
void log_hook(const char* what) {
  std::ofstream(hook_log(), std::ios::app)
      << what << " " << (std::getenv("OMPI_COMM_WORLD_RANK") ? std::getenv("OMPI_COMM_WORLD_RANK") : "?")
      << "\n";
}
void start_hook() { log_hook("start"); }
void stop_hook() { log_hook("stop"); }
void failing_hook() { throw std::runtime_error("no GPU here"); }
int rank_of_worker() { return std::atoi(std::getenv("OMPI_COMM_WORLD_RANK")); }

std::multiset<std::string> hook_lines() {
  std::ifstream in(hook_log());
  std::multiset<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.insert(line);
  return lines;
}
}  // namespace

TEST_CASE("cluster: on_start and on_stop run once on each of the pool's ranks", "[cluster][hooks]") {
  std::filesystem::remove(hook_log());
  pools::ClusterOptions options;
  options.on_start = start_hook;
  options.on_stop = stop_hook;
  auto& pool = pools::get_cluster_pool("cluster.hooks", options);
  // on_start ran on both ranks before the pool was returned.
  CHECK(hook_lines() == std::multiset<std::string>{"start 1", "start 2"});
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 20; ++i) tasks.push_back(pool.add_task("rank", rank_of_worker));
  for (auto& t : tasks) CHECK(t.wait_return() >= 1);
  pool.shutdown();
  CHECK(hook_lines() == std::multiset<std::string>{"start 1", "start 2", "stop 1", "stop 2"});
  std::filesystem::remove(hook_log());
}

TEST_CASE("cluster: a failing on_start fails every task of the pool, naming the rank",
          "[cluster][hooks]") {
  pools::ClusterOptions options;
  options.workers = 1;
  options.on_start = failing_hook;
  auto& pool = pools::get_cluster_pool("cluster.bad-hook", options);
  CHECK(pool.state() == pools::PoolState::running);
  auto t = pool.add_task("rank", rank_of_worker);
  CHECK_THROWS_WITH(t.wait(), Catch::Contains("on_start failed on 1 of its 1 worker ranks") &&
                                  Catch::Contains("rank 1 on ") &&
                                  Catch::Contains("no GPU here"));
  // Other pools on the same ranks are not affected.
  CHECK(pools::global_cluster_pool().add_task("after", add_one, 1L).wait_return() == 2);
}
