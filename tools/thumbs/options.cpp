#include "options.hpp"

#include <charconv>
#include <optional>

#include <fmt/format.h>

namespace pools_thumbs {

namespace {

long parse_number(const std::string& option, const std::string& text, long lo, long hi) {
  long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi)
    throw UsageError(fmt::format("{} {}: expected a whole number from {} to {}", option, text, lo, hi));
  return v;
}

}  // namespace

Options parse_options(const std::vector<std::string>& args, std::size_t cores) {
  Options o;
  o.jobs = cores ? cores : 1;
  std::vector<std::string> positional;
  bool options_end = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (options_end || arg.empty() || arg[0] != '-' || arg == "-") {
      positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_end = true;
      continue;
    }
    std::optional<std::string> inline_value;
    if (arg.rfind("--", 0) == 0) {
      if (auto eq = arg.find('='); eq != std::string::npos) {
        inline_value = arg.substr(eq + 1);
        arg.resize(eq);
      }
    } else if (arg.rfind("-j", 0) == 0 && arg.size() > 2) {
      inline_value = arg.substr(2);
      arg = "-j";
    }
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) throw UsageError(arg + ": needs a value");
      return args[++i];
    };
    auto flag = [&] {
      if (inline_value) throw UsageError(arg + " takes no value");
    };
    if (arg == "--pool") {
      o.pool = value();
      if (o.pool != "thread" && o.pool != "multiprocess" && o.pool != "process" && o.pool != "serial")
        throw UsageError("--pool " + o.pool + ": unknown pool kind (thread, multiprocess, process, serial)");
    } else if (arg == "-j" || arg == "--jobs") {
      o.jobs = static_cast<std::size_t>(parse_number(arg, value(), 1, 4096));
    } else if (arg == "--size") {
      o.size = static_cast<int>(parse_number(arg, value(), 1, 100000));
    } else if (arg == "--format") {
      o.format = value();
      if (o.format == "jpeg") o.format = "jpg";
      if (o.format != "jpg" && o.format != "png" && o.format != "webp")
        throw UsageError("--format " + o.format + ": expected jpg, png or webp");
    } else if (arg == "--quality") {
      o.quality = static_cast<int>(parse_number(arg, value(), 1, 100));
    } else if (arg == "--bar") {
      flag();
      o.bar = true;
    } else if (arg == "--no-bar") {
      flag();
      o.bar = false;
    } else if (arg == "-h" || arg == "--help") {
      o.help = true;
    } else if (arg == "--version") {
      o.version = true;
    } else {
      throw UsageError(arg + ": unknown option (see --help)");
    }
  }
  if (o.help || o.version) return o;
  if (positional.size() != 2)
    throw UsageError(fmt::format("expected INPUT_DIR and OUTPUT_DIR, got {} argument{}", positional.size(),
                                 positional.size() == 1 ? "" : "s"));
  o.input_dir = positional[0];
  o.output_dir = positional[1];
  return o;
}

std::string usage_text() {
  return R"(Usage: pools-thumbs [OPTIONS] INPUT_DIR OUTPUT_DIR

Makes a thumbnail of every image under INPUT_DIR (recursively) in OUTPUT_DIR,
mirroring the tree: INPUT_DIR/a/b.png becomes OUTPUT_DIR/a/b.jpg. Files that
are not images are skipped with a note. Thumbnails keep the aspect ratio; their
longest side is --size pixels.

Options:
  --pool KIND      thread (default), multiprocess, process or serial:
                     thread        libvips in threads of this program
                     multiprocess  libvips in worker processes: a decoder crash
                                   fails one image, not the run
                     process       the `vips thumbnail` command per image
                                   (package libvips-tools)
                     serial        one image after the other, in this thread
  -j, --jobs N     images at once (default: the number of cores)
  --size N         longest side of a thumbnail in pixels (default 256)
  --format F       jpg (default), png or webp
  --quality Q      jpg and webp quality, 1-100 (default 80)
  --bar            progress with ETA on stderr: a bar on a terminal, a line a
                   second otherwise (default)
  --no-bar         no progress
  -h, --help       this text
  --version        the version

Prints a summary (images, succeeded, failed with each file and reason,
skipped, wall time, images per second). Exit status: 0 when every image
succeeded, 1 when some failed, 2 for a usage error.
)";
}

}  // namespace pools_thumbs
