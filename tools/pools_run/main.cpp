// pools-run: launches shell commands in bulk, the way GNU parallel does, on a
// pools pool. See docs/pools-run.md.
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <pools/pools.hpp>

#include "pools_config.h"

#include "command_template.hpp"
#include "halt.hpp"
#include "input.hpp"
#include "joblog.hpp"
#include "options.hpp"
#include "pool_kinds.hpp"
#include "runner.hpp"
#include "stream_run.hpp"

namespace {

using namespace pools_run;

/// The input sources, read and split into columns.
Product read_sources(const Options& o) {
  std::optional<ColumnSplitter> splitter;
  if (o.colsep) splitter.emplace(*o.colsep);
  auto to_source = [&](const std::vector<std::string>& values) {
    Source s;
    s.reserve(values.size());
    for (const auto& v : values)
      s.push_back(splitter ? splitter->split(v) : std::vector<std::string>{v});
    return s;
  };
  std::vector<Source> sources;
  if (o.sources.empty()) sources.push_back(to_source(read_records_of("-", o.delimiter)));
  for (const auto& spec : o.sources)
    sources.push_back(to_source(spec.kind == SourceSpec::Kind::list ? spec.values
                                                                    : read_records_of(spec.values[0], o.delimiter)));
  return Product(std::move(sources), o.args_per_job);
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  Options o = parse_options(args, cores);
  if (o.help) {
    fmt::print("{}", usage_text());
    return 0;
  }
  if (o.version) {
    fmt::print("pools-run (pools) {}\nRuns commands in bulk like GNU parallel, on a pools pool.\n",
               POOLS_VERSION);
    return 0;
  }
  check_stage_options(o);
  if (o.worker) return run_worker(o);
  if (o.process) return run_process(o);
  std::string command_text;
  for (const auto& w : o.command) command_text += (command_text.empty() ? "" : " ") + w;
  CommandTemplate tmpl(command_text);  // before reading input: a bad template fails at once
  if (tmpl.uses_slot() && o.transmit)
    throw UsageError("{%} does not go with --transmit: the job slot is known only where the job runs "
                     "(use $PARALLEL_JOBSLOT, which --worker sets)");
  if (!o.group.empty() && (tmpl.uses_slot() || CommandTemplate(o.group).uses_slot()))
    throw UsageError("{%} does not go with --group: a job waiting for its group holds no slot");
  JoblogState done;
  if (o.resume || o.resume_failed) done = read_joblog(o.joblog);
  Product jobs = read_sources(o);
  if (o.dry_run) return print_dry_run(o, jobs, tmpl, done);
  if (o.transmit) return run_transmit(o, jobs, tmpl, done);

  std::size_t workers = o.jobs ? o.jobs : static_cast<std::size_t>(std::clamp<std::uint64_t>(jobs.size(), 1, 4096));
  pools::PoolBase& pool = get_pool(o.pool, workers);
  return run_jobs(o, jobs, tmpl, done, &pool);
}

}  // namespace

int main(int argc, char** argv) {
  pools::init(argc, argv);
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    fmt::print(stderr, "pools-run: {}\nTry 'pools-run --help' for more information.\n", e.what());
  } catch (const std::exception& e) {
    fmt::print(stderr, "pools-run: {}\n", e.what());
  }
  return exit_error;
}
