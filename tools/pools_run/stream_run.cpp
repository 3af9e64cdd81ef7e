#include "stream_run.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <pools/pools.hpp>

#include "halt.hpp"
#include "job_stream.hpp"
#include "pool_kinds.hpp"
#include "quote.hpp"
#include "runner.hpp"

namespace pools_run {

namespace {

using namespace stream;
using Clock = std::chrono::steady_clock;

void say(const std::string& text) { fmt::print(stderr, "pools-run: {}\n", text); }

std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "?";
  return name;
}

void refuse_terminal(const char* stage) {
  if (::isatty(STDOUT_FILENO))
    throw UsageError(fmt::format("{} writes a binary stream: pipe its stdout to pools-run {} or redirect it "
                                 "to a file",
                                 stage, std::string_view(stage) == "--transmit" ? "--worker" : "--process"));
}

// ---- --worker -----------------------------------------------------------------------

/// What the reader task got from the job stream.
struct ReadItem {
  std::optional<Job> job;
  bool end = false;
  std::string error;  // the stream is bad
};

class Worker {
public:
  Worker(const Options& o, const JobsHeader& h, StreamReader& in) : opts_(o), hdr_(h), in_(in) {}

  ~Worker() {
    for (int fd : wake_)
      if (fd >= 0) ::close(fd);
  }

  /// Sends the results header; false when stdout is already gone.
  bool send_header(const ResultsHeader& rh) {
    std::string frame;
    append_results_header(frame, rh);
    return send(frame);
  }

  int run() {
    std::size_t workers = opts_.jobs_given ? opts_.jobs : hdr_.jobs.value_or(opts_.jobs);
    if (workers == 0) workers = static_cast<std::size_t>(std::clamp<std::uint64_t>(hdr_.transmitted(), 1, 4096));
    pool_ = &get_pool(opts_.pool, workers);
    slots_ = std::max<std::size_t>(1, std::min<std::size_t>(pool_->num_workers(), workers));
    // One thread reads the job stream, one watches stdout: both are tasks, so
    // that one wait_any covers them and the running jobs.
    auto& helpers = pools::get_thread_pool("pools-run-stream", 2);
    if (::pipe2(wake_, O_CLOEXEC) != 0)
      throw pools::Error(fmt::format("cannot make a pipe: {}", std::strerror(errno)));
    watcher_ = helpers.add_task("watch stdout", [fd = wake_[0]] { return stdout_closed(fd); });
    in_.set_cancel_fd(wake_[0]);

    while (!gone_) {
      if (!input_done_ && !reader_.valid() && (halting_ || tasks_.size() < slots_))
        reader_ = helpers.add_task("read the job stream", [this] { return read_item(); });
      if (tasks_.empty() && !reader_.valid()) break;
      std::vector<pools::TaskBase> waits(tasks_.begin(), tasks_.end());
      if (reader_.valid()) waits.push_back(reader_);
      waits.push_back(watcher_);
      const auto i = pools::wait_any(waits);
      if (i < tasks_.size()) {
        collect(i);
      } else if (reader_.valid() && i == tasks_.size()) {
        auto item = reader_.wait_return();
        reader_ = {};
        take(std::move(item));
      } else {
        stdout_gone("stdout closed");
      }
    }
    if (!gone_) {
      std::string frame;
      append_results_end(frame, {sent_, error_});
      send(frame);
    }
    stop_watcher();  // also wakes a reader still waiting for input (after stdout went)
    if (reader_.valid()) reader_.join();
    return error_.empty() && !gone_ ? 0 : exit_error;
  }

private:
  static bool stdout_closed(int wake_fd) {
    // Events 0: only POLLERR/POLLHUP/POLLNVAL can come for stdout, which a
    // pipe or socket reports once its reader is gone (a file never does).
    pollfd p[2] = {{STDOUT_FILENO, 0, 0}, {wake_fd, POLLIN, 0}};
    while (true) {
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      if (p[1].revents) return false;
      if (p[0].revents) return true;
    }
  }

  void stop_watcher() {
    [[maybe_unused]] auto n = ::write(wake_[1], "x", 1);
    watcher_.join();
  }

  ReadItem read_item() {
    ReadItem item;
    try {
      item.job = in_.next_job();
      item.end = !item.job;
    } catch (const std::exception& e) {
      item.error = e.what();
    }
    return item;
  }

