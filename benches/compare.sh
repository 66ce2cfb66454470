#!/usr/bin/env bash
# cairn side by side with restic, borg and rustic on the same nightly dumps
# (issue 7): for each tool and each run, a fresh repository, then
#   init, first backup, every later nightly backup (from stdin), restore of
#   the newest (verified byte for byte), forget --keep-last 2 + prune;
# wall seconds and peak RSS (GNU time) per step, repository size after the
# series and after the prune. Prints the medians over the runs and the
# ratios cairn / best peer. Tools that are not installed are skipped (said).
#
#   benches/compare.sh [DUMPDIR=/tmp/cairn-dumps] [RUNS=3] [NIGHTS=6] [SCALE=1.35]
#
# TOOLS="cairn rustic" runs only those; CAIRN_BIN=path times another cairn
# binary (an older build, for a before/after table) instead of building.
#
# Settings: every tool encrypts (its default scheme) and compresses with
# zstd at its default level (restic: repository v2, --compression auto;
# borg: --compression zstd,3; rustic: its default zstd (level 3); cairn:
# its default zstd level 1).
# Key derivation stays at each tool's default: it is paid on every command.
# Stdin backups with a parent store what they read in every tool (rustic:
# --force, or it would skip an unchanged-looking stdin). Prune deletes at
# once in every tool (cairn --grace 0, rustic --instant-delete; restic and
# borg compact do by default).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DUMPS=${1:-/tmp/cairn-dumps}
RUNS=${2:-3}
NIGHTS=${3:-6}
SCALE=${4:-1.35}
ls "$DUMPS"/night-*.sql >/dev/null 2>&1 || "$HERE/gen-dumps.sh" "$DUMPS" "$NIGHTS" "$SCALE"
if [ -n "${CAIRN_BIN:-}" ]; then
  CAIRN=$CAIRN_BIN
else
  cargo build --release --quiet --manifest-path "$HERE/../Cargo.toml"
  CAIRN=$HERE/../target/release/cairn
fi
WORK=$(mktemp -d /tmp/cairn-compare-XXXXXX)
export WORK CAIRN
trap 'rm -rf "$WORK"' EXIT
RESULTS=$WORK/results.tsv
: > "$RESULTS"
NEWEST=$(ls "$DUMPS"/night-*.sql | tail -1)

export RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench RUSTIC_PASSWORD=bench CAIRN_PASSWORD=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

measure() { # tool, run, step, command...
  local tool=$1 run=$2 step=$3; shift 3
  if ! /usr/bin/time -f "%e %M" -o "$WORK/time" bash -c '"$@"' _ "$@" > "$WORK/out" 2> "$WORK/err"; then
    echo "$tool: $step failed:" >&2
    tail -5 "$WORK/err" >&2
    exit 1
  fi
  read -r secs kib < "$WORK/time"
  printf "%s\t%s\t%s\t%s\t%s\n" "$tool" "$run" "$step" "$secs" "$kib" >> "$RESULTS"
}

size_of() { # tool, run, step, directory
  printf "%s\t%s\t%s\t%s\t\n" "$1" "$2" "$3" "$(du -sb "$4" | cut -f1)" >> "$RESULTS"
}

# One function per tool: init, backup FILE, restore-newest DEST, forget-prune.
cairn_cmd() {
  local r=$WORK/repo c=$WORK/cache
  case $1 in
    # CAIRN_INIT="--no-delta" measures cairn without delta compression.
    init) CAIRN_CACHE_DIR=$c "$CAIRN" -q -r "$r" init ${CAIRN_INIT:-} ;;
    backup) CAIRN_CACHE_DIR=$c "$CAIRN" -q -r "$r" backup - --stdin-filename shop.sql < "$2" ;;
    restore) CAIRN_CACHE_DIR=$c "$CAIRN" -q -r "$r" dump latest shop.sql > "$2" ;;
    prune) CAIRN_CACHE_DIR=$c "$CAIRN" -q -r "$r" forget --keep-last 2 --prune --grace 0 ;;
  esac
}
restic_cmd() {
  local r=$WORK/repo c=$WORK/cache
  case $1 in
    init) restic -q -r "$r" --cache-dir "$c" init ;;
    backup) restic -q -r "$r" --cache-dir "$c" backup --stdin --stdin-filename shop.sql < "$2" ;;
    restore) restic -q -r "$r" --cache-dir "$c" dump latest shop.sql > "$2" ;;
    prune) restic -q -r "$r" --cache-dir "$c" forget --keep-last 2 --prune ;;
  esac
}
borg_cmd() {
  local r=$WORK/repo
  export BORG_BASE_DIR=$WORK/borg-base
  case $1 in
    init) borg init --encryption=repokey-blake2 "$r" ;;
    backup) borg create --compression zstd,3 --stdin-name shop.sql "$r::night-$(date +%s%N)" - < "$2" ;;
    restore) borg extract --stdout "$r::$(borg list --last 1 --format '{archive}' "$r")" > "$2" ;;
    prune) borg prune --keep-last 2 "$r" && borg compact "$r" ;;
  esac
}
rustic_cmd() {
  local r=$WORK/repo c=$WORK/cache
  case $1 in
    init) rustic -r "$r" --cache-dir "$c" init ;;
    backup) rustic -r "$r" --cache-dir "$c" backup --force --stdin-filename shop.sql - < "$2" ;;
    restore) rustic -r "$r" --cache-dir "$c" dump latest:shop.sql > "$2" ;;
    prune) rustic -r "$r" --cache-dir "$c" forget --keep-last 2 --prune --instant-delete ;;
  esac
}

versions=()
for tool in ${TOOLS:-cairn restic borg rustic}; do
  case $tool in
    cairn) v="cairn $("$CAIRN" --version | cut -d' ' -f2)" ;;
    restic) command -v restic >/dev/null || { echo "restic not installed: skipped"; continue; }; v=$(restic version | cut -d' ' -f1-2) ;;
    borg) command -v borg >/dev/null || { echo "borg not installed: skipped"; continue; }; v=$(borg --version) ;;
    rustic) command -v rustic >/dev/null || { echo "rustic not installed: skipped"; continue; }; v=$(rustic --version) ;;
  esac
  versions+=("$v")
  for run in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/repo" "$WORK/cache" "$WORK/borg-base" "$WORK/restored"
    export -f "${tool}_cmd"
    measure "$tool" "$run" init "${tool}_cmd" init
    n=0
    for f in "$DUMPS"/night-*.sql; do
      n=$((n + 1))
      if [ $n = 1 ]; then step="first backup"; else step="nightly backup"; fi
      measure "$tool" "$run" "$step" "${tool}_cmd" backup "$f"
    done
    size_of "$tool" "$run" "repository after $n nights" "$WORK/repo"
    measure "$tool" "$run" "restore newest" "${tool}_cmd" restore "$WORK/restored"
    cmp -s "$NEWEST" "$WORK/restored" || { echo "$tool: restore differs from $NEWEST" >&2; exit 1; }
    measure "$tool" "$run" "forget + prune" "${tool}_cmd" prune
    size_of "$tool" "$run" "repository after prune" "$WORK/repo"
    echo "$tool run $run done" >&2
  done
done

echo
echo "$(date -u +%F) on $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB RAM; $(ls "$DUMPS"/night-*.sql | wc -l) dumps of $(( $(stat -L -c %s "$NEWEST") / 1000000 )) MB; median of $RUNS runs"
printf '%s\n' "${versions[@]}"
python3 "$HERE/summarize.py" "$RESULTS" 28 "first backup" "nightly backup" "restore newest"
