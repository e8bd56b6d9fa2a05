#!/usr/bin/env bash
# CLIP ViT-B/32 embedding throughput on this CPU: mmcurate (candle) beside PyTorch
# transformers.CLIPModel, same random weights (one model folder both load), same batch size,
# same captions, same threads, in one run. Also checks that both give the same features on the
# same input. Makes the model and the PyTorch venv first if they are missing.
#
#   bash scripts/bench/clip_compare.sh [b32|l14] [BATCH] [IMAGES] [TEXTS]
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
echo "--- PyTorch"
"$venv/bin/python" scripts/bench/clip_torch.py "$model" --batch "$batch" --images "$images" \
  --texts "$texts" --threads "$threads" --captions scripts/bench/captions.txt \
  --dump-features "$model/torch-features.npy"
echo "--- mmcurate"
cargo bench --quiet --bench clip -- "$model" --batch "$batch" --images "$images" \
  --texts "$texts" --captions scripts/bench/captions.txt \
  --torch-features "$model/torch-features.npy" --torch-pixels "$model/torch-pixels.npy"
