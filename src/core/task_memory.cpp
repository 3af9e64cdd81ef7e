// Task node memory: per-thread free lists of fixed-size blocks, exchanged in
// batches through a shared depot so a node freed on a worker is reused by the
// submitting thread without a lock per task. Also hands out task ids.
#include <pools/detail/task_state.hpp>

#include <array>
#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>

#include <sys/mman.h>

#include "core/tls.hpp"

namespace pools::detail {
namespace {

// Nodes above the largest class come from operator new.
constexpr std::array<std::size_t, 4> class_sizes{64, 128, 256, 512};
constexpr std::uint32_t batch_size = 256;
constexpr std::size_t chunk_bytes = 256 * 1024;

#if defined(__SANITIZE_ADDRESS__)
// Let AddressSanitizer see every node's lifetime.
constexpr bool use_cache = false;
#else
constexpr bool use_cache = true;
#endif

struct FreeBlock {
  FreeBlock* next;
  FreeBlock* next_batch;  // valid on the first block of a batch in the depot
  std::uint32_t count;    // idem
};

int class_of(std::size_t size) noexcept {
  for (std::size_t i = 0; i < class_sizes.size(); ++i)
    if (size <= class_sizes[i]) return static_cast<int>(i);
  return -1;
}

// Shared depot of full batches, one list per class. Never destroyed, so nodes
// may be freed during static destruction.
struct Depot {
  std::mutex mutex;
  std::array<FreeBlock*, class_sizes.size()> batches{};
};
Depot& depot() {
  static Depot* d = new Depot;
  return *d;
}

// The calling thread's cache. Trivially destructible so it stays usable after
// the thread's destructors ran (then `dead` routes everything to the depot).
struct Cache {
  std::array<FreeBlock*, class_sizes.size()> head;
  std::array<std::uint32_t, class_sizes.size()> count;
  bool registered;
  bool dead;
};
POOLS_FAST_TLS thread_local Cache cache{};

void give_to_depot(int cls, FreeBlock* first, std::uint32_t n) {
  first->count = n;
  auto& d = depot();
  std::lock_guard lock(d.mutex);
  first->next_batch = d.batches[cls];
  d.batches[cls] = first;
}

// Moves every block of the calling thread to the depot at thread exit.
struct CacheFlusher {
  ~CacheFlusher() {
    for (int cls = 0; cls < static_cast<int>(class_sizes.size()); ++cls) {
      if (cache.head[cls]) give_to_depot(cls, cache.head[cls], cache.count[cls]);
      cache.head[cls] = nullptr;
      cache.count[cls] = 0;
    }
    cache.dead = true;
  }
};

void register_flusher() {
  thread_local CacheFlusher flusher;
  (void)flusher;
  cache.registered = true;
}

// Takes a batch from the depot or carves a fresh chunk. Returns a list.
FreeBlock* refill(int cls, std::uint32_t& n) {
  auto& d = depot();
  {
    std::lock_guard lock(d.mutex);
    if (FreeBlock* b = d.batches[cls]) {
      d.batches[cls] = b->next_batch;
      n = b->count;
      return b;
    }
  }
  // Chunks are never returned to the system: the pool of blocks is bounded by
  // the peak number of live tasks.
  const std::size_t size = class_sizes[cls];
  const std::size_t per_chunk = chunk_bytes / size;
  // mmap, not malloc: a chunk is exactly its pages, with no allocator header.
  void* mem = ::mmap(nullptr, chunk_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::bad_alloc();
  char* chunk = static_cast<char*>(mem);
  FreeBlock* head = nullptr;
  for (std::size_t i = per_chunk; i-- > 0;) {
    auto* b = reinterpret_cast<FreeBlock*>(chunk + i * size);
    b->next = head;
    head = b;
  }
  n = static_cast<std::uint32_t>(per_chunk);
  return head;
}

}  // namespace

void* allocate_node(std::size_t size) {
  const int cls = class_of(size);
  if (!use_cache || cls < 0) return ::operator new(size);
  Cache& c = cache;
  if (!c.registered && !c.dead) register_flusher();
  if (FreeBlock* b = c.head[cls]) {
    c.head[cls] = b->next;
    --c.count[cls];
    return b;
  }
  std::uint32_t n = 0;
  FreeBlock* list = refill(cls, n);
  if (c.dead) {
    // No cache any more: keep one block, return the rest.
    if (list->next) give_to_depot(cls, list->next, n - 1);
    return list;
  }
  c.head[cls] = list->next;
  c.count[cls] = n - 1;
  return list;
}

void free_node(void* p, std::size_t size) noexcept {
  const int cls = class_of(size);
  if (!use_cache || cls < 0) {
    ::operator delete(p);
    return;
  }
  auto* b = static_cast<FreeBlock*>(p);
  Cache& c = cache;
  if (c.dead) {
    b->next = nullptr;
    give_to_depot(cls, b, 1);
    return;
  }
  b->next = c.head[cls];
  c.head[cls] = b;
  if (++c.count[cls] >= 2 * batch_size) {
    // Hand the older half to the depot, where the submitting thread finds it.
    FreeBlock* keep_last = b;
    for (std::uint32_t i = 1; i < batch_size; ++i) keep_last = keep_last->next;
    // The list may be longer than 2 batches: a fresh chunk holds more.
    FreeBlock* spill = keep_last->next;
    keep_last->next = nullptr;
    const std::uint32_t spilled = c.count[cls] - batch_size;
    c.count[cls] = batch_size;
    give_to_depot(cls, spill, spilled);
  }
  if (!c.registered) register_flusher();
}

namespace {
// add_task_after: the id the next task made on this thread takes (ReuseTaskId
// in src/core/observer.cpp); 0: none.
POOLS_FAST_TLS thread_local std::uint64_t reused_id = 0;
}  // namespace

void note_reused_id(std::uint64_t id) noexcept { reused_id = id; }
std::uint64_t pending_reused_id() noexcept { return reused_id; }

std::uint64_t next_task_id() noexcept {
  if (reused_id != 0) [[unlikely]] return std::exchange(reused_id, 0);
  // Ids come in blocks per thread, so submitting threads do not contend.
  constexpr std::uint64_t block = 1024;
  static std::atomic<std::uint64_t> next_block{1};
  POOLS_FAST_TLS thread_local std::uint64_t next = 0;
  POOLS_FAST_TLS thread_local std::uint64_t end = 0;
  if (next == end) {
    next = next_block.fetch_add(block, std::memory_order_relaxed);
    end = next + block;
  }
  return next++;
}

}  // namespace pools::detail
