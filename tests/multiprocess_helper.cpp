// A program that uses a multiprocess pool and records its worker processes,
// for the exit-time tests in multiprocess_pool.cpp:
//
//   multiprocess_helper exit RECORD     run tasks, record the pids, return from main
//   multiprocess_helper idle RECORD     run tasks, record the pids, then sleep (to be killed)
//   multiprocess_helper busy RECORD     record the pids while every worker runs a long task,
//                                       then sleep (to be killed)
//
// RECORD gets one pid per line: the fork server, then each worker; then a
// line "ready".
#include <pools/pools.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <thread>

#include "multiprocess/fork_server.hpp"

namespace {

int worker_pid(int) { return static_cast<int>(::getpid()); }

int sleep_then_pid(int seconds) {
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  return static_cast<int>(::getpid());
}

int usage() {
  std::fprintf(stderr, "usage: multiprocess_helper exit|idle|busy RECORD\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  pools::init(argc, argv);
  if (argc != 3) return usage();
  const std::string mode = argv[1];
  std::ofstream record(argv[2]);
  pools::MultiprocessOptions options;
  options.workers = 3;
  options.max_in_flight = 1;  // one call per worker: every worker gets one
  pools::PoolBase& pool = pools::get_multiprocess_pool("helper", options);
  record << pools::detail::ForkServer::instance().pid() << "\n";
  if (mode == "busy") {
    // A worker reports its pid through a file before it sleeps: 3 long calls,
    // one per worker (max_in_flight 1), then the pids are known from the replies
    // of 3 quick calls made first on the same workers.
    std::set<int> pids;
    std::vector<pools::Task<int>> quick;
    for (int i = 0; i < 3; ++i) quick.push_back(pool.add_task("pid", worker_pid, i));
    for (auto& t : quick) pids.insert(t.wait_return());
    for (int pid : pids) record << pid << "\n";
    for (int i = 0; i < 3; ++i) pool.add_task("long", sleep_then_pid, 600);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    record << "ready" << std::endl;
    for (;;) ::pause();
  }
  std::set<int> pids;
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 30; ++i) tasks.push_back(pool.add_task("pid", worker_pid, i));
  for (auto& t : tasks) pids.insert(t.wait_return());
  for (int pid : pids) record << pid << "\n";
  record << "ready" << std::endl;
  if (mode == "exit") return 0;  // close_pools runs at exit
  if (mode == "idle") {
    for (;;) ::pause();
  }
  return usage();
}
