// Results may be move-only (or large): the first wait_return() moves them out.
#include <pools/pools.hpp>

#include <array>
#include <cstdio>
#include <memory>
#include <vector>

int main(int argc, char** argv) {
  pools::init(argc, argv);
  pools::PoolBase& pool = pools::global_thread_pool();
  int problems = 0;

  // Arguments are moved into the task, so they may be move-only too.
  auto owner = pool.add_task("own", [](std::unique_ptr<int> p) { return p; },
                             std::make_unique<int>(7));
  std::unique_ptr<int> p = owner.wait_return();
  if (!p || *p != 7) ++problems;
  try {
    owner.wait_return();  // moved out already
    ++problems;
  } catch (const pools::Error& e) {
    std::printf("second wait_return of a move-only result: %s\n", e.what());
  }

  // A copyable result is copied: every wait_return() returns it.
  auto big = pool.add_task("big", [] { return std::vector<double>(1'000'000, 1.0); });
  if (big.wait_return().size() != 1'000'000 || big.wait_return().size() != 1'000'000) ++problems;

  return problems == 0 ? 0 : 1;
}
