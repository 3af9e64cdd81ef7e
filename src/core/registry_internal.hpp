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

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace pools::detail {

/// The registry's lookup-or-create, for pool kinds whose getters live beside
/// their backend (the cluster pool): returns the pool called `name` (empty:
/// the kind's global pool) or registers make(name, size). `size` is checked
/// and resolved as for every kind; same_options, when given, must accept an
/// existing pool. Throws pools::Error as get_thread_pool does.
PoolBase& registered_pool(PoolKind kind, std::string_view name, std::optional<std::size_t> size,
                          const std::function<std::unique_ptr<PoolBase>(std::string, std::size_t)>& make,
                          const std::function<bool(PoolBase&)>& same_options = nullptr);

}  // namespace pools::detail
