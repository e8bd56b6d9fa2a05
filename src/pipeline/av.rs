//! The video and audio lane of the per-sample judgement: probe the container, check its
//! header against `[filters.video]` / `[filters.audio]`, decode only what measuring needs
//! (sampled frames, the first `max_analysis_seconds` of audio), measure, and check the
//! measurements. Cheap before expensive, as for images; every problem is a dropped sample.

use crate::config::Config;
use crate::decide::filters::{
    check_audio_header, check_audio_levels, check_caption, check_video_header, check_video_quality,
};
use crate::decide::{Decision, Drop, Reason, Stage};
use crate::decode::av::{
    probe_media, sample_video_frames, FrameSampling, MediaInfo, VideoStreamInfo,
};
use crate::decode::{check_container_complete, AvContainer};
use crate::measure::audio::{decode_audio_levels, fingerprint, FINGERPRINT_RATE};
use crate::measure::video::{mean_brightness, measure_video};
use crate::measure::{AudioMeasurements, Measurements, QualityKernels, ANALYSIS_SHORT_SIDE};
use crate::source::Sample;

/// What the judgement of a sample produced.
pub struct Judged {
    pub decision: Decision,
    /// The output extension of the media part (from the detected format), for kept samples.
    pub media_ext: Option<String>,
    /// Parts made while measuring that go into the shard with the sample: the sampled frames
    /// as `NNN.jpg` with `[video] write_keyframes`.
    pub extra_parts: Vec<(String, Vec<u8>)>,
}

impl Judged {
    pub fn drop(stage: Stage, reason: Reason, detail: impl Into<String>) -> Judged {
        Judged::dropped(Drop::new(stage, reason, detail))
    }

    pub fn dropped(drop: Drop) -> Judged {
        Judged {
            decision: Decision::Drop(drop),
            media_ext: None,
            extra_parts: Vec::new(),
        }
    }
}

/// The frame sampling a config asks for; the CLIP stage samples the same frames again. Videos
/// decode with NVDEC on the device [`resolve_video_decoding`] put in the config, if any.
pub fn frame_sampling(config: &Config, keep_rgb: bool) -> FrameSampling {
    FrameSampling {
        sample_fps: config.video.sample_fps,
        scene_threshold: config.video.scene_threshold,
        max_frames: config.video.max_frames,
        min_side: ANALYSIS_SHORT_SIDE,
        keep_rgb,
        cuda_device: config.video.nvdec_device,
    }
}

/// The config a run on `device` works with: with `[video] gpu_decode` (the default) and a
/// GPU, videos decode with NVDEC on it (each falls back to the CPU on its own when NVDEC
/// cannot decode it exactly); otherwise on the CPU. Nothing users set changes, so neither does
/// the resolved config the manifest records.
pub fn resolve_video_decoding(config: &Config, device: &crate::gpu::Selected) -> Config {
    let mut config = config.clone();
    config.video.nvdec_device = device
        .cuda
        .as_ref()
        .filter(|_| config.video.gpu_decode)
        .map(|gpu| gpu.ordinal);
    config
}

/// A stream that decodes to less than this share of the duration its container declares was
/// cut short (a decoder's own end-of-stream rounding is far smaller).
const TRUNCATED_SHARE: f64 = 0.9;

/// Quality of the JPEG keyframes written with `write_keyframes`.
const KEYFRAME_QUALITY: i32 = 90;

/// Judges a video or audio file whose container was recognised from its bytes.
pub fn judge_av(
    sample: &Sample,
    media: &[u8],
    container: AvContainer,
    config: &Config,
    kernels: &dyn QualityKernels,
    m: &mut Measurements,
) -> Judged {
    let info = match probe_media(media) {
        Ok(info) => info,
        Err(e) => return Judged::drop(Stage::Decode, Reason::Unreadable, e.to_string()),
    };
    m.container = Some(info.container.clone());
    m.duration_seconds = info.duration_seconds;
    let has_video = info.video.is_some();
    let ext = container.extension(has_video).to_string();
    m.format = Some(ext.clone());
    m.media_kind = match (has_video, info.audio.is_some()) {
        (true, _) => Some("video"),
        (false, true) => Some("audio"),
        (false, false) => None,
    };
    // After probing, so that the ledger says what a file cut short was.
    if let Err(message) = check_container_complete(container, media) {
        return Judged::drop(Stage::Decode, Reason::Unreadable, message.to_string());
    }
    if let Some(stream) = &info.video {
        judge_video(sample, media, &info, stream, ext, config, kernels, m)
    } else if info.audio.is_some() {
        judge_audio(sample, media, &info, ext, config, m)
    } else {
        Judged::drop(
            Stage::Decode,
            Reason::NoStream,
            format!(
                "the {} container has no video or audio stream that can be decoded",
                info.container
            ),
        )
    }
}

/// The caption checks, shared by every kind of media.
pub(crate) fn check_sample_caption(
    sample: &Sample,
    config: &Config,
    m: &mut Measurements,
) -> Option<Judged> {
    let caption = sample
        .part("txt")
        .map(|p| &p.bytes[..])
        .or(sample.caption.as_deref().map(str::as_bytes));
    match check_caption(caption, &config.filters.caption) {
        Ok(Some(caption)) => {
            m.caption_chars = Some(caption.chars);
            m.caption_words = Some(caption.words);
            None
        }
        Ok(None) => None,
        Err(d) => Some(Judged::dropped(d)),
    }
}

