#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what is missing,
# then builds and runs the tests three times, each build in its own directory,
# and fuzzes the wire format:
#   build-test   the normal build (debugoptimized), plus a check that the
#                installed library works from another project (pkg-config and
#                Meson's dependency('pools'))
#   build-tsan   built with ThreadSanitizer
#   build-asan   built with AddressSanitizer + UndefinedBehaviorSanitizer
#   build-fuzz   the frame decoder under libFuzzer for 60 s (tools/fuzz-wire.sh,
#                clang); counts as one test, failed if libFuzzer finds a crash
# and ends with one line "N passed, N failed" summed over everything. Exits
# non-zero when anything failed (a build failure counts as one failed test).
#
#   bash tools/run-tests.sh                 # all four
#   POOLS_SUITES="normal" bash tools/run-tests.sh   # a subset: normal tsan asan fuzz
#
# Extra arguments are passed to every `meson test` (e.g. --suite examples).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=install-deps.sh
source "$root/tools/install-deps.sh"
# parallel: the pools-run tests check joblog compatibility with GNU parallel.
# cmake: Meson finds Debian's Catch2 (with its prebuilt main) through Catch2's
# CMake config; without cmake it would fall back to downloading Catch2.
pools_install_missing meson ninja-build g++ pkg-config libboost-all-dev libfmt-dev libcereal-dev catch2 \
  cmake libtbb-dev parallel libvips-dev libvips-tools openmpi-bin libopenmpi-dev || { echo "0 passed, 1 failed"; exit 1; }

suites=${POOLS_SUITES:-normal tsan asan fuzz}
jobs=$(nproc 2>/dev/null || echo 2)
total_pass=0
total_fail=0
report=()

log() { printf '\n==== %s\n' "$*"; }

# configure DIR OPTIONS...: a fresh setup, or a reconfigure of an existing dir.
configure() {
  local dir=$1
  shift
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$dir" "$root" "$@"
  else
    meson setup "$dir" "$root" "$@"
  fi
}

# count_summary LOG: prints "PASS FAIL" from meson test's closing summary.
# Timeouts and unexpected passes count as failures; skipped tests as neither.
count_summary() {
  awk '
    /^Ok:/              { ok = $2; seen = 1 }
    /^Expected Fail:/   { ok += $3 }
    /^Fail:/            { fail += $2 }
    /^Unexpected Pass:/ { fail += $3 }
    /^Timeout:/         { fail += $2 }
    /^Error:/           { fail += $2 }
    END { if (seen) print ok + 0, fail + 0; else print "none" }
  ' "$1"
}

