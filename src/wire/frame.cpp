#include "wire/frame.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace pools::wire {
namespace {

constexpr char magic[4] = {'P', 'L', 'W', 'F'};
// Reading from a pipe wants room for a useful read even when prepare(1) is asked.
constexpr std::size_t min_capacity = 4096;

// Byte by byte, so that the layout does not depend on the host's endianness.
template <class T>
void put_le(char* p, T v) noexcept {
  for (std::size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

template <class T>
T get_le(const char* p) noexcept {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

std::uint32_t fnv1a32(const char* p, std::size_t n) noexcept {
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 16777619u;
  }
  return h;
}

// The magic as seen, readable in a message whatever the bytes are.
std::string escaped(const char* p, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(p[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
      s += static_cast<char>(c);
    else
      s += fmt::format("\\x{:02x}", c);
  }
  return s;
}

// What is wrong with the header at p (empty if nothing: no allocation on the
// good path); fills h when it is good. The checks run in the documented order.
std::string header_problem(const char* p, std::uint32_t max_payload, FrameHeader& h) {
  if (std::memcmp(p, magic, sizeof magic) != 0)
    return fmt::format("not a pools stream: the magic is \"{}\", expected \"PLWF\"", escaped(p, 4));
  if (const auto v = static_cast<std::uint8_t>(p[4]); v != version)
    return fmt::format("unsupported wire version {} (this build supports version {})", v, version);
  // Before trusting kind, flags or length: a stream that lost its framing
  // would otherwise make us wait for (or allocate) a bogus length.
  if (const auto want = get_le<std::uint32_t>(p + 20), got = fnv1a32(p, 20); want != got)
    return fmt::format("header check mismatch: the header says {:#010x}, its bytes give {:#010x} "
                       "(corrupt data or a stream that lost its framing)", want, got);
  if (const auto k = static_cast<std::uint8_t>(p[5]); !is_known_kind(k))
    return fmt::format("unknown frame kind {}", k);
  if (const auto f = get_le<std::uint16_t>(p + 6); f != 0)
    return fmt::format("unknown flags {:#06x} (no flag is defined in version {})", f, version);
  if (const auto n = get_le<std::uint32_t>(p + 16); n > max_payload)
    return fmt::format("oversized frame: {} bytes, the limit is {}", n, max_payload);
  h.kind = static_cast<FrameKind>(static_cast<std::uint8_t>(p[5]));
  h.flags = 0;
  h.task_id = get_le<std::uint64_t>(p + 8);
  h.length = get_le<std::uint32_t>(p + 16);
  return {};
}

// The size of the frame starting at p when its header is in and good, else 0.
std::size_t frame_size_hint(const char* p, std::size_t live, std::uint32_t max_payload) {
  FrameHeader h;
  if (live < header_size || !header_problem(p, max_payload, h).empty()) return 0;
  return header_size + h.length;
}

}  // namespace

std::string_view to_string(FrameKind kind) noexcept {
  switch (kind) {
    case FrameKind::hello: return "hello";
    case FrameKind::call: return "call";
    case FrameKind::result: return "result";
    case FrameKind::error: return "error";
    case FrameKind::reject: return "reject";
    case FrameKind::stop: return "stop";
    case FrameKind::bye: return "bye";
    case FrameKind::call_batch: return "call_batch";
    case FrameKind::result_batch: return "result_batch";
    case FrameKind::job: return "job";
    case FrameKind::job_result: return "job_result";
  }
  return "unknown";
}

bool is_known_kind(std::uint8_t k) noexcept {
  return to_string(static_cast<FrameKind>(k)) != "unknown";
}

std::array<char, header_size> encode_header(const FrameHeader& h) noexcept {
  std::array<char, header_size> b{};
  std::memcpy(b.data(), magic, sizeof magic);
  b[4] = static_cast<char>(version);
  b[5] = static_cast<char>(h.kind);
  put_le(b.data() + 6, h.flags);
  put_le(b.data() + 8, h.task_id);
  put_le(b.data() + 16, h.length);
  put_le(b.data() + 20, fnv1a32(b.data(), 20));
  return b;
}

void append_frame(std::string& out, FrameKind kind, std::uint64_t task_id, std::string_view payload) {
  if (payload.size() > UINT32_MAX)
    throw WireError(fmt::format("pools wire: a payload of {} bytes does not fit a frame (at most {})",
                                payload.size(), UINT32_MAX));
  const auto header = encode_header({kind, 0, task_id, static_cast<std::uint32_t>(payload.size())});
  out.append(header.data(), header.size());
  out.append(payload);
}

FrameHeader decode_header(const char* bytes, std::uint32_t max_payload) {
  FrameHeader h;
  if (auto problem = header_problem(bytes, max_payload, h); !problem.empty())
    throw WireError("pools wire: " + problem);
  return h;
}

FrameDecoder::FrameDecoder(std::uint32_t max_payload) : max_payload_(max_payload) {}

void FrameDecoder::feed(const char* data, std::size_t n) {
  char* room = prepare(n);
  if (n != 0) std::memcpy(room, data, n);  // data may be null when n is 0
  commit(n);
}

char* FrameDecoder::prepare(std::size_t min_bytes) {
  if (!poisoned_.empty()) throw WireError(poisoned_);
  compact();
  if (buf_.size() - end_ < min_bytes) {
    const std::size_t live = end_ - begin_;
    if (min_bytes > buf_.max_size() - live) throw std::length_error("pools wire: prepare() too large");
    // Doubling keeps growth amortized O(1) per byte; but not past the end of
    // a frame whose header is in (a 1 GiB frame gets 1 GiB, not 2), nor
    // ahead of the bytes (a header alone does not allocate its length).
    std::size_t cap = std::max(2 * buf_.size(), min_capacity);
    if (const auto frame = frame_size_hint(buf_.data() + begin_, live, max_payload_); frame >= live + min_bytes)
      cap = std::min(cap, frame);
    cap = std::max(cap, live + min_bytes);
    std::string bigger(cap, '\0');
    std::memcpy(bigger.data(), buf_.data() + begin_, live);
    buf_.swap(bigger);
    begin_ = 0;
    end_ = live;
  }
  return buf_.data() + end_;
}

std::size_t FrameDecoder::prepared_size() const noexcept { return buf_.size() - end_; }

void FrameDecoder::commit(std::size_t n) noexcept {
  assert(n <= prepared_size());
  end_ += n;
}

std::optional<Frame> FrameDecoder::next() {
  if (!poisoned_.empty()) throw WireError(poisoned_);
  // Here and not at the end of next(): the frame returned last time is
  // allowed to go now, not before.
  compact();
  const std::size_t live = end_ - begin_;
  if (live < header_size) return std::nullopt;
  const char* p = buf_.data() + begin_;
  Frame f;
  if (auto problem = header_problem(p, max_payload_, f.header); !problem.empty()) {
    poisoned_ = fmt::format("pools wire: {} (frame at byte {})", problem, consumed_);
    throw WireError(poisoned_);
  }
  const std::size_t size = header_size + f.header.length;
  if (live < size) return std::nullopt;
  f.payload = std::string_view(p + header_size, f.header.length);
  begin_ += size;
  consumed_ += size;
  return f;
}

void FrameDecoder::finish() const {
  if (!poisoned_.empty()) throw WireError(poisoned_);
  const std::size_t live = end_ - begin_;
  if (live == 0) return;
  const char* p = buf_.data() + begin_;
  FrameHeader h;
  std::string problem;
  if (live < header_size) {
    problem = fmt::format("truncated header: got {} of {} bytes", live, header_size);
  } else if (problem = header_problem(p, max_payload_, h); problem.empty()) {
    const std::size_t size = header_size + h.length;
    problem = live < size ? fmt::format("truncated frame: the stream ended inside a {} frame, got {} of {} bytes",
                                        to_string(h.kind), live, size)
                          : fmt::format("{} bytes left over: a whole {} frame was not taken with next()",
                                        live, to_string(h.kind));
  }
  poisoned_ = fmt::format("pools wire: {} (frame at byte {})", problem, consumed_);
  throw WireError(poisoned_);
}

std::size_t FrameDecoder::buffered() const noexcept { return end_ - begin_; }

void FrameDecoder::compact() noexcept {
  // Moves the live bytes to the front only once the consumed bytes before them
  // are at least as many: every consumed byte pays for at most one byte moved.
  const std::size_t live = end_ - begin_;
  if (begin_ == 0 || live > begin_) return;
  std::memmove(buf_.data(), buf_.data() + begin_, live);
  begin_ = 0;
  end_ = live;
}

}  // namespace pools::wire
