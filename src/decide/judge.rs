//! The per-sample judgement, cheap before expensive: fetch errors and empty files first, then
//! the header (image size, or the container's streams and duration) and the caption against the
//! filters, and only then the decoding and measuring (through a [`MeasureBackend`] for images,
//! `decode::av` and `measure` for video and audio), and the quality filters on what was
//! measured. Every problem is a dropped sample with a reason; nothing here panics on input.
//! It calls the decode and measure stages in that order and fills the [`Measurements`]; it
//! does not stage, encode or write anything (keyframes go back to the caller as pixels).

use super::filters::{
    check_audio_header, check_audio_levels, check_caption, check_header, check_quality,
    check_video_header, check_video_quality,
};
use super::{Decision, Drop, Reason, Stage};
use crate::config::{Config, LimitsConfig};
use crate::decode::av::{probe_media, sample_video_frames, MediaInfo, VideoStreamInfo};
use crate::decode::budget::Budget;
use crate::decode::{self, check_container_complete, probe, sniff_av, AvContainer, DecodeError};
use crate::measure::audio_track::measure_audio_track;
use crate::measure::backend::MeasureBackend;
use crate::measure::video::{frame_sampling, mean_brightness, measure_video};
use crate::measure::{sha256_hex, Measurements, MediaKind};
use crate::pixels::RgbImage;
use crate::source::{Refusal, Sample, AV_EXTENSIONS};

/// What the judgement of a sample produced.
#[derive(Debug)]
pub struct Judged {
    pub decision: Decision,
    /// The output extension of the media part (from the detected format), for kept samples.
    pub media_ext: Option<String>,
    /// With `[video] write_keyframes`, a kept video's sampled frames in time order (`None`
    /// where the decoder kept no RGB), for `write::keyframes` to encode.
    pub keyframes: Vec<Option<RgbImage>>,
}

impl Judged {
    pub fn drop(stage: Stage, reason: Reason, detail: impl Into<String>) -> Judged {
        Judged::dropped(Drop::new(stage, reason, detail))
    }

    pub fn dropped(drop: Drop) -> Judged {
        Judged {
            decision: Decision::Drop(drop),
            media_ext: None,
            keyframes: Vec::new(),
        }
    }

    fn keep(media_ext: String, keyframes: Vec<Option<RgbImage>>) -> Judged {
        Judged {
            decision: Decision::Keep,
            media_ext: Some(media_ext),
            keyframes,
        }
    }
}

