// pools_demo: fans real file work out over a thread pool and reports what it did.
//
// It writes N files of pseudo-random text into a fresh temporary directory (one
// task per file), then computes each file's CRC-32 and its byte/word/line counts
// (one task each), checks every count against what the writer produced and a
// few checksums against a serial recomputation, prints a summary and removes the
// directory. Exit status: 0 when everything checked out, 1 on any failure, 2 on
// bad arguments.

#include <pools/pools.hpp>

#include <fmt/core.h>

#include <stdlib.h>  // mkdtemp

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <variant>
#include <vector>

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t default_files = 200;
constexpr std::size_t max_files = 1'000'000;

// ---- checksums and counts ---------------------------------------------------

// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), the one zlib and
// `gzip -l` use, so a result can be checked with other tools.
constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto crc_table = make_crc_table();

constexpr std::uint32_t crc32_update(std::uint32_t crc, const char* data, std::size_t n) {
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i)
    crc = crc_table[(crc ^ static_cast<unsigned char>(data[i])) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

// The standard check value: CRC-32 of "123456789".
static_assert(crc32_update(0, "123456789", 9) == 0xCBF43926u);

struct Counts {
  std::uint64_t bytes = 0;
  std::uint64_t words = 0;  // runs of non-whitespace, as wc -w counts them
  std::uint64_t lines = 0;  // newline characters, as wc -l counts them
  bool operator==(const Counts&) const = default;
};

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot open '{}' for reading", path.string()));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error(fmt::format("cannot read '{}'", path.string()));
  return text;
}

// Streams the file in blocks: what the checksum tasks run.
std::uint32_t file_crc32(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot open '{}' for reading", path.string()));
  std::array<char, 64 * 1024> buf;
  std::uint32_t crc = 0;
  while (in) {
    in.read(buf.data(), buf.size());
    crc = crc32_update(crc, buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) throw std::runtime_error(fmt::format("cannot read '{}'", path.string()));
  return crc;
}

Counts count_text(std::string_view text) {
  Counts c;
  c.bytes = text.size();
  bool in_word = false;
  for (char ch : text) {
    if (ch == '\n') ++c.lines;
    bool space = is_space(ch);
    if (!space && !in_word) ++c.words;
    in_word = !space;
  }
  return c;
}

Counts file_counts(const fs::path& path) { return count_text(read_file(path)); }

// ---- text generation ------------------------------------------------------------

// splitmix64: a tiny, well-mixed generator; seeding it with the file's index
// makes every run write the same files.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }
};

constexpr std::string_view vocabulary[] = {
    "pool",   "thread", "task",   "worker",  "queue",  "wait",    "result", "error",
    "future", "handle", "steal",  "park",    "wake",   "submit",  "run",    "done",
    "alpha",  "beta",   "gamma",  "delta",   "omega",  "sigma",   "lambda", "kappa",
    "red",    "green",  "blue",   "cyan",    "amber",  "violet",  "grey",   "white",
    "river",  "stone",  "cloud",  "forest",  "meadow", "harbour", "valley", "summit",
    "a",      "an",     "the",    "of",      "to",     "in",      "and",    "or",
    "quick",  "slow",   "bright", "quiet",   "heavy",  "light",   "sharp",  "round",
    "one",    "two",    "three",  "four",    "five",   "six",     "seven",  "eight",
};

// What the writer knows about a file it wrote.
struct Written {
  fs::path path;
  Counts counts;
};

// Writes 8–64 KiB of lines of 3–16 words to `path`. One generation task.
Written write_text_file(fs::path path, std::uint64_t seed) {
  SplitMix64 rng{seed};
  const std::uint64_t target = 8 * 1024 + rng.below(56 * 1024);
  std::string text;
  text.reserve(target + 256);
  Counts c;
  while (text.size() < target) {
    const std::uint64_t n = 3 + rng.below(14);
    for (std::uint64_t w = 0; w < n; ++w) {
      if (w) text += rng.below(10) == 0 ? "  " : " ";
      text += vocabulary[rng.below(std::size(vocabulary))];
    }
    text += '\n';
    c.words += n;
    ++c.lines;
  }
  c.bytes = text.size();

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(fmt::format("cannot create '{}'", path.string()));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", path.string()));
  return {std::move(path), c};
}

// ---- command line -------------------------------------------------------------------

struct Options {
  std::size_t files = default_files;
  std::optional<std::size_t> threads;
};

void print_usage(std::FILE* to) {
  fmt::print(to,
             "usage: pools_demo [--files N] [--threads N] [--help]\n"
             "\n"
             "Writes N files of pseudo-random text into a temporary directory (one task\n"
             "each), computes every file's CRC-32 and byte/word/line counts on the pool\n"
             "(one task each), verifies the results, prints a summary and cleans up.\n"
             "\n"
             "  --files N     number of files (default {}, at most {})\n"
             "  --threads N   run on a pool named \"pools_demo\" with N threads\n"
             "                (default: the global thread pool, one thread per core)\n"
             "  --help        show this text\n"
             "\n"
             "The temporary directory is made under $TMPDIR (default /tmp).\n"
             "POOLS_MAX_THREADS caps the pool size; POOLS_DIAG=1 logs pool events.\n",
             default_files, max_files);
}

