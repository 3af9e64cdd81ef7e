// A first pool: add tasks to the global thread pool and collect their results.
#include <pools/pools.hpp>

#include <cstdio>
#include <string>
#include <vector>

int square(int x) { return x * x; }

int main(int argc, char** argv) {
  pools::init(argc, argv);  // first thing in main(); harmless when unused

  pools::PoolBase& pool = pools::global_thread_pool();  // one thread per core

  // add_task(name, function, arguments...) does not block: it returns a handle.
  std::vector<pools::Task<int>> tasks;
  for (int i = 0; i < 10; ++i)
    tasks.push_back(pool.add_task("square " + std::to_string(i), square, i));

  // wait_return() blocks until that task finished and returns its result.
  int sum = 0;
  for (const auto& t : tasks) sum += t.wait_return();

  std::printf("sum of squares 0..9 = %d, computed on %zu threads\n", sum, pool.num_workers());
  return sum == 285 ? 0 : 1;
}  // every pool is closed at exit, after its queued work finished
