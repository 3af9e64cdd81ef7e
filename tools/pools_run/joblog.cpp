#include "joblog.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>

namespace pools_run {

std::string format_joblog_line(const JoblogEntry& e) {
  using namespace std::chrono;
  double start = duration<double>(e.start.time_since_epoch()).count();
  double runtime = duration<double>(e.runtime).count();
  std::string command;
  for (char c : e.command) {
    if (c == '\n') command += "\\n";
    else command += c;
  }
  return fmt::format("{}\t{}\t{:.3f}\t{:10.3f}\t0\t{}\t{}\t{}\t{}", e.seq, e.host, start, runtime,
                     e.received, e.exitval, e.signal, command);
}

bool JoblogState::done(std::uint64_t seq, bool resume_failed) const {
  auto it = seen.find(seq);
  if (it == seen.end()) return false;
  return resume_failed ? it->second : true;
}

namespace {

std::vector<std::string_view> split_tabs(std::string_view line, std::size_t max_fields) {
  std::vector<std::string_view> fields;
  while (fields.size() + 1 < max_fields) {
    auto tab = line.find('\t');
    if (tab == std::string_view::npos) break;
    fields.push_back(line.substr(0, tab));
    line.remove_prefix(tab + 1);
  }
  fields.push_back(line);
  return fields;
}

template <class Int>
bool parse_int(std::string_view s, Int& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

std::string shorten(std::string_view s) {
  return std::string(s.size() > 80 ? s.substr(0, 77) : s) + (s.size() > 80 ? "..." : "");
}

}  // namespace

JoblogState parse_joblog(std::string_view text, const std::string& name) {
  JoblogState state;
  std::size_t line_no = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (line_no == 1) {
      if (line != joblog_header)
        throw JoblogError(fmt::format(
            "{} is not a joblog: its first line is not GNU parallel's joblog header "
            "(\"Seq<TAB>Host<TAB>Starttime...\"): {}",
            name, shorten(line)));
      continue;
    }
    if (line.empty()) continue;
    auto fields = split_tabs(line, 9);
    std::uint64_t seq = 0;
    if (fields.size() < 2 || !parse_int(fields[0], seq))
      throw JoblogError(fmt::format("the format of joblog {} is wrong at line {}: {}", name,
                                    line_no, shorten(line)));
    int exitval = -1, signal = 0;
    bool ok = fields.size() >= 8 && parse_int(fields[6], exitval) && parse_int(fields[7], signal) &&
              exitval == 0 && signal == 0;
    state.seen[seq] = state.seen[seq] || ok;
  }
  return state;
}

JoblogState read_joblog(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    if (errno == ENOENT) return {};
    throw JoblogError(fmt::format("cannot read joblog {}: {}", path, std::strerror(errno)));
  }
  std::ostringstream text;
  text << f.rdbuf();
  if (f.bad()) throw JoblogError(fmt::format("cannot read joblog {}: {}", path, std::strerror(errno)));
  return parse_joblog(text.str(), path);
}

}  // namespace pools_run
