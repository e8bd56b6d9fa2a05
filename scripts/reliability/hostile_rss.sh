#!/usr/bin/env bash
# Peak RSS of a run over a hostile corpus (issue 13 item 1), with 2 worker threads:
#   bash scripts/reliability/hostile_rss.sh [BINARY] [WORKDIR]
# The corpus: two 10000 x 10000 16-bit PNGs (600 MB decoded each, 0.6 MB on disk), a
# 64-channel WAV (tests/python/make_hostile_media.py) and the quickstart images. The GIF whose
# frame declares 65535 x 65535 is left out here: a binary without decoder limits tries to
# allocate 17 GB for it, which is not something to do to a shared machine; the test suite
# covers it (hostile_inputs::media_over_the_limits_are_dropped_before_decoding).
# Prints `/usr/bin/time -v`'s maximum resident set size and the ledger's drop reasons.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
binary="${1:-$root/target/debug/mmcurate}"
work="${2:-$(mktemp -d)}"
python="${MMCURATE_TEST_PYTHON:-$root/.venv/bin/python}"
mkdir -p "$work/in"
"$python" "$root/tests/python/make_hostile_media.py" "$work/in" >/dev/null
rm -f "$work/in/gif_frame.gif"
cp "$work/in/png16.png" "$work/in/png16_b.png"
cp "$root"/examples/quickstart/images/*.jpg "$work/in/" 2>/dev/null || true
cat >"$work/job.toml" <<TOML
[run]
output = "$work/out"
threads = 2
[[inputs]]
uri = "$work/in"
format = "files"
TOML
rm -rf "$work/out"
/usr/bin/time -v "$binary" run "$work/job.toml" 2>"$work/time.txt" >/dev/null || {
    echo "run failed (exit $?)"; tail -n 30 "$work/time.txt"; }
grep -E "Maximum resident set size|Elapsed \(wall" "$work/time.txt"
"$python" - "$work/out" <<'PY'
import glob, sys, pyarrow.parquet as pq
rows = [r for f in sorted(glob.glob(sys.argv[1] + "/ledger/*.parquet")) for r in pq.read_table(f).to_pylist()]
for r in sorted(rows, key=lambda r: r["id"]):
    print(r["id"], r["status"], r["drop_reason"] or "", (r["drop_detail"] or "")[:90])
PY
