#!/usr/bin/env bash
# CLIP on the GPU against the CPU (issue 5), on the GPU machine, from the carried `--features
# cuda` binary (scripts/gpu/build.sh makes target/gpu-carry/mmcurate-cuda.xz and .needed):
#   1. a random-weight ViT-B/32-sized CLIP (scripts/bench/make_clip_model.py; torch and
#      transformers are on the GPU machine) embeds the same corpus three times: CPU f32 (the
#      reference), GPU bf16 (dtype "auto") and GPU f32;
#   2. the cosine of each sample's image embedding GPU vs CPU (embeddings/*.parquet) must be
#      >= 0.995 in bf16 and >= 0.999 in f32;
#   3. the quickstart corpus (configs/quickstart.toml + the model) must get the same keep/drop
#      decisions (ledger status and reason) on the GPU in bf16 as on the CPU;
#   4. a table of the embed stage's images/s (manifest stage_seconds.embed) for each run.
# Run alone (carrying only target/gpu-carry/mmcurate-cuda.xz and .needed):
#   bash scripts/gpu/check_clip.sh
# or as the last step of scripts/gpu/check.sh. Exit 0 when every check passes.
#
# Environment: MMCURATE_GPU_CARRY (default target/gpu-carry), MMCURATE_MEDIA_IMAGES (default
# tests/media/images), MMCURATE_GPU_CLIP_COUNT (images, default 512),
# MMCURATE_GPU_CLIP_MODEL (a CLIP folder to use instead of making the random ViT-B/32).
set -euo pipefail
cd "$(dirname "$0")/../.."
carry=${MMCURATE_GPU_CARRY:-target/gpu-carry}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -f "$carry/mmcurate-cuda.xz" ]; then
  echo "check_clip.sh: $carry/mmcurate-cuda.xz is missing: run scripts/gpu/build.sh on a machine with Rust and carry target/gpu-carry" >&2
  exit 2
fi
xz -dc "$carry/mmcurate-cuda.xz" > "$work/mmcurate-cuda"
chmod +x "$work/mmcurate-cuda"

# The CUDA libraries the binary links (mmcurate-cuda.needed): put each one's folder on
# LD_LIBRARY_PATH where the loader does not find it itself. Wheel copies carried as
# $carry/lib/*.xz (see the end of scripts/gpu/build.sh) come first.
if compgen -G "$carry/lib/*.xz" > /dev/null; then
  mkdir -p "$work/lib"
  for f in "$carry"/lib/*.xz; do xz -dc "$f" > "$work/lib/$(basename "${f%.xz}")"; done
  export LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
needed=$(cat "$carry/mmcurate-cuda.needed" 2>/dev/null || echo "libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13")
for lib in $needed; do
  case $lib in libc.so*|libm.so*|libgcc_s*|libstdc++*|ld-linux*|libdl*|libpthread*|librt*) continue ;; esac
  if ldconfig -p 2>/dev/null | grep -qE "^[[:space:]]*${lib//./\\.} "; then continue; fi
  found=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/lib/x86_64-linux-gnu \
    /usr/lib/python3*/ /usr/local/lib/python3*/ /opt/conda/lib/ -name "$lib" 2>/dev/null | head -n 1 || true)
  if [ -n "$found" ]; then
    export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
done
if ldd "$work/mmcurate-cuda" | grep -q 'not found'; then
  echo "check_clip.sh: the cuda binary's libraries are not all found:" >&2
  ldd "$work/mmcurate-cuda" | grep 'not found' >&2
  echo "carry the wheels' copies (see the end of scripts/gpu/build.sh)" >&2
  exit 2
fi
export XDG_CACHE_HOME="$work/cache"

media=${MMCURATE_MEDIA_IMAGES:-}
for candidate in tests/media/images; do
  if [ -z "$media" ] && [ -d "$candidate" ]; then media=$(cd "$candidate" && pwd); fi
done
if [ -z "$media" ] || [ ! -d "$media" ]; then
  echo "check_clip.sh: no image folder; set MMCURATE_MEDIA_IMAGES" >&2
  exit 2
fi

echo "== CLIP: random-weight ViT-B/32 model"
model=${MMCURATE_GPU_CLIP_MODEL:-}   # an existing CLIP folder instead (e.g. for a dry run)
if [ -z "$model" ]; then
  model=$work/clip-b32
  python3 scripts/bench/make_clip_model.py "$model" --size b32 > "$work/model.log"
  head -n 1 "$work/model.log"
fi
count=${MMCURATE_GPU_CLIP_COUNT:-512}
python3 scripts/bench/make_corpus.py --count "$count" --out "$work/corpus" --media "$media" --procs 8 >/dev/null

