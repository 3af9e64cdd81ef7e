#!/usr/bin/env bash
# Fuzzes the wire format's frame decoder (tests/fuzz/wire_fuzz.cpp) with
# libFuzzer, ASan and UBSan for SECONDS (default 60):
#   bash tools/fuzz-wire.sh [SECONDS]
# Builds with clang++ into build-fuzz/ (clang 14 cannot compile the rest of the
# tree, so only the target and src/wire/frame.cpp), starts from a copy of the
# seed corpus tests/fuzz/corpus/wire (which stays as committed) and exits
# non-zero when libFuzzer finds a crash; the input that crashed is saved in
# build-fuzz/artifacts/ and its path printed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
# shellcheck source=install-deps.sh
source "$root/tools/install-deps.sh"
# libclang-rt-14-dev holds libFuzzer and the sanitizer runtimes for clang 14.
pools_install_missing clang libclang-rt-14-dev libfmt-dev || exit 1

out=$root/build-fuzz
mkdir -p "$out/artifacts"
echo "fuzz-wire: building $out/wire_fuzz"
# -fno-sanitize-recover: UBSan findings abort, so libFuzzer keeps them as crashes.
clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I "$root/include" -I "$root/src" -I "$root/tools/pools_run" \
  "$root/tests/fuzz/wire_fuzz.cpp" "$root/src/wire/frame.cpp" "$root/tools/pools_run/job_stream.cpp" -lfmt \
  -o "$out/wire_fuzz" || { echo "fuzz-wire: build failed" >&2; exit 1; }

# A fresh working corpus each run: libFuzzer adds the inputs it finds to it.
work=$out/corpus
rm -rf "$work"
mkdir -p "$work"
cp "$root/tests/fuzz/corpus/wire/"* "$work/"

echo "fuzz-wire: running for ${seconds}s"
touch "$out/.started"  # the inputs that fail are newer
"$out/wire_fuzz" "$work" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$out/artifacts/" -print_final_stats=1
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "fuzz-wire: FAILED (libFuzzer exit status $rc); inputs that failed:" >&2
  find "$out/artifacts" -type f -newer "$out/.started" >&2
  exit 1
fi
echo "fuzz-wire: no crash in ${seconds}s"
