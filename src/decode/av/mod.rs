//! Video and audio decoding through FFmpeg (the `ffmpeg-next` bindings), straight from the bytes
//! in memory: [`probe_media`] reads the container header, [`sample_video_frames`] decodes the
//! video lane into a few sampled frames (regular times plus scene cuts) and a motion score, and
//! [`decode_audio`] decodes the audio lane to f32 at its own rate and a mono analysis rate.
//! Video decodes with NVDEC (FFmpeg's CUDA hardware acceleration) when
//! [`FrameSampling::cuda_device`] asks for it and the GPU can decode the stream, else on the
//! CPU, the reference, per video ([`VideoFrames::decoder`] says which). It does not measure or
//! judge anything, writes no temp files, and seeks only to far targets with scene detection off.
//!
//! FFmpeg comes with the `av` cargo feature (on by default). A binary built without it
//! (`--no-default-features`) needs no FFmpeg library to start; its functions here then refuse
//! every file with a message saying so, and such samples are dropped as unreadable.

use crate::pixels::{LumaImage, RgbImage};

#[cfg(feature = "av")]
mod ffmpeg;
// Without FFmpeg nothing samples frames; the logic stays compiled and tested.
#[cfg_attr(not(feature = "av"), allow(dead_code))]
mod sampler;
#[cfg(feature = "av")]
pub use ffmpeg::{decode_audio, nvdec_device_state, probe_media, sample_video_frames};

use std::sync::atomic::{AtomicU64, Ordering};

/// [`VideoFrames::decoder`] of a video whose frames came from NVDEC.
pub const NVDEC: &str = "nvdec";
/// [`VideoFrames::decoder`] of a video decoded by FFmpeg's software decoder.
pub const CPU: &str = "cpu";

/// What the container says, without decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    /// FFmpeg's demuxer name as it reports it, e.g. `"mov,mp4,m4a,3gp,3g2,mj2"`, `"ogg"`, `"wav"`.
    pub container: String,
    /// The container's duration, when it declares one.
    pub duration_seconds: Option<f64>,
    /// The container's overall bit rate in bits per second, when known.
    pub bit_rate: Option<u64>,
    /// The best video stream (FFmpeg's `av_find_best_stream`), never an attached picture (cover
    /// art): a music file with a cover has `video: None`.
    pub video: Option<VideoStreamInfo>,
    /// The best audio stream.
    pub audio: Option<AudioStreamInfo>,
}

/// The chosen video stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoStreamInfo {
    /// FFmpeg's codec name, e.g. `"h264"`, `"cinepak"`.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// The average frame rate, else the base frame rate, when the container gives one.
    pub fps: Option<f64>,
    /// The frame count the container declares (`nb_frames`); many formats do not.
    pub frame_count: Option<u64>,
    /// The stream's own duration, when declared (may differ from the container's).
    pub duration_seconds: Option<f64>,
}

/// The chosen audio stream.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioStreamInfo {
    /// FFmpeg's codec name, e.g. `"aac"`, `"vorbis"`, `"pcm_s16le"`.
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    /// The stream's own duration, when declared.
    pub duration_seconds: Option<f64>,
}

/// Which frames to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameSampling {
    /// Regular samples per second of video (e.g. 1.0); 0 (or not finite) takes no regular
    /// samples, only scene cuts.
    pub sample_fps: f64,
    /// A cut is a decoded frame whose 64x64 luma thumbnail differs from the previous decoded
    /// frame's by a mean absolute difference (0-255 scale) of at least this; 0 turns scene
    /// detection off.
    pub scene_threshold: f64,
    /// At most this many sampled frames in all (regular and cuts).
    pub max_frames: usize,
    /// The sampled luma is scaled so its shorter side is `min(min_side, original)`, aspect kept;
    /// 0 keeps the original size.
    pub min_side: u32,
    /// Also return each sampled frame as packed RGB24 at its original size.
    pub keep_rgb: bool,
    /// Decode with NVDEC on this CUDA device (its ordinal) when it can decode the stream
    /// exactly; `None` decodes on the CPU. Either way the sampled frames are the same: NVDEC is
    /// used only for codecs whose decoding is bit-exact by specification (H.264, HEVC, VP8,
    /// VP9, AV1), and any video it cannot decode cleanly is decoded again on the CPU.
    pub cuda_device: Option<usize>,
}

/// One sampled frame.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledFrame {
    /// Presentation time in seconds from the stream's start time.
    pub pts_seconds: f64,
    /// Sampled because it starts a new scene (it may also be a regular sample).
    pub scene_cut: bool,
    /// Luminance (swscale GRAY8, area filter) at the scaled size of [`FrameSampling::min_side`].
    pub luma: LumaImage,
    /// The frame in RGB24 at its original size, when [`FrameSampling::keep_rgb`].
    pub rgb: Option<RgbImage>,
}

