// Tasks may add tasks and wait for them: a waiting pool thread runs queued work
// meanwhile, so nested fan-out/fan-in never deadlocks, even on one thread.
#include <pools/pools.hpp>

#include <cstdio>
#include <functional>

long fib(pools::PoolBase& pool, int n) {
  if (n < 2) return n;
  auto child = pool.add_task("fib", fib, std::ref(pool), n - 1);
  long other = fib(pool, n - 2);
  return child.wait_return() + other;  // helps run queued tasks while waiting
}

int main(int argc, char** argv) {
  pools::init(argc, argv);
  pools::PoolBase& pool = pools::get_thread_pool("fib", 1);  // a single thread

  long result = pool.add_task("fib 20", fib, std::ref(pool), 20).wait_return();
  std::printf("fib(20) = %ld on a pool of %zu thread\n", result, pool.num_workers());
  return result == 6765 ? 0 : 1;
}
