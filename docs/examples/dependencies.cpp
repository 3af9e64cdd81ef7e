// Tasks that run after other tasks: results flow from dependencies to the
// task that needs them; a failure skips what depends on it.
#include <pools/pools.hpp>

#include <cstdio>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

int measure(int tile) {
  if (tile == 7) throw std::runtime_error("tile 7 is unreadable");
  return tile * 10;
}

int main(int argc, char** argv) {
  pools::init(argc, argv);
  pools::PoolBase& pool = pools::get_thread_pool("pipeline", 2);

  // Two independent tasks, then one that needs both results.
  auto width = pool.add_task("width", measure, 3);
  auto height = pool.add_task("height", measure, 4);
  auto area = pools::add_task_after(pool, "area", pools::after(width, height),
                                    [](int w, int h) { return w * h; });
  std::printf("area = %d\n", area.wait_return());

  // A fan-in over a list: the results arrive as a vector, in the list's order.
  std::vector<pools::Task<int>> tiles;
  for (int t = 0; t < 5; ++t) tiles.push_back(pool.add_task("tile", measure, t));
  auto total = pools::add_task_after(pool, "total", pools::after_all(tiles), [](std::vector<int> v) {
    return std::accumulate(v.begin(), v.end(), 0);
  });
  std::printf("total = %d\n", total.wait_return());

  // A failed dependency skips the task (and whatever depends on it).
  auto broken = pool.add_task("tile 7", measure, 7);
  auto report = pools::add_task_after(pool, "report", pools::after(broken),
                                      [](int v) { return std::to_string(v); });
  try {
    report.wait();
  } catch (const pools::Skipped& e) {
    std::printf("%s\n", e.what());
  }
  try {
    broken.wait();
  } catch (const std::runtime_error& e) {
    std::printf("the cause: %s\n", e.what());
  }
}
