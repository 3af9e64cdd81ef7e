// add_process on the multiprocess pool: the command travels to a worker as a
// call of run_command_in_worker, which runs it there on the worker's own
// process engine, and what it did comes back into the ProcessNode.
#pragma once

#include <pools/detail/remote_call.hpp>

#include "process/process_node.hpp"

namespace pools::detail {

/// An encoded call that runs node's command in a worker; it settles the node
/// and frees itself when the reply comes.
RemoteCall* make_command_call(ProcessNode* node);

}  // namespace pools::detail
