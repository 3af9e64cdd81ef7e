// The whole public API of pools: #include <pools/pools.hpp>.
#pragma once

#include <pools/cluster.hpp>
#include <pools/as_completed.hpp>
#include <pools/dependencies.hpp>
#include <pools/errors.hpp>
#include <pools/groups.hpp>
#include <pools/lifecycle.hpp>
#include <pools/multiprocess.hpp>
#include <pools/observer.hpp>
#include <pools/pool_base.hpp>
#include <pools/process.hpp>
#include <pools/registry.hpp>
#include <pools/task.hpp>
