#!/usr/bin/env bash
# The end-to-end GPU benchmark of issue 5 (item 7), in ONE call on the GPU machine (H100/H200,
# CUDA 13.0, PyTorch, torchvision, transformers; no Rust, no network, no FFmpeg 5.1):
#   1. makes MMCURATE_BENCH_COUNT (default 20,000) captioned JPEGs from the repository's test
#      images, tests/media/images (scripts/gpu/make_jpegs.py: 256-1024 px, a few % exact and
#      near copies), and, meanwhile, random-weight CLIP models with the real ViT-B/32 and
#      ViT-L/14 dimensions (scripts/bench/make_clip_model.py);
#   2. a short warm-up `mmcurate run` on 256 of them (compiles and caches the NVRTC kernels, and
#      checks that the binary really decodes with nvJPEG and runs CLIP on the GPU: if it does
#      not, the mmcurate runs are skipped with the reason, not timed on the CPU);
#   3. for each size (b32 first, then l14): `mmcurate run` on the whole corpus (file:// input,
#      run.device cuda, run.gpu_jpeg_decode, [models.clip] path/batch_size/dtype), then the
#      PyTorch peer on the same files, GPU and dtype (scripts/gpu/torch_pipeline.py);
#   4. a summary table on stdout: images/s end to end, per-stage seconds (mmcurate's manifest
#      stage_seconds; the peer's CUDA-event stage times), peak GPU memory and mean utilisation
#      (nvidia-smi sampled every 200 ms), the mmcurate / PyTorch ratio and the 3,000 images/s
#      target.
# Every step runs under `timeout`, cut to what is left of MMCURATE_BENCH_DEADLINE_S, so a hung
# step cannot eat the session; a failed step is reported in the table and the next one runs.
#
# Prepare here (a machine with Rust), then carry target/gpu-carry:
#   bash scripts/gpu/build.sh                  # target/gpu-carry/mmcurate-cuda.xz (+ .needed)
#   bash scripts/gpu/bench_e2e.sh prepare      # checks the binary (no FFmpeg libraries) and the
#                                              # size of what travels (the images travel in the
#                                              # working tree: tests/media/images)
# The one call on the GPU machine (device tool: carry ["target/gpu-carry"], timeout_s 420):
#   bash scripts/gpu/bench_e2e.sh
# Results: summary.md (the table), results.json (every number, the manifests), log.txt (each
# step's output) and smi.csv (nvidia-smi samples), in $OUT/bench-e2e when $OUT is set, else in
# MMCURATE_BENCH_RESULTS (default target/bench/gpu-e2e).
#
# Environment (defaults): MMCURATE_BENCH_COUNT (20000), MMCURATE_BENCH_SIZES ("b32 l14"),
# MMCURATE_BENCH_DEVICE (cuda; "cpu" is a dry run of the plumbing: CLIP in f32 on the CPU, so
# keep the count small), MMCURATE_BENCH_DTYPE (bf16 on cuda, f32 on cpu), MMCURATE_BENCH_BATCH
# (256), MMCURATE_BENCH_SEMANTIC_MIN_COSINE (0 = semantic dedup off, see below), MMCURATE_BENCH_BIN
# (an mmcurate binary instead of $carry/mmcurate-cuda.xz), MMCURATE_GPU_CARRY (target/gpu-carry),
# MMCURATE_MEDIA_IMAGES (tests/media/images, else an older carry's $carry/media/images),
# MMCURATE_BENCH_MODEL_B32 / _L14 (an existing CLIP folder instead of making one),
# MMCURATE_BENCH_PYTHON (python3: make_jpegs, needs Pillow), MMCURATE_BENCH_TORCH_PYTHON (same:
# torch, torchvision, transformers, safetensors), MMCURATE_BENCH_DEADLINE_S (360: the whole
# script, each step's own limit cut to what is left of it),
# MMCURATE_BENCH_WORK (the scratch folder: corpus, models, outputs; default a new one under
# /tmp, removed at the end unless MMCURATE_BENCH_KEEP=1; a given one is kept).
#
# Semantic dedup is off by default: the weights are random, and a random CLIP maps every image
# to nearly the same direction (pairwise image-embedding cosine p50 0.90, p99 0.995 measured on
# 64 corpus images with the random ViT-B/32), so at the usual 0.95 most of the corpus would be one
# "semantic duplicate" group: a pathological case for mmcurate's HNSW search (and its widening
# k), not the pipeline's real cost. Exact and pHash dedup run on both sides; semantic dedup's
# cost at scale is benchmarked on its own (docs/benchmarks.md). Set
# MMCURATE_BENCH_SEMANTIC_MIN_COSINE=0.95 with real weights.
#
# Exit code: 0 when every step succeeded, 1 when one failed or timed out (see the table), 2 when
# the setup is wrong (no GPU, no binary, a library missing, no images): said in one line.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
carry=${MMCURATE_GPU_CARRY:-target/gpu-carry}
t0=$(date +%s)

