#!/usr/bin/env bash
# Peak RSS and time of prune on a repository of N nightly snapshots of a
# ~200 MB dump (default 100): night n is a real pg_dump from gen-dumps.sh
# with ~0.1 % of its lines changed and 2000 rows appended, so every night
# adds a realistic amount of new data.
#
#   benches/prune-rss.sh DUMP.sql [NIGHTS=100] [KEEP=30]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DUMP=${1:?usage: prune-rss.sh DUMP.sql [NIGHTS] [KEEP]}
NIGHTS=${2:-100}
KEEP=${3:-30}
cargo build --release --quiet --manifest-path "$HERE/../Cargo.toml"
CAIRN=$HERE/../target/release/cairn
WORK=$(mktemp -d /tmp/cairn-prune-XXXXXX)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench CAIRN_CACHE_DIR=$WORK/cache CAIRN_REPOSITORY=$WORK/repo
"$CAIRN" -q init --kdf-memory 8MiB
for n in $(seq 1 "$NIGHTS"); do
  awk -v n="$n" '{ if (NR % 997 == n % 997 && $0 ~ /\t/) print $0 "\tx" n; else print } END { for (i = 0; i < 2000; i++) print n "\t" i "\tappended" }' "$DUMP" |
    "$CAIRN" -q backup - --stdin-filename shop.sql --time "$(date -d "2026-01-01 + $n days" '+%Y-%m-%d 03:00:00')"
done
echo "repository: $(du -sh "$WORK/repo" | cut -f1) for $NIGHTS snapshots of $(du -h "$DUMP" | cut -f1)"
"$CAIRN" -q forget --keep-last "$KEEP"
/usr/bin/time -f "prune --dry-run: %e s, peak RSS %M KiB" "$CAIRN" -q prune --dry-run
/usr/bin/time -f "prune (grace 0, repacking): %e s, peak RSS %M KiB" "$CAIRN" -q prune --grace 0 2>&1 | grep -v "warning: grace"
echo "repository after: $(du -sh "$WORK/repo" | cut -f1)"
"$CAIRN" -q dump latest shop.sql | tail -1
