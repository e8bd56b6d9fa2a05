#!/usr/bin/env bash
# Peak RSS of a run over a hostile corpus (issue 13 item 1), with 2 worker threads:
#   bash scripts/reliability/hostile_rss.sh [BINARY] [WORKDIR] [--set KEY=VALUE …]
# (arguments after WORKDIR go to `mmcurate run`: `--set limits.max_part_bytes=1TiB` … measures
# the same binary with the limits at their largest, as a run without them.)
# The corpus, made here, small on disk:
#   files input:      two 10000 x 10000 16-bit PNGs (600 MB decoded each, 0.6 MB on disk) and a
#                     64-channel WAV (tests/python/make_hostile_media.py); a WAV whose header
#                     declares 74 hours over 1 s of data; an H.264 video of 8192 x 4608 frames
#                     (37.7 Mpixels, one frame, made with the ffmpeg CLI); a 1.5 GiB `.mp4` that
#                     is all hole (sparse: no disk, zeros when read); the quickstart images.
#   webdataset input: a shard with a member declaring 2^40 bytes over data cut short, and a
#                     shard whose middle member is 1.5 GiB (a hole) between two images.
# The GIF whose frame declares 65535 x 65535 is left out here: a binary without decoder limits
# tries to allocate 17 GB for it, which is not something to do to a shared machine; the test
# suite covers it (hostile_inputs::media_over_the_limits_are_dropped_before_decoding).
# Prints `/usr/bin/time -v`'s maximum resident set size and wall time, and each ledger row.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
binary="${1:-$root/target/debug/mmcurate}"
work="${2:-$(mktemp -d)}"
shift $(( $# < 2 ? $# : 2 ))
python="${MMCURATE_TEST_PYTHON:-$root/.venv/bin/python}"
rm -rf "$work/in" "$work/shards" "$work/out"
mkdir -p "$work/in" "$work/shards"
"$python" "$root/tests/python/make_hostile_media.py" "$work/in" >/dev/null
rm -f "$work/in/gif_frame.gif"
cp "$work/in/png16.png" "$work/in/png16_b.png"
cp "$root"/examples/quickstart/images/*.jpg "$work/in/" 2>/dev/null || true
truncate -s 1536M "$work/in/sparse.mp4"
ffmpeg -v error -f lavfi -i "color=c=gray:s=8192x4608:r=1" -frames:v 1 \
  -c:v libx264 -preset ultrafast -pix_fmt yuv420p "$work/in/video8k.mp4"
"$python" - "$work" <<'PY'
import io, struct, sys, tarfile
work = sys.argv[1]
# A WAV whose data chunk declares 0xFFFFFFF0 bytes (74.5 hours at 8 kHz mono 16-bit) over 1 s.
data = b"\0\0" * 8000
fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0xFFFFFFF0) + data
open(f"{work}/in/long.wav", "wb").write(b"RIFF" + struct.pack("<I", 0xFFFFFFF8) + body)

baboon = open(f"{work}/in/opencv_baboon.jpg", "rb").read()
def header(name, size):
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)
with open(f"{work}/shards/liar-000000.tar", "wb") as f:
    f.write(header("baboon.jpg", len(baboon)) + baboon + b"\0" * (-len(baboon) % 512))
    f.write(header("liar.jpg", 1 << 40) + baboon[:1000])
big = 1536 << 20
with open(f"{work}/shards/big-000000.tar", "wb") as f:
    f.write(header("a.jpg", len(baboon)) + baboon + b"\0" * (-len(baboon) % 512))
    f.write(header("big.jpg", big))
    f.seek(big, 1)  # a hole: the member's data reads as zeros
    f.write(header("c.jpg", len(baboon)) + baboon + b"\0" * (-len(baboon) % 512))
    f.write(b"\0" * 1024)
PY
cat >"$work/job.toml" <<TOML
[run]
output = "$work/out"
threads = 2
[[inputs]]
uri = "$work/in"
format = "files"
[[inputs]]
uri = "$work/shards"
format = "webdataset"
TOML
echo "corpus: $(du -sh --apparent-size "$work/in" "$work/shards" | awk '{print $1}' | paste -sd' ') apparent," \
     "$(du -sh "$work/in" "$work/shards" | awk '{print $1}' | paste -sd' ') on disk" >&2
/usr/bin/time -v "$binary" run "$work/job.toml" "$@" 2>"$work/time.txt" >/dev/null || {
    echo "run failed (exit $?)"; tail -n 30 "$work/time.txt"; }
grep -E "Maximum resident set size|Elapsed \(wall" "$work/time.txt"
"$python" "$root/tests/python/read_ledger.py" "$work/out" | "$python" -c '
import json, sys
for r in sorted(json.load(sys.stdin)["rows"], key=lambda r: r["id"]):
    print(r["id"], r["status"], r["drop_reason"] or "", (r["drop_detail"] or "")[:100])
'
