#!/usr/bin/env bash
# Builds and packs here (a machine with Rust, no GPU needed) everything the GPU checks carry to
# the GPU machine, in target/gpu-carry, then checks it fits the 64 MiB a device call takes:
#   it.xz              the integration tests (tests/it/gpu.rs's parity tests among them, NVDEC's
#                      included, and tests/it/gpu_pairs.rs's for the pair search's cuBLAS
#                      products), built release with `--no-default-features --features
#                      cuda,av-static`, like the binary
#   mmcurate-cuda.xz   the `cuda,av-static` binary (scripts/gpu/build.sh; FFmpeg 5.1.9 linked in
#   mmcurate-cuda.needed  statically, from scripts/gpu/build_ffmpeg.sh: the GPU machine has no
#                      FFmpeg libraries); check.sh runs it with run.device cpu and cuda
#   lib.xz             the library's unit tests (same build), ONLY if it fits the budget below;
#                      run by hand there (`MMCURATE_MEDIA=$PWD/tests/media lib --exact
#                      decode::av::...`)
# The test media (tests/media: images, videos, audio) travel in the working tree; check.sh
# points the test binaries at them with MMCURATE_MEDIA.
# Then the one call on the GPU machine (device tool: carry ["target/gpu-carry"], timeout_s 590):
#   bash scripts/gpu/check.sh
# which runs the parity tests, cpu vs cuda, CLIP on the GPU vs the CPU, the pair search's parity
# and `mmcurate dedup --device cpu` vs `cuda` at 1M x 512, and the end-to-end benchmark
# (scripts/gpu/bench_e2e.sh), each with a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
carry=target/gpu-carry
mkdir -p "$carry"

bash scripts/gpu/build.sh
# The same environment as build.sh's (its CUDA 13.0 wheels), for the test binary.
gpu=$PWD/target/gpu-build
cuda=$gpu/cuda
export CUDA_HOME=$cuda CUDA_PATH=$cuda CUDA_ROOT=$cuda PATH=$cuda/bin:$PATH
export LIBRARY_PATH=$cuda/lib64:$cuda/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
export LD_LIBRARY_PATH=$cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000
FFMPEG_DIR=$(cd target/ffmpeg-static/prefix && pwd -P)   # built by build.sh (build_ffmpeg.sh)
export FFMPEG_DIR
features=cuda,av-static
echo "== the integration tests, release, --no-default-features --features $features"
it=$(cargo test --release --locked --no-default-features --features $features --target-dir "$gpu/target" \
  --no-run --test it 2>&1 | tee /dev/stderr | grep -oE 'target/release/deps/it-[0-9a-f]+' | head -n 1)
[ -n "$it" ] && [ -x "$gpu/$it" ] || { echo "prepare.sh: the test binary was not built" >&2; exit 1; }
strip -o "$carry/it" "$gpu/$it"
if objdump -p "$carry/it" | grep -qE 'NEEDED +lib(av|sw)'; then
  echo "prepare.sh: the test binary links FFmpeg shared libraries (av-static did not link statically)" >&2
  exit 1
fi
xz -T0 -6 -f "$carry/it"
rm -f "$carry/mmcurate.xz"   # the old non-cuda binary: check.sh uses mmcurate-cuda for both devices

# What travels is the working tree plus the carry, under 62 MiB (bench_e2e.sh prepare checks
# the same total; its images are counted here before it copies them).
budget=$(( 62 * 1048576 ))
travel_bytes() {
  local tree_b carry_b
  tree_b=$(git ls-files -z --cached --others --exclude-standard | du -c -b --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
  carry_b=$(du -s -b "$carry" | cut -f1)
  echo $(( tree_b + carry_b ))
}

# The media travel in the working tree now (tests/media); an older carry's copies go.
rm -rf "$carry/media"

# The library's unit tests, only if they fit; not even built when the room left is less than
# it.xz takes (the library's tests are no smaller).
rm -f "$carry/lib.xz"
room=$(( budget - $(travel_bytes) ))
if [ "$room" -lt "$(stat -c %s "$carry/it.xz")" ]; then
  echo "== the library's unit tests: NOT carried (only $(( room / 1048576 )) MiB left of the 62 MiB budget)"
else
  echo "== the library's unit tests, release, --no-default-features --features $features"
  lib=$(cargo test --release --locked --no-default-features --features $features --target-dir "$gpu/target" \
    --no-run --lib 2>&1 | tee /dev/stderr | grep -oE 'target/release/deps/mmcurate-[0-9a-f]+' | head -n 1)
  if [ -n "$lib" ] && [ -x "$gpu/$lib" ]; then
    strip -o "$gpu/lib-carry" "$gpu/$lib"
    xz -T0 -6 -f -c "$gpu/lib-carry" > "$gpu/lib-carry.xz"
    lib_b=$(stat -c %s "$gpu/lib-carry.xz")
    if [ "$lib_b" -lt "$room" ]; then
      mv "$gpu/lib-carry.xz" "$carry/lib.xz"
      echo "   lib.xz carried ($(( lib_b / 1048576 )) MiB)"
    else
      echo "   lib.xz NOT carried: $(( lib_b / 1048576 )) MiB, only $(( room / 1048576 )) MiB left of the 62 MiB budget"
    fi
  else
    echo "prepare.sh: warning: the library's test binary was not built; not carried" >&2
  fi
fi

bash scripts/gpu/bench_e2e.sh prepare
du -ah "$carry" | sort -h | tail -n 8
