// The wire format (src/wire/frame.hpp): header layout, round trips, the
// incremental decoder under every way of chunking a stream, and each rejection.
#include <catch2/catch.hpp>

#include "wire/frame.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using Catch::Matchers::Contains;
using namespace pools::wire;

namespace {

struct Expected {
  FrameKind kind;
  std::uint64_t task_id;
  std::string payload;
};

std::string frame(FrameKind kind, std::uint64_t task_id, std::string_view payload) {
  std::string out;
  append_frame(out, kind, task_id, payload);
  return out;
}

std::string header_bytes(const FrameHeader& h) {
  const auto b = encode_header(h);
  return {b.data(), b.size()};
}

std::string random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// `count` frames of random kinds and ids; a quarter of the payloads are empty,
// the rest up to `max_len` bytes (mostly short).
std::vector<Expected> random_frames(std::mt19937_64& rng, std::size_t count, std::size_t max_len) {
  std::vector<Expected> frames;
  for (std::size_t i = 0; i < count; ++i) {
    const auto kind = static_cast<FrameKind>(1 + rng() % 11);
    std::size_t len = 0;
    switch (rng() % 8) {
      case 0: case 1: len = 0; break;
      case 7: len = rng() % (max_len + 1); break;
      default: len = rng() % (std::min<std::size_t>(max_len, 100) + 1); break;
    }
    frames.push_back({kind, rng(), random_bytes(rng, len)});
  }
  return frames;
}

std::string encode_all(const std::vector<Expected>& frames) {
  std::string out;
  for (const auto& f : frames) append_frame(out, f.kind, f.task_id, f.payload);
  return out;
}

enum class Chunking { one_byte, random_feed, prepare_commit };

// Feeds `stream` the chosen way (chunks up to max_chunk bytes), takes every
// frame as soon as it is complete and checks it against `expected`.
void decode_and_check(std::string_view stream, const std::vector<Expected>& expected, Chunking how,
                      std::mt19937_64& rng, std::size_t max_chunk,
                      std::uint32_t max_payload = default_max_payload) {
  FrameDecoder dec(max_payload);
  std::size_t pos = 0, taken = 0;
  while (pos < stream.size()) {
    std::size_t n = how == Chunking::one_byte ? 1 : 1 + rng() % max_chunk;
    n = std::min(n, stream.size() - pos);
    if (how == Chunking::prepare_commit) {
      char* room = dec.prepare(1 + rng() % max_chunk);
      n = std::min(n, dec.prepared_size());  // as a read() would return
      std::copy_n(stream.data() + pos, n, room);
      dec.commit(n);
    } else {
      dec.feed(stream.data() + pos, n);
    }
    pos += n;
    while (auto f = dec.next()) {
      REQUIRE(taken < expected.size());
      const auto& e = expected[taken++];
      REQUIRE(f->header.kind == e.kind);
      REQUIRE(f->header.task_id == e.task_id);
      REQUIRE(f->header.flags == 0);
      REQUIRE(f->header.length == e.payload.size());
      REQUIRE(f->payload == e.payload);
    }
  }
  REQUIRE(taken == expected.size());
  REQUIRE(dec.offset() == stream.size());
  REQUIRE(dec.buffered() == 0);
  REQUIRE_NOTHROW(dec.finish());
}

// A decoder that has taken one good frame (34 bytes) and holds `bad` after it,
// so that an error names byte 34.
const std::string at_34 = "(frame at byte 34)";
FrameDecoder after_good_frame(std::string_view bad, std::uint32_t max_payload = default_max_payload) {
  FrameDecoder dec(max_payload);
  const auto good = frame(FrameKind::hello, 1, "0123456789");
  dec.feed(good.data(), good.size());
  dec.feed(bad.data(), bad.size());
  REQUIRE(dec.next());
  return dec;
}

// Every call after the first error throws that error (which says `says` and
// names byte 34) again, word for word.
void require_poisoned(FrameDecoder& dec, const std::string& says) {
  std::string first;
  try {
    (void)dec.next();
    FAIL("the decoder is not poisoned");
  } catch (const WireError& e) {
    first = e.what();
  }
  REQUIRE_THAT(first, Contains(says) && Contains(at_34));
  REQUIRE_THROWS_WITH(dec.next(), first);
  REQUIRE_THROWS_WITH(dec.feed("PLWF", 4), first);
  REQUIRE_THROWS_WITH(dec.prepare(1), first);
  REQUIRE_THROWS_WITH(dec.finish(), first);
  REQUIRE_THROWS_AS(dec.next(), WireError);
  REQUIRE_THROWS_AS(dec.next(), pools::Error);
}

// A header with a good check, whatever its fields say.
std::string header_with(std::uint8_t kind, std::uint16_t flags, std::uint32_t length) {
  return header_bytes({static_cast<FrameKind>(kind), flags, 7, length});
}

}  // namespace