  void take(ReadItem item) {
    if (!item.error.empty()) return input_failed(item.error);
    if (item.end) {
      input_done_ = true;
      return;
    }
    Job& job = *item.job;
    if (job.seq > hdr_.input_jobs || std::binary_search(hdr_.skipped.begin(), hdr_.skipped.end(), job.seq))
      return input_failed(fmt::format("job stream on stdin, at byte {}: job {} is not one the header announced "
                                      "(jobs 1 to {}, {} of them skipped)",
                                      in_.offset(), job.seq, hdr_.input_jobs, hdr_.skipped.size()));
    JobResult r;
    r.seq = job.seq;
    r.command = job.command;
    r.args = job.args;
    if (halting_) {
      r.status = JobStatus::not_started;
      return send_result(r);
    }
    r.problem = job.argv.empty() ? command_problem(job.command) : std::string();
    if (r.problem.empty()) {
      try {
        const std::size_t slot = slots_taken_.take();
        auto po = job_process_options(hdr_.timeout, hdr_.retries, job.seq, slot);
        const auto name = "job " + std::to_string(job.seq);
        auto argv = job.argv.empty() ? words_without_shell(job.command) : job.argv;
        try {
          tasks_.push_back(argv.empty() ? pool_->add_process(name, job.command, std::move(po))
                                        : pool_->add_process(name, std::move(argv), std::move(po)));
        } catch (...) {
          slots_taken_.give_back(slot);
          throw;
        }
        running_.push_back(std::move(r));
        running_slots_.push_back(slot);
        return;
      } catch (const std::exception& e) {
        r.problem = e.what();
      }
    }
    r.status = JobStatus::not_run;
    finished(std::move(r));
  }

  void input_failed(const std::string& error) {
    input_done_ = true;
    error_ = error;
    say(tasks_.empty() ? error
                       : fmt::format("{}; finishing the {} running jobs and sending their results", error,
                                     tasks_.size()));
  }

  void collect(std::size_t i) {
    auto task = std::move(tasks_[i]);
    auto r = std::move(running_[i]);
    tasks_.erase(tasks_.begin() + static_cast<std::ptrdiff_t>(i));
    running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
    slots_taken_.give_back(running_slots_[i]);
    running_slots_.erase(running_slots_.begin() + static_cast<std::ptrdiff_t>(i));
    try {
      r.result = task.result();
      r.status = JobStatus::ran;
    } catch (const std::exception& e) {
      r.status = JobStatus::not_run;
      r.problem = e.what();
    }
    finished(std::move(r));
  }

  void finished(JobResult r) {
    const bool ok = r.status == JobStatus::ran && r.result.succeeded();
    ok ? ++succeeded_ : ++failed_;
    send_result(r);
    check_halt();
  }

  // --halt on the worker, where the jobs run; --process reports the same
  // condition from the same results.
  void check_halt() {
    const auto& h = hdr_.halt;
    if (halting_ || h.when == HaltPolicy::When::never || !h.triggered(succeeded_, failed_, hdr_.transmitted()))
      return;
    halting_ = true;
    if (h.when == HaltPolicy::When::soon) {
      if (!tasks_.empty()) say(fmt::format("Starting no more jobs. Waiting for {} jobs to finish.", tasks_.size()));
      return;
    }
    if (!tasks_.empty()) say(fmt::format("Killing {} running jobs (--halt now,{}).", tasks_.size(), h.why_name()));
    kill_running(JobStatus::killed);
  }

  // Cancels the running jobs; sends each as `status` (unless stdout is gone).
  void kill_running(JobStatus status) {
    for (auto& t : tasks_) t.cancel();
    for (std::size_t i = 0; i < tasks_.size(); ++i) {
      try {
        tasks_[i].wait();  // observes the cancellation, so the pool does not report it
      } catch (const std::exception&) {
      }
      running_[i].status = status;
      send_result(running_[i]);
    }
    tasks_.clear();
    running_.clear();
    for (auto slot : running_slots_) slots_taken_.give_back(slot);
    running_slots_.clear();
  }

  void send_result(const JobResult& r) {
    std::string frame;
    append_result(frame, r);
    if (send(frame)) ++sent_;
  }

  bool send(const std::string& frame) {
    if (gone_) return false;
    if (write_all(STDOUT_FILENO, frame)) return true;
    stdout_gone(fmt::format("cannot write the results: {}", std::strerror(errno)));
    return false;
  }

  // The reader of the results went away: as any filter, die of SIGPIPE (the
  // library's relay first stops the running commands); when SIGPIPE is
  // ignored, stop the jobs and leave.
  void stdout_gone(const std::string& why) {
    if (gone_) return;
    gone_ = true;
    std::raise(SIGPIPE);
    say(fmt::format("--worker: {}; stopping {} running jobs", why, tasks_.size()));
    kill_running(JobStatus::killed);
    input_done_ = true;
  }

