//! The FFmpeg implementation of the `decode::av` functions (the `av` cargo feature, on by
//! default).

use std::sync::OnceLock;

use ffmpeg::codec;
use ffmpeg::format::stream::Disposition;
use ffmpeg::format::{Pixel, Sample};
use ffmpeg::media::Type as MediaType;
use ffmpeg::software::{resampling, scaling};
use ffmpeg::util::frame;
use ffmpeg::{ChannelLayout, Discard, Rational};
use ffmpeg_next as ffmpeg;

use super::{
    count_video_decoded, AudioStreamInfo, DecodedAudio, FrameSampling, MediaInfo, NvdecDeviceState,
    RgbFrame, SampledFrame, VideoFrames, VideoStreamInfo, CPU, NVDEC,
};
use crate::decode::{DecodeError, LumaImage};
use crate::measure::audio::LevelMeter;

use memory_io::{codec_parameters, MemoryInput};

/// The side of the square luma thumbnails compared for scene cuts and the motion score.
const THUMBNAIL_SIDE: u32 = 64;

/// A stream that ends before this share of its declared duration (less a little slack for
/// the last frames' own duration) was cut short: the file is truncated.
const MIN_DECODED_SHARE: f64 = 0.9;

/// The most native-rate frames `decode_audio` reserves for up front (an hour at 48 kHz): a
/// header that declares more grows the buffer as the samples come instead.
const MAX_RESERVED_FRAMES: usize = 48_000 * 3600;

/// FFmpeg's global state, set up once. Its log goes quiet: errors reach the caller as values
/// with FFmpeg's message, and library code never prints.
fn init_ffmpeg() -> Result<(), DecodeError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Quiet);
        ffmpeg::init().map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|message| ffmpeg_error("ffmpeg", message))
}

fn ffmpeg_error(format: &str, message: impl ToString) -> DecodeError {
    DecodeError::Corrupt {
        format: format.to_string(),
        message: message.to_string(),
    }
}

/// Opens the bytes as a container; the error names the demuxer when there is one.
fn open_media(bytes: &[u8]) -> Result<MemoryInput<'_>, DecodeError> {
    init_ffmpeg()?;
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    MemoryInput::open(bytes).map_err(|e| ffmpeg_error("ffmpeg demuxer", e))
}

/// The next packet of stream `index`, or `None` at the end of the file. A fresh packet each
/// time: av_read_frame overwrites without unreferencing, so reusing one would leak every
/// packet's buffer (the Drop unrefs it).
fn next_packet(
    media: &mut MemoryInput<'_>,
    index: usize,
    container: &str,
) -> Result<Option<ffmpeg::Packet>, DecodeError> {
    loop {
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(media.input_mut()) {
            Ok(()) if packet.stream() == index => return Ok(Some(packet)),
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => return Ok(None),
            Err(e) => return Err(ffmpeg_error(container, e)),
        }
    }
}

fn container_name(input: &ffmpeg::format::context::Input) -> String {
    input.format().name().to_string()
}

/// Seconds of a timestamp in `time_base`; `None` for FFmpeg's "no value" and non-positive
/// durations.
fn positive_seconds(value: i64, time_base: Rational) -> Option<f64> {
    if value <= 0 || value == ffmpeg::ffi::AV_NOPTS_VALUE || time_base.denominator() == 0 {
        return None;
    }
    Some(value as f64 * f64::from(time_base))
}

fn rational_value(r: Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r))
}

/// The best video stream that is not cover art. `av_find_best_stream` can pick an attached
/// picture when it is the only video stream, so one is replaced by the first real video stream.
fn video_stream_index(input: &ffmpeg::format::context::Input) -> Option<usize> {
    let is_picture = |s: &ffmpeg::Stream| s.disposition().contains(Disposition::ATTACHED_PIC);
    if let Some(best) = input.streams().best(MediaType::Video) {
        if !is_picture(&best) {
            return Some(best.index());
        }
    }
    input
        .streams()
        .find(|s| s.parameters().medium() == MediaType::Video && !is_picture(s))
        .map(|s| s.index())
}

fn audio_stream_index(input: &ffmpeg::format::context::Input) -> Option<usize> {
    input.streams().best(MediaType::Audio).map(|s| s.index())
}

/// Reads the container header (and FFmpeg's short stream probe) without decoding.
pub fn probe_media(bytes: &[u8]) -> Result<MediaInfo, DecodeError> {
    let media = open_media(bytes)?;
    let input = media.input();
    let video = video_stream_index(input)
        .and_then(|i| input.stream(i))
        .map(|s| {
            let p = codec_parameters(&s);
            VideoStreamInfo {
                codec: p.codec_id.name().to_string(),
                width: p.width,
                height: p.height,
                fps: rational_value(s.avg_frame_rate()).or_else(|| rational_value(s.rate())),
                frame_count: u64::try_from(s.frames()).ok().filter(|&n| n > 0),
                duration_seconds: positive_seconds(s.duration(), s.time_base()),
            }
        });
    let audio = audio_stream_index(input)
        .and_then(|i| input.stream(i))
        .map(|s| {
            let p = codec_parameters(&s);
            AudioStreamInfo {
                codec: p.codec_id.name().to_string(),
                sample_rate: p.sample_rate,
                channels: p.channels,
                duration_seconds: positive_seconds(s.duration(), s.time_base()),
            }
        });
    Ok(MediaInfo {
        container: container_name(input),
        duration_seconds: positive_seconds(
            input.duration(),
            Rational::new(1, ffmpeg::ffi::AV_TIME_BASE),
        ),
        bit_rate: u64::try_from(input.bit_rate()).ok().filter(|&b| b > 0),
        video,
        audio,
    })
}

/// The regular sample times `k * interval`, `k < count` (computed from `k`, not accumulated,
/// so the times do not drift).
struct RegularTargets {
    interval: f64,
    /// How many targets there are; `None` when the duration is unknown (then `max_frames`
    /// bounds the samples).
    count: Option<usize>,
    next: usize,
}

impl RegularTargets {
    fn new(sampling: &FrameSampling, duration: Option<f64>) -> Self {
        if !(sampling.sample_fps.is_finite() && sampling.sample_fps > 0.0)
            || sampling.max_frames == 0
        {
            return RegularTargets {
                interval: 0.0,
                count: Some(0),
                next: 0,
            };
        }
        let max = sampling.max_frames;
        let mut interval = 1.0 / sampling.sample_fps;
        let count = duration.map(|d| {
            if d * sampling.sample_fps > max as f64 {
                // Longer than max_frames / sample_fps: spread the samples over the whole
                // video rather than stopping early and ignoring its end.
                interval = d / max as f64;
                max
            } else {
                // Targets strictly before the end; at least the first frame.
                ((d / interval).ceil() as usize).clamp(1, max)
            }
        });
        RegularTargets {
            interval,
            count,
            next: 0,
        }
    }

    fn current(&self) -> Option<f64> {
        match self.count {
            Some(n) if self.next >= n => None,
            _ => Some(self.next as f64 * self.interval),
        }
    }

    /// Consumes every target at or before `t`; true when there was one (the frame at `t` is
    /// the first whose time reaches them).
    fn take_reached(&mut self, t: f64) -> bool {
        let mut reached = false;
        // A tolerance far below any frame interval absorbs rounding in `pts * time_base`.
        while self.current().is_some_and(|target| t >= target - 1e-9) {
            self.next += 1;
            reached = true;
        }
        reached
    }

    /// Targets not yet reached, when known.
    fn remaining(&self) -> Option<usize> {
        self.count.map(|n| n.saturating_sub(self.next))
    }

    fn exhausted(&self) -> bool {
        self.current().is_none()
    }
}

/// A swscale context for one conversion, rebuilt when the input frames change size or format.
struct Converter {
    context: Option<scaling::Context>,
    output: (Pixel, u32, u32),
    flags: scaling::Flags,
}

impl Converter {
    fn new(flags: scaling::Flags) -> Self {
        Converter {
            context: None,
            output: (Pixel::None, 0, 0),
            flags,
        }
    }

    /// Converts `input` to `format` at `width` x `height` and returns the rows without
    /// padding (`bytes_per_pixel` bytes per pixel).
    fn convert(
        &mut self,
        input: &frame::Video,
        format: Pixel,
        width: u32,
        height: u32,
        bytes_per_pixel: usize,
    ) -> Result<Vec<u8>, DecodeError> {
        let matches = |c: &scaling::Context| {
            let i = c.input();
            i.format == input.format()
                && i.width == input.width()
                && i.height == input.height()
                && self.output == (format, width, height)
        };
        if !self.context.as_ref().is_some_and(matches) {
            let context = scaling::Context::get(
                input.format(),
                input.width(),
                input.height(),
                format,
                width,
                height,
                self.flags,
            )
            .map_err(|e| {
                ffmpeg_error(
                    "swscale",
                    format!(
                        "{e} ({:?} {}x{})",
                        input.format(),
                        input.width(),
                        input.height()
                    ),
                )
            })?;
            self.context = Some(context);
            self.output = (format, width, height);
        }
        let Some(context) = self.context.as_mut() else {
            return Err(ffmpeg_error("swscale", "no scaler"));
        };
        let mut output = frame::Video::empty();
        context
            .run(input, &mut output)
            .map_err(|e| ffmpeg_error("swscale", e))?;
        packed_rows(&output, width as usize * bytes_per_pixel, height as usize)
    }
}

/// The first plane's rows without the stride's padding.
fn packed_rows(
    frame: &frame::Video,
    row_bytes: usize,
    rows: usize,
) -> Result<Vec<u8>, DecodeError> {
    if frame.planes() == 0 {
        return Err(ffmpeg_error("swscale", "the scaler produced no picture"));
    }
    let stride = frame.stride(0);
    let data = frame.data(0);
    let mut out = Vec::with_capacity(row_bytes * rows);
    for y in 0..rows {
        let row = data
            .get(y * stride..y * stride + row_bytes)
            .ok_or_else(|| ffmpeg_error("swscale", "the scaled picture is smaller than asked"))?;
        out.extend_from_slice(row);
    }
    Ok(out)
}

/// The size whose shorter side is `min(min_side, shorter)`, aspect kept.
fn scaled_size(width: u32, height: u32, min_side: u32) -> (u32, u32) {
    let shorter = width.min(height);
    if min_side == 0 || min_side >= shorter {
        return (width, height);
    }
    let scale =
        |side: u32| ((side as f64 * min_side as f64 / shorter as f64).round() as u32).max(1);
    if width <= height {
        (min_side, scale(height))
    } else {
        (scale(width), min_side)
    }
}

fn mean_abs_difference(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y) as u64).sum();
    sum as f64 / a.len().max(1) as f64
}

/// The per-frame state of [`sample_video_frames`].
struct FrameSampler<'s> {
    sampling: &'s FrameSampling,
    targets: RegularTargets,
    thumbnail: Converter,
    luma: Converter,
    rgb: Converter,
    previous_thumbnail: Option<Vec<u8>>,
    difference_sum: f64,
    differences: u64,
    first_seconds: Option<f64>,
    last_seconds: f64,
    out: VideoFrames,
}

impl FrameSampler<'_> {
    /// Takes one decoded frame; returns false once nothing more is needed.
    fn push(&mut self, frame: &frame::Video, seconds: f64) -> Result<bool, DecodeError> {
        self.out.decoded_frames += 1;
        self.first_seconds.get_or_insert(seconds);
        self.last_seconds = self.last_seconds.max(seconds);

        let thumbnail =
            self.thumbnail
                .convert(frame, Pixel::GRAY8, THUMBNAIL_SIDE, THUMBNAIL_SIDE, 1)?;
        let mut scene_cut = false;
        if let Some(previous) = &self.previous_thumbnail {
            let difference = mean_abs_difference(previous, &thumbnail);
            self.difference_sum += difference;
            self.differences += 1;
            scene_cut =
                self.sampling.scene_threshold > 0.0 && difference >= self.sampling.scene_threshold;
        }
        self.previous_thumbnail = Some(thumbnail);
        if scene_cut {
            self.out.scene_cuts.push(seconds);
        }

        let regular = self.targets.take_reached(seconds);
        let taken = self.out.frames.len();
        let take = if regular {
            taken < self.sampling.max_frames
        } else {
            // A cut must not take a slot that a later regular target needs, so the regular
            // samples keep covering the whole video.
            scene_cut && taken + self.targets.remaining().unwrap_or(0) < self.sampling.max_frames
        };
        if take {
            self.sample(frame, seconds, scene_cut)?;
        }

        // Scene detection reports every cut, so it reads the whole stream; otherwise stop as
        // soon as the targets are passed.
        let done_sampling =
            self.targets.exhausted() || self.out.frames.len() >= self.sampling.max_frames;
        Ok(!(done_sampling && self.sampling.scene_threshold <= 0.0))
    }

    fn sample(
        &mut self,
        frame: &frame::Video,
        seconds: f64,
        scene_cut: bool,
    ) -> Result<(), DecodeError> {
        let (width, height) = scaled_size(frame.width(), frame.height(), self.sampling.min_side);
        let pixels = self.luma.convert(frame, Pixel::GRAY8, width, height, 1)?;
        let rgb = if self.sampling.keep_rgb {
            let pixels = self
                .rgb
                .convert(frame, Pixel::RGB24, frame.width(), frame.height(), 3)?;
            Some(RgbFrame {
                width: frame.width(),
                height: frame.height(),
                pixels,
            })
        } else {
            None
        };
        self.out.frames.push(SampledFrame {
            pts_seconds: seconds,
            scene_cut,
            luma: LumaImage {
                width,
                height,
                pixels,
            },
            rgb,
        });
        Ok(())
    }
}

/// Decodes the best video stream from its start and samples frames: regular ones at
/// `t = k / sample_fps` (the first decoded frame whose time reaches each target; spread to
/// `duration / max_frames` apart when the video is longer than `max_frames / sample_fps`, so
/// the samples cover all of it) and scene cuts (when `scene_threshold > 0`, in the slots the
/// remaining regular targets leave free).
///
/// Decoding is single-threaded (`thread_count = 1`): the pipeline already runs one sample per
/// worker thread, and one thread gives the same frames whatever the machine. With scene
/// detection off the decoder skips non-reference frames (`AVDISCARD_NONREF`; a property of the
/// bitstream, so still deterministic), seeks to the keyframe before a target more than
/// [`SEEK_MIN_GAP_SECONDS`] ahead (the frames sampled are those linear decoding finds), and
/// stops once the targets are passed; with it on every frame is decoded to the end, as a cut is
/// only exact to a frame with all frames present.
/// A stream that ends well before its declared duration is reported as truncated.
///
/// With [`FrameSampling::cuda_device`], a stream whose codec decodes bit-exactly (see
/// [`NVDEC_CODECS`]) decodes with NVDEC: its frames are copied to host memory in the layout the
/// CPU decoder gives and go through the same conversion, so the sampled frames are the CPU's.
/// Anything NVDEC cannot do (no device, no NVDEC decoder for the codec, a profile the GPU
/// declines, an error on the device) makes that video decode on the CPU instead, saying why in
/// [`VideoFrames::nvdec_fallback`].
pub fn sample_video_frames(
    bytes: &[u8],
    sampling: &FrameSampling,
) -> Result<VideoFrames, DecodeError> {
    sample_video_frames_seeking(bytes, sampling, SEEK_MIN_GAP_SECONDS)
}

