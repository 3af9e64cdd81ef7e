// --pool: which pools kinds pools-run can run its jobs on.
#pragma once

#include <cstddef>
#include <string>

#include <pools/pools.hpp>

namespace pools_run {

/// The pool pools-run runs its jobs on: the pool of `kind` named "pools-run"
/// with `workers` workers. Throws UsageError for an unknown kind or one that
/// this build does not have.
pools::PoolBase& get_pool(const std::string& kind, std::size_t workers);

}  // namespace pools_run
