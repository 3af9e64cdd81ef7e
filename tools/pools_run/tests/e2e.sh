#!/usr/bin/env bash
# End-to-end tests of pools-run: runs the built program on real commands.
#   POOLS_RUN=build/tools/pools_run/pools-run bash e2e.sh GROUP
# GROUP: input output joblog halt errors signals pools streams (or all).
# Deterministic on a loaded machine: no assertion depends on how long anything
# takes; where order matters, jobs wait for files that pools-run writes.
# GNU parallel, when installed, is run beside pools-run for the compatibility
# checks; without it those checks are skipped, saying so.
set -u
P=${POOLS_RUN:?set POOLS_RUN to the pools-run binary}
group=${1:-all}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pools-run-e2e.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fails=0
checks=0
have_parallel=false
if command -v parallel >/dev/null 2>&1 && parallel --version 2>/dev/null | grep -q 'GNU parallel'; then
  have_parallel=true
fi

check() {  # check NAME EXPECTED ACTUAL
  checks=$((checks + 1))
  if [ "$2" == "$3" ]; then
    echo "ok   $1"
  else
    fails=$((fails + 1))
    echo "FAIL $1"
    echo "     expected: $(printf %q "$2")"
    echo "     actual:   $(printf %q "$3")"
  fi
}
check_contains() {  # check_contains NAME NEEDLE HAYSTACK
  checks=$((checks + 1))
  if [[ "$3" == *"$2"* ]]; then
    echo "ok   $1"
  else
    fails=$((fails + 1))
    echo "FAIL $1: $(printf %q "$2") not in:"
    printf '%s\n' "$3" | head -20 | sed 's/^/     /'
  fi
}
skip() { echo "skip $1"; }

# run_summary ARGS...: runs pools-run; sets out, err (NUL bytes dropped) and rc.
run_summary() {
  "$P" "$@" >"$tmp/.out" 2>"$tmp/.err"
  rc=$?
  out=$(tr -d '\0' <"$tmp/.out")
  err=$(tr -d '\0' <"$tmp/.err")
}
# run ARGS...: the same without the summary line.
run() { run_summary --no-summary "$@"; }
# How many processes have a command line matching the extended regex $1 (write
# a dot as [.] so that the pattern does not match the grep that looks for it).
count_procs() {
  grep -laE "$1" /proc/[0-9]*/cmdline 2>/dev/null | wc -l
}
# Waits (at most 120 s) until count_procs $1 reaches $2.
wait_procs() {
  local i
  for i in $(seq 600); do
    [ "$(count_procs "$1")" -ge "$2" ] && return 0
    sleep 0.2
  done
  return 1
}

