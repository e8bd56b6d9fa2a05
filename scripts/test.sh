#!/usr/bin/env bash
# Runs the whole test suite, installing what it needs if missing: the build toolchain
# (scripts/setup.sh) and a Python venv (.venv) with the independent readers and references the
# tests use: webdataset, pyarrow, imagehash + PIL, OpenCV, moto (a local S3 server) and NVRTC
# (the CUDA run-time compiler, so every kernel in kernels/ is compiled even without a GPU), and
# Debian's chromium for the report's browser test, and Slurm with munge for the job-array test.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# Headless Chromium opens the run report in tests/it/report.rs (tests/python/browser_check.py).
command -v chromium >/dev/null 2>&1 || apt_install chromium
# A one-node Slurm cluster on 127.0.0.1 runs the phases as job arrays in tests/it/slurm.rs.
for tool in slurmctld slurmd sbatch munged; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    apt_install slurmctld slurmd slurm-client munge
    break
  fi
done
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt_install python3-venv python3-pip
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "creating the Python test environment in .venv" >&2
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
  echo "$want" > "$stamp"
fi
export MMCURATE_TEST_PYTHON="$PWD/.venv/bin/python"
nvrtc_lib=$(ls -d "$PWD"/.venv/lib/python3*/site-packages/nvidia/cu13/lib | head -n 1)
export LD_LIBRARY_PATH="$nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

cargo test --locked "$@"