std::optional<std::size_t> parse_count(std::string_view s) {
  std::size_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// Returns the options, or an exit status when the program should stop now.
std::variant<Options, int> parse_args(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      print_usage(stdout);
      return 0;
    }
    std::string_view key = arg, value;
    bool has_value = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      key = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    if (key != "--files" && key != "--threads") {
      fmt::print(stderr, "pools_demo: unknown argument '{}'\n", arg);
      print_usage(stderr);
      return 2;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        fmt::print(stderr, "pools_demo: {} needs a number\n", key);
        return 2;
      }
      value = argv[++i];
    }
    auto n = parse_count(value);
    if (!n) {
      fmt::print(stderr, "pools_demo: {} needs a number, not '{}'\n", key, value);
      return 2;
    }
    if (key == "--files") {
      if (*n == 0 || *n > max_files) {
        fmt::print(stderr, "pools_demo: --files must be between 1 and {}, not {}\n", max_files, *n);
        return 2;
      }
      opt.files = *n;
    } else {
      opt.threads = *n;  // the pool itself rejects 0 and absurd sizes
    }
  }
  return opt;
}

// ---- the run --------------------------------------------------------------------

// Removes the temporary directory however the run ends.
struct TempDir {
  fs::path path;
  explicit TempDir(fs::path p) : path(std::move(p)) {}
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec) fmt::print(stderr, "pools_demo: cannot remove '{}': {}\n", path.string(), ec.message());
  }
};

