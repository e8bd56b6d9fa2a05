#!/usr/bin/env bash
# The GPU checks of issue 5 in one call, on a machine with a GPU and no Rust (nothing is built
# or downloaded here), each step with its table:
#   1. the CUDA-vs-CPU parity tests of tests/it/gpu.rs from the carried test binary: measuring
#      kernels (hashes, sharpness, brightness; batched, alone and from four workers at once),
#      CLIP preprocessing (bit-identical to the CPU's), nvJPEG decoding, and measuring nvJPEG's
#      pixels in device memory (NVDEC's test is a unit test of decode::av, which needs FFmpeg
#      5.1: the GPU machine has none, so the carried binaries are built without it);
#   2. `mmcurate run` with run.device = "cpu" and "cuda" on a corpus made from tests/media/images:
#      timings, and shards and ledger compared;
#   3. CLIP on the GPU against the CPU (scripts/gpu/check_clip.sh);
#   4. the pair search's products on the GPU (issue 14 item 7): the parity tests of
#      tests/it/gpu_pairs.rs (cuBLAS candidates against the CPU's; the whole search's pairs and
#      groups on 20k planted 512-d vectors), then `mmcurate dedup --device cpu` and `--device
#      cuda` on the same 1M x 512 embeddings (scripts/bench/dedup_data.py), timed per phase, and
#      their pairs.parquet and groups.parquet compared byte for byte; unless MMCURATE_GPU_DEDUP=0
#      (about 1.5 minutes at 1M);
#   5. the end-to-end benchmark against the PyTorch pipeline (scripts/gpu/bench_e2e.sh), unless
#      MMCURATE_GPU_BENCH=0, in what is left of the call.
#
# Prepare on a machine with Rust: `bash scripts/gpu/prepare.sh` (builds and packs
# target/gpu-carry: it.xz, mmcurate-cuda.xz and .needed), then, with the device tool,
# carry ["target/gpu-carry"] with timeout_s 590:  bash scripts/gpu/check.sh
#
# Environment: MMCURATE_GPU_CARRY (default target/gpu-carry), MMCURATE_MEDIA (default the
# checkout's tests/media, which travels in the working tree: the test binaries read their images
# and videos there), MMCURATE_MEDIA_IMAGES (default $MMCURATE_MEDIA/images),
# MMCURATE_GPU_CORPUS_COUNT (default 1000), MMCURATE_GPU_DEDUP (1), MMCURATE_GPU_DEDUP_ROWS
# (1000000), MMCURATE_GPU_BENCH (1), MMCURATE_BENCH_DEADLINE_S (what the benchmark may take,
# default 300 here, less when the steps before it took long).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
carry=${MMCURATE_GPU_CARRY:-target/gpu-carry}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
started_at=$(date +%s)

