# Sourced by the scripts/gpu checks on the GPU machine: `cuda_libs BINARY...` puts on
# LD_LIBRARY_PATH the folder of every CUDA library the binaries link (their NEEDED entries, or
# $carry/mmcurate-cuda.needed without objdump) or load at run time (nvJPEG, NVRTC), wherever
# the loader does not find it itself: the CUDA toolkit, the Python wheels, conda. Wheel copies
# carried as $carry/lib/*.xz come first (see the end of scripts/gpu/build.sh). Fails with the
# missing names when a linked library is still not found.
cuda_libs() {
  local work_lib=${work:?}/lib lib found bin needed=""
  if compgen -G "${carry:?}/lib/*.xz" > /dev/null; then
    mkdir -p "$work_lib"
    for f in "$carry"/lib/*.xz; do xz -dc "$f" > "$work_lib/$(basename "${f%.xz}")"; done
    export LD_LIBRARY_PATH="$work_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  for bin in "$@"; do
    needed="$needed $(objdump -p "$bin" 2>/dev/null | awk '/NEEDED/ { print $2 }')"
  done
  [ -n "${needed// /}" ] || needed=$(cat "$carry/mmcurate-cuda.needed" 2>/dev/null || true)
  for lib in $needed libnvjpeg.so.13 libnvrtc.so.13; do
    case $lib in libc.so*|libm.so*|libgcc_s*|libstdc++*|ld-linux*|libdl*|libpthread*|librt*) continue ;; esac
    if ldconfig -p 2>/dev/null | grep -qE "^[[:space:]]*${lib//./\\.} "; then continue; fi
    found=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/lib/x86_64-linux-gnu \
      /usr/lib/python3*/ /usr/local/lib/python3*/ /opt/conda/lib/ /opt/*/.venv/lib/ \
      -name "$lib" 2>/dev/null | head -n 1 || true)
    if [ -n "$found" ]; then
      export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
  done
  for bin in "$@"; do
    if ldd "$bin" | grep -q 'not found'; then
      echo "$(basename "$bin"): libraries not found:" >&2
      ldd "$bin" | grep 'not found' >&2
      echo "carry the wheels' copies (see the end of scripts/gpu/build.sh)" >&2
      return 2
    fi
  done
}