TEST_CASE("wire: kinds have names, and only FrameKind values are known", "[wire]") {
  const std::array<std::string_view, 11> names = {"hello", "call", "result", "error", "reject", "stop",
                                                  "bye", "call_batch", "result_batch", "job", "job_result"};
  for (std::uint8_t k = 1; k <= 11; ++k) {
    REQUIRE(is_known_kind(k));
    REQUIRE(to_string(static_cast<FrameKind>(k)) == names[k - 1]);
  }
  for (std::uint8_t k : {0, 12, 200, 255}) {
    REQUIRE_FALSE(is_known_kind(k));
    REQUIRE(to_string(static_cast<FrameKind>(k)) == "unknown");
  }
}

TEST_CASE("wire: the header layout, byte for byte", "[wire]") {
  // magic, version 1, kind result (3), flags 0, task id and length little-endian,
  // FNV-1a 32 of the 20 bytes before it (0x3ed2a31c) little-endian.
  const unsigned char expected[header_size] = {
      0x50, 0x4c, 0x57, 0x46, 0x01, 0x03, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
      0x04, 0x03, 0x02, 0x01, 0xc3, 0xb2, 0xa1, 0x00, 0x1c, 0xa3, 0xd2, 0x3e};
  const FrameHeader h{FrameKind::result, 0, 0x0102030405060708, 0x00a1b2c3};
  const auto b = encode_header(h);
  REQUIRE(std::equal(b.begin(), b.end(), expected, expected + header_size,
                     [](char a, unsigned char e) { return static_cast<unsigned char>(a) == e; }));

  const auto d = decode_header(b.data());
  REQUIRE(d.kind == FrameKind::result);
  REQUIRE(d.flags == 0);
  REQUIRE(d.task_id == 0x0102030405060708);
  REQUIRE(d.length == 0x00a1b2c3);

  const auto f = frame(FrameKind::stop, 9, "xyz");
  REQUIRE(f.size() == header_size + 3);
  REQUIRE(f.substr(header_size) == "xyz");
  REQUIRE(decode_header(f.data()).length == 3);
}

TEST_CASE("wire: every kind round-trips, with empty and binary payloads", "[wire]") {
  std::vector<Expected> frames;
  for (std::uint8_t k = 1; k <= 11; ++k) {
    const auto kind = static_cast<FrameKind>(k);
    frames.push_back({kind, k * 0x0101010101010101ull, std::string(k, static_cast<char>(0x80 + k))});
    frames.push_back({kind, ~std::uint64_t{0} - k, ""});
  }
  frames.push_back({FrameKind::call, 0, std::string("\0PLWF\0", 6)});
  std::mt19937_64 rng(1);
  decode_and_check(encode_all(frames), frames, Chunking::random_feed, rng, 64);
}

TEST_CASE("wire: thousands of random frames decode under any chunking", "[wire]") {
  std::mt19937_64 rng(20240607);
  SECTION("one byte at a time") {
    const auto frames = random_frames(rng, 2000, 300);
    decode_and_check(encode_all(frames), frames, Chunking::one_byte, rng, 1);
  }
  SECTION("random chunk sizes") {
    for (std::size_t max_chunk : {7, 100, 5000, 200000}) {
      const auto frames = random_frames(rng, 3000, 70000);
      decode_and_check(encode_all(frames), frames, Chunking::random_feed, rng, max_chunk);
    }
  }
  SECTION("prepare and commit, as when reading a descriptor") {
    for (std::size_t max_chunk : {3, 64, 4096, 100000}) {
      const auto frames = random_frames(rng, 3000, 70000);
      decode_and_check(encode_all(frames), frames, Chunking::prepare_commit, rng, max_chunk);
    }
  }
}

