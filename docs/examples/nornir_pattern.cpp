// The nornir_pools pattern: code written against PoolBase& runs on any pool.
#include <pools/pools.hpp>

#include <cstdio>
#include <string>
#include <vector>

// Fans the squares of 0..99 out over `pool` and returns them in order.
std::vector<long> squares(pools::PoolBase& pool) {
  std::vector<pools::Task<long>> tasks;
  for (long i = 0; i < 100; ++i)
    tasks.push_back(pool.add_task(std::to_string(i), [](long x) { return x * x; }, i));

  std::vector<long> results;
  for (const auto& t : tasks) results.push_back(t.wait_return());
  return results;
}

int main(int argc, char** argv) {
  pools::init(argc, argv);

  // A named pool: the first call creates it with 4 threads, later calls with the
  // same name (from anywhere in the program) return the same pool.
  auto on_threads = squares(pools::get_thread_pool("squares", 4));

  // To debug or profile, hand the same code the serial pool: every task runs at
  // once, in this thread, under your debugger's breakpoints.
  auto serially = squares(pools::get_serial_pool());

  std::printf("99^2 = %ld on threads, %ld serially\n", on_threads[99], serially[99]);
  return on_threads == serially && on_threads[99] == 99 * 99 ? 0 : 1;
}
