// The layout of calls and replies inside frames, shared by the worker (which
// writes replies) and the pool (which reads them).
//
//   call          payload: one encoded call (CallIdentity + arguments)
//   call_batch    payload: u32 count, then per call: u32 length + encoded call
//   result/error/reject   the reply to a call: the result, encode(type, what),
//                 or encode(message)
//   result_batch  payload: per call: u8 kind (result/error/reject) + u32
//                 length + the same bytes as the single reply
//   hello         payload: encode(pid, host, executable identity)
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "wire/frame.hpp"

namespace pools::detail {

inline constexpr std::size_t reply_item_header = 5;

inline void put_u32(char* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline std::uint32_t get_u32(const char* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

/// Reserves an item header at the end of out; returns where the item starts.
inline std::size_t begin_reply_item(std::string& out) {
  const std::size_t start = out.size();
  out.resize(start + reply_item_header);
  return start;
}
/// Fills in the item header once its bytes were appended.
inline void end_reply_item(std::string& out, std::size_t start, wire::FrameKind kind) {
  out[start] = static_cast<char>(kind);
  put_u32(out.data() + start + 1,
          static_cast<std::uint32_t>(out.size() - start - reply_item_header));
}
inline wire::FrameKind reply_item_kind(const std::string& out, std::size_t start) {
  return static_cast<wire::FrameKind>(out[start]);
}

/// out = [header_size spare bytes][payload]: writes the frame header.
inline void seal_frame(std::string& out, wire::FrameKind kind, std::uint64_t id) {
  const auto h = wire::encode_header(
      {kind, 0, id, static_cast<std::uint32_t>(out.size() - wire::header_size)});
  std::memcpy(out.data(), h.data(), wire::header_size);
}

/// out = [header_size spare bytes][one reply item]: makes it a frame of the
/// item's kind whose payload is the item's bytes, without moving them: the
/// frame header overwrites the spare bytes' tail and the item header. Returns
/// the offset at which the frame starts.
inline std::size_t seal_single_reply(std::string& out, std::uint64_t id) {
  const auto kind = reply_item_kind(out, wire::header_size);
  const std::size_t start = reply_item_header;
  const auto h = wire::encode_header(
      {kind, 0, id, static_cast<std::uint32_t>(out.size() - wire::header_size - reply_item_header)});
  std::memcpy(out.data() + start, h.data(), wire::header_size);
  return start;
}

/// Calls fn(kind, bytes) for each item of a result_batch payload, or fn(call)
/// for each call of a call_batch payload. Throws wire::WireError when the
/// lengths do not add up.
template <class Fn>
void for_each_reply_item(std::string_view payload, Fn&& fn) {
  std::size_t at = 0;
  while (at < payload.size()) {
    if (payload.size() - at < reply_item_header)
      throw wire::WireError("malformed result batch: a truncated item header");
    const auto kind = static_cast<wire::FrameKind>(payload[at]);
    const std::uint32_t len = get_u32(payload.data() + at + 1);
    at += reply_item_header;
    if (payload.size() - at < len) throw wire::WireError("malformed result batch: an item overruns it");
    fn(kind, payload.substr(at, len));
    at += len;
  }
}

template <class Fn>
void for_each_batch_call(std::string_view payload, Fn&& fn) {
  if (payload.size() < 4) throw wire::WireError("malformed call batch: no count");
  const std::uint32_t count = get_u32(payload.data());
  std::size_t at = 4;
  for (std::uint32_t i = 0; i < count; ++i) {
    if (payload.size() - at < 4) throw wire::WireError("malformed call batch: truncated");
    const std::uint32_t len = get_u32(payload.data() + at);
    at += 4;
    if (payload.size() - at < len) throw wire::WireError("malformed call batch: a call overruns it");
    fn(payload.substr(at, len));
    at += len;
  }
  if (at != payload.size()) throw wire::WireError("malformed call batch: bytes left over");
}

}  // namespace pools::detail
