#!/usr/bin/env bash
# Semantic dedup side by side: `mmcurate dedup` against FAISS's IndexIVFFlat (faiss-cpu 1.15,
# nlist 4·√N, nprobe 8, range_search at the threshold) on the same embedding-like .npy, the same
# thread count, each under /usr/bin/time -v (wall time, peak RSS), then the recall of both on a
# sampled exact search. Results go to target/bench/dedup/ and are printed.
#
# usage: scripts/bench/dedup_compare.sh [ROWS ...]     (default: 200000 1000000)
#   THREADS=2 THRESHOLD=0.95 SKIP_FAISS=1 (mmcurate only, e.g. at 10M) MMCURATE_ARGS='--margin 0.1'
#   DEDUP_BENCH_DIR (data and results; default target/bench/dedup) FAISS_VENV MMCURATE_BIN
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
THREADS=${THREADS:-2}
THRESHOLD=${THRESHOLD:-0.95}
WORK=${DEDUP_BENCH_DIR:-$ROOT/target/bench/dedup}
VENV=${FAISS_VENV:-$ROOT/target/bench/faiss-venv}
mkdir -p "$WORK"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "faiss-cpu==1.15.*" numpy pyarrow
fi
PY=$VENV/bin/python
# MMCURATE_BIN: a binary built otherwise (e.g. `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo build`).
BIN=${MMCURATE_BIN:-$ROOT/target/release/mmcurate}
[ -x "$BIN" ] || cargo build --release --bin mmcurate

peak() { grep "Maximum resident" "$1" | awk '{printf "%.0f MiB", $NF/1024}'; }
wall() { grep "Elapsed (wall" "$1" | awk '{print $NF}'; }

for ROWS in "${@:-200000 1000000}"; do
  for N in $ROWS; do
    EMB=$WORK/emb-$N.npy
    [ -f "$EMB" ] || "$PY" scripts/bench/dedup_data.py "$N" "$EMB"
    echo "== $N rows, $THREADS threads, threshold $THRESHOLD, load: $(cut -d' ' -f1-3 /proc/loadavg)"
    rm -rf "$WORK/out-$N"
    /usr/bin/time -v "$BIN" dedup --quiet --embeddings "$EMB" --min-cosine "$THRESHOLD" \
      --output "$WORK/out-$N" --threads "$THREADS" ${MMCURATE_ARGS:-} >"$WORK/mmcurate-$N.json" 2>"$WORK/mmcurate-$N.time"
    echo "mmcurate: wall $(wall "$WORK/mmcurate-$N.time"), peak $(peak "$WORK/mmcurate-$N.time"), $(grep '"pairs"' "$WORK/mmcurate-$N.json" | tail -1 | tr -d ' ,')"
    RECALL_ARGS=(--mmcurate "$WORK/out-$N/pairs.parquet")
    if [ -z "${SKIP_FAISS:-}" ]; then
      /usr/bin/time -v "$PY" scripts/bench/dedup_faiss.py "$EMB" "$THRESHOLD" "$WORK/faiss-$N.npy" \
        --threads "$THREADS" >"$WORK/faiss-$N.json" 2>"$WORK/faiss-$N.time"
      echo "faiss:    wall $(wall "$WORK/faiss-$N.time"), peak $(peak "$WORK/faiss-$N.time"), $(cat "$WORK/faiss-$N.json")"
      RECALL_ARGS+=(--faiss "$WORK/faiss-$N.npy")
    fi
    "$PY" scripts/bench/dedup_recall.py "$EMB" "$THRESHOLD" "${RECALL_ARGS[@]}"
  done
done
