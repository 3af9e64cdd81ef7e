// The cluster pool's launches that one mpirun run cannot show: started without
// mpirun (the fallback), a worker rank that dies (with and without
// --enable-recovery), and ranks that run different programs. Each runs
// tests/cluster_helper.cpp under its own mpirun, through the process pool.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <pools/pools.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace {

std::string helper() { return pools_test::env_path("POOLS_CLUSTER_HELPER"); }

pools::ProcessResult run(std::vector<std::string> argv, std::map<std::string, std::string> env = {}) {
  pools::ProcessOptions o;
  o.check = false;
  o.timeout = std::chrono::seconds(120);  // a job that hangs fails its test (timed_out)
  o.env = std::move(env);
  o.env["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
  o.env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
  o.env["OMPI_MCA_rmaps_base_oversubscribe"] = "1";
  o.env["OMPI_MCA_btl_tcp_if_include"] = "lo";
  o.env["OMPI_MCA_oob_tcp_if_include"] = "lo";
  auto t = pools::get_process_pool("cluster_launch", 1).add_process("mpirun", std::move(argv), o);
  pools::ProcessResult r = t.result();
  UNSCOPED_INFO("command: " << r.command << "\nexit " << r.exit_code << " signal " << r.signal
                            << "\nstdout:\n" << r.stdout_text << "\nstderr:\n" << r.stderr_text);
  return r;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("cluster launch: without mpirun the cluster pool is a multiprocess pool, said once",
          "[cluster]") {
  const auto r = run({helper(), "squares"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.stdout_text, Catch::Contains("kind multiprocess"));
  CHECK_THAT(r.stdout_text, Catch::Contains("sum 328350"));
  CHECK(count(r.stderr_text, "the cluster pool runs as a multiprocess pool on this machine: "
                             "not started by mpirun or srun") == 1);
}

TEST_CASE("cluster launch: under mpirun the worker ranks serve and the job ends cleanly",
          "[cluster]") {
  const auto r = run({"mpirun", "-np", "3", helper(), "squares"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.stdout_text, Catch::Contains("kind cluster workers 2"));
  CHECK_THAT(r.stdout_text, Catch::Contains("sum 328350"));
  CHECK(count(r.stdout_text, "kind ") == 1);  // only rank 0 ran main's work
}

TEST_CASE("cluster launch: a dead worker rank ends the job, as Open MPI does by default",
          "[cluster]") {
  const auto r = run({"mpirun", "-np", "3", helper(), "kill-rank"});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.stderr_text, Catch::Contains("exited on signal 9"));
}

TEST_CASE("cluster launch: under --enable-recovery a dead rank fails its task with WorkerLost",
          "[cluster]") {
  const auto r = run({"mpirun", "--enable-recovery", "-np", "3", helper(), "kill-rank"},
                     {{"POOLS_CLUSTER_SILENCE_MS", "1500"}});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.stdout_text, Catch::Contains("lost: worker rank"));
  CHECK_THAT(r.stdout_text, Catch::Contains("task 'victim'"));
  // The 200 tasks after it ran on the surviving rank: 0+1+4+...+199^2.
  CHECK_THAT(r.stdout_text, Catch::Contains("after: sum 2646700, lost 0"));
}

TEST_CASE("cluster launch: under --enable-recovery the worker ranks leave when rank 0 dies",
          "[cluster]") {
  const bool early = GENERATE(false, true);
  INFO((early ? "rank 0 dies before any cluster pool" : "rank 0 dies after a task"));
  std::vector<std::string> argv{"mpirun", "--enable-recovery", "-x", "POOLS_CLUSTER_SILENCE_MS",
                                "-np", "3", helper(), "kill-rank0"};
  if (early) argv.push_back("early");
  const auto r = run(argv, {{"POOLS_CLUSTER_SILENCE_MS", "1500"}});
  CHECK_FALSE(r.timed_out);  // before: the worker ranks waited for rank 0 forever
  if (!early) CHECK_THAT(r.stdout_text, Catch::Contains("rank 0 got 49"));
  CHECK_THAT(r.stderr_text, Catch::Contains("worker rank 1: rank 0 sent nothing for"));
  CHECK_THAT(r.stderr_text, Catch::Contains("worker rank 2: rank 0 sent nothing for"));
}

TEST_CASE("cluster launch: under --enable-recovery rank 0 keeps a rank that is still busy at "
          "exit alive until its goodbye",
          "[cluster]") {
  const auto r = run({"mpirun", "--enable-recovery", "-x", "POOLS_CLUSTER_SILENCE_MS", "-np", "2",
                      helper(), "busy-at-exit"},
                     {{"POOLS_CLUSTER_SILENCE_MS", "1000"}});
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.stdout_text, Catch::Contains("left 3000 ms of work"));
  CHECK_THAT(r.stderr_text, !Catch::Contains("rank 0 sent nothing"));
  CHECK_THAT(r.stderr_text, !Catch::Contains("did not stop"));
}

TEST_CASE("cluster launch: ranks that run different programs are refused clearly", "[cluster]") {
  const auto other = pools_test::env_path("POOLS_MULTIPROCESS_HELPER");
  const auto r = run({"mpirun", "-np", "2", helper(), "mismatch", ":", "-np", "1", other});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.stdout_text, Catch::Contains("refused: cluster pool: worker rank 2"));
  CHECK_THAT(r.stdout_text, Catch::Contains("runs another executable"));
}

TEST_CASE("cluster launch: POOLS_RANK_THREADS=2 runs two tasks at once on a rank", "[cluster]") {
  pools_test::TempDir dir("cluster-threads");
  const auto r = run({"mpirun", "-x", "POOLS_RANK_THREADS=2", "-np", "3", helper(), "rank-threads",
                      dir.path.string()});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.stdout_text, Catch::Contains("two tasks ran at once on rank 1"));
}
