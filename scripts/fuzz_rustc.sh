#!/usr/bin/env bash
# RUSTC_WRAPPER for the fuzz build (scripts/fuzz.sh): adds libFuzzer's coverage instrumentation
# (SanitizerCoverage: inline 8-bit counters, the PC table, compare tracing, as cargo-fuzz sets
# it) and `--cfg fuzzing` to this crate and the fuzz targets only. The dependencies are compiled
# exactly as the test build compiles them, so the fuzz build reuses the test build's artifacts
# instead of compiling the whole dependency tree again with RUSTFLAGS (which cargo-fuzz does).
# Every flag here is stable rustc.
set -euo pipefail
rustc="$1"
shift
case " $* " in
  *" --crate-name mmcurate "* | *" --crate-name fuzz_"*)
    exec "$rustc" "$@" \
      -Cpasses=sancov-module \
      -Cllvm-args=-sanitizer-coverage-level=4 \
      -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
      -Cllvm-args=-sanitizer-coverage-pc-table \
      -Cllvm-args=-sanitizer-coverage-trace-compares \
      --cfg fuzzing
    ;;
esac
exec "$rustc" "$@"
