#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what is missing, builds
# pools (release) and pools-run, and runs pools-run on the job file
# tools/jobs/demo.jobs: 48 jobs that each write a file of pseudo-random data
# (head -c N /dev/urandom | base64), checksum it with sha256sum, compress it with
# gzip -9 and verify the round trip. A second pass then re-checks every .gz
# file against its checksum with a command template. Both passes show a
# progress bar (--bar) and end with pools-run's summary. The files are removed
# at the end; the joblog of the first pass is kept in build-demo/demo-joblog.tsv.
#   bash tools/run-demo.sh [pools-run options, e.g. -j 4 or --pool thread]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=install-deps.sh
source "$root/tools/install-deps.sh"
pools_install_missing meson ninja-build g++ pkg-config libboost-all-dev libfmt-dev libcereal-dev

build="$root/build-demo"
opts=(--buildtype=release -Dtests=false -Dbenchmarks=disabled)
mkdir -p "$build"
log="$build/run-demo.log"
# Quiet when all goes well; the whole log when something fails.
{
  if [ -f "$build/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$build" "$root" "${opts[@]}"
  else
    meson setup "$build" "$root" "${opts[@]}"
  fi && ninja -C "$build" tools/pools_run/pools-run
} >"$log" 2>&1 || {
  cat "$log" >&2
  echo "run-demo.sh: the build failed (log above, also in $log)" >&2
  exit 1
}
pools_run="$build/tools/pools_run/pools-run"

POOLS_DEMO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pools-run-demo.XXXXXX")
export POOLS_DEMO_DIR
trap 'rm -rf "$POOLS_DEMO_DIR"' EXIT
cd "$root"  # the job file names its scripts relative to the checkout

echo "== pass 1: pools-run --bar -k --joblog ... < tools/jobs/demo.jobs   (files in $POOLS_DEMO_DIR)"
status=0
"$pools_run" --bar -k --joblog "$POOLS_DEMO_DIR/joblog.tsv" "$@" <tools/jobs/demo.jobs || status=$?

echo
echo "== pass 2: pools-run --bar sh tools/jobs/verify.sh {} ::: \$POOLS_DEMO_DIR/*.gz"
"$pools_run" --bar "$@" sh tools/jobs/verify.sh {} ::: "$POOLS_DEMO_DIR"/*.gz || status=$?

echo
files=$(find "$POOLS_DEMO_DIR" -name '*.gz' | wc -l)
bytes=$(cat "$POOLS_DEMO_DIR"/*.gz | wc -c)
cp "$POOLS_DEMO_DIR/joblog.tsv" "$build/demo-joblog.tsv"
echo "run-demo.sh: $files gzip files, $bytes bytes compressed; joblog in $build/demo-joblog.tsv"
if [ "$status" -ne 0 ] || [ "$files" -ne "$(wc -l <tools/jobs/demo.jobs)" ]; then
  echo "run-demo.sh: FAILED (exit status $status)" >&2
  exit 1
fi
echo "run-demo.sh: OK"
