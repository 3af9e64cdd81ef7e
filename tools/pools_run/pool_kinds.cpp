#include "pool_kinds.hpp"

#include <algorithm>
#include <array>
#include <string_view>

#include "options.hpp"

namespace pools_run {

namespace {

constexpr std::string_view pool_name = "pools-run";

struct PoolKindEntry {
  std::string_view name;
  pools::PoolBase& (*get)(std::size_t workers);  // nullptr: not in this build
};

// One line per kind. A kind becomes available by giving its getter here.
constexpr std::array pool_kinds = {
    PoolKindEntry{"process", [](std::size_t n) -> pools::PoolBase& { return pools::get_process_pool(pool_name, n); }},
    PoolKindEntry{"thread", [](std::size_t n) -> pools::PoolBase& { return pools::get_thread_pool(pool_name, n); }},
    PoolKindEntry{"serial", [](std::size_t) -> pools::PoolBase& { return pools::get_serial_pool(pool_name); }},
    PoolKindEntry{"multiprocess", [](std::size_t n) -> pools::PoolBase& { return pools::get_multiprocess_pool(pool_name, n); }},
    // Without mpirun (or MPI) this is the multiprocess pool, said once on stderr.
    PoolKindEntry{"cluster", [](std::size_t n) -> pools::PoolBase& {
                    if (pools::in_cluster()) n = std::min(n, pools::cluster_nodes().size() - 1);
                    return pools::get_cluster_pool(pool_name, n);
                  }},
};

}  // namespace

pools::PoolBase& get_pool(const std::string& kind, std::size_t workers) {
  std::string known;
  for (const auto& k : pool_kinds) {
    if (k.name == kind) {
      if (!k.get)
        throw UsageError("--pool " + kind + ": the " + kind +
                         " pool is not available in this build of pools");
      return k.get(workers);
    }
    known += (known.empty() ? "" : ", ") + std::string(k.name);
  }
  throw UsageError("--pool " + kind + ": unknown pool kind (known: " + known + ")");
}

}  // namespace pools_run