for pair in it:it mmcurate:mmcurate-cuda; do
  name=${pair%%:*} file=${pair#*:}
  if [ -f "$carry/$file.xz" ]; then
    xz -dc "$carry/$file.xz" > "$work/bin/$name"
  elif [ -f "$carry/$file" ]; then
    cp "$carry/$file" "$work/bin/$name"
  else
    echo "check.sh: $carry/$file(.xz) is missing; run scripts/gpu/prepare.sh on a machine with Rust" >&2
    exit 2
  fi
  chmod +x "$work/bin/$name"
done

# The test binaries were built on another machine: their CARGO_MANIFEST_DIR does not exist here.
export MMCURATE_MEDIA=${MMCURATE_MEDIA:-$root/tests/media}
media=${MMCURATE_MEDIA_IMAGES:-$MMCURATE_MEDIA/images}
if [ ! -d "$media" ]; then
  echo "check.sh: no image folder $media; run this in a checkout (tests/media) or set MMCURATE_MEDIA" >&2
  exit 2
fi
export MMCURATE_MEDIA_IMAGES=$(cd "$media" && pwd)

# The CUDA libraries the binaries link and load (cudart, cuBLAS, cuRAND, NVRTC, nvJPEG).
source scripts/gpu/cuda_libs.sh
cuda_libs "$work/bin/it" "$work/bin/mmcurate" || exit 2
export XDG_CACHE_HOME="$work/cache"   # a cold PTX cache: the first CUDA use compiles
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"

echo "== parity (tests/it/gpu.rs) =="
parity_log="$work/parity.log"
set +e
"$work/bin/it" --exact --nocapture --test-threads 1 \
  gpu::gpu_parity_on_the_shared_images \
  gpu::the_gpu_plan_emulated_on_the_host_measures_the_shared_images_as_the_cpu \
  gpu::gpu_clip_preprocessing_parity_on_the_shared_images \
  gpu::the_clip_plan_emulated_on_the_host_preprocesses_the_shared_images_as_the_cpu \
  kernels::every_kernel_compiles_with_nvrtc \
  > "$parity_log" 2>&1
parity_rc=$?
set -e
grep -E '^gpu (clip preprocessing )?parity|^test |test result|panicked' "$parity_log" || tail -n 30 "$parity_log"

echo "== nvJPEG decode parity (tests/it/gpu.rs) =="
set +e
"$work/bin/it" --exact --nocapture --test-threads 1 \
  gpu::nvjpeg_parity_on_the_shared_images gpu::shared_jpegs_are_routed_by_their_headers \
  gpu::measuring_on_the_device_equals_measuring_the_downloaded_pixels \
  gpu::nvdec_parity_on_the_shared_videos \
  > "$work/nvjpeg.log" 2>&1
nvjpeg_rc=$?
set -e
grep -E '^nvjpeg (parity|routes)|^device measuring|^gpu clip preprocessing from|^test |test result|panicked' "$work/nvjpeg.log" || tail -n 30 "$work/nvjpeg.log"

echo "== timing: mmcurate run, device cpu vs cuda =="
corpus="$work/corpus"
count=${MMCURATE_GPU_CORPUS_COUNT:-1000}
python3 scripts/bench/make_corpus.py --count "$count" --out "$corpus" --media "$media" --procs 8 >/dev/null
for device in cpu cuda; do
  cat > "$work/$device.toml" <<TOML
[run]
name = "gpu-check-$device"
output = "$work/out-$device"
device = "$device"
[[inputs]]
uri = "$corpus"
TOML
  start=$(date +%s.%N)
  set +e
  "$work/bin/mmcurate" --quiet run "$work/$device.toml" > "$work/$device.stdout" 2> "$work/$device.stderr"
  echo $? > "$work/$device.rc"
  set -e
  end=$(date +%s.%N)
  python3 -c "print($end - $start)" > "$work/$device.wall"
  grep -iE 'warn|error' "$work/$device.stderr" | head -n 5 || true
done

# CLIP on the GPU vs the CPU, when the `--features cuda` binary is carried (scripts/gpu/build.sh
# makes it; scripts/gpu/check_clip.sh runs alone too). Its failure fails this script.
clip_rc=-1   # skipped
if [ -f "$carry/mmcurate-cuda.xz" ]; then
  echo "== CLIP on the GPU vs the CPU (scripts/gpu/check_clip.sh) =="
  set +e
  MMCURATE_GPU_CARRY=$carry bash scripts/gpu/check_clip.sh
  clip_rc=$?
  set -e
fi

# The pair search's products on the GPU: parity tests, then `mmcurate dedup` on each device.
pairs_rc=-1 dedup_rc=-1   # skipped
if [ "${MMCURATE_GPU_DEDUP:-1}" != 0 ]; then
  echo "== pair search on the GPU (tests/it/gpu_pairs.rs) =="
  set +e
  "$work/bin/it" --exact --nocapture --test-threads 1 \
    gpu_pairs::gpu_candidates_are_the_cpu_candidates \
    gpu_pairs::gpu_pair_search_finds_the_cpu_pairs_and_groups \
    > "$work/pairs.log" 2>&1
  pairs_rc=$?
  set -e
  grep -E '^gpu pair|^test |test result|panicked' "$work/pairs.log" || tail -n 30 "$work/pairs.log"

  rows=${MMCURATE_GPU_DEDUP_ROWS:-1000000}
  echo "== dedup benchmark: mmcurate dedup --device cpu vs cuda, $rows x 512, T 0.95, $(nproc) threads =="
  python3 scripts/bench/dedup_data.py "$rows" "$work/emb.npy"
  for device in cpu cuda; do
    echo "load before $device: $(cat /proc/loadavg)" >> "$work/dedup.load"
    start=$(date +%s.%N)
    set +e
    timeout 150 "$work/bin/mmcurate" dedup --embeddings "$work/emb.npy" --min-cosine 0.95 \
      --output "$work/dedup-$device" --threads "$(nproc)" --device "$device" \
      > /dev/null 2> "$work/dedup-$device.stderr"
    echo $? > "$work/dedup-$device.rc"
    set -e
    end=$(date +%s.%N)
    python3 -c "print($end - $start)" > "$work/dedup-$device.wall"
    grep -E 'pairs: (products|batch)|WARN|ERROR' "$work/dedup-$device.stderr" | tail -n 4 || true
  done
  cat "$work/dedup.load"
  set +e
  python3 - "$work" "$rows" <<'PY'
import hashlib, json, pathlib, sys
work, rows = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def digest(device, name):
    path = work / f"dedup-{device}" / name
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
print(f"| --device | exit | products on | wall s | sample | k-means | assign | gather | products | pairs phase | pairs |")
print(f"|---|---|---|---|---|---|---|---|---|---|---|")
ok = True
for device in ("cpu", "cuda"):
    rc = int((work / f"dedup-{device}.rc").read_text())
    wall = float((work / f"dedup-{device}.wall").read_text())
    path = work / f"dedup-{device}" / "summary.json"
    s = json.loads(path.read_text()) if rc == 0 and path.exists() else {}
    search = s.get("search") or {}
    ok = ok and rc == 0
    cells = [f"{search.get(k, float('nan')):.2f}" for k in
             ("seconds_sample", "seconds_kmeans", "seconds_assign", "seconds_gather",
              "seconds_products", "seconds_pairs")]
    print(f"| {device} | {rc} | {s.get('device', '-')} | {wall:.2f} | {' | '.join(cells)} | {s.get('pairs', '-')} |")
same = all(digest("cpu", n) is not None and digest("cpu", n) == digest("cuda", n)
           for n in ("pairs.parquet", "groups.parquet"))
print(f"\ndedup {rows} rows: pairs.parquet and groups.parquet identical between cpu and cuda: {'yes' if same else 'NO'}")
sys.exit(0 if ok and same else 1)
PY
  dedup_rc=$?
  set -e
  rm -f "$work/emb.npy"
fi

# The end-to-end benchmark, in what is left of the call (the device tool allows 600 s).
bench_rc=-1   # skipped
if [ "${MMCURATE_GPU_BENCH:-1}" != 0 ]; then
  echo "== end-to-end benchmark (scripts/gpu/bench_e2e.sh) =="
  left=$(( 560 - ($(date +%s) - started_at) ))
  deadline=${MMCURATE_BENCH_DEADLINE_S:-$(( left < 300 ? left : 300 ))}
  set +e
  MMCURATE_GPU_CARRY=$carry MMCURATE_BENCH_DEADLINE_S=$deadline bash scripts/gpu/bench_e2e.sh
  bench_rc=$?
  set -e
fi

python3 - "$work" "$count" "$parity_rc" "$nvjpeg_rc" "$clip_rc" "$bench_rc" "$pairs_rc" "$dedup_rc" <<'PY'
import hashlib, json, pathlib, sys
work, count, parity_rc = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
nvjpeg_rc, clip_rc, bench_rc = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
pairs_rc, dedup_rc = int(sys.argv[7]), int(sys.argv[8])
def outputs(device):
    out = work / f"out-{device}" / "current"
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
rows = []
for device in ("cpu", "cuda"):
    rc = int((work / f"{device}.rc").read_text())
    wall = float((work / f"{device}.wall").read_text())
    manifest_path = work / f"out-{device}" / "current" / "manifest.json"
    m = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    measure = m.get("stage_seconds", {}).get("measure", float("nan"))
    rows.append((device, rc, m.get("run", {}).get("device", "-"), wall, measure,
                 m.get("counts", {}).get("kept", "-")))
print()
print(f"| run.device | exit | manifest device | wall s | measure s | images/s (measure) | kept |")
print(f"|---|---|---|---|---|---|---|")
for device, rc, used, wall, measure, kept in rows:
    rate = count / measure if measure == measure and measure > 0 else float("nan")
    print(f"| {device} | {rc} | {used} | {wall:.2f} | {measure:.2f} | {rate:.1f} | {kept} |")
same = outputs("cpu") == outputs("cuda") and all(r[1] == 0 for r in rows)
print(f"\nshards and ledger identical between cpu and cuda: {'yes' if same else 'NO'}")
print(f"parity tests: {'passed' if parity_rc == 0 else 'FAILED (exit %d)' % parity_rc}")
print(f"nvJPEG parity: {'passed' if nvjpeg_rc == 0 else 'FAILED (exit %d)' % nvjpeg_rc}")
def said(rc, ok):
    return "skipped" if rc == -1 else ok if rc == 0 else f"FAILED (exit {rc})"
print(f"CLIP on the GPU vs the CPU: {said(clip_rc, 'passed')}")
print(f"pair search parity on the GPU: {said(pairs_rc, 'passed')}")
print(f"dedup cpu vs cuda: {said(dedup_rc, 'identical files')}")
print(f"end-to-end benchmark: {said(bench_rc, 'every step ran')}")
sys.exit(0 if parity_rc == nvjpeg_rc == 0 and clip_rc in (0, -1) and bench_rc in (0, -1)
         and pairs_rc in (0, -1) and dedup_rc in (0, -1) and same else 1)
PY
