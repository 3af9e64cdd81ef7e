// Unit tests of pools-run's parts that run nothing: quoting, templates, input
// sources, joblog, --halt, exit status, options, progress text.
#include <catch2/catch.hpp>

#include <sstream>

#include "command_template.hpp"
#include "halt.hpp"
#include "input.hpp"
#include "joblog.hpp"
#include "options.hpp"
#include "progress.hpp"
#include "quote.hpp"
#include "job_slots.hpp"

using namespace pools_run;
using Args = std::vector<std::string>;

TEST_CASE("shell_quote quotes only what the shell would change, as GNU parallel") {
  CHECK(shell_quote("abc-_.+/XYZ019") == "abc-_.+/XYZ019");
  CHECK(shell_quote("") == "''");
  CHECK(shell_quote("a b") == "'a b'");
  CHECK(shell_quote("$HOME") == "'$HOME'");
  CHECK(shell_quote("it's") == "'it'\"'\"'s'");
  CHECK(shell_quote("'") == "\"'\"");
  CHECK(shell_quote("''a") == "\"'\"''\"'\"'a'");
  CHECK(shell_quote("x\"y") == "'x\"y'");
  CHECK(shell_quote("a=b") == "'a=b'");
  CHECK(shell_quote("~") == "'~'");
  CHECK(shell_quote("\xc3\xa9") == "'\xc3\xa9'");
}

TEST_CASE("templates substitute {} {n} {#} and the path forms") {
  CHECK(CommandTemplate("echo {}").render({"a b"}, 1) == "echo 'a b'");
  CHECK(CommandTemplate("echo $(( {} + 1 ))").render({"1"}, 1) == "echo $(( 1 + 1 ))");
  CHECK(CommandTemplate("echo {2} {1} {#}").render({"a", "b"}, 7) == "echo b a 7");
  CHECK(CommandTemplate("echo {3}").render({"a", "b"}, 1) == "echo ");
  CHECK(CommandTemplate("echo {}").render({"a", "b c"}, 1) == "echo a 'b c'");
  CHECK(CommandTemplate("echo {.} {/} {//} {/.}").render({"/x/y.tar.gz"}, 1) ==
        "echo /x/y.tar y.tar.gz /x y.tar");
  CHECK(CommandTemplate("echo {1.} {2/}").render({"a.c", "d/e"}, 1) == "echo a e");
  CHECK(CommandTemplate("echo {} {x} {0} {").render({"a"}, 1) == "echo a {x} {0} {");
}

TEST_CASE("a template without replacement strings gets the arguments appended") {
  CommandTemplate t("echo x");
  CHECK_FALSE(t.has_replacements());
  CHECK(t.render({"a b", "c"}, 1) == "echo x 'a b' c");
  CHECK(CommandTemplate("echo {#}").render({"a"}, 3) == "echo 3");
}

TEST_CASE("without a template the arguments are the command, unquoted") {
  CommandTemplate t("");
  CHECK(t.render({"echo \"2 3\""}, 1) == "echo \"2 3\"");
  CHECK(t.render({"echo", "a b"}, 1) == "echo a b");
}

TEST_CASE("path transforms follow GNU parallel") {
  CHECK(apply_transform(Transform::no_extension, "a/b.c/d") == "a/b.c/d");
  CHECK(apply_transform(Transform::no_extension, ".bashrc") == ".bashrc");
  CHECK(apply_transform(Transform::dirname, "z") == ".");
  CHECK(apply_transform(Transform::dirname, "/z") == "/");
  CHECK(apply_transform(Transform::basename, "a/b/") == "");
}

TEST_CASE("unterminated quotes in a template are refused") {
  CHECK_THROWS_AS(CommandTemplate("echo 'a"), TemplateError);
  CHECK_THROWS_AS(CommandTemplate("echo \"a"), TemplateError);
  CHECK_THROWS_AS(CommandTemplate("echo a\\"), TemplateError);
  CHECK_THROWS_WITH(CommandTemplate("echo 'a"), Catch::Contains("unterminated ' quote"));
  CHECK_NOTHROW(CommandTemplate("echo \"it's\" 'say \"hi\"' \\' \"\\\"\""));
}

