#!/usr/bin/env bash
# Makes the test suite's speech clip, OUT (a WAV file): espeak-ng (Debian's `espeak-ng`, which
# scripts/setup.sh installs) speaks the text below, with four 0.8 s pauses between sentences,
# and the ffmpeg CLI resamples it to 16 kHz mono 16-bit PCM and pads it with digital silence to
# exactly 470,960 samples (29.435 s), in a plain 44-byte-header WAV (bitexact: no LIST chunk).
# About 24 s of speech, then silence: the tests read its length, its pauses and its levels.
# Made at test time because no freely licensed speech recording ships with the repository.
# Usage: bash tests/media/make_speech.sh OUT.wav
set -euo pipefail
out=${1:?usage: make_speech.sh OUT.wav}
for tool in espeak-ng ffmpeg; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "make_speech.sh: $tool is missing (bash scripts/setup.sh installs it)" >&2
    exit 2
  }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/text.ssml" <<'SSML'
<speak>This is the speech clip of the mmcurate test suite. <break time="800ms"/> It is made when
the tests run, by the espeak N G speech synthesizer, so that no recording has to be shipped with
the code. <break time="800ms"/> The pipeline measures its loudness, its pauses and its signal to
noise ratio, and finds a copy of it that was encoded again at a lower bit rate.
<break time="800ms"/> A curated corpus keeps one of the two. <break time="800ms"/> Thank you for
listening.</speak>
SSML
espeak-ng -m -v en-us -w "$tmp/espeak.wav" -f "$tmp/text.ssml"
ffmpeg -v error -nostdin -y -i "$tmp/espeak.wav" \
  -af "aresample=16000,apad=whole_len=470960,atrim=end_sample=470960" -ac 1 -ar 16000 \
  -c:a pcm_s16le -fflags +bitexact -flags:a +bitexact -map_metadata -1 "$tmp/speech.wav"
mv "$tmp/speech.wav" "$out"
