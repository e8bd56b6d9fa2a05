#!/usr/bin/env bash
# Builds the `--no-default-features --features cuda,av-static` release binary (CLIP on candle's
# CUDA backend; video and audio through a static, minimal FFmpeg 5.1.9 with NVDEC, see
# scripts/gpu/build_ffmpeg.sh) on a machine WITHOUT a GPU, for the GPU machine (Hopper, CUDA
# 13.0 driver and toolkit, no Rust, no network, no FFmpeg libraries), and packs it to carry:
# target/gpu-carry/mmcurate-cuda.xz plus target/gpu-carry/mmcurate-cuda.needed (the sonames it
# links: glibc's and CUDA's only, no libav*/libsw*). scripts/gpu/check.sh uses both.
#
# The CUDA 13.0 toolchain comes from PyPI's wheels, pinned to the 13.0 releases (what the
# GPU machine's driver 580 / toolkit 13.0 runs), in a venv under target/gpu-build/. The wheels
# have no libcuda.so (it is the driver's): a stub with the driver API's symbols is generated for
# the linker only, as the toolkit's lib64/stubs/libcuda.so is; the real one is loaded there.
# The default build is untouched: everything goes to target/gpu-build/ and target/gpu-carry/.
#
#   bash scripts/gpu/build.sh   # clean: ≈ 30 min on 2 cores (candle-kernels runs nvcc on its
#                               # .cu files; + ≈ 2 min for FFmpeg, once); after a change to
#                               # mmcurate only: ≈ 1.5 min. Out: ≈ 15 MB xz (82 MB stripped;
#                               # 13 MB / 79 MB without FFmpeg).
#
# Environment: CARGO_BUILD_JOBS, CUDAFORGE_THREADS (nvcc jobs) are honoured.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
gpu=$root/target/gpu-build
venv=$gpu/venv
cuda=$gpu/cuda
carry=$root/target/gpu-carry

# Every wheel pinned to its CUDA 13.0 release (`pip index versions nvidia-cuda-nvcc` etc. list
# them); nvidia-nvvm is pinned too, or nvcc 13.0 would pull the newest cicc.
wheels=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
)

echo "== CUDA 13.0 wheels into $venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "${wheels[@]}"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cu=$site/nvidia/cu13
[ -x "$cu/bin/nvcc" ] || { echo "build.sh: no nvcc at $cu/bin/nvcc" >&2; exit 1; }

echo "== CUDA_HOME at $cuda"
rm -rf "$cuda"
mkdir -p "$cuda/lib64/stubs"
ln -s "$cu/bin" "$cuda/bin"
ln -s "$cu/include" "$cuda/include"
ln -s "$cu/nvvm" "$cuda/nvvm"
for so in "$cu"/lib/*.so.*; do
  name=$(basename "$so")
  ln -s "$so" "$cuda/lib64/$name"
  # The linker wants the unversioned name (libcublas.so -> libcublas.so.13).
  base=${name%%.so.*}.so
  [ -e "$cuda/lib64/$base" ] || ln -s "$name" "$cuda/lib64/$base"
done
for a in "$cu"/lib/*.a; do ln -s "$a" "$cuda/lib64/$(basename "$a")"; done

# libcuda stub: every driver function cudarc binds (its generated sys module is the list of
# exported names, versioned suffixes included), each a dummy; soname libcuda.so.1 like the
# driver's, so the binary's NEEDED entry names the real library.
cudarc_sys=$(cargo metadata --locked --format-version 1 --features cuda 2>/dev/null |
  "$venv/bin/python" -c '
import json, pathlib, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "cudarc":
        print(pathlib.Path(p["manifest_path"]).parent / "src/driver/sys/mod.rs")
        break')
[ -f "$cudarc_sys" ] || { echo "build.sh: cudarc's driver bindings not found (cargo fetch first)" >&2; exit 1; }
grep -oE '^ +fn cu[A-Za-z0-9_]+\(' "$cudarc_sys" | sed -E 's/^ +fn (cu[A-Za-z0-9_]+)\(/\1/' |
  sort -u | awk '{ printf "int %s(void) { return 999; }\n", $1 }' > "$gpu/libcuda_stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib64/stubs/libcuda.so" "$gpu/libcuda_stub.c"
echo "   libcuda stub: $(wc -l < "$gpu/libcuda_stub.c") driver symbols"

# The static FFmpeg the `av-static` feature links (ffmpeg-sys-next reads FFMPEG_DIR: include/
# for its bindings, lib/*.a to link); only here and in prepare.sh, never in .cargo/config, so
# the default build stays on the system FFmpeg.
bash scripts/gpu/build_ffmpeg.sh
FFMPEG_DIR=$(cd "$root/target/ffmpeg-static/prefix" && pwd -P)   # prefix links to prefix-<hash>
export FFMPEG_DIR

export CUDA_HOME=$cuda CUDA_PATH=$cuda CUDA_ROOT=$cuda
export PATH=$cuda/bin:$PATH
export LIBRARY_PATH=$cuda/lib64:$cuda/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
export LD_LIBRARY_PATH=$cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}   # nvcc's own tools
export CUDA_COMPUTE_CAP=90          # Hopper (H100/H200): sm_90 PTX and code
export CUDARC_CUDA_VERSION=13000    # the GPU machine's CUDA, whatever `nvcc --version` says
nvcc --version | tail -n 2

echo "== cargo build --release --locked --no-default-features --features cuda,av-static ($(date -u +%H:%M:%S) UTC)"
started=$(date +%s)
# Not the default `av` feature (the system's FFmpeg shared libraries, which the GPU machine
# lacks) but `av-static`: the same lane with FFmpeg linked in.
cargo build --release --locked --no-default-features --features cuda,av-static --target-dir "$gpu/target" --bin mmcurate
echo "   built in $(( $(date +%s) - started )) s"

bin=$gpu/target/release/mmcurate
mkdir -p "$carry"
strip -o "$carry/mmcurate-cuda" "$bin"
objdump -p "$carry/mmcurate-cuda" | awk '/NEEDED/ { print $2 }' > "$carry/mmcurate-cuda.needed"
xz -T0 -6 -f "$carry/mmcurate-cuda"
echo "== $carry/mmcurate-cuda.xz: $(du -h "$carry/mmcurate-cuda.xz" | cut -f1) (unstripped $(du -h "$bin" | cut -f1)); links:"
sed 's/^/   /' "$carry/mmcurate-cuda.needed"
if grep -qE '^lib(av|sw)' "$carry/mmcurate-cuda.needed"; then
  echo "build.sh: the binary links FFmpeg shared libraries: the av-static build did not link statically" >&2
  exit 1
fi
# On the GPU machine the CUDA 13.0 toolkit provides libcudart.so.13, libcublas(Lt).so.13,
# libcurand.so.10 and libnvrtc.so.13 (check.sh finds them and puts them on LD_LIBRARY_PATH).
# Should one be missing there, carry the wheels' copies instead (≈ 700 MB unpacked: too big
# for one 64 MiB call, so xz them one per call, or take only the missing one), e.g.
#   mkdir -p target/gpu-carry/lib && cp -L "$cu"/lib/libcurand.so.10 target/gpu-carry/lib/
#   xz -T0 -9 target/gpu-carry/lib/*
# and check.sh unpacks target/gpu-carry/lib/*.xz onto LD_LIBRARY_PATH before the run.