  const Options& opts_;
  const JobsHeader& hdr_;
  StreamReader& in_;
  pools::PoolBase* pool_ = nullptr;
  std::size_t slots_ = 1;
  int wake_[2] = {-1, -1};
  pools::Task<bool> watcher_;
  pools::Task<ReadItem> reader_;
  std::vector<pools::ProcessTask> tasks_;  // running, in step with running_
  std::vector<JobResult> running_;
  std::vector<std::size_t> running_slots_;  // their job slots, in step with running_
  JobSlots slots_taken_;
  std::uint64_t succeeded_ = 0, failed_ = 0, sent_ = 0;
  bool input_done_ = false, halting_ = false, gone_ = false;
  std::string error_;
};

std::string list_some(const std::vector<std::uint64_t>& seqs, std::uint64_t total) {
  std::string s;
  for (auto q : seqs) s += (s.empty() ? "" : ", ") + std::to_string(q);
  if (total > seqs.size()) s += ", ...";
  return s;
}

}  // namespace

void check_stage_options(const Options& o) {
  const char* stage = o.transmit ? "--transmit" : o.worker ? "--worker" : o.process ? "--process" : nullptr;
  if (!stage) return;
  auto refuse = [&](bool given, const char* option, const char* belongs) {
    if (given) throw UsageError(fmt::format("{} does not go with {}: it belongs to {}", option, stage, belongs));
  };
  const Options d;
  auto refuse_output = [&] {  // --process's
    refuse(o.keep_order, "-k", "--process");
    refuse(o.tag, "--tag", "--process");
    refuse(!o.results.empty(), "--results", "--process");
    refuse(o.bar, "--bar", "--process");
    refuse(!o.summary, "--no-summary", "--process");
  };
  if (o.transmit) {
    refuse_output();
    refuse(o.dry_run, "--dry-run", "a local run");
    refuse(o.pool != d.pool, "--pool", "--worker");
    refuse(!o.joblog.empty() && !o.resume && !o.resume_failed, "--joblog",
           "--process (--transmit reads a joblog only with --resume or --resume-failed)");
    return;
  }
  if (!o.command.empty() || !o.sources.empty())
    throw UsageError(fmt::format("{} reads a {} stream from stdin: it takes no command and no input sources", stage,
                                 o.worker ? "job" : "result"));
  refuse(o.dry_run, "--dry-run", "a local run");
  refuse(o.resume || o.resume_failed, o.resume ? "--resume" : "--resume-failed", "--transmit");
  refuse(o.timeout != d.timeout, "--timeout", "--transmit");
  refuse(o.retries != d.retries, "--retries", "--transmit");
  refuse(o.halt.when != d.halt.when, "--halt", "--transmit");
  refuse(o.colsep.has_value(), "--colsep", "--transmit");
  refuse(o.delimiter_given, "-d/-0", "--transmit");
  refuse(o.args_per_job != d.args_per_job, "-N/-n", "--transmit");
  if (o.worker) {
    refuse_output();
    refuse(!o.joblog.empty(), "--joblog", "--process");
  } else {
    refuse(o.jobs_given, "-j", "--worker (or --transmit)");
    refuse(o.pool != d.pool, "--pool", "--worker");
  }
}

int run_transmit(const Options& o, const Product& jobs, const CommandTemplate& tmpl, const JoblogState& done) {
  refuse_terminal("--transmit");
  JobsHeader h;
  h.host = this_host();
  h.input_jobs = jobs.size();
  for (std::uint64_t seq = 1; seq <= jobs.size() && !done.seen.empty(); ++seq)
    if (done.done(seq, o.resume_failed)) h.skipped.push_back(seq);
  h.resumed = o.resume || o.resume_failed;
  h.timeout = o.timeout;
  h.retries = o.retries;
  if (o.jobs_given) h.jobs = static_cast<std::uint32_t>(o.jobs);
  h.halt = o.halt;

  std::string buf;
  append_jobs_header(buf, h);
  std::uint64_t sent = 0;
  auto flush = [&] {
    if (!write_all(STDOUT_FILENO, buf))
      throw pools::Error(fmt::format("--transmit: cannot write the job stream: {}", std::strerror(errno)));
    buf.clear();
  };
  for (std::uint64_t seq = 1; seq <= jobs.size(); ++seq) {
    if (std::binary_search(h.skipped.begin(), h.skipped.end(), seq)) continue;
    Job j;
    j.seq = seq;
    j.args = jobs.at(seq - 1);
    j.command = tmpl.render(j.args, seq);
    append_job(buf, j);
    ++sent;
    if (buf.size() >= 64 * 1024) flush();
  }
  append_jobs_end(buf, sent);
  flush();
  return 0;
}

