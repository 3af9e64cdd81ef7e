// The three stages of a job stream: --transmit writes the jobs, --worker runs
// a job stream and writes the results, --process reports a result stream as a
// local run would. See docs/pools-run.md, "Job streams".
#pragma once

#include "command_template.hpp"
#include "input.hpp"
#include "joblog.hpp"
#include "options.hpp"

namespace pools_run {

/// Throws UsageError for an option that belongs to another stage (-k given
/// to --worker, --timeout to --process, ...) or a stage given a command.
void check_stage_options(const Options& opts);

/// --transmit: writes the job stream of these jobs to stdout; returns the exit status.
int run_transmit(const Options& opts, const Product& jobs, const CommandTemplate& tmpl,
                 const JoblogState& done);

/// --worker: runs the job stream on stdin, each job as soon as it arrives and a
/// slot is free, writing each result to stdout as it finishes. Returns 0, or
/// 255 when the job stream was bad (the results of the jobs that ran are sent
/// first) or stdout closed.
int run_worker(const Options& opts);

/// --process: reports the result stream on stdin (output, joblog, --results,
/// summary) and returns the exit status of the run, or 255 when the stream was
/// bad or jobs have no result (they count as failed).
int run_process(const Options& opts);

}  // namespace pools_run