/// With scene detection off, a regular target further than this ahead of the last decoded
/// frame is reached by seeking to the keyframe before it instead of decoding up to it. Below a
/// few seconds (a typical keyframe interval) the seek would land behind the frames already
/// decoded and save nothing.
const SEEK_MIN_GAP_SECONDS: f64 = 5.0;

/// Codecs NVDEC decodes for us: those whose decoding is bit-exact by specification, so the
/// device's frames are the CPU's (AV1 up to its film grain, which the decoder synthesises).
/// The others NVDEC knows (MPEG-1/2, MPEG-4 Part 2, VC-1, MJPEG) only bound their inverse
/// transform's error, so their frames could differ by a level here and there: they stay on the
/// CPU, and a run gives the same frames, hence the same ledger, on any device.
const NVDEC_CODECS: [codec::Id; 5] = [
    codec::Id::H264,
    codec::Id::HEVC,
    codec::Id::VP8,
    codec::Id::VP9,
    codec::Id::AV1,
];

/// What became of NVDEC in one [`decode_video_frames`] call.
#[derive(Default)]
struct NvdecAttempt {
    /// The decoder was opened on the device: an error from here on is NVDEC's to answer for,
    /// and the video is decoded again on the CPU.
    on_device: bool,
}

/// [`sample_video_frames`] with the seek threshold as a parameter (`f64::INFINITY`: never
/// seek), so tests can hold the seeking path to the linear one.
fn sample_video_frames_seeking(
    bytes: &[u8],
    sampling: &FrameSampling,
    seek_min_gap: f64,
) -> Result<VideoFrames, DecodeError> {
    let mut nvdec_fallback = None;
    if let Some(ordinal) = sampling.cuda_device {
        match nvdec::device(ordinal) {
            Ok(device) => {
                let mut attempt = NvdecAttempt::default();
                match decode_video_frames(
                    bytes,
                    sampling,
                    seek_min_gap,
                    Some(&device),
                    &mut attempt,
                ) {
                    Ok(out) => {
                        count_video_decoded(out.decoder);
                        return Ok(out);
                    }
                    // Decoding on the device went wrong: the CPU decodes the video again.
                    Err(e) if attempt.on_device => {
                        tracing::debug!("NVDEC failed on a video, decoding it on the CPU: {e}");
                        nvdec_fallback = Some(format!("NVDEC failed ({e}); decoded on the CPU"));
                    }
                    // Before the device had any part: the CPU would say the same.
                    Err(e) => return Err(e),
                }
            }
            Err(reason) => nvdec_fallback = Some(reason),
        }
    }
    let mut out = decode_video_frames(
        bytes,
        sampling,
        seek_min_gap,
        None,
        &mut NvdecAttempt::default(),
    )?;
    out.nvdec_fallback = nvdec_fallback;
    count_video_decoded(out.decoder);
    Ok(out)
}

/// The frames of [`sample_video_frames`], decoded with NVDEC on `nvdec` when the codec is one
/// it decodes exactly, else on the CPU.
fn decode_video_frames(
    bytes: &[u8],
    sampling: &FrameSampling,
    seek_min_gap: f64,
    nvdec: Option<&nvdec::Device>,
    attempt: &mut NvdecAttempt,
) -> Result<VideoFrames, DecodeError> {
    let mut media = open_media(bytes)?;
    let container = container_name(media.input());
    let Some(index) = video_stream_index(media.input()) else {
        return Err(ffmpeg_error(&container, "the file has no video stream"));
    };
    let Some(stream) = media.input().stream(index) else {
        return Err(ffmpeg_error(&container, "the video stream vanished"));
    };
    let time_base = stream.time_base();
    let start = Some(stream.start_time())
        .filter(|&t| t != ffmpeg::ffi::AV_NOPTS_VALUE)
        .unwrap_or(0);
    let fps = rational_value(stream.avg_frame_rate()).or_else(|| rational_value(stream.rate()));
    // A demuxer without an index (an AVI cut short) estimates the duration from the file size,
    // but its header still counts the frames: the longer of the two is what the file declares,
    // for spreading the targets and for seeing that a stream ends early.
    let declared_by_count = fps
        .filter(|_| stream.frames() > 0)
        .map(|f| stream.frames() as f64 / f);
    let duration = match (
        positive_seconds(stream.duration(), time_base).or_else(|| {
            positive_seconds(
                media.input().duration(),
                Rational::new(1, ffmpeg::ffi::AV_TIME_BASE),
            )
        }),
        declared_by_count,
    ) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let codec_id = codec_parameters(&stream).codec_id;
    let codec_name = codec_id.name().to_string();
    let mut context = codec::Context::from_parameters(stream.parameters())
        .map_err(|e| ffmpeg_error(&codec_name, e))?;
    // One thread: see the doc comment.
    context.set_threading(codec::threading::Config::count(1));
    // NVDEC, when asked for and the codec allows: the decoder that FFmpeg would pick when it
    // has a CUDA configuration, else another for the codec that has (the native AV1 decoder,
    // where libdav1d is the default); it is told to prefer CUDA frames.
    let mut nvdec_fallback = None;
    let mut nvdec_decoder = None;
    if let Some(device) = nvdec {
        if !NVDEC_CODECS.contains(&codec_id) {
            nvdec_fallback = Some(format!(
                "{codec_name} is decoded on the CPU: NVDEC is used only for codecs whose decoding \
                 is bit-exact (H.264, HEVC, VP8, VP9, AV1)"
            ));
        } else {
            match nvdec::attach(&mut context, codec_id, device) {
                Ok(decoder) => nvdec_decoder = Some(decoder),
                Err(reason) => nvdec_fallback = Some(reason),
            }
        }
    }
    let mut decoder = context.decoder();
    decoder.set_packet_time_base(time_base);
    let skip_non_reference = sampling.scene_threshold <= 0.0;
    if skip_non_reference {
        decoder.skip_frame(Discard::NonReference);
    }
    // From the decoder's opening on, NVDEC answers for what goes wrong.
    attempt.on_device = nvdec_decoder.is_some();
    let on_device = attempt.on_device;
    let mut decoder = match &nvdec_decoder {
        Some(d) => decoder.open_as(d.codec).and_then(|opened| opened.video()),
        None => decoder.video(),
    }
    .map_err(|e| ffmpeg_error(&codec_name, e))?;
    let mut host = HostFrames::default();

    let mut sampler = FrameSampler {
        sampling,
        targets: RegularTargets::new(sampling, duration),
        thumbnail: Converter::new(scaling::Flags::AREA),
        luma: Converter::new(scaling::Flags::AREA),
        rgb: Converter::new(scaling::Flags::BICUBIC),
        previous_thumbnail: None,
        difference_sum: 0.0,
        differences: 0,
        first_seconds: None,
        last_seconds: 0.0,
        out: VideoFrames {
            frames: Vec::new(),
            decoded_frames: 0,
            scene_cuts: Vec::new(),
            mean_frame_difference: None,
            decoded_seconds: 0.0,
            skipped_non_reference: skip_non_reference,
            seeks: 0,
            decoder: CPU,
            nvdec_fallback,
        },
    };

    let frame_seconds = |frame: &frame::Video, previous: Option<f64>| -> f64 {
        match frame.timestamp().or_else(|| frame.pts()) {
            Some(ts) => (ts - start) as f64 * f64::from(time_base),
            // No timestamp at all: one frame period after the previous one.
            None => previous.map_or(0.0, |p| p + fps.map_or(0.0, |f| 1.0 / f)),
        }
    };

    let mut decoded = frame::Video::empty();
    let mut previous_seconds = None;
    let mut first_error: Option<String> = None;
    let mut reached_end = false;
    let mut wanted = true;
    // After a seek, frames at or before this time were decoded already (the keyframe found
    // may lie behind them): they are passed over so nothing is counted twice.
    let mut decoded_up_to: Option<f64> = None;
    let start_seconds = start as f64 * f64::from(time_base);
    while wanted {
        // Only with scene detection off: a cut is only found with every frame decoded.
        if skip_non_reference {
            let position = previous_seconds.unwrap_or(0.0);
            if let Some(target) = sampler.targets.current() {
                if target - position > seek_min_gap {
                    let timestamp =
                        ((start_seconds + target) * f64::from(ffmpeg::ffi::AV_TIME_BASE)) as i64;
                    // At or before the target (max = timestamp): the first frame decoded
                    // after it whose time reaches the target is the one linear decoding finds.
                    if media.input_mut().seek(timestamp, ..timestamp).is_ok() {
                        decoder.flush();
                        // The frames on either side of a seek are not consecutive.
                        sampler.previous_thumbnail = None;
                        decoded_up_to = previous_seconds;
                        sampler.out.seeks += 1;
                    }
                }
            }
        }
        let Some(packet) = next_packet(&mut media, index, &container)? else {
            reached_end = true;
            break;
        };
        // A damaged packet is skipped as FFmpeg's own tools do; the file fails only if
        // nothing decodes or the stream ends early. On NVDEC it is an error: the CPU decoder
        // conceals damage in its own way, so the CPU decodes such a video.
        if let Err(e) = decoder.send_packet(&packet) {
            if on_device {
                return Err(ffmpeg_error(&codec_name, e));
            }
            first_error.get_or_insert_with(|| e.to_string());
            continue;
        }
        while wanted && receive_frame(&mut decoder, &mut decoded, on_device, &codec_name)? {
            let seconds = frame_seconds(&decoded, previous_seconds);
            if decoded_up_to.is_some_and(|up_to| seconds <= up_to) {
                continue;
            }
            decoded_up_to = None;
            previous_seconds = Some(seconds);
            let frame = host.frame(&decoded, &decoder)?;
            wanted = sampler.push(frame, seconds)?;
        }
    }
    if reached_end {
        // Draining the decoder's delayed frames.
        if decoder.send_eof().is_ok() {
            while wanted && receive_frame(&mut decoder, &mut decoded, on_device, &codec_name)? {
                let seconds = frame_seconds(&decoded, previous_seconds);
                previous_seconds = Some(seconds);
                let frame = host.frame(&decoded, &decoder)?;
                wanted = sampler.push(frame, seconds)?;
            }
        }
    }

    if sampler.out.decoded_frames == 0 {
        let message = first_error.unwrap_or_else(|| "no video frame could be decoded".to_string());
        return Err(ffmpeg_error(&codec_name, message));
    }
    if reached_end && wanted {
        if let Some(declared) = duration {
            let frame_period = fps.map_or(0.0, |f| 1.0 / f);
            let end = sampler.last_seconds + frame_period;
            if end < declared * MIN_DECODED_SHARE - 0.1 {
                return Err(ffmpeg_error(
                    &container,
                    format!("truncated: the video stream ends at {end:.2} s of the {declared:.2} s it declares"),
                ));
            }
        }
    }
    let mut out = sampler.out;
    out.mean_frame_difference =
        (sampler.differences > 0).then(|| sampler.difference_sum / sampler.differences as f64);
    out.decoded_seconds = sampler.last_seconds - sampler.first_seconds.unwrap_or(0.0);
    if let Some(nvdec_decoder) = &nvdec_decoder {
        if host.from_device > 0 {
            out.decoder = NVDEC;
        }
        if host.in_software > 0 {
            if !nvdec_decoder.is_default {
                // A decoder other than the CPU path's produced frames itself: not the reference.
                return Err(ffmpeg_error(
                    nvdec_decoder.codec.name(),
                    "the NVDEC decoder fell back to software decoding",
                ));
            }
            if host.from_device == 0 {
                // FFmpeg's NVDEC setup declined the stream and its decoder went on in software:
                // those are the CPU path's frames.
                out.nvdec_fallback = Some(format!(
                    "NVDEC declined this {codec_name} stream (a profile, bit depth, chroma format or \
                     size the GPU does not decode); decoded on the CPU"
                ));
            }
        }
    }
    Ok(out)
}

/// The next frame out of the decoder; false when it wants more input or is drained. On the CPU
/// any other failure also just ends the frames of that packet, as before; on NVDEC it is an
/// error (the video is decoded again on the CPU).
fn receive_frame(
    decoder: &mut ffmpeg::decoder::Video,
    frame: &mut frame::Video,
    on_device: bool,
    codec_name: &str,
) -> Result<bool, DecodeError> {
    match decoder.receive_frame(frame) {
        Ok(()) => Ok(true),
        Err(ffmpeg::Error::Eof) => Ok(false),
        Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::ffi::EAGAIN => Ok(false),
        Err(e) if on_device => Err(ffmpeg_error(codec_name, e)),
        Err(_) => Ok(false),
    }
}

/// Brings NVDEC's frames (in device memory, `Pixel::CUDA`) to host memory in the very layout
/// the CPU decoder gives for the stream, so that they go through the same swscale conversions
/// as the CPU's frames; frames already in host memory pass as they are.
///
/// Why not hand NVDEC's NV12 to swscale directly: NV12 → GRAY8 reads only the Y plane, which
/// NV12 and yuv420p share, but the two are not the same to swscale elsewhere. NV12 has no
/// full-range (`yuvj`) variant, so a full-range stream's gray would be range-converted, and
/// yuv420p → RGB24 at the same size takes swscale's special unscaled path that NV12 does not,
/// rounding differently. Rearranging the planes (and shifting P010's MSB-aligned samples down)
/// is lossless and leaves swscale exactly the CPU's input.
struct HostFrames {
    /// av_hwframe_transfer_data's output (NV12, P010, P016 or YUV444P(16)).
    transferred: frame::Video,
    /// The same samples in the CPU decoder's format, reused from frame to frame.
    host: frame::Video,
    from_device: u64,
    in_software: u64,
}

impl Default for HostFrames {
    fn default() -> Self {
        HostFrames {
            transferred: frame::Video::empty(),
            host: frame::Video::empty(),
            from_device: 0,
            in_software: 0,
        }
    }
}