int run_worker(const Options& o) {
  refuse_terminal("--worker");
  StreamReader in(STDIN_FILENO, StreamReader::Kind::jobs, "stdin");
  ResultsHeader rh;
  rh.host = this_host();
  rh.pid = static_cast<std::int32_t>(::getpid());
  std::string error;
  try {
    rh.jobs = in.read_jobs_header();
  } catch (const StreamError& e) {
    error = e.what();
  }
  Worker w(o, rh.jobs, in);
  // The results header goes out even when the job stream is bad, so that
  // --process, at the other end of an ssh, says why.
  if (!w.send_header(rh)) return exit_error;
  if (!error.empty()) {
    say(error);
    std::string frame;
    append_results_end(frame, {0, error});
    write_all(STDOUT_FILENO, frame);
    return exit_error;
  }
  return w.run();
}

int run_process(const Options& o0) {
  const auto t0 = Clock::now();
  StreamReader in(STDIN_FILENO, StreamReader::Kind::results, "stdin");
  ResultsHeader h;
  try {
    h = in.read_results_header();
  } catch (const StreamError& e) {
    say(e.what());
    return exit_error;
  }
  // The run's options that --transmit chose.
  Options o = o0;
  o.halt = h.jobs.halt;
  o.resume = h.jobs.resumed;
  o.resume_failed = false;
  Report report(o, h.jobs.transmitted());
  for (auto seq : h.jobs.skipped) report.skip(seq);
  const std::string host = h.host == this_host() ? std::string() : h.host;

  std::set<std::uint64_t> got;
  std::string problem;
  // The run's wall time: from the first start to the last end on the worker's clock.
  std::optional<std::chrono::system_clock::time_point> first_start, last_end;
  while (true) {
    std::optional<JobResult> r;
    try {
      r = in.next_result();
    } catch (const StreamError& e) {
      problem = e.what();
      break;
    }
    if (!r) break;
    const bool sent = r->seq >= 1 && r->seq <= h.jobs.input_jobs &&
                      !std::binary_search(h.jobs.skipped.begin(), h.jobs.skipped.end(), r->seq);
    if (!sent || !got.insert(r->seq).second) {
      problem = fmt::format("result stream on stdin, before byte {}: {} for job {}, which {}", in.offset(),
                            sent ? "a second result" : "a result", r->seq,
                            sent ? "already has one" : "was not transmitted");
      break;
    }
    switch (r->status) {
      case JobStatus::killed: report.killed(r->seq); break;
      case JobStatus::not_started: report.not_started(1); break;
      case JobStatus::ran:
      case JobStatus::not_run: {
        Finished f;
        f.seq = r->seq;
        f.command = std::move(r->command);
        f.args = std::move(r->args);
        f.ran = r->status == JobStatus::ran;
        f.problem = std::move(r->problem);
        f.result = std::move(r->result);
        f.host = host;
        if (f.ran) {
          const auto& p = f.result;
          const auto end = p.started + std::chrono::duration_cast<std::chrono::system_clock::duration>(p.elapsed);
          first_start = std::min(first_start.value_or(p.started), p.started);
          last_end = std::max(last_end.value_or(end), end);
        }
        report.finish(std::move(f));
        break;
      }
    }
    report.update(0);
  }
  if (h.jobs.input_jobs == 0 && problem.empty() && in.end().error.empty())
    say("no jobs to run: the input is empty");
  if (!problem.empty()) say(problem);
  if (!in.end().error.empty())
    say(fmt::format("the worker on {} could not read all of its job stream: {}", h.host, in.end().error));
  const std::uint64_t lost = h.jobs.transmitted() - got.size();
  if (lost) {
    std::vector<std::uint64_t> some;
    for (std::uint64_t seq = 1; seq <= h.jobs.input_jobs && some.size() < 10; ++seq)
      if (!got.count(seq) && !std::binary_search(h.jobs.skipped.begin(), h.jobs.skipped.end(), seq))
        some.push_back(seq);
    say(fmt::format("{} of {} transmitted jobs have no result ({} {}): they count as failed", lost,
                    h.jobs.transmitted(), lost == 1 ? "job" : "jobs", list_some(some, lost)));
    report.lost(lost);
  }
  const int status = report.end(first_start ? Clock::duration(*last_end - *first_start) : Clock::now() - t0);
  return problem.empty() && in.end().error.empty() && lost == 0 ? status : exit_error;
}

}  // namespace pools_run