test_input() {
  run -k echo ::: 'a b' '$HOME' "it's" '' '*'
  check "values arrive literally" $'a b\n$HOME\nit\'s\n\n*' "$out"
  run -k 'echo $(( {} + 1 ))' ::: 1 2
  check "unquoted numbers work in arithmetic" $'2\n3' "$out"
  run -k echo {1}-{2} {#} ::: a b ::: c d
  check "::: sources combine as a cartesian product" $'a-c 1\na-d 2\nb-c 3\nb-d 4' "$out"
  printf 'f1\nf 2\n' >args.txt
  run -k echo {2} {1} ::: x :::: args.txt
  check ":::: reads a file" $'f1 x\nf 2 x' "$out"
  run -k -a args.txt echo
  check "-a reads a file; arguments appended" $'f1\nf 2' "$out"
  run -k echo +{}+ <<<$'one\ntwo words'
  check "stdin lines are arguments" $'+one+\n+two words+' "$out"
  run -k <<<$'echo 1\necho "2  3" | tr 2 x'
  check "without a command each stdin line is a command" $'1\nx  3' "$out"
  run -k ::: 'echo a' 'echo b'
  check "::: values without a command are commands" $'a\nb' "$out"
  run -k --colsep , echo {2}:{1} <<<$'a,b\nc d,e'
  check "--colsep splits columns" $'b:a\ne:c d' "$out"
  run -k --colsep '\t' echo {} <<<$'a\tb c'
  check "{} with --colsep is every column" $'a b c' "$out"
  run -k echo {.} {/} {//} {/.} ::: /x/y.tar.gz
  check "path replacement strings" "/x/y.tar y.tar.gz /x y.tar" "$out"
  run -k 'echo PARALLEL_SEQ=$PARALLEL_SEQ' ::: a b
  check "jobs see PARALLEL_SEQ" $'PARALLEL_SEQ=1 a\nPARALLEL_SEQ=2 b' "$out"
  run -k -0 'printf "[%s]\n"' < <(printf 'a b\0c\nd\0\0last')
  check "-0: NUL ends each record; newlines and spaces are data" $'[a b]\n[c\nd]\n[]\n[last]' "$out"
  mkdir -p found && touch "found/x y.dat" "found/new"$'\n'"line.dat" found/z.dat
  find found -name '*.dat' -print0 | sort -z >found.list
  run -k --null -a found.list 'test -f {} && echo ok'
  check "-0 with find -print0: every file name arrives whole" $'ok\nok\nok' "$out"
  run -k -d , echo :::: <(printf '1,2 3,4')
  check "-d , splits :::: files too" $'1\n2 3\n4' "$out"
  run -k -d '\r\n' echo <<<$'x\r\ny'
  check "-d with escapes and several bytes" $'x\ny' "$out"
  # {%}: no two running jobs share a slot (mkdir fails on a taken one), and
  # every slot is one of 1..3; $PARALLEL_JOBSLOT is the same number.
  mkdir -p held
  run -j3 'mkdir held/{%} && echo {%} >>slots.seen && test "$PARALLEL_JOBSLOT" = {%} && sleep 0.05 && rmdir held/{%}' ::: $(seq 12)
  check "{%}: 12 jobs, none shared a slot with a running job" "0" "$rc"
  check "{%}: 12 slots seen, each 1, 2 or 3" "12:0" "$(wc -l <slots.seen | tr -d ' '):$(grep -cvxE '[123]' slots.seen)"
  run -j2 --dry-run echo {%} {#} ::: a b c
  check "{%} in --dry-run: slots in turn" $'echo 1 1\necho 2 2\necho 1 3' "$out"
  run --transmit echo {%} ::: a
  check "{%} with --transmit: exit 255" "255" "$rc"
  run --group {1} echo {%} ::: a
  check "{%} with --group: exit 255" "255" "$rc"
  run -k -N2 'echo {1}+{2}' < <(printf '1\n2\n3\n')
  check "-N2: two records per job, the last one short" $'1+2\n3+' "$out"
  run -k -N0 'echo x' ::: a b c
  check "-N0: a job per record, none inserted" $'x\nx\nx' "$out"
  run -n0 echo ::: a
  check "-n0: exit 255" "255" "$rc"
  run -d '' echo ::: a
  check "-d '': exit 255" "255" "$rc"
  check_contains "-d '': says so" "-d needs a delimiter" "$err"
  run --worker -0 </dev/null
  check "--worker -0: exit 255" "255" "$rc"
  run echo </dev/null
  check "empty stdin: exit 0" "0" "$rc"
  check_contains "empty stdin: says so" "no jobs to run: the input is empty" "$err"
  run echo :::
  check "empty ::: list: exit 0" "0" "$rc"
  # -j: at most N jobs at once (each job holds a file while it runs).
  mkdir -p slots
  run -j 2 'touch slots/{}; ls slots | wc -l > count.{}; sleep 0.2; rm slots/{}' ::: $(seq 8)
  check "-j 2: at most 2 jobs at once" "2" "$(cat count.* | sort -n | tail -1 | awk '{print ($1 <= 2) ? 2 : $1}')"
  if $have_parallel; then
    local spec
    for spec in "echo {} ::: 'a b' \$HOME \"it's\" '' x\\\"y é '~' a=b" \
                "echo {1} {2} {#} ::: a b ::: c 'd e'" "echo x ::: 'a b' c" \
                "echo {3} {} ::: a ::: b" "echo {.} {/} {//} {/.} {2/.} ::: /x/y.tar.gz ::: z.c" \
                "--colsep , echo {2} {1} {} ::: 'a,b c' 'd'" "-0 echo {} :::: found.list" \
                "-d '\\054' echo {} :::: <(printf 'p,q r,\\ns')" "-d ab echo {} :::: <(printf 'xabyaab')" \
                "-N2 echo {1}-{2} ::: a b c d e" "-n2 echo ::: a b c" "-N2 echo {} {#} ::: a b ::: c d" \
                "-N2 --colsep , echo {1} {2} {3} ::: a,b c,d e" "-N3 echo {2/} {3.} ::: /x/a.c /y/b.d" \
                "-N2 echo ::: 'a b' '' c"; do
      # -k: parallel's --dry-run lines come in completion order, which a
      # loaded machine shuffles (seen under TSan in CI).
      eval "parallel --will-cite -k --dry-run $spec" >"$tmp/gp.out" 2>&1
      eval "\"\$P\" -k --dry-run $spec" >"$tmp/pr.out" 2>&1
      check "--dry-run like GNU parallel: $spec" "$(cat "$tmp/gp.out")" "$(cat "$tmp/pr.out")"
    done
  else
    skip "--dry-run compared with GNU parallel (not installed)"
  fi
}

test_output() {
  # Completion order without -k: job A waits until job B's results are saved.
  run -j 2 --results res 'if [ {} = A ]; then while [ ! -e res/2/command ]; do sleep 0.05; done; fi; echo {}' ::: A B
  check "output in completion order" $'B\nA' "$out"
  rm -rf res
  run -j 2 -k --results res 'if [ {} = A ]; then while [ ! -e res/2/command ]; do sleep 0.05; done; fi; echo {}' ::: A B
  check "-k keeps input order" $'A\nB' "$out"
  check "--results: stdout file" "A" "$(cat res/1/stdout)"
  check "--results: command file" "$(printf '%s\n' "if [ B = A ]; then while [ ! -e res/2/command ]; do sleep 0.05; done; fi; echo B")" "$(cat res/2/command)"
  # -u: a job's output shows while it runs (the job waits for the test to
  # see it); without -u this would wait for ever (at most 120 s: a failure).
  rm -f go ungrouped.out
  "$P" -u --no-summary --joblog u.log 'echo ready {}; while [ ! -e go ]; do sleep 0.05; done; echo done {} >&2; exit 3' ::: 1 \
    >ungrouped.out 2>ungrouped.err &
  local upid=$! seen=no i
  for i in $(seq 2400); do
    if grep -q "ready 1" ungrouped.out 2>/dev/null; then seen=yes; break; fi
    sleep 0.05
  done
  touch go
  wait $upid
  local urc=$?
  check "-u: output shows while the job runs" "yes" "$seen"
  check "-u: stdout and stderr are the job's own" "ready 1:done 1" "$(cat ungrouped.out):$(cat ungrouped.err)"
  check "-u: exit status and joblog as usual" "1:3" "$urc:$(tail -n 1 u.log | cut -f 7)"
  run -u -j2 'echo out {}; echo err {} >&2' ::: a b
  check "-u: every job's output" $'out a\nout b:err a\nerr b' "$(sort <<<"$out"):$(sort <<<"$err")"
  run -u -k echo ::: a
  check "-u with -k: exit 255" "255" "$rc"
  check_contains "-u with -k: says why" "-u (--ungroup) does not go with -k" "$err"
  run --results res2 'echo out {}; echo err {} >&2' ::: x
  check "--results: stderr file" "err x" "$(cat res2/1/stderr)"
  check "stderr of a job goes to stderr" "err x" "$err"
  check "stdout of a job goes to stdout" "out x" "$out"
  run -k 'echo out{}; echo err{} >&2; echo more{}' ::: 1 2
  check "output is grouped per job" $'out1\nmore1\nout2\nmore2' "$out"
  run -k --tag 'echo a; echo b' ::: x 'y z'
  check "--tag prefixes lines with the arguments and a tab" $'x\ta\nx\tb x\ny z\ta\ny z\tb y z' "$out"
  if $have_parallel; then
    local gp
    gp=$(parallel --will-cite -k --tag 'echo a; echo b' ::: x 'y z' ::: 1 2)
    run -k --tag 'echo a; echo b' ::: x 'y z' ::: 1 2
    check "--tag like GNU parallel" "$gp" "$out"
  else
    skip "--tag compared with GNU parallel (not installed)"
  fi
  run --dry-run 'touch ran.{}' ::: 1 2
  check "--dry-run prints the commands" $'touch ran.1\ntouch ran.2' "$out"
  check "--dry-run runs nothing" "no" "$([ -e ran.1 ] && echo yes || echo no)"
  run --bar -k 'echo {}' ::: 1 2 3
  check_contains "--bar off a terminal: plain progress lines" "pools-run: 100% 3/3 done, 0 running, ETA 0:00" "$err"
  check "--bar leaves stdout alone" $'1\n2\n3' "$out"
  if command -v script >/dev/null 2>&1; then
    script -qec "\"$P\" --no-summary --bar 'echo {}' ::: 1 2 3 >/dev/null" /dev/null >bar.tty 2>&1
    check_contains "--bar on a terminal draws a bar" "[########################################] 100% 3/3 done" "$(tr '\r' '\n' <bar.tty)"
  else
    skip "--bar on a terminal (no script(1))"
  fi
  run_summary 'exit {}' ::: 0 0 1
  check_contains "summary at the end" "pools-run: 2 succeeded, 1 failed, 0 skipped; wall time " "$err"
  check_contains "summary: commands per second" " commands/s" "$err"
  run --version
  check_contains "--version" "pools-run (pools) " "$out"
  run --help
  check "--help exits 0" "0" "$rc"
  check_contains "--help lists options" "--resume-failed" "$out"
}

joblog_line_re=$'^[0-9]+\t:\t[0-9]+\\.[0-9]{3}\t *[0-9]+\\.[0-9]{3}\t0\t[0-9]+\t-?[0-9]+\t[0-9]+\t'
joblog_header=$'Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand'

test_joblog() {
  run --joblog log1 -j1 'echo {}; exit {}' ::: 0 1 2
  check "failed jobs: exit status is their number" "2" "$rc"
  check "joblog header" "$joblog_header" "$(head -1 log1)"
  check "joblog lines have GNU parallel's format" "3" "$(tail -n +2 log1 | grep -cE "$joblog_line_re")"
  check "joblog: seq, host, send, receive, exitval, signal, command" \
    $'1\t:\t0\t2\t0\t0\techo 0; exit 0\n2\t:\t0\t2\t1\t0\techo 1; exit 1\n3\t:\t0\t2\t2\t0\techo 2; exit 2' \
    "$(tail -n +2 log1 | cut -f 1,2,5- | sort -n)"
  run --joblog log2 'kill -9 $$' ::: x
  check "joblog: a killed job has Exitval 0 and its signal" $'0\t9' "$(tail -1 log2 | cut -f 7,8)"
  run --joblog log3 --timeout 0.5 'sleep 1000.{}' ::: 777$$
  check "joblog: a timed-out job has Exitval -1" $'-1\t15' "$(tail -1 log3 | cut -f 7,8)"
  check_contains "timeout: says so" "This job was killed because it timed out" "$err"
  run --joblog +log3 'exit 0' ::: y
  check "--joblog +FILE appends" "3" "$(wc -l <log3)"
  run --joblog log3 'exit 0' ::: y
  check "--joblog FILE starts afresh" "2" "$(wc -l <log3)"

  # --retries N: at most N attempts in all (the job succeeds on its second).
  local attempt='n=$(cat c.{} 2>/dev/null || echo 0); echo $((n + 1)) >c.{}; [ $n -ge 1 ]'
  run --retries 2 "$attempt" ::: a
  check "--retries 2: the second attempt succeeds" "0:2" "$rc:$(cat c.a)"
  run --retries 1 "$attempt" ::: b
  check "--retries 1: one attempt" "1:1" "$rc:$(cat c.b)"

  # --resume skips every job in the joblog; --resume-failed only the successes.
  run --joblog log4 'echo {}; exit {}' ::: 0 1 0
  run -k --resume --joblog log4 'echo {}; exit 0' ::: 0 1 0 5
  check "--resume runs only the new jobs" "5" "$out"
  run -k --resume-failed --joblog log4 'echo run {}; exit 0' ::: 0 1 0 5 6
  check "--resume-failed reruns the failed and new jobs" $'run 1\nrun 6' "$out"
  run -k --resume-failed --joblog log4 'echo run {}; exit 0' ::: 0 1 0 5 6
  check "--resume-failed: nothing left" "" "$out"
  run_summary --resume --joblog log4 'exit 0' ::: 0 1 0 5 6
  check_contains "summary counts skipped jobs" "0 succeeded, 0 failed, 5 skipped" "$err"
  run --resume --joblog new.log 'echo {}' ::: a
  check "--resume with no joblog yet runs everything" "a" "$out"

  if $have_parallel; then
    # Both ways: GNU parallel resumes from pools-run's joblog, and back.
    run --joblog pr.log 'echo {}; exit {}' ::: 0 1 0
    local gp
    gp=$(parallel --will-cite -k --resume --joblog pr.log 'echo new {}' ::: 0 1 0 7 8)
    check "parallel --resume skips the jobs in pools-run's joblog" $'new 7\nnew 8' "$gp"
    gp=$(parallel --will-cite -k --resume-failed --joblog pr.log 'echo again {}' ::: 0 1 0 7 8)
    check "parallel --resume-failed reruns pools-run's failed job" "again 1" "$gp"
    parallel --will-cite --joblog gp.log 'echo {}; exit {}' ::: 0 1 0 2 >/dev/null 2>&1
    run -k --resume-failed --joblog gp.log 'echo again {}' ::: 0 1 0 2 9
    check "pools-run --resume-failed reads parallel's joblog" $'again 1\nagain 2\nagain 9' "$out"
    run -k --resume --joblog gp.log 'echo {}' ::: 0 1 0 2 9 10
    check "pools-run --resume reads parallel's joblog" "10" "$out"
    # The same jobs give the same joblog columns (times aside).
    parallel --will-cite -j1 --joblog gp2.log 'echo {}; exit {}' ::: 0 3 'a b' >/dev/null 2>&1
    run -j1 --joblog pr2.log 'echo {}; exit {}' ::: 0 3 'a b'
    check "joblog columns as GNU parallel's (first 2 jobs)" \
      "$(tail -n +2 gp2.log | head -2 | cut -f 1,2,5- | sort -n)" "$(tail -n +2 pr2.log | head -2 | cut -f 1,2,5- | sort -n)"
    check "joblog header as GNU parallel's" "$(head -1 gp2.log)" "$(head -1 pr2.log)"
  else
    skip "joblog compatibility with GNU parallel (not installed)"
  fi
}

test_halt() {
  run -j1 --halt now,fail=1 'touch h1.{}; exit {}' ::: 0 3 0 0
  check "--halt now,fail=1: exit status of the failing job" "3" "$rc"
  check "--halt now,fail=1: no job after it" "h1.0 h1.3" "$(echo h1.*)"
  check_contains "--halt: names the failing job" $'This job failed:\ntouch h1.3; exit 3' "$err"
  run -j1 --halt soon,fail=2 'echo {}; exit {}' ::: 0 1 2 3 4
  check "--halt soon,fail=2: exit status = failed jobs" "2" "$rc"
  check "--halt soon,fail=2: stops after the 2nd failure" $'0\n1\n2' "$out"
  run -j1 --halt now,success=1 'exit {}' ::: 1 0 5 6
  check "--halt now,success=1: exit 0" "0" "$rc"
  run_summary -j1 --halt soon,success=1 'exit {}' ::: 1 0 5 6
  check_contains "--halt: not started jobs count as skipped" "1 succeeded, 1 failed, 2 skipped (not started after --halt)" "$err"
  # now kills what runs: the sleeper starts first and never ends on its own.
  local mark="1000.$$$RANDOM"
  run -j2 --halt now,fail=1 "if [ {} = slow ]; then sleep $mark; else while ! pgrep -x -f 'sleep ${mark//./[.]}' >/dev/null; do sleep 0.05; done; exit 4; fi" ::: slow fail
  check "--halt now kills the running jobs" "4:0" "$rc:$(count_procs "${mark//./[.]}")"
  check_contains "--halt now says it kills" "Killing 1 running jobs" "$err"
  if $have_parallel; then
    local spec gp gprc
    for spec in "--halt soon,fail=2 'echo {}; exit {}' ::: 0 1 2 3 4" "--halt now,fail=1 'exit {}' ::: 0 3 0" \
                "--halt now,success=1 'exit {}' ::: 1 0 1" "--halt 1 'exit {}' ::: 0 5 0" \
                "--halt soon,fail=30% 'exit {}' ::: 1 0 1 0 0 0 0" "--halt soon,fail=20% 'exit {}' ::: 1 1 0 0 0 0 0 0 0 0" \
                "--halt soon,success=2 'exit {}' ::: 1 0 1" "--halt soon,done=2 'exit {}' ::: 1 0 3 0 0"; do
      gp=$(eval "parallel --will-cite -j1 $spec" 2>/dev/null)
      gprc=$?
      out=$(eval "\"\$P\" --no-summary -j1 $spec" 2>/dev/null)
      rc=$?
      check "--halt like GNU parallel (output, exit): $spec" "$gp:$gprc" "$out:$rc"
    done
  else
    skip "--halt compared with GNU parallel (not installed)"
  fi
}

test_errors() {
  run "echo 'unterminated {}" ::: a
  check "unterminated quote: exit 255" "255" "$rc"
  check_contains "unterminated quote: says so" "unterminated ' quote" "$err"
  run --bogus echo ::: a
  check "unknown option: exit 255" "255" "$rc"
  check_contains "unknown option: says so" "unknown option: --bogus" "$err"
  run -j x echo ::: a
  check "bad -j: exit 255" "255" "$rc"
  printf 'hello\nnot a joblog\n' >foreign.log
  run --resume --joblog foreign.log echo ::: a
  check "foreign joblog: exit 255" "255" "$rc"
  check_contains "foreign joblog: says so" "foreign.log is not a joblog" "$err"
  check "foreign joblog: left as it was" $'hello\nnot a joblog' "$(cat foreign.log)"
  run --resume --joblog . echo ::: a
  check "a directory as joblog: exit 255" "255" "$rc"
  run :::: /nonexistent/args echo
  check "missing input file: exit 255" "255" "$rc"
  check_contains "missing input file: named" "/nonexistent/args" "$err"
  run_summary -k <<<$'echo one\nno_such_command_pools_run\necho two'
  check "missing executable: the others run" $'one\ntwo' "$out"
  check "missing executable: exit 1" "1" "$rc"
  check_contains "missing executable: the shell says so" "not found" "$err"
  check_contains "missing executable: accounted for" "2 succeeded, 1 failed" "$err"
  # Commands without shell syntax run without the shell: the same outcome.
  run -k --joblog direct.log cat ::: /dev/null /nonexistent-pools-run
  check "run directly: exit status" "1" "$rc"
  check_contains "run directly: the program's stderr" "/nonexistent-pools-run" "$err"
  check "run directly: joblog Exitval" $'0\n1' "$(tail -n +2 direct.log | sort -n | cut -f7)"
  # Binary junk: bytes 0-255 in many lines, one with a NUL.
  { printf 'echo before\n'; printf 'x\x01\x02\xff\xfe %%s \x1b[31m\n'; printf 'a\0b\n'
    head -c 3000 /dev/zero | tr '\0' '\377'; printf '\necho after\n'; } >junk.txt
  run_summary -k <junk.txt
  check "binary junk: the good lines run" $'before\nafter' "$out"
  check "binary junk: exit = failed lines" "3" "$rc"
  check_contains "binary junk: NUL reported" "NUL byte" "$err"
  check_contains "binary junk: every line accounted for" "2 succeeded, 3 failed, 0 skipped" "$err"
  # A line longer than the kernel takes in one argument, and one that fits.
  { head -c 300000 /dev/zero | tr '\0' 'a'; printf '\necho fine\n'; } >long.txt
  run_summary -k <long.txt
  check "very long line: the others run" "fine" "$out"
  check_contains "very long line: reported" "bytes long" "$err"
  check_contains "very long line: accounted for" "1 succeeded, 1 failed" "$err"
  head -c 100000 /dev/zero | tr '\0' 'b' >wide.txt
  run 'printf %s {} | wc -c' <wide.txt
  check "a 100 kB argument arrives whole" "100000" "$(echo $out)"
  run --pool nosuch echo ::: a
  check_contains "--pool unknown: lists the kinds" "known: process, thread" "$err"
  run --resume echo ::: a
  check "--resume without --joblog: exit 255" "255" "$rc"
  run 'exit 1' ::: $(seq 150)
  check "more than 100 failed: exit 101" "101" "$rc"
}

# signal_test SIGNAL [OPTIONS]: pools-run with 100 sleeping jobs gets SIGNAL;
# nothing is left.
signal_test() {
  local sig=$1 mark="1000.$$$RANDOM" pat pid
  shift
  pat=${mark//./[.]}  # matches the 100 shells and their 100 sleeps
  # A background job of a non-interactive shell ignores SIGINT; perl restores it.
  perl -e '$SIG{INT} = $SIG{TERM} = "DEFAULT"; exec @ARGV' -- \
    "$P" --no-summary -j 100 "$@" "sleep $mark; : {}" ::: $(seq 100) >/dev/null 2>&1 &
  pid=$!
  if ! wait_procs "$pat" 200; then
    echo "FAIL $sig: the 100 jobs did not all start ($(count_procs "$pat") processes)"
    fails=$((fails + 1))
    kill -KILL "$pid" 2>/dev/null
    return
  fi
  kill -"$sig" "$pid"
  wait "$pid"
  local status=$?
  local left
  left=$(procs_left "$pat")
  check "$sig to pools-run${*:+ $*} running 100 jobs: no process left behind" "0" "$left"
  check "$sig to pools-run${*:+ $*}: it dies of the signal" "$((128 + $(kill -l "$sig")))" "$status"
}

# procs_left PATTERN: how many matching processes remain after up to 10 s.
procs_left() {
  local left
  for _ in $(seq 50); do
    left=$(count_procs "$1")
    [ "$left" = 0 ] && break
    sleep 0.2
  done
  echo "$left"
}

# pools-run's stdout closes while 98 jobs sleep (| head -c1): it dies of
# SIGPIPE, as any filter would, and takes its jobs with it.
pipe_test() {
  local mark="1000.$$$RANDOM" pat status left
  pat=${mark//./[.]}
  { echo "echo a"; echo "sleep 3; echo b"; for _ in $(seq 98); do echo "sleep $mark"; done; } >pipe-jobs.txt
  "$P" --no-summary -j 100 <pipe-jobs.txt 2>/dev/null | head -c1 >/dev/null
  status=${PIPESTATUS[0]}
  left=$(procs_left "$pat")
  check "stdout closed (| head -c1) with 98 jobs running: no process left behind" "0" "$left"
  check "stdout closed: pools-run dies of SIGPIPE" "141" "$status"
}

test_signals() {
  pipe_test
  if ! command -v perl >/dev/null 2>&1; then
    skip "signals (perl is needed to give a background job the default SIGINT)"
    return
  fi
  signal_test INT
  signal_test TERM
  signal_test INT --pool thread
  signal_test INT --pool multiprocess
  signal_test INT --halt now,fail=1 -k --joblog sig.log
}

test_pools() {
  local kind
  for kind in process thread serial multiprocess; do
    run -k --pool "$kind" -j 2 'echo {}; exit {}' ::: 0 1 0
    check "--pool $kind: runs the jobs" $'0\n1\n0:1' "$out:$rc"
  done
  # Without mpirun the cluster pool is the multiprocess pool, and says so.
  run -k --pool cluster -j 2 'echo {}' ::: a b
  check "--pool cluster without mpirun: runs the jobs" $'a\nb:0' "$out:$rc"
  check_contains "--pool cluster without mpirun: says so" "runs as a multiprocess pool" "$err"
  if command -v mpirun >/dev/null && ldd "$P" | grep -q libmpi; then
    # Under mpirun: rank 0 runs pools-run, ranks 1 and 2 run the commands.
    # (ASan's leak check flags OpenMPI's own allocations at a rank's exit.)
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
      OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_tcp_if_include=lo \
      OMPI_MCA_oob_tcp_if_include=lo mpirun -np 3 "$P" -k --pool cluster \
      'echo {} $OMPI_COMM_WORLD_RANK' ::: x y z </dev/null >"$tmp/.out" 2>"$tmp/.err"
    rc=$?
    out=$(sed 's/ [12]$/ worker/' "$tmp/.out")
    check "--pool cluster under mpirun: the worker ranks run the jobs" \
      $'x worker\ny worker\nz worker:0' "$out:$rc"
  else
    skip "--pool cluster under mpirun (no mpirun, or pools-run built without MPI)"
  fi
  run --pool thread --timeout 0.5 'sleep 1000.{}' ::: 888$$
  check "--pool thread: --timeout" "1" "$rc"
  run --pool multiprocess --timeout 0.5 'sleep 1000.{}' ::: 889$$
  check "--pool multiprocess: --timeout" "1" "$rc"
}

# Job streams. stream_run RUN_OPTS PROCESS_OPTS JOB: runs JOB (the command and
# its sources, shell words) locally and as --transmit RUN_OPTS | --worker |
# --process PROCESS_OPTS, each with a joblog; sets lout lrc llog (local) and
# sout src slog (streamed); the joblogs without their times.
stream_run() {
  rm -f l.log s.log
  eval "\"\$P\" --no-summary --joblog l.log $1 $2 $3" >l.out 2>/dev/null
  lrc=$?
  rm -f c.*
  eval "\"\$P\" --transmit $1 $3" | "$P" --worker 2>/dev/null |
    eval "\"\$P\" --process --no-summary --joblog s.log $2" >s.out 2>/dev/null
  src=$?
  lout=$(tr -d '\0' <l.out)
  sout=$(tr -d '\0' <s.out)
  llog=$(tail -n +2 l.log | cut -f 1,2,5- | sort -n)
  slog=$(tail -n +2 s.log | cut -f 1,2,5- | sort -n)
}
# The size of a file in bytes.
size_of() { wc -c <"$1" | tr -d ' '; }

test_streams() {
  local job
  # The same stdout (-k), joblog (times aside) and exit status as a local run.
  for job in "'echo {}; exit {}' ::: 0 1 2" "'echo {}; echo err {} >&2; kill -{} \$\$' ::: 0 9 15" \
             "'no_such_command_pools_run {}' ::: a" "echo {1}-{2} {#} ::: a b ::: 'c d' e" \
             "'n=\$(cat c.{} 2>/dev/null || echo 0); echo \$((n + 1)) >c.{}; [ \$n -ge 1 ]' ::: x" \
             "'printf \"a\\0b\"; echo {}' ::: 1" "'echo \$PARALLEL_SEQ {}' ::: a b"; do
    stream_run "-j2 --retries 2" "-k" "$job"
    check "streams: like a local run (stdout, exit status): $job" "$lout:$lrc" "$sout:$src"
    check "streams: like a local run (joblog): $job" "$llog" "$slog"
  done
  stream_run "--timeout 0.5" "" "'sleep 1000.{}' ::: 5$$"
  check "streams: --timeout crosses (joblog -1 15, exit 1)" $'-1\t15:1' "$(tail -1 s.log | cut -f 7,8):$src"
  for job in "--halt now,fail=1 'echo {}; exit {}' ::: 0 3 0 0" "--halt soon,fail=2 'echo {}; exit {}' ::: 0 1 2 3 4" \
             "--halt now,success=1 'exit {}' ::: 1 0 5 6"; do
    stream_run "-j1" "-k" "$job"
    check "streams: --halt like a local run: $job" "$lout:$lrc:$llog" "$sout:$src:$slog"
  done
  stream_run "" "-k --tag" "'echo a; echo b' ::: x 'y z'"
  check "streams: --tag in --process" "$lout" "$sout"
  stream_run "-N2" "-k" "'echo {2} {1}' ::: a b c"
  check "streams: --transmit -N2 like a local run" "$lout:$lrc:$llog" "$sout:$src:$slog"
  check "streams: -N2 arguments" $'b a\nc' "$sout"
  "$P" --transmit 'echo slot $PARALLEL_JOBSLOT' ::: a | "$P" --worker | "$P" --process --no-summary >s.out 2>/dev/null
  check "streams: --worker sets PARALLEL_JOBSLOT" "slot 1 a" "$(cat s.out)"
  printf 'a b\0c\nd' >nul.list
  stream_run "-0" "-k" "'printf \"[%s]\\n\"' :::: nul.list"
  check "streams: --transmit -0 like a local run" "$lout:$lrc:$llog" "$sout:$src:$slog"
  check "streams: -0 records arrive whole" $'[a b]\n[c\nd]' "$sout"
  rm -rf sres
  "$P" --transmit 'echo out {}; echo err {} >&2' ::: q | "$P" --worker | "$P" --process --results sres 2>/dev/null >/dev/null
  check "streams: --results in --process" "out q:err q" "$(cat sres/1/stdout):$(cat sres/1/stderr)"
  # --resume: --transmit skips what the joblog has; --process appends to it.
  "$P" --joblog r.log 'echo {}; exit {}' ::: 0 1 >/dev/null 2>&1
  "$P" --transmit --resume-failed --joblog r.log 'echo again {}' ::: 0 1 2 | "$P" --worker |
    "$P" --process -k --joblog r.log >s.out 2>s.err
  check "streams: --resume-failed runs the failed and the new jobs" $'again 1\nagain 2:0' "$(cat s.out):$?"
  check "streams: --process appends to a resumed joblog" "5" "$(wc -l <r.log)"
  check_contains "streams: the summary counts the skipped" "2 succeeded, 0 failed, 1 skipped (done in the joblog)" "$(cat s.err)"
  "$P" --transmit echo </dev/null | "$P" --worker | "$P" --process >s.out 2>s.err
  check "streams: empty input: exit 0" "0" "$?"
  check_contains "streams: empty input: says so" "no jobs to run: the input is empty" "$(cat s.err)"

  # Bad streams: junk, the wrong kind, cut short; exit 255, nothing that ran lost.
  printf 'GET / HTTP/1.1\r\nHost: example.org\r\n\r\n' | "$P" --worker 2>w.err | "$P" --process >s.out 2>s.err
  check "streams: junk to --worker: exit 255 at both ends" "255 255" "${PIPESTATUS[1]} ${PIPESTATUS[2]}"
  check_contains "streams: junk to --worker: says so" 'job stream on stdin, at byte 0: expected the hello frame of a job stream (from pools-run --transmit), but pools wire: not a pools stream: the magic is "GET ", expected "PLWF"' "$(cat w.err)"
  check_contains "streams: junk to --worker: --process says why" "could not read all of its job stream" "$(cat s.err)"
  printf 'junk' | "$P" --process >s.out 2>s.err
  check "streams: junk to --process: exit 255" "255" "$?"
  check_contains "streams: junk to --process: says so" "result stream on stdin, at byte 0: expected the hello frame" "$(cat s.err)"
  "$P" --process </dev/null 2>s.err
  check "streams: empty input to --process: exit 255" "255" "$?"
  check_contains "streams: empty input to --process: says so" "the input is empty (expected the hello frame" "$(cat s.err)"
  "$P" --transmit echo ::: a >jobs.bin
  "$P" --worker <jobs.bin >results.bin
  "$P" --worker <results.bin 2>w.err >/dev/null
  check "streams: a result stream to --worker: exit 255" "255" "$?"
  check_contains "streams: a result stream to --worker: says so" "this is a result stream (from pools-run --worker), not a job stream (from pools-run --transmit)" "$(cat w.err)"
  "$P" --process <jobs.bin 2>s.err
  check "streams: a job stream to --process: exit 255" "255" "$?"
  check_contains "streams: a job stream to --process: says so" "this is a job stream (from pools-run --transmit), not a result stream" "$(cat s.err)"
  # A job stream cut inside its last job: the jobs before it run and are reported.
  "$P" --transmit -j1 'echo {}' ::: 1 2 3 4 5 >jobs.bin
  head -c $(($(size_of jobs.bin) - 32 - 10)) jobs.bin | "$P" --worker 2>w.err | "$P" --process -k --joblog t.log >s.out 2>s.err
  check "streams: job stream cut short: exit 255 at both ends" "255 255" "${PIPESTATUS[1]} ${PIPESTATUS[2]}"
  check "streams: job stream cut short: the jobs before ran" $'1\n2\n3\n4' "$(cat s.out)"
  check "streams: job stream cut short: in the joblog" "4" "$(tail -n +2 t.log | wc -l)"
  check_contains "streams: job stream cut short: --worker says where" "the stream is cut short: pools wire: truncated frame: the stream ended inside a job frame" "$(cat w.err)"
  check_contains "streams: job stream cut short: --process names the lost job" "1 of 5 transmitted jobs have no result (job 5): they count as failed" "$(cat s.err)"
  check_contains "streams: job stream cut short: the summary counts it" "4 succeeded, 1 failed (1 of them lost: no result came back)" "$(cat s.err)"
  # A job stream without its end frame (the sender stopped between frames).
  head -c $(($(size_of jobs.bin) - 32)) jobs.bin | "$P" --worker 2>w.err | "$P" --process >/dev/null 2>s.err
  check "streams: job stream without its end: exit 255 at both ends" "255 255" "${PIPESTATUS[1]} ${PIPESTATUS[2]}"
  check_contains "streams: job stream without its end: says so" "the stream ended after 5 jobs without its end frame" "$(cat w.err)"
  # A result stream cut short: what arrived is reported, the rest is lost.
  "$P" --worker -j1 <jobs.bin >results.bin
  head -c $(($(size_of results.bin) - 36 - 10)) results.bin | "$P" --process -k --joblog t.log >s.out 2>s.err
  check "streams: result stream cut short: exit 255" "255" "$?"
  check "streams: result stream cut short: what arrived is printed" $'1\n2\n3\n4' "$(cat s.out)"
  check "streams: result stream cut short: and logged" "4" "$(tail -n +2 t.log | wc -l)"
  check_contains "streams: result stream cut short: says where" "result stream on stdin, at byte " "$(cat s.err)"
  check_contains "streams: result stream cut short: the lost job" "1 of 5 transmitted jobs have no result (job 5)" "$(cat s.err)"
  head -c $(($(size_of results.bin) - 36)) results.bin | "$P" --process >s.out 2>s.err
  check "streams: result stream without its end: exit 255, nothing lost" "255:5" "$?:$(wc -l <s.out)"
  check_contains "streams: result stream without its end: says so" "the stream ended after 5 results without its end frame" "$(cat s.err)"

  # --worker's stdout closes while its jobs sleep: it dies of SIGPIPE and takes them along.
  local mark="1000.$$$RANDOM" pat
  pat=${mark//./[.]}
  "$P" --transmit -j 3 "sleep $mark; : {}" ::: 1 2 3 | "$P" --worker 2>/dev/null | { wait_procs "$pat" 3; }
  check "streams: --worker's stdout closed: it dies of SIGPIPE" "141" "${PIPESTATUS[1]}"
  check "streams: --worker's stdout closed: no job left behind" "0" "$(procs_left "$pat")"

  "$P" --worker -k </dev/null 2>s.err
  check_contains "streams: an option of another stage is refused" "-k does not go with --worker: it belongs to --process" "$(cat s.err)"
  "$P" --process echo ::: a </dev/null 2>s.err
  check "streams: --process takes no command: exit 255" "255" "$?"
  "$P" --transmit --worker </dev/null 2>s.err
  check_contains "streams: one stage at a time" "give at most one" "$(cat s.err)"
}

test_groups() {
  # Each job takes its group's lock (mkdir is atomic): two jobs of one group at
  # once would make one of them fail. Groups are interleaved in the input.
  printf '%s\n' 'a1 A' 'b1 B' 'a2 A' 'c1 C' 'b2 B' 'a3 A' 'c2 C' 'b3 B' 'a4 A' >g.in
  run -j 4 --colsep ' ' --group '{2}' 'mkdir {2}.lock || exit 9; echo {1} >>{2}.order; rmdir {2}.lock' :::: g.in
  check "--group: every job succeeds (one per group at a time)" "0" "$rc"
  check "--group: a group's jobs run in input order" "a1 a2 a3 a4|b1 b2 b3|c1 c2" \
    "$(echo $(cat A.order))|$(echo $(cat B.order))|$(echo $(cat C.order))"

  # Groups run side by side: a1 ends only once b1 ran, though a2 comes first.
  printf '%s\n' 'a1 A' 'a2 A' 'b1 B' >p.in
  run -j 2 --colsep ' ' --group '{2}' 'if [ {1} = a1 ]; then until [ -e b1.ran ]; do sleep 0.01; done; fi; touch {1}.ran' :::: p.in
  check "--group: groups run in parallel; a busy group does not hold up the others" "0:a1.ran a2.ran b1.ran" "$rc:$(echo *.ran)"
  rm -f ./*.ran

  # --group-limit 2: the two jobs of the pair wait for each other.
  run -j 2 --colsep ' ' --group '{2}' --group-limit 2 'touch {1}.up; until [ -e {3}.up ]; do sleep 0.01; done' ::: 'x1 P x2' 'x2 P x1'
  check "--group-limit 2: two jobs of a group at once" "0" "$rc"

  # A failure skips the rest of its group: not run, Exitval -1 in the joblog,
  # counted in the summary and in the exit status; other groups go on.
  printf '%s\n' 's1 S 0' 's2 S 5' 't1 T 0' 's3 S 0' 't2 T 0' 's4 S 0' >s.in
  run_summary -j 2 --colsep ' ' --group '{2}' --joblog s.log 'touch {1}.ran; exit {3}' :::: s.in
  check "--group: skipped jobs never run" "s1.ran s2.ran t1.ran t2.ran" "$(echo *.ran)"
  check "--group: exit status counts failed and skipped jobs" "3" "$rc"
  check_contains "--group: the summary counts the skipped jobs" \
    "3 succeeded, 1 failed, 2 skipped (after a failed job of their --group)" "$err"
  check "--group: skipped jobs in the joblog with Exitval -1" "2:5:0 4:-1:0 6:-1:0" \
    "$(awk -F'\t' 'NR > 1 && $7 != 0 {print $1 ":" $7 ":" $8}' s.log | sort -n | paste -sd' ')"
  rm -f ./*.ran
  run_summary -j 2 --colsep ' ' --group '{2}' --joblog s.log --resume-failed 'touch {1}.ran; exit 0' :::: s.in
  check "--group: --resume-failed runs the failed and the skipped jobs again" "0:s2.ran s3.ran s4.ran" "$rc:$(echo *.ran)"
  rm -f ./*.ran

  run_summary -j 2 --colsep ' ' --group '{2}' --group-keep-going 'touch {1}.ran; exit {3}' :::: s.in
  check "--group-keep-going: every job runs; exit = failed jobs" "1:s1.ran s2.ran s3.ran s4.ran t1.ran t2.ran" "$rc:$(echo *.ran)"
  rm -f ./*.ran

  # --halt soon: jobs waiting for their group's turn are not started. The
  # running job of group B ends only once the joblog has the failure (written
  # after --halt took effect), so nothing of B is handed on before.
  printf '%s\n' 'a1 A' 'b1 B' 'b2 B' 'b3 B' >h.in
  run_summary -j 2 --colsep ' ' --group '{2}' --joblog h.log --halt soon,fail=1 \
    'touch {1}.ran; if [ {1} = a1 ]; then until [ -e b1.ran ]; do sleep 0.01; done; exit 7; fi; until grep -q "a1.ran; if" h.log; do sleep 0.01; done' :::: h.in
  check "--group --halt soon: waiting jobs of a group do not start" "7:a1.ran b1.ran" "$rc:$(echo *.ran)"
  check_contains "--group --halt soon: they count as not started" "1 succeeded, 1 failed, 2 skipped (not started after --halt)" "$err"
  rm -f ./*.ran

  # Input errors.
  run --group '{1}' --group-limit 0 echo ::: a
  check_contains "--group-limit 0 is refused" "--group-limit needs at least 1" "$rc:$err"
  run --group-keep-going echo ::: a
  check_contains "--group-keep-going needs --group" "255:" "$rc:"
  check_contains "--group-keep-going needs --group: says so" "--group-keep-going needs --group TEMPLATE" "$err"
  run --group=rack echo ::: a
  check_contains "--group without a replacement string is refused" "--group needs a template with a replacement string" "$err"
  # GNU parallel's --group (grouped output) takes no value and is still accepted.
  run --group echo ::: a
  check "--group as GNU parallel's output flag" "0:a" "$rc:$out"
  # A job whose group comes out empty belongs to no group.
  run -k --colsep ' ' --group '{2}' 'echo {1}' ::: 'x' 'y G'
  check "--group: an empty group name runs the job on its own" "0:x y" "$rc:$(echo $out)"
}

case "$group" in
  all) for g in input output joblog halt errors signals pools streams groups; do "test_$g"; done ;;
  input | output | joblog | halt | errors | signals | pools | streams | groups) "test_$group" ;;
  *) echo "unknown group: $group" >&2; exit 2 ;;
esac
echo "$group: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
