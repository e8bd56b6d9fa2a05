#!/usr/bin/env bash
# Side-by-side throughput of source → decode → measure: mmcurate against the Python peers
# (imagehash.phash with PIL, plus OpenCV Laplacian variance after the same 512-px resize) on the
# same JPEGs, on this machine, in one run. Makes the corpus first if it is missing.
#
#   bash scripts/bench/compare.sh [COUNT]     (default 2000 images; needs .venv: scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-2000}
corpus=target/bench/corpus-$count
out=target/bench/out-$count
py=${MMCURATE_TEST_PYTHON:-.venv/bin/python}
procs=$(nproc)

[ -d "$corpus" ] || "$py" scripts/bench/make_corpus.py --count "$count" --out "$corpus"
cargo build --release --locked --quiet
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "corpus: $count JPEGs, $(du -shL "$corpus" | cut -f1)"

# Warm the page cache so both sides read from memory.
cat "$corpus"/* > /dev/null

echo "--- Python peers, $procs processes"
peers=$("$py" scripts/bench/python_peers.py "$corpus" --procs "$procs")
echo "$peers"

echo "--- mmcurate, $procs threads"
rm -rf "$out"
./target/release/mmcurate run configs/quickstart.toml --quiet \
  --set "inputs.0.uri=$corpus" --set "run.output=$out" --set "run.threads=$procs" \
  --set filters.image.min_side=1 --set filters.image.min_sharpness=0 \
  --set filters.image.min_brightness=0 --set filters.image.max_brightness=255 \
  --set dedup.phash_max_distance=4 --set output.max_samples_per_shard=100000 \
  --set output.max_bytes_per_shard=64GiB > /dev/null

"$py" - "$out/current/manifest.json" "$peers" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
peers = json.loads(sys.argv[2])
n = manifest["counts"]["samples"]
measure = manifest["stage_seconds"]["measure"]
total = sum(manifest["stage_seconds"].values())
ours = n / measure
print(json.dumps({"tool": "mmcurate", "images": n, "measure_seconds": round(measure, 3),
                  "images_per_sec": round(ours, 1), "end_to_end_seconds": round(total, 3),
                  "end_to_end_images_per_sec": round(n / total, 1)}))
print(f"source→decode→measure: mmcurate {ours:.0f} img/s vs Python peers "
      f"{peers['images_per_sec']:.0f} img/s: {ours / peers['images_per_sec']:.1f}x")
print(f"whole run (plan, measure, dedup, write shards and ledger): {n / total:.0f} img/s: "
      f"{n / total / peers['images_per_sec']:.1f}x the peers' measuring alone")
PY
