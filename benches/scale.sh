#!/usr/bin/env bash
# The scale benchmark (issue 7): does cairn stay as fast when the
# repository is large? Two repositories with the default settings:
#   fresh: empty before the series;
#   big:   already indexing CHUNKS chunks (10 million by default: about
#          80 GB of unique data at 8 KiB a chunk, 320 GB at the default
#          32 KiB) referenced
#          by SNAPSHOTS snapshots, made by the generator in benches/scale.rs
#          (real sealed blobs in real packs; `cairn check` passes).
# The same nightly dumps are then backed up into both, alternately (first
# night untimed in the ratio, then every later night), and on the big one
# `snapshots`, a restore's time to its first byte and a whole restore are
# timed. Prints medians, the ratio big / fresh and peak RSS.
#
#   benches/scale.sh [DUMPDIR=/tmp/cairn-dumps] [CHUNKS=10000000] [SNAPSHOTS=1000]
#
# Needs about 2 GB of disk per 10 million chunks (packs, index, cache).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DUMPS=${1:-/tmp/cairn-dumps}
CHUNKS=${2:-10000000}
SNAPSHOTS=${3:-1000}
ls "$DUMPS"/night-*.sql >/dev/null 2>&1 || "$HERE/gen-dumps.sh" "$DUMPS" 6 1.35
cargo build --release --quiet --manifest-path "$HERE/../Cargo.toml"
CAIRN=$HERE/../target/release/cairn
WORK=$(mktemp -d /tmp/cairn-scale-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench
RESULTS=$WORK/results.tsv
: > "$RESULTS"

cairn_in() { # repo, args...
  local r=$1; shift
  CAIRN_CACHE_DIR=$WORK/cache-$r "$CAIRN" -q -r "$WORK/$r" "$@"
}
measure() { # repo, step, command...
  local repo=$1 step=$2; shift 2
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > "$WORK/out" 2> "$WORK/err" || {
    echo "$repo: $step failed:" >&2; tail -5 "$WORK/err" >&2; exit 1; }
  read -r secs kib < "$WORK/time"
  printf "%s\t%s\t%s\t%s\n" "$repo" "$step" "$secs" "$kib" >> "$RESULTS"
}
export -f cairn_in
export WORK CAIRN

for r in fresh big; do cairn_in "$r" init; done
echo "generating $CHUNKS chunks in $SNAPSHOTS snapshots..." >&2
CAIRN_CACHE_DIR=$WORK/cache-big cargo bench --quiet --manifest-path "$HERE/../Cargo.toml" \
  --bench scale -- generate "$WORK/big" "$CHUNKS" "$SNAPSHOTS" 2>/dev/null
measure big "first open (index cache warm)" bash -c 'cairn_in big snapshots'

n=0
for f in "$DUMPS"/night-*.sql; do
  n=$((n + 1))
  step="nightly backup"; [ $n = 1 ] && step="first backup"
  for r in fresh big; do
    measure "$r" "$step" bash -c "cairn_in $r backup - --stdin-filename shop.sql < $f"
  done
done
NEWEST=$(ls "$DUMPS"/night-*.sql | tail -1)
for i in 1 2 3; do
  for r in fresh big; do
    measure "$r" "snapshots" bash -c "cairn_in $r snapshots"
    # Time to the first restored byte: head exits after one byte.
    measure "$r" "restore: first byte" bash -c "cairn_in $r dump latest shop.sql | head -c 1 > /dev/null"
    measure "$r" "restore newest" bash -c "cairn_in $r dump latest shop.sql > $WORK/restored"
    cmp -s "$NEWEST" "$WORK/restored" || { echo "$r: restore differs" >&2; exit 1; }
  done
done

echo
echo "$(date -u +%F) on $(nproc) cores; $CHUNKS synthetic chunks in $SNAPSHOTS snapshots; $n dumps of $(( $(stat -L -c %s "$NEWEST") / 1000000 )) MB"
echo "index cache of the big repository: $(du -sh "$WORK/cache-big" | cut -f1); repository $(du -sh "$WORK/big" | cut -f1)"
python3 - "$RESULTS" <<'EOF'
import sys, statistics, collections
vals = collections.defaultdict(lambda: collections.defaultdict(list))
order = []
for line in open(sys.argv[1]):
    repo, step, secs, kib = line.rstrip("\n").split("\t")
    if step not in order: order.append(step)
    vals[step][repo].append((float(secs), float(kib)))
print(f"\n{'step':32}{'fresh':>20}{'big':>20}{'big / fresh':>14}")
for step in order:
    cells, med = [], {}
    for r in ("fresh", "big"):
        v = vals[step].get(r)
        if not v: cells.append(f"{'-':>20}"); continue
        med[r] = statistics.median(s for s, _ in v)
        cells.append(f"{med[r]:>8.2f} s {max(k for _, k in v)/1024:>6.0f} MiB")
    ratio = f"{med['big']/med['fresh']:>14.2f}" if len(med) == 2 and med["fresh"] > 0 else ""
    print(f"{step:32}" + "".join(cells) + ratio)
EOF
