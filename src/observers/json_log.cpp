// The JsonLog observer: one JSON object per line for every task event.
#include <pools/observer.hpp>
#include <pools/pool_base.hpp>

#include <cerrno>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

namespace pools {

namespace {

// The length of the valid UTF-8 sequence at the start of s, or 0 (overlong
// forms, surrogates and code points above U+10FFFF are invalid, as RFC 3629 says).
std::size_t utf8_sequence(std::string_view s) noexcept {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  std::size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < n || b(1) < lo || b(1) > hi) return 0;
  for (std::size_t i = 2; i < n; ++i)
    if (b(i) < 0x80 || b(i) > 0xBF) return 0;
  return n;
}

std::string iso_time(std::chrono::system_clock::time_point t) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  long frac = static_cast<long>(us % 1'000'000);
  if (frac < 0) {
    frac += 1'000'000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20 || c == 0x7F) {
            out += fmt::format("\\u{:04x}", c);
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    if (const std::size_t n = utf8_sequence(s.substr(i))) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\\ufffd";  // a byte that is not valid UTF-8
      ++i;
    }
  }
  out += '"';
}

std::string JsonLog::format(const TaskEvent& e) {
  std::string line = "{\"event\":";
  append_json_string(line, to_string(e.kind));
  line += ",\"time\":";
  append_json_string(line, iso_time(e.time));
  if (e.pool) {
    line += ",\"pool\":";
    append_json_string(line, e.pool->name());
    line += ",\"pool_kind\":";
    append_json_string(line, to_string(e.pool->kind()));
  }
  line += fmt::format(",\"task_id\":{},\"task\":", e.task_id);
  append_json_string(line, e.task_name);
  if (e.kind != TaskEventKind::queued) {
    line += ",\"worker_kind\":";
    append_json_string(line, to_string(e.worker.kind));
    if (e.worker.kind != WorkerKind::none) line += fmt::format(",\"worker\":{}", e.worker.id);
  }
  if (e.kind == TaskEventKind::finished) {
    line += ",\"outcome\":";
    append_json_string(line, to_string(e.outcome));
    line += fmt::format(",\"duration_s\":{:.9f}",
                        std::chrono::duration<double>(e.duration).count());
    if (e.command_pid != 0) line += fmt::format(",\"command_pid\":{}", e.command_pid);
    if (!e.error.empty()) {
      line += ",\"error\":";
      append_json_string(line, e.error);
    }
  }
  line += '}';
  return line;
}

JsonLog::JsonLog(const std::string& path) : file_(std::fopen(path.c_str(), "w")), owns_(true) {
  if (!file_)
    throw Error(fmt::format("JsonLog: cannot open '{}': {}", path, std::strerror(errno)));
}

JsonLog::JsonLog(std::FILE* out) : file_(out) {
  if (!out) throw Error("JsonLog: the FILE* is null");
}

JsonLog::JsonLog(std::ostream& out) : stream_(&out) {}

JsonLog::~JsonLog() {
  if (owns_ && file_) std::fclose(file_);
}

void JsonLog::write(const TaskEvent& e) {
  std::string line = format(e);
  line += '\n';
  std::lock_guard lock(mutex_);
  if (stream_) {
    stream_->write(line.data(), static_cast<std::streamsize>(line.size()));
    stream_->flush();
  } else {
    std::fwrite(line.data(), 1, line.size(), file_);
    std::fflush(file_);
  }
}

}  // namespace pools