/// The per-sample decision, cheap checks first; fills `m` as it goes. For samples that pass,
/// also says the output extension of the media part (from the detected format).
pub fn judge(
    sample: &Sample,
    config: &Config,
    backend: &dyn MeasureBackend,
    m: &mut Measurements,
) -> Judged {
    // The sample's decode budget, on this thread while it is judged (`decode::budget`).
    let limits = &config.limits;
    let _budget = decode::budget::enter(Budget::starting_now(
        limits.max_decode_seconds,
        limits.max_video_frames,
    ));
    if let Some(error) = &sample.fetch_error {
        let reason = match (sample.refused, sample.opted_out) {
            (Some(Refusal::TooLarge), _) => Reason::TooLarge,
            (Some(Refusal::OutsideInput), _) => Reason::OutsideInput,
            (None, true) => Reason::OptedOut,
            (None, false) => Reason::FetchFailed,
        };
        return Judged::drop(Stage::Source, reason, error.clone());
    }
    let Some(media) = sample.media_bytes() else {
        let parts: Vec<&str> = sample.parts.iter().map(|p| p.ext.as_str()).collect();
        return Judged::drop(
            Stage::Source,
            Reason::NoMedia,
            format!(
                "no image, video or audio part among the sample's parts ({})",
                parts.join(", ")
            ),
        );
    };
    m.size_bytes = media.len() as u64;
    if media.is_empty() {
        return Judged::drop(
            Stage::Decode,
            Reason::EmptyFile,
            DecodeError::Empty.to_string(),
        );
    }
    m.sha256 = Some(sha256_hex(media));
    let info = match probe(media) {
        Ok(info) => info,
        Err(DecodeError::NotAnImage(what)) => {
            if let Some(container) = sniff_av(media) {
                return judge_av(sample, media, container, config, backend, m);
            }
            let declared = sample.media.as_deref().unwrap_or_default();
            return if AV_EXTENSIONS.contains(&declared) {
                Judged::drop(
                    Stage::Decode,
                    Reason::NotMedia,
                    format!("not a known video or audio container: {what}"),
                )
            } else {
                Judged::drop(
                    Stage::Decode,
                    Reason::NotAnImage,
                    DecodeError::NotAnImage(what).to_string(),
                )
            };
        }
        Err(e) => return Judged::drop(Stage::Decode, Reason::Unreadable, e.to_string()),
    };
    m.media_kind = Some(MediaKind::Image);
    m.format = Some(info.extension().to_string());
    m.width = Some(info.width);
    m.height = Some(info.height);
    let filters = &config.filters.image;
    if let Some(d) = check_header(&info, filters) {
        return Judged::dropped(d);
    }
    // From the header, before anything is decoded: a 16-bit or float image counts its bytes.
    let max_decode_bytes = config.limits.max_decode_bytes.0;
    decode::set_max_decode_bytes(max_decode_bytes);
    match decode::decoded_bytes(media, &info) {
        Ok((bytes, color)) if bytes > max_decode_bytes => {
            return Judged::drop(
                Stage::Decode,
                Reason::TooManyPixels,
                format!(
                    "{}x{} {color} decodes to {bytes} bytes > limits.max_decode_bytes {max_decode_bytes}; not decoded",
                    info.width, info.height
                ),
            )
        }
        Ok(_) => {}
        Err(e) => return Judged::drop(Stage::Decode, Reason::Unreadable, e.to_string()),
    }
    if let Some(dropped) = check_sample_caption(sample, config, m) {
        return dropped;
    }
    // An image decode is one call that cannot be interrupted (its time is bounded by
    // max_decode_bytes instead): the deadline is checked before and after it.
    let quality = match decode::budget::check().and_then(|()| backend.measure_image(media, &info)) {
        Ok(_) if decode::budget::expired() => {
            return decode_failed(DecodeError::TimedOut {
                seconds: limits.max_decode_seconds,
            })
        }
        Ok(quality) => quality,
        Err(e) => return decode_failed(e),
    };
    m.sharpness = Some(quality.sharpness);
    m.brightness = Some(quality.brightness);
    m.clipped_fraction = Some(quality.clipped_fraction);
    m.phash = Some(quality.phash);
    m.dhash = Some(quality.dhash);
    if let Some(d) = check_quality(&quality, filters) {
        return Judged::dropped(d);
    }
    Judged::keep(info.extension().to_string(), Vec::new())
}

