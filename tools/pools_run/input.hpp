// Input sources (::: lists, :::: files, -a files, stdin), --colsep, and the
// cartesian product that turns them into the argument lists of the jobs.
#pragma once

#include <cstdint>
#include <istream>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pools_run {

/// An input that cannot be read (a missing file, too many combinations).
class InputError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Reads every record of `in`: split on `delimiter` (one or more bytes; "\n"
/// gives lines), the delimiter removed, a last record without one kept; any
/// other byte (including NUL) is kept as it is. Reads as it goes: the input
/// is never held twice.
std::vector<std::string> read_records(std::istream& in, const std::string& delimiter = "\n");

/// Reads the records of a file, or of stdin for "-". Throws InputError naming
/// the file when it cannot be opened or read.
std::vector<std::string> read_records_of(const std::string& path, const std::string& delimiter = "\n");

/// The delimiter that -d names, with GNU parallel's escapes: \t \n \r, and an
/// octal byte as \NNN or \N (\0 is NUL). Throws InputError when it is empty.
std::string parse_delimiter(const std::string& text);

/// Splits lines into columns on --colsep. A separator without regular
/// expression characters (after the escapes \t \n \\) splits literally;
/// otherwise it is an ECMAScript regular expression.
class ColumnSplitter {
public:
  /// Throws InputError for an empty or invalid regular expression.
  explicit ColumnSplitter(std::string separator);
  std::vector<std::string> split(const std::string& line) const;

private:
  std::string literal_;
  std::optional<std::regex> regex_;
};

/// One input source: its values, each already split into columns.
using Source = std::vector<std::vector<std::string>>;

/// The cartesian product of several sources, first source varying slowest
/// (as GNU parallel combines ::: a b ::: c d into a c, a d, b c, b d).
/// The arguments of combination i are the columns of each source's value,
/// concatenated in source order.
///
/// With records_per_job N (-N/-n), each job takes the next N combinations
/// (the last job what is left), their arguments concatenated; with 0 (-N0)
/// each job takes one combination and gets no arguments.
class Product {
public:
  /// Throws InputError when the number of combinations does not fit in 64 bits.
  explicit Product(std::vector<Source> sources, std::uint64_t records_per_job = 1);
  /// The number of jobs.
  std::uint64_t size() const noexcept { return size_; }
  /// The arguments of job `index` (0-based).
  std::vector<std::string> at(std::uint64_t index) const;

private:
  void append_combination(std::uint64_t index, std::vector<std::string>& args) const;
  std::vector<Source> sources_;
  std::uint64_t combinations_ = 0;
  std::uint64_t per_job_ = 1;
  std::uint64_t size_ = 0;
};

}  // namespace pools_run
