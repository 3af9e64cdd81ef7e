#include "options.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <utility>

#include "command_template.hpp"
#include "input.hpp"

namespace pools_run {

namespace {

std::size_t parse_count(const std::string& opt, const std::string& v, std::size_t max) {
  char* end = nullptr;
  errno = 0;
  unsigned long long n = v.empty() || v[0] == '-' ? 0 : std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || v[0] == '-' || !end || *end || errno || n > max)
    throw UsageError(opt + " needs a whole number from 0 to " + std::to_string(max) + ", not '" +
                     v + "'");
  return static_cast<std::size_t>(n);
}

std::size_t parse_jobs(const std::string& v, std::size_t cores) {
  constexpr std::size_t max_jobs = 4096;
  if (!v.empty() && v.back() == '%') {
    auto pct = parse_count("-j", v.substr(0, v.size() - 1), 100000);
    return std::clamp<std::size_t>(cores * pct / 100, 1, max_jobs);
  }
  if (!v.empty() && (v[0] == '+' || v[0] == '-')) {
    auto n = parse_count("-j", v.substr(1), max_jobs);
    if (v[0] == '+') return std::min(cores + n, max_jobs);
    return n >= cores ? 1 : cores - n;
  }
  return parse_count("-j", v, max_jobs);  // 0: as many as there are jobs
}

std::chrono::nanoseconds parse_seconds(const std::string& opt, const std::string& v) {
  char* end = nullptr;
  double s = v.empty() ? -1 : std::strtod(v.c_str(), &end);
  if (v.empty() || !end || *end || !std::isfinite(s) || s < 0 || s > 1e9)
    throw UsageError(opt + " needs a number of seconds (like 30 or 2.5), not '" + v + "'");
  return std::chrono::nanoseconds(static_cast<std::int64_t>(s * 1e9));
}

// Whether `word` is a --group template (it has a replacement string), as
// opposed to the next word after GNU parallel's --group flag.
bool is_group_template(const std::string& word) {
  if (word.find('{') == std::string::npos) return false;
  try {
    return CommandTemplate(word).has_replacements();
  } catch (const TemplateError&) {
    return false;
  }
}

std::string parse_group(const std::string& v) {
  try {
    if (!CommandTemplate(v).has_replacements())
      throw UsageError("--group needs a template with a replacement string such as {1} or {/}, "
                       "not '" + v + "'");
  } catch (const TemplateError& e) {
    throw UsageError(std::string("--group: ") + e.what());
  }
  return v;
}

}  // namespace

