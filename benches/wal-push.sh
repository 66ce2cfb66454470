#!/usr/bin/env bash
# The archive path side by side (issue 20): cairn wal-push / wal-fetch
# against pgbackrest archive-push / archive-get on the same real WAL
# segments. Each push is its own process, as archive_command runs it. cairn
# runs twice: with the default key derivation (paid on every call), and with
# a key made by `key add --generate-password`. Prints the median seconds per
# segment, the repository sizes, and the ratios cairn / pgBackRest.
#
#   benches/wal-push.sh [SEGMENTS=8]       (KEEP=1 keeps the work directory)
#
# Needs PostgreSQL (initdb, pg_ctl, pgbench) and pgbackrest (apt-get install
# pgbackrest). As root, PostgreSQL and both tools run as postgres.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SEGMENTS=${1:-8}
command -v pgbackrest >/dev/null || { echo "pgbackrest is not installed (apt-get install pgbackrest)" >&2; exit 2; }
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cargo build --release --quiet --manifest-path "$HERE/../Cargo.toml"
CAIRN=$HERE/../target/release/cairn
WORK=$(mktemp -d /tmp/cairn-walbench-XXXXXX)
AS=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$WORK"
  AS=(runuser -u postgres --)
fi
cleanup() {
  "${AS[@]}" "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
run() { "${AS[@]}" env HOME="$WORK" "$@"; }

# A cluster, and real WAL: pgbench's load and transactions, switched into
# segments, copied out as they close.
run "$BIN/initdb" -D "$WORK/data" -U postgres --auth=trust --no-sync >/dev/null
cat >> "$WORK/data/postgresql.auto.conf" <<EOF
wal_level = replica
archive_mode = on
archive_command = 'cp %p $WORK/segments/%f'
listen_addresses = ''
unix_socket_directories = '$WORK'
EOF
run mkdir -p "$WORK/segments"
run "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/log" -w start >/dev/null
PSQL=(run "$BIN/psql" -X -q -h "$WORK" -U postgres -d postgres)
run "$BIN/pgbench" -h "$WORK" -U postgres -i -s 10 -q postgres >/dev/null 2>&1
while [ "$(ls "$WORK/segments" | grep -c '^[0-9A-F]\{24\}$')" -lt "$SEGMENTS" ]; do
  run "$BIN/pgbench" -h "$WORK" -U postgres -T 2 -c 2 postgres >/dev/null 2>&1
  "${PSQL[@]}" -c "SELECT pg_switch_wal()" >/dev/null
  sleep 0.5
done
mapfile -t SEGS < <(ls "$WORK/segments" | grep '^[0-9A-F]\{24\}$' | head -n "$SEGMENTS")
echo "segments: ${#SEGS[@]} of $(( $(stat -c %s "$WORK/segments/${SEGS[0]}") >> 20 )) MiB, from pgbench"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# cairn, default settings: "cairn" with the default key derivation (paid on
# every call), "cairn-genkey" with a key made by `key add
# --generate-password` (a random password, the lightest derivation), as the
# guide (docs/guide.md) suggests for archive_command and restore_command.
bench_cairn() { # name, then the environment to run with
  local name=$1; shift
  : > "$WORK/$name-push"; : > "$WORK/$name-fetch"
  for s in "${SEGS[@]}"; do
    t=$(now); run env "$@" "$CAIRN" -q -r "$WORK/$name" wal-push "$WORK/segments/$s"; echo "$(now) - $t" | bc >> "$WORK/$name-push"
  done
  for s in "${SEGS[@]}"; do
    replay
    t=$(now); run env "$@" "$CAIRN" -q -r "$WORK/$name" wal-fetch "$s" "$WORK/fetched"; echo "$(now) - $t" | bc >> "$WORK/$name-fetch"
    cmp -s "$WORK/fetched" "$WORK/segments/$s" || { echo "$name fetched other bytes for $s" >&2; exit 1; }
  done
}
# Between two fetches PostgreSQL replays the segment: PAUSE seconds here
# (default 0.1), outside the timed part, for every tool. Like PostgreSQL,
# the previous file is removed before each fetch.
replay() { sleep "${PAUSE:-0.1}"; rm -f "$WORK/fetched"; }
export CAIRN_PASSWORD=bench
run "$CAIRN" -q -r "$WORK/cairn" init >/dev/null
bench_cairn cairn CAIRN_PASSWORD=bench
run "$CAIRN" -q -r "$WORK/cairn-genkey" init >/dev/null
run "$CAIRN" -q -r "$WORK/cairn-genkey" key add --generate-password "$WORK/genkey-password"
bench_cairn cairn-genkey -u CAIRN_PASSWORD CAIRN_PASSWORD_FILE="$WORK/genkey-password"
# The same repository fetched with --prefetch 8 (a background cairn keeps
# the next 8 segments in a spool while PostgreSQL replays).
cp "$WORK/cairn-genkey-push" "$WORK/cairn-prefetch-push"
: > "$WORK/cairn-prefetch-fetch"
for s in "${SEGS[@]}"; do
  replay
  t=$(now); run env -u CAIRN_PASSWORD CAIRN_PASSWORD_FILE="$WORK/genkey-password" "$CAIRN" -q -r "$WORK/cairn-genkey" wal-fetch --prefetch 8 "$s" "$WORK/fetched"; echo "$(now) - $t" | bc >> "$WORK/cairn-prefetch-fetch"
  cmp -s "$WORK/fetched" "$WORK/segments/$s" || { echo "cairn-prefetch fetched other bytes for $s" >&2; exit 1; }
done
sleep 2 # the last filler ends at the end of the archive
rm -rf "$WORK/.cairn-prefetch"

# pgBackRest, its defaults (gz compression, no encryption) and with the
# same settings as cairn's (zstd level 1, AES-256 encryption).
bench_pgbackrest() { # name, extra config lines, extra archive-push options
  local name=$1 extra=$2 push_opts=${3:-} conf=$WORK/$1.conf
  printf '[global]\nrepo1-path=%s\nlog-level-console=error\nlog-path=%s\nlock-path=%s\nspool-path=%s\n%b\n[bench]\npg1-path=%s\npg1-socket-path=%s\npg1-user=postgres\n' \
    "$WORK/$name" "$WORK" "$WORK" "$WORK" "$extra" "$WORK/data" "$WORK" > "$conf"
  chmod 644 "$conf"
  run pgbackrest --config="$conf" --stanza=bench stanza-create >/dev/null
  : > "$WORK/$name-push"; : > "$WORK/$name-fetch"
  for s in "${SEGS[@]}"; do
    t=$(now); run pgbackrest --config="$conf" --stanza=bench $push_opts archive-push "$WORK/segments/$s"; echo "$(now) - $t" | bc >> "$WORK/$name-push"
  done
  for s in "${SEGS[@]}"; do
    replay
    t=$(now); run pgbackrest --config="$conf" --stanza=bench archive-get "$s" "$WORK/fetched"; echo "$(now) - $t" | bc >> "$WORK/$name-fetch"
    cmp -s "$WORK/fetched" "$WORK/segments/$s" || { echo "$name fetched other bytes for $s" >&2; exit 1; }
  done
}
bench_pgbackrest pgbackrest ""
bench_pgbackrest pgbackrest-zst-aes "compress-type=zst\ncompress-level=1\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=bench"
# pgBackRest's asynchronous archive-get (its answer to the same problem):
# a queue in the spool filled ahead of recovery. Pushed synchronously, so
# that its push time means "durably stored" as cairn's does.
bench_pgbackrest pgbackrest-async "compress-type=zst\ncompress-level=1\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=bench\narchive-async=y" --no-archive-async

# The bytes of the stored objects (du would add 4 KiB per directory: cairn
# spreads packs over 256 of them, object storage has none).
size() { local d=$1; [ "$d" = cairn-prefetch ] && d=cairn-genkey; find "$WORK/$d" -type f -printf '%s\n' | awk '{n += $1} END {print n}'; }
printf "\n%-20s %12s %12s %12s\n" tool "push s/seg" "fetch s/seg" "repo bytes"
for t in cairn cairn-genkey cairn-prefetch pgbackrest pgbackrest-zst-aes pgbackrest-async; do
  printf "%-20s %12.3f %12.3f %12d\n" "$t" "$(median < "$WORK/$t-push")" "$(median < "$WORK/$t-fetch")" "$(size "$t")"
done
for c in cairn cairn-genkey cairn-prefetch; do
  for t in pgbackrest pgbackrest-zst-aes pgbackrest-async; do
    printf "%-12s / %-18s push %.2f  fetch %.2f  size %.2f\n" "$c" "$t" \
      "$(echo "$(median < "$WORK/$c-push") / $(median < "$WORK/$t-push")" | bc -l)" \
      "$(echo "$(median < "$WORK/$c-fetch") / $(median < "$WORK/$t-fetch")" | bc -l)" \
      "$(echo "$(size "$c") / $(size "$t")" | bc -l)"
  done
done
