#!/usr/bin/env bash
# Builds FFmpeg 5.1.9 (Debian's source, the version of the system's libavcodec-dev) here as
# STATIC, MINIMAL libraries into target/ffmpeg-static/prefix, for the `av-static` cargo feature:
# mmcurate's `av` lane linked into the binary, so the binaries carried to the GPU machine (which
# has no FFmpeg libraries) decode video and audio, NVDEC included, and need only glibc + CUDA.
#
#   bash scripts/gpu/build_ffmpeg.sh     # ≈ 2 min on 2 cores; then a no-op (stamp) until this
#                                        # script's configure line changes
#   FFMPEG_DIR=$(cd target/ffmpeg-static/prefix && pwd -P) \
#     cargo build --release --locked --no-default-features --features av-static
#
# What it contains (everything else is off: --disable-everything, --disable-autodetect):
#   demuxers  ISO media (mp4/mov/m4a), Matroska/WebM, AVI, WAV, AIFF, FLAC, Ogg, MP3, ADTS AAC,
#             FLV, MPEG-TS/PS (what decode::sniff_av recognises), raw MPEG video
#   video     h264, hevc, vp8, vp9, av1 (FFmpeg's native decoder: it decodes ONLY through a
#             hwaccel, so AV1 on the CPU fails here: no libdav1d), mpeg4 (+h263), mpeg1/2, mjpeg,
#             cinepak (the shared opencv_tree.avi), theora, rawvideo
#   audio     pcm_* (s8/u8, s16/s24/s32/f32/f64 le+be, alaw, mulaw), mp1/mp2/mp3, aac, flac,
#             vorbis, opus, alac
#   + their parsers, the bitstream filters those decoders select, the file protocol,
#   hwaccels  h264/hevc/vp8/vp9/av1_nvdec (+ mpeg1/2/4 and mjpeg, which mmcurate does not use),
#             from the ffnvcodec headers (11.1.5.2, the libffmpeg-nvenc-dev package): libcuda and
#             libnvcuvid are dlopen'ed at run time, nothing CUDA is linked,
#   pthreads (frame/slice threads), x86 asm (nasm), -fPIC, hypot bound to its pre-2.35 glibc
#   symbol version (the binary keeps needing glibc 2.34), no zlib/bzlib/lzma/iconv/network,
#   no encoders/muxers/filters/devices (libavfilter and libavdevice are still built, empty, as
#   when ffmpeg-sys-next linked all seven libraries; Cargo.toml's ffmpeg-next features now link
#   only avformat, avcodec, avutil, swscale and swresample).
# Out: ≈ 13 MB of .a files (no debug info) in target/ffmpeg-static/prefix/lib (prefix is a link
# to prefix-<hash of the configure line>: pass the resolved path, as build.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
version=5.1.9
base=$root/target/ffmpeg-static
tarball=$base/ffmpeg_$version.orig.tar.xz
src=$base/ffmpeg-$version
# The install goes to prefix-<hash of the configure line>, and prefix links to it: the scripts
# pass the resolved path as FFMPEG_DIR, so a rebuilt FFmpeg is a changed FFMPEG_DIR, which makes
# cargo rebuild ffmpeg-sys-next (it bundles the .a files into its rlib when it is compiled, and
# reruns its build script only when FFMPEG_DIR changes).
link=$base/prefix
url=http://deb.debian.org/debian/pool/main/f/ffmpeg/ffmpeg_$version.orig.tar.xz
jobs=${FFMPEG_JOBS:-$(nproc)}
# glibc 2.35 gave libm's hypot a new symbol version; FFmpeg's objects would bind to it and the
# binary would need glibc >= 2.35 where it otherwise needs 2.34: bind them to the old one.
compat=$base/glibc-compat.h
# (__GLIBC__ is not defined yet where -include puts this, before any header: test for Linux.)
compat_text='#if defined(__x86_64__) && defined(__linux__)
__asm__(".symver hypot,hypot@GLIBC_2.2.5");
#endif'

join() { local IFS=,; echo "$*"; }
decoders=(
  h264 hevc vp8 vp9 av1 mpeg4 h263 mpeg1video mpeg2video mjpeg cinepak theora rawvideo
  pcm_s8 pcm_u8 pcm_s16le pcm_s16be pcm_u16le pcm_u16be pcm_s24le pcm_s24be pcm_s32le pcm_s32be
  pcm_f32le pcm_f32be pcm_f64le pcm_f64be pcm_alaw pcm_mulaw
  mp1 mp1float mp2 mp2float mp3 mp3float aac aac_latm flac vorbis opus alac
)
demuxers=(mov matroska avi wav aiff flac ogg mp3 aac flv mpegts mpegps mpegvideo)
parsers=(h264 hevc vp8 vp9 av1 mpeg4video mpegvideo mjpeg mpegaudio aac aac_latm flac vorbis opus)
bsfs=(vp9_superframe_split av1_frame_split h264_mp4toannexb hevc_mp4toannexb extract_extradata)
# mmcurate sends only the bit-exact five to NVDEC (decode::av NVDEC_CODECS); the MPEG-1/2/4 and
# MJPEG ones are there as in Debian's build, which the unit tests' configuration check expects.
hwaccels=(h264_nvdec hevc_nvdec vp8_nvdec vp9_nvdec av1_nvdec mpeg1_nvdec mpeg2_nvdec mpeg4_nvdec mjpeg_nvdec)
configure=(
  --prefix=PREFIX
  --enable-static --disable-shared --enable-pic
  --disable-programs --disable-doc --disable-network --disable-debug
  --disable-autodetect --disable-everything
  --enable-pthreads --enable-ffnvcodec --enable-cuda --enable-nvdec
  --enable-decoder="$(join "${decoders[@]}")"
  --enable-demuxer="$(join "${demuxers[@]}")"
  --enable-parser="$(join "${parsers[@]}")"
  --enable-bsf="$(join "${bsfs[@]}")"
  --enable-hwaccel="$(join "${hwaccels[@]}")"
  --enable-protocol=file
  # Sections per function: the binary's --gc-sections keeps only what mmcurate reaches.
  --extra-cflags="-ffunction-sections -fdata-sections -include $compat"
)
stamp_text="ffmpeg $version: ${configure[*]} | $compat_text"
hash=$(printf '%s' "$stamp_text" | sha256sum | cut -c1-12)
prefix=$base/prefix-$hash
configure[0]=--prefix=$prefix
stamp=$prefix/.mmcurate-stamp

