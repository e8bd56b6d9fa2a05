#!/usr/bin/env bash
# Video and audio throughput on this machine, side by side in one run on the same files:
#   video: mmcurate's source → probe → sampled-frame decode → per-frame measure, against
#          `ffmpeg -i F -f null -` (decoding every frame and nothing else);
#   audio: mmcurate's decode → levels → fingerprint, against Chromaprint's `fpcalc`.
# Both sides use every core: mmcurate with one worker thread per core, the tools one process
# per core (xargs -P), single-threaded each. Makes the corpus from tests/media first (and the
# speech clip tests/media/make_speech.sh makes).
#
#   bash scripts/bench/av_compare.sh [VARIANTS]   (default 8 copies of each video and audio file)
set -euo pipefail
cd "$(dirname "$0")/../.."
variants=${1:-8}
corpus=target/bench/av-corpus-$variants
procs=$(nproc)
py=${MMCURATE_TEST_PYTHON:-.venv/bin/python}
media=tests/media
command -v fpcalc >/dev/null || { echo "installing fpcalc (libchromaprint-tools)" >&2;
  apt-get install -y -qq --no-install-recommends libchromaprint-tools >/dev/null; }

if [ ! -d "$corpus" ]; then
  mkdir -p "$corpus.tmp/video" "$corpus.tmp/audio"
  bash tests/media/make_speech.sh "$corpus.tmp/speech.wav"
  for v in $(seq 1 "$variants"); do
    crf=$((18 + v * 2)); width=$((320 + v * 40))
    for f in bikes.mp4 bigbuckbunny.mp4 carphone_pristine.mp4 opencv_tree.avi; do
      ffmpeg -v error -nostdin -y -i "$media/video/$f" -an -vf "scale=$width:-2" -c:v libx264 \
        -preset veryfast -crf "$crf" "$corpus.tmp/video/v${v}_${f%.*}.mp4"
    done
    ext=(mp3 flac ogg wav); e=${ext[$((v % 4))]}
    ffmpeg -v error -nostdin -y -i "$media/audio/Kevin_MacLeod_-_Vibe_Ace.ogg" -vn -ss "$v" \
      "$corpus.tmp/audio/v${v}_vibe.$e"
    ffmpeg -v error -nostdin -y -i "$corpus.tmp/speech.wav" \
      -af "volume=-${v}dB" "$corpus.tmp/audio/v${v}_speech.$e"
  done
  rm "$corpus.tmp/speech.wav"
  mv "$corpus.tmp" "$corpus"
