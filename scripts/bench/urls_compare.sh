#!/usr/bin/env bash
# Side by side: mmcurate and img2dataset 1.47.0 (from PyPI, in its own venv) downloading the
# same URL list of COUNT JPEGs, served by `python3 -m http.server` on 127.0.0.1, into
# WebDataset shards. img2dataset runs as it is usually run for this: 2 processes x 16 threads,
# `--resize_mode no` (the original bytes), `--enable_wandb False`; mmcurate gets the same 32
# downloads in flight (`http.concurrency=32`, no per-host limit below that, since every URL is
# on one host here) and its whole pipeline (download, decode, measure, dedup, write shards and
# ledger). The runs alternate, A B A B ..., so drift of the machine's speed hits both alike.
#
#   bash scripts/bench/urls_compare.sh [COUNT] [RUNS]   (default 3000 images, 3 runs each)
#
# Needs the test venv (.venv, scripts/test.sh) to make the corpus; IMG2DATASET_VENV names an
# existing venv with img2dataset==1.47.0 (default: made under target/bench). MMCURATE_BIN names
# a binary already built (default: `cargo build --release` here and target/release/mmcurate).
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-3000}
runs=${2:-3}
bench=target/bench/urls-$count
py=${MMCURATE_TEST_PYTHON:-.venv/bin/python}
venv=${IMG2DATASET_VENV:-target/bench/img2dataset-venv}

if [ ! -x "$venv/bin/img2dataset" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check img2dataset==1.47.0
fi
mkdir -p "$bench"
# Source photos for the corpus: the quickstart's real images (not its broken ones).
sources=$bench/sources
if [ ! -d "$sources" ]; then
  mkdir -p "$sources"
  cp examples/quickstart/images/opencv_*.{jpg,png} examples/quickstart/images/matplotlib_*.jpg "$sources"/
fi
corpus=$bench/corpus
if [ "$(find "$corpus" -name '*.jpg' 2>/dev/null | wc -l)" -ne "$count" ]; then
  rm -rf "$corpus"
  "$py" scripts/bench/make_corpus.py --count "$count" --out "$corpus" --media "$PWD/$sources"
fi
bin=${MMCURATE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --quiet
  bin=target/release/mmcurate
fi

port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$corpus" "$port" > "$bench/http.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.1
done

# One URL list for both: Parquet with `url` and `caption`.
"$py" - "$corpus" "$port" "$bench/urls.parquet" <<'PY'
import sys
from pathlib import Path
import pyarrow as pa, pyarrow.parquet as pq
corpus, port, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
names = sorted(p.name for p in corpus.glob("*.jpg"))
pq.write_table(pa.table({
    "url": [f"http://127.0.0.1:{port}/{n}" for n in names],
    "caption": [f"image {n}" for n in names],
}), out)
print(f"{len(names)} URLs on http://127.0.0.1:{port}/")
PY

cat > "$bench/job.toml" <<EOF
[run]
output = "$bench/out-mmcurate"
threads = 2
[[inputs]]
uri = "$bench/urls.parquet"
format = "manifest"
[http]
concurrency = 32
per_host_concurrency = 32
[filters.image]
min_side = 1
[output]
max_samples_per_shard = 10000
EOF

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "corpus: $count JPEGs, $(du -shL "$corpus" | cut -f1)"

run_mmcurate() {
  rm -rf "$bench/out-mmcurate"
  "$bin" run "$bench/job.toml" --quiet > /dev/null
}
run_img2dataset() {
  rm -rf "$bench/out-img2dataset"
  "$venv/bin/img2dataset" --url_list "$bench/urls.parquet" --input_format parquet \
    --url_col url --caption_col caption --output_format webdataset \
    --output_folder "$bench/out-img2dataset" --processes_count 2 --thread_count 16 \
    --resize_mode no --number_sample_per_shard 10000 --enable_wandb False > "$bench/img2dataset.log" 2>&1
}
seconds() {
  local start end
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  awk "BEGIN { printf \"%.3f\", $end - $start }"
}

ours=() theirs=()
for i in $(seq "$runs"); do
  ours+=("$(seconds run_mmcurate)")
  theirs+=("$(seconds run_img2dataset)")
  echo "run $i: mmcurate ${ours[-1]} s, img2dataset ${theirs[-1]} s"
done

"$py" - "$count" "$bench" "${ours[*]}" "${theirs[*]}" <<'PY'
import json, statistics, sys, glob
count, bench = int(sys.argv[1]), sys.argv[2]
ours = [float(x) for x in sys.argv[3].split()]
theirs = [float(x) for x in sys.argv[4].split()]
manifest = json.load(open(f"{bench}/out-mmcurate/current/manifest.json"))
stats = [json.load(open(p)) for p in glob.glob(f"{bench}/out-img2dataset/*_stats.json")]
i2d_ok = sum(s["successes"] for s in stats)
m, t = statistics.median(ours), statistics.median(theirs)
print(f"mmcurate:    median {m:.2f} s ({count / m:.0f} URLs/s), samples {manifest['counts']['samples']}, "
      f"kept {manifest['counts']['kept']}, dropped {manifest['counts']['dropped_by_reason']}")
print(f"img2dataset: median {t:.2f} s ({count / t:.0f} URLs/s), successes {i2d_ok}")
print(f"img2dataset / mmcurate wall time: {t / m:.2f}x")
PY
