//! Video decoding: the best video stream decoded from its start (seeking to far targets with
//! scene detection off), each decoded frame handed to the sampler's choices
//! (`decode::av::sampler`) and the chosen ones converted by swscale to luma and RGB. NVDEC's
//! part (opening the device, bringing frames to host memory) is [`super::nvdec`]'s.

use ffmpeg::codec;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame;
use ffmpeg::{Discard, Rational};
use ffmpeg_next as ffmpeg;

use super::memory_io::codec_parameters;
use super::nvdec::{self, HostFrames};
use super::{
    container_name, ffmpeg_error, next_packet, open_media, positive_seconds, rational_value,
    video_stream_index, MIN_DECODED_SHARE,
};
use crate::decode::av::sampler::{scaled_size, FrameSelector, THUMBNAIL_SIDE};
use crate::decode::av::{
    count_video_decoded, FrameSampling, SampledFrame, VideoFrames, CPU, NVDEC,
};
use crate::decode::DecodeError;
use crate::pixels::{LumaImage, RgbImage};

/// A swscale context for one conversion, rebuilt when the input frames change size or format.
pub(super) struct Converter {
    context: Option<scaling::Context>,
    output: (Pixel, u32, u32),
    flags: scaling::Flags,
}

impl Converter {
    pub(super) fn new(flags: scaling::Flags) -> Self {
        Converter {
            context: None,
            output: (Pixel::None, 0, 0),
            flags,
        }
    }

    /// Converts `input` to `format` at `width` x `height` and returns the rows without
    /// padding (`bytes_per_pixel` bytes per pixel).
    pub(super) fn convert(
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

/// The per-frame work of [`sample_video_frames`]: the thumbnail for the selector's choice,
/// then the chosen frames' luma and RGB.
struct FrameSampler<'s> {
    sampling: &'s FrameSampling,
    selector: FrameSelector,
    thumbnail: Converter,
    luma: Converter,
    rgb: Converter,
    frames: Vec<SampledFrame>,
}

impl FrameSampler<'_> {
    /// Takes one decoded frame; returns false once nothing more is needed.
    fn push(&mut self, frame: &frame::Video, seconds: f64) -> Result<bool, DecodeError> {
        let thumbnail =
            self.thumbnail
                .convert(frame, Pixel::GRAY8, THUMBNAIL_SIDE, THUMBNAIL_SIDE, 1)?;
        let choice = self.selector.choose(seconds, thumbnail);
        if choice.take {
            self.sample(frame, seconds, choice.scene_cut)?;
        }
        Ok(self.selector.wants_more())
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
            Some(RgbImage {
                width: frame.width(),
                height: frame.height(),
                pixels,
            })
        } else {
            None
        };
        self.frames.push(SampledFrame {
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
pub(super) const NVDEC_CODECS: [codec::Id; 5] = [
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
            Err(reason) => nvdec_fallback = Some(reason.to_string()),
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
                Err(reason) => nvdec_fallback = Some(reason.to_string()),
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
        selector: FrameSelector::new(sampling, duration),
        thumbnail: Converter::new(scaling::Flags::AREA),
        luma: Converter::new(scaling::Flags::AREA),
        rgb: Converter::new(scaling::Flags::BICUBIC),
        frames: Vec::new(),
    };
    let mut seeks = 0;

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
        // Only with scene detection off: a cut is only found with every frame decoded. Not
        // while catching up after a seek (`decoded_up_to`): a seek that lands on a keyframe
        // behind the position reached would otherwise be repeated before every packet, for
        // ever, on a video whose keyframes are far apart.
        if skip_non_reference && decoded_up_to.is_none() {
            let position = previous_seconds.unwrap_or(0.0);
            if let Some(target) = sampler.selector.next_target() {
                if target - position > seek_min_gap {
                    let timestamp =
                        ((start_seconds + target) * f64::from(ffmpeg::ffi::AV_TIME_BASE)) as i64;
                    // At or before the target (max = timestamp): the first frame decoded
                    // after it whose time reaches the target is the one linear decoding finds.
                    if media.input_mut().seek(timestamp, ..timestamp).is_ok() {
                        decoder.flush();
                        // The frames on either side of a seek are not consecutive.
                        sampler.selector.seeked();
                        decoded_up_to = previous_seconds;
                        seeks += 1;
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
            crate::decode::budget::check_frames(sampler.selector.decoded_frames())?;
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

    if sampler.selector.decoded_frames() == 0 {
        let message = first_error.unwrap_or_else(|| "no video frame could be decoded".to_string());
        return Err(ffmpeg_error(&codec_name, message));
    }
    if reached_end && wanted {
        if let Some(declared) = duration {
            let frame_period = fps.map_or(0.0, |f| 1.0 / f);
            let end = sampler.selector.last_seconds() + frame_period;
            if end < declared * MIN_DECODED_SHARE - 0.1 {
                return Err(ffmpeg_error(
                    &container,
                    format!("truncated: the video stream ends at {end:.2} s of the {declared:.2} s it declares"),
                ));
            }
        }
    }
    let summary = sampler.selector.finish();
    let mut out = VideoFrames {
        frames: sampler.frames,
        decoded_frames: summary.decoded_frames,
        scene_cuts: summary.scene_cuts,
        mean_frame_difference: summary.mean_frame_difference,
        decoded_seconds: summary.decoded_seconds,
        skipped_non_reference: skip_non_reference,
        seeks,
        decoder: CPU,
        nvdec_fallback,
    };
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

#[cfg(test)]
mod tests {
    use super::super::probe_media;
    use super::super::test_support::*;
    use super::*;
    use crate::decode::av::sampler::mean_abs_difference;

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
    fn a_seek_landing_behind_the_position_reached_is_not_repeated_for_ever() {
        // The run report's strip of 5 frames over this AVI's 29.6 s, whose keyframes are far
        // apart: each seek landed behind the frames already decoded, and before this fix the
        // next packet seeked again, for ever. The budget turns a regression into an error.
        let avi = media("video/opencv_tree.avi");
        let _budget = crate::decode::budget::enter(crate::decode::budget::Budget::starting_now(
            120.0, 100_000,
        ));
        let sampling = sampling(5.0 / 29.6, 0.0, 5);
        let seeking = sample_video_frames(&avi, &sampling).unwrap();
        let linear = sample_video_frames_seeking(&avi, &sampling, f64::INFINITY).unwrap();
        let times = |v: &VideoFrames| v.frames.iter().map(|f| f.pts_seconds).collect::<Vec<_>>();
        assert_eq!(times(&seeking), times(&linear));
        assert_eq!(seeking.frames.len(), 5);
        for (a, b) in seeking.frames.iter().zip(&linear.frames) {
            assert_eq!(a.luma, b.luma, "frame at {} s", a.pts_seconds);
        }
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
}