impl HostFrames {
    fn frame<'a>(
        &'a mut self,
        decoded: &'a frame::Video,
        decoder: &ffmpeg::decoder::Video,
    ) -> Result<&'a frame::Video, DecodeError> {
        if decoded.format() != Pixel::CUDA {
            self.in_software += 1;
            return Ok(decoded);
        }
        self.from_device += 1;
        let err = |message: String| ffmpeg_error("nvdec", message);
        nvdec::check_frame(decoded).map_err(err)?;
        nvdec::transfer(decoded, &mut self.transferred).map_err(err)?;
        let cpu_format = nvdec::software_format(decoder);
        to_cpu_layout(&self.transferred, cpu_format, &mut self.host).map_err(err)?;
        Ok(&self.host)
    }
}

/// How NVDEC's host copy maps onto the CPU decoder's format.
struct Layout {
    /// NV12-style: one plane of interleaved U and V samples (else three planes).
    interleaved_chroma: bool,
    /// Bytes per sample: 1, or 2 (little-endian).
    sample_bytes: usize,
    /// NVDEC puts 10- and 12-bit samples in the high bits of 16: shift right by this.
    shift: u32,
}

fn layout(from: Pixel, to: Pixel) -> Option<Layout> {
    let (interleaved_chroma, sample_bytes, shift) = match (from, to) {
        (Pixel::NV12, Pixel::YUV420P | Pixel::YUVJ420P) => (true, 1, 0),
        (Pixel::P010LE, Pixel::YUV420P10LE) => (true, 2, 6),
        (Pixel::P016LE, Pixel::YUV420P12LE) => (true, 2, 4),
        (Pixel::YUV444P, Pixel::YUV444P | Pixel::YUVJ444P) => (false, 1, 0),
        (Pixel::YUV444P16LE, Pixel::YUV444P10LE) => (false, 2, 6),
        (Pixel::YUV444P16LE, Pixel::YUV444P12LE) => (false, 2, 4),
        _ => return None,
    };
    Some(Layout {
        interleaved_chroma,
        sample_bytes,
        shift,
    })
}

/// Rewrites `from` (NVDEC's host copy) into `out` in `cpu_format`, sample for sample.
fn to_cpu_layout(
    from: &frame::Video,
    cpu_format: Pixel,
    out: &mut frame::Video,
) -> Result<(), String> {
    let Some(layout) = layout(from.format(), cpu_format) else {
        return Err(format!(
            "NVDEC gave {:?} frames where the CPU decoder gives {cpu_format:?}: no exact \
             conversion",
            from.format()
        ));
    };
    let (width, height) = (from.width(), from.height());
    if out.format() != cpu_format || out.width() != width || out.height() != height {
        *out = frame::Video::new(cpu_format, width, height);
    }
    let planes_in = if layout.interleaved_chroma { 2 } else { 3 };
    if from.planes() < planes_in || out.planes() < 3 {
        return Err(format!(
            "a {:?} frame with {} planes, or no room for its {cpu_format:?} copy",
            from.format(),
            from.planes()
        ));
    }
    for plane in 0..3 {
        let (source, step, first) = match (plane, layout.interleaved_chroma) {
            (0, _) => (0, 1, 0),
            (_, true) => (1, 2, plane - 1),
            (_, false) => (plane, 1, 0),
        };
        let rows = out.plane_height(plane) as usize;
        let samples = out.plane_width(plane) as usize;
        let dst_stride = out.stride(plane);
        copy_samples(
            from.data(source),
            from.stride(source),
            out.data_mut(plane),
            dst_stride,
            (rows, samples),
            (step, first),
            &layout,
        )?;
    }
    Ok(())
}

