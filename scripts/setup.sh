#!/usr/bin/env bash
# Installs what building mmcurate needs on a fresh Debian or Ubuntu machine, when it is missing:
# a C toolchain, cmake and nasm (libjpeg-turbo is built from source with its SIMD code), GNU
# tar, FFmpeg's development packages, clang, the ffmpeg CLI and espeak-ng (the tests make their
# test media variants and speech clip with them: tests/media/make_speech.sh), and the Rust
# toolchain.
# Sourced by scripts/quickstart.sh and scripts/test.sh; safe to run again.
set -euo pipefail

apt_install() {
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: $*" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v nasm >/dev/null 2>&1 || missing+=(nasm)
command -v tar >/dev/null 2>&1 || missing+=(tar)
command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
# FFmpeg's libraries and headers for decode::av (ffmpeg-sys-next runs pkg-config and bindgen,
# which needs libclang); the ffmpeg CLI makes the test media variants.
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# Only the libraries decode::av links (Cargo.toml: ffmpeg-next without libavfilter/libavdevice).
pkg-config --exists libavformat libavcodec libavutil libswscale libswresample 2>/dev/null \
  || missing+=(libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev)
{ command -v clang && compgen -G '/usr/lib/llvm-*/lib/libclang*.so*'; } >/dev/null 2>&1 || missing+=(clang libclang-dev)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "Rust is not installed: installing it with rustup (https://rustup.rs)" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