fs::path make_temp_dir() {
  std::string templ = (fs::temp_directory_path() / "pools_demo.XXXXXX").string();
  if (!::mkdtemp(templ.data()))
    throw std::system_error(errno, std::generic_category(),
                            fmt::format("cannot create a directory from '{}'", templ));
  return templ;
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string human_bytes(std::uint64_t n) {
  if (n < 1024) return fmt::format("{} B", n);
  if (n < 1024 * 1024) return fmt::format("{:.1f} KiB", n / 1024.0);
  return fmt::format("{:.1f} MiB", n / (1024.0 * 1024.0));
}

struct Failures {
  std::size_t count = 0;
  void add(std::string_view what) {
    // A broken run can fail thousands of tasks: show the first few.
    if (++count <= 10) fmt::print(stderr, "pools_demo: FAILED: {}\n", what);
    else if (count == 11) fmt::print(stderr, "pools_demo: (further failures not shown)\n");
  }
};

int run(const Options& opt) {
  pools::PoolBase& pool =
      opt.threads ? pools::get_thread_pool("pools_demo", *opt.threads) : pools::global_thread_pool();

  TempDir dir(make_temp_dir());
  Failures failures;
  const auto t_start = Clock::now();

  // Phase 1: one task per file writes it.
  std::vector<pools::Task<Written>> writers;
  writers.reserve(opt.files);
  for (std::size_t i = 0; i < opt.files; ++i) {
    writers.push_back(pool.add_task(fmt::format("write file {}", i), write_text_file,
                                    dir.path / fmt::format("text-{:06}.txt", i), std::uint64_t{i}));
  }
  std::vector<std::optional<Written>> written(opt.files);
  for (std::size_t i = 0; i < opt.files; ++i) {
    try {
      written[i] = writers[i].wait_return();
    } catch (const std::exception& e) {
      failures.add(fmt::format("task '{}': {}", writers[i].name(), e.what()));
    }
  }
  const auto t_written = Clock::now();

  // Phase 2: per file, one task computes the CRC-32 and one the counts.
  std::vector<pools::Task<std::uint32_t>> crc_tasks(opt.files);
  std::vector<pools::Task<Counts>> count_tasks(opt.files);
  std::size_t phase2_tasks = 0;
  for (std::size_t i = 0; i < opt.files; ++i) {
    if (!written[i]) continue;
    const fs::path& p = written[i]->path;
    crc_tasks[i] = pool.add_task(fmt::format("crc32 {}", p.filename().string()), file_crc32, p);
    count_tasks[i] = pool.add_task(fmt::format("count {}", p.filename().string()), file_counts, p);
    phase2_tasks += 2;
  }
  std::vector<std::uint32_t> crcs(opt.files);
  Counts total;
  for (std::size_t i = 0; i < opt.files; ++i) {
    if (!written[i]) continue;
    try {
      crcs[i] = crc_tasks[i].wait_return();
    } catch (const std::exception& e) {
      failures.add(fmt::format("task '{}': {}", crc_tasks[i].name(), e.what()));
    }
    try {
      Counts c = count_tasks[i].wait_return();
      if (c != written[i]->counts)
        failures.add(fmt::format("{}: counted {} bytes, {} words, {} lines; wrote {}, {}, {}",
                                 written[i]->path.filename().string(), c.bytes, c.words, c.lines,
                                 written[i]->counts.bytes, written[i]->counts.words,
                                 written[i]->counts.lines));
      total.bytes += c.bytes;
      total.words += c.words;
      total.lines += c.lines;
    } catch (const std::exception& e) {
      failures.add(fmt::format("task '{}': {}", count_tasks[i].name(), e.what()));
    }
  }
  const auto t_analysed = Clock::now();

  // Phase 3, serial: recompute a few checksums in this thread, a different way
  // (whole file in memory), and check the file sizes on disk.
  std::vector<std::size_t> sample = {0, opt.files / 2, opt.files - 1};
  SplitMix64 pick{static_cast<std::uint64_t>(Clock::now().time_since_epoch().count())};
  for (int k = 0; k < 2; ++k) sample.push_back(pick.below(opt.files));
  std::sort(sample.begin(), sample.end());
  sample.erase(std::unique(sample.begin(), sample.end()), sample.end());
  std::size_t verified = 0;
  for (std::size_t i : sample) {
    if (!written[i]) continue;
    try {
      const fs::path& p = written[i]->path;
      std::string text = read_file(p);
      std::uint32_t crc = crc32_update(0, text.data(), text.size());
      if (crc != crcs[i])
        failures.add(fmt::format("{}: pool computed CRC-32 {:08x}, serial check {:08x}",
                                 p.filename().string(), crcs[i], crc));
      else if (fs::file_size(p) != written[i]->counts.bytes)
        failures.add(fmt::format("{}: {} bytes on disk, {} written", p.filename().string(),
                                 fs::file_size(p), written[i]->counts.bytes));
      else
        ++verified;
    } catch (const std::exception& e) {
      failures.add(e.what());
    }
  }
  const auto t_end = Clock::now();

  // Summary.
  const std::size_t tasks = opt.files + phase2_tasks;
  const double wall = seconds(t_end - t_start);
  auto rate = [](std::size_t n, Clock::duration d) {
    double s = seconds(d);
    return s > 0 ? fmt::format("{:.0f}", n / s) : std::string("-");
  };
  fmt::print("pools_demo: {} pool '{}' with {} thread{}, files in {}\n", to_string(pool.kind()),
             pool.name(), pool.num_workers(), pool.num_workers() == 1 ? "" : "s", dir.path.string());
  fmt::print("\n  {:<26} {:>8} {:>10} {:>10}\n", "phase", "tasks", "wall ms", "tasks/s");
  fmt::print("  {:<26} {:>8} {:>10.1f} {:>10}\n", "write files", opt.files,
             seconds(t_written - t_start) * 1e3, rate(opt.files, t_written - t_start));
  fmt::print("  {:<26} {:>8} {:>10.1f} {:>10}\n", "crc-32 + word/line counts", phase2_tasks,
             seconds(t_analysed - t_written) * 1e3, rate(phase2_tasks, t_analysed - t_written));
  fmt::print("  {:<26} {:>8} {:>10.1f} {:>10}\n", "serial re-check", "-",
             seconds(t_end - t_analysed) * 1e3, "-");
  fmt::print("  {:<26} {:>8} {:>10.1f} {:>10}\n\n", "total", tasks, wall * 1e3,
             rate(tasks, t_end - t_start));
  fmt::print("  files      {}\n", opt.files);
  fmt::print("  bytes      {} ({})\n", total.bytes, human_bytes(total.bytes));
  fmt::print("  words      {}\n", total.words);
  fmt::print("  lines      {}\n", total.lines);
  fmt::print("  tasks      {}\n", tasks);
  fmt::print("  wall time  {:.3f} s\n", wall);
  fmt::print("  tasks/s    {}\n", rate(tasks, t_end - t_start));
  fmt::print("  pool size  {} thread{} ({} hardware threads)\n", pool.num_workers(),
             pool.num_workers() == 1 ? "" : "s",
             std::thread::hardware_concurrency());
  fmt::print("  checked    counts of all {} files against the writer; CRC-32 of {} files "
             "serially\n",
             opt.files, verified);

  if (failures.count) {
    fmt::print("pools_demo: FAILED: {} failure(s)\n", failures.count);
    return 1;
  }
  fmt::print("pools_demo: OK\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    pools::init(argc, argv);
    auto parsed = parse_args(argc, argv);
    if (auto* status = std::get_if<int>(&parsed)) return *status;
    return run(std::get<Options>(parsed));
  } catch (const pools::Error& e) {
    // Bad pool arguments (e.g. --threads 0) land here with the library's message.
    fmt::print(stderr, "pools_demo: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "pools_demo: FAILED: {}\n", e.what());
    return 1;
  }
}