TEST_CASE("read_records keeps every byte and a last line without newline") {
  std::istringstream in(std::string("a\n\nb\0c\nlast", 11));
  auto lines = read_records(in);
  REQUIRE(lines.size() == 4);
  CHECK(lines[1].empty());
  CHECK(lines[2] == std::string("b\0c", 3));
  CHECK(lines[3] == "last");
  std::istringstream empty("");
  CHECK(read_records(empty).empty());
}

TEST_CASE("read_records splits on NUL or on a delimiter of several bytes") {
  const std::string nul(1, '\0');
  std::istringstream print0(std::string("a b\nc\0\0d\0", 9));  // as find -print0 writes
  CHECK(read_records(print0, nul) == Args{"a b\nc", "", "d"});
  std::istringstream crlf("x\r\ny\rz\r\n\r\nlast\r");
  CHECK(read_records(crlf, "\r\n") == Args{"x", "y\rz", "", "last\r"});
  std::istringstream commas("1,2,3\n");
  CHECK(read_records(commas, ",") == Args{"1", "2", "3\n"});  // the newline is data, as in GNU parallel
  std::istringstream overlapping("a::::b:::");
  CHECK(read_records(overlapping, "::") == Args{"a", "", "b", ":"});
}

TEST_CASE("-d understands GNU parallel's escapes") {
  CHECK(parse_delimiter(",") == ",");
  CHECK(parse_delimiter("\\t") == "\t");
  CHECK(parse_delimiter("\\r\\n") == "\r\n");
  CHECK(parse_delimiter("\\0") == std::string(1, '\0'));
  CHECK(parse_delimiter("\\054") == ",");   // octal
  CHECK(parse_delimiter("\\q") == "\\q");  // not an escape: as it is
  CHECK(parse_delimiter("a\\") == "a\\");
  CHECK_THROWS_AS(parse_delimiter(""), InputError);
}

TEST_CASE("--colsep splits literally or by regular expression") {
  CHECK(ColumnSplitter("\\t").split("a b\tc\t") == Args{"a b", "c", ""});
  CHECK(ColumnSplitter(",").split("a,b") == Args{"a", "b"});
  CHECK(ColumnSplitter("::").split("a::b:c") == Args{"a", "b:c"});
  CHECK(ColumnSplitter("\\s+").split("a  b\t c") == Args{"a", "b", "c"});
  CHECK(ColumnSplitter("[,;]").split("a;b,c") == Args{"a", "b", "c"});
  CHECK(ColumnSplitter("x*").split("abc") == Args{"abc"});
  CHECK_THROWS_AS(ColumnSplitter("("), InputError);
  CHECK_THROWS_AS(ColumnSplitter(""), InputError);
}

TEST_CASE("sources combine as a cartesian product, first source slowest") {
  Product p({{{"a"}, {"b"}}, {{"c"}, {"d", "e"}}});
  REQUIRE(p.size() == 4);
  CHECK(p.at(0) == Args{"a", "c"});
  CHECK(p.at(1) == Args{"a", "d", "e"});
  CHECK(p.at(2) == Args{"b", "c"});
  CHECK(p.at(3) == Args{"b", "d", "e"});
  CHECK(Product({{{"a"}}, {}}).size() == 0);
  CHECK(Product({}).size() == 0);
  Source big(1u << 16, Args{"x"});
  CHECK_THROWS_AS(Product({big, big, big, big, big}), InputError);
}

TEST_CASE("joblog lines are formatted exactly as GNU parallel's") {
  JoblogEntry e;
  e.seq = 12;
  e.start = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795455577299));
  e.runtime = std::chrono::milliseconds(6);
  e.received = 2;
  e.exitval = 1;
  e.command = "echo 1; exit 1";
  CHECK(format_joblog_line(e) == "12\t:\t1795455577.299\t     0.006\t0\t2\t1\t0\techo 1; exit 1");
  e.command = "a\nb";
  CHECK(format_joblog_line(e).find("a\\nb") != std::string::npos);
}