Options parse_options(const std::vector<std::string>& args, std::size_t cores) {
  Options o;
  o.jobs = std::max<std::size_t>(cores, 1);

  std::string group_option;  // a --group-* option given (they need --group)
  std::optional<std::string> delimiter;  // -d; wins over -0, as in GNU parallel
  bool null_delimiter = false;            // -0
  // Options that take a value, and what to do with it.
  using Setter = std::function<void(const std::string&)>;
  const std::map<std::string, Setter> with_value = {
      {"-j", [&](const std::string& v) {
         o.jobs = parse_jobs(v, std::max<std::size_t>(cores, 1));
         o.jobs_given = true;
       }},
      {"--pool", [&](const std::string& v) { o.pool = v; }},
      {"--timeout", [&](const std::string& v) { o.timeout = parse_seconds("--timeout", v); }},
      {"--retries", [&](const std::string& v) { o.retries = static_cast<unsigned>(parse_count("--retries", v, 1000)); }},
      {"--halt", [&](const std::string& v) {
         try {
           o.halt = HaltPolicy::parse(v);
         } catch (const HaltError& e) {
           throw UsageError(e.what());
         }
       }},
      {"--joblog", [&](const std::string& v) {
         o.joblog_append = !v.empty() && v[0] == '+';
         o.joblog = o.joblog_append ? v.substr(1) : v;
         if (o.joblog.empty()) throw UsageError("--joblog needs a file name");
       }},
      {"--results", [&](const std::string& v) {
         if (v.empty()) throw UsageError("--results needs a directory");
         o.results = v;
       }},
      {"-a", [&](const std::string& v) { o.sources.push_back({SourceSpec::Kind::file, {v}}); }},
      {"--colsep", [&](const std::string& v) { o.colsep = v; }},
      {"-N", [&](const std::string& v) { o.args_per_job = parse_count("-N", v, 1000000); }},
      {"-n", [&](const std::string& v) {
         o.args_per_job = parse_count("-n", v, 1000000);
         if (o.args_per_job == 0) throw UsageError("-n needs at least 1 (-N0 runs a job per record with none)");
       }},
      {"-d", [&](const std::string& v) {
         try {
           delimiter = parse_delimiter(v);
         } catch (const InputError& e) {
           throw UsageError(e.what());
         }
       }},
      {"--group-limit", [&](const std::string& v) {
         o.group_limit = parse_count("--group-limit", v, 1000000);
         if (o.group_limit == 0) throw UsageError("--group-limit needs at least 1");
         group_option = "--group-limit";
       }},
  };
  const std::map<std::string, std::string> aliases = {
      {"--jobs", "-j"}, {"-P", "-j"}, {"--max-procs", "-j"}, {"--halt-on-error", "--halt"},
      {"--jl", "--joblog"}, {"--res", "--results"}, {"--arg-file", "-a"}, {"-C", "--colsep"},
      {"--delimiter", "-d"}, {"-0", "--null"}, {"--max-replace-args", "-N"}, {"--max-args", "-n"},
      {"--eta", "--bar"}, {"--progress", "--bar"}, {"-u", "--ungroup"},
      {"-k", "--keep-order"}, {"-h", "--help"}, {"-V", "--version"}, {"--dryrun", "--dry-run"}};
  const std::map<std::string, bool*> flags = {
      {"--keep-order", &o.keep_order}, {"--tag", &o.tag},     {"--resume", &o.resume},
      {"--resume-failed", &o.resume_failed}, {"--dry-run", &o.dry_run}, {"--bar", &o.bar},
      {"--help", &o.help},          {"--version", &o.version},
      {"--transmit", &o.transmit},  {"--worker", &o.worker},   {"--process", &o.process},
      {"--null", &null_delimiter}, {"--ungroup", &o.ungroup}};
  bool ignored = false;
  const std::map<std::string, bool*> accepted_and_ignored = {
      {"--will-cite", &ignored}, {"--no-notice", &ignored}};

  std::size_t i = 0;
  for (; i < args.size(); ++i) {
    std::string a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a.size() < 2 || a[0] != '-' || a == ":::" || a == "::::") break;  // the command starts
    if (a == "--no-summary") {
      o.summary = false;
      continue;
    }
    if (a == "--group-keep-going") {
      o.group_keep_going = true;
      group_option = a;
      continue;
    }
    if (a == "--group") {
      // GNU parallel's --group (grouped output, its default) takes no value:
      // the next word is a group template only when it has a replacement string.
      if (i + 1 < args.size() && is_group_template(args[i + 1])) o.group = parse_group(args[++i]);
      continue;
    }
    if (a.rfind("--group=", 0) == 0) {
      o.group = parse_group(a.substr(8));
      continue;
    }
    std::optional<std::string> value;
    if (a.rfind("--", 0) == 0) {
      if (auto eq = a.find('='); eq != std::string::npos) {
        value = a.substr(eq + 1);
        a.resize(eq);
      }
    } else if (a.size() > 2) {  // -j4, -aFILE
      value = a.substr(2);
      a.resize(2);
    }
    if (auto al = aliases.find(a); al != aliases.end()) a = al->second;
    if (auto f = flags.find(a); f != flags.end()) {
      if (value) throw UsageError("option " + a + " takes no value");
      *f->second = true;
    } else if (auto g = accepted_and_ignored.find(a); g != accepted_and_ignored.end()) {
      *g->second = true;
    } else if (auto w = with_value.find(a); w != with_value.end()) {
      if (!value) {
        if (i + 1 >= args.size()) throw UsageError("option " + a + " needs a value");
        value = args[++i];
      }
      w->second(*value);
    } else {
      throw UsageError("unknown option: " + args[i]);
    }
  }

  // The command template runs up to the first ::: or ::::; then the sources.
  for (; i < args.size() && args[i] != ":::" && args[i] != "::::"; ++i) {
    if (args[i] == ":::+" || args[i] == "::::+")
      throw UsageError(args[i] + " (linked input sources) is not supported by pools-run");
    o.command.push_back(args[i]);
  }
  while (i < args.size()) {
    const std::string sep = args[i++];
    if (sep == ":::+" || sep == "::::+")
      throw UsageError(sep + " (linked input sources) is not supported by pools-run");
    SourceSpec s{sep == ":::" ? SourceSpec::Kind::list : SourceSpec::Kind::file, {}};
    for (; i < args.size() && args[i] != ":::" && args[i] != "::::" && args[i] != ":::+" &&
           args[i] != "::::+";
         ++i)
      s.values.push_back(args[i]);
    if (s.kind == SourceSpec::Kind::file) {
      if (s.values.empty()) throw UsageError(":::: needs at least one file name");
      for (auto& f : s.values) o.sources.push_back({SourceSpec::Kind::file, {f}});
    } else {
      o.sources.push_back(std::move(s));  // an empty ::: list means no jobs
    }
  }
  if (delimiter) o.delimiter = *delimiter;
  else if (null_delimiter) o.delimiter = std::string(1, '\0');
  o.delimiter_given = delimiter || null_delimiter;
  if (int(o.transmit) + int(o.worker) + int(o.process) > 1)
    throw UsageError("--transmit, --worker and --process are three stages: give at most one");
  if (!group_option.empty() && o.group.empty())
    throw UsageError(group_option + " needs --group TEMPLATE");
  if (!o.group.empty() && (o.transmit || o.worker || o.process))
    throw UsageError("--group does not work with job streams (--transmit, --worker, --process) yet");
  if (o.ungroup) {
    // Their output is not ours to hold, order, tag or save.
    const std::pair<bool, const char*> conflicts[] = {
        {o.keep_order, "-k"}, {o.tag, "--tag"}, {!o.results.empty(), "--results"},
        {o.transmit || o.worker || o.process, "job streams"}};
    for (auto [given, option] : conflicts)
      if (given) throw UsageError(std::string("-u (--ungroup) does not go with ") + option +
                                  ": the jobs' output goes straight to stdout and stderr");
  }
  if (o.resume && o.resume_failed) o.resume = false;  // --resume-failed includes --resume
  if ((o.resume || o.resume_failed) && o.joblog.empty())
    throw UsageError(std::string(o.resume_failed ? "--resume-failed" : "--resume") +
                     " needs --joblog FILE (the joblog of the earlier run)");
  return o;
}

