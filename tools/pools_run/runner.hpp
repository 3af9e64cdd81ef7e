// Runs the jobs: submits them to the pool, prints their output as they finish
// (or in input order with -k), writes the joblog and results, applies --halt.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <pools/pools.hpp>

#include "command_template.hpp"
#include "halt.hpp"
#include "input.hpp"
#include "job_slots.hpp"
#include "joblog.hpp"
#include "options.hpp"

namespace pools_run {

/// Runs every job of `jobs` (the argument lists) with `tmpl` on `pool` as
/// `opts` says, and returns the exit status. `done` is the earlier joblog
/// (for --resume and --resume-failed; empty otherwise).
int run_jobs(const Options& opts, const Product& jobs, const CommandTemplate& tmpl,
             const JoblogState& done, pools::PoolBase* pool);

/// A job that finished, one way or another: in a local run, or as a result
/// that --process read from a job stream.
struct Finished {
  std::uint64_t seq = 0;
  std::string command;
  std::vector<std::string> args;
  bool ran = false;       // false: never started (problem, or the library could not start it)
  std::string problem;    // why it did not run
  pools::ProcessResult result;
  std::string host;       // where it ran, for the joblog; empty: this machine
  bool skipped = false;   // never ran: an earlier job of its --group failed
  std::size_t slot = 0;   // its job slot while it runs; 0: none (--group)
  bool succeeded() const { return ran && result.succeeded(); }
};

/// The "a job finished" path, shared by a local run and --process: the
/// tallies, the messages, --halt's condition, the joblog, --results, the
/// output (in completion or input order), the progress and the summary.
/// Not thread-safe: one thread reports.
class Report {
public:
  /// Opens the joblog (throws pools::Error when it cannot be written).
  /// `to_run`: the jobs this run accounts for (the progress total and --halt's N%).
  Report(const Options& opts, std::uint64_t to_run);
  ~Report();
  Report(const Report&) = delete;
  Report& operator=(const Report&) = delete;

  /// Called inside finish() when --halt's condition is met (once), before the
  /// job is logged and printed: a local run stops or kills its jobs there.
  void on_halt(std::function<void(HaltPolicy::When)> handler);

  /// Accounts for a finished job: tallies, messages, --halt, joblog, --results, output.
  void finish(Finished job);
  /// A job skipped because the joblog has it (--resume).
  void skip(std::uint64_t seq);
  /// A job that --halt now killed: not logged, counted apart.
  void killed(std::uint64_t seq);
  /// Jobs not started because --halt stopped the run.
  void not_started(std::uint64_t n);
  /// One such job that had been handed out already (its group held it back).
  void not_started_job(std::uint64_t seq);
  /// Jobs that were sent to a worker and have no result (--process): they count as failed.
  void lost(std::uint64_t n);

  bool halting() const noexcept;
  /// Redraws the progress with this many jobs running.
  void update(std::uint64_t running);
  /// Prints what is left, the progress and the summary; returns the exit status.
  int end(std::chrono::steady_clock::duration wall);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The options a job's command runs with (no check, the timeout, retries
/// counted as GNU parallel does, PARALLEL_SEQ and, given a slot,
/// PARALLEL_JOBSLOT in the environment).
pools::ProcessOptions job_process_options(std::chrono::nanoseconds timeout, unsigned retries,
                                          std::uint64_t seq, std::size_t slot = 0);

/// Prints the commands that would run (--dry-run); returns the exit status.
int print_dry_run(const Options& opts, const Product& jobs, const CommandTemplate& tmpl,
                  const JoblogState& done);

/// Why the command cannot be given to /bin/sh -c, or empty when it can:
/// a NUL byte, or more than the kernel's 128 KiB limit for one argument.
std::string command_problem(const std::string& command);

}  // namespace pools_run
