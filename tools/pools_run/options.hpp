// The command line of pools-run: GNU parallel's options that pools-run has.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "halt.hpp"

namespace pools_run {

/// A command line that cannot be used; the message says why.
class UsageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Where a job's arguments come from, in command-line order.
struct SourceSpec {
  enum class Kind { list, file } kind = Kind::list;  // ::: values, or :::: / -a file ("-" = stdin)
  std::vector<std::string> values;                  // list: the values; file: {path}
};

struct Options {
  std::size_t jobs = 0;  // -j; resolved against the core count by parse_options
  std::string pool = "process";
  std::chrono::nanoseconds timeout{0};
  unsigned retries = 0;  // --retries N: at most N attempts in all (0 and 1: one)
  HaltPolicy halt;
  bool keep_order = false;
  bool tag = false;
  std::string joblog;          // empty: none
  bool joblog_append = false;  // --joblog +FILE
  bool resume = false, resume_failed = false;
  std::string results;  // --results DIR
  bool dry_run = false;
  bool bar = false;
  bool ungroup = false;  // -u: jobs write straight to our stdout and stderr
  bool summary = true;  // --no-summary turns it off
  std::optional<std::string> colsep;
  std::string delimiter = "\n";  // of input records: -d DELIM, -0 (NUL)
  bool delimiter_given = false;  // -d or -0 was on the command line
  std::uint64_t args_per_job = 1;  // -N/-n: input records per job (0: one, not inserted)
  std::vector<std::string> command;  // the command template's words
  std::vector<SourceSpec> sources;   // empty: stdin
  bool help = false, version = false;
  // Job streams (docs/pools-run.md, "Job streams"): write the jobs, run a
  // stream of jobs, or report a stream of results. At most one is set.
  bool transmit = false, worker = false, process = false;
  bool jobs_given = false;  // -j was on the command line (--transmit passes it on)
  // Failure-domain groups (docs/pools-run.md, "Failure-domain groups"): each
  // job's group is `group` rendered with its arguments; empty: no groups.
  std::string group;
  std::size_t group_limit = 1;  // --group-limit K: jobs of one group at once
  bool group_keep_going = false;
};

/// Parses argv (without argv[0]). `cores` resolves -j defaults, N% and +N/-N.
/// Throws UsageError.
Options parse_options(const std::vector<std::string>& args, std::size_t cores);

/// The --help text.
std::string usage_text();

}  // namespace pools_run
