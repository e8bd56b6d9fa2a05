#!/usr/bin/env bash
# Builds and packs here (a machine with Rust, no GPU needed) everything the GPU checks carry to
# the GPU machine, in target/gpu-carry, then checks it fits the 64 MiB a device call takes:
#   it.xz              the integration tests (tests/it/gpu.rs's parity tests among them), built
#                      release with `--no-default-features --features cuda`, like the binary
#   mmcurate-cuda.xz   the `--features cuda` binary (scripts/gpu/build.sh; without FFmpeg, which
#   mmcurate-cuda.needed  the GPU machine lacks); check.sh runs it with run.device cpu and cuda
#   media/             the shared images (../shared does not travel), with their LICENSES.md
# Then the one call on the GPU machine (device tool: carry ["target/gpu-carry"], timeout_s 590):
#   bash scripts/gpu/check.sh
# which runs the parity tests, cpu vs cuda, CLIP on the GPU vs the CPU and the end-to-end
# benchmark (scripts/gpu/bench_e2e.sh), each with a table.
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
echo "== the integration tests, release, --no-default-features --features cuda"
it=$(cargo test --release --locked --no-default-features --features cuda --target-dir "$gpu/target" \
  --no-run --test it 2>&1 | tee /dev/stderr | grep -oE 'target/release/deps/it-[0-9a-f]+' | head -n 1)
[ -n "$it" ] && [ -x "$gpu/$it" ] || { echo "prepare.sh: the test binary was not built" >&2; exit 1; }
strip -o "$carry/it" "$gpu/$it"
xz -T0 -6 -f "$carry/it"
rm -f "$carry/mmcurate.xz"   # the old non-cuda binary: check.sh uses mmcurate-cuda for both devices

bash scripts/gpu/bench_e2e.sh prepare
du -ah "$carry" | sort -h | tail -n 8
