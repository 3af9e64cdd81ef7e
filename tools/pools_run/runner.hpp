// Runs the jobs: submits them to the pool, prints their output as they finish
// (or in input order with -k), writes the joblog and results, applies --halt.
#pragma once

#include <pools/pools.hpp>

#include "command_template.hpp"
#include "halt.hpp"
#include "input.hpp"
#include "joblog.hpp"
#include "options.hpp"

namespace pools_run {

/// Runs every job of `jobs` (the argument lists) with `tmpl` on `pool` as
/// `opts` says, and returns the exit status. `done` is the earlier joblog
/// (for --resume and --resume-failed; empty otherwise).
int run_jobs(const Options& opts, const Product& jobs, const CommandTemplate& tmpl,
             const JoblogState& done, pools::PoolBase* pool);

/// Prints the commands that would run (--dry-run); returns the exit status.
int print_dry_run(const Options& opts, const Product& jobs, const CommandTemplate& tmpl,
                  const JoblogState& done);

/// Why the command cannot be given to /bin/sh -c, or empty when it can:
/// a NUL byte, or more than the kernel's 128 KiB limit for one argument.
std::string command_problem(const std::string& command);

}  // namespace pools_run