# run_suite NAME DIR MULTIPLIER [WRAPPER] -- MESON_OPTIONS...
run_suite() {
  local name=$1 dir=$2 mult=$3 wrapper=$4
  shift 5
  local start=$SECONDS
  log "$name: configure $dir ($*)"
  if ! configure "$dir" "$@"; then
    report+=("$name: configure failed")
    total_fail=$((total_fail + 1))
    return 1
  fi
  log "$name: build"
  if ! ninja -C "$dir" -j "$jobs"; then
    report+=("$name: build failed")
    total_fail=$((total_fail + 1))
    return 1
  fi
  log "$name: test"
  local out="$dir/run-tests.log"
  local args=(-C "$dir" --no-rebuild --print-errorlogs --timeout-multiplier "$mult")
  [ -n "$wrapper" ] && args+=(--wrapper "$wrapper")
  meson test "${args[@]}" "${test_args[@]}" 2>&1 | tee "$out"
  local counts
  counts=$(count_summary "$out")
  if [ "$counts" = none ]; then
    report+=("$name: meson test printed no summary (see $out)")
    total_fail=$((total_fail + 1))
    return 1
  fi
  local p=${counts% *} f=${counts#* }
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  report+=("$(printf '%-8s %4d passed, %d failed  (%ds)' "$name:" "$p" "$f" $((SECONDS - start)))")
  if [ "$f" -gt 0 ]; then failed_tests "$name" "$dir/meson-logs/testlog.json"; fi
  return 0
}

# failed_tests NAME TESTLOG: adds each failed test and the end of its output to
# the report, so the closing summary (the part of a CI log that is read) says
# what failed and why.
failed_tests() {
  local line
  while IFS= read -r line; do report+=("$line"); done < <(python3 - "$1" "$2" <<'PY'
import json, sys
suite, path = sys.argv[1], sys.argv[2]
try:
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
except OSError as e:
    print(f"  {suite}: cannot read {path}: {e}"); sys.exit()
for line in lines:
    t = json.loads(line)
    if t.get("result") in ("OK", "SKIP", "EXPECTEDFAIL"):
        continue
    print(f"  {suite} FAILED: {t.get('name')} ({t.get('result')}, {t.get('duration', 0):.1f}s, exit {t.get('returncode')})")
    out = (t.get("stdout") or "") + (t.get("stderr") or "")
    for l in out.splitlines()[-25:]:
        print(f"      | {l[:200]}")
PY
)
}

# check_installed DIR: installs DIR's build into a staging directory and builds
# docs/examples/first_pool.cpp against it, once with pkg-config and once as a
# Meson project using dependency('pools'). Each counts as one test.
check_installed() {
  local dir=$1 stage
  stage=$(mktemp -d "${TMPDIR:-/tmp}/pools-install.XXXXXX")
  log "installed library: meson install --destdir $stage"
  if ! meson install -C "$dir" --no-rebuild --quiet --destdir "$stage"; then
    report+=("install: meson install failed")
    total_fail=$((total_fail + 2))
    rm -rf "$stage"
    return 1
  fi
  local pc lib
  pc=$(find "$stage" -name pools.pc -print -quit)
  lib=$(find "$stage" -name 'libpools.so*' -print -quit)
  if [ -z "$pc" ] || [ -z "$lib" ]; then
    report+=("install: pools.pc or libpools.so not installed")
    total_fail=$((total_fail + 2))
    rm -rf "$stage"
    return 1
  fi
  # The .pc file names the final prefix (/usr/local/...); the sysroot variable
  # makes pkg-config point into the staging directory instead.
  export PKG_CONFIG_PATH
  PKG_CONFIG_PATH=$(dirname "$pc")
  export PKG_CONFIG_SYSROOT_DIR=$stage
  local libdir
  libdir=$(dirname "$lib")

  local ok=0
  log "installed library: g++ first_pool.cpp \$(pkg-config --cflags --libs pools)"
  local flags
  if flags=$(pkg-config --cflags --libs pools) &&
    echo "pkg-config --cflags --libs pools: $flags" &&
    g++ -o "$stage/consumer-pkgconfig" "$root/docs/examples/first_pool.cpp" $flags &&
    LD_LIBRARY_PATH=$libdir "$stage/consumer-pkgconfig"; then
    ok=$((ok + 1))
    report+=("install: pkg-config consumer passed")
  else
    report+=("install: pkg-config consumer FAILED")
  fi

  log "installed library: a Meson project with dependency('pools')"
  mkdir -p "$stage/meson-consumer"
  cp "$root/docs/examples/first_pool.cpp" "$stage/meson-consumer/"
  cat >"$stage/meson-consumer/meson.build" <<'MESON'
project('consumer', 'cpp', default_options : ['cpp_std=c++20'])
executable('consumer', 'first_pool.cpp', dependencies : dependency('pools'))
MESON
  if meson setup "$stage/meson-consumer/build" "$stage/meson-consumer" >/dev/null &&
    ninja -C "$stage/meson-consumer/build" >/dev/null &&
    LD_LIBRARY_PATH=$libdir "$stage/meson-consumer/build/consumer"; then
    ok=$((ok + 1))
    report+=("install: Meson dependency('pools') consumer passed")
  else
    report+=("install: Meson dependency('pools') consumer FAILED")
  fi
  unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
  total_pass=$((total_pass + ok))
  total_fail=$((total_fail + 2 - ok))
  rm -rf "$stage"
}

# Some kernels randomize mmap addresses more than g++ 12's ThreadSanitizer
# accepts ("unexpected memory mapping"); it then needs ASLR off for its tests.
tsan_wrapper() {
  local probe
  probe=$(mktemp -d "${TMPDIR:-/tmp}/pools-tsan.XXXXXX")
  printf 'int main() { return 0; }\n' >"$probe/p.cpp"
  if g++ -fsanitize=thread "$probe/p.cpp" -o "$probe/p" 2>/dev/null && ! "$probe/p" >/dev/null 2>&1; then
    echo "setarch $(uname -m) -R"
  fi
  rm -rf "$probe"
}

test_args=("$@")
# Sanitizers report through these; a report fails the test.
# die_after_fork=0: the multiprocess pool's fork server is forked from a
# threaded test program, and its workers start threads of their own (a task
# may use a thread pool); TSan refuses that by default.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:die_after_fork=0:suppressions=$root/tools/tsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}

for suite in $suites; do
  case $suite in
    normal)
      if run_suite normal "$root/build-test" 1 "" --; then
        check_installed "$root/build-test"
      fi
      ;;
    tsan)
      # -Wno-tsan: g++ 12 warns that TSan does not see std::atomic_thread_fence.
      run_suite tsan "$root/build-tsan" 4 "$(tsan_wrapper)" -- \
        -Db_sanitize=thread -Dcpp_args=-Wno-tsan -Dbenchmarks=disabled
      ;;
    asan)
      run_suite asan "$root/build-asan" 3 "" -- \
        -Db_sanitize=address,undefined -Db_lundef=false -Dbenchmarks=disabled
      ;;
    fuzz)
      log "fuzz: tools/fuzz-wire.sh 60"
      start=$SECONDS
      passed=1
      bash "$root/tools/fuzz-wire.sh" 60 || passed=0
      total_pass=$((total_pass + passed))
      total_fail=$((total_fail + 1 - passed))
      report+=("$(printf '%-8s %4d passed, %d failed  (%ds)' "fuzz:" "$passed" $((1 - passed)) $((SECONDS - start)))")
      ;;
    *)
      echo "run-tests.sh: unknown suite '$suite' (normal, tsan, asan, fuzz)" >&2
      total_fail=$((total_fail + 1))
      ;;
  esac
done

log "summary"
for line in "${report[@]}"; do echo "  $line"; done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
