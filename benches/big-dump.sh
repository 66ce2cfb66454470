#!/usr/bin/env bash
# Memory does not grow with the dump (issue 7): peak RSS of a backup and a
# restore of a ~200 MB dump and of a dump TIMES as large, both piped into
# cairn the way `pg_dump | cairn backup -` is. The large one is TIMES
# copies of the dump, each changed (every "example" becomes "exN"): a
# stream TIMES as long, whose lines with e-mail addresses are new in every
# copy (the rest deduplicates, as tables that did not change would).
#
#   benches/big-dump.sh [DUMP=/tmp/cairn-dumps/night-01.sql] [TIMES=10]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DUMP=${1:-/tmp/cairn-dumps/night-01.sql}
TIMES=${2:-10}
[ -f "$DUMP" ] || { echo "no dump at $DUMP (benches/gen-dumps.sh makes one)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$HERE/../Cargo.toml"
CAIRN=$HERE/../target/release/cairn
WORK=$(mktemp -d /tmp/cairn-big-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench CAIRN_CACHE_DIR=$WORK/cache

stream() { # copies
  for i in $(seq 1 "$1"); do
    if [ "$1" = 1 ]; then cat "$DUMP"; else sed "s/example/ex$i/g" "$DUMP"; fi
  done
}

printf "%-10s %12s %16s %16s %16s %16s\n" copies bytes "backup s" "backup MiB" "restore s" "restore MiB"
for copies in 1 "$TIMES"; do
  rm -rf "$WORK/repo" "$WORK/cache"
  "$CAIRN" -q -r "$WORK/repo" init
  stream "$copies" > "$WORK/stream.sql"
  bytes=$(stat -c %s "$WORK/stream.sql")
  # Piped, as from pg_dump; --no-validate: the copies are not one dump.
  /usr/bin/time -f "%e %M" -o "$WORK/b" bash -c \
    "cat '$WORK/stream.sql' | '$CAIRN' -q -r '$WORK/repo' backup - --stdin-filename shop.sql --no-validate"
  /usr/bin/time -f "%e %M" -o "$WORK/r" bash -c \
    "'$CAIRN' -q -r '$WORK/repo' dump latest shop.sql | cmp - '$WORK/stream.sql'"
  read -r bs bk < "$WORK/b"
  read -r rs rk < "$WORK/r"
  printf "%-10s %12s %16s %16s %16s %16s\n" "$copies" "$bytes" "$bs" "$((bk / 1024))" "$rs" "$((rk / 1024))"
  rm -f "$WORK/stream.sql"
done
