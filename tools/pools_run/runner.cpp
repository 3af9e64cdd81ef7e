#include "runner.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "progress.hpp"

namespace pools_run {

std::string command_problem(const std::string& command) {
  constexpr std::size_t max_arg = 128 * 1024;  // MAX_ARG_STRLEN, with its NUL
  if (command.find('\0') != std::string::npos)
    return "the command contains a NUL byte (binary input?)";
  if (command.size() >= max_arg)
    return fmt::format("the command is {} bytes long; the kernel takes at most {} bytes in one "
                       "argument to /bin/sh",
                       command.size(), max_arg - 1);
  return {};
}

namespace {

using Clock = std::chrono::steady_clock;

void say(const std::string& text) { fmt::print(stderr, "pools-run: {}\n", text); }

/// A job that finished, one way or another.
struct Finished {
  std::uint64_t seq = 0;
  std::string command;
  std::vector<std::string> args;
  bool ran = false;       // false: never started (problem, or the library could not start it)
  std::string problem;    // why it did not run
  pools::ProcessResult result;
  bool succeeded() const { return ran && result.succeeded(); }
};

/// Prints outputs, in completion order or (keep_order) in input order.
class Printer {
public:
  Printer(const Options& o, Progress& progress) : opts_(o), progress_(progress) {}

  void add(Finished f) {
    if (!opts_.keep_order) return print(f);
    auto seq = f.seq;
    pending_.emplace(seq, std::move(f));
    flush_ready();
  }
  /// A job that produces no output (skipped, not started): lets -k move past it.
  void pass(std::uint64_t seq) {
    if (!opts_.keep_order) return;
    pending_.emplace(seq, std::nullopt);
    flush_ready();
  }
  /// Prints what is left, in order, gaps and all (after --halt).
  void flush_all() {
    for (auto& [seq, f] : pending_)
      if (f) print(*f);
    pending_.clear();
  }

private:
  void flush_ready() {
    for (auto it = pending_.begin(); it != pending_.end() && it->first == next_; it = pending_.erase(it), ++next_)
      if (it->second) print(*it->second);
  }
  void write_stream(std::FILE* to, const std::string& text, const std::string& tag) {
    if (text.empty()) return;
    if (tag.empty()) {
      std::fwrite(text.data(), 1, text.size(), to);
      return;
    }
    std::size_t start = 0;
    while (start < text.size()) {
      auto nl = text.find('\n', start);
      auto end = nl == std::string::npos ? text.size() : nl + 1;
      std::fwrite(tag.data(), 1, tag.size(), to);
      std::fwrite(text.data() + start, 1, end - start, to);
      start = end;
    }
  }
  void print(const Finished& f) {
    const auto& out = f.result.stdout_text;
    const auto& err = f.result.stderr_text;
    if (out.empty() && err.empty()) return;
    std::string tag;
    if (opts_.tag) {
      for (std::size_t i = 0; i < f.args.size(); ++i) tag += (i ? " " : "") + f.args[i];
      tag += '\t';
    }
    progress_.clear();
    write_stream(stdout, out, tag);
    std::fflush(stdout);
    write_stream(stderr, err, tag);
    std::fflush(stderr);
    progress_.redraw();
  }

  const Options& opts_;
  Progress& progress_;
  std::map<std::uint64_t, std::optional<Finished>> pending_;
  std::uint64_t next_ = 1;
};

/// --joblog: one line per finished job, flushed at once.
class Joblog {
public:
  explicit Joblog(const Options& o) {
    if (o.joblog.empty()) return;
    bool append = o.joblog_append || o.resume || o.resume_failed;
    f_ = std::fopen(o.joblog.c_str(), append ? "a" : "w");
    if (!f_)
      throw pools::Error(fmt::format("cannot write to --joblog {}: {}", o.joblog, std::strerror(errno)));
    if (std::ftell(f_) == 0) fmt::print(f_, "{}\n", joblog_header);
    std::fflush(f_);
  }
  ~Joblog() {
    if (f_) std::fclose(f_);
  }
  Joblog(const Joblog&) = delete;
  Joblog& operator=(const Joblog&) = delete;

