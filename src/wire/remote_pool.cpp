#include "wire/remote_pool.hpp"

#include <cstring>

#include <fmt/core.h>

#include "multiprocess/remote_process.hpp"
#include "wire/remote_call.hpp"
#include "wire/reply.hpp"

namespace pools::detail {

using wire::FrameKind;

std::string RemoteUnit::describe() const {
  return batch.empty() ? fmt::format("task '{}'", task_name(task))
                       : fmt::format("a chunk of {} tasks", batch.size());
}

std::string encode_hook_call(void (*fn)()) {
  if (!fn) return {};
  std::string out;
  using F = void (*)();
  encode_call<F, void>(out, fn);
  return out;
}

void append_call_frame(std::string& out, const RemoteUnit& u) {
  if (u.batch.empty()) {
    wire::append_frame(out, FrameKind::call, u.seq, u.call->payload);
    return;
  }
  // call_batch: u32 count, then per call u32 length + the encoded call.
  const std::size_t start = out.size();
  std::size_t size = 4;
  for (const auto& s : u.batch) size += 4 + s.call->payload.size();
  out.reserve(start + wire::header_size + size);
  out.resize(start + wire::header_size + 4);
  put_u32(out.data() + start + wire::header_size, static_cast<std::uint32_t>(u.batch.size()));
  for (const auto& s : u.batch) {
    char len[4];
    put_u32(len, static_cast<std::uint32_t>(s.call->payload.size()));
    out.append(len, 4);
    out += s.call->payload;
  }
  const auto h = wire::encode_header(
      {FrameKind::call_batch, 0, u.seq, static_cast<std::uint32_t>(size)});
  std::memcpy(out.data() + start, h.data(), wire::header_size);
}

// ---- submitting ------------------------------------------------------------------

void RemotePool::submit(TaskState* s) {
  // add_task encodes every call on these pools; a plain node cannot cross.
  refuse(s);
}

void RemotePool::submit_remote(TaskState* s, RemoteCall* call) {
  // Counted before the check, as in the other pools: shutdown stops accepting
  // and then waits for the count, so no task is counted and then lost.
  active_.fetch_add(1, std::memory_order_seq_cst);
  if (!accepting()) {
    count_out(1);
    if (call->dispose) call->dispose(call);
    refuse(s);
  }
  attach_poll(call);
  std::vector<RemoteUnit> one(1);
  one[0].task = s;
  one[0].call = call;
  post(std::move(one));
}

void RemotePool::submit_remote_batch(const std::vector<RemoteSubmission>& calls,
                                     std::size_t chunk_size) {
  if (calls.empty()) return;
  active_.fetch_add(calls.size(), std::memory_order_seq_cst);
  if (!accepting()) {
    count_out(calls.size());
    return PoolBase::submit_remote_batch(calls, chunk_size);  // refuses each
  }
  if (chunk_size == 0) chunk_size = 1;
  for (const RemoteSubmission& c : calls) attach_poll(c.call);
  std::vector<RemoteUnit> units;
  units.reserve((calls.size() + chunk_size - 1) / chunk_size);
  for (std::size_t i = 0; i < calls.size(); i += chunk_size) {
    RemoteUnit& u = units.emplace_back();
    const std::size_t end = std::min(calls.size(), i + chunk_size);
    if (end - i == 1) {
      u.task = calls[i].task;
      u.call = calls[i].call;
    } else {
      u.batch.assign(calls.begin() + static_cast<long>(i), calls.begin() + static_cast<long>(end));
    }
  }
  post(std::move(units));
}

void RemotePool::submit_process(TaskState* s) {
  RemoteCall* call;
  try {
    call = make_command_call(static_cast<ProcessNode*>(s));
  } catch (...) {
    drop_unqueued(s);
    throw;
  }
  submit_remote(s, call);
}

// ---- completing ------------------------------------------------------------------

void RemotePool::count_out(std::size_t n) noexcept {
  if (active_.fetch_sub(n, std::memory_order_acq_rel) == n) {
    std::lock_guard lock(idle_mutex_);
    idle_cv_.notify_all();
  }
}

void RemotePool::wait_completion() noexcept {
  {
    std::unique_lock lock(idle_mutex_);
    idle_cv_.wait(lock, [&] { return active_.load(std::memory_order_acquire) == 0; });
  }
  report_unobserved_failures(false);
}

void RemotePool::settle(TaskState* t, RemoteCall* c, bool ok, std::string_view result,
                        std::exception_ptr error) {
  if (ok) {
    ok = c->settle(t, result, nullptr);
  } else {
    c->settle(t, {}, std::move(error));
  }
  std::string().swap(c->payload);  // an 8 MB argument need not live as long as the handle
  if (c->dispose) c->dispose(c);
  finish(t, ok);
  count_out(1);
}

void RemotePool::settle_reply(TaskState* t, RemoteCall* c, FrameKind kind, std::string_view bytes,
                              const ReplySource& from) {
  try {
    if (kind == FrameKind::result) return settle(t, c, true, bytes, nullptr);
    if (kind == FrameKind::error) {
      std::string type, what;
      decode(bytes, "an error reply", type, what);
      return settle(t, c, false, {},
                    std::make_exception_ptr(
                        RemoteError(type, what, from.pid, std::string(from.host), from.rank)));
    }
    std::string why;
    decode(bytes, "a refusal", why);
    settle(t, c, false, {},
           std::make_exception_ptr(
               Error(fmt::format("{} refused task '{}': {}", from.name, task_name(t), why))));
  } catch (const std::exception& e) {
    settle(t, c, false, {}, std::make_exception_ptr(Error(e.what())));
  }
}

void RemotePool::settle_frame(RemoteUnit& u, const wire::Frame& f, const ReplySource& from) {
  const FrameKind kind = f.header.kind;
  if (u.batch.empty()) {
    if (kind == FrameKind::result_batch) throw wire::WireError("a batch reply to a single call");
    settle_reply(u.task, u.call, kind, f.payload, from);
    return;
  }
  if (kind != FrameKind::result_batch) throw wire::WireError("a single reply to a batch");
  std::size_t i = 0;
  for_each_reply_item(f.payload, [&](FrameKind k, std::string_view bytes) {
    if (i >= u.batch.size()) throw wire::WireError("a batch reply with too many items");
    settle_reply(u.batch[i].task, u.batch[i].call, k, bytes, from);
    ++i;
  });
  if (i != u.batch.size()) {
    // Unanswered calls of the chunk cannot be told apart from run ones.
    const auto error = std::make_exception_ptr(Error("a batch reply with too few items"));
    for (; i < u.batch.size(); ++i) settle(u.batch[i].task, u.batch[i].call, false, {}, error);
  }
}

void RemotePool::drop_cancelled(TaskState* t, RemoteCall* c) {
  t->ops->discard(t);
  if (c->dispose) c->dispose(c);
  if (hooks_active()) [[unlikely]] notify_dropped(t);
  release(t);  // cancel() completed it
  count_out(1);
}

bool RemotePool::claim(RemoteUnit& u) {
  if (u.claimed) return true;
  u.claimed = true;
  if (u.batch.empty()) {
    if (try_start(u.task)) return true;
    drop_cancelled(u.task, u.call);
    return false;
  }
  std::erase_if(u.batch, [&](RemoteSubmission& s) {
    if (try_start(s.task)) return false;
    drop_cancelled(s.task, s.call);
    return true;
  });
  return !u.batch.empty();
}

void RemotePool::announce(RemoteUnit& u, WorkerId worker) {
  if (u.announced) return;
  u.announced = true;
  u.for_each([&](TaskState* t, RemoteCall*) { notify_started(t, worker); });
}

void RemotePool::fail_unit(RemoteUnit& u, const std::exception_ptr& error) {
  u.for_each([&](TaskState* t, RemoteCall* c) {
    if (!u.claimed && !try_start(t)) {
      drop_cancelled(t, c);
      return;
    }
    settle(t, c, false, {}, error);
  });
}

void RemotePool::fail_unit_stopped_at_close(RemoteUnit& u, const std::exception_ptr& error) {
  u.for_each([&](TaskState* t, RemoteCall*) {
    if (u.claimed || t->load_status() == TaskStatus::pending) note_at_close(t, true);  // not one cancelled meanwhile
  });
  fail_unit(u, error);
}

void RemotePool::cancel_unit(RemoteUnit& u, const std::string& why) {
  u.for_each([&](TaskState* t, RemoteCall* c) {
    if (!u.claimed) {
      cancel_at_close(t);
      drop_cancelled(t, c);  // by us or by its owner
      return;
    }
    // Claimed for a worker that was lost before it ran it.
    note_at_close(t, false);
    settle(t, c, false, {},
           std::make_exception_ptr(Cancelled(fmt::format(
               "task '{}' (id {}) was cancelled before it started: {}", task_name(t), t->id, why))));
  });
}

}  // namespace pools::detail