TEST_CASE("joblogs are parsed for --resume and --resume-failed") {
  std::string h(joblog_header);
  auto log = h + "\n1\t:\t1.0\t0.1\t0\t0\t0\t0\techo a\n2\t:\t1.0\t0.1\t0\t0\t1\t0\texit 1\n"
                 "3\t:\t1.0\t0.1\t0\t0\t0\t9\tkill\n4\t:\t1.0\t0.1\t0\t0\t-1\t15\tsleep\n"
                 "2\t:\t1.0\t0.1\t0\t0\t0\t0\texit 0\n5\t:\tcut short\n";
  auto s = parse_joblog(log, "log");
  CHECK(s.done(1, false));
  CHECK(s.done(1, true));
  CHECK(s.done(2, true));  // a later line succeeded
  CHECK_FALSE(s.done(3, true));
  CHECK_FALSE(s.done(4, true));
  CHECK(s.done(5, false));
  CHECK_FALSE(s.done(5, true));
  CHECK_FALSE(s.done(6, false));
  CHECK(parse_joblog("", "empty").seen.empty());
  CHECK(parse_joblog(h + "\n", "header only").seen.empty());
}

TEST_CASE("foreign joblogs are refused with a clear message") {
  CHECK_THROWS_WITH(parse_joblog("hello world\n", "f.txt"), Catch::Contains("f.txt is not a joblog"));
  CHECK_THROWS_WITH(parse_joblog(std::string(joblog_header) + "\nnot a line\n", "g"),
                    Catch::Contains("line 2"));
  CHECK_THROWS_AS(parse_joblog(std::string("\x01\x02\xff binary"), "b"), JoblogError);
}

TEST_CASE("--halt values parse as GNU parallel's") {
  using W = HaltPolicy::When;
  using Y = HaltPolicy::Why;
  auto p = HaltPolicy::parse("now,fail=1");
  CHECK((p.when == W::now && p.why == Y::fail && p.threshold == 1 && !p.percent));
  p = HaltPolicy::parse("soon,success=30%");
  CHECK((p.when == W::soon && p.why == Y::success && p.threshold == 30 && p.percent));
  CHECK(HaltPolicy::parse("now,done=3").why == Y::done);
  CHECK(HaltPolicy::parse("0").when == W::never);
  CHECK(HaltPolicy::parse("2").when == W::now);
  CHECK(HaltPolicy::parse("-1").why == Y::success);
  CHECK(HaltPolicy::parse("20%").percent);
  for (auto bad : {"", "now", "later,fail=1", "now,fail=", "now,fail=x", "now,fail=0",
                   "now,oops=1", "now,fail=101%", "now,fail=-1"})
    CHECK_THROWS_AS(HaltPolicy::parse(bad), HaltError);
}

TEST_CASE("--halt triggers on counts and percentages") {
  auto p = HaltPolicy::parse("soon,fail=2");
  CHECK_FALSE(p.triggered(10, 1, 20));
  CHECK(p.triggered(10, 2, 20));
  p = HaltPolicy::parse("now,fail=10%");
  CHECK_FALSE(p.triggered(0, 1, 20));
  CHECK(p.triggered(0, 2, 20));
  p = HaltPolicy::parse("now,done=3");
  CHECK(p.triggered(2, 1, 20));
  CHECK_FALSE(HaltPolicy{}.triggered(0, 100, 100));
}

namespace {
Outcome tally(std::uint64_t ok, std::uint64_t failed, std::uint64_t total, bool halted = false,
              std::optional<int> halting_exit = std::nullopt) {
  return Outcome{ok, failed, total, halted, halting_exit};
}
}  // namespace

