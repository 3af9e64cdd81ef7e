// The receiving end of calls: runs call and call_batch frames and writes the
// reply frames. Shared by the multiprocess pool's workers and the cluster
// pool's worker ranks.
#pragma once

#include <string>
#include <string_view>

#include "wire/frame.hpp"

namespace pools::detail {

/// Runs a call or call_batch frame and writes its reply frame (result, error
/// or reject; result_batch for a batch) into out, replacing what out held.
/// Returns the offset in out at which the frame starts. A task's exception
/// becomes an error reply; a call that cannot be verified a reject. Throws
/// wire::WireError when a batch's layout is malformed.
std::size_t serve_frame(const wire::Frame& f, std::string& out);

/// Runs an encoded call of a void() function (an initializer or finalizer).
/// True when it returned; otherwise out holds its error reply frame (task id
/// 0) from the returned offset, through reply_offset.
bool run_hook_call(std::string_view encoded, std::string& out, std::size_t& reply_offset);

}  // namespace pools::detail