  void write(const Finished& f) {
    if (!f_) return;
    JoblogEntry e;
    e.seq = f.seq;
    e.command = f.command;
    e.start = f.result.started.time_since_epoch().count() ? f.result.started : std::chrono::system_clock::now();
    e.runtime = f.result.elapsed;
    e.received = f.result.stdout_text.size();
    // As GNU parallel: a killed job has Exitval 0 and its Signal, a timed-out
    // job -1 and the signal; a job that never ran -1.
    e.signal = f.result.signal;
    e.exitval = !f.ran || f.result.timed_out ? -1 : f.result.signal ? 0 : f.result.exit_code;
    fmt::print(f_, "{}\n", format_joblog_line(e));
    if (std::fflush(f_) != 0 && !warned_) {
      warned_ = true;
      say(fmt::format("warning: writing the joblog failed: {}", std::strerror(errno)));
    }
  }

private:
  std::FILE* f_ = nullptr;
  bool warned_ = false;
};

/// --results DIR: DIR/<seq>/stdout, stderr and command.
void save_results(const std::string& dir, const Finished& f, bool& warned) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path job_dir = fs::path(dir) / std::to_string(f.seq);
  fs::create_directories(job_dir, ec);
  bool ok = !ec;
  auto put = [&](const char* name, const std::string& text) {
    std::ofstream o(job_dir / name, std::ios::binary | std::ios::trunc);
    o.write(text.data(), static_cast<std::streamsize>(text.size()));
    ok = ok && o.good();
  };
  if (ok) {
    put("stdout", f.result.stdout_text);
    put("stderr", f.result.stderr_text);
    put("command", f.command + "\n");
  }
  if (!ok && !warned) {
    warned = true;
    say(fmt::format("warning: cannot save results in {}: {}", job_dir.string(),
                    ec ? ec.message() : std::strerror(errno)));
  }
}

class Run {
public:
  Run(const Options& o, const Product& jobs, const CommandTemplate& tmpl, const JoblogState& done,
      pools::PoolBase* pool)
      : opts_(o), jobs_(jobs), tmpl_(tmpl), done_(done), pool_(pool),
        to_run_(count_to_run()),
        progress_(o.bar, to_run_, stderr),
        printer_(o, progress_),
        joblog_(o) {
    slots_ = std::max<std::size_t>(1, std::min<std::size_t>(pool->num_workers(), o.jobs ? o.jobs : 4096));
  }

  int run() {
    auto t0 = Clock::now();
    if (jobs_.size() == 0) say("no jobs to run: the input is empty");
    std::uint64_t index = 0;
    while (true) {
      while (!halting_ && tasks_.size() < slots_ && index < jobs_.size()) start(++index);
      if (tasks_.empty()) break;
      update_progress();
      auto i = pools::wait_any(tasks_);
      auto task = std::move(tasks_[i]);
      auto job = std::move(running_[i]);
      tasks_.erase(tasks_.begin() + static_cast<std::ptrdiff_t>(i));
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
      collect(std::move(job), task);
    }
    for (; index < jobs_.size(); ++index)
      if (!done_.done(index + 1, opts_.resume_failed)) ++not_started_;
    printer_.flush_all();
    update_progress();
    progress_.finish();
    if (opts_.summary) print_summary(Clock::now() - t0);
    Outcome o{succeeded_, failed_, to_run_, halting_, halting_exit_};
    return exit_status(opts_.halt, o);
  }

private:
  std::uint64_t count_to_run() const {
    if (done_.seen.empty()) return jobs_.size();
    std::uint64_t n = 0;
    for (std::uint64_t seq = 1; seq <= jobs_.size(); ++seq) n += !done_.done(seq, opts_.resume_failed);
    return n;
  }

  void start(std::uint64_t seq) {
    if (done_.done(seq, opts_.resume_failed)) {
      ++skipped_;
      printer_.pass(seq);
      return;
    }
    Finished job;
    job.seq = seq;
    job.args = jobs_.at(seq - 1);
    job.command = tmpl_.render(job.args, seq);
    job.problem = command_problem(job.command);
    if (job.problem.empty()) {
      pools::ProcessOptions po;
      po.check = false;
      po.timeout = opts_.timeout;
      po.retries = opts_.retries > 1 ? opts_.retries - 1 : 0;
      po.env["PARALLEL_SEQ"] = std::to_string(seq);
      try {
        tasks_.push_back(pool_->add_process("job " + std::to_string(seq), job.command, std::move(po)));
        running_.push_back(std::move(job));
        return;
      } catch (const std::exception& e) {
        job.problem = e.what();
      }
    }
    finish(std::move(job));
  }

  void collect(Finished job, const pools::ProcessTask& task) {
    try {
      job.result = task.result();
      job.ran = true;
    } catch (const std::exception& e) {
      job.problem = e.what();
    }
    finish(std::move(job));
  }

