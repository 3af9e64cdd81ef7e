#!/bin/sh
# The second pass of the pools-run demo: sh tools/jobs/verify.sh FILE.gz
# checks the gzip file's integrity and that it decompresses to the SHA-256
# recorded beside it (FILE.sha256). Silent when all is well.
set -eu
gz=$1
base=${gz%.gz}
gzip -t "$gz"
sum=$(gunzip -c "$gz" | sha256sum | cut -d ' ' -f 1)
if [ "$sum" != "$(cat "$base.sha256")" ]; then
  echo "$gz: checksum mismatch" >&2
  exit 1
fi