std::string usage_text() {
  return R"(Usage: pools-run [options] [command [arguments]] < list_of_arguments
       pools-run [options] [command [arguments]] (::: arguments | :::: argfile)...
       pools-run [options] < list_of_commands

Runs shell commands in bulk, as GNU parallel does, on a pools pool.
Without a command, each input line is a whole command. With one, each input
line (or each combination of the ::: and :::: sources) is an argument list.

Replacement strings (substituted values are shell-quoted when needed):
  {}  the arguments     {1} {2} ...  one column      {#}  the job number
  {%} the job slot (1 to -j; no two running jobs share one)
  {.} without extension {/} basename {//} dirname    {/.} basename without extension
  (also {1.} {2/} ...). A command without any gets the arguments appended.

Input:
  ::: a b c          arguments from the command line (several: all combinations)
  :::: FILE          arguments from a file, one per line ("-": stdin)
  -a FILE            the same (--arg-file)
  --colsep REGEX     split each argument line into columns {1} {2} ... (-C)
  -N N               N input records per job: {1} {2} ... number their columns in
                     turn, {} is all of them (--max-replace-args; -n N the same)
  -0, --null         input records end with NUL, not newline (find -print0)
  -d, --delimiter D  input records end with D (\t \n \r, octal \NNN or \0
                     understood), for stdin, :::: and -a alike

Options:
  -j N               run N jobs at once (default: cores); +2 and -2: cores plus or
                     minus 2, 50%: half the cores, 0: all at once
  --pool KIND        process (default), thread, serial, multiprocess, cluster
  --timeout SECONDS  kill a job that runs longer (its whole process group)
  --retries N        run a failing job up to N times in all (as GNU parallel)
  --halt WHEN,WHY=N  stop early: now,fail=N | soon,fail=N | now,success=N | soon,success=N
                     | now,done=N | soon,done=N (N may be a percentage: fail=10%)
  -k, --keep-order   print the outputs in input order (default: as jobs finish)
  -u, --ungroup      jobs write straight to stdout and stderr as they run (not
                     held until a job ends; lines of jobs may mix)
  --tag              prefix each output line with the arguments and a tab
  --joblog FILE      log every job in GNU parallel's joblog format (+FILE appends)
  --resume           skip the jobs the joblog lists (needs --joblog)
  --resume-failed    skip the jobs the joblog lists as succeeded; run the others
  --results DIR      also save each job's output in DIR/<job number>/{stdout,stderr,command}
  --dry-run          print the commands instead of running them
  --bar              progress bar with ETA on stderr (plain progress lines when stderr
                     is not a terminal); --eta and --progress show the same
  --no-summary       no summary line at the end
  --group TEMPLATE   failure-domain groups: the template names each job's group
                     (e.g. {2} with --colsep); a group runs its jobs one at a time
                     in input order, groups run side by side, and after a failed
                     job the rest of its group is skipped (counted as failed in
                     the exit status, Exitval -1 in the joblog)
  --group-limit K    run up to K jobs of a group at once (default 1)
  --group-keep-going run the rest of a group after a failed job
  --transmit         write the jobs as a job stream to stdout instead of running them
  --worker           run the job stream read from stdin; write the results to stdout
  --process          read a result stream from stdin: output, joblog, summary, exit
                     status as a local run (pools-run --transmit ... | ssh host
                     pools-run --worker | pools-run --process; see "Job streams")
  -h, --help         this text
  -V, --version      the version

Exit status: 0 when every job succeeded, otherwise the number of failed jobs
(101 for more than 100), 255 for usage and other errors. With --halt fail=1, the
exit status of the failing job.
)";
}

}  // namespace pools_run
