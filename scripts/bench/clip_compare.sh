#!/usr/bin/env bash
# CLIP ViT-B/32 embedding throughput on this CPU: mmcurate (candle) beside PyTorch
# transformers.CLIPModel, same random weights (one model folder both load), same batch size,
# same captions, same threads, in one run. Also checks that both give the same features on the
# same input. Makes the model and the PyTorch venv first if they are missing.
#
# This machine's speed drifts by a third from minute to minute (a shared virtual machine), so
# the two sides take turns, ROUNDS times (default 3), and each round's ratio is printed; the
# candle-transformers modules (mmcurate's other backend) run once at the end.
#
#   [ROUNDS=3] bash scripts/bench/clip_compare.sh [b32|l14] [BATCH] [IMAGES] [TEXTS]
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-b32}
batch=${2:-32}
images=${3:-128}
texts=${4:-256}
threads=$(nproc)
venv=target/bench/clip-venv
model=target/bench/clip-$size

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r scripts/bench/requirements-clip.txt
fi
[ -f "$model/model.safetensors" ] || "$venv/bin/python" scripts/bench/make_clip_model.py "$model" --size "$size"

echo "machine: $threads cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "model: $model (ViT-${size^^} dimensions, random weights), batch $batch"
cargo bench --no-run --quiet --bench clip 2>/dev/null
ours() {
  cargo bench --quiet --bench clip -- "$model" --batch "$batch" --images "$images" \
    --texts "$texts" --captions scripts/bench/captions.txt \
    --torch-features "$model/torch-features.npy" --torch-pixels "$model/torch-pixels.npy" "$@"
}
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
for round in $(seq "${ROUNDS:-3}"); do
  echo "--- round $round: PyTorch"
  theirs=$("$venv/bin/python" scripts/bench/clip_torch.py "$model" --batch "$batch" \
    --images "$images" --texts "$texts" --threads "$threads" \
    --captions scripts/bench/captions.txt --dump-features "$model/torch-features.npy" |
    tee /dev/stderr | tail -n 1)
  echo "--- round $round: mmcurate"
  mine=$(ours --backend cpu | tee /dev/stderr | tail -n 1)
  awk -v r="$round" -v ti="$(field images_per_sec <<<"$theirs")" \
    -v tt="$(field texts_per_sec <<<"$theirs")" -v mi="$(field images_per_sec <<<"$mine")" \
    -v mt="$(field texts_per_sec <<<"$mine")" \
    'BEGIN { printf "round %d: images %.2fx, texts %.2fx (mmcurate / PyTorch)\n", r, mi / ti, mt / tt }'
done 2>&1
echo "--- mmcurate, candle-transformers backend"
ours --backend candle
