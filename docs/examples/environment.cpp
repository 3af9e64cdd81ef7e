// POOLS_MAX_THREADS caps pool sizes; POOLS_DIAG=1 logs lifecycle events on stderr.
// Its test runs as: POOLS_MAX_THREADS=2 POOLS_DIAG=1 ./environment
#include <pools/pools.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  pools::init(argc, argv);  // reads the environment

  pools::PoolBase& wide = pools::get_thread_pool("wide", 8);
  std::printf("asked for 8 threads, got %zu\n", wide.num_workers());
  (void)wide.add_task("hello", [] {}).wait_return();
  wide.shutdown();  // with POOLS_DIAG=1 the creation, waits and shutdown are logged
  return wide.num_workers() <= 2 ? 0 : 1;
}