TEST_CASE("exit status as GNU parallel") {
  HaltPolicy never;
  CHECK(exit_status(never, tally(5, 0, 5)) == 0);
  CHECK(exit_status(never, tally(5, 3, 8)) == 3);
  CHECK(exit_status(never, tally(0, 100, 100)) == 100);
  CHECK(exit_status(never, tally(0, 101, 101)) == 101);
  CHECK(exit_status(never, tally(0, 5000, 5000)) == 101);
  auto fail1 = HaltPolicy::parse("now,fail=1");
  CHECK(exit_status(fail1, tally(1, 1, 9, true, 7)) == 7);
  CHECK(exit_status(fail1, tally(1, 2, 9, true, -1)) == 2);
  CHECK(exit_status(HaltPolicy::parse("now,success=1"), tally(1, 3, 9, true)) == 0);
  CHECK(exit_status(HaltPolicy::parse("soon,fail=20%"), tally(0, 2, 10, true)) == 20);
  CHECK(exit_status(HaltPolicy::parse("soon,fail=1%"), tally(999, 1, 1000, true)) == 1);
  CHECK(exit_status(HaltPolicy::parse("soon,fail=30%"), tally(5, 2, 7, false)) == 29);
  CHECK(exit_status(HaltPolicy::parse("soon,success=2"), tally(1, 2, 3, false)) == 2);
}

namespace {
Options parse(Args a) { return parse_options(a, 4); }
}  // namespace

TEST_CASE("options: command template and sources") {
  auto o = parse({"-j", "2", "-k", "--tag", "echo", "-n", "{}", ":::", "a", "b", "::::", "f1", "f2", ":::", "c"});
  CHECK(o.jobs == 2);
  CHECK(o.keep_order);
  CHECK(o.tag);
  CHECK(o.command == Args{"echo", "-n", "{}"});
  REQUIRE(o.sources.size() == 4);
  CHECK(o.sources[0].values == Args{"a", "b"});
  CHECK(o.sources[1].kind == SourceSpec::Kind::file);
  CHECK(o.sources[2].values == Args{"f2"});
  CHECK(o.sources[3].values == Args{"c"});
  o = parse({"::: ", ":::", "x"});
  CHECK(o.command == Args{"::: "});
  o = parse({":::", "echo a"});
  CHECK(o.command.empty());
  CHECK(o.sources.size() == 1);
  o = parse({});
  CHECK(o.sources.empty());
  CHECK(o.jobs == 4);
}

TEST_CASE("options: values, forms and aliases") {
  auto o = parse({"-j4", "--timeout=2.5", "--retries", "3", "--halt", "soon,fail=1", "--joblog",
                  "+log", "--resume-failed", "--results", "out", "--dry-run", "--bar", "--colsep",
                  "\\t", "-a", "in.txt", "--no-summary", "--pool", "thread", "--will-cite", "cmd"});
  CHECK(o.jobs == 4);
  CHECK(o.timeout == std::chrono::milliseconds(2500));
  CHECK(o.retries == 3);
  CHECK(o.halt.when == HaltPolicy::When::soon);
  CHECK(o.joblog == "log");
  CHECK(o.joblog_append);
  CHECK(o.resume_failed);
  CHECK(o.results == "out");
  CHECK(o.dry_run);
  CHECK(o.bar);
  CHECK(*o.colsep == "\\t");
  CHECK(o.sources.size() == 1);
  CHECK_FALSE(o.summary);
  CHECK(o.pool == "thread");
  CHECK(o.command == Args{"cmd"});
  CHECK(parse({"-j", "+2"}).jobs == 6);
  CHECK(parse({"-j", "-2"}).jobs == 2);
  CHECK(parse({"-j", "-9"}).jobs == 1);
  CHECK(parse({"-j", "50%"}).jobs == 2);
  CHECK(parse({"-j", "0"}).jobs == 0);
  CHECK(parse({"--jobs=3"}).jobs == 3);
  CHECK(parse({"-P", "5"}).jobs == 5);
  CHECK(parse({"-u", "echo"}).ungroup);
  CHECK(parse({"--ungroup", "echo"}).ungroup);
  CHECK_THROWS_AS(parse({"-u", "-k", "echo"}), UsageError);
  CHECK_THROWS_AS(parse({"-u", "--results", "r", "echo"}), UsageError);
  CHECK_THROWS_AS(parse({"-u", "--worker"}), UsageError);
  CHECK(parse({"--eta"}).bar);
  CHECK(parse({"--progress"}).bar);
  CHECK(parse({"--help"}).help);
  CHECK(parse({"-V"}).version);
}