die() { echo "bench_e2e.sh: $*" >&2; exit 2; }

find_media() {
  local m=${MMCURATE_MEDIA_IMAGES:-}
  if [ -n "$m" ]; then
    [ -d "$m" ] || die "MMCURATE_MEDIA_IMAGES=$m is not a folder"
    (cd "$m" && pwd); return
  fi
  for candidate in tests/media/images "$carry/media/images"; do
    if [ -d "$candidate" ] && compgen -G "$candidate/*.jpg" > /dev/null; then (cd "$candidate" && pwd); return; fi
  done
  die "no source images: none of tests/media/images, $carry/media/images (run this from the repository root, or set MMCURATE_MEDIA_IMAGES)"
}

# ---------------------------------------------------------------------------------------------
if [ "${1:-}" = prepare ]; then
  # Here, before the GPU call: check what will be carried and add the source images to it.
  bin=$carry/mmcurate-cuda.xz
  [ -f "$bin" ] || die "$bin is missing: run scripts/gpu/build.sh first"
  needed=$carry/mmcurate-cuda.needed
  [ -f "$needed" ] || die "$needed is missing: run scripts/gpu/build.sh again"
  if grep -qE '^lib(av|sw)' "$needed"; then
    die "$bin links FFmpeg ($(grep -E '^lib(av|sw)' "$needed" | tr '\n' ' ')): it links the system's FFmpeg, which the GPU machine lacks, so it would not start there; run scripts/gpu/build.sh again (it links FFmpeg statically)"
  fi
  built=$(stat -c %Y "$bin")
  changed=$(git log -1 --format=%ct -- src kernels Cargo.toml Cargo.lock build.rs 2>/dev/null || echo 0)
  if [ "$built" -lt "$changed" ]; then
    echo "bench_e2e.sh: warning: $bin ($(date -u -d @"$built" +%FT%TZ)) is older than the last commit to src/kernels/Cargo ($(date -u -d @"$changed" +%FT%TZ)); rebuild with scripts/gpu/build.sh to measure the current code" >&2
  fi
  # The source images are the repository's (tests/media/images): they travel in the working
  # tree, so nothing is copied into the carry; an older carry's copy is removed.
  rm -rf "$carry/media"
  media=$(find_media)
  # Apparent sizes (what travels), not disk blocks.
  tree_b=$(git ls-files -z --cached --others --exclude-standard | du -c -b --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
  carry_b=$(du -s -b "$carry" | cut -f1)
  total=$(( tree_b + carry_b ))
  mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
  echo "carry: $carry $(mib "$carry_b"), source images $media ($(compgen -G "$media/*.[jp][pn]g" | wc -l)), working tree $(mib "$tree_b"): $(mib "$total") of the 64 MiB a call takes"
  [ "$total" -lt $(( 62 * 1048576 )) ] || die "too big to travel: carry less (e.g. only mmcurate-cuda.xz and .needed)"
  echo "then, on the GPU machine, with carry [\"$carry\"] and timeout_s 420:  bash scripts/gpu/bench_e2e.sh"
  exit 0
fi
[ $# -eq 0 ] || die "usage: bash $0 [prepare]   (settings come from the environment; see the header)"

# ---------------------------------------------------------------------------------------------
count=${MMCURATE_BENCH_COUNT:-20000}
sizes=${MMCURATE_BENCH_SIZES:-b32 l14}
device=${MMCURATE_BENCH_DEVICE:-cuda}
case $device in
  cuda|cuda:[0-9]*) dtype=${MMCURATE_BENCH_DTYPE:-bf16}; gpu_decode=true ;;
  cpu) dtype=${MMCURATE_BENCH_DTYPE:-f32}; gpu_decode=false ;;
  *) die "MMCURATE_BENCH_DEVICE=$device: use cuda, cuda:N or cpu" ;;
esac
case $dtype in f32|bf16|f16) ;; *) die "MMCURATE_BENCH_DTYPE=$dtype: use f32, bf16 or f16" ;; esac
batch=${MMCURATE_BENCH_BATCH:-256}
semantic=${MMCURATE_BENCH_SEMANTIC_MIN_COSINE:-0}
deadline=${MMCURATE_BENCH_DEADLINE_S:-360}
py=${MMCURATE_BENCH_PYTHON:-python3}
tpy=${MMCURATE_BENCH_TORCH_PYTHON:-$py}
for s in $sizes; do case $s in b32|l14) ;; *) die "MMCURATE_BENCH_SIZES: $s is not b32 or l14" ;; esac; done
[[ $count =~ ^[0-9]+$ ]] && [ "$count" -ge 1 ] || die "MMCURATE_BENCH_COUNT=$count: a positive number"
if [ -n "${OUT:-}" ]; then results=${MMCURATE_BENCH_RESULTS:-$OUT/bench-e2e}; else results=${MMCURATE_BENCH_RESULTS:-target/bench/gpu-e2e}; fi
mkdir -p "$results" || die "cannot make $results"
results=$(cd "$results" && pwd)
rm -f "$results"/summary.md "$results"/results.json "$results"/log.txt "$results"/smi.csv
work=${MMCURATE_BENCH_WORK:-$(mktemp -d /tmp/mmcurate-e2e.XXXXXX)}
mkdir -p "$work/steps" "$work/bin" "$work/lib" || die "cannot make $work"
work=$(cd "$work" && pwd)
log=$results/log.txt
smi_pid=
cleanup() {
  [ -n "$smi_pid" ] && kill "$smi_pid" 2>/dev/null
  if [ "${MMCURATE_BENCH_KEEP:-0}" != 1 ] && [ -z "${MMCURATE_BENCH_WORK:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
echo "bench_e2e: $count images, sizes $sizes, device $device, dtype $dtype, batch $batch, semantic dedup ${semantic/#0/off}; results in $results" | tee "$log"

# --- setup checks: each failure is one line and exit 2, before anything is made -------------
command -v "$py" > /dev/null || die "no $py (MMCURATE_BENCH_PYTHON)"
"$py" -c 'import PIL' 2> /dev/null || die "$py has no Pillow (make_jpegs.py needs it; MMCURATE_BENCH_PYTHON)"
"$tpy" - "$device" <<'PY' > "$work/torch.check" 2>&1 || die "$(tail -n 1 "$work/torch.check")"
import sys
try:
    import torch, transformers, safetensors  # noqa: F401
except Exception as e:
    sys.exit(f"the torch python lacks torch/transformers/safetensors: {e} (MMCURATE_BENCH_TORCH_PYTHON)")
try:
    import torchvision
    from torchvision.io import decode_jpeg  # noqa: F401
except Exception as e:
    sys.exit(f"the torch python lacks a working torchvision: {type(e).__name__}: {e}")
if sys.argv[1].startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"PyTorch sees no CUDA GPU (torch {torch.__version__}); MMCURATE_BENCH_DEVICE=cpu is the dry run")
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, transformers {transformers.__version__}"
      + (f", {torch.cuda.get_device_name()}" if sys.argv[1].startswith("cuda") else ""))
PY
tee -a "$log" < "$work/torch.check"
media=$(find_media) || exit 2
ncpu=$(nproc)

# The mmcurate binary: MMCURATE_BENCH_BIN, else the carried --features cuda one.
if [ -n "${MMCURATE_BENCH_BIN:-}" ]; then
  [ -x "$MMCURATE_BENCH_BIN" ] || die "MMCURATE_BENCH_BIN=$MMCURATE_BENCH_BIN is not an executable"
  bin=$(cd "$(dirname "$MMCURATE_BENCH_BIN")" && pwd)/$(basename "$MMCURATE_BENCH_BIN")
elif [ -f "$carry/mmcurate-cuda.xz" ]; then
  if command -v xz > /dev/null; then xz -dc "$carry/mmcurate-cuda.xz" > "$work/bin/mmcurate"
  else "$py" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$carry/mmcurate-cuda.xz" "$work/bin/mmcurate"; fi || die "cannot unpack $carry/mmcurate-cuda.xz"
  chmod +x "$work/bin/mmcurate"
  bin=$work/bin/mmcurate
else
  die "no mmcurate binary: $carry/mmcurate-cuda.xz is missing (run scripts/gpu/build.sh and 'bash $0 prepare' on a machine with Rust, and carry $carry), or set MMCURATE_BENCH_BIN"
fi

# The CUDA libraries the binary links, and libnvjpeg, which it loads at run time: wherever the
# loader does not find one itself, its folder goes on LD_LIBRARY_PATH. Looked for in the CUDA
# toolkit, the driver's folder and the torch python's nvidia-* wheels; torchvision's bundled
# libnvjpeg (a hashed name) is linked under the name mmcurate asks for.
if [[ $device == cuda* ]]; then
  sites=$("$tpy" -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null || true)
  search=(/usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /opt/conda/lib)
  while IFS= read -r s; do [ -d "$s/nvidia" ] && search+=("$s/nvidia"); [ -d "$s/torch/lib" ] && search+=("$s/torch/lib"); done <<< "$sites"
  add_lib_dir() { case ":${LD_LIBRARY_PATH:-}:" in *":$1:"*) ;; *) export LD_LIBRARY_PATH="$1${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac; }
  have_lib() {
    ldconfig -p 2>/dev/null | grep -qE "^[[:space:]]*${1//./\\.} " && return 0
    local d; IFS=: read -ra dirs <<< "${LD_LIBRARY_PATH:-}"
    for d in "${dirs[@]}"; do [ -n "$d" ] && [ -e "$d/$1" ] && return 0; done
    return 1
  }
  if compgen -G "$carry/lib/*.xz" > /dev/null; then
    for f in "$carry"/lib/*.xz; do
      "$py" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$f" "$work/lib/$(basename "${f%.xz}")" || die "cannot unpack $f"
    done
  fi
  add_lib_dir "$work/lib"
  needed=$(objdump -p "$bin" 2>/dev/null | awk '/NEEDED/ { print $2 }')
  [ -n "$needed" ] || needed=$(cat "$carry/mmcurate-cuda.needed" 2>/dev/null)
  for lib in $needed libnvjpeg.so.13 libnvrtc.so.13; do
    case $lib in libc.so*|libm.so*|libgcc_s*|libstdc++*|ld-linux*|libdl*|libpthread*|librt*) continue ;; esac
    have_lib "$lib" && continue
    found=$(find "${search[@]}" -maxdepth 4 -name "$lib" 2>/dev/null | head -n 1)
    if [ -z "$found" ] && [[ $lib == libnvjpeg* ]]; then
      tv_libs=$("$tpy" -c 'import os, torchvision; print(os.path.dirname(os.path.dirname(torchvision.__file__)) + "/torchvision.libs")' 2>/dev/null || true)
      alt=$(find "$tv_libs" -maxdepth 1 -name 'libnvjpeg*.so*' 2>/dev/null | head -n 1)
      [ -n "$alt" ] && ln -sf "$alt" "$work/lib/$lib" && found=$work/lib/$lib
    fi
    [ -n "$found" ] && add_lib_dir "$(dirname "$found")"
  done
  if ldd "$bin" 2>/dev/null | grep -q 'not found'; then
    missing=$(ldd "$bin" | awk '/not found/ { print $1 }' | tr '\n' ' ')
    case $missing in
      *libcuda.so*) die "$bin needs the NVIDIA driver's libcuda.so.1, which is not here (missing: $missing): is this the GPU machine?" ;;
      *libav*|*libsw*) die "$bin needs FFmpeg libraries ($missing): it is a stale build; run scripts/gpu/build.sh (which builds without the av feature) and carry it again" ;;
      *) die "$bin needs libraries this machine lacks: $missing(carry the wheels' copies as $carry/lib/*.xz, see the end of scripts/gpu/build.sh)" ;;
    esac
  fi
  have_lib libnvjpeg.so.13 || have_lib libnvjpeg.so.12 || echo "bench_e2e: warning: no libnvjpeg found: mmcurate will decode JPEGs on the CPU (the table's jpeg decoder column says so)" | tee -a "$log"
  nvidia-smi -L 2>&1 | tee -a "$log" || die "nvidia-smi does not answer"
fi
"$bin" --version > "$work/version" 2>&1 || die "$bin does not start: $(tail -n 2 "$work/version" | tr '\n' ' ')"
echo "mmcurate: $(cat "$work/version") ($bin)" | tee -a "$log"
export XDG_CACHE_HOME=$work/cache   # a cold PTX cache: the warm-up run fills it

if [[ $device == cuda* ]] && command -v nvidia-smi > /dev/null; then
  if command -v stdbuf > /dev/null; then line_buffered=(stdbuf -oL); else line_buffered=(); fi
  "${line_buffered[@]}" nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu \
    --format=csv,noheader,nounits -lms 200 > "$results/smi.csv" 2> /dev/null &
  smi_pid=$!
fi

# --- steps ------------------------------------------------------------------------------------
failed=0
# step NAME MAX_SECONDS CMD...: runs CMD under timeout (MAX, cut to the deadline less 20 s for the
# summary), output to $work/steps/NAME.out/.err; records name, rc, start, end in steps.tsv.
step() {
  local name=$1 max=$2; shift 2
  local left=$(( deadline - ($(date +%s) - t0) - 20 ))
  local limit=$(( max < left ? max : left ))
  if [ "$limit" -lt 10 ]; then
    echo "== $name: skipped, the deadline (MMCURATE_BENCH_DEADLINE_S=$deadline) is near" | tee -a "$log"
    printf '%s\tskipped\t0\t0\t0\n' "$name" >> "$work/steps.tsv"
    failed=1
    return 1
  fi
  echo "== $name (at most ${limit} s)" | tee -a "$log"
  local start end rc
  start=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" > "$work/steps/$name.out" 2> "$work/steps/$name.err"
  rc=$?
  end=$(date +%s.%N)
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$start" "$end" "$limit" >> "$work/steps.tsv"
  { tail -n 40 "$work/steps/$name.out"; tail -n 25 "$work/steps/$name.err"; } >> "$log"
  if [ "$rc" -ne 0 ]; then
    failed=1
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "   $name: TIMED OUT after $limit s" | tee -a "$log"
    else echo "   $name: FAILED (exit $rc): $(tail -n 3 "$work/steps/$name.err" | tr '\n' ' ' | cut -c1-400)" | tee -a "$log"; fi
    return "$rc"
  fi
  awk -v n="$name" -v a="$start" -v b="$end" 'BEGIN { printf "   %s: %.1f s\n", n, b - a }' | tee -a "$log"
  return 0
}
: > "$work/steps.tsv"

# Models in the background (they need only the CPU) while the corpus is made.
declare -A model
for s in $sizes; do
  var=MMCURATE_BENCH_MODEL_${s^^}
  if [ -n "${!var:-}" ]; then model[$s]=$(cd "${!var}" && pwd) || die "$var=${!var} is not a folder"
  else model[$s]=$work/clip-$s; fi
done
(
  for s in $sizes; do
    [ -f "${model[$s]}/model.safetensors" ] && continue
    step "model-$s" 240 "$tpy" scripts/bench/make_clip_model.py "${model[$s]}" --size "$s" || true
  done
) &
models_pid=$!

corpus=$work/corpus
step corpus 120 "$py" scripts/gpu/make_jpegs.py --out "$corpus" --count "$count" --procs "$ncpu" --media "$media" \
  || die "the corpus could not be made: $(tail -n 2 "$work/steps/corpus.err" | tr '\n' ' ')"
wait "$models_pid"
for s in $sizes; do
  [ -f "${model[$s]}/model.safetensors" ] || echo "   model-$s: no model: $(tail -n 2 "$work/steps/model-$s.err" 2>/dev/null | tr '\n' ' ')" | tee -a "$log"
done
if awk -F'\t' '$1 ~ /^model-/ && $2 != 0 { bad = 1 } END { exit !bad }' "$work/steps.tsv"; then failed=1; fi

# mmcurate's job config for one model size; $1 size, $2 input folder, $3 output folder.
write_config() {
  cat <<TOML
[run]
name = "bench-e2e-$1"
output = "$3"
device = "$device"
gpu_jpeg_decode = $gpu_decode
threads = 0

[[inputs]]
uri = "file://$2"

[dedup]
exact = true
phash_max_distance = 4
embedding_min_cosine = $semantic

[models.clip]
path = "${model[$1]}"
batch_size = $batch
dtype = "$dtype"

[output]
max_samples_per_shard = 10000
max_bytes_per_shard = "2GiB"
TOML
}

# Warm-up and check: 256 images with the first size's model.
first=${sizes%% *}
mmcurate_ok=1
if [ -f "${model[$first]}/model.safetensors" ]; then
  mkdir -p "$work/warmup"
  ls "$corpus" | head -n 512 | while read -r f; do cp "$corpus/$f" "$work/warmup/"; done
  write_config "$first" "$work/warmup" "$work/out-warmup" > "$work/warmup.toml"
  if step warmup 90 "$bin" --quiet run "$work/warmup.toml"; then
    verdict=$("$py" - "$work/out-warmup/current/manifest.json" "$device" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
want_gpu = sys.argv[2].startswith("cuda")
run, clip = m.get("run", {}), (m.get("models") or {}).get("clip") or {}
problems = []
if want_gpu and not str(run.get("device", "")).startswith("cuda"):
    problems.append(f"measuring ran on {run.get('device')}")
if want_gpu and not str(clip.get("device", "")).startswith("cuda"):
    problems.append(f"CLIP ran on {clip.get('device')} ({clip.get('dtype')}): the binary was not built with --features cuda (scripts/gpu/build.sh)")
if want_gpu and "nvjpeg" not in str(run.get("jpeg_decoder", "")).lower():
    print(f"warning: JPEGs decoded by {run.get('jpeg_decoder')}, not nvJPEG", file=sys.stderr)
print("; ".join(problems) if problems else "ok")
PY
)
    echo "   warm-up: $verdict" | tee -a "$log"
    [ "$verdict" = ok ] || mmcurate_ok=0
  else
    mmcurate_ok=0
  fi
  rm -rf "$work/out-warmup" "$work/warmup"
fi
[ "$mmcurate_ok" = 1 ] || { echo "   the mmcurate runs are skipped (see above); the PyTorch runs go on" | tee -a "$log"; failed=1; }

for s in $sizes; do
  if [ ! -f "${model[$s]}/model.safetensors" ]; then failed=1; continue; fi
  if [ "$mmcurate_ok" = 1 ]; then
    out=$work/out-$s
    write_config "$s" "$corpus" "$out" > "$work/mmcurate-$s.toml"
    max=120; [ "$s" = l14 ] && max=150
    step "mmcurate-$s" "$max" "$bin" --quiet run "$work/mmcurate-$s.toml"
    [ -f "$out/current/manifest.json" ] && cp "$out/current/manifest.json" "$work/steps/mmcurate-$s.manifest.json"
    rm -rf "$out"   # shards and staging: GBs, not needed any more
  fi
  max=90; [ "$s" = l14 ] && max=120
  step "pytorch-$s" "$max" "$tpy" scripts/gpu/torch_pipeline.py "$corpus" --model "${model[$s]}" \
    --dtype "$dtype" --batch-size "$batch" --device "$device" --read-threads "$ncpu" \
    --near-max-bits 4 --semantic-min-cosine "$semantic" --json-out "$work/steps/pytorch-$s.json"
done

[ -n "$smi_pid" ] && kill "$smi_pid" 2> /dev/null; smi_pid=
"$py" scripts/gpu/bench_summary.py --work "$work" --results "$results" --count "$count" \
  --device "$device" --dtype "$dtype" --batch "$batch" --sizes "$sizes" --semantic "$semantic" \
  --media "$media" | tee "$results/summary.md"
summary_rc=${PIPESTATUS[0]}
echo "total $(( $(date +%s) - t0 )) s; results in $results" | tee -a "$log"
[ "$summary_rc" -eq 0 ] || failed=1
exit "$failed"
