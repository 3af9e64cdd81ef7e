// What the pool kinds tell the registry.
#pragma once

#include <pools/pool_base.hpp>

namespace pools::detail {

/// Removes pool from the registry (its name is then free). No-op when it is
/// not registered. Never throws.
void unregister_pool(const PoolBase* pool) noexcept;

}  // namespace pools::detail