TEST_CASE("wire: large frames (8 MiB, 64 MiB) in random chunks", "[wire]") {
  std::mt19937_64 rng(64);
  for (std::size_t mib : {8, 64}) {
    const std::vector<Expected> frames = {{FrameKind::result, 1, random_bytes(rng, mib << 20)},
                                          {FrameKind::bye, 2, ""}};
    const auto stream = encode_all(frames);
    decode_and_check(stream, frames, Chunking::random_feed, rng, 1 << 20);
    decode_and_check(stream, frames, Chunking::prepare_commit, rng, 1 << 18);
    // A payload of exactly max_payload is allowed.
    decode_and_check(stream, frames, Chunking::random_feed, rng, 1 << 20,
                     static_cast<std::uint32_t>(mib << 20));
  }
}

TEST_CASE("wire: a frame stays valid until the next call on the decoder", "[wire]") {
  const std::string a(10000, 'a');
  const std::string b(5000, 'b');
  const auto stream = frame(FrameKind::result, 1, a) + frame(FrameKind::result, 2, b);
  // Frame a, then more of b than a's header: moving b's bytes to the front
  // at the end of next() would overwrite a's payload.
  FrameDecoder dec;
  dec.feed(stream.data(), header_size + a.size() + 200);
  const auto fa = dec.next();
  REQUIRE(fa);
  // Const calls in between do not count.
  REQUIRE(dec.buffered() == 200);
  REQUIRE(dec.offset() == header_size + a.size());
  REQUIRE(fa->payload == a);

  const std::size_t rest = header_size + a.size() + 200;
  dec.feed(stream.data() + rest, stream.size() - rest);
  const auto fb = dec.next();
  REQUIRE(fb);
  REQUIRE(fb->payload == b);
  REQUIRE_FALSE(dec.next());
  REQUIRE(dec.offset() == stream.size());
}

TEST_CASE("wire: the buffer stays small on a long stream", "[wire]") {
  // An endless run of one 1024-byte frame, fed in chunks that rarely end on a
  // frame boundary, so that some bytes are nearly always left over.
  const auto one = frame(FrameKind::call, 3, std::string(1000, 'x'));
  const auto run = one + one + one + one;
  FrameDecoder dec;
  std::size_t fed = 0, taken = 0;
  for (std::size_t i = 0; i < 10000; ++i) {
    const std::size_t n = 1000 + i % 2000;
    dec.feed(run.data() + fed % one.size(), n);
    fed += n;
    while (dec.next()) ++taken;
    REQUIRE(dec.prepared_size() + dec.buffered() < (64u << 10));
  }
  REQUIRE(taken == fed / one.size());
}

TEST_CASE("wire: a header alone does not allocate the length it announces", "[wire]") {
  FrameDecoder dec;
  const auto h = header_with(3, 0, 512u << 20);
  dec.feed(h.data(), h.size());
  dec.feed("0123456789", 10);
  REQUIRE_FALSE(dec.next());
  REQUIRE(dec.prepared_size() + dec.buffered() < (1u << 20));
}

TEST_CASE("wire: prepare gives at least the room asked for", "[wire]") {
  FrameDecoder dec;
  for (std::size_t min : {1, 100, 5000, 1 << 20}) {
    char* room = dec.prepare(min);
    REQUIRE(room != nullptr);
    REQUIRE(dec.prepared_size() >= min);
  }
  REQUIRE(dec.buffered() == 0);
  REQUIRE_NOTHROW(dec.finish());
}