# name device dtype config [--set ...]
run() {
  local name=$1 device=$2 dtype=$3 config=$4
  shift 4
  set +e
  "$work/mmcurate-cuda" --quiet run "$config" \
    --set "run.output=\"$work/out-$name\"" --set "run.device=\"$device\"" \
    --set "models.clip.path=\"$model\"" --set "models.clip.dtype=\"$dtype\"" "$@" \
    > "$work/$name.stdout" 2> "$work/$name.stderr"
  echo $? > "$work/$name.rc"
  set -e
  grep -iE 'warn|error' "$work/$name.stderr" | head -n 5 || true
}
cat > "$work/corpus.toml" <<TOML
[run]
name = "gpu-clip-check"
output = "unused"
[[inputs]]
uri = "$work/corpus"
TOML
run cpu-f32 cpu f32 "$work/corpus.toml"
run cuda-bf16 cuda auto "$work/corpus.toml"
run cuda-f32 cuda f32 "$work/corpus.toml"
run quickstart-cpu cpu auto configs/quickstart.toml
run quickstart-cuda cuda auto configs/quickstart.toml

python3 - "$work" <<'PY'
import json, pathlib, sys
import numpy as np
import pyarrow.parquet as pq

work = pathlib.Path(sys.argv[1])
failures = []

def manifest(name):
    path = work / f"out-{name}" / "current" / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}

def embeddings(name):
    files = sorted((work / f"out-{name}" / "current" / "embeddings").glob("*.parquet"))
    out = {}
    for f in files:
        t = pq.read_table(f, columns=["id", "clip_image_embedding"]).to_pydict()
        for i, e in zip(t["id"], t["clip_image_embedding"]):
            out[i] = np.asarray(e, dtype=np.float64)
    return out

def ledger(name):
    files = sorted((work / f"out-{name}" / "current" / "ledger").glob("*.parquet"))
    rows = {}
    for f in files:
        t = pq.read_table(f, columns=["id", "status", "drop_reason"]).to_pydict()
        rows.update({i: (s, r) for i, s, r in zip(t["id"], t["status"], t["drop_reason"])})
    return rows

print("\n| run | exit | CLIP device | CLIP dtype | embedded | embed s | images/s (embed) | kept |")
print("|---|---|---|---|---|---|---|---|")
for name in ("cpu-f32", "cuda-bf16", "cuda-f32", "quickstart-cpu", "quickstart-cuda"):
    rc = int((work / f"{name}.rc").read_text())
    m = manifest(name)
    clip = (m.get("models") or {}).get("clip") or {}
    rows = sum(f.get("rows", 0) for f in m.get("embeddings", []))
    embed = m.get("stage_seconds", {}).get("embed", float("nan"))
    rate = rows / embed if embed == embed and embed > 0 else float("nan")
    print(f"| {name} | {rc} | {clip.get('device', '-')} | {clip.get('dtype', '-')} | {rows} | "
          f"{embed:.2f} | {rate:.1f} | {m.get('counts', {}).get('kept', '-')} |")
    if rc != 0:
        failures.append(f"{name} exited {rc}: " + (work / f"{name}.stderr").read_text()[-400:])
    expected = ("cpu", "f32") if name.endswith("cpu") or name == "cpu-f32" else (
        "cuda:0", "f32" if name == "cuda-f32" else "bf16")
    if rc == 0 and (clip.get("device"), clip.get("dtype")) != expected:
        failures.append(f"{name}: manifest models.clip says {clip.get('device')}/{clip.get('dtype')}, expected {expected}")

reference = embeddings("cpu-f32")
print()
for name, floor in (("cuda-bf16", 0.995), ("cuda-f32", 0.999)):
    other = embeddings(name)
    common = sorted(set(reference) & set(other))
    if not common:
        failures.append(f"{name}: no embeddings in common with cpu-f32")
        continue
    cos = np.array([float(np.dot(reference[i], other[i]) /
                          (np.linalg.norm(reference[i]) * np.linalg.norm(other[i]))) for i in common])
    worst = common[int(cos.argmin())]
    ok = cos.min() >= floor
    print(f"image embedding cosine {name} vs cpu-f32 over {len(common)} samples "
          f"({len(reference)} / {len(other)} embedded): min {cos.min():.6f} ({worst}), "
          f"mean {cos.mean():.6f}, p1 {np.percentile(cos, 1):.6f}; floor {floor}: {'ok' if ok else 'FAILED'}")
    if not ok:
        failures.append(f"{name}: min cosine {cos.min():.6f} < {floor}")

a, b = ledger("quickstart-cpu"), ledger("quickstart-cuda")
differ = sorted(i for i in set(a) | set(b) if a.get(i) != b.get(i))
print(f"quickstart keep/drop decisions, cuda (bf16) vs cpu: {len(a)} samples, "
      f"{'identical' if not differ and a else 'DIFFER'}")
for i in differ[:10]:
    print(f"   {i}: cpu {a.get(i)} cuda {b.get(i)}")
if differ or not a:
    failures.append("quickstart decisions differ between cpu and cuda")

print("\nCLIP GPU check: " + ("passed" if not failures else "FAILED"))
for f in failures:
    print("   " + f)
sys.exit(0 if not failures else 1)
PY
