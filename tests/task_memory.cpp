// The task node cache: blocks move between threads without being lost,
// handed out twice, or corrupted.
#include <catch2/catch.hpp>

#include <pools/detail/task_state.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

namespace {

// Fills a block with a pattern naming its owner, so overlap shows.
void stamp(void* p, std::size_t size, std::uint64_t tag) {
  auto* words = static_cast<std::uint64_t*>(p);
  for (std::size_t i = 0; i < size / 8; ++i) words[i] = tag;
}
bool stamped(const void* p, std::size_t size, std::uint64_t tag) {
  auto* words = static_cast<const std::uint64_t*>(p);
  for (std::size_t i = 0; i < size / 8; ++i)
    if (words[i] != tag) return false;
  return true;
}

}  // namespace

TEST_CASE("task memory: blocks allocated on one thread and freed on another are reused intact",
          "[core]") {
  constexpr std::size_t size = 64;
  constexpr int rounds = 20;
  constexpr int per_round = 5000;  // several chunks and many batches per round
  for (int r = 0; r < rounds; ++r) {
    std::vector<void*> blocks;
    for (int i = 0; i < per_round; ++i) {
      void* p = pools::detail::allocate_node(size);
      stamp(p, size, static_cast<std::uint64_t>(r) << 32 | static_cast<std::uint64_t>(i));
      blocks.push_back(p);
    }
    // No block was handed out twice.
    std::set<void*> distinct(blocks.begin(), blocks.end());
    REQUIRE(distinct.size() == blocks.size());
    for (int i = 0; i < per_round; ++i)
      REQUIRE(stamped(blocks[i], size, static_cast<std::uint64_t>(r) << 32 | static_cast<std::uint64_t>(i)));
    // Another thread frees them all: they travel back through the depot.
    std::thread([&] {
      for (void* p : blocks) pools::detail::free_node(p, size);
    }).join();
  }
}

TEST_CASE("task memory: many threads allocating and freeing each other's blocks lose nothing",
          "[core]") {
  constexpr int threads = 4;
  constexpr int per_thread = 20000;
  std::vector<std::vector<void*>> made(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        void* p = pools::detail::allocate_node(48 + (i % 3) * 64);  // classes 64, 128, 256
        stamp(p, 48, static_cast<std::uint64_t>(t) << 32 | static_cast<std::uint64_t>(i));
        made[t].push_back(p);
      }
    });
  }
  for (auto& w : workers) w.join();
  workers.clear();
  std::set<void*> all;
  for (int t = 0; t < threads; ++t) {
    for (int i = 0; i < per_thread; ++i)
      REQUIRE(stamped(made[t][i], 48, static_cast<std::uint64_t>(t) << 32 | static_cast<std::uint64_t>(i)));
    all.insert(made[t].begin(), made[t].end());
  }
  REQUIRE(all.size() == static_cast<std::size_t>(threads) * per_thread);
  // Each thread frees the blocks of the next one.
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      auto& list = made[(t + 1) % threads];
      for (int i = 0; i < per_thread; ++i) pools::detail::free_node(list[i], 48 + (i % 3) * 64);
    });
  }
  for (auto& w : workers) w.join();
  // And everything comes back distinct again.
  std::vector<void*> again;
  for (int i = 0; i < threads * per_thread; ++i) again.push_back(pools::detail::allocate_node(64));
  REQUIRE(std::set<void*>(again.begin(), again.end()).size() == again.size());
  for (void* p : again) pools::detail::free_node(p, 64);
}
