// Worker hooks, the pool's state, and nornir_pools' stage helpers.
#include <pools/pools.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

// A multiprocess pool's hooks are plain functions: they run in the workers.
int cache_ready = 0;
void warm_cache() { cache_ready = 1; }  // e.g. load a model once per worker process
int worker_pid() { return static_cast<int>(::getpid()); }

int main(int argc, char** argv) {
  pools::init(argc, argv);
  int problems = 0;

  // Each worker thread runs on_start before its first task and on_stop as it
  // exits; closures are fine on thread-kind pools.
  std::atomic<int> connections{0};
  pools::ThreadPoolOptions options;
  options.threads = 2;
  options.on_start = [&] { ++connections; };  // e.g. open a database connection
  options.on_stop = [&] { --connections; };   // ...and close it
  pools::PoolBase& stage1 = pools::get_thread_pool("stage 1", options);
  for (int i = 0; i < 10; ++i) (void)stage1.add_task("work", [] {});
  stage1.wait_completion();
  std::printf("stage 1 is %s with %d connections\n",
              std::string(pools::to_string(stage1.state())).c_str(), connections.load());

  // A warm multiprocess pool: its workers outlive the stage.
  pools::MultiprocessOptions mp;
  mp.workers = 2;
  mp.on_start = warm_cache;
  pools::PoolBase& warm = pools::get_multiprocess_pool("warm", mp);
  const int pid_before = warm.add_task("pid", worker_pid).wait_return();
  // It is `starting` until every worker process has run on_start (one task
  // done says only that one has).
  while (warm.state() == pools::PoolState::starting)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));

  // The end of a stage: wait for everything, close the thread-kind pools,
  // keep the worker processes.
  pools::release_stage_pools();
  std::printf("after the stage: stage 1 is %s with %d connections, warm is %s\n",
              std::string(pools::to_string(stage1.state())).c_str(), connections.load(),
              std::string(pools::to_string(warm.state())).c_str());
  if (stage1.state() != pools::PoolState::stopped || connections != 0) ++problems;
  if (warm.state() != pools::PoolState::running) ++problems;

  // The next stage reuses the same worker processes: no new on_start.
  std::vector<pools::Task<int>> pids;
  for (int i = 0; i < 8; ++i) pids.push_back(warm.add_task("pid", worker_pid));
  bool same_worker_seen = false;
  for (auto& t : pids) same_worker_seen |= t.wait_return() == pid_before;
  if (!same_worker_seen) ++problems;

  // The fast close: queued tasks are cancelled (and listed on stderr), not
  // run; a task running on a thread is waited for (threads cannot be killed).
  pools::PoolBase& late = pools::get_thread_pool("late", 1);
  std::atomic<bool> started{false}, release{false};
  auto blocker = late.add_task("blocker", [&] {
    started = true;
    while (!release) std::this_thread::yield();
  });
  auto queued = late.add_task("queued", [] { std::printf("never printed\n"); });
  while (!started) std::this_thread::yield();
  std::thread closer([] { pools::close_pools_now(); });
  while (late.state() != pools::PoolState::draining) std::this_thread::yield();
  release = true;
  closer.join();
  try {
    queued.wait();
    ++problems;
  } catch (const pools::Cancelled& e) {
    std::printf("%s\n", e.what());
  }
  blocker.wait();
  return problems == 0 ? 0 : 1;
}
