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

// Appends this worker's pid to `path`, then waits (at most 60 s) until 3
// workers did: with one call in flight per worker, 3 such calls run on 3
// different workers.
int record_and_meet(std::string path) {
  std::ofstream(path, std::ios::app) << ::getpid() << std::endl;
  for (int i = 0; i < 6000; ++i) {
    std::ifstream in(path);
    int lines = 0;
    for (int pid; in >> pid;) ++lines;
    if (lines >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return static_cast<int>(::getpid());
}

// Appends this worker's pid to `path`, then sleeps.
int record_then_sleep(std::string path, int seconds) {
  std::ofstream(path, std::ios::app) << ::getpid() << std::endl;
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
    // 3 long calls, one per worker (max_in_flight 1: none finishes, so each
    // worker gets one); each worker appends its pid to a file before it
    // sleeps. (Quick calls could not tell: a worker that answers fast may get
    // the next one too.)
    const std::string busy = std::string(argv[2]) + ".busy";
    for (int i = 0; i < 3; ++i) pool.add_task("long", record_then_sleep, busy, 600);
    std::set<int> pids;
    while (pids.size() < 3) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      std::ifstream in(busy);
      pids.clear();
      for (int pid; in >> pid;) pids.insert(pid);
    }
    for (int pid : pids) record << pid << "\n";
    record << "ready" << std::endl;
    for (;;) ::pause();
  }
  std::set<int> pids;
  std::vector<pools::Task<int>> tasks;
  const std::string met = std::string(argv[2]) + ".met";
  for (int i = 0; i < 3; ++i) tasks.push_back(pool.add_task("pid", record_and_meet, met));
  for (auto& t : tasks) pids.insert(t.wait_return());
  for (int pid : pids) record << pid << "\n";
  record << "ready" << std::endl;
  if (mode == "exit") return 0;  // close_pools runs at exit
  if (mode == "idle") {
    for (;;) ::pause();
  }
  return usage();
}