/// Judges a video or audio file whose container was recognised from its bytes: probe the
/// container, check its header against `[filters.video]` / `[filters.audio]`, decode only what
/// measuring needs (sampled frames, the first `max_analysis_seconds` of audio), measure, and
/// check the measurements.
fn judge_av(
    sample: &Sample,
    media: &[u8],
    container: AvContainer,
    config: &Config,
    backend: &dyn MeasureBackend,
    m: &mut Measurements,
) -> Judged {
    let info = match probe_media(media) {
        Ok(info) => info,
        Err(e) => return decode_failed(e),
    };
    m.container = Some(info.container.clone());
    m.duration_seconds = info.duration_seconds;
    let has_video = info.video.is_some();
    let ext = container.extension(has_video).to_string();
    m.format = Some(ext.clone());
    m.media_kind = match (has_video, info.audio.is_some()) {
        (true, _) => Some(MediaKind::Video),
        (false, true) => Some(MediaKind::Audio),
        (false, false) => None,
    };
    // After probing, so that the ledger says what a file cut short was.
    if let Err(message) = check_container_complete(container, media) {
        return Judged::drop(Stage::Decode, Reason::Unreadable, message.to_string());
    }
    let max_channels = config.limits.max_audio_channels;
    if let Some(audio) = info.audio.as_ref().filter(|a| a.channels > max_channels) {
        return Judged::drop(
            Stage::Decode,
            Reason::TooManyChannels,
            format!(
                "{} channels > limits.max_audio_channels {max_channels}; not decoded",
                audio.channels
            ),
        );
    }
    if let Some(over) = check_av_limits(&info, &config.limits) {
        return over;
    }
    if let Some(stream) = &info.video {
        judge_video(sample, media, &info, stream, ext, config, backend, m)
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

/// The `[limits]` on what a container declares, before anything is decoded: pixels a frame,
/// frames and seconds of video, seconds of audio.
fn check_av_limits(info: &MediaInfo, limits: &LimitsConfig) -> Option<Judged> {
    let longest = |stream: Option<f64>| {
        stream
            .into_iter()
            .chain(info.duration_seconds)
            .reduce(f64::max)
    };
    if let Some(video) = &info.video {
        let pixels = u64::from(video.width) * u64::from(video.height);
        if pixels > limits.max_video_pixels {
            return Some(Judged::drop(
                Stage::Decode,
                Reason::TooManyPixels,
                format!(
                    "{}x{} video: {pixels} pixels a frame > limits.max_video_pixels {}; not decoded",
                    video.width, video.height, limits.max_video_pixels
                ),
            ));
        }
        let seconds = longest(video.duration_seconds);
        if let Some(seconds) = seconds.filter(|&s| s > limits.max_video_seconds) {
            return Some(Judged::drop(
                Stage::Decode,
                Reason::TooLong,
                format!(
                    "the video declares {seconds:.1} s > limits.max_video_seconds {}; not decoded",
                    limits.max_video_seconds
                ),
            ));
        }
        // The frame count it declares, else its duration at its frame rate.
        let frames = video.frame_count.or_else(|| {
            let estimate = seconds? * video.fps?;
            estimate.is_finite().then_some(estimate.ceil() as u64)
        });
        if let Some(frames) = frames.filter(|&f| f > limits.max_video_frames) {
            return Some(Judged::drop(
                Stage::Decode,
                Reason::TooManyFrames,
                format!(
                    "the video declares {frames} frames > limits.max_video_frames {}; not decoded",
                    limits.max_video_frames
                ),
            ));
        }
    }
    if let Some(audio) = &info.audio {
        let seconds = match info.video {
            // A video's container duration is the video's; the audio's own is its stream's.
            Some(_) => audio.duration_seconds,
            None => longest(audio.duration_seconds),
        };
        if let Some(seconds) = seconds.filter(|&s| s > limits.max_audio_seconds) {
            return Some(Judged::drop(
                Stage::Decode,
                Reason::TooLong,
                format!(
                    "the audio declares {seconds:.1} s > limits.max_audio_seconds {}; not decoded",
                    limits.max_audio_seconds
                ),
            ));
        }
    }
    None
}

/// The drop for a decoder's error: over the sample's decode budget (time or frames) when that
/// is what stopped it, else `unreadable` with the decoder's message.
fn decode_failed(error: DecodeError) -> Judged {
    match error {
        DecodeError::TimedOut { .. } => {
            Judged::drop(Stage::Decode, Reason::DecodeTimeout, error.to_string())
        }
        DecodeError::TooManyFrames { .. } => {
            Judged::drop(Stage::Decode, Reason::TooManyFrames, error.to_string())
        }
        other => decode_failed_with(other.to_string()),
    }
}

/// [`decode_failed`] for a message: FFmpeg stopped by the deadline says only that it was asked
/// to exit, so the budget says whether that was the reason.
fn decode_failed_with(message: String) -> Judged {
    if decode::budget::expired() {
        return Judged::drop(
            Stage::Decode,
            Reason::DecodeTimeout,
            format!("decoding took longer than limits.max_decode_seconds; stopped ({message})"),
        );
    }
    Judged::drop(Stage::Decode, Reason::Unreadable, message)
}

/// The caption checks, shared by every kind of media.
fn check_sample_caption(sample: &Sample, config: &Config, m: &mut Measurements) -> Option<Judged> {
    let caption = sample
        .part("txt")
        .map(|p| &p.bytes[..])
        .or(sample.caption.as_deref().map(str::as_bytes));
    let max_bytes = config.limits.max_caption_bytes.0;
    if let Some(long) = caption.filter(|c| c.len() as u64 > max_bytes) {
        return Some(Judged::drop(
            Stage::Filter,
            Reason::CaptionTooLong,
            format!(
                "{} bytes > limits.max_caption_bytes {max_bytes}",
                long.len()
            ),
        ));
    }
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
    backend: &dyn MeasureBackend,
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
        Err(e) => return decode_failed(e),
    };
    if let Some(reason) = &frames.nvdec_fallback {
        tracing::debug!("{}: {reason}", sample.id);
    }
    let video = measure_video(&frames, &stream.codec, stream.fps, backend.kernels());
    m.sharpness = video.sharpness_mean;
    m.brightness = mean_brightness(&video);
    if info.audio.is_some() {
        // The audio track is measured for the ledger; a video is not dropped for it.
        m.audio = measure_audio_track(media, info, &config.audio).ok();
    }
    let drop = check_video_quality(&video, &config.filters.video);
    m.video = Some(video);
    if let Some(d) = drop {
        return Judged::dropped(d);
    }
    let keyframes = if keyframes {
        frames.frames.into_iter().map(|frame| frame.rgb).collect()
    } else {
        Vec::new()
    };
    Judged::keep(ext, keyframes)
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
    let audio = match measure_audio_track(media, info, &config.audio) {
        Ok(audio) => audio,
        Err(e) => return decode_failed_with(e.to_string()),
    };
    let drop = check_audio_levels(&audio, &config.filters.audio);
    m.audio = Some(audio);
    if let Some(d) = drop {
        return Judged::dropped(d);
    }
    Judged::keep(ext, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::backend::CpuBackend;
    use crate::source::{Origin, Part};
    use bytes::Bytes;

    fn config(min_side: u32) -> Config {
        let text = format!(
            "[run]\noutput = \"/tmp/unused\"\n[[inputs]]\nuri = \"/tmp/unused\"\n\
             [filters.image]\nmin_side = {min_side}\nmin_sharpness = 0.0\nmin_brightness = 0.0\nmax_brightness = 255.0\n"
        );
        Config::from_toml_str(&text, "test", &[]).unwrap()
    }

    fn sample(ext: &str, bytes: &[u8]) -> Sample {
        Sample {
            id: format!("0:x.{ext}"),
            key: "x".into(),
            name: format!("x.{ext}"),
            origin: Origin::default(),
            parts: vec![Part {
                ext: ext.into(),
                bytes: Bytes::copy_from_slice(bytes),
            }],
            media: Some(ext.into()),
            caption: None,
            fetch_error: None,
            opted_out: false,
            refused: None,
        }
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::GrayImage::from_fn(width, height, |x, y| {
            image::Luma([((x * 5 + y * 11) % 256) as u8])
        });
        let mut out = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn judged(sample: &Sample, min_side: u32) -> (Judged, Measurements) {
        let mut m = Measurements::default();
        let judged = judge(sample, &config(min_side), &CpuBackend, &mut m);
        (judged, m)
    }

    fn reason(judged: &Judged) -> Option<(Stage, Reason)> {
        judged.decision.dropped().map(|d| (d.stage, d.reason))
    }

    #[test]
    fn cheap_problems_are_dropped_before_anything_is_decoded() {
        let mut failed = sample("jpg", b"");
        failed.fetch_error = Some("connection reset".into());
        let (j, _) = judged(&failed, 8);
        assert_eq!(reason(&j), Some((Stage::Source, Reason::FetchFailed)));
        assert_eq!(j.decision.dropped().unwrap().detail, "connection reset");

        let mut no_media = sample("txt", b"a caption");
        no_media.media = None;
        let (j, _) = judged(&no_media, 8);
        assert_eq!(reason(&j), Some((Stage::Source, Reason::NoMedia)));
        assert!(j.decision.dropped().unwrap().detail.ends_with("(txt)"));

        let (j, m) = judged(&sample("jpg", b""), 8);
        assert_eq!(reason(&j), Some((Stage::Decode, Reason::EmptyFile)));
        assert_eq!((m.size_bytes, m.sha256), (0, None));

        let (j, m) = judged(&sample("jpg", b"plain text, not a picture"), 8);
        assert_eq!(reason(&j), Some((Stage::Decode, Reason::NotAnImage)));
        assert_eq!(m.size_bytes, 25);
        assert!(m.sha256.is_some());
        // Named as a video: not a known container rather than not an image.
        let (j, _) = judged(&sample("mp4", b"plain text, not a video"), 8);
        assert_eq!(reason(&j), Some((Stage::Decode, Reason::NotMedia)));
    }

    #[test]
    fn an_image_is_measured_after_its_header_passes() {
        let bytes = png(48, 32);
        let (j, m) = judged(&sample("png", &bytes), 8);
        assert!(j.decision.is_keep(), "{:?}", j.decision);
        assert_eq!(j.media_ext.as_deref(), Some("png"));
        assert!(j.keyframes.is_empty());
        assert_eq!(m.media_kind, Some(MediaKind::Image));
        assert_eq!((m.width, m.height), (Some(48), Some(32)));
        let info = probe(&bytes).unwrap();
        let quality = CpuBackend.measure_image(&bytes, &info).unwrap();
        assert_eq!(m.sharpness, Some(quality.sharpness));
        assert_eq!(m.phash, Some(quality.phash));

        // Too small: dropped on the header, so nothing is decoded or measured.
        let (j, m) = judged(&sample("png", &bytes), 40);
        assert_eq!(reason(&j), Some((Stage::Filter, Reason::TooSmall)));
        assert_eq!(m.width, Some(48));
        assert_eq!(m.sharpness, None);

        // A header that promises more than the bytes hold: unreadable, with the decoder's word.
        let (j, _) = judged(&sample("png", &bytes[..bytes.len() / 2]), 8);
        assert_eq!(reason(&j), Some((Stage::Decode, Reason::Unreadable)));
    }
}
