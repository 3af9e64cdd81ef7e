#!/bin/sh
# One job of the pools-run demo (tools/run-demo.sh):
#   sh tools/jobs/make-file.sh DIR NAME BYTES
# writes BYTES pseudo-random bytes as base64 text to DIR/NAME, records its
# SHA-256 in DIR/NAME.sha256, compresses it with gzip -9 (DIR/NAME.gz, the
# original removed), then checks that the compressed file decompresses to the
# recorded checksum. Prints one line; exits non-zero when anything fails.
set -eu
dir=$1 name=$2 bytes=$3
f="$dir/$name"
head -c "$bytes" /dev/urandom | base64 >"$f"
text_bytes=$(wc -c <"$f")
sha256sum "$f" | cut -d ' ' -f 1 >"$f.sha256"
gzip -9 -f "$f"
sum=$(gunzip -c "$f.gz" | sha256sum | cut -d ' ' -f 1)
if [ "$sum" != "$(cat "$f.sha256")" ]; then
  echo "$name: the decompressed file does not match its checksum" >&2
  exit 1
fi
echo "$name: $text_bytes bytes of text, $(wc -c <"$f.gz") gzipped, sha256 $(cut -c 1-12 "$f.sha256")... verified"
