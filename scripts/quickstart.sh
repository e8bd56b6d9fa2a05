#!/usr/bin/env bash
# Builds mmcurate (installing what the build needs if missing) and curates the bundled example
# corpus, examples/quickstart/images, into ./out/quickstart, then summarises the output.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked
./target/release/mmcurate run configs/quickstart.toml "$@"
./target/release/mmcurate inspect out/quickstart