  void finish(Finished job) {
    bool ok = job.succeeded();
    ok ? ++succeeded_ : ++failed_;
    progress_.clear();
    if (!job.ran) {
      say(fmt::format("job {} could not run: {}\npools-run: command: {}", job.seq, job.problem,
                      job.command.substr(0, 200)));
    } else if (job.result.timed_out) {
      say(fmt::format("Warning: This job was killed because it timed out:\npools-run: Warning: {}",
                      job.command));
    }
    check_halt(job);
    joblog_.write(job);
    if (!opts_.results.empty()) save_results(opts_.results, job, results_warned_);
    printer_.add(std::move(job));
  }

  void check_halt(const Finished& job) {
    using W = HaltPolicy::Why;
    const auto& h = opts_.halt;
    if (h.when == HaltPolicy::When::never) return;
    bool ok = job.succeeded();
    if (h.why == W::fail && !ok) say("This job failed:\n" + job.command);
    if (halting_ || !h.triggered(succeeded_, failed_, to_run_)) return;
    if (h.why == W::success) say("This job succeeded:\n" + job.command);
    if (h.why == W::done) say(std::string("This job finished:\n") + job.command);
    halting_ = true;
    if (!ok) halting_exit_ = job.ran ? job.result.exit_code : -1;
    if (h.when == HaltPolicy::When::soon) {
      if (!tasks_.empty()) say(fmt::format("Starting no more jobs. Waiting for {} jobs to finish.", tasks_.size()));
      return;
    }
    if (!tasks_.empty()) say(fmt::format("Killing {} running jobs (--halt now,{}).", tasks_.size(), h.why_name()));
    for (auto& t : tasks_) t.cancel();
    for (std::size_t i = 0; i < tasks_.size(); ++i) {
      try {
        tasks_[i].wait();  // observes the cancellation, so the pool does not report it
      } catch (const std::exception&) {
      }
      ++killed_;
      printer_.pass(running_[i].seq);
    }
    tasks_.clear();
    running_.clear();
  }

  void update_progress() { progress_.update(succeeded_ + failed_, failed_, tasks_.size()); }

  void print_summary(Clock::duration wall) {
    double secs = std::chrono::duration<double>(wall).count();
    auto ran = succeeded_ + failed_ + killed_;
    std::string skipped = fmt::format("{} skipped", skipped_ + not_started_);
    if (skipped_ && not_started_)
      skipped += fmt::format(" ({} done in the joblog, {} not started after --halt)", skipped_, not_started_);
    else if (skipped_)
      skipped += " (done in the joblog)";
    else if (not_started_)
      skipped += " (not started after --halt)";
    std::string killed = killed_ ? fmt::format(", {} killed by --halt now", killed_) : "";
    progress_.clear();
    say(fmt::format("{} succeeded, {} failed, {}{}; wall time {:.3f} s, {:.1f} commands/s",
                    succeeded_, failed_, skipped, killed, secs, secs > 0 ? double(ran) / secs : 0.0));
  }

  const Options& opts_;
  const Product& jobs_;
  const CommandTemplate& tmpl_;
  const JoblogState& done_;
  pools::PoolBase* pool_;
  std::uint64_t to_run_;
  Progress progress_;
  Printer printer_;
  Joblog joblog_;
  std::size_t slots_ = 1;
  std::vector<pools::ProcessTask> tasks_;  // running, in step with running_
  std::vector<Finished> running_;
  std::uint64_t succeeded_ = 0, failed_ = 0, skipped_ = 0, not_started_ = 0, killed_ = 0;
  bool halting_ = false;
  std::optional<int> halting_exit_;
  bool results_warned_ = false;
};

}  // namespace

int run_jobs(const Options& opts, const Product& jobs, const CommandTemplate& tmpl,
             const JoblogState& done, pools::PoolBase* pool) {
  return Run(opts, jobs, tmpl, done, pool).run();
}

int print_dry_run(const Options& opts, const Product& jobs, const CommandTemplate& tmpl,
                  const JoblogState& done) {
  for (std::uint64_t seq = 1; seq <= jobs.size(); ++seq) {
    if (done.done(seq, opts.resume_failed)) continue;
    auto cmd = tmpl.render(jobs.at(seq - 1), seq);
    if (auto p = command_problem(cmd); !p.empty())
      say(fmt::format("job {} could not run: {}", seq, p));
    else
      fmt::print("{}\n", cmd);
  }
  return 0;
}

}  // namespace pools_run