fi
cargo build --release --locked --quiet
echo "machine: $procs cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "ffmpeg: $(ffmpeg -version | head -n 1); fpcalc: $(fpcalc -version)"
cat "$corpus"/*/* > /dev/null

frames=0
for f in "$corpus"/video/*; do
  n=$(ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$f")
  frames=$((frames + n))
done
seconds() { python3 -c 'import sys,time; print(time.time())'; }
videos=$(ls "$corpus/video" | wc -l); audios=$(ls "$corpus/audio" | wc -l)
audio_seconds=$(for f in "$corpus"/audio/*; do ffprobe -v error -show_entries format=duration -of csv=p=0 "$f"; done |
  python3 -c 'import sys; print(sum(float(x) for x in sys.stdin))')
echo "corpus: $videos videos ($frames frames), $audios audio files (${audio_seconds%.*} s)"

t0=$(seconds)
ls "$corpus"/video/* | xargs -P "$procs" -I{} ffmpeg -v error -nostdin -threads 1 -i {} -f null -
t1=$(seconds)
# fpcalc 1.5.1 on FFmpeg 5 reports the end of a file as a decoding error and exits 1 after
# printing the fingerprint: count a file as done when its fingerprint was printed.
ls "$corpus"/audio/* | xargs -P "$procs" -I{} sh -c \
  'fpcalc -length 600 "$1" 2>/dev/null | grep -q "^FINGERPRINT=" || echo "fpcalc failed: $1" >&2' _ {}
t2=$(seconds)

run() {
  rm -rf "target/bench/av-out-$1${2:-}"
  ./target/release/mmcurate run "configs/$1.toml" --quiet --set "inputs.0.uri=$corpus/$1" \
    --set "run.output=target/bench/av-out-$1${2:-}" --set "run.threads=$procs" ${3:-} \
    --set filters.caption.required=false --set filters.video.min_duration=0 \
    --set filters.video.min_sharpness=0 --set filters.video.min_motion=0 \
    --set filters.audio.min_snr_db=0 --set filters.audio.max_silence_fraction=1 \
    --set dedup.exact=false --set dedup.video_max_distance=0 \
    --set dedup.audio_max_bit_error_rate=0 > /dev/null
}
run video; run video -noscene "--set video.scene_threshold=0"; run audio

"$py" - "$frames" "$videos" "$audios" "$audio_seconds" "$t0" "$t1" "$t2" \
  target/bench/av-out-video target/bench/av-out-audio target/bench/av-out-video-noscene <<'PY'
import json, sys, glob
frames, videos, audios = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
audio_seconds = float(sys.argv[4])
t0, t1, t2 = map(float, sys.argv[5:8])
ffmpeg_s, fpcalc_s = t1 - t0, t2 - t1
def stage(out):
    return json.load(open(out + "/current/manifest.json"))["stage_seconds"]["measure"]
import pyarrow.parquet as pq
video_out, audio_out = sys.argv[8], sys.argv[9]
rows = pq.read_table(glob.glob(video_out + "/current/ledger/*.parquet")).to_pylist()
decoded = sum(r["frames_decoded"] or 0 for r in rows)
sampled = sum(len(r["frame_timestamps"] or []) for r in rows)
ours_v, ours_a = stage(video_out), stage(audio_out)
noscene_out = sys.argv[10]
rows_ns = pq.read_table(glob.glob(noscene_out + "/current/ledger/*.parquet")).to_pylist()
decoded_ns = sum(r["frames_decoded"] or 0 for r in rows_ns)
ours_ns = stage(noscene_out)
print(json.dumps({"tool": "ffmpeg -f null", "videos": videos, "frames": frames,
                  "seconds": round(ffmpeg_s, 3), "frames_per_sec": round(frames / ffmpeg_s, 1),
                  "videos_per_sec": round(videos / ffmpeg_s, 2)}))
print(json.dumps({"tool": "mmcurate video", "videos": len(rows), "frames_decoded": decoded,
                  "frames_sampled_and_measured": sampled, "seconds": round(ours_v, 3),
                  "frames_decoded_per_sec": round(decoded / ours_v, 1),
                  "videos_per_sec": round(len(rows) / ours_v, 2)}))
print(json.dumps({"tool": "mmcurate video, scene detection off", "videos": len(rows_ns),
                  "frames_decoded": decoded_ns, "seconds": round(ours_ns, 3),
                  "videos_per_sec": round(len(rows_ns) / ours_ns, 2)}))
print(json.dumps({"tool": "fpcalc", "files": audios, "audio_seconds": round(audio_seconds, 1),
                  "seconds": round(fpcalc_s, 3), "fingerprints_per_sec": round(audios / fpcalc_s, 2),
                  "audio_seconds_per_sec": round(audio_seconds / fpcalc_s, 1)}))
print(json.dumps({"tool": "mmcurate audio", "files": audios, "seconds": round(ours_a, 3),
                  "fingerprints_per_sec": round(audios / ours_a, 2),
                  "audio_seconds_per_sec": round(audio_seconds / ours_a, 1)}))
print(f"video: mmcurate {len(rows) / ours_v:.2f} videos/s measured vs ffmpeg {videos / ffmpeg_s:.2f} "
      f"videos/s decoded: {ffmpeg_s / ours_v:.2f}x; decoding {decoded / ours_v:.0f} vs {frames / ffmpeg_s:.0f} frames/s; "
      f"scene detection off: {len(rows_ns) / ours_ns:.2f} videos/s, {ffmpeg_s / ours_ns:.2f}x")
print(f"audio: mmcurate {audios / ours_a:.2f} files/s (levels + fingerprint) vs fpcalc "
      f"{audios / fpcalc_s:.2f} files/s: {fpcalc_s / ours_a:.2f}x")
PY
