#!/usr/bin/env bash
# End-to-end figures for cairn on a series of nightly dumps: wall seconds
# and peak RSS (GNU time) of init, the first backup, each nightly backup,
# and a restore of the newest; repository size; every restore verified
# byte for byte. Generates the dumps first when DUMPDIR has none.
#
#   benches/e2e.sh [DUMPDIR=/tmp/cairn-dumps] [NIGHTS=6] [SCALE=1.35]
#
# Restic, borg and rustic side by side: issue 7 (benches/compare.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DUMPS=${1:-/tmp/cairn-dumps}
NIGHTS=${2:-6}
SCALE=${3:-1.35}
ls "$DUMPS"/night-*.sql >/dev/null 2>&1 || "$HERE/gen-dumps.sh" "$DUMPS" "$NIGHTS" "$SCALE"
cargo build --release --quiet --manifest-path "$HERE/../Cargo.toml"
CAIRN=$HERE/../target/release/cairn
WORK=$(mktemp -d /tmp/cairn-e2e-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench CAIRN_CACHE_DIR=$WORK/cache
REPO=$WORK/repo

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@"
  read -r secs kib < "$WORK/time"
  printf "%-22s %8.2f s %8.1f MiB peak RSS\n" "$label" "$secs" "$(echo "$kib/1024" | bc -l)"
}

echo "cairn $("$CAIRN" --version | cut -d' ' -f2) on $(nproc) cores; dumps in $DUMPS"
# INIT_ARGS="--kdf-memory 8MiB" separates the KDF's memory from the backup's.
measure init "$CAIRN" -q -r "$REPO" init ${INIT_ARGS:-}
i=0
for f in "$DUMPS"/night-*.sql; do
  i=$((i + 1))
  label="backup night $i ($(( $(stat -c %s "$f") / 1000000 )) MB)"
  measure "$label" sh -c "exec '$CAIRN' -q -r '$REPO' backup - --stdin-filename shop.sql < '$f'"
  last=$f
done
measure "restore newest" "$CAIRN" -q -r "$REPO" restore latest --target "$WORK/restore"
cmp "$last" "$WORK/restore/shop.sql" && echo "restore verified byte for byte"
printf "repository size: %.1f MB for %d nights of %.1f MB total\n" \
  "$(echo "$(du -sb "$REPO" | cut -f1)/1000000" | bc -l)" "$i" \
  "$(echo "$(cat "$DUMPS"/night-*.sql | wc -c)/1000000" | bc -l)"
