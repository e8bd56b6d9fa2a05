#!/usr/bin/env bash
# A developer tool, not a test: runs the debug binary on the quickstart corpus and on the
# image, video/audio, keyframe and CLIP runs the test suite does (tests/it/quickstart.rs,
# av_run.rs, clip_run.rs), and prints the sha256 of every input, every shard member and every
# ledger file (not the manifest: it holds timestamps). Run it before and after a refactor and
# diff the two outputs: same code behaviour gives the same lines.
#
# Inputs are made once under a fixed folder ($MMCURATE_DIGESTS, default /tmp/mmcurate-digests)
# so that the paths the ledger records are the same from run to run and from worktree to
# worktree; delete the folder to make them again. Video and audio come from tests/media
# ($MMCURATE_MEDIA overrides it), the speech clip from tests/media/make_speech.sh, or are
# generated with ffmpeg, as av_run.rs does. (docs/dev/behaviour-digests.txt was taken with the
# earlier speech WAV, so its speech lines differ from inputs made anew; the rest compare.)
#
# Usage: bash scripts/dev/behaviour_digests.sh > digests.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
base=${MMCURATE_DIGESTS:-/tmp/mmcurate-digests}
media=${MMCURATE_MEDIA:-$repo/tests/media}
inputs=$base/inputs

cargo build --quiet --locked --bin mmcurate >&2
bin=$repo/target/debug/mmcurate

ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }

make_inputs() {
  rm -rf "$inputs.partial"
  mkdir -p "$inputs.partial"
  local d=$inputs.partial

  # The quickstart corpus as shipped.
  cp -r examples/quickstart/images "$d/quickstart"

  # av_run.rs's corpus (make_corpus), made the same way.
  local av=$d/av bikes=$media/video/bikes.mp4 vibe=$media/audio/Kevin_MacLeod_-_Vibe_Ace.ogg
  local speech=$base/speech-source.wav
  bash "$repo/tests/media/make_speech.sh" "$speech"
  mkdir -p "$av"
  cp "$bikes" "$av/bikes.mp4"
  printf 'cyclists riding along a road' > "$av/bikes.txt"
  ff -i "$bikes" -vf scale=320:-2 -c:v libx264 -crf 32 -preset veryfast -threads 1 "$av/bikes_small.mp4"
  ff -i "$bikes" -c copy "$av/bikes_remuxed.mkv"
  cp "$media/video/bigbuckbunny.mp4" "$av/bigbuckbunny.mp4"
  printf 'a cartoon rabbit in a meadow' > "$av/bigbuckbunny.txt"
  cp "$media/video/opencv_tree.avi" "$av/opencv_tree.avi"
  ff -loop 1 -i examples/quickstart/images/opencv_baboon.jpg -t 3 -r 25 -c:v libx264 \
    -pix_fmt yuv420p -threads 1 "$av/still.mp4"
  ff -i "$bikes" -t 1 -c:v libx264 -preset veryfast -threads 1 "$av/bikes_1s.mp4"
  head -c $(( $(stat -c %s "$bikes") / 2 )) "$bikes" > "$av/bikes_truncated.mp4"
  : > "$av/empty.mp4"
  printf 'this is a text file with a video name\n' > "$av/notes.mp4"
  cp "$media/video/carphone_pristine.mp4" "$av/carphone.wav"
  cp "$vibe" "$av/vibe.ogg"
  printf 'an upbeat instrumental track' > "$av/vibe.txt"
  ff -i "$vibe" -vn -c:a libmp3lame -b:a 128k "$av/vibe.mp3"
  ff -i "$vibe" -vn -af volume=-10dB -ar 22050 "$av/vibe_quiet.flac"
  cp "$speech" "$av/speech.wav"
  ff -f lavfi -i sine=frequency=440:duration=3 -af volume=24dB -c:a pcm_s16le "$av/clipped.wav"
  ff -f lavfi -i anullsrc=r=16000:cl=mono -t 3 -c:a pcm_s16le "$av/silence.wav"
  : > "$av/empty.wav"
  ff -f lavfi -i sine=frequency=880:duration=3 -c:a pcm_s16le -f wav "$av/tone.mp4"
  head -c $(( $(stat -c %s "$speech") / 10 )) "$speech" > "$av/speech_truncated.wav"

  # The keyframes run (keyframes_are_written_as_jpeg_parts_of_the_sample).
  mkdir -p "$d/keyframes"
  cp "$media/video/carphone_pristine.mp4" "$d/keyframes/carphone.mp4"

  # clip_run.rs's caption corpus (corpus()).
  local q=examples/quickstart/images c=$d/clip
  mkdir -p "$c"
  local long
  long=$(for _ in $(seq 12); do printf 'a very long caption that goes on and on about the picture '; done)
  cp $q/opencv_baboon.jpg "$c/baboon.jpg"; printf 'a baboon with a colourful face' > "$c/baboon.txt"
  cp $q/resized_opencv_baboon.jpg "$c/baboon_small.jpg"; printf 'a mandrill, smaller' > "$c/baboon_small.txt"
  cp $q/opencv_butterfly.jpg "$c/butterfly.jpg"; printf '%s' "$long" > "$c/butterfly.txt"
  cp $q/opencv_building.jpg "$c/building.jpg"
  cp $q/skimage_rocket.jpg "$c/rocket.jpg"; printf 'caf\xe9 au lait' > "$c/rocket.txt"
  cp $q/opencv_aero1.jpg "$c/aero.jpg"; printf 'aeroplane' > "$c/aero.txt"
  cp $q/matplotlib_grace_hopper.jpg "$c/hopper.jpg"; printf 'a woman in uniform' > "$c/hopper.txt"
  cp $q/skimage_camera.png "$c/camera.png"; printf 'a man with a camera on a tripod' > "$c/camera.txt"
  cp $q/opencv_rubberwhale2.png "$c/whale.png"; printf 'toys on a table' > "$c/whale.txt"

  # clip_embeds_videos_through_their_frames_and_skips_audio's corpus.
  local cv=$d/clipvideo
  mkdir -p "$cv"
  cp "$bikes" "$cv/bikes.mp4"; printf 'cyclists riding along a road' > "$cv/bikes.txt"
  cp "$media/video/carphone_pristine.mp4" "$cv/carphone.mp4"
  cp "$vibe" "$cv/vibe.ogg"; printf 'an upbeat instrumental track' > "$cv/vibe.txt"

  cp -r tests/fixtures/clip-tiny "$d/clip-tiny"
  mv "$d" "$inputs"
}

