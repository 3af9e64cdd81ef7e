// Pool lifecycle: shutdown, close_pools, and work still queued at exit.
#include <pools/pools.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

std::atomic<int> done{0};

int main(int argc, char** argv) {
  pools::init(argc, argv);
  int problems = 0;

  // shutdown(): finishes queued work, then refuses more. The reference stays
  // valid: pools are never destroyed while the process runs.
  pools::PoolBase& batch = pools::get_thread_pool("batch", 2);
  for (int i = 0; i < 100; ++i) (void)batch.add_task("count", [] { ++done; });
  batch.shutdown();
  if (done != 100 || batch.accepting()) ++problems;
  try {
    (void)batch.add_task("late", [] {});
    ++problems;
  } catch (const pools::Error& e) {
    std::printf("after shutdown: %s\n", e.what());
  }
  // The name is free again: this is a new pool.
  if (&pools::get_thread_pool("batch", 2) == &batch) ++problems;

  // wait_on_all_pools(): every pool idle, all stay usable.
  (void)pools::get_thread_pool("a", 1).add_task("a", [] { ++done; });
  (void)pools::get_thread_pool("b", 1).add_task("b", [] { ++done; });
  pools::wait_on_all_pools();
  if (done != 102) ++problems;

  // close_pools(): wait, then shut down and unregister every pool.
  pools::close_pools();

  // Work still queued when main returns is finished before the process exits.
  (void)pools::global_thread_pool().add_task("at exit", [] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::printf("finished during exit\n");
  });
  std::printf("main returns with %zu task(s) active\n",
              pools::global_thread_pool().num_active_tasks());
  return problems == 0 ? 0 : 1;
}
