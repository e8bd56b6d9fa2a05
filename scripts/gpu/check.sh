#!/usr/bin/env bash
# GPU checks for issue 5, on a machine with a GPU and no Rust: the CUDA-vs-CPU parity tests from
# a prebuilt test binary, then `mmcurate run` timed with run.device = "cpu" and "cuda" on a corpus
# made from the shared images, with a summary table. Nothing is built or downloaded here.
#
# Prepare on a machine with Rust (the carried folder is under target/, which git ignores).
# Build without the default `av` feature: the GPU machine has no FFmpeg 5.1 libraries, and a
# binary linked to them would not start there (images and CLIP need none of them):
#   cargo build --release --locked --no-default-features
#   it=$(cargo test --release --locked --no-default-features --no-run --test it 2>&1 | grep -o 'target/release/deps/it-[0-9a-f]*' | head -n 1)
#   mkdir -p target/gpu-carry
#   strip -o target/gpu-carry/mmcurate target/release/mmcurate && strip -o target/gpu-carry/it "$it"
#   xz -T0 -6 -f target/gpu-carry/mmcurate target/gpu-carry/it     # both must fit 64 MiB in all
# Then run, carrying target/gpu-carry:  bash scripts/gpu/check.sh
#
# Environment: MMCURATE_GPU_CARRY (default target/gpu-carry), MMCURATE_MEDIA_IMAGES (default
# ../shared/media/images or shared/media/images), MMCURATE_GPU_CORPUS_COUNT (default 1000).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
carry=${MMCURATE_GPU_CARRY:-target/gpu-carry}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"

for name in mmcurate it; do
  if [ -f "$carry/$name.xz" ]; then
    xz -dc "$carry/$name.xz" > "$work/bin/$name"
  elif [ -f "$carry/$name" ]; then
    cp "$carry/$name" "$work/bin/$name"
  else
    echo "check.sh: $carry/$name(.xz) is missing; see the preparation steps at the top of $0" >&2
    exit 2
  fi
  chmod +x "$work/bin/$name"
done

media=${MMCURATE_MEDIA_IMAGES:-}
for candidate in ../shared/media/images shared/media/images; do
  if [ -z "$media" ] && [ -d "$candidate" ]; then media=$(cd "$candidate" && pwd); fi
done
if [ -z "$media" ] || [ ! -d "$media" ]; then
  echo "check.sh: no image folder; set MMCURATE_MEDIA_IMAGES" >&2
  exit 2
fi
export MMCURATE_MEDIA_IMAGES=$media

# The kernels are compiled at run time with NVRTC: find it if the loader does not.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  nvrtc=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/lib/python3*/ \
    /usr/local/lib/python3*/ /opt/conda/lib/ -name 'libnvrtc.so*' 2>/dev/null | head -n 1 || true)
  if [ -n "$nvrtc" ]; then export LD_LIBRARY_PATH="$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
fi
# nvJPEG (JPEG decoding on the GPU) is loaded at run time too; without it JPEGs decode on the CPU.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvjpeg\.so'; then
  nvjpeg=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/lib/python3*/ \
    /usr/local/lib/python3*/ /opt/conda/lib/ -name 'libnvjpeg.so*' 2>/dev/null | head -n 1 || true)
  if [ -n "$nvjpeg" ]; then export LD_LIBRARY_PATH="$(dirname "$nvjpeg")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
fi
export XDG_CACHE_HOME="$work/cache"   # a cold PTX cache: the first CUDA use compiles
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"

echo "== parity (tests/it/gpu.rs) =="
parity_log="$work/parity.log"
set +e
"$work/bin/it" --exact --nocapture --test-threads 1 \
  gpu::gpu_parity_on_the_shared_images \
  gpu::the_gpu_plan_emulated_on_the_host_measures_the_shared_images_as_the_cpu \
  > "$parity_log" 2>&1
parity_rc=$?
set -e
grep -E '^gpu parity|^test |test result|panicked' "$parity_log" || tail -n 30 "$parity_log"

echo "== nvJPEG decode parity (tests/it/gpu.rs) =="
set +e
"$work/bin/it" --exact --nocapture --test-threads 1 \
  gpu::nvjpeg_parity_on_the_shared_images gpu::shared_jpegs_are_routed_by_their_headers \
  > "$work/nvjpeg.log" 2>&1
nvjpeg_rc=$?
set -e
grep -E '^nvjpeg (parity|routes)|^test |test result|panicked' "$work/nvjpeg.log" || tail -n 30 "$work/nvjpeg.log"

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
clip_rc=0
if [ -f "$carry/mmcurate-cuda.xz" ]; then
  echo "== CLIP on the GPU vs the CPU (scripts/gpu/check_clip.sh) =="
  set +e
  MMCURATE_GPU_CARRY=$carry bash scripts/gpu/check_clip.sh
  clip_rc=$?
  set -e
fi
trap 'rc=$?; rm -rf "$work"; if [ "$rc" = 0 ] && [ "$clip_rc" != 0 ]; then exit "$clip_rc"; fi' EXIT

python3 - "$work" "$count" "$parity_rc" "$nvjpeg_rc" <<'PY'
import hashlib, json, pathlib, sys
work, count, parity_rc = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
nvjpeg_rc = int(sys.argv[4])
def outputs(device):
    out = work / f"out-{device}"
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
rows = []
for device in ("cpu", "cuda"):
    rc = int((work / f"{device}.rc").read_text())
    wall = float((work / f"{device}.wall").read_text())
    manifest_path = work / f"out-{device}" / "manifest.json"
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
sys.exit(0 if parity_rc == 0 and nvjpeg_rc == 0 and same else 1)
PY
