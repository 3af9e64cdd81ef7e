// The command line of pools-thumbs.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace pools_thumbs {

/// A command line that cannot be used (exit status 2); the message says why.
class UsageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string pool = "thread";  // thread, multiprocess, process or serial
  std::size_t jobs = 0;         // -j; resolved against the core count by parse_options
  int size = 256;               // the longest side of a thumbnail
  std::string format = "jpg";   // jpg, png or webp
  int quality = 80;             // jpg and webp, 1..100
  bool bar = true;              // --bar / --no-bar
  std::string input_dir, output_dir;
  bool help = false, version = false;
};

/// Parses argv (without argv[0]); `cores` is the default for -j. Accepts
/// "--opt value" and "--opt=value", "-j N" and "-jN". Throws UsageError.
Options parse_options(const std::vector<std::string>& args, std::size_t cores);

/// The --help text.
std::string usage_text();

}  // namespace pools_thumbs
