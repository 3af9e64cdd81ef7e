#include "wire/serve.hpp"

#include <exception>
#include <string>

#include <pools/detail/remote_call.hpp>

#include "wire/remote_call.hpp"
#include "wire/reply.hpp"

namespace pools::detail {
namespace {

// Runs one resolved call, appending its reply item (see reply.hpp) to out.
void run_call(const wire::ResolvedCall& call, std::string& out) {
  const std::size_t start = begin_reply_item(out);
  try {
    call.invoke(call.args, call.fn, out);
    end_reply_item(out, start, wire::FrameKind::result);
  } catch (const std::exception& e) {
    out.resize(start + reply_item_header);
    std::string type = wire::current_exception_type(), what = e.what();
    encode(out, type, what);
    end_reply_item(out, start, wire::FrameKind::error);
  } catch (...) {
    out.resize(start + reply_item_header);
    std::string type = wire::current_exception_type(), what;
    encode(out, type, what);
    end_reply_item(out, start, wire::FrameKind::error);
  }
}

void reject_item(std::string& out, const std::string& why) {
  const std::size_t start = begin_reply_item(out);
  std::string copy = why;
  encode(out, copy);
  end_reply_item(out, start, wire::FrameKind::reject);
}

void run_encoded(std::string_view payload, std::string& out) {
  wire::ResolvedCall call;
  try {
    call = wire::resolve_call(payload);
  } catch (const std::exception& e) {
    reject_item(out, e.what());
    return;
  }
  run_call(call, out);
}

}  // namespace

std::size_t serve_frame(const wire::Frame& f, std::string& out) {
  out.assign(wire::header_size, '\0');
  if (f.header.kind == wire::FrameKind::call) {
    run_encoded(f.payload, out);
    return seal_single_reply(out, f.header.task_id);
  }
  for_each_batch_call(f.payload, [&](std::string_view call) { run_encoded(call, out); });
  seal_frame(out, wire::FrameKind::result_batch, f.header.task_id);
  return 0;
}

bool run_hook_call(std::string_view encoded, std::string& out, std::size_t& reply_offset) {
  out.assign(wire::header_size, '\0');
  run_encoded(encoded, out);
  if (reply_item_kind(out, wire::header_size) == wire::FrameKind::result) return true;
  reply_offset = seal_single_reply(out, 0);
  return false;
}

}  // namespace pools::detail
