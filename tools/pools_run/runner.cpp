#include "runner.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "progress.hpp"
#include "quote.hpp"

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
    if (!f.host.empty()) e.host = f.host;
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

}  // namespace

struct Report::Impl {
  Impl(const Options& o, std::uint64_t to_run)
      : opts(o), to_run(to_run), progress(o.bar, to_run, stderr), printer(o, progress), joblog(o) {}

  void finish(Finished job) {
    if (job.skipped) {
      // Not a failure of its own (--halt does not count it), but not a
      // success: the exit status counts it. Logged with Exitval -1, as a job
      // that never ran; see docs/pools-run.md.
      ++group_skipped;
      joblog.write(job);
      printer.pass(job.seq);
      return;
    }
    bool ok = job.succeeded();
    ok ? ++succeeded : ++failed;
    progress.clear();
    if (!job.ran) {
      say(fmt::format("job {} could not run: {}\npools-run: command: {}", job.seq, job.problem,
                      job.command.substr(0, 200)));
    } else if (job.result.timed_out) {
      say(fmt::format("Warning: This job was killed because it timed out:\npools-run: Warning: {}",
                      job.command));
    }
    check_halt(job);
    joblog.write(job);
    if (!opts.results.empty()) save_results(opts.results, job, results_warned);
    printer.add(std::move(job));
  }

  void check_halt(const Finished& job) {
    using W = HaltPolicy::Why;
    const auto& h = opts.halt;
    if (h.when == HaltPolicy::When::never) return;
    bool ok = job.succeeded();
    if (h.why == W::fail && !ok) say("This job failed:\n" + job.command);
    if (halting || !h.triggered(succeeded, failed, to_run)) return;
    if (h.why == W::success) say("This job succeeded:\n" + job.command);
    if (h.why == W::done) say(std::string("This job finished:\n") + job.command);
    halting = true;
    if (!ok) halting_exit = job.ran ? job.result.exit_code : -1;
    if (on_halt) on_halt(h.when);
  }

  void print_summary(std::chrono::steady_clock::duration wall) {
    double secs = std::chrono::duration<double>(wall).count();
    auto ran = succeeded + failed - lost + killed;
    std::string skip_text = fmt::format("{} skipped", skipped + group_skipped + not_started);
    std::vector<std::pair<std::uint64_t, const char*>> why;
    if (skipped) why.emplace_back(skipped, "done in the joblog");
    if (group_skipped) why.emplace_back(group_skipped, "after a failed job of their --group");
    if (not_started) why.emplace_back(not_started, "not started after --halt");
    if (why.size() == 1) skip_text += fmt::format(" ({})", why[0].second);
    for (std::size_t k = 0; why.size() > 1 && k < why.size(); ++k)
      skip_text += fmt::format("{}{} {}{}", k ? ", " : " (", why[k].first, why[k].second,
                               k + 1 == why.size() ? ")" : "");
    std::string killed_text = killed ? fmt::format(", {} killed by --halt now", killed) : "";
    std::string lost_text = lost ? fmt::format(" ({} of them lost: no result came back)", lost) : "";
    progress.clear();
    say(fmt::format("{} succeeded, {} failed{}, {}{}; wall time {:.3f} s, {:.1f} commands/s",
                    succeeded, failed, lost_text, skip_text, killed_text, secs,
                    secs > 0 ? double(ran) / secs : 0.0));
  }

  const Options& opts;
  std::uint64_t to_run;
  Progress progress;
  Printer printer;
  Joblog joblog;
  std::function<void(HaltPolicy::When)> on_halt;
  std::uint64_t succeeded = 0, failed = 0, skipped = 0, not_started = 0, killed = 0, lost = 0;
  std::uint64_t group_skipped = 0;
  bool halting = false;
  std::optional<int> halting_exit;
  bool results_warned = false;
};

