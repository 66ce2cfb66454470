#!/usr/bin/env bash
# The yardstick of issue 8 (delta compression): per night of a dump
# series, what cairn stores (packed bytes the night's snapshot added) next
# to what `zstd --patch-from` needs to encode the night against the one
# before, and the ratio. Issue 8's target is a ratio of at most 3 at
# level 19 with long mode.
#
#   benches/delta-baseline.sh [DUMPDIR=/tmp/cairn-dumps] [LEVEL=19]
#
# Level 19 is slow: about 5 minutes per pair of 200 MB dumps on 2 cores
# (and 770 MB of memory). LEVEL=3 gives a quick, larger estimate.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DUMPS=${1:-/tmp/cairn-dumps}
LEVEL=${2:-19}
command -v zstd >/dev/null || { echo "zstd is not installed (apt-get install zstd)" >&2; exit 1; }
ls "$DUMPS"/night-*.sql >/dev/null 2>&1 || { echo "no dumps in $DUMPS (benches/gen-dumps.sh)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$HERE/../Cargo.toml"
CAIRN=$HERE/../target/release/cairn
WORK=$(mktemp -d /tmp/cairn-delta-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench CAIRN_CACHE_DIR=$WORK/cache
"$CAIRN" -q -r "$WORK/repo" init
for f in "$DUMPS"/night-*.sql; do
  "$CAIRN" -q -r "$WORK/repo" backup - --stdin-filename shop.sql < "$f"
done
"$CAIRN" -q -r "$WORK/repo" snapshots --json > "$WORK/snapshots.json"

printf "%-24s %16s %18s %8s\n" night "cairn stores" "zstd --patch-from" ratio
prev=
n=0
for f in "$DUMPS"/night-*.sql; do
  n=$((n + 1))
  if [ -n "$prev" ]; then
    patch=$(zstd -q -f "-$LEVEL" --long=28 --patch-from="$prev" "$f" -c | wc -c)
    stored=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[int(sys.argv[2])-1]['summary']['data_added_packed'])" "$WORK/snapshots.json" "$n")
    printf "%-24s %16s %18s %8.1f\n" "$(basename "$f")" "$stored" "$patch" "$(echo "$stored / $patch" | bc -l)"
  fi
  prev=$f
done
