#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (FUZZ_SECONDS each, default 60) and
# fails on the first crash, printing the input that crashed it (fuzz/artifacts/TARGET/) and the
# command that replays it. Installs cargo-fuzz from crates.io when missing.
#
#   bash scripts/fuzz.sh                       # every target, 60 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh webdataset_tar image_probe
#
# On the stable toolchain (CI has no nightly): cargo-fuzz's nightly-only flags are allowed by
# RUSTC_BOOTSTRAP=1, and no sanitizer is used (`-s none`; FUZZ_SANITIZER=address on a nightly
# toolchain adds AddressSanitizer): panics, aborts, time-outs and allocations past the RSS limit
# are still crashes, which is what the parsers are fuzzed for (they hold no unsafe code).
# Each target starts from fuzz/seeds/TARGET (small real inputs, in git) and the corpus it grew
# before (fuzz/corpus/TARGET, ignored by git). A crash found becomes a unit test on its exact
# bytes next to the code it crashed (see docs/reliability.md), and the bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

seconds="${FUZZ_SECONDS:-60}"
toolchain="${FUZZ_TOOLCHAIN:-stable}"
sanitizer="${FUZZ_SANITIZER:-none}"
export RUSTC_BOOTSTRAP=1

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
  if ! cargo +"$toolchain" fuzz run -s "$sanitizer" --fuzz-dir fuzz "$target" \
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
