#!/usr/bin/env bash
# cairn side by side with restic and rustic on a tree of many small files
# (issue 23): for each tool and each run, a fresh repository, then
#   init, first backup of the tree, a second backup with nothing changed
#   (the nightly case: every file is looked at, none is read), a third after
#   1% of the files changed, and a restore of the newest (compared with the
#   tree by diff -r);
# wall seconds and peak RSS (GNU time) per step, and the repository size.
# Prints the medians over the runs and the ratios cairn / best peer. Tools
# that are not installed are skipped (said).
#
#   benches/small-files.sh [TREE=/tmp/cairn-small-files] [RUNS=3] [FILES=100000]
#
# TOOLS="cairn restic" runs only those; CAIRN_BIN=path times another cairn
# binary instead of building; RESTORE_DIR=dir restores there instead of
# under the work directory. Put it on a journaled file system: ext4 without
# a journal skips, when it allocates an inode, every inode freed in the
# last 60 s (6 minutes while their inode table block is dirty), so a
# restore shortly after the last run's tree was removed measured up to 5
# times slower, and varied that much (docs/benchmarks.md §12). The tree is made once (python3, a fixed seed):
# FILES files of 0 to 8 KiB (half text, half random bytes) in directories of
# 100, with a symlink and an empty directory here and there.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TREE=${1:-/tmp/cairn-small-files}
RUNS=${2:-3}
FILES=${3:-100000}
if [ ! -f "$TREE/.complete-$FILES" ]; then
  rm -rf "$TREE"
  python3 - "$TREE/tree-root" "$FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(23)
words = b"select insert update delete from where order group by having join table index ".split()
for i in range(n):
    d = os.path.join(root, f"d{i // 10000:02}", f"e{(i // 100) % 100:02}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
        if i % 1000 == 0:
            os.makedirs(os.path.join(d, "empty"), exist_ok=True)
            os.symlink("../f0.txt", os.path.join(d, "link"))
    size = rng.randrange(0, 8193)
    if i % 2:
        data = rng.randbytes(size)
    else:
        data = b" ".join(rng.choice(words) for _ in range(size // 6 + 1))[:size]
    with open(os.path.join(d, f"f{i % 100}.txt"), "wb") as f:
        f.write(data)
EOF
  touch "$TREE/.complete-$FILES"
fi
SRC=$TREE/tree-root
if [ -n "${CAIRN_BIN:-}" ]; then
  CAIRN=$CAIRN_BIN
else
  cargo build --release --quiet --manifest-path "$HERE/../Cargo.toml"
  CAIRN=$HERE/../target/release/cairn
fi
WORK=$(mktemp -d /tmp/cairn-small-XXXXXX)
export WORK CAIRN SRC
RESTORED=${RESTORE_DIR:-$WORK}/restored-$$
trap 'rm -rf "$WORK" "$RESTORED"' EXIT
RESULTS=$WORK/results.tsv
: > "$RESULTS"
export RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench CAIRN_PASSWORD=bench

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

cairn_cmd() {
  local r=$WORK/repo c=$WORK/cache
  case $1 in
    init) CAIRN_CACHE_DIR=$c "$CAIRN" -q -r "$r" init ;;
    backup) CAIRN_CACHE_DIR=$c "$CAIRN" -q -r "$r" backup "$SRC" ;;
    restore) CAIRN_CACHE_DIR=$c "$CAIRN" -q -r "$r" restore latest --target "$2" ;;
  esac
}
restic_cmd() {
  local r=$WORK/repo c=$WORK/cache
  case $1 in
    init) restic -q -r "$r" --cache-dir "$c" init ;;
    backup) restic -q -r "$r" --cache-dir "$c" backup "$SRC" ;;
    restore) restic -q -r "$r" --cache-dir "$c" restore latest --target "$2" ;;
  esac
}
rustic_cmd() {
  local r=$WORK/repo c=$WORK/cache
  case $1 in
    init) rustic -r "$r" --cache-dir "$c" init ;;
    backup) rustic -r "$r" --cache-dir "$c" backup "$SRC" ;;
    restore) rustic -r "$r" --cache-dir "$c" restore latest "$2" ;;
  esac
}

# 1% of the files changed (the first of each directory: 7 bytes appended),
# and put back.
change() {
  python3 - "$SRC" "$1" <<'EOF'
import os, sys
root, mode = sys.argv[1], sys.argv[2]
for d, _, files in os.walk(root):
    files = sorted(f for f in files if f.endswith(".txt"))
    if not files:
        continue
    p = os.path.join(d, files[0])
    if mode == "change":
        with open(p, "ab") as f:
            f.write(b"changed")
    else:
        os.truncate(p, os.path.getsize(p) - 7)
EOF
}

versions=()
for tool in ${TOOLS:-cairn restic rustic}; do
  case $tool in
    cairn) v="cairn $("$CAIRN" --version | cut -d' ' -f2)" ;;
    restic) command -v restic >/dev/null || { echo "restic not installed: skipped"; continue; }; v=$(restic version | cut -d' ' -f1-2) ;;
    rustic) command -v rustic >/dev/null || { echo "rustic not installed: skipped"; continue; }; v=$(rustic --version) ;;
  esac
  versions+=("$v")
  for run in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/repo" "$WORK/cache" "$RESTORED"
    export -f "${tool}_cmd"
    measure "$tool" "$run" init "${tool}_cmd" init
    measure "$tool" "$run" "first backup" "${tool}_cmd" backup
    measure "$tool" "$run" "unchanged backup" "${tool}_cmd" backup
    change change
    trap 'change back; rm -rf "$WORK" "$RESTORED"' EXIT
    measure "$tool" "$run" "1% changed backup" "${tool}_cmd" backup
    printf "%s\t%s\t%s\t%s\t\n" "$tool" "$run" "repository" "$(du -sb "$WORK/repo" | cut -f1)" >> "$RESULTS"
    measure "$tool" "$run" "restore newest" "${tool}_cmd" restore "$RESTORED"
    got=$(find "$RESTORED" -type d -name tree-root | head -1)
    diff -r --no-dereference "$SRC" "$got" > /dev/null || { echo "$tool: the restored tree differs" >&2; exit 1; }
    change back
    trap 'rm -rf "$WORK" "$RESTORED"' EXIT
    echo "$tool run $run done" >&2
  done
done

echo
echo "$(date -u +%F) on $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB RAM; $FILES files of $(du -sm "$SRC" | cut -f1) MB; median of $RUNS runs"
printf '%s\n' "${versions[@]}"
python3 "$HERE/summarize.py" "$RESULTS" 22 "first backup" "unchanged backup" "restore newest"
