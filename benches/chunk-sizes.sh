#!/usr/bin/env bash
# Measures how average chunk size affects repository size and backup time
# on a series of nightly dumps (benches/gen-dumps.sh makes one).
#
#   benches/chunk-sizes.sh DUMPDIR [SIZES...]   (default: 4KiB ... 1MiB)
#
# For each size: a fresh repository, every night-*.sql backed up from
# stdin in order; prints stored bytes after the first night and after the
# series, blobs, and the mean time of the nightly (non-first) backups.
# Without delta compression (`init --no-delta`); CHUNK_INIT="" measures
# with it (the default), CHUNK_INIT="..." gives other init options.
set -euo pipefail
DUMPS=${1:?usage: chunk-sizes.sh DUMPDIR [SIZES...]}
shift
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(4KiB 8KiB 16KiB 32KiB 64KiB 256KiB 1MiB)
CAIRN=${CAIRN:-$(dirname "$0")/../target/release/cairn}
export CAIRN_PASSWORD=bench
WORK=$(mktemp -d /tmp/cairn-chunks-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
printf "%-8s %12s %12s %10s %10s %12s\n" avg first_MB series_MB blobs index_KB nightly_s
for size in "${SIZES[@]}"; do
  repo=$WORK/repo-$size
  export CAIRN_CACHE_DIR=$WORK/cache-$size
  "$CAIRN" -q -r "$repo" init ${CHUNK_INIT---no-delta} --chunk-size "$size" --kdf-memory 8MiB --kdf-iterations 1
  first=""; total=0; n=0
  for f in "$DUMPS"/night-*.sql; do
    t0=$(date +%s.%N)
    "$CAIRN" -q -r "$repo" backup - --stdin-filename "$(basename "$f")" < "$f"
    t1=$(date +%s.%N)
    if [ -z "$first" ]; then first=$(du -sb "$repo" | cut -f1); else total=$(echo "$total + $t1 - $t0" | bc); n=$((n+1)); fi
  done
  series=$(du -sb "$repo" | cut -f1)
  blobs=$("$CAIRN" -r "$repo" --json snapshots | python3 -c 'import json,sys; print(sum(s["summary"]["data_blobs"]+s["summary"]["tree_blobs"] for s in json.load(sys.stdin)))')
  index=$(du -sb "$repo/index" | cut -f1)
  printf "%-8s %12.1f %12.1f %10d %10.0f %12.2f\n" "$size" "$(echo "$first/1000000" | bc -l)" \
    "$(echo "$series/1000000" | bc -l)" "$blobs" "$(echo "$index/1000" | bc -l)" "$(echo "$total/$n" | bc -l)"
done
