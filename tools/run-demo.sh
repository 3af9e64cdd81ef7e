#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what is missing, builds
# pools (release) and runs pools_demo, which fans file work out over the thread
# pool and reports what it did. Arguments go to pools_demo (try --help).
#   bash tools/run-demo.sh [--files N] [--threads N]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=install-deps.sh
source "$root/tools/install-deps.sh"
pools_install_missing meson ninja-build g++ pkg-config libboost-all-dev libfmt-dev

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
  fi && ninja -C "$build" tools/pools_demo
} >"$log" 2>&1 || {
  cat "$log" >&2
  echo "run-demo.sh: the build failed (log above, also in $log)" >&2
  exit 1
}
exec "$build/tools/pools_demo" "$@"