TEST_CASE("{%} is the job slot; JobSlots hands out the lowest free one") {
  CommandTemplate t("run --gpu {%} {}");
  CHECK(t.uses_slot());
  CHECK(t.render({"x"}, 7, 2) == "run --gpu 2 x");
  CHECK_FALSE(CommandTemplate("echo {#} {}").uses_slot());
  JobSlots slots;
  CHECK(slots.take() == 1);
  CHECK(slots.take() == 2);
  CHECK(slots.take() == 3);
  slots.give_back(2);
  CHECK(slots.take() == 2);
  slots.give_back(1);
  slots.give_back(3);
  CHECK(slots.take() == 1);
  CHECK(slots.take() == 3);
  CHECK(slots.take() == 4);
  slots.give_back(0);   // no slot: ignored
  slots.give_back(99);  // not one handed out: ignored
  CHECK(slots.take() == 5);
}

TEST_CASE("-N groups combinations into jobs") {
  Product p({{{"a"}, {"b"}, {"c"}}}, 2);
  REQUIRE(p.size() == 2);
  CHECK(p.at(0) == Args{"a", "b"});
  CHECK(p.at(1) == Args{"c"});
  Product cols({{{"a", "b"}, {"c", "d"}}, {{"x"}}}, 2);  // columns, two sources
  REQUIRE(cols.size() == 1);
  CHECK(cols.at(0) == Args{"a", "b", "x", "c", "d", "x"});
  Product none({{{"a"}, {"b"}}}, 0);
  REQUIRE(none.size() == 2);
  CHECK(none.at(1).empty());
  CHECK(Product({{{"a"}, {"b"}}}, 5).size() == 1);
  CHECK(Product({{}}, 2).size() == 0);
  CHECK(parse({"-N", "3", "echo"}).args_per_job == 3);
  CHECK(parse({"-n2", "echo"}).args_per_job == 2);
  CHECK(parse({"--max-replace-args=0", "echo"}).args_per_job == 0);
  CHECK(parse({"echo"}).args_per_job == 1);
  CHECK_THROWS_AS(parse({"-n", "0", "echo"}), UsageError);
  CHECK_THROWS_AS(parse({"-N", "x", "echo"}), UsageError);
}

TEST_CASE("options: -0 and -d set the input delimiter") {
  CHECK(parse({"echo"}).delimiter == "\n");
  CHECK_FALSE(parse({"echo"}).delimiter_given);
  CHECK(parse({"-0", "echo"}).delimiter == std::string(1, '\0'));
  CHECK(parse({"--null", "echo"}).delimiter_given);
  CHECK(parse({"-d", ",", "echo"}).delimiter == ",");
  CHECK(parse({"-d,", "echo"}).delimiter == ",");
  CHECK(parse({"--delimiter=\\r\\n", "echo"}).delimiter == "\r\n");
  CHECK(parse({"-d", "\\t", "-0", "echo"}).delimiter == "\t");  // -d wins, as in GNU parallel
  CHECK_THROWS_AS(parse({"-d", "", "echo"}), UsageError);
  CHECK_THROWS_AS(parse({"-0=x", "echo"}), UsageError);
}

TEST_CASE("options: usage errors") {
  for (Args bad : {Args{"--bogus"}, Args{"-j"}, Args{"-j", "x"}, Args{"-j", "99999"},
                   Args{"--timeout", "-1"}, Args{"--timeout", "abc"}, Args{"--halt", "sometimes"},
                   Args{"--resume", "echo"}, Args{"--joblog", "+"}, Args{"--tag=1"},
                   Args{"echo", ":::+", "a"}, Args{"echo", "::::"}})
    CHECK_THROWS_AS(parse(bad), UsageError);
}

