// What the pool kinds tell the registry.
#pragma once

#include <pools/pool_base.hpp>

namespace pools::detail {

/// Removes pool from the registry (its name is then free). No-op when it is
/// not registered. Never throws.
void unregister_pool(const PoolBase* pool) noexcept;

/// In a worker process forked from the program: forget the program's pools
/// (their threads were not copied), so that a task may make pools of its own.
void forget_pools_after_fork() noexcept;

}  // namespace pools::detail
