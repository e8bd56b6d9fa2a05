#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (FUZZ_SECONDS each, default 60) and
# fails on the first crash, printing the input that crashed it (fuzz/artifacts/TARGET/) and the
# command that replays it. CI runs it from scripts/test.sh. Installs what it needs when missing:
# a nightly Rust toolchain (cargo-fuzz's sanitizer flags are nightly-only) and cargo-fuzz.
#
#   bash scripts/fuzz.sh                       # every target, 60 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh webdataset_tar image_probe
#
# Each target starts from fuzz/seeds/TARGET (small real inputs, in git) and the corpus it grew
# before (fuzz/corpus/TARGET, ignored by git). A crash found becomes a unit test on its exact
# bytes next to the code it crashed (see docs/reliability.md), and the bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

seconds="${FUZZ_SECONDS:-60}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  echo "installing the $toolchain Rust toolchain for cargo-fuzz" >&2
  rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +"$toolchain" fuzz list --fuzz-dir fuzz)
fi

failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  echo "fuzzing $target for ${seconds}s" >&2
  # -rss_limit_mb: a parser that allocates what a header claims is a crash, not a slow run.
  if ! cargo +"$toolchain" fuzz run --fuzz-dir fuzz "$target" \
      "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1; then
    failed+=("$target")
    echo "CRASH in $target: the input is in fuzz/artifacts/$target/;" \
         "replay it with: cargo +$toolchain fuzz run --fuzz-dir fuzz $target fuzz/artifacts/$target/<file>" >&2
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: ${#targets[@]} target(s), ${seconds}s each, no crash" >&2