TEST_CASE("progress text") {
  using namespace std::chrono;
  CHECK(format_duration(seconds(7)) == "0:07");
  CHECK(format_duration(seconds(3723)) == "1:02:03");
  auto line = progress_line(5, 1, 2, 10, seconds(10), 100, true);
  CHECK(line.find(" 50% 5/10 done, 1 failed, 2 running, ETA 0:10") != std::string::npos);
  CHECK(line.rfind("[", 0) == 0);
  CHECK(progress_line(0, 0, 2, 10, seconds(1), 0, false) == "  0% 0/10 done, 2 running, ETA ?");
  CHECK(progress_line(10, 0, 0, 10, seconds(1), 0, false).find("ETA 0:00") != std::string::npos);
  CHECK(progress_line(5, 0, 2, 10, seconds(10), 20, true).size() <= 20);
}

TEST_CASE("options: --group TEMPLATE, --group-limit, --group-keep-going") {
  auto o = parse({"--group", "{2}", "--group-limit", "3", "--group-keep-going", "echo", ":::", "a"});
  CHECK(o.group == "{2}");
  CHECK(o.group_limit == 3);
  CHECK(o.group_keep_going);
  CHECK(o.command == Args{"echo"});
  CHECK(parse({"--group={1/}", "echo"}).group == "{1/}");
  CHECK(parse({"echo"}).group_limit == 1);
  // GNU parallel's --group (grouped output) takes no value: the next word is
  // the command unless it has a replacement string.
  o = parse({"--group", "echo", "{}"});
  CHECK(o.group.empty());
  CHECK(o.command == Args{"echo", "{}"});
  for (Args bad : {Args{"--group", "{1}", "--group-limit", "0"}, Args{"--group-limit", "2", "echo"},
                   Args{"--group-keep-going", "echo"}, Args{"--group=rack", "echo"},
                   Args{"--group={1}'", "echo"}, Args{"--group", "{1}", "--transmit", "echo"}})
    CHECK_THROWS_AS(parse(bad), UsageError);
}

TEST_CASE("render_value substitutes without quoting and appends nothing") {
  CommandTemplate t("{2}/{1.}");
  CHECK(t.render_value({"a b.txt", "dc 3"}, 1) == "dc 3/a b");
  CHECK(t.render({"a b.txt", "dc 3"}, 1) == "'dc 3'/'a b'");
  CHECK(CommandTemplate("{3}").render_value({"x"}, 1).empty());
  CHECK(CommandTemplate("job{#}").render_value({"x"}, 7) == "job7");
}

TEST_CASE("commands the shell would only split run without it") {
  using V = std::vector<std::string>;
  CHECK(words_without_shell("/bin/true 17") == V{"/bin/true", "17"});
  CHECK(words_without_shell("  ls\t-l  --color=never /tmp ") == V{"ls", "-l", "--color=never", "/tmp"});
  CHECK(words_without_shell("gzip -9 a,b:c@d%e+f_g.h") == V{"gzip", "-9", "a,b:c@d%e+f_g.h"});
  // Anything the shell would expand, redirect, quote or run itself keeps the shell.
  for (const char* cmd : {"echo 1", "true", "cd /tmp", "exit 3", "if", "ls | wc", "ls > x", "ls $HOME",
                          "ls 'a b'", "ls \"a\"", "ls a\\ b", "ls *", "ls ~", "ls #x", "A=1 ls", "ls;ls",
                          "ls &", "ls\nls", "(ls)", "ls `x`", "ls {a,b}", "ls !x", "ls a?", "ls [ab]",
                          "", "   ", "no-such-program-here 1", "/no/such/file", "./", "/etc/passwd"})
    CHECK(words_without_shell(cmd).empty());
  CHECK(runs_without_shell("ls"));
  CHECK_FALSE(runs_without_shell("echo"));
}
