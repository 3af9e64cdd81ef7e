#include "input.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>

namespace pools_run {

std::vector<std::string> read_records(std::istream& in, const std::string& delimiter) {
  std::vector<std::string> records;
  if (delimiter.empty()) throw InputError("the input delimiter is empty");
  // getline up to the delimiter's last byte; a record ends where what was
  // read so far ends with the whole delimiter.
  const char last = delimiter.back();
  std::string record, piece;
  while (std::getline(in, piece, last)) {
    record += piece;
    if (in.eof()) break;  // the input ended without a delimiter
    record += last;
    if (record.size() >= delimiter.size() &&
        record.compare(record.size() - delimiter.size(), delimiter.size(), delimiter) == 0) {
      record.resize(record.size() - delimiter.size());
      records.push_back(std::move(record));
      record.clear();
    }
  }
  if (!record.empty()) records.push_back(std::move(record));
  return records;
}

std::vector<std::string> read_records_of(const std::string& path, const std::string& delimiter) {
  if (path == "-") {
    auto records = read_records(std::cin, delimiter);
    if (std::cin.bad()) throw InputError("cannot read stdin");
    return records;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot open input file " + path + ": " + std::strerror(errno));
  auto records = read_records(f, delimiter);
  if (f.bad()) throw InputError("cannot read input file " + path + ": " + std::strerror(errno));
  return records;
}

std::string parse_delimiter(const std::string& text) {
  std::string out;
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    const char n = text[i + 1];
    if (n == 't' || n == 'n' || n == 'r') {
      out += n == 't' ? '\t' : n == 'n' ? '\n' : '\r';
      ++i;
    } else if (octal(n)) {
      std::size_t digits = i + 3 < text.size() && octal(text[i + 2]) && octal(text[i + 3]) ? 3 : 1;
      out += static_cast<char>(std::stoi(text.substr(i + 1, digits), nullptr, 8));
      i += digits;
    } else {
      out += text[i];  // any other backslash is itself, as in GNU parallel
    }
  }
  if (out.empty()) throw InputError("-d needs a delimiter (-0 for NUL)");
  return out;
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

Product::Product(std::vector<Source> sources, std::uint64_t records_per_job)
    : sources_(std::move(sources)), per_job_(records_per_job) {
  combinations_ = sources_.empty() ? 0 : 1;
  for (const auto& s : sources_) {
    if (s.empty()) {
      combinations_ = 0;
      break;
    }
    if (combinations_ > std::numeric_limits<std::uint64_t>::max() / s.size())
      throw InputError("the input sources combine into more than 2^64 jobs");
    combinations_ *= s.size();
  }
  size_ = per_job_ <= 1 ? combinations_ : combinations_ / per_job_ + (combinations_ % per_job_ != 0);
}

std::vector<std::string> Product::at(std::uint64_t index) const {
  std::vector<std::string> args;
  if (per_job_ == 0) return args;
  const std::uint64_t first = index * per_job_;
  const std::uint64_t end = std::min(first + per_job_, combinations_);
  for (std::uint64_t i = first; i < end; ++i) append_combination(i, args);
  return args;
}

void Product::append_combination(std::uint64_t index, std::vector<std::string>& args) const {
  // Mixed radix, the last source the least significant digit.
  std::vector<std::size_t> pick(sources_.size());
  for (std::size_t k = sources_.size(); k-- > 0;) {
    pick[k] = static_cast<std::size_t>(index % sources_[k].size());
    index /= sources_[k].size();
  }
  for (std::size_t k = 0; k < sources_.size(); ++k) {
    const auto& cols = sources_[k][pick[k]];
    args.insert(args.end(), cols.begin(), cols.end());
  }
}

}  // namespace pools_run
