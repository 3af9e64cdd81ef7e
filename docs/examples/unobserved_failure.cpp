// A failure nobody waits for is not lost: pools reports it on stderr.
#include <pools/pools.hpp>

#include <stdexcept>

int main(int argc, char** argv) {
  pools::init(argc, argv);
  pools::PoolBase& pool = pools::get_thread_pool("fire and forget", 1);

  // The handle is dropped at once: no wait() will ever see this failure.
  (void)pool.add_task("write report", [] { throw std::runtime_error("disk full"); });

  // wait_completion() does not throw; it (or at the latest the pool's
  // shutdown) prints one line on stderr with the task's name, the pool and
  // the error, e.g.
  //   pools: task 'write report' (id 1) in thread pool 'fire and forget' failed
  //   and nobody waited for it: std::runtime_error: disk full
  pool.wait_completion();
  pool.shutdown();
  return 0;
}