/// What [`sample_video_frames`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrames {
    /// The sampled frames, in time order.
    pub frames: Vec<SampledFrame>,
    /// Frames the decoder produced (without non-reference frames when those were skipped, see
    /// [`sample_video_frames`]).
    pub decoded_frames: u64,
    /// Timestamps of every detected cut, also those not sampled because of `max_frames`.
    pub scene_cuts: Vec<f64>,
    /// The motion score: the mean over consecutive decoded-frame pairs of their thumbnail
    /// difference (static video or slideshow ≈ 0). `None` with fewer than two decoded frames.
    pub mean_frame_difference: Option<f64>,
    /// The span from the first to the last decoded timestamp.
    pub decoded_seconds: f64,
    /// Whether non-reference frames were skipped (scene detection off): the motion score is
    /// then over consecutive reference frames, which are further apart.
    pub skipped_non_reference: bool,
    /// Seeks made to reach targets far ahead (scene detection off); the motion score is then
    /// over the consecutive frames between seeks.
    pub seeks: u32,
    /// Which decoder produced the frames: [`NVDEC`] or [`CPU`].
    pub decoder: &'static str,
    /// Why NVDEC, though asked for ([`FrameSampling::cuda_device`]), did not decode this
    /// video, e.g. no CUDA device, a codec it does not decode exactly, or a decode error on the
    /// device; `None` when it did or was not asked.
    pub nvdec_fallback: Option<String>,
}

/// How many videos [`sample_video_frames`] decoded with each decoder in this process (each
/// call that returned frames counts once, so a video sampled again for CLIP counts twice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoDecoderCounts {
    pub nvdec: u64,
    pub cpu: u64,
}

static NVDEC_VIDEOS: AtomicU64 = AtomicU64::new(0);
static CPU_VIDEOS: AtomicU64 = AtomicU64::new(0);

/// The process-wide counts of videos decoded by NVDEC and by the CPU, for the run's report.
pub fn video_decoder_counts() -> VideoDecoderCounts {
    VideoDecoderCounts {
        nvdec: NVDEC_VIDEOS.load(Ordering::Relaxed),
        cpu: CPU_VIDEOS.load(Ordering::Relaxed),
    }
}

#[cfg(feature = "av")]
fn count_video_decoded(decoder: &str) {
    let counter = if decoder == NVDEC {
        &NVDEC_VIDEOS
    } else {
        &CPU_VIDEOS
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What became of opening a CUDA device for NVDEC: tried once per device and process, the
/// outcome kept (a machine without a GPU does not try again for every video).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvdecDeviceState {
    /// `Err` says why the device cannot decode video.
    pub opened: Result<(), String>,
    /// How many times opening it was attempted: 1 once tried, however many videos asked.
    pub attempts: u32,
}

/// Where [`decode_audio`] hands the native-rate samples as it decodes them: a level meter in
/// `measure` (decoding measures nothing itself, and keeping every sample cost more than
/// decoding them).
pub trait AudioSink {
    /// Called once, before any samples, with the stream's channel count and rate.
    fn start(&mut self, channels: u32, sample_rate: u32);
    /// The next interleaved f32 samples (full scale ±1.0), whole frames of `channels` each.
    fn push(&mut self, interleaved: &[f32]);
}

/// Decoded audio: what was decoded (its samples went to the caller's [`AudioSink`]) and the
/// mono analysis signal.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// The stream's own rate and channel count.
    pub sample_rate: u32,
    pub channels: u32,
    /// Native-rate frames (one sample per channel) decoded and handed to the sink.
    pub frames: usize,
    /// The rate of `mono`.
    pub analysis_rate: u32,
    /// The mean of the channels, resampled (swresample) to `analysis_rate`: the fingerprint
    /// uses this.
    pub mono: Vec<f32>,
    /// Seconds decoded and handed to the sink (`frames / sample_rate`).
    pub decoded_seconds: f64,
    /// Decoding stopped at `max_seconds` with more audio left.
    pub truncated: bool,
}

/// Without FFmpeg: every call says what to do instead.
#[cfg(not(feature = "av"))]
mod without_ffmpeg {
    use super::*;
    use crate::decode::DecodeError;

    fn unavailable() -> DecodeError {
        DecodeError::Corrupt {
            format: "FFmpeg".to_string(),
            message: "this mmcurate was built without FFmpeg (the `av` cargo feature), so it \
                      cannot read video or audio: use a build with the default features"
                .to_string(),
        }
    }

    pub fn probe_media(_bytes: &[u8]) -> Result<MediaInfo, DecodeError> {
        Err(unavailable())
    }

    pub fn sample_video_frames(
        _bytes: &[u8],
        _sampling: &FrameSampling,
    ) -> Result<VideoFrames, DecodeError> {
        Err(unavailable())
    }

    pub fn decode_audio(
        _bytes: &[u8],
        _analysis_rate: u32,
        _max_seconds: f64,
        _sink: &mut dyn AudioSink,
    ) -> Result<DecodedAudio, DecodeError> {
        Err(unavailable())
    }

    /// Without FFmpeg no device is ever opened for NVDEC.
    pub fn nvdec_device_state(_ordinal: usize) -> Option<NvdecDeviceState> {
        None
    }
}
#[cfg(not(feature = "av"))]
pub use without_ffmpeg::{decode_audio, nvdec_device_state, probe_media, sample_video_frames};
