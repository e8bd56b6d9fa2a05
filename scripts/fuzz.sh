#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/*.rs) for a bounded time (FUZZ_SECONDS each,
# default 60) and fails if any crashes, printing the input that crashed it
# (fuzz/artifacts/TARGET/) and the command that replays it. CI runs it after scripts/test.sh.
#
#   bash scripts/fuzz.sh                       # every target, 60 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh webdataset_tar image_probe
#
# Stable toolchain, and no second build of the dependencies: the targets are examples of this
# crate (`fuzz_TARGET`, feature `fuzz`, which links libFuzzer through libfuzzer-sys), built in
# target/ next to the test build with scripts/fuzz_rustc.sh as RUSTC_WRAPPER, which adds
# libFuzzer's coverage instrumentation (stable `-C passes=sancov-module` and LLVM options) to
# this crate and the targets only; every dependency is the test build's artifact, unchanged.
# (cargo-fuzz sets the instrumentation in RUSTFLAGS, which rebuilds all ~400 dependencies in a
# folder of its own.) No sanitizer: panics, aborts, time-outs and allocations past the RSS limit
# are the crashes the parsers are fuzzed for (they hold no unsafe code). For AddressSanitizer,
# `fuzz/` is also a cargo-fuzz crate: `cargo +nightly fuzz run TARGET` there.
#
# Each target starts from fuzz/seeds/TARGET (small real inputs, in git) and the corpus it grew
# before (fuzz/corpus/TARGET, ignored by git). A crash found becomes a regression test on its
# exact bytes (see docs/reliability.md), and the bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

seconds="${FUZZ_SECONDS:-60}"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for file in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$file" .rs)")
  done
fi

build=(cargo build --locked --features fuzz)
for target in "${targets[@]}"; do
  build+=(--example "fuzz_$target")
done
echo "building ${#targets[@]} fuzz target(s)" >&2
RUSTC_WRAPPER="$PWD/scripts/fuzz_rustc.sh" "${build[@]}"

failed=()
logs="$(mktemp -d)"
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  echo "fuzzing $target for ${seconds}s" >&2
  # -rss_limit_mb: a parser that allocates what a header claims is a crash, not a slow run.
  if ! "target/debug/examples/fuzz_$target" "fuzz/corpus/$target" "fuzz/seeds/$target" \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$target/" 2> >(tee "$logs/$target" >&2); then
    failed+=("$target")
    echo "CRASH in $target: the input is in fuzz/artifacts/$target/;" \
         "replay it with: target/debug/examples/fuzz_$target fuzz/artifacts/$target/<file>" >&2
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  # Last, so that a log that keeps only its end (CI's) still holds what crashed and the input
  # itself, to be saved with `base64 -d` and replayed.
  for target in "${failed[@]}"; do
    echo "== $target: what libFuzzer said" >&2
    grep -E "ERROR|panicked|SUMMARY|Test unit written|Base64|deadly signal|out-of-memory|timeout" \
      "$logs/$target" | head -n 20 >&2 || true
    for input in "fuzz/artifacts/$target"/*; do
      [ -f "$input" ] || continue
      echo "== $input ($(stat -c %s "$input") bytes), base64:" >&2
      head -c 16384 "$input" | base64 -w 0 >&2
      echo >&2
    done
  done
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: ${#targets[@]} target(s), ${seconds}s each, no crash" >&2
