#!/usr/bin/env bash
# Delta compression (issue 8) on a dump series: per night, the bytes cairn
# adds to the repository (every object: packs, index, snapshot) with
# deltas (`init`: the default, 32 KiB chunks) and without (`init
# --no-delta`: 8 KiB chunks, each repository with its own default;
# DELTA_INIT adds init flags to the first, e.g. "--chunk-size 8KiB"), next
# to what `zstd --patch-from` needs to encode the night against the one
# before;
# then the time of each nightly backup and of the restore of the newest,
# with and without deltas, and the repository sizes.
#
#   benches/delta.sh [DUMPDIR=/tmp/cairn-dumps] [LEVEL=19] [RUNS=3]
#
# Issue 8's targets: stored bytes per night at most 3x what
# `zstd -19 --long=28 --patch-from` needs; nightly backup and restore at
# most 1.3x the time without deltas. Level 19 is slow: about 5 minutes per
# pair of 200 MB dumps on 2 cores (and 770 MB of memory); LEVEL=3 gives a
# quick, larger estimate, LEVEL=0 skips zstd. Times are medians of RUNS
# series, each in fresh repositories.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DUMPS=${1:-/tmp/cairn-dumps}
LEVEL=${2:-19}
RUNS=${3:-3}
ls "$DUMPS"/night-*.sql >/dev/null 2>&1 || { echo "no dumps in $DUMPS (benches/gen-dumps.sh)" >&2; exit 1; }
[ "$LEVEL" = 0 ] || command -v zstd >/dev/null || { echo "zstd is not installed (apt-get install zstd), or give LEVEL=0" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$HERE/../Cargo.toml"
CAIRN=${CAIRN_BIN:-$HERE/../target/release/cairn}
WORK=$(mktemp -d /tmp/cairn-delta-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench
nights=("$DUMPS"/night-*.sql)

# Bytes of every object in a repository (packs, index objects, snapshots,
# keys, config): what a night adds to the storage bill. Directories are
# not counted (object storage has none).
stored() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }

# One series into a fresh repository; appends "night seconds" lines to
# $WORK/$mode.times and "restore seconds" to $WORK/$mode.restore.
series() { # mode run
  local mode=$1 run=$2 repo=$WORK/$1-$2
  export CAIRN_CACHE_DIR=$WORK/cache-$1-$2
  local init=(--no-delta)
  [ "$mode" = delta ] && init=(${DELTA_INIT:-})
  "$CAIRN" -q -r "$repo" init "${init[@]}"
  local n=0 before after
  before=$(stored "$repo")
  for f in "${nights[@]}"; do
    n=$((n + 1))
    local t0 t1
    t0=$(date +%s.%N)
    "$CAIRN" -q -r "$repo" backup - --stdin-filename shop.sql < "$f"
    t1=$(date +%s.%N)
    echo "$n $(echo "$t1 - $t0" | bc -l)" >> "$WORK/$mode.times"
    after=$(stored "$repo")
    echo "$n $((after - before))" >> "$WORK/$mode.added-$run"
    before=$after
  done
  local t0 t1
  t0=$(date +%s.%N)
  "$CAIRN" -q -r "$repo" restore latest --target "$WORK/out-$mode-$run"
  t1=$(date +%s.%N)
  cmp -s "$WORK/out-$mode-$run/shop.sql" "${nights[-1]}" || { echo "restore of $mode differs" >&2; exit 1; }
  rm -rf "$WORK/out-$mode-$run"
  echo "$(echo "$t1 - $t0" | bc -l)" >> "$WORK/$mode.restore"
  stored "$repo" >> "$WORK/$mode.size"
  rm -rf "$repo" "$CAIRN_CACHE_DIR"
}
for run in $(seq 1 "$RUNS"); do
  series delta "$run"
  series whole "$run"
done

median() { sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
added() { # mode night: the bytes it added, mean of the runs (each run has
  # its own keys, so its own chunk-list boundaries and sketch collisions)
  cat "$WORK/$1".added-* | awk -v n="$2" '$1 == n {s += $2; k++} END {printf "%d", s / k}'
}

printf "%-14s %12s %12s %12s %9s %8s %8s\n" night "with deltas" "without" "patch-from" "ratio" "time" "without"
prev=
n=0
for f in "${nights[@]}"; do
  n=$((n + 1))
  d=$(added delta "$n")
  w=$(added whole "$n")
  td=$(awk -v n="$n" '$1 == n {print $2}' "$WORK/delta.times" | median)
  tw=$(awk -v n="$n" '$1 == n {print $2}' "$WORK/whole.times" | median)
  patch=- ratio=-
  if [ -n "$prev" ] && [ "$LEVEL" != 0 ]; then
    patch=$(zstd -q -f "-$LEVEL" --long=28 --patch-from="$prev" "$f" -c | wc -c)
    ratio=$(printf "%.2f" "$(echo "$d / $patch" | bc -l)")
  fi
  printf "%-14s %12s %12s %12s %9s %8.2f %8.2f\n" "$(basename "$f")" "$d" "$w" "$patch" "$ratio" "$td" "$tw"
  prev=$f
done
rd=$(median < "$WORK/delta.restore")
rw=$(median < "$WORK/whole.restore")
printf "restore of the newest: %.2f s with deltas, %.2f s without (%.2fx)\n" "$rd" "$rw" "$(echo "$rd / $rw" | bc -l)"
printf "repository after %d nights (mean of the runs): %s bytes with deltas, %s without\n" "$n" \
  "$(awk '{s += $1} END {printf "%d", s / NR}' "$WORK/delta.size")" "$(awk '{s += $1} END {printf "%d", s / NR}' "$WORK/whole.size")"
