// Waiting for several tasks: wait_all, wait_any, wait_for, join.
#include <pools/pools.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  pools::init(argc, argv);
  pools::PoolBase& pool = pools::get_thread_pool("waiting", 2);
  int problems = 0;

  // wait_all: blocks until all finished, then rethrows the first failure in order.
  std::vector<pools::Task<int>> batch;
  for (int i = 0; i < 8; ++i) batch.push_back(pool.add_task("item", [i] { return i; }));
  pools::wait_all(batch);

  // ... also over handles of different result types.
  auto a = pool.add_task("a", [] { return 1.5; });
  auto b = pool.add_task("b", [] {});
  pools::wait_all(a, b);

  // wait_any: the index of a finished task; never throws the tasks' failures.
  std::vector<pools::Task<int>> race;
  race.push_back(pool.add_task("slow", [] { std::this_thread::sleep_for(200ms); return 1; }));
  race.push_back(pool.add_task("fast", [] { return 2; }));
  std::size_t first = pools::wait_any(race);
  std::printf("task '%s' finished first\n", race[first].name().c_str());

  // wait_for: a bounded wait; true once the task finished (failed or not).
  auto sleepy = pool.add_task("sleepy", [] { std::this_thread::sleep_for(300ms); });
  if (sleepy.wait_for(1ms)) ++problems;  // still sleeping
  if (!sleepy.wait_for(60s)) ++problems;

  // join: wait without rethrowing; then look with failed().
  auto bad = pool.add_task("bad", [] { throw std::logic_error("no"); });
  bad.join();
  if (!bad.failed()) ++problems;

  // id() is unique in the process; name() is what add_task was given.
  std::printf("'%s' has id %llu\n", bad.name().c_str(), (unsigned long long)bad.id());
  try {
    bad.wait();
    ++problems;
  } catch (const std::logic_error&) {
  }
  return problems == 0 ? 0 : 1;
}
