#include "input.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>

namespace pools_run {

std::vector<std::string> read_lines(std::istream& in) {
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(std::move(line));
  return lines;
}

std::vector<std::string> read_lines_of(const std::string& path) {
  if (path == "-") {
    auto lines = read_lines(std::cin);
    if (std::cin.bad()) throw InputError("cannot read stdin");
    return lines;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot open input file " + path + ": " + std::strerror(errno));
  auto lines = read_lines(f);
  if (f.bad()) throw InputError("cannot read input file " + path + ": " + std::strerror(errno));
  return lines;
}

namespace {

/// The separator as a literal string, when it contains no regex syntax.
std::optional<std::string> as_literal(const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < sep.size(); ++i) {
    char c = sep[i];
    if (c == '\\' && i + 1 < sep.size()) {
      char n = sep[++i];
      if (n == 't') out += '\t';
      else if (n == 'n') out += '\n';
      else if (std::strchr("\\.^$|?*+()[]{}/,:;- ", n)) out += n;
      else return std::nullopt;  // \s, \d, ...: a real regex
    } else if (std::strchr(".^$|?*+()[]{}\\", c)) {
      return std::nullopt;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

ColumnSplitter::ColumnSplitter(std::string separator) {
  if (separator.empty()) throw InputError("--colsep needs a non-empty separator");
  if (auto lit = as_literal(separator)) {
    literal_ = std::move(*lit);
    return;
  }
  try {
    regex_.emplace(separator, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw InputError("--colsep " + separator + " is not a valid regular expression: " + e.what());
  }
}

std::vector<std::string> ColumnSplitter::split(const std::string& line) const {
  std::vector<std::string> cols;
  if (!regex_) {
    std::size_t start = 0;
    for (auto pos = line.find(literal_); pos != std::string::npos; pos = line.find(literal_, start)) {
      cols.push_back(line.substr(start, pos - start));
      start = pos + literal_.size();
    }
    cols.push_back(line.substr(start));
    return cols;
  }
  auto start = line.cbegin();
  std::smatch m;
  while (start != line.cend() && std::regex_search(start, line.cend(), m, *regex_)) {
    if (m.length(0) == 0) break;  // a separator that matches nothing would loop
    cols.emplace_back(start, m[0].first);
    start = m[0].second;
  }
  cols.emplace_back(start, line.cend());
  return cols;
}

Product::Product(std::vector<Source> sources) : sources_(std::move(sources)) {
  size_ = sources_.empty() ? 0 : 1;
  for (const auto& s : sources_) {
    if (s.empty()) {
      size_ = 0;
      break;
    }
    if (size_ > std::numeric_limits<std::uint64_t>::max() / s.size())
      throw InputError("the input sources combine into more than 2^64 jobs");
    size_ *= s.size();
  }
}

std::vector<std::string> Product::at(std::uint64_t index) const {
  // Mixed radix, the last source the least significant digit.
  std::vector<std::size_t> pick(sources_.size());
  for (std::size_t k = sources_.size(); k-- > 0;) {
    pick[k] = static_cast<std::size_t>(index % sources_[k].size());
    index /= sources_[k].size();
  }
  std::vector<std::string> args;
  for (std::size_t k = 0; k < sources_.size(); ++k) {
    const auto& cols = sources_[k][pick[k]];
    args.insert(args.end(), cols.begin(), cols.end());
  }
  return args;
}

}  // namespace pools_run