TEST_CASE("wire: decode_header checks magic, version, check, kind, flags, length in that order",
          "[wire]") {
  auto h = header_with(3, 0, 10);
  SECTION("magic first, printable-escaped") {
    h[0] = '\0';
    h[1] = '\x01';
    h[4] = 9;  // a bad version too: the magic is reported
    REQUIRE_THROWS_WITH(decode_header(h.data()),
                        Contains("not a pools stream") && Contains(R"("\x00\x01WF")"));
  }
  SECTION("version before the check") {
    h[4] = 2;
    REQUIRE_THROWS_WITH(decode_header(h.data()), Contains("version 2") && Contains("supports version 1"));
  }
  SECTION("the check before the kind") {
    h[5] = 42;
    REQUIRE_THROWS_WITH(decode_header(h.data()), Contains("header check mismatch"));
  }
  SECTION("then kind, flags and length") {
    REQUIRE_THROWS_WITH(decode_header(header_with(42, 1, 100).data(), 10), Contains("unknown frame kind 42"));
    REQUIRE_THROWS_WITH(decode_header(header_with(2, 1, 100).data(), 10), Contains("unknown flags 0x0001"));
    REQUIRE_THROWS_WITH(decode_header(header_with(2, 0, 100).data(), 10), Contains("oversized frame"));
  }
  SECTION("length against max_payload") {
    REQUIRE(decode_header(h.data(), 10).length == 10);
    REQUIRE_THROWS_WITH(decode_header(h.data(), 9), Contains("oversized frame: 10 bytes, the limit is 9"));
  }
}

namespace {

std::string changed(std::string s, std::size_t at, char byte) {
  s[at] = byte;
  return s;
}

// Who reports a bad stream: next() as soon as the header is in, or finish()
// (after next() has said that it needs more bytes, or without asking it).
enum class Found { by_next, by_finish_after_next, by_finish };

struct Rejection {
  const char* name;
  std::string bad;  // what follows a good 34-byte frame
  const char* says;
  Found found = Found::by_next;
  std::uint32_t max_payload = default_max_payload;
};

}  // namespace

TEST_CASE("wire: the decoder rejects bad input, names the byte, and stays poisoned", "[wire]") {
  const auto good = header_with(2, 0, 0);
  const Rejection rejections[] = {
      {"bad magic", "GET / HTTP/1.1\r\nHost: example\r\n\r\n", R"(not a pools stream: the magic is "GET ")"},
      {"bad version", changed(good, 4, 7), "unsupported wire version 7 (this build supports version 1)"},
      {"bad header check", changed(good, 10, good[10] ^ 1), "header check mismatch"},
      {"unknown kind", header_with(42, 0, 0), "unknown frame kind 42"},
      {"kind 0", header_with(0, 0, 0), "unknown frame kind 0"},
      {"non-zero flags", header_with(2, 4, 0), "unknown flags 0x0004"},
      {"oversized", header_with(2, 0, 101), "oversized frame: 101 bytes, the limit is 100", Found::by_next, 100},
      {"truncated header", good.substr(0, 10), "truncated header: got 10 of 24 bytes",
       Found::by_finish_after_next},
      {"truncated payload", frame(FrameKind::job, 5, std::string(50, 'j')).substr(0, header_size + 5),
       "truncated frame: the stream ended inside a job frame, got 29 of 74 bytes", Found::by_finish_after_next},
      {"a bad header that only finish() sees", header_with(2, 1, 0), "unknown flags 0x0001", Found::by_finish},
      {"a whole frame not taken", frame(FrameKind::stop, 5, "s"), "25 bytes left over", Found::by_finish},
  };
  for (const auto& r : rejections) {
    DYNAMIC_SECTION(r.name) {
      auto dec = after_good_frame(r.bad, r.max_payload);
      if (r.found == Found::by_next) {
        REQUIRE_THROWS_WITH(dec.next(), Contains(r.says) && Contains(at_34));
      } else {
        if (r.found == Found::by_finish_after_next) REQUIRE_FALSE(dec.next());
        REQUIRE_THROWS_WITH(dec.finish(), Contains(r.says) && Contains(at_34));
      }
      require_poisoned(dec, r.says);
    }
  }
}
