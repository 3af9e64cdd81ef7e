// The wire format that every process boundary of pools speaks: the
// multiprocess pool's pipes, the cluster pool's MPI messages and pools-run's
// job streams. A stream is a sequence of frames; a frame is a fixed 24-byte
// header and a payload whose encoding depends on the kind (cereal binary
// archives, see include/pools/detail/remote_call.hpp).
//
//   offset  size  field
//        0     4  magic "PLWF"
//        4     1  version (1)
//        5     1  kind (FrameKind)
//        6     2  flags (little-endian; no flag is defined yet: must be 0)
//        8     8  task id (little-endian)
//       16     4  payload length in bytes (little-endian)
//       20     4  header check: FNV-1a 32 of bytes 0..19 (catches a stream
//                 that lost its framing, before a bogus length is trusted)
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <pools/errors.hpp>

namespace pools::wire {

inline constexpr std::size_t header_size = 24;
inline constexpr std::uint8_t version = 1;
/// The default cap on one payload; a longer one is rejected as oversized.
inline constexpr std::uint32_t default_max_payload = 1u << 30;  // 1 GiB

enum class FrameKind : std::uint8_t {
  hello = 1,        // first frame each way: who is speaking (pid, host, executable)
  call = 2,         // run one function: identity + arguments
  result = 3,       // a call's result
  error = 4,        // a call threw: type name + message
  reject = 5,       // a call was refused (identity not verified, arguments undecodable)
  stop = 6,         // no more calls: finish and leave
  bye = 7,          // the sender is leaving (after stop)
  call_batch = 8,   // run one function on several argument sets (bulk calls)
  result_batch = 9, // one result or error per argument set of a call_batch
  job = 10,         // job streams: a command to run
  job_result = 11,  // job streams: what a command did
};

/// The name of a kind ("call", ...), or "unknown" for a value outside FrameKind.
std::string_view to_string(FrameKind kind) noexcept;
/// True when k is one of the FrameKind values.
bool is_known_kind(std::uint8_t k) noexcept;

struct FrameHeader {
  FrameKind kind{};
  std::uint16_t flags = 0;
  std::uint64_t task_id = 0;
  std::uint32_t length = 0;
};

/// Malformed, truncated or oversized input. what() says what was wrong and at
/// which byte offset of the stream.
class WireError : public Error {
public:
  using Error::Error;
};

/// The 24 header bytes for a frame of that kind, id and payload length.
std::array<char, header_size> encode_header(const FrameHeader& h) noexcept;

/// Appends a whole frame (header, then payload) to out.
void append_frame(std::string& out, FrameKind kind, std::uint64_t task_id, std::string_view payload);

/// Decodes one header. Throws WireError for a bad magic, version, kind, flags,
/// check, or a length above max_payload.
FrameHeader decode_header(const char* bytes, std::uint32_t max_payload = default_max_payload);

/// A frame returned by FrameDecoder: the payload points into the decoder's
/// buffer and stays valid until the next call on the decoder.
struct Frame {
  FrameHeader header;
  std::string_view payload;
};

/// Splits a byte stream into frames, incrementally: feed bytes as they arrive
/// (or read straight into prepare()/commit()), take frames with next().
/// After a WireError the decoder is poisoned: every later call throws again.
class FrameDecoder {
public:
  explicit FrameDecoder(std::uint32_t max_payload = default_max_payload);

  /// Copies bytes in.
  void feed(const char* data, std::size_t n);
  /// Room for at least min_bytes more bytes at the end of the buffer; write
  /// into it, then commit() how many were written. Saves a copy when reading
  /// from a descriptor.
  char* prepare(std::size_t min_bytes);
  std::size_t prepared_size() const noexcept;
  void commit(std::size_t n) noexcept;

  /// The next complete frame, or nullopt when more bytes are needed.
  /// Throws WireError for a malformed header (see decode_header).
  std::optional<Frame> next();

  /// Call at the end of the stream: throws WireError ("truncated ...") when a
  /// partial frame is left over.
  void finish() const;

  /// Bytes buffered and not yet returned as frames.
  std::size_t buffered() const noexcept;
  /// Bytes consumed (returned as frames) since construction: the stream offset.
  std::uint64_t offset() const noexcept { return consumed_; }

private:
  void compact() noexcept;

  std::string buf_;
  std::size_t begin_ = 0;  // first unconsumed byte
  std::size_t end_ = 0;    // one past the last byte fed
  std::uint64_t consumed_ = 0;
  std::uint32_t max_payload_;
  // The message of the first error; mutable because finish() const reports a
  // truncated stream, and that error poisons the decoder like any other.
  mutable std::string poisoned_;
};

}  // namespace pools::wire