Report::Report(const Options& opts, std::uint64_t to_run) : impl_(std::make_unique<Impl>(opts, to_run)) {}
Report::~Report() = default;
void Report::on_halt(std::function<void(HaltPolicy::When)> handler) { impl_->on_halt = std::move(handler); }
void Report::finish(Finished job) { impl_->finish(std::move(job)); }
void Report::skip(std::uint64_t seq) {
  ++impl_->skipped;
  impl_->printer.pass(seq);
}
void Report::killed(std::uint64_t seq) {
  ++impl_->killed;
  impl_->printer.pass(seq);
}
void Report::not_started(std::uint64_t n) { impl_->not_started += n; }
void Report::not_started_job(std::uint64_t seq) {
  ++impl_->not_started;
  impl_->printer.pass(seq);
}
void Report::lost(std::uint64_t n) {
  impl_->lost += n;
  impl_->failed += n;
}
bool Report::halting() const noexcept { return impl_->halting; }
void Report::update(std::uint64_t running) {
  impl_->progress.update(impl_->succeeded + impl_->failed + impl_->group_skipped, impl_->failed,
                         running);
}
int Report::end(std::chrono::steady_clock::duration wall) {
  auto& i = *impl_;
  i.printer.flush_all();
  update(0);
  i.progress.finish();
  if (i.opts.summary) i.print_summary(wall);
  // Jobs their --group skipped did not succeed: the exit status counts them.
  Outcome o{i.succeeded, i.failed + i.group_skipped, i.to_run, i.halting, i.halting_exit};
  return exit_status(i.opts.halt, o);
}

pools::ProcessOptions job_process_options(std::chrono::nanoseconds timeout, unsigned retries,
                                          std::uint64_t seq, std::size_t slot) {
  pools::ProcessOptions po;
  po.check = false;
  po.timeout = timeout;
  po.retries = retries > 1 ? retries - 1 : 0;
  po.env["PARALLEL_SEQ"] = std::to_string(seq);
  if (slot) po.env["PARALLEL_JOBSLOT"] = std::to_string(slot);
  return po;
}

namespace {

/// A local run: submits the jobs to the pool, at most slots_ at once.
class Run {
public:
  Run(const Options& o, const Product& jobs, const CommandTemplate& tmpl, const JoblogState& done,
      pools::PoolBase* pool)
      : opts_(o), jobs_(jobs), tmpl_(tmpl), done_(done), pool_(pool), report_(o, count_to_run()) {
    slots_ = std::max<std::size_t>(1, std::min<std::size_t>(pool->num_workers(), o.jobs ? o.jobs : 4096));
    report_.on_halt([this](HaltPolicy::When when) { halt(when); });
    if (!o.group.empty()) {
      group_template_.emplace(o.group);
      groups_ = std::make_unique<pools::Groups>(
          *pool, pools::GroupOptions{.limit = o.group_limit, .keep_going = o.group_keep_going});
      // Jobs whose group is busy wait in it; looking this far ahead for jobs
      // of free groups keeps the slots busy without handing out every job.
      window_ = std::max<std::size_t>(slots_ + 1024, 4 * slots_);
    }
  }

  int run() {
    auto t0 = Clock::now();
    if (jobs_.size() == 0) say("no jobs to run: the input is empty");
    std::uint64_t index = 0;
    while (true) {
      while (!report_.halting() && has_room() && index < jobs_.size()) start(++index);
      if (tasks_.empty()) break;
      report_.update(running());
      auto i = pools::wait_any(tasks_);
      auto task = std::move(tasks_[i]);
      auto job = std::move(running_[i]);
      tasks_.erase(tasks_.begin() + static_cast<std::ptrdiff_t>(i));
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
      collect(std::move(job), task);
    }
    std::uint64_t not_started = 0;
    for (; index < jobs_.size(); ++index)
      if (!done_.done(index + 1, opts_.resume_failed)) ++not_started;
    report_.not_started(not_started);
    return report_.end(Clock::now() - t0);
  }

private:
  // With --group, slots_ bounds the jobs handed to the pool (a job whose group
  // is busy waits in its group and takes no slot), window_ all jobs out.
  bool has_room() const {
    if (!groups_) return tasks_.size() < slots_;
    return groups_->in_pool() < slots_ && tasks_.size() < window_;
  }
  std::size_t running() const { return groups_ ? groups_->in_pool() : tasks_.size(); }

  pools::ProcessTask add_job(const Finished& job) {
    auto name = "job " + std::to_string(job.seq);
    auto options = job_process_options(opts_.timeout, opts_.retries, job.seq, job.slot);
    options.capture_output = !opts_.ungroup;
    // A command the shell would only split into words runs without it: one exec, not two.
    auto words = words_without_shell(job.command);
    if (!groups_)
      return words.empty() ? pool_->add_process(std::move(name), job.command, std::move(options))
                           : pool_->add_process(std::move(name), std::move(words), std::move(options));
    // A failed job must fail its task for the group to see it; result()
    // still gives the exit status either way.
    options.check = true;
    auto group = group_template_->render_value(job.args, job.seq);
    // A job whose template gives an empty name belongs to no group: alone in one.
    if (group.empty()) group = fmt::format("\x01job {}", job.seq);
    if (!words.empty())
      return groups_->add_process(std::move(group), std::move(name), std::move(words), std::move(options));
    return groups_->add_process(std::move(group), std::move(name), job.command, std::move(options));
  }