/// Copies `rows` rows of `samples` samples, taking every `step`-th sample of `src` from sample
/// `first` on, shifting each right by the layout's shift.
fn copy_samples(
    src: &[u8],
    src_stride: usize,
    dst: &mut [u8],
    dst_stride: usize,
    (rows, samples): (usize, usize),
    (step, first): (usize, usize),
    layout: &Layout,
) -> Result<(), String> {
    let bytes = layout.sample_bytes;
    let short = || "NVDEC's frame is smaller than its size".to_string();
    if samples == 0 {
        return Ok(());
    }
    let src_row_bytes = ((samples - 1) * step + first + 1) * bytes;
    for y in 0..rows {
        let src_row = src
            .get(y * src_stride..y * src_stride + src_row_bytes)
            .ok_or_else(short)?;
        let dst_row = dst
            .get_mut(y * dst_stride..y * dst_stride + samples * bytes)
            .ok_or_else(short)?;
        match (bytes, step) {
            (1, 1) => dst_row.copy_from_slice(src_row),
            (1, _) => {
                for (x, d) in dst_row.iter_mut().enumerate() {
                    *d = src_row[x * step + first];
                }
            }
            _ => {
                for (x, d) in dst_row.chunks_exact_mut(2).enumerate() {
                    let i = (x * step + first) * 2;
                    let v = u16::from_le_bytes([src_row[i], src_row[i + 1]]) >> layout.shift;
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    Ok(())
}

/// Converts the first `frames` sample frames of a decoded frame to interleaved f32 (full scale
/// ±1.0) into `out`, which it resizes (a buffer reused from frame to frame). Done here rather
/// than by swresample: it is a plain per-format conversion, and it sidesteps swresample's
/// channel-layout check, which WAV/PCM frames (empty layout) fail. The planes are checked
/// against the frame's whole sample count, `frames` or not.
fn convert_interleaved(
    frame: &frame::Audio,
    channels: usize,
    frames: usize,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    let samples = frame.samples();
    let frames = frames.min(samples);
    let format = frame.format();
    let planar = match format {
        Sample::U8(t) | Sample::I16(t) | Sample::I32(t) | Sample::F32(t) => t,
        Sample::I64(t) | Sample::F64(t) => t,
        Sample::None => return Err("the decoder produced no sample format".to_string()),
    } == ffmpeg::format::sample::Type::Planar;
    out.clear();
    out.resize(frames * channels, 0.0);
    match format {
        Sample::U8(_) => convert_planes(frame, planar, channels, samples, out, |b: [u8; 1]| {
            (b[0] as f32 - 128.0) / 128.0
        }),
        Sample::I16(_) => convert_planes(frame, planar, channels, samples, out, |b| {
            i16::from_ne_bytes(b) as f32 / 32768.0
        }),
        Sample::I32(_) => convert_planes(frame, planar, channels, samples, out, |b| {
            i32::from_ne_bytes(b) as f32 / 2_147_483_648.0
        }),
        Sample::F32(_) => convert_planes(frame, planar, channels, samples, out, f32::from_ne_bytes),
        Sample::I64(_) => convert_planes(frame, planar, channels, samples, out, |b| {
            i64::from_ne_bytes(b) as f32 / 9.223_372e18
        }),
        Sample::F64(_) => convert_planes(frame, planar, channels, samples, out, |b| {
            f64::from_ne_bytes(b) as f32
        }),
        Sample::None => Ok(()),
    }
}

/// [`convert_interleaved`] for one sample format of `N` bytes, `to_f32` inlined into the loop.
fn convert_planes<const N: usize>(
    frame: &frame::Audio,
    planar: bool,
    channels: usize,
    samples: usize,
    out: &mut [f32],
    to_f32: impl Fn([u8; N]) -> f32,
) -> Result<(), String> {
    let plane = |i: usize, len: usize| -> Result<&[u8], String> {
        if i >= frame.planes() {
            return Err(format!(
                "the frame has {} planes, not {}",
                frame.planes(),
                i + 1
            ));
        }
        frame
            .data(i)
            .get(..len)
            .ok_or_else(|| "the frame is shorter than its sample count".to_string())
    };
    let sample = |b: &[u8]| to_f32(b.try_into().unwrap_or([0; N]));
    if planar {
        for c in 0..channels {
            let data = plane(c, samples * N)?;
            let dst = out.iter_mut().skip(c).step_by(channels);
            for (dst, b) in dst.zip(data.chunks_exact(N)) {
                *dst = sample(b);
            }
        }
    } else {
        let data = plane(0, samples * channels * N)?;
        for (dst, b) in out.iter_mut().zip(data.chunks_exact(N)) {
            *dst = sample(b);
        }
    }
    Ok(())
}

/// Native-rate mono samples go to swresample in chunks of this many. One call over the whole
/// signal made it allocate (and zero) buffers the size of the input, and the page faults cost
/// more than the filtering; its output does not depend on how the input is cut (tested).
const RESAMPLE_CHUNK: usize = 16_384;

/// Mono f32 resampled by swresample (its default filter; deterministic) as it arrives, or
/// kept as it is when the rates are equal.
struct MonoResampler {
    /// The resampler with its reused input frame (`filled` of its [`RESAMPLE_CHUNK`] samples
    /// written) and output frame (`out_capacity` samples); `None` at equal rates.
    swr: Option<(resampling::Context, frame::Audio, frame::Audio)>,
    filled: usize,
    out_capacity: usize,
    out: Vec<f32>,
}

impl MonoResampler {
    /// `expected_input`: the native-rate samples to reserve the output for.
    fn new(from_rate: u32, to_rate: u32, expected_input: usize) -> Result<Self, DecodeError> {
        let expected = (expected_input as u64 * to_rate as u64 / from_rate.max(1) as u64) as usize;
        let out = Vec::with_capacity(expected.saturating_add(64));
        if from_rate == to_rate {
            return Ok(MonoResampler {
                swr: None,
                filled: 0,
                out_capacity: 0,
                out,
            });
        }
        let err = |e: ffmpeg::Error| ffmpeg_error("swresample", e);
        let format = Sample::F32(ffmpeg::format::sample::Type::Packed);
        let context = resampling::Context::get(
            format,
            ChannelLayout::MONO,
            from_rate,
            format,
            ChannelLayout::MONO,
            to_rate,
        )
        .map_err(err)?;
        // Room for a chunk's output and the filter's delay; swresample keeps any excess for
        // the next call, so a bound that is too small (absurd rates) costs calls, not samples.
        let out_capacity = (RESAMPLE_CHUNK as u64 * to_rate as u64 / from_rate as u64 + 1024)
            .min(1 << 22) as usize;
        let mut input = frame::Audio::new(format, RESAMPLE_CHUNK, ChannelLayout::MONO);
        input.set_rate(from_rate);
        let output = frame::Audio::new(format, out_capacity, ChannelLayout::MONO);
        if input.planes() == 0 || output.planes() == 0 {
            return Err(ffmpeg_error("swresample", "could not allocate the frames"));
        }
        Ok(MonoResampler {
            swr: Some((context, input, output)),
            filled: 0,
            out_capacity,
            out,
        })
    }

    fn push(&mut self, mut mono: &[f32]) -> Result<(), DecodeError> {
        if self.swr.is_none() {
            self.out.extend_from_slice(mono);
            return Ok(());
        }
        while !mono.is_empty() {
            let take = (RESAMPLE_CHUNK - self.filled).min(mono.len());
            if let Some((_, input, _)) = &mut self.swr {
                input.plane_mut::<f32>(0)[self.filled..self.filled + take]
                    .copy_from_slice(&mono[..take]);
            }
            self.filled += take;
            mono = &mono[take..];
            if self.filled == RESAMPLE_CHUNK {
                self.convert()?;
            }
        }
        Ok(())
    }

    /// Resamples the `filled` samples of the input frame (with none, drains the filter).
    fn convert(&mut self) -> Result<usize, DecodeError> {
        let Some((context, input, output)) = &mut self.swr else {
            return Ok(0);
        };
        let err = |e: ffmpeg::Error| ffmpeg_error("swresample", e);
        output.set_samples(self.out_capacity);
        if self.filled > 0 {
            input.set_samples(self.filled);
            let result = context.run(input, output);
            input.set_samples(RESAMPLE_CHUNK);
            self.filled = 0;
            result.map_err(err)?;
        } else {
            context.flush(output).map_err(err)?;
        }
        let produced = output.plane::<f32>(0);
        self.out.extend_from_slice(produced);
        Ok(produced.len())
    }

    /// Everything resampled, the filter's delay line drained.
    fn finish(mut self) -> Result<Vec<f32>, DecodeError> {
        if self.swr.is_some() {
            if self.filled > 0 {
                self.convert()?;
            }
            while self.convert()? > 0 {}
        }
        Ok(self.out)
    }
}

/// Decodes the best audio stream and measures it as it goes: the levels of its interleaved f32
/// samples at the native rate and channel count (full scale ±1.0; windows below
/// `silence_threshold_dbfs` are silent), bit-identical to [`crate::measure::audio::audio_levels`]
/// over all of them, and a mono downmix (the mean of the channels) resampled to
/// `analysis_rate` (0 keeps the native rate). Stops after `max_seconds` (not finite or ≤ 0: no
/// limit) and says so in `truncated`. A stream that ends well before its declared duration, or
/// decodes to no samples, is an error.
pub fn decode_audio(
    bytes: &[u8],
    analysis_rate: u32,
    max_seconds: f64,
    silence_threshold_dbfs: f64,
) -> Result<DecodedAudio, DecodeError> {
    let mut media = open_media(bytes)?;
    let container = container_name(media.input());
    let Some(index) = audio_stream_index(media.input()) else {
        return Err(ffmpeg_error(&container, "the file has no audio stream"));
    };
    let Some(stream) = media.input().stream(index) else {
        return Err(ffmpeg_error(&container, "the audio stream vanished"));
    };
    let declared = positive_seconds(stream.duration(), stream.time_base()).or_else(|| {
        positive_seconds(
            media.input().duration(),
            Rational::new(1, ffmpeg::ffi::AV_TIME_BASE),
        )
    });
    let codec_name = codec_parameters(&stream).codec_id.name().to_string();
    let mut context = codec::Context::from_parameters(stream.parameters())
        .map_err(|e| ffmpeg_error(&codec_name, e))?;
    context.set_threading(codec::threading::Config::count(1));
    let mut decoder = context
        .decoder()
        .audio()
        .map_err(|e| ffmpeg_error(&codec_name, e))?;
    let sample_rate = decoder.rate();
    let channels = decoder.channels() as usize;
    if sample_rate == 0 || channels == 0 {
        return Err(ffmpeg_error(
            &codec_name,
            format!("{channels} channels at {sample_rate} Hz"),
        ));
    }
    let limit = if max_seconds.is_finite() && max_seconds > 0.0 {
        (max_seconds * sample_rate as f64).ceil() as usize
    } else {
        usize::MAX
    };

    let mut meter = LevelMeter::new(channels as u32, sample_rate, silence_threshold_dbfs);
    // Nothing of the native-rate samples is kept: each frame is converted into one reused
    // buffer, measured, downmixed (another reused buffer) and fed to the resampler, whose output
    // is reserved once from the declared duration (at most `max_seconds`; the slack covers a
    // stream a little longer than its header says).
    let expected_frames = declared
        .map(|d| (d * sample_rate as f64).ceil())
        .filter(|f| f.is_finite())
        .map_or(0, |f| (f as usize).saturating_add(8192).min(limit));
    let analysis_rate = if analysis_rate == 0 {
        sample_rate
    } else {
        analysis_rate
    };
    let mut mono = MonoResampler::new(
        sample_rate,
        analysis_rate,
        expected_frames.min(MAX_RESERVED_FRAMES),
    )?;
    let mut samples = Vec::new();
    let mut mono_frame = Vec::new();
    // Every frame the decoder produced, those past the limit included.
    let mut decoded_frames = 0usize;
    let mut decoded = frame::Audio::empty();
    let mut first_error: Option<String> = None;
    let mut receive = |decoder: &mut ffmpeg::decoder::Audio,
                       decoded_frames: &mut usize,
                       meter: &mut LevelMeter,
                       mono: &mut MonoResampler|
     -> Result<(), DecodeError> {
        while decoder.receive_frame(&mut decoded).is_ok() {
            let frame_channels = decoded.channels() as usize;
            if frame_channels != channels && frame_channels != 0 {
                return Err(ffmpeg_error(
                    &codec_name,
                    format!("the channel count changed from {channels} to {frame_channels}"),
                ));
            }
            let wanted = limit.saturating_sub(*decoded_frames);
            convert_interleaved(&decoded, channels, wanted, &mut samples)
                .map_err(|m| ffmpeg_error(&codec_name, m))?;
            *decoded_frames = decoded_frames.saturating_add(decoded.samples());
            if samples.is_empty() {
                continue;
            }
            meter.push(&samples);
            mono_frame.clear();
            mono_frame.extend(
                samples
                    .chunks_exact(channels)
                    .map(|c| c.iter().sum::<f32>() / channels as f32),
            );
            mono.push(&mono_frame)?;
        }
        Ok(())
    };
    let mut reached_end = false;
    while decoded_frames < limit {
        let Some(packet) = next_packet(&mut media, index, &container)? else {
            reached_end = true;
            break;
        };
        if let Err(e) = decoder.send_packet(&packet) {
            first_error.get_or_insert_with(|| e.to_string());
            continue;
        }
        receive(&mut decoder, &mut decoded_frames, &mut meter, &mut mono)?;
    }
    if reached_end && decoder.send_eof().is_ok() {
        receive(&mut decoder, &mut decoded_frames, &mut meter, &mut mono)?;
    }
    let truncated = !reached_end || decoded_frames > limit;
    let frames = meter.frames();
    if frames == 0 {
        let message = first_error.unwrap_or_else(|| "no audio samples decoded".to_string());
        return Err(ffmpeg_error(&codec_name, message));
    }
    let decoded_seconds = frames as f64 / sample_rate as f64;
    if !truncated {
        if let Some(declared) = declared {
            if decoded_seconds < declared * MIN_DECODED_SHARE - 0.1 {
                return Err(ffmpeg_error(
                    &container,
                    format!("truncated: the audio stream ends at {decoded_seconds:.2} s of the {declared:.2} s it declares"),
                ));
            }
        }
    }
    let mono = mono.finish()?;
    Ok(DecodedAudio {
        sample_rate,
        channels: channels as u32,
        frames,
        levels: meter.finish(),
        analysis_rate,
        mono,
        decoded_seconds,
        truncated,
    })
}

/// Everything unsafe in this module: FFmpeg reading from a borrowed byte slice through a
/// custom AVIO context, and reading codec parameters that `ffmpeg-next` does not expose.
mod memory_io {
    use std::ffi::{c_int, c_void};
    use std::marker::PhantomData;
    use std::ptr;

    use ffmpeg::ffi;
    use ffmpeg::format::context::Input;
    use ffmpeg_next as ffmpeg;

    /// FFmpeg's own default AVIO buffer size.
    const AVIO_BUFFER_SIZE: usize = 32 * 1024;

    /// The read position over the bytes, owned by [`MemoryInput`] and handed to FFmpeg as the
    /// AVIO context's `opaque`.
    struct SliceCursor {
        data: *const u8,
        len: usize,
        position: usize,
    }

    /// An opened demuxer reading from `&'a [u8]`. Field order does not matter: `Drop` frees
    /// the format context, then the AVIO context, then the cursor, in that order.
    ///
    /// Invariant: nothing that keeps the format context alive past this value (a
    /// `codec::Parameters` or `stream.codec()`, which hold a reference count on it) is kept
    /// beyond a statement; `codec::Context::from_parameters` copies the parameters and lets go.
    pub(super) struct MemoryInput<'a> {
        input: Option<Input>,
        avio: *mut ffi::AVIOContext,
        cursor: *mut SliceCursor,
        _bytes: PhantomData<&'a [u8]>,
    }

    impl<'a> MemoryInput<'a> {
        /// Opens the container and reads its stream info. Every allocation made before a
        /// failure is freed by `Drop` (the partly built value is dropped on the error path).
        pub(super) fn open(bytes: &'a [u8]) -> Result<Self, ffmpeg::Error> {
            let mut this = MemoryInput {
                input: None,
                avio: ptr::null_mut(),
                cursor: Box::into_raw(Box::new(SliceCursor {
                    data: bytes.as_ptr(),
                    len: bytes.len(),
                    position: 0,
                })),
                _bytes: PhantomData,
            };
            // SAFETY: FFmpeg's documented custom-IO protocol. The buffer is av_malloc'd as
            // avio_alloc_context requires, and becomes the context's (freed in Drop through
            // `(*avio).buffer`, since FFmpeg may replace it); on failure it is freed here. The
            // cursor outlives the AVIO context (Drop order), and the bytes outlive both ('a).
            // With AVFMT_FLAG_CUSTOM_IO, avformat_open_input (which frees the format context
            // itself on failure) and avformat_close_input never free `pb`, so it is freed
            // exactly once, by Drop.
            unsafe {
                let buffer = ffi::av_malloc(AVIO_BUFFER_SIZE) as *mut u8;
                if buffer.is_null() {
                    return Err(ffmpeg::Error::Other { errno: ffi::ENOMEM });
                }
                this.avio = ffi::avio_alloc_context(
                    buffer,
                    AVIO_BUFFER_SIZE as c_int,
                    0,
                    this.cursor as *mut c_void,
                    Some(read_packet),
                    None,
                    Some(seek),
                );
                if this.avio.is_null() {
                    ffi::av_free(buffer as *mut c_void);
                    return Err(ffmpeg::Error::Other { errno: ffi::ENOMEM });
                }
                let mut context = ffi::avformat_alloc_context();
                if context.is_null() {
                    return Err(ffmpeg::Error::Other { errno: ffi::ENOMEM });
                }
                (*context).pb = this.avio;
                (*context).flags |= ffi::AVFMT_FLAG_CUSTOM_IO as c_int;
                let ret = ffi::avformat_open_input(
                    &mut context,
                    ptr::null(),
                    ptr::null(),
                    ptr::null_mut(),
                );
                if ret < 0 {
                    return Err(ffmpeg::Error::from(ret));
                }
                // From here the wrapper owns the format context and closes it in its Drop.
                this.input = Some(Input::wrap(context));
                let ret = ffi::avformat_find_stream_info(context, ptr::null_mut());
                if ret < 0 {
                    return Err(ffmpeg::Error::from(ret));
                }
            }
            Ok(this)
        }

        pub(super) fn input(&self) -> &Input {
            // `open` returns only with `input` set.
            self.input
                .as_ref()
                .expect("MemoryInput::open sets the input")
        }

        pub(super) fn input_mut(&mut self) -> &mut Input {
            self.input
                .as_mut()
                .expect("MemoryInput::open sets the input")
        }
    }

    impl Drop for MemoryInput<'_> {
        fn drop(&mut self) {
            // Closes the demuxer first: its read_close may still read through `pb`.
            drop(self.input.take());
            // SAFETY: `avio` and `cursor` were created in `open` and are freed only here;
            // the buffer is whichever one the context holds now.
            unsafe {
                if !self.avio.is_null() {
                    ffi::av_freep(&mut (*self.avio).buffer as *mut *mut u8 as *mut c_void);
                    ffi::avio_context_free(&mut self.avio);
                }
                if !self.cursor.is_null() {
                    drop(Box::from_raw(self.cursor));
                    self.cursor = ptr::null_mut();
                }
            }
        }
    }

    /// AVIO read callback: copies from the cursor's position; `AVERROR_EOF` at the end.
    ///
    /// SAFETY (for FFmpeg calling it): `opaque` is the `SliceCursor` of a live MemoryInput
    /// (FFmpeg passes back what `open` gave it, and only while the context lives), `data`
    /// and `len` describe the borrowed slice, and `buf` has room for `buf_size` bytes. FFmpeg
    /// drives one context from one thread, so the `&mut` is unique.
    unsafe extern "C" fn read_packet(opaque: *mut c_void, buf: *mut u8, buf_size: c_int) -> c_int {
        let cursor = unsafe { &mut *(opaque as *mut SliceCursor) };
        let remaining = cursor.len.saturating_sub(cursor.position);
        if remaining == 0 || buf_size <= 0 {
            return ffi::AVERROR_EOF;
        }
        let n = remaining.min(buf_size as usize);
        unsafe { ptr::copy_nonoverlapping(cursor.data.add(cursor.position), buf, n) };
        cursor.position += n;
        n as c_int
    }

    /// AVIO seek callback: absolute, relative and from-the-end seeks, and `AVSEEK_SIZE`
    /// (the total size, which lets demuxers find trailing indexes such as a `moov` at the end).
    /// Positions past the end are allowed (reads there return EOF), negative ones are not.
    unsafe extern "C" fn seek(opaque: *mut c_void, offset: i64, whence: c_int) -> i64 {
        // SAFETY: as for `read_packet`.
        let cursor = unsafe { &mut *(opaque as *mut SliceCursor) };
        let whence = whence & !(ffi::AVSEEK_FORCE as c_int);
        if whence == ffi::AVSEEK_SIZE as c_int {
            return cursor.len as i64;
        }
        // SEEK_SET, SEEK_CUR, SEEK_END: the C values, fixed by POSIX.
        let base = match whence {
            0 => 0i128,
            1 => cursor.position as i128,
            2 => cursor.len as i128,
            _ => return ffi::AVERROR(ffi::EINVAL) as i64,
        };
        let target = base + offset as i128;
        if target < 0 || target > i64::MAX as i128 {
            return ffi::AVERROR(ffi::EINVAL) as i64;
        }
        cursor.position = target as usize;
        target as i64
    }

    /// The few `AVCodecParameters` fields `ffmpeg-next` 9 has no accessor for.
    pub(super) struct CodecParameters {
        pub codec_id: ffmpeg::codec::Id,
        pub width: u32,
        pub height: u32,
        pub sample_rate: u32,
        pub channels: u32,
    }

    pub(super) fn codec_parameters(stream: &ffmpeg::Stream) -> CodecParameters {
        let parameters = stream.parameters();
        // SAFETY: `parameters` points at the stream's live AVCodecParameters (it holds the
        // format context alive while it exists); these are plain integer fields.
        let (width, height, sample_rate, channels) = unsafe {
            let p = parameters.as_ptr();
            (
                (*p).width,
                (*p).height,
                (*p).sample_rate,
                (*p).ch_layout.nb_channels,
            )
        };
        CodecParameters {
            codec_id: parameters.id(),
            width: width.max(0) as u32,
            height: height.max(0) as u32,
            sample_rate: sample_rate.max(0) as u32,
            channels: channels.max(0) as u32,
        }
    }
}

/// Whether NVDEC on CUDA device `ordinal` was tried in this process, and what came of it
/// (`None`: not tried yet). Opening is tried once per device and process.
pub fn nvdec_device_state(ordinal: usize) -> Option<NvdecDeviceState> {
    nvdec::state(ordinal)
}

/// Everything unsafe about NVDEC: the CUDA device FFmpeg decodes on, attaching it to a decoder
/// before it opens, and copying decoded frames out of device memory.
///
/// The device is FFmpeg's CUDA device context wrapped around the CUDA *primary* context of the
/// GPU, the one cudarc (and so the rest of mmcurate) uses: it is retained through cudarc and
/// handed to `av_hwdevice_ctx_init`. Not `av_hwdevice_ctx_create(…, AV_CUDA_USE_PRIMARY_CONTEXT)`:
/// FFmpeg 5.1 then insists on the primary context's flags being `CU_CTX_SCHED_BLOCKING_SYNC`
/// and fails with ENOTSUP ("Primary context already active with incompatible flags") when it is
/// already active with others, which it always is here (`gpu::select` opened it first, with
/// the default flags).
mod nvdec {
    use std::collections::BTreeMap;
    use std::ffi::{c_int, c_uint, c_void};
    use std::ptr::{self, NonNull};
    use std::sync::Mutex;

    use cudarc::driver::{result as cu, sys as cu_sys};
    use ffmpeg::ffi;
    use ffmpeg::format::Pixel;
    use ffmpeg::util::frame;
    use ffmpeg::{codec, Codec};
    use ffmpeg_next as ffmpeg;

    use super::NvdecDeviceState;

    /// The library FFmpeg's NVDEC loads at run time; it comes with the driver, but a container
    /// has it only with the `video` driver capability.
    const NVCUVID: &str = "libnvcuvid.so.1";

    /// A counted reference to FFmpeg's CUDA device context (an `AVBufferRef` whose data is the
    /// `AVHWDeviceContext`), unreferenced on drop; the last one frees the context, whose `free`
    /// callback releases the primary context retained for it.
    pub(super) struct Device(NonNull<ffi::AVBufferRef>);

    // SAFETY: a `Device` is only referenced again (av_buffer_ref: the count is atomic) and
    // unreferenced once, by its owner. FFmpeg's CUDA device context is meant to be shared by
    // decoders on several threads at once: each pushes the CUDA context it holds around its
    // own driver calls, and the CUDA driver API is thread-safe.
    unsafe impl Send for Device {}
    unsafe impl Sync for Device {}

    impl Device {
        /// A new reference to the same device context.
        fn new_ref(&self) -> Result<NonNull<ffi::AVBufferRef>, String> {
            // SAFETY: `self.0` is a live reference, owned by `self`.
            NonNull::new(unsafe { ffi::av_buffer_ref(self.0.as_ptr()) })
                .ok_or_else(|| "out of memory for a CUDA device reference".to_string())
        }
    }

    impl Drop for Device {
        fn drop(&mut self) {
            let mut reference = self.0.as_ptr();
            // SAFETY: the reference is owned by `self` and unreferenced only here.
            unsafe { ffi::av_buffer_unref(&mut reference) };
        }
    }

    struct Opened {
        device: Result<Device, String>,
        attempts: u32,
    }

    /// The devices tried so far, by ordinal, with the outcome: each is opened at most once per
    /// process, so a machine without a GPU does not try again for every video. Statics are
    /// never dropped: an opened device lives as long as the process, as its primary context.
    static DEVICES: Mutex<BTreeMap<usize, Opened>> = Mutex::new(BTreeMap::new());

    /// A reference to the NVDEC device for CUDA device `ordinal`, opened on first use (and
    /// logged once), or why there is none.
    pub(super) fn device(ordinal: usize) -> Result<Device, String> {
        let mut devices = DEVICES.lock().unwrap_or_else(|p| p.into_inner());
        let opened = devices.entry(ordinal).or_insert_with(|| {
            let device = open(ordinal);
            match &device {
                Ok(_) => tracing::info!(
                    "videos decode with NVDEC on cuda:{ordinal} (those it cannot decode exactly, on the CPU)"
                ),
                Err(reason) => tracing::warn!(
                    "NVDEC cannot be used on cuda:{ordinal}, videos decode on the CPU: {reason}"
                ),
            }
            Opened {
                device,
                attempts: 1,
            }
        });
        match &opened.device {
            Ok(device) => device.new_ref().map(Device),
            Err(reason) => Err(reason.clone()),
        }
    }

    pub(super) fn state(ordinal: usize) -> Option<NvdecDeviceState> {
        let devices = DEVICES.lock().unwrap_or_else(|p| p.into_inner());
        devices.get(&ordinal).map(|opened| NvdecDeviceState {
            opened: opened.device.as_ref().map(|_| ()).map_err(Clone::clone),
            attempts: opened.attempts,
        })
    }

    fn open(ordinal: usize) -> Result<Device, String> {
        // FFmpeg logs its own failures: keep it quiet, as everywhere in this module.
        super::init_ffmpeg().map_err(|e| e.to_string())?;
        // cudarc panics on its first call without the driver library.
        if !crate::gpu::device::driver_available() {
            return Err("no CUDA driver library (libcuda.so) found".to_string());
        }
        // SAFETY: loads (and unloads) the driver's own library, as FFmpeg's NVDEC would; it
        // runs no code of ours.
        if let Err(e) = unsafe { libloading::Library::new(NVCUVID) } {
            return Err(format!(
                "the driver's video decoding library {NVCUVID} cannot be loaded ({e}); in a \
                 container, NVIDIA_DRIVER_CAPABILITIES must include `video`"
            ));
        }
        cu::init().map_err(|e| format!("CUDA does not start: {e}"))?;
        let index = c_int::try_from(ordinal).map_err(|_| format!("no CUDA device {ordinal}"))?;
        let cu_device =
            cu::device::get(index).map_err(|e| format!("no CUDA device {ordinal}: {e}"))?;
        // SAFETY: `cu_device` came from `device::get`, as `retain` requires. The retain is
        // released by `release_primary` when FFmpeg frees the device context, or just below.
        let primary = unsafe { cu::primary_ctx::retain(cu_device) }
            .map_err(|e| format!("the primary context of CUDA device {ordinal}: {e}"))?;
        // SAFETY: FFmpeg's documented way to wrap an existing CUDA context: allocate the
        // device context, fill in its API-specific part (`hwctx`, an AVCUDADeviceContext for
        // the CUDA type) and init it. `cuda_ctx` is the retained primary context (both
        // bindings declare CUcontext as a pointer to an opaque struct); a NULL stream is
        // CUDA's default stream, FFmpeg's own default. FFmpeg does not release a context it
        // did not create: our `free` callback does, with the device kept in `user_opaque`.
        // Once the buffer exists, every failure path frees it through `Device`'s drop.
        unsafe {
            let Some(buffer) = NonNull::new(ffi::av_hwdevice_ctx_alloc(
                ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA,
            )) else {
                let _ = cu::primary_ctx::release(cu_device);
                return Err("FFmpeg cannot allocate a CUDA device context".to_string());
            };
            let hw = (*buffer.as_ptr()).data as *mut ffi::AVHWDeviceContext;
            let cuda = (*hw).hwctx as *mut ffi::AVCUDADeviceContext;
            (*cuda).cuda_ctx = primary as ffi::CUcontext;
            (*cuda).stream = ptr::null_mut();
            (*hw).user_opaque = cu_device as isize as *mut c_void;
            (*hw).free = Some(release_primary);
            let device = Device(buffer);
            let ret = ffi::av_hwdevice_ctx_init(buffer.as_ptr());
            if ret < 0 {
                return Err(format!(
                    "FFmpeg's CUDA device context does not start: {}",
                    ffmpeg::Error::from(ret)
                ));
            }
            Ok(device)
        }
    }

    /// `AVHWDeviceContext.free`: releases the primary context retained in `open`.
    unsafe extern "C" fn release_primary(context: *mut ffi::AVHWDeviceContext) {
        // SAFETY: FFmpeg calls this once, with the context `open` set up, whose `user_opaque`
        // holds the device the primary context was retained on.
        unsafe {
            let cu_device = (*context).user_opaque as isize as cu_sys::CUdevice;
            let _ = cu::primary_ctx::release(cu_device);
        }
    }

    /// The decoder NVDEC decodes a stream with.
    pub(super) struct CudaDecoder {
        pub codec: Codec,
        /// It is the decoder the CPU path uses (so its software frames are the reference).
        pub is_default: bool,
    }

    /// FFmpeg's decoder for `id` when it has a CUDA hardware configuration, else another
    /// decoder for `id` that has one and decodes through FFmpeg's hwaccel (not a `*_cuvid`
    /// wrapper, which bypasses FFmpeg's parsing and frame handling and would not give the
    /// CPU path's frames).
    pub(super) fn cuda_decoder(id: codec::Id) -> Option<CudaDecoder> {
        let default = ffmpeg::decoder::find(id)?;
        if decodes_to_cuda(default) {
            return Some(CudaDecoder {
                codec: default,
                is_default: true,
            });
        }
        let mut cursor: *mut c_void = ptr::null_mut();
        loop {
            // SAFETY: av_codec_iterate's documented use: an opaque cursor that starts null; it
            // returns FFmpeg's static codec descriptions, then null.
            let p = unsafe { ffi::av_codec_iterate(&mut cursor) };
            if p.is_null() {
                return None;
            }
            // SAFETY: `p` is one of FFmpeg's static codec descriptions.
            let (codec, capabilities) = unsafe { (Codec::wrap(p), (*p).capabilities) };
            let hardware = (capabilities as c_uint) & ffi::AV_CODEC_CAP_HARDWARE != 0;
            if codec.is_decoder() && codec.id() == id && !hardware && decodes_to_cuda(codec) {
                return Some(CudaDecoder {
                    codec,
                    is_default: false,
                });
            }
        }
    }

    /// Whether `codec` can decode to CUDA frames with a device context (FFmpeg's hwaccel).
    fn decodes_to_cuda(codec: Codec) -> bool {
        let method = ffi::AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX as c_int;
        for index in 0.. {
            // SAFETY: `codec` is a static codec description; configurations are indexed from
            // 0 until null.
            let config = unsafe { ffi::avcodec_get_hw_config(codec.as_ptr(), index) };
            if config.is_null() {
                return false;
            }
            // SAFETY: a non-null configuration is one of the codec's static entries.
            let config = unsafe { &*config };
            if config.methods & method != 0
                && config.device_type == ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA
                && config.pix_fmt == ffi::AVPixelFormat::AV_PIX_FMT_CUDA
            {
                return true;
            }
        }
        false
    }

    /// Readies the unopened decoder `context` for NVDEC on `device`; returns the decoder to
    /// open it with, or why NVDEC cannot decode `id`.
    pub(super) fn attach(
        context: &mut codec::Context,
        id: codec::Id,
        device: &Device,
    ) -> Result<CudaDecoder, String> {
        let decoder = cuda_decoder(id).ok_or_else(|| {
            format!(
                "this FFmpeg has no NVDEC decoder for {}; decoded on the CPU",
                id.name()
            )
        })?;
        let reference = device.new_ref()?;
        // SAFETY: the context is not opened yet, which is when these fields are set. The
        // context owns the reference from here (avcodec_free_context unreferences it, also
        // when opening fails), and it had none before (a fresh context).
        unsafe {
            let context = context.as_mut_ptr();
            (*context).hw_device_ctx = reference.as_ptr();
            (*context).get_format = Some(prefer_cuda);
        }
        Ok(decoder)
    }

    /// `get_format`: CUDA frames whenever FFmpeg offers them; else (the CUDA format is offered
    /// no more once NVDEC's setup declined the stream) FFmpeg's own choice, which is then the
    /// software format the CPU path gets.
    unsafe extern "C" fn prefer_cuda(
        context: *mut ffi::AVCodecContext,
        formats: *const ffi::AVPixelFormat,
    ) -> ffi::AVPixelFormat {
        let cuda = ffi::AVPixelFormat::AV_PIX_FMT_CUDA as c_int;
        let none = ffi::AVPixelFormat::AV_PIX_FMT_NONE as c_int;
        // Read as integers, not as the Rust enum: no value from C can be out of its range.
        let list = formats as *const c_int;
        let mut i = 0;
        // SAFETY: FFmpeg passes a list ending with AV_PIX_FMT_NONE.
        while unsafe { *list.add(i) } != none {
            if unsafe { *list.add(i) } == cuda {
                return ffi::AVPixelFormat::AV_PIX_FMT_CUDA;
            }
            i += 1;
        }
        // SAFETY: the arguments FFmpeg gave us, as the default expects them.
        unsafe { ffi::avcodec_default_get_format(context, formats) }
    }

    /// What the CPU decoder would output for the stream (the decoder keeps it in
    /// `sw_pix_fmt` while it decodes to CUDA frames).
    pub(super) fn software_format(decoder: &ffmpeg::decoder::Video) -> Pixel {
        // SAFETY: reads a plain field of the opened decoder's context.
        Pixel::from(unsafe { (*decoder.as_ptr()).sw_pix_fmt })
    }

    /// Refuses a device frame that would not match the CPU's: one NVDEC reports damaged, or
    /// one whose left or top crop FFmpeg could not apply (it crops device frames only on the
    /// right and bottom).
    pub(super) fn check_frame(frame: &frame::Video) -> Result<(), String> {
        // SAFETY: reads plain fields of a decoded frame.
        let (flags, errors, left, top) = unsafe {
            let f = frame.as_ptr();
            (
                (*f).flags,
                (*f).decode_error_flags,
                (*f).crop_left,
                (*f).crop_top,
            )
        };
        if flags & ffi::AV_FRAME_FLAG_CORRUPT != 0 || errors != 0 {
            return Err("NVDEC decoded a damaged frame".to_string());
        }
        if left != 0 || top != 0 {
            return Err(format!(
                "the stream crops {left} px left and {top} px top, which FFmpeg does not do on the device"
            ));
        }
        Ok(())
    }

    /// Copies a device frame into host memory (`host` is reset and reallocated by FFmpeg in
    /// the frames context's software format: NV12, P010, P016, YUV444P or YUV444P16).
    pub(super) fn transfer(
        device_frame: &frame::Video,
        host: &mut frame::Video,
    ) -> Result<(), String> {
        // SAFETY: `host` is ours; unreferencing it leaves a blank frame, which
        // av_hwframe_transfer_data allocates itself. `device_frame` is a decoded CUDA frame
        // (format checked by the caller) with its frames context. The copy is synchronous.
        let ret = unsafe {
            ffi::av_frame_unref(host.as_mut_ptr());
            ffi::av_hwframe_transfer_data(host.as_mut_ptr(), device_frame.as_ptr(), 0)
        };
        if ret < 0 {
            return Err(format!(
                "copying a frame from the GPU failed: {}",
                ffmpeg::Error::from(ret)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// A file of the repository's test media, tests/media (MMCURATE_MEDIA overrides the
    /// folder: on a GPU machine the test binary runs away from the checkout it was built in).
    fn media_path(name: &str) -> String {
        let dir = std::env::var("MMCURATE_MEDIA")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media").to_string());
        format!("{dir}/{name}")
    }

    fn media(name: &str) -> Vec<u8> {
        let path = media_path(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("test media {path}: {e}"))
    }

    /// The speech clip tests/media/make_speech.sh makes with espeak-ng and the ffmpeg CLI:
    /// 29.435 s (470,960 samples) of 16 kHz mono 16-bit PCM in a 44-byte-header WAV, about
    /// 24 s of speech with pauses, then silence.
    fn speech() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("speech.wav");
        let status = Command::new("bash")
            .arg(media_path("make_speech.sh"))
            .arg(&path)
            .status()
            .expect("bash runs");
        assert!(status.success(), "tests/media/make_speech.sh failed");
        std::fs::read(&path).expect("the speech clip")
    }

    /// Runs the ffmpeg CLI with `args` and returns the bytes of `output` (in `dir`).
    fn ffmpeg_cli(dir: &Path, args: &[&str], output: &str) -> Vec<u8> {
        let path = dir.join(output);
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-y"])
            .args(args)
            .arg(&path)
            .status()
            .expect("the ffmpeg CLI (scripts/setup.sh installs it)");
        assert!(status.success(), "ffmpeg {args:?} failed");
        std::fs::read(&path).expect("ffmpeg's output")
    }

    fn sampling(sample_fps: f64, scene_threshold: f64, max_frames: usize) -> FrameSampling {
        FrameSampling {
            sample_fps,
            scene_threshold,
            max_frames,
            min_side: 512,
            keep_rgb: false,
            cuda_device: None,
        }
    }

    fn corrupt_message(result: Result<impl std::fmt::Debug, DecodeError>) -> String {
        match result {
            Err(DecodeError::Corrupt { format, message }) => format!("{format}: {message}"),
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }

    #[test]
    fn probe_reads_the_video_containers() {
        let info = probe_media(&media("video/bigbuckbunny.mp4")).unwrap();
        assert_eq!(info.container, "mov,mp4,m4a,3gp,3g2,mj2");
        assert!(
            (info.duration_seconds.unwrap() - 5.312).abs() < 1e-3,
            "{info:?}"
        );
        assert_eq!(info.bit_rate, Some(1_589_963));
        let video = info.video.as_ref().unwrap();
        assert_eq!(
            (video.codec.as_str(), video.width, video.height),
            ("h264", 1280, 720)
        );
        assert_eq!(video.fps, Some(25.0));
        assert_eq!(video.frame_count, Some(132));
        assert!((video.duration_seconds.unwrap() - 5.28).abs() < 1e-3);
        let audio = info.audio.as_ref().unwrap();
        assert_eq!(
            (audio.codec.as_str(), audio.sample_rate, audio.channels),
            ("aac", 48_000, 6)
        );

        let info = probe_media(&media("video/carphone_pristine.mp4")).unwrap();
        let video = info.video.unwrap();
        assert_eq!(
            (video.width, video.height, video.frame_count),
            (176, 144, Some(120))
        );
        assert!((video.fps.unwrap() - 30_000.0 / 1001.0).abs() < 1e-9);
        assert_eq!(info.audio, None);

        let info = probe_media(&media("video/opencv_tree.avi")).unwrap();
        assert_eq!(info.container, "avi");
        let video = info.video.unwrap();
        assert_eq!(
            (video.codec.as_str(), video.width, video.height),
            ("cinepak", 320, 240)
        );
        assert_eq!(video.frame_count, Some(444));
        assert!((video.fps.unwrap() - 1_000_000.0 / 66_667.0).abs() < 1e-9);
        assert!((info.duration_seconds.unwrap() - 29.600148).abs() < 1e-3);
    }

    #[test]
    fn probe_reads_the_audio_containers_and_ignores_cover_art() {
        let info = probe_media(&media("audio/Kevin_MacLeod_-_Vibe_Ace.ogg")).unwrap();
        assert_eq!(info.container, "ogg");
        // The file embeds a 720x720 MJPEG cover: an attached picture, not a video.
        assert_eq!(info.video, None);
        let audio = info.audio.unwrap();
        assert_eq!(
            (audio.codec.as_str(), audio.sample_rate, audio.channels),
            ("vorbis", 44_100, 2)
        );
        assert!((info.duration_seconds.unwrap() - 61.458866).abs() < 1e-3);

        let info = probe_media(&speech()).unwrap();
        assert_eq!(info.container, "wav");
        assert_eq!(info.video, None);
        let audio = info.audio.unwrap();
        assert_eq!(
            (audio.codec.as_str(), audio.sample_rate, audio.channels),
            ("pcm_s16le", 16_000, 1)
        );
        assert!((info.duration_seconds.unwrap() - 29.435).abs() < 1e-3);

        let err = sample_video_frames(
            &media("audio/Kevin_MacLeod_-_Vibe_Ace.ogg"),
            &sampling(1.0, 0.0, 4),
        );
        assert!(corrupt_message(err).contains("no video stream"));
        let err = decode_audio(&media("video/carphone_pristine.mp4"), 16_000, 10.0, -60.0);
        assert!(corrupt_message(err).contains("no audio stream"));
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let mp4 = media("video/bigbuckbunny.mp4");
        let avi = media("video/opencv_tree.avi");
        let wav = speech();
        let text =
            b"This is a caption, not a video. It has words and no frames at all.\n".repeat(40);
        let zero = ffmpeg_cli(
            dir.path(),
            &["-f", "lavfi", "-i", "anullsrc", "-t", "0", "-f", "wav"],
            "zero.wav",
        );
        // With the index (moov) first, half a file opens and then runs out of samples.
        let faststart = ffmpeg_cli(
            dir.path(),
            &[
                "-i",
                &media_path("video/bikes.mp4"),
                "-c",
                "copy",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
            ],
            "faststart.mp4",
        );

        assert_eq!(probe_media(&[]), Err(DecodeError::Empty));
        assert_eq!(
            sample_video_frames(&[], &sampling(1.0, 0.0, 4)),
            Err(DecodeError::Empty)
        );
        assert_eq!(
            decode_audio(&[], 16_000, 10.0, -60.0),
            Err(DecodeError::Empty)
        );

        let cases: [(&str, &[u8]); 7] = [
            (
                "faststart mp4 cut in half",
                &faststart[..faststart.len() / 2],
            ),
            ("text", &text),
            ("mp4 cut in half", &mp4[..mp4.len() / 2]),
            ("mp4 header only", &mp4[..64]),
            ("avi cut in half", &avi[..avi.len() / 2]),
            ("wav header without data", &wav[..44]),
            ("wav with zero samples", &zero),
        ];
        for (name, bytes) in cases {
            let video = sample_video_frames(bytes, &sampling(1.0, 20.0, 8));
            assert!(
                matches!(video, Err(DecodeError::Corrupt { .. })),
                "{name}: {video:?}"
            );
            let audio = decode_audio(bytes, 16_000, 10.0, -60.0);
            assert!(
                matches!(audio, Err(DecodeError::Corrupt { .. })),
                "{name}: {audio:?}"
            );
        }
        // FFmpeg's own words reach the caller.
        assert!(corrupt_message(probe_media(&text)).contains("Invalid data found"));
        assert!(corrupt_message(sample_video_frames(
            &avi[..avi.len() / 2],
            &sampling(1.0, 0.0, 100)
        ))
        .contains("truncated"));
        assert!(
            corrupt_message(decode_audio(&wav[..44], 16_000, 10.0, -60.0))
                .contains("no audio samples")
        );
    }

    #[test]
    fn regular_samples_are_the_first_frames_at_each_second() {
        let bytes = media("video/bikes.mp4");
        let mut s = sampling(1.0, 0.0, 100);
        s.keep_rgb = true;
        let out = sample_video_frames(&bytes, &s).unwrap();
        assert!(out.skipped_non_reference);
        let times: Vec<f64> = out.frames.iter().map(|f| f.pts_seconds).collect();
        assert_eq!(times.len(), 10, "{times:?}");
        for (k, t) in times.iter().enumerate() {
            // The first decoded frame at or after k s; non-reference frames are skipped, so
            // it may be a few 40 ms frames late.
            assert!(*t >= k as f64 - 1e-9 && *t < k as f64 + 0.2, "{times:?}");
        }
        for f in &out.frames {
            assert!(!f.scene_cut);
            assert_eq!(
                (f.luma.width, f.luma.height, f.luma.pixels.len()),
                (640, 272, 640 * 272)
            );
            let rgb = f.rgb.as_ref().unwrap();
            assert_eq!(
                (rgb.width, rgb.height, rgb.pixels.len()),
                (640, 272, 640 * 272 * 3)
            );
        }
        assert!(
            out.decoded_frames > 10 && out.decoded_frames <= 250,
            "{}",
            out.decoded_frames
        );
        assert!(
            out.decoded_seconds >= 9.0 && out.decoded_seconds <= 10.0,
            "{}",
            out.decoded_seconds
        );
        // A moving camera: clearly not static.
        assert!(
            out.mean_frame_difference.unwrap() > 2.0,
            "{:?}",
            out.mean_frame_difference
        );

        // The same bytes give the same frames.
        assert_eq!(sample_video_frames(&bytes, &s).unwrap(), out);

        // Scaled so the shorter side is 128.
        let mut small = sampling(1.0, 0.0, 2);
        small.min_side = 128;
        let out = sample_video_frames(&bytes, &small).unwrap();
        assert_eq!(out.frames.len(), 2);
        assert_eq!(
            (out.frames[0].luma.width, out.frames[0].luma.height),
            (301, 128)
        );
        assert!(out.frames[0].rgb.is_none());
    }

    #[test]
    fn long_videos_spread_the_samples_over_their_whole_duration() {
        // 10 s at one sample per second but at most 4 frames: every 2.5 s, not 0..3 s.
        let out = sample_video_frames(&media("video/bikes.mp4"), &sampling(1.0, 0.0, 4)).unwrap();
        let times: Vec<f64> = out.frames.iter().map(|f| f.pts_seconds).collect();
        assert_eq!(times.len(), 4, "{times:?}");
        for (t, target) in times.iter().zip([0.0, 2.5, 5.0, 7.5]) {
            assert!(*t >= target - 1e-9 && *t < target + 0.2, "{times:?}");
        }
        // It stopped once the last target was passed.
        assert!(out.decoded_seconds < 8.0, "{}", out.decoded_seconds);

        // The 29.6 s AVI sampled at 2 fps with at most 10 frames: targets every 2.96 s. It
        // holds only 68 real frames (the rest are empty "repeat" packets), so each sample is
        // the next real frame; these times are ffprobe's packet times at or after each target.
        let out =
            sample_video_frames(&media("video/opencv_tree.avi"), &sampling(2.0, 0.0, 10)).unwrap();
        let times: Vec<f64> = out.frames.iter().map(|f| f.pts_seconds).collect();
        let expected = [
            0.0, 3.266683, 5.933363, 9.066712, 12.266728, 15.133409, 18.200091, 21.000105,
            24.066787, 26.933468,
        ];
        assert_eq!(times.len(), expected.len(), "{times:?}");
        for (t, e) in times.iter().zip(expected) {
            assert!((t - e).abs() < 1e-5, "{times:?}");
        }
    }

    #[test]
    fn seeking_to_far_targets_samples_the_frames_linear_decoding_finds() {
        // 60 s of video with a keyframe every 2 s; 4 samples spread 15 s apart, scene
        // detection off: the seeking path decodes a fraction of the frames.
        let dir = tempfile::tempdir().unwrap();
        let bikes = media_path("video/bikes.mp4");
        let long = ffmpeg_cli(
            dir.path(),
            &[
                "-stream_loop",
                "5",
                "-i",
                &bikes,
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "50",
                "-an",
            ],
            "long.mp4",
        );
        let sampling = sampling(1.0, 0.0, 4);
        let linear = sample_video_frames_seeking(&long, &sampling, f64::INFINITY).unwrap();
        let seeking = sample_video_frames(&long, &sampling).unwrap();
        assert_eq!(linear.seeks, 0);
        assert_eq!(
            seeking.seeks, 3,
            "targets at 15, 30 and 45 s are reached by seeking"
        );
        let times = |v: &VideoFrames| v.frames.iter().map(|f| f.pts_seconds).collect::<Vec<_>>();
        assert_eq!(times(&seeking), times(&linear));
        assert_eq!(times(&linear), [0.0, 15.0, 30.0, 45.0]);
        for (a, b) in seeking.frames.iter().zip(&linear.frames) {
            assert_eq!(a.luma, b.luma, "frame at {} s", a.pts_seconds);
        }
        assert!(
            seeking.decoded_frames * 2 < linear.decoded_frames,
            "seeking decoded {} frames, linear {}",
            seeking.decoded_frames,
            linear.decoded_frames
        );
    }

    #[test]
    fn a_hard_cut_is_found_at_its_frame() {
        let dir = tempfile::tempdir().unwrap();
        // 2 s of the test pattern, then 2 s of a colour: a cut at exactly 2.0 s (frame 50).
        let bytes = ffmpeg_cli(
            dir.path(),
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25:duration=2",
                "-f",
                "lavfi",
                "-i",
                "color=c=0x2040c0:size=320x240:rate=25:duration=2",
                "-filter_complex",
                "[0:v][1:v]concat=n=2:v=1[v]",
                "-map",
                "[v]",
                "-c:v",
                "mpeg4",
                "-q:v",
                "3",
                "-f",
                "mp4",
            ],
            "cut.mp4",
        );
        let out = sample_video_frames(&bytes, &sampling(1.0, 30.0, 10)).unwrap();
        assert!(!out.skipped_non_reference);
        assert_eq!(out.decoded_frames, 100);
        assert_eq!(out.scene_cuts.len(), 1, "{:?}", out.scene_cuts);
        assert!(
            (out.scene_cuts[0] - 2.0).abs() <= 0.04 + 1e-9,
            "{:?}",
            out.scene_cuts
        );
        let cuts: Vec<&SampledFrame> = out.frames.iter().filter(|f| f.scene_cut).collect();
        assert_eq!(cuts.len(), 1);
        assert_eq!(cuts[0].pts_seconds, out.scene_cuts[0]);
        // Regular samples at 0, 1, 2, 3 s; the one at 2 s is the cut frame itself.
        let times: Vec<f64> = out.frames.iter().map(|f| f.pts_seconds).collect();
        assert_eq!(times.len(), 4, "{times:?}");
        for (k, t) in times.iter().enumerate() {
            assert!((t - k as f64).abs() < 1e-6, "{times:?}");
        }
        // Without scene detection nothing is flagged.
        let plain = sample_video_frames(&bytes, &sampling(1.0, 0.0, 10)).unwrap();
        assert!(plain.scene_cuts.is_empty() && plain.frames.iter().all(|f| !f.scene_cut));

        // With room for 3 frames the regular samples (now every 4/3 s) keep all of them; the cut
        // is still reported.
        let tight = sample_video_frames(&bytes, &sampling(1.0, 30.0, 3)).unwrap();
        assert_eq!(tight.frames.len(), 3);
        assert_eq!(tight.scene_cuts.len(), 1);
    }

    #[test]
    fn a_static_video_has_no_motion_and_rgb_keeps_its_colour() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = ffmpeg_cli(
            dir.path(),
            &[
                "-f",
                "lavfi",
                "-i",
                "color=c=0xc02020:size=160x120:rate=10:duration=3",
                "-c:v",
                "mpeg4",
                "-q:v",
                "2",
                "-f",
                "avi",
            ],
            "static.avi",
        );
        let mut s = sampling(1.0, 10.0, 10);
        s.keep_rgb = true;
        let out = sample_video_frames(&bytes, &s).unwrap();
        assert_eq!(out.decoded_frames, 30);
        assert!(
            out.mean_frame_difference.unwrap() < 0.05,
            "{:?}",
            out.mean_frame_difference
        );
        assert!(out.scene_cuts.is_empty());
        assert_eq!(out.frames.len(), 3);
        let rgb = out.frames[0].rgb.as_ref().unwrap();
        let mean = |c: usize| {
            rgb.pixels
                .iter()
                .skip(c)
                .step_by(3)
                .map(|&v| v as f64)
                .sum::<f64>()
                / (160.0 * 120.0)
        };
        assert!(
            (mean(0) - 192.0).abs() < 6.0
                && (mean(1) - 32.0).abs() < 6.0
                && (mean(2) - 32.0).abs() < 6.0
        );
        // Luma of that red: about 0.299 R + 0.587 G + 0.114 B.
        let luma = &out.frames[0].luma;
        let y = luma.pixels.iter().map(|&v| v as f64).sum::<f64>() / luma.pixels.len() as f64;
        assert!(
            (y - (0.299 * 192.0 + 0.587 * 32.0 + 0.114 * 32.0)).abs() < 8.0,
            "{y}"
        );
    }

    #[test]
    fn a_reencoded_size_matches_ffmpegs_own_gray_output() {
        let dir = tempfile::tempdir().unwrap();
        // An odd width for the stride (318 is not a multiple of the 32/64-byte alignment).
        let bytes = ffmpeg_cli(
            dir.path(),
            &[
                "-i",
                &media_path("video/bikes.mp4"),
                "-t",
                "3",
                "-vf",
                "scale=318:136",
                "-c:v",
                "mpeg4",
                "-q:v",
                "2",
                "-an",
                "-f",
                "mp4",
            ],
            "small.mp4",
        );
        let info = probe_media(&bytes).unwrap();
        let video = info.video.unwrap();
        assert_eq!(
            (video.codec.as_str(), video.width, video.height),
            ("mpeg4", 318, 136)
        );
        assert!((info.duration_seconds.unwrap() - 3.0).abs() < 0.05);

        let out = sample_video_frames(&bytes, &sampling(1.0, 0.0, 1)).unwrap();
        let luma = &out.frames[0].luma;
        assert_eq!((luma.width, luma.height), (318, 136));
        let reference = ffmpeg_cli(
            dir.path(),
            &[
                "-i",
                &dir.path().join("small.mp4").to_string_lossy(),
                "-frames:v",
                "1",
                "-pix_fmt",
                "gray",
                "-f",
                "rawvideo",
            ],
            "first.gray",
        );
        assert_eq!(reference.len(), 318 * 136);
        let difference = mean_abs_difference(&reference, &luma.pixels);
        assert!(difference < 1.0, "{difference}");
    }

    /// Like [`ffmpeg_cli`], but `None` when there is no ffmpeg CLI or it cannot make the file
    /// (an encoder this FFmpeg lacks): for the GPU machine, which may have neither.
    fn try_ffmpeg_cli(dir: &Path, args: &[&str], output: &str) -> Option<Vec<u8>> {
        let path = dir.join(output);
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-y"])
            .args(args)
            .arg(&path)
            .status()
            .ok()?;
        status
            .success()
            .then(|| std::fs::read(&path).ok())
            .flatten()
    }

    /// Short clips of `bikes.mp4` re-encoded with `codec_args`, for the NVDEC tests.
    fn reencoded(dir: &Path, codec_args: &[&str], name: &str) -> Option<Vec<u8>> {
        let input = media_path("video/bikes.mp4");
        let args = [&["-i", input.as_str(), "-t", "2", "-an"][..], codec_args].concat();
        try_ffmpeg_cli(dir, &args, name)
    }

    /// The first `count` frames the CPU decoder gives, as it gives them.
    fn cpu_frames(bytes: &[u8], count: usize) -> Vec<frame::Video> {
        let mut media = open_media(bytes).unwrap();
        let index = video_stream_index(media.input()).unwrap();
        let context = {
            let stream = media.input().stream(index).unwrap();
            codec::Context::from_parameters(stream.parameters()).unwrap()
        };
        let mut decoder = context.decoder().video().unwrap();
        let mut frames = Vec::new();
        while frames.len() < count {
            let Some(packet) = next_packet(&mut media, index, "test").unwrap() else {
                break;
            };
            decoder.send_packet(&packet).unwrap();
            let mut frame = frame::Video::empty();
            while decoder.receive_frame(&mut frame).is_ok() {
                frames.push(std::mem::replace(&mut frame, frame::Video::empty()));
            }
        }
        frames.truncate(count);
        frames
    }

    /// What `av_hwframe_transfer_data` gives for a CPU frame's picture: the frames context's
    /// software format (FFmpeg's `ff_nvdec_frame_params`) with the samples laid out as NVDEC
    /// writes them (chroma interleaved for 4:2:0, 10 and 12 bits in the high bits of 16).
    fn as_nvdec_writes_it(cpu: &frame::Video) -> frame::Video {
        let (format, interleaved, shift) = match cpu.format() {
            Pixel::YUV420P | Pixel::YUVJ420P => (Pixel::NV12, true, 0),
            Pixel::YUV420P10LE => (Pixel::P010LE, true, 6),
            Pixel::YUV420P12LE => (Pixel::P016LE, true, 4),
            Pixel::YUV444P | Pixel::YUVJ444P => (Pixel::YUV444P, false, 0),
            Pixel::YUV444P10LE => (Pixel::YUV444P16LE, false, 6),
            Pixel::YUV444P12LE => (Pixel::YUV444P16LE, false, 4),
            other => panic!("no NVDEC layout for {other:?}"),
        };
        let wide = cpu.format() != Pixel::YUV420P
            && cpu.format() != Pixel::YUVJ420P
            && cpu.format() != Pixel::YUV444P
            && cpu.format() != Pixel::YUVJ444P;
        let bytes = if wide { 2 } else { 1 };
        let mut out = frame::Video::new(format, cpu.width(), cpu.height());
        let sample = |plane: usize, x: usize, y: usize| -> u16 {
            let i = y * cpu.stride(plane) + x * bytes;
            let data = cpu.data(plane);
            if wide {
                u16::from_le_bytes([data[i], data[i + 1]])
            } else {
                data[i] as u16
            }
        };
        let put = |out: &mut frame::Video, plane: usize, x: usize, y: usize, v: u16| {
            let stride = out.stride(plane);
            let data = out.data_mut(plane);
            let i = y * stride + x * bytes;
            if wide {
                data[i..i + 2].copy_from_slice(&(v << shift).to_le_bytes());
            } else {
                data[i] = v as u8;
            }
        };
        for plane in 0..3 {
            let (w, h) = (cpu.plane_width(plane), cpu.plane_height(plane));
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let v = sample(plane, x, y);
                    match (plane, interleaved) {
                        (0, _) | (_, false) => put(&mut out, plane, x, y, v),
                        (_, true) => put(&mut out, 1, 2 * x + plane - 1, y, v),
                    }
                }
            }
        }
        out
    }

    /// Each plane's rows (without stride padding) of a planar frame.
    fn planes(frame: &frame::Video, bytes: usize) -> Vec<Vec<u8>> {
        (0..frame.planes())
            .map(|p| {
                let row = frame.plane_width(p) as usize * bytes;
                (0..frame.plane_height(p) as usize)
                    .flat_map(|y| &frame.data(p)[y * frame.stride(p)..y * frame.stride(p) + row])
                    .copied()
                    .collect()
            })
            .collect()
    }

    /// The three conversions the sampler makes from a frame.
    fn conversions(frame: &frame::Video) -> [Vec<u8>; 3] {
        let (w, h) = (frame.width(), frame.height());
        let (sw, sh) = scaled_size(w, h, w.min(h) / 2);
        [
            Converter::new(scaling::Flags::AREA)
                .convert(frame, Pixel::GRAY8, THUMBNAIL_SIDE, THUMBNAIL_SIDE, 1)
                .unwrap(),
            Converter::new(scaling::Flags::AREA)
                .convert(frame, Pixel::GRAY8, sw, sh, 1)
                .unwrap(),
            Converter::new(scaling::Flags::BICUBIC)
                .convert(frame, Pixel::RGB24, w, h, 3)
                .unwrap(),
        ]
    }

    /// NVDEC's host copies, rearranged, are the CPU decoder's frames sample for sample, so the
    /// sampler's conversions give the same bytes (the GPU path's conversion, checked here on
    /// frames laid out as NVDEC writes them; the transfer itself needs a GPU, see
    /// `on_a_gpu_nvdec_gives_the_cpus_frames`).
    #[test]
    fn nvdec_layouts_rearranged_are_the_cpu_decoders_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut cases = vec![
            ("h264 yuv420p", media("video/bikes.mp4")),
            ("h264 176x144", media("video/carphone_pristine.mp4")),
        ];
        let encodes: [(&str, &[&str]); 6] = [
            (
                "h264 full range (yuvj420p), odd chroma width",
                &[
                    "-vf",
                    "scale=314:138",
                    "-c:v",
                    "libx264",
                    "-pix_fmt",
                    "yuvj420p",
                    "-f",
                    "mp4",
                ],
            ),
            (
                "h264 10-bit",
                &["-c:v", "libx264", "-pix_fmt", "yuv420p10le", "-f", "mp4"],
            ),
            (
                "hevc 12-bit",
                &[
                    "-c:v",
                    "libx265",
                    "-pix_fmt",
                    "yuv420p12le",
                    "-x265-params",
                    "log-level=none",
                    "-f",
                    "mp4",
                ],
            ),
            (
                "h264 4:4:4",
                &["-c:v", "libx264", "-pix_fmt", "yuv444p", "-f", "mp4"],
            ),
            (
                "hevc 4:4:4 10-bit",
                &[
                    "-c:v",
                    "libx265",
                    "-pix_fmt",
                    "yuv444p10le",
                    "-x265-params",
                    "log-level=none",
                    "-f",
                    "mp4",
                ],
            ),
            (
                "vp9 4:2:0",
                &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-f", "webm"],
            ),
        ];
        for (name, args) in encodes {
            let bytes = reencoded(dir.path(), args, &format!("{}.bin", name.replace(' ', "_")))
                .unwrap_or_else(|| panic!("ffmpeg could not make the {name} clip"));
            cases.push((name, bytes));
        }
        let mut formats = Vec::new();
        for (name, bytes) in &cases {
            let frames = cpu_frames(bytes, 3);
            assert_eq!(frames.len(), 3, "{name}");
            for cpu in &frames {
                let nvdec = as_nvdec_writes_it(cpu);
                let mut host = frame::Video::empty();
                to_cpu_layout(&nvdec, cpu.format(), &mut host).unwrap();
                assert_eq!(
                    (host.format(), host.width(), host.height()),
                    (cpu.format(), cpu.width(), cpu.height()),
                    "{name}"
                );
                let bytes = if matches!(nvdec.format(), Pixel::NV12 | Pixel::YUV444P) {
                    1
                } else {
                    2
                };
                assert!(
                    planes(&host, bytes) == planes(cpu, bytes),
                    "{name}: planes differ"
                );
                assert!(
                    conversions(&host) == conversions(cpu),
                    "{name}: conversions differ"
                );
            }
            formats.push(frames[0].format());
        }
        // Every layout NVDEC gives was met.
        for format in [
            Pixel::YUV420P,
            Pixel::YUVJ420P,
            Pixel::YUV420P10LE,
            Pixel::YUV420P12LE,
            Pixel::YUV444P,
            Pixel::YUV444P10LE,
        ] {
            assert!(
                formats.contains(&format),
                "{format:?} not covered: {formats:?}"
            );
        }
        // A pairing NVDEC does not give is an error, not a guess.
        let cpu = &cpu_frames(&cases[0].1, 1)[0];
        let nvdec = as_nvdec_writes_it(cpu);
        let mut host = frame::Video::empty();
        let e = to_cpu_layout(&nvdec, Pixel::YUV422P, &mut host).unwrap_err();
        assert!(e.contains("no exact conversion"), "{e}");
    }

    /// Which decoders NVDEC would use: FFmpeg's own where it has a CUDA hwaccel, the native
    /// AV1 decoder where libdav1d (no hwaccel) is the default, never a `*_cuvid` wrapper; and
    /// only the bit-exact codecs are sent to it. Configuration only: no GPU needed.
    #[test]
    fn nvdec_uses_ffmpegs_hwaccel_decoders_for_the_bit_exact_codecs() {
        init_ffmpeg().unwrap();
        for id in [
            codec::Id::H264,
            codec::Id::HEVC,
            codec::Id::VP8,
            codec::Id::VP9,
        ] {
            let decoder = nvdec::cuda_decoder(id).unwrap_or_else(|| panic!("{id:?}"));
            assert!(decoder.is_default, "{id:?}: {}", decoder.codec.name());
            assert_eq!(decoder.codec.name(), id.name());
        }
        let av1 = nvdec::cuda_decoder(codec::Id::AV1).unwrap();
        assert_eq!(av1.codec.name(), "av1");
        assert_eq!(
            av1.is_default,
            ffmpeg::decoder::find(codec::Id::AV1).unwrap().name() == "av1"
        );
        assert!(nvdec::cuda_decoder(codec::Id::CINEPAK).is_none());
        // MPEG-4 Part 2 has an NVDEC hwaccel, but its IDCT is not bit-exact: not used.
        assert!(nvdec::cuda_decoder(codec::Id::MPEG4).is_some());
        assert!(!NVDEC_CODECS.contains(&codec::Id::MPEG4));
    }

    /// On a machine without a GPU (this one), asking for NVDEC gives the CPU's very frames,
    /// says why, and tries to open the device once for all videos.
    #[test]
    fn asking_for_nvdec_without_a_gpu_gives_the_cpus_frames_and_says_why() {
        let bytes = media("video/bikes.mp4");
        let before = crate::decode::av::video_decoder_counts();
        for (threshold, keep_rgb) in [(0.0, true), (30.0, false)] {
            let mut cpu = sampling(1.0, threshold, 6);
            cpu.keep_rgb = keep_rgb;
            let asked = FrameSampling {
                cuda_device: Some(0),
                ..cpu.clone()
            };
            let reference = sample_video_frames(&bytes, &cpu).unwrap();
            let out = sample_video_frames(&bytes, &asked).unwrap();
            assert_eq!((reference.decoder, &reference.nvdec_fallback), (CPU, &None));
            assert_eq!(out.frames, reference.frames);
            assert_eq!(out.decoded_frames, reference.decoded_frames);
            assert_eq!(out.scene_cuts, reference.scene_cuts);
            assert_eq!(out.mean_frame_difference, reference.mean_frame_difference);
            assert_eq!(out.seeks, reference.seeks);
            if let Some(NvdecDeviceState { opened: Ok(()), .. }) = nvdec_device_state(0) {
                eprintln!("a GPU is here: NVDEC decoded the frames (the GPU test checks them)");
                assert_eq!(out.decoder, NVDEC);
                return;
            }
            assert_eq!(out.decoder, CPU);
            let state = nvdec_device_state(0).unwrap();
            let Err(reason) = &state.opened else {
                unreachable!()
            };
            assert_eq!(out.nvdec_fallback.as_ref(), Some(reason));
            assert!(
                reason.contains("CUDA") || reason.contains("libnvcuvid"),
                "{reason}"
            );
        }
        // Opened (or not) once, whatever the number of videos that asked.
        assert_eq!(nvdec_device_state(0).unwrap().attempts, 1);
        let after = crate::decode::av::video_decoder_counts();
        assert!(after.cpu >= before.cpu + 4, "{before:?} -> {after:?}");
        // Nothing asked for another device.
        assert_eq!(nvdec_device_state(7), None);
    }

    /// The GPU path itself, on a GPU: NVDEC decodes the shared H.264 videos (and, where the
    /// ffmpeg CLI can make them, HEVC, VP9, AV1, 10-bit and full-range clips) to exactly the
    /// CPU's sampled frames: luma and RGB with a maximum difference of 0, since these codecs
    /// decode bit-exactly and the frames go through the same conversion. Skipped (saying why)
    /// where no NVDEC device opens, as on machines without a GPU.
    #[test]
    fn on_a_gpu_nvdec_gives_the_cpus_frames() {
        if let Err(reason) = nvdec::device(0) {
            eprintln!("skipped: NVDEC cannot be used on cuda:0: {reason}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut cases: Vec<(String, Vec<u8>)> = [
            "video/bigbuckbunny.mp4",
            "video/bikes.mp4",
            "video/carphone_pristine.mp4",
        ]
        .iter()
        .map(|name| (name.to_string(), media(name)))
        .collect();
        let encodes: [(&str, &[&str]); 5] = [
            (
                "hevc",
                &[
                    "-c:v",
                    "libx265",
                    "-x265-params",
                    "log-level=none",
                    "-f",
                    "mp4",
                ],
            ),
            (
                "hevc 10-bit",
                &[
                    "-c:v",
                    "libx265",
                    "-pix_fmt",
                    "yuv420p10le",
                    "-x265-params",
                    "log-level=none",
                    "-f",
                    "mp4",
                ],
            ),
            (
                "vp9",
                &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-f", "webm"],
            ),
            (
                "av1",
                &["-c:v", "libaom-av1", "-cpu-used", "8", "-f", "mp4"],
            ),
            (
                "h264 full range",
                &["-c:v", "libx264", "-pix_fmt", "yuvj420p", "-f", "mp4"],
            ),
        ];
        for (name, args) in encodes {
            match reencoded(dir.path(), args, &format!("{}.bin", name.replace(' ', "_"))) {
                Some(bytes) => cases.push((name.to_string(), bytes)),
                None => eprintln!("no {name} clip: no ffmpeg CLI or encoder here"),
            }
        }
        for (name, bytes) in &cases {
            for threshold in [0.0, 30.0] {
                let mut cpu = sampling(2.0, threshold, 8);
                cpu.keep_rgb = true;
                let gpu = FrameSampling {
                    cuda_device: Some(0),
                    ..cpu.clone()
                };
                let reference = sample_video_frames(bytes, &cpu).unwrap();
                let out = sample_video_frames(bytes, &gpu).unwrap();
                assert_eq!(out.decoder, NVDEC, "{name}: {:?}", out.nvdec_fallback);
                assert_eq!(out.nvdec_fallback, None, "{name}");
                assert_eq!(out.frames.len(), reference.frames.len(), "{name}");
                for (a, b) in out.frames.iter().zip(&reference.frames) {
                    assert_eq!(a.pts_seconds, b.pts_seconds, "{name}");
                    let max_difference = |x: &[u8], y: &[u8]| {
                        assert_eq!(x.len(), y.len(), "{name}");
                        x.iter()
                            .zip(y)
                            .map(|(p, q)| p.abs_diff(*q))
                            .max()
                            .unwrap_or(0)
                    };
                    let luma = max_difference(&a.luma.pixels, &b.luma.pixels);
                    let (ra, rb) = (a.rgb.as_ref().unwrap(), b.rgb.as_ref().unwrap());
                    let rgb = max_difference(&ra.pixels, &rb.pixels);
                    assert_eq!(
                        (luma, rgb),
                        (0, 0),
                        "{name}, scene threshold {threshold}: frame at {} s",
                        a.pts_seconds
                    );
                }
                assert_eq!(out.decoded_frames, reference.decoded_frames, "{name}");
                assert_eq!(out.scene_cuts, reference.scene_cuts, "{name}");
                assert_eq!(out.mean_frame_difference, reference.mean_frame_difference);
            }
        }
        // A codec NVDEC does not decode exactly stays on the CPU, saying why.
        let mut asked = sampling(1.0, 0.0, 4);
        asked.cuda_device = Some(0);
        let avi = sample_video_frames(&media("video/opencv_tree.avi"), &asked).unwrap();
        assert_eq!(avi.decoder, CPU);
        assert!(avi.nvdec_fallback.unwrap().contains("bit-exact"));
        assert!(crate::decode::av::video_decoder_counts().nvdec > 0);
    }

    /// The one-call resampling from before [`MonoResampler`], kept as the reference it must
    /// reproduce bit for bit.
    fn resample_mono(mono: &[f32], from_rate: u32, to_rate: u32) -> Result<Vec<f32>, DecodeError> {
        if mono.is_empty() || from_rate == to_rate {
            return Ok(mono.to_vec());
        }
        let err = |e: ffmpeg::Error| ffmpeg_error("swresample", e);
        let format = Sample::F32(ffmpeg::format::sample::Type::Packed);
        let mut resampler = resampling::Context::get(
            format,
            ChannelLayout::MONO,
            from_rate,
            format,
            ChannelLayout::MONO,
            to_rate,
        )
        .map_err(err)?;
        let mut input = frame::Audio::new(format, mono.len(), ChannelLayout::MONO);
        input.set_rate(from_rate);
        if input.planes() == 0 {
            return Err(ffmpeg_error(
                "swresample",
                "could not allocate the input frame",
            ));
        }
        for (dst, s) in input.data_mut(0).chunks_exact_mut(4).zip(mono) {
            dst.copy_from_slice(&s.to_ne_bytes());
        }
        let expected = (mono.len() as u64 * to_rate as u64 / from_rate as u64) as usize;
        let mut out = Vec::with_capacity(expected + 64);
        let take = |frame: &frame::Audio, out: &mut Vec<f32>| {
            if frame.planes() > 0 {
                let bytes = frame.data(0);
                let n = (frame.samples() * 4).min(bytes.len());
                out.extend(
                    bytes[..n]
                        .chunks_exact(4)
                        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
        };
        let mut output = frame::Audio::new(format, expected + 256, ChannelLayout::MONO);
        resampler.run(&input, &mut output).map_err(err)?;
        take(&output, &mut out);
        // The filter's delay line still holds the last samples.
        loop {
            let mut tail = frame::Audio::new(format, 4096, ChannelLayout::MONO);
            resampler.flush(&mut tail).map_err(err)?;
            if tail.samples() == 0 {
                break;
            }
            take(&tail, &mut out);
        }
        Ok(out)
    }

    /// Resampling in pieces gives the very samples of one call over all of them, whatever the
    /// rates and wherever the pieces are cut (chunks of RESAMPLE_CHUNK and the pieces pushed
    /// do not line up).
    #[test]
    fn resampling_in_pieces_is_bit_identical() {
        let dir = tempfile::tempdir().unwrap();
        let raw = ffmpeg_cli(
            dir.path(),
            &[
                "-i",
                &media_path("audio/Kevin_MacLeod_-_Vibe_Ace.ogg"),
                "-t",
                "7",
                "-ac",
                "1",
                "-f",
                "f32le",
            ],
            "music.f32",
        );
        let mono: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(mono.len(), 7 * 44_100);
        for (from, to) in [
            (44_100, 11_025),
            (48_000, 11_025),
            (8_000, 11_025),
            (44_100, 16_000),
        ] {
            let whole = resample_mono(&mono, from, to).unwrap();
            for piece in [1152, 4096, 1000, RESAMPLE_CHUNK + 1] {
                let mut resampler = MonoResampler::new(from, to, mono.len()).unwrap();
                for part in mono.chunks(piece) {
                    resampler.push(part).unwrap();
                }
                let pieces = resampler.finish().unwrap();
                assert_eq!(
                    pieces.len(),
                    whole.len(),
                    "{from} -> {to}, pieces of {piece}"
                );
                assert!(
                    pieces
                        .iter()
                        .zip(&whole)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{from} -> {to}, pieces of {piece}"
                );
            }
        }
        let mut same = MonoResampler::new(16_000, 16_000, 10).unwrap();
        same.push(&mono[..1000]).unwrap();
        same.push(&mono[1000..3000]).unwrap();
        assert_eq!(same.finish().unwrap(), mono[..3000]);
    }

    #[test]
    fn a_sine_at_minus_6_dbfs_peaks_at_one_half() {
        let dir = tempfile::tempdir().unwrap();
        // lavfi's sine is at 1/8 of full scale: times 4 is 0.5, -6 dBFS.
        let args = [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000:duration=2",
            "-af",
            "volume=4,pan=stereo|c0=c0|c1=c0",
        ];
        let wav = ffmpeg_cli(
            dir.path(),
            &[&args[..], &["-c:a", "pcm_s16le", "-f", "wav"]].concat(),
            "sine.wav",
        );
        let audio = decode_audio(&wav, 16_000, 60.0, -60.0).unwrap();
        assert_eq!(
            (audio.sample_rate, audio.channels, audio.analysis_rate),
            (48_000, 2, 16_000)
        );
        assert_eq!(audio.frames, 96_000);
        assert!(!audio.truncated);
        assert!((audio.decoded_seconds - 2.0).abs() < 1e-9);
        assert_eq!(audio.levels.duration_s, audio.decoded_seconds);
        // A peak of 0.5 ± 0.005, and the RMS of a 0.5 sine, 0.5/sqrt(2) (-9.03 dBFS).
        let peak = 10f64.powf(audio.levels.peak_dbfs / 20.0);
        assert!((peak - 0.5).abs() < 0.005, "{peak}");
        let rms = 10f64.powf(audio.levels.rms_dbfs / 20.0);
        assert!((rms - 0.5 / 2f64.sqrt()).abs() < 0.005, "{rms}");
        assert_eq!(audio.levels.window_count, 40);
        assert_eq!(audio.levels.silence_fraction, 0.0);
        assert!(
            (audio.mono.len() as i64 - 32_000).abs() <= 32,
            "{}",
            audio.mono.len()
        );
        let mono_peak = audio.mono.iter().fold(0f32, |m, &v| m.max(v.abs()));
        assert!((mono_peak - 0.5).abs() < 0.02, "{mono_peak}");
        // 1 kHz: two zero crossings per period, 4000 in 2 s.
        let crossings = audio
            .mono
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        assert!((crossings as i64 - 4000).abs() <= 4, "{crossings}");

        // The same through AAC (planar float frames): same level, same length within a frame.
        let m4a = ffmpeg_cli(
            dir.path(),
            &[&args[..], &["-c:a", "aac", "-b:a", "192k", "-f", "mp4"]].concat(),
            "sine.m4a",
        );
        let aac = decode_audio(&m4a, 16_000, 60.0, -60.0).unwrap();
        assert_eq!((aac.sample_rate, aac.channels), (48_000, 2));
        assert!(
            (aac.decoded_seconds - 2.0).abs() < 0.05,
            "{}",
            aac.decoded_seconds
        );
        // The encoder's onset ringing overshoots the peak; the RMS of a 0.5 sine is 0.5/sqrt(2).
        let rms = 10f64.powf(aac.levels.rms_dbfs / 20.0);
        assert!((rms - 0.5 / 2f64.sqrt()).abs() < 0.01, "{rms}");
    }

    #[test]
    fn real_audio_decodes_to_its_declared_length() {
        let speech = decode_audio(&speech(), 16_000, 600.0, -50.0).unwrap();
        assert_eq!((speech.sample_rate, speech.channels), (16_000, 1));
        assert_eq!(speech.frames, 470_960); // 29.435 s x 16 kHz
        assert!(!speech.truncated);
        // Mono at the analysis rate: `mono` is the native samples, and the levels measured
        // while decoding are theirs, bit for bit.
        assert_eq!(speech.mono.len(), speech.frames);
        let levels = crate::measure::audio::audio_levels(&speech.mono, 1, 16_000, -50.0);
        assert_eq!(format!("{:?}", speech.levels), format!("{levels:?}"));
        assert!(speech.levels.silence_fraction > 0.0 && speech.levels.silence_fraction < 1.0);

        let music = decode_audio(
            &media("audio/Kevin_MacLeod_-_Vibe_Ace.ogg"),
            22_050,
            10.0,
            -60.0,
        )
        .unwrap();
        assert_eq!((music.sample_rate, music.channels), (44_100, 2));
        assert!(music.truncated);
        assert_eq!(music.frames, 441_000);
        assert_eq!(music.levels.duration_s, 10.0);
        assert_eq!(music.levels.window_count, 200);
        assert!((music.decoded_seconds - 10.0).abs() < 1e-9);
        assert!(
            (music.mono.len() as i64 - 220_500).abs() <= 64,
            "{}",
            music.mono.len()
        );
        let rms = 10f64.powf(music.levels.rms_dbfs / 20.0);
        assert!(rms > 0.01 && rms < 0.7, "{rms}");

        // The AAC 5.1 track of the video file.
        let surround =
            decode_audio(&media("video/bigbuckbunny.mp4"), 16_000, 600.0, -60.0).unwrap();
        assert_eq!((surround.sample_rate, surround.channels), (48_000, 6));
        assert!(
            (surround.decoded_seconds - 5.312).abs() < 0.05,
            "{}",
            surround.decoded_seconds
        );
    }

    /// Every path frees what FFmpeg allocated: 200 more rounds of each call must not grow the
    /// resident set (reusing one `Packet` across `av_read_frame` calls once leaked every
    /// packet here). Ignored because other tests running beside it move the RSS; run it alone:
    /// `cargo test --lib decode::av::tests::no_leaks -- --ignored --test-threads 1`.
    #[test]
    #[ignore]
    fn no_leaks() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        let mp4 = media("video/carphone_pristine.mp4");
        let wav = speech();
        let text = b"hello hello hello".repeat(100);
        type Op<'a> = Box<dyn Fn() + 'a>;
        let ops: Vec<(&str, Op)> = vec![
            ("probe", Box::new(|| drop(probe_media(&mp4)))),
            ("probe text", Box::new(|| drop(probe_media(&text)))),
            (
                "probe half",
                Box::new(|| drop(probe_media(&mp4[..mp4.len() / 2]))),
            ),
            (
                "sample",
                Box::new(|| drop(sample_video_frames(&mp4, &sampling(2.0, 20.0, 4)))),
            ),
            (
                "sample with nvdec asked",
                Box::new(|| {
                    let mut s = sampling(2.0, 20.0, 4);
                    s.cuda_device = Some(0);
                    drop(sample_video_frames(&mp4, &s))
                }),
            ),
            (
                "audio",
                Box::new(|| drop(decode_audio(&wav, 16_000, 10.0, -60.0))),
            ),
            (
                "audio header",
                Box::new(|| drop(decode_audio(&wav[..44], 16_000, 10.0, -60.0))),
            ),
        ];
        for (name, op) in &ops {
            for _ in 0..20 {
                op();
            }
            let before = rss_kib();
            for _ in 0..200 {
                op();
            }
            let after = rss_kib();
            assert!(after < before + 4096, "{name}: RSS {before} -> {after} KiB");
        }
    }

    /// Decode speed, for the record (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn decode_speed() {
        let bytes = media("video/bigbuckbunny.mp4");
        for threshold in [0.0, 30.0] {
            let start = std::time::Instant::now();
            let out = sample_video_frames(&bytes, &sampling(1.0, threshold, 1000)).unwrap();
            let seconds = start.elapsed().as_secs_f64();
            eprintln!(
                "bigbuckbunny 1280x720, scene threshold {threshold}: {} frames in {seconds:.3} s = {:.0} frames/s",
                out.decoded_frames,
                out.decoded_frames as f64 / seconds
            );
        }
    }
}