summary() {
  echo "== $prefix"
  du -b "$prefix"/lib/*.a | awk '{ printf "   %6.1f MB  %s\n", $1 / 1e6, $2; t += $1 } END { printf "   %6.1f MB  total\n", t / 1e6 }'
  if [ -f "$src/config_components.h" ]; then
    for kind in DECODER DEMUXER HWACCEL PARSER BSF; do
      echo "   ${kind,,}s: $(grep -E "^#define CONFIG_[A-Z0-9_]+_$kind 1" "$src/config_components.h" |
        sed -E "s/^#define CONFIG_([A-Z0-9_]+)_$kind 1/\1/" | tr 'A-Z' 'a-z' | tr '\n' ' ')"
    done
  fi
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ] &&
   [ -f "$prefix/lib/libavcodec.a" ] && [ -f "$prefix/lib/libavutil.a" ] &&
   [ -f "$prefix/lib/libavformat.a" ] && [ -f "$prefix/lib/libswscale.a" ] &&
   [ -f "$prefix/lib/libswresample.a" ] && [ -f "$prefix/lib/libavfilter.a" ] &&
   [ -f "$prefix/lib/libavdevice.a" ] && [ -f "$prefix/include/libavcodec/avcodec.h" ]; then
  [ "$(readlink "$link" 2>/dev/null)" = "prefix-$hash" ] || ln -sfn "prefix-$hash" "$link"
  echo "== static FFmpeg $version up to date (stamp $stamp)"
  summary
  exit 0
fi

mkdir -p "$base"
if [ ! -f "$tarball" ]; then
  echo "== downloading $url"
  if ! curl -fsSL --retry 2 -o "$tarball.part" "$url"; then
    rm -f "$tarball.part"
    echo "build_ffmpeg.sh: could not download $url (no network to deb.debian.org?)." >&2
    echo "  Put ffmpeg_$version.orig.tar.xz in $base by hand and run again." >&2
    exit 1
  fi
  mv "$tarball.part" "$tarball"
fi
pkg-config --exists ffnvcodec || {
  echo "build_ffmpeg.sh: no ffnvcodec headers (apt-get install libffmpeg-nvenc-dev): NVDEC needs them" >&2
  exit 1
}
command -v nasm >/dev/null || echo "build_ffmpeg.sh: no nasm: building without x86 assembly (slower decoding)" >&2
asm=()
command -v nasm >/dev/null || asm=(--disable-x86asm)

echo "== unpacking $tarball"
rm -rf "$src" "$base"/prefix-* "$link"
printf '%s\n' "$compat_text" > "$compat"
tar -xJf "$tarball" -C "$base"
[ -x "$src/configure" ] || { echo "build_ffmpeg.sh: no $src/configure after unpacking" >&2; exit 1; }

echo "== configure ($(date -u +%H:%M:%S) UTC)"
started=$(date +%s)
(cd "$src" && ./configure "${configure[@]}" "${asm[@]}" > "$base/configure.log" 2>&1) || {
  tail -n 30 "$src/ffbuild/config.log" >&2 || true
  echo "build_ffmpeg.sh: configure failed (log: $base/configure.log, $src/ffbuild/config.log)" >&2
  exit 1
}
# configure keeps going when a dependency is missing: make sure NVDEC really is in.
for want in CONFIG_NVDEC CONFIG_CUDA CONFIG_H264_NVDEC_HWACCEL CONFIG_HEVC_NVDEC_HWACCEL \
            CONFIG_VP9_NVDEC_HWACCEL CONFIG_AV1_NVDEC_HWACCEL HAVE_PTHREADS; do
  grep -qE "^#define $want 1" "$src/config.h" "$src/config_components.h" ||
    { echo "build_ffmpeg.sh: configure left $want off (see $base/configure.log)" >&2; exit 1; }
done

echo "== make -j$jobs ($(date -u +%H:%M:%S) UTC)"
(cd "$src" && make -j"$jobs" > "$base/make.log" 2>&1 && make install > "$base/install.log" 2>&1) || {
  tail -n 30 "$base/make.log" >&2
  echo "build_ffmpeg.sh: make failed (log: $base/make.log)" >&2
  exit 1
}
echo "$stamp_text" > "$stamp"
ln -sfn "prefix-$hash" "$link"
echo "   built in $(( $(date +%s) - started )) s"
summary