#[allow(clippy::too_many_arguments)]
fn judge_video(
    sample: &Sample,
    media: &[u8],
    info: &MediaInfo,
    stream: &VideoStreamInfo,
    ext: String,
    config: &Config,
    kernels: &dyn QualityKernels,
    m: &mut Measurements,
) -> Judged {
    m.width = Some(stream.width);
    m.height = Some(stream.height);
    if let Some(d) = check_video_header(info, &config.filters.video) {
        return Judged::dropped(d);
    }
    if let Some(dropped) = check_sample_caption(sample, config, m) {
        return dropped;
    }
    let keyframes = config.video.write_keyframes;
    let frames = match sample_video_frames(media, &frame_sampling(config, keyframes)) {
        Ok(frames) if frames.frames.is_empty() => {
            return Judged::drop(
                Stage::Decode,
                Reason::Unreadable,
                format!(
                    "no frame could be decoded ({} decoded)",
                    frames.decoded_frames
                ),
            )
        }
        Ok(frames) => frames,
        Err(e) => return Judged::drop(Stage::Decode, Reason::Unreadable, e.to_string()),
    };
    if let Some(reason) = &frames.nvdec_fallback {
        tracing::debug!("{}: {reason}", sample.id);
    }
    let video = measure_video(&frames, &stream.codec, stream.fps, kernels);
    m.sharpness = video.sharpness_mean;
    m.brightness = mean_brightness(&video);
    if info.audio.is_some() {
        // The audio track is measured for the ledger; a video is not dropped for it.
        m.audio = measure_audio(media, info, config).ok();
    }
    let drop = check_video_quality(&video, &config.filters.video);
    m.video = Some(video);
    if let Some(d) = drop {
        return Judged::dropped(d);
    }
    let mut extra_parts = Vec::new();
    if keyframes {
        for (n, frame) in frames.frames.iter().enumerate() {
            let Some(rgb) = &frame.rgb else { continue };
            let image = turbojpeg::Image {
                pixels: rgb.pixels.as_slice(),
                width: rgb.width as usize,
                pitch: rgb.width as usize * 3,
                height: rgb.height as usize,
                format: turbojpeg::PixelFormat::RGB,
            };
            match turbojpeg::compress(image, KEYFRAME_QUALITY, turbojpeg::Subsamp::Sub2x2) {
                Ok(jpeg) => extra_parts.push((format!("{n:03}.jpg"), jpeg.to_vec())),
                Err(e) => tracing::warn!("{}: keyframe {n} not written: {e}", sample.id),
            }
        }
    }
    Judged {
        decision: Decision::Keep,
        media_ext: Some(ext),
        extra_parts,
    }
}

fn judge_audio(
    sample: &Sample,
    media: &[u8],
    info: &MediaInfo,
    ext: String,
    config: &Config,
    m: &mut Measurements,
) -> Judged {
    if let Some(d) = check_audio_header(info, &config.filters.audio) {
        return Judged::dropped(d);
    }
    if let Some(dropped) = check_sample_caption(sample, config, m) {
        return dropped;
    }
    let audio = match measure_audio(media, info, config) {
        Ok(audio) => audio,
        Err(e) => return Judged::drop(Stage::Decode, Reason::Unreadable, e),
    };
    let drop = check_audio_levels(&audio, &config.filters.audio);
    m.audio = Some(audio);
    if let Some(d) = drop {
        return Judged::dropped(d);
    }
    Judged {
        decision: Decision::Keep,
        media_ext: Some(ext),
        extra_parts: Vec::new(),
    }
}

/// Decodes up to `max_analysis_seconds` of the audio stream and measures it.
fn measure_audio(
    media: &[u8],
    info: &MediaInfo,
    config: &Config,
) -> Result<AudioMeasurements, String> {
    let (decoded, levels) = decode_audio_levels(
        media,
        FINGERPRINT_RATE,
        config.audio.max_analysis_seconds,
        config.audio.silence_threshold_dbfs,
    )
    .map_err(|e| e.to_string())?;
    if decoded.frames == 0 {
        return Err("the audio stream decoded to no samples".to_string());
    }
    // A file cut short still decodes up to the cut: compare with what the container declares.
    if let Some(declared) = info.duration_seconds {
        if !decoded.truncated && decoded.decoded_seconds < declared * TRUNCATED_SHARE {
            return Err(format!(
                "truncated: {:.2} s of audio decoded, the container declares {declared:.2} s",
                decoded.decoded_seconds
            ));
        }
    }
    let levels = &levels;
    let print = fingerprint(&decoded.mono, decoded.analysis_rate);
    Ok(AudioMeasurements {
        codec: info
            .audio
            .as_ref()
            .map(|a| a.codec.clone())
            .unwrap_or_default(),
        sample_rate: decoded.sample_rate,
        channels: decoded.channels,
        analysed_seconds: decoded.decoded_seconds,
        peak_dbfs: levels.peak_dbfs,
        rms_dbfs: levels.rms_dbfs,
        clipped_fraction: levels.clipped_fraction,
        silence_fraction: levels.silence_fraction,
        snr_db: levels.snr_db,
        fingerprint: print.frames,
    })
}