  std::uint64_t count_to_run() const {
    if (done_.seen.empty()) return jobs_.size();
    std::uint64_t n = 0;
    for (std::uint64_t seq = 1; seq <= jobs_.size(); ++seq) n += !done_.done(seq, opts_.resume_failed);
    return n;
  }

  void start(std::uint64_t seq) {
    if (done_.done(seq, opts_.resume_failed)) {
      report_.skip(seq);
      return;
    }
    Finished job;
    job.seq = seq;
    job.args = jobs_.at(seq - 1);
    // Without --group each job handed to the pool takes a slot (has_room).
    if (!groups_) job.slot = slots_taken_.take();
    job.command = tmpl_.render(job.args, seq, job.slot);
    job.problem = command_problem(job.command);
    if (job.problem.empty()) {
      try {
        tasks_.push_back(add_job(job));
        running_.push_back(std::move(job));
        return;
      } catch (const std::exception& e) {
        job.problem = e.what();
      }
    }
    slots_taken_.give_back(job.slot);
    report_.finish(std::move(job));
  }

  void collect(Finished job, const pools::ProcessTask& task) {
    slots_taken_.give_back(job.slot);
    try {
      job.result = task.result();
      job.ran = true;
    } catch (const pools::Skipped& e) {
      job.skipped = true;  // an earlier job of its --group failed
      job.problem = e.what();
    } catch (const pools::Cancelled& e) {
      // --halt cancelled it while it waited for its group's turn.
      if (groups_ && report_.halting()) return report_.not_started_job(job.seq);
      job.problem = e.what();
    } catch (const std::exception& e) {
      job.problem = e.what();
    }
    report_.finish(std::move(job));
  }

  // --halt's condition was met: start no more jobs (soon), or kill the running ones (now).
  void halt(HaltPolicy::When when) {
    // Jobs waiting for their group's turn never start; they are collected as
    // not started.
    if (groups_) groups_->cancel_waiting();
    if (when == HaltPolicy::When::soon) {
      if (running()) say(fmt::format("Starting no more jobs. Waiting for {} jobs to finish.", running()));
      return;
    }
    if (running())
      say(fmt::format("Killing {} running jobs (--halt now,{}).", running(), opts_.halt.why_name()));
    for (auto& t : tasks_) t.cancel();
    for (std::size_t i = 0; i < tasks_.size(); ++i) {
      bool started = true;
      try {
        tasks_[i].wait();  // observes the cancellation, so the pool does not report it
      } catch (const std::exception&) {
        // A job its group held back never ran: it has no result.
        if (groups_) started = ran(tasks_[i]);
      }
      slots_taken_.give_back(running_[i].slot);
      started ? report_.killed(running_[i].seq) : report_.not_started_job(running_[i].seq);
    }
    tasks_.clear();
    running_.clear();
  }

  static bool ran(const pools::ProcessTask& t) {
    try {
      (void)t.result();
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }

  const Options& opts_;
  const Product& jobs_;
  const CommandTemplate& tmpl_;
  const JoblogState& done_;
  pools::PoolBase* pool_;
  Report report_;
  std::optional<CommandTemplate> group_template_;  // --group
  std::unique_ptr<pools::Groups> groups_;
  std::size_t window_ = 0;
  std::size_t slots_ = 1;
  JobSlots slots_taken_;
  std::vector<pools::ProcessTask> tasks_;  // running, in step with running_
  std::vector<Finished> running_;
};

}  // namespace

int run_jobs(const Options& opts, const Product& jobs, const CommandTemplate& tmpl,
             const JoblogState& done, pools::PoolBase* pool) {
  return Run(opts, jobs, tmpl, done, pool).run();
}

int print_dry_run(const Options& opts, const Product& jobs, const CommandTemplate& tmpl,
                  const JoblogState& done) {
  // Nothing runs: each job takes the next slot in turn, as jobs of equal
  // length running side by side would.
  const std::uint64_t slots = opts.jobs ? opts.jobs : std::max<std::uint64_t>(jobs.size(), 1);
  std::uint64_t printed = 0;
  for (std::uint64_t seq = 1; seq <= jobs.size(); ++seq) {
    if (done.done(seq, opts.resume_failed)) continue;
    auto cmd = tmpl.render(jobs.at(seq - 1), seq, static_cast<std::size_t>(printed++ % slots + 1));
    if (auto p = command_problem(cmd); !p.empty())
      say(fmt::format("job {} could not run: {}", seq, p));
    else
      fmt::print("{}\n", cmd);
  }
  return 0;
}

}  // namespace pools_run