[ -d "$inputs" ] || make_inputs

configs=$base/configs
mkdir -p "$configs"
model="[models.clip]
path = \"$inputs/clip-tiny\"
batch_size = 3"
av_filters='[filters.video]
min_duration = 2.0
min_motion = 0.5
[filters.audio]
max_clipped_fraction = 0.01
max_silence_fraction = 0.9'

sed -e "s|^output = .*|output = \"$base/out/quickstart\"|" \
    -e "s|^uri = .*|uri = \"$inputs/quickstart\"|" \
    -e "s|^threads = .*|threads = 2|" configs/quickstart.toml > "$configs/quickstart.toml"
job() { # name, input folder, extra TOML
  printf '[run]\noutput = "%s"\nthreads = 2\n[[inputs]]\nuri = "%s"\n%s\n' \
    "$base/out/$1" "$inputs/$2" "$3" > "$configs/$1.toml"
}
job av av "$av_filters"
job keyframes keyframes "$av_filters
[video]
write_keyframes = true
sample_fps = 2.0
scene_threshold = 0.0"
job clip clip "[filters.caption]
min_words = 2
[filters.alignment]
keep_top_fraction = 0.5
[dedup]
phash_max_distance = 0
embedding_min_cosine = 0.998
$model"
job clipvideo clipvideo "$av_filters
$model
[video]
clip_score = \"mean\""

echo "# inputs"
(cd "$inputs" && find . -type f | LC_ALL=C sort | xargs sha256sum)
for name in quickstart av keyframes clip clipvideo; do
  out=$base/out/$name
  rm -rf "$out"
  "$bin" run "$configs/$name.toml" > /dev/null 2> "$base/$name.log" || {
    echo "run $name failed: see $base/$name.log" >&2
    exit 1
  }
  ver="$out/current"   # the version the run committed (current.json names it)
  echo "# $name: ledger"
  (cd "$ver" && find ledger -type f | LC_ALL=C sort | xargs sha256sum)
  if [ -d "$ver/embeddings" ]; then
    echo "# $name: embeddings"
    (cd "$ver" && find embeddings -type f | LC_ALL=C sort | xargs sha256sum)
  fi
  echo "# $name: shard members"
  for shard in $(cd "$ver" && find shards -name '*.tar' | LC_ALL=C sort); do
    echo "$(tar -tf "$ver/$shard" | sha256sum | cut -d' ' -f1)  $shard:(member names in order)"
    tmp=$(mktemp -d)
    tar -xf "$ver/$shard" -C "$tmp"
    (cd "$tmp" && find . -type f | LC_ALL=C sort | xargs -r sha256sum) | sed "s|  \./|  $shard:|"
    rm -rf "$tmp"
  done
done
