// libFuzzer target for the frame decoder (src/wire/frame.hpp) and the payload
// decoders of pools-run's job streams (tools/pools_run/job_stream.hpp); built
// and run by tools/fuzz-wire.sh. Input: byte 0 says how many chunk-size bytes follow
// (1 to 8); each is a chunk of the rest fed to a FrameDecoder in turn (bits
// 0-6: size, 0 meaning all that is left; bit 7: through prepare()/commit()
// instead of feed()). A WireError is expected; any other exception, a crash or
// a broken invariant (abort) is a bug.
#include "wire/frame.hpp"

#include "job_stream.hpp"  // tools/pools_run: pools-run's job stream payloads

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace pools::wire;

namespace {

constexpr std::uint32_t max_payload = 1u << 20;  // small, so that oversize is reached

#define FUZZ_CHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) {                                                        \
      std::fprintf(stderr, "wire_fuzz: invariant broken: %s\n", #cond); \
      std::abort();                                                       \
    }                                                                     \
  } while (0)

// The frame must be exactly the bytes it came from, and decode again to itself.
void check_frame(const Frame& f, const std::uint8_t* stream, std::uint64_t at) {
  FUZZ_CHECK(f.payload.size() == f.header.length);
  FUZZ_CHECK(f.header.length <= max_payload);
  FUZZ_CHECK(f.header.flags == 0);
  FUZZ_CHECK(is_known_kind(static_cast<std::uint8_t>(f.header.kind)));
  std::string again;
  append_frame(again, f.header.kind, f.header.task_id, f.payload);
  FUZZ_CHECK(again.size() == header_size + f.header.length);
  FUZZ_CHECK(std::memcmp(again.data(), stream + at, again.size()) == 0);

  FrameDecoder d(max_payload);
  d.feed(again.data(), again.size());
  const auto g = d.next();
  FUZZ_CHECK(g.has_value());
  FUZZ_CHECK(g->header.kind == f.header.kind && g->header.task_id == f.header.task_id);
  FUZZ_CHECK(g->header.length == f.header.length && g->payload == f.payload);
  FUZZ_CHECK(!d.next().has_value());
  d.finish();
}

// pools-run's job stream payloads: a decoder either refuses the bytes with a
// StreamError or returns what encodes back to exactly those bytes.
void check_job_stream_payload(const Frame& f) {
  namespace js = pools_run::stream;
  const std::uint64_t id = f.header.task_id;
  std::string again;
  try {
    switch (f.header.kind) {
      case FrameKind::hello:
        try {
          again = js::encode_jobs_header(js::decode_jobs_header(f.payload));
        } catch (const js::StreamError&) {
          js::append_results_header(again, js::decode_results_header(f.payload));
          again = std::string(again, header_size);
        }
        break;
      case FrameKind::job: {
        js::append_job(again, js::decode_job(id, f.payload));
        again.erase(0, header_size);
        break;
      }
      case FrameKind::job_result:
        js::append_result(again, js::decode_result(id, f.payload));
        again.erase(0, header_size);
        break;
      case FrameKind::stop:
        js::append_jobs_end(again, js::decode_jobs_end(f.payload));
        again.erase(0, header_size);
        break;
      case FrameKind::bye:
        js::append_results_end(again, js::decode_results_end(f.payload));
        again.erase(0, header_size);
        break;
      default:
        return;
    }
  } catch (const js::StreamError&) {
    return;
  }
  FUZZ_CHECK(again == f.payload);
}

// After an error every call throws it again.
void check_poisoned(FrameDecoder& dec, const std::string& what) {
  FUZZ_CHECK(what.find(" (frame at byte " + std::to_string(dec.offset()) + ")") != std::string::npos);
  try {
    (void)dec.next();
    FUZZ_CHECK(!"next() after an error did not throw");
  } catch (const WireError& e) {
    FUZZ_CHECK(what == e.what());
  }
  try {
    dec.finish();
    FUZZ_CHECK(!"finish() after an error did not throw");
  } catch (const WireError& e) {
    FUZZ_CHECK(what == e.what());
  }
}

// decode_header and the decoder judge the first header alike.
void check_first_header(const std::uint8_t* stream, std::size_t len) {
  if (len < header_size) return;
  const char* p = reinterpret_cast<const char*>(stream);
  std::string alone, in_decoder;
  try {
    (void)decode_header(p, max_payload);
  } catch (const WireError& e) {
    alone = e.what();
  }
  FrameDecoder d(max_payload);
  d.feed(p, header_size);
  try {
    (void)d.next();
  } catch (const WireError& e) {
    in_decoder = e.what();
  }
  FUZZ_CHECK(alone.empty() ? in_decoder.empty() : in_decoder == alone + " (frame at byte 0)");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t n_sizes = std::min<std::size_t>(data[0] % 8 + 1, size - 1);
  const std::uint8_t* sizes = data + 1;
  const std::uint8_t* stream = data + 1 + n_sizes;
  const std::size_t len = size - 1 - n_sizes;

  check_first_header(stream, len);

  FrameDecoder dec(max_payload);
  std::size_t pos = 0;
  std::uint64_t at = 0;  // stream offset of the next frame
  try {
    for (std::size_t i = 0; pos < len; ++i) {
      const std::uint8_t s = n_sizes ? sizes[i % n_sizes] : 0;
      const std::size_t n = (s & 0x7f) == 0 ? len - pos : std::min<std::size_t>(s & 0x7f, len - pos);
      if (s & 0x80) {
        char* room = dec.prepare(n);
        FUZZ_CHECK(dec.prepared_size() >= n);
        std::memcpy(room, stream + pos, n);
        dec.commit(n);
      } else {
        dec.feed(reinterpret_cast<const char*>(stream + pos), n);
      }
      pos += n;
      while (const auto f = dec.next()) {
        check_frame(*f, stream, at);
        check_job_stream_payload(*f);
        at += header_size + f->header.length;
        FUZZ_CHECK(dec.offset() == at);
      }
      FUZZ_CHECK(at + dec.buffered() == pos);
    }
    dec.finish();
    FUZZ_CHECK(dec.buffered() == 0 && dec.offset() == len);
  } catch (const WireError& e) {
    check_poisoned(dec, e.what());
  }
  return 0;
}
