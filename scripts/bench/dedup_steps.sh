#!/usr/bin/env bash
# A search split into steps, as a cluster would run it, against the same search in one process:
# `mmcurate dedup --step partitions` once, `--step assign` on each of TASKS row ranges, `--step
# search` on each of TASKS partition ranges, then `--merge`; every process under /usr/bin/time -v
# (wall, CPU, peak RSS), one after the other on this machine. Checks that the merged
# pairs.parquet and groups.parquet are byte for byte those of the one process.
#
# usage: scripts/bench/dedup_steps.sh ROWS TASKS
#   THREADS=2 THRESHOLD=0.95 MMCURATE_ARGS='--memory-budget-gib 1' MMCURATE_BIN PYTHON
#   DEDUP_BENCH_DIR (data and results; default target/bench/dedup)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ROWS=${1:?usage: dedup_steps.sh ROWS TASKS}
TASKS=${2:?usage: dedup_steps.sh ROWS TASKS}
THREADS=${THREADS:-2}
THRESHOLD=${THRESHOLD:-0.95}
WORK=${DEDUP_BENCH_DIR:-$ROOT/target/bench/dedup}
PY=${PYTHON:-$ROOT/.venv/bin/python}
BIN=${MMCURATE_BIN:-$ROOT/target/release/mmcurate}
[ -x "$BIN" ] || cargo build --release --bin mmcurate
mkdir -p "$WORK"
EMB=$WORK/emb-$ROWS.npy
[ -f "$EMB" ] || "$PY" scripts/bench/dedup_data.py "$ROWS" "$EMB" --uniform-noise

# One line per process: what, wall seconds, CPU seconds (user + sys), peak MiB.
measure() {
  local name=$1
  shift
  /usr/bin/time -v "$@" >"$WORK/steps-$ROWS-$name.json" 2>"$WORK/steps-$ROWS-$name.time" || {
    tail -5 "$WORK/steps-$ROWS-$name.time" >&2
    exit 1
  }
  awk -v name="$name" '
    /Elapsed \(wall/ { n = split($NF, t, ":"); wall = (n == 3) ? t[1] * 3600 + t[2] * 60 + t[3] : t[1] * 60 + t[2] }
    /User time/ { cpu += $NF } /System time/ { cpu += $NF }
    /Maximum resident/ { peak = $NF / 1024 }
    END { printf "%-12s wall %7.1f s  cpu %7.1f s  peak %6.0f MiB\n", name, wall, cpu, peak }' \
    "$WORK/steps-$ROWS-$name.time"
}

# shellcheck disable=SC2206 # MMCURATE_ARGS is split into words on purpose.
DEDUP=("$BIN" dedup --quiet --embeddings "$EMB" --min-cosine "$THRESHOLD" --threads "$THREADS"
  ${MMCURATE_ARGS:-})

echo "== $ROWS rows, $TASKS tasks, $THREADS threads, threshold $THRESHOLD, load: $(cut -d' ' -f1-3 /proc/loadavg)"
ONE=$WORK/steps-one-$ROWS
STEPS=$WORK/steps-split-$ROWS
rm -rf "$ONE" "$STEPS"
measure one-process "${DEDUP[@]}" --output "$ONE"
measure partitions "${DEDUP[@]}" --output "$STEPS" --step partitions
for ((i = 0; i < TASKS; i++)); do
  measure "assign-$i" "${DEDUP[@]}" --output "$STEPS" --step assign --num-shards "$TASKS" --shard-index "$i"
done
for ((i = 0; i < TASKS; i++)); do
  measure "search-$i" "${DEDUP[@]}" --output "$STEPS" --step search --num-shards "$TASKS" --shard-index "$i"
done
measure merge "$BIN" dedup --quiet --merge --num-shards "$TASKS" --output "$STEPS"
for file in pairs.parquet groups.parquet; do
  cmp "$ONE/$file" "$STEPS/$file"
  echo "$file: the same bytes as the one process ($(stat -c %s "$ONE/$file") bytes)"
done
du -sh "$STEPS/state/partitions" | awk '{print "state/partitions: " $1}'
