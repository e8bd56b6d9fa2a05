//! Per-sample filters. Caption and header checks run before decoding (cheap, and they keep
//! oversized images from being decoded at all); quality checks run on the measurements.

use super::{Drop, Reason, Stage};
use crate::config::{AudioFilters, CaptionFilters, ImageFilters, VideoFilters};
use crate::decode::av::MediaInfo;
use crate::decode::ImageInfo;
use crate::measure::{AudioMeasurements, ImageQuality, VideoMeasurements};

/// Checks what the header says: pixel count, shorter side, aspect ratio.
pub fn check_header(info: &ImageInfo, limits: &ImageFilters) -> Option<Drop> {
    let (w, h) = (info.width, info.height);
    if info.pixels() > limits.max_pixels {
        return Some(Drop::new(
            Stage::Filter,
            Reason::TooManyPixels,
            format!(
                "{w}x{h} = {} pixels > max_pixels {}; not decoded",
                info.pixels(),
                limits.max_pixels
            ),
        ));
    }
    if w.min(h) < limits.min_side {
        return Some(Drop::new(
            Stage::Filter,
            Reason::TooSmall,
            format!(
                "{w}x{h}: shorter side {} < min_side {}",
                w.min(h),
                limits.min_side
            ),
        ));
    }
    let aspect = w.max(h) as f64 / w.min(h) as f64;
    if aspect > limits.max_aspect_ratio {
        return Some(Drop::new(
            Stage::Filter,
            Reason::AspectRatio,
            format!(
                "{w}x{h}: aspect ratio {aspect:.2} > max_aspect_ratio {}",
                limits.max_aspect_ratio
            ),
        ));
    }
    None
}

/// Checks the measured quality: sharpness, then brightness. Thresholds written as a
/// percentile of the run are not known yet here: [`super::percentiles`] applies them over the
/// whole run.
pub fn check_quality(q: &ImageQuality, limits: &ImageFilters) -> Option<Drop> {
    if let Some(min) = limits
        .min_sharpness
        .fixed()
        .filter(|&min| q.sharpness < min)
    {
        return Some(Drop::new(
            Stage::Filter,
            Reason::TooBlurry,
            format!("sharpness {:.2} < min_sharpness {min}", q.sharpness),
        ));
    }
    if let Some(min) = limits
        .min_brightness
        .fixed()
        .filter(|&min| q.brightness < min)
    {
        return Some(Drop::new(
            Stage::Filter,
            Reason::TooDark,
            format!("brightness {:.2} < min_brightness {min}", q.brightness),
        ));
    }
    if let Some(max) = limits
        .max_brightness
        .fixed()
        .filter(|&max| q.brightness > max)
    {
        return Some(Drop::new(
            Stage::Filter,
            Reason::TooBright,
            format!("brightness {:.2} > max_brightness {max}", q.brightness),
        ));
    }
    None
}

fn filter_drop(reason: Reason, detail: String) -> Option<Drop> {
    Some(Drop::new(Stage::Filter, reason, detail))
}

/// Checks a duration against `[min, max]` (0 = no limit).
fn check_duration(duration: Option<f64>, min: f64, max: f64) -> Option<Drop> {
    let d = duration?;
    if min > 0.0 && d < min {
        return filter_drop(
            Reason::TooShort,
            format!("duration {d:.2} s < min_duration {min}"),
        );
    }
    if max > 0.0 && d > max {
        return filter_drop(
            Reason::TooLong,
            format!("duration {d:.2} s > max_duration {max}"),
        );
    }
    None
}

/// Checks what a video's container says, before any frame is decoded: duration, frame size,
/// audio track.
pub fn check_video_header(info: &MediaInfo, limits: &VideoFilters) -> Option<Drop> {
    if let Some(d) = check_duration(
        info.duration_seconds,
        limits.min_duration,
        limits.max_duration,
    ) {
        return Some(d);
    }
    if let Some(v) = &info.video {
        if v.width.min(v.height) < limits.min_side {
            return filter_drop(
                Reason::TooSmall,
                format!(
                    "{}x{}: shorter side {} < min_side {}",
                    v.width,
                    v.height,
                    v.width.min(v.height),
                    limits.min_side
                ),
            );
        }
    }
    if limits.require_audio && info.audio.is_none() {
        return filter_drop(
            Reason::NoAudio,
            "no audio track; [filters.video] require_audio = true".to_string(),
        );
    }
    None
}

/// Checks a video's measured frames: mean sharpness, then motion (fixed thresholds; a
/// percentile of the run is applied by [`super::percentiles`]).
pub fn check_video_quality(m: &VideoMeasurements, limits: &VideoFilters) -> Option<Drop> {
    let min_sharpness = limits.min_sharpness.fixed().unwrap_or(0.0);
    if let Some(sharpness) = m.sharpness_mean.filter(|&s| s < min_sharpness) {
        return filter_drop(
            Reason::TooBlurry,
            format!("mean frame sharpness {sharpness:.2} < min_sharpness {min_sharpness}"),
        );
    }
    if let Some(min_motion) = limits.min_motion.fixed().filter(|&m| m > 0.0) {
        let motion = m.motion_score.unwrap_or(0.0);
        if motion < min_motion {
            return filter_drop(
                Reason::StaticVideo,
                format!(
                    "motion score {motion:.3} < min_motion {min_motion} (a static video or a slideshow)"
                ),
            );
        }
    }
    None
}

/// Checks what an audio file's container says: duration, sample rate.
pub fn check_audio_header(info: &MediaInfo, limits: &AudioFilters) -> Option<Drop> {
    if let Some(d) = check_duration(
        info.duration_seconds,
        limits.min_duration,
        limits.max_duration,
    ) {
        return Some(d);
    }
    let rate = info.audio.as_ref()?.sample_rate;
    if rate < limits.min_sample_rate {
        return filter_drop(
            Reason::LowSampleRate,
            format!(
                "sample rate {rate} Hz < min_sample_rate {}",
                limits.min_sample_rate
            ),
        );
    }
    None
}

/// Checks an audio file's levels: clipping, silence, noise.
pub fn check_audio_levels(m: &AudioMeasurements, limits: &AudioFilters) -> Option<Drop> {
    if m.clipped_fraction > limits.max_clipped_fraction {
        return filter_drop(
            Reason::TooClipped,
            format!(
                "clipped fraction {:.4} > max_clipped_fraction {}",
                m.clipped_fraction, limits.max_clipped_fraction
            ),
        );
    }
    if m.silence_fraction > limits.max_silence_fraction {
        return filter_drop(
            Reason::TooSilent,
            format!(
                "silence fraction {:.3} > max_silence_fraction {}",
                m.silence_fraction, limits.max_silence_fraction
            ),
        );
    }
    if let Some(min) = limits.min_snr_db.and_then(|t| t.fixed()) {
        match m.snr_db {
            Some(snr) if snr >= min => {}
            Some(snr) => {
                return filter_drop(
                    Reason::TooNoisy,
                    format!("estimated SNR {snr:.1} dB < min_snr_db {min}"),
                )
            }
            None => {
                return filter_drop(
                    Reason::TooNoisy,
                    format!("too short to estimate the SNR; min_snr_db {min} is set"),
                )
            }
        }
    }
    None
}

/// A caption that passed the checks: its text (trimmed) and its length.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption<'a> {
    pub text: &'a str,
    pub chars: u32,
    pub words: u32,
}

/// Checks a sample's caption: `raw` is the `.txt` part's bytes or the caption from a sidecar or
/// manifest. `Ok(None)`: no caption (none, or only white space), which is allowed unless
/// `required`. A caption that is not UTF-8 is always dropped.
pub fn check_caption<'a>(
    raw: Option<&'a [u8]>,
    limits: &CaptionFilters,
) -> Result<Option<Caption<'a>>, Drop> {
    let text = match raw.map(std::str::from_utf8) {
        None => None,
        Some(Ok(text)) => Some(text.trim()).filter(|t| !t.is_empty()),
        Some(Err(e)) => {
            return Err(Drop::new(
                Stage::Filter,
                Reason::CaptionNotUtf8,
                format!(
                    "the .txt caption is not UTF-8: invalid bytes at offset {} of {}",
                    e.valid_up_to(),
                    raw.map_or(0, <[u8]>::len)
                ),
            ))
        }
    };
    let Some(text) = text else {
        if limits.required {
            return Err(Drop::new(
                Stage::Filter,
                Reason::NoCaption,
                "no caption (no .txt part, no `caption` in a .json sidecar or manifest row, or only white space); [filters.caption] required = true",
            ));
        }
        return Ok(None);
    };
    let chars = text.chars().count() as u32;
    let words = text.split_whitespace().count() as u32;
    if words < limits.min_words {
        return Err(Drop::new(
            Stage::Filter,
            Reason::CaptionTooShort,
            format!(
                "caption has {words} word(s) < min_words {}",
                limits.min_words
            ),
        ));
    }
    if chars < limits.min_chars {
        return Err(Drop::new(
            Stage::Filter,
            Reason::CaptionTooShort,
            format!(
                "caption has {chars} character(s) < min_chars {}",
                limits.min_chars
            ),
        ));
    }
    Ok(Some(Caption { text, chars, words }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::av::{AudioStreamInfo, VideoStreamInfo};
    use image::ImageFormat;

    fn media(duration: f64, video: bool, audio_rate: Option<u32>) -> MediaInfo {
        MediaInfo {
            container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
            duration_seconds: Some(duration),
            bit_rate: None,
            video: video.then(|| VideoStreamInfo {
                codec: "h264".into(),
                width: 640,
                height: 272,
                fps: Some(25.0),
                frame_count: None,
                duration_seconds: Some(duration),
            }),
            audio: audio_rate.map(|sample_rate| AudioStreamInfo {
                codec: "aac".into(),
                sample_rate,
                channels: 2,
                duration_seconds: Some(duration),
            }),
        }
    }

    fn reason(drop: Option<Drop>) -> Option<Reason> {
        drop.map(|d| d.reason)
    }

    #[test]
    fn video_limits_in_order_duration_size_audio_then_quality() {
        let limits = VideoFilters {
            min_duration: 2.0,
            max_duration: 60.0,
            min_side: 300,
            require_audio: true,
            min_sharpness: 20.0.into(),
            min_motion: 0.5.into(),
        };
        assert_eq!(
            reason(check_video_header(&media(1.0, true, Some(48000)), &limits)),
            Some(Reason::TooShort)
        );
        assert_eq!(
            reason(check_video_header(&media(61.0, true, Some(48000)), &limits)),
            Some(Reason::TooLong)
        );
        assert_eq!(
            reason(check_video_header(&media(10.0, true, Some(48000)), &limits)),
            Some(Reason::TooSmall)
        );
        let small_ok = VideoFilters {
            min_side: 64,
            ..limits.clone()
        };
        assert_eq!(
            reason(check_video_header(&media(10.0, true, None), &small_ok)),
            Some(Reason::NoAudio)
        );
        assert_eq!(
            check_video_header(&media(10.0, true, Some(48000)), &small_ok),
            None
        );
        let measured = |sharpness: f64, motion: f64| VideoMeasurements {
            sharpness_mean: Some(sharpness),
            motion_score: Some(motion),
            ..VideoMeasurements::default()
        };
        assert_eq!(
            reason(check_video_quality(&measured(10.0, 5.0), &limits)),
            Some(Reason::TooBlurry)
        );
        let d = check_video_quality(&measured(30.0, 0.1), &limits).unwrap();
        assert_eq!(d.reason, Reason::StaticVideo);
        assert!(d.detail.contains("0.100 < min_motion 0.5"), "{}", d.detail);
        assert_eq!(check_video_quality(&measured(30.0, 5.0), &limits), None);
        // 0 turns the limits off.
        assert_eq!(
            check_video_quality(&measured(0.0, 0.0), &VideoFilters::default()),
            None
        );
    }

    #[test]
    fn audio_limits_rate_clipping_silence_and_noise() {
        let limits = AudioFilters {
            min_duration: 1.0,
            max_duration: 0.0,
            min_sample_rate: 16000,
            max_clipped_fraction: 0.01,
            max_silence_fraction: 0.5,
            min_snr_db: Some(15.0.into()),
        };
        assert_eq!(
            reason(check_audio_header(&media(0.5, false, Some(44100)), &limits)),
            Some(Reason::TooShort)
        );
        assert_eq!(
            check_audio_header(&media(9999.0, false, Some(44100)), &limits),
            None
        );
        assert_eq!(
            reason(check_audio_header(&media(5.0, false, Some(8000)), &limits)),
            Some(Reason::LowSampleRate)
        );
        let levels = |clipped: f64, silence: f64, snr: Option<f64>| AudioMeasurements {
            clipped_fraction: clipped,
            silence_fraction: silence,
            snr_db: snr,
            ..AudioMeasurements::default()
        };
        assert_eq!(
            reason(check_audio_levels(&levels(0.02, 0.0, Some(30.0)), &limits)),
            Some(Reason::TooClipped)
        );
        assert_eq!(
            reason(check_audio_levels(&levels(0.0, 0.6, Some(30.0)), &limits)),
            Some(Reason::TooSilent)
        );
        assert_eq!(
            reason(check_audio_levels(&levels(0.0, 0.1, Some(9.0)), &limits)),
            Some(Reason::TooNoisy)
        );
        // Too short to estimate the SNR while a minimum is asked for: dropped, saying why.
        let d = check_audio_levels(&levels(0.0, 0.1, None), &limits).unwrap();
        assert!(d.detail.contains("too short to estimate"), "{}", d.detail);
        assert_eq!(
            check_audio_levels(&levels(0.0, 0.1, Some(20.0)), &limits),
            None
        );
        assert_eq!(
            check_audio_levels(&levels(0.5, 1.0, None), &AudioFilters::default()),
            None
        );
    }

    #[test]
    fn caption_checks() {
        fn check(raw: Option<&[u8]>) -> Result<Option<Caption<'_>>, Drop> {
            let limits = CaptionFilters {
                required: true,
                min_words: 2,
                min_chars: 8,
            };
            check_caption(raw, &limits)
        }
        let ok = check(Some(" a red bicycle \n".as_bytes()))
            .unwrap()
            .unwrap();
        assert_eq!((ok.text, ok.chars, ok.words), ("a red bicycle", 13, 3));
        assert_eq!(check(None).unwrap_err().reason, Reason::NoCaption);
        assert_eq!(check(Some(b" \t\n")).unwrap_err().reason, Reason::NoCaption);
        let short = check(Some(b"bicycle")).unwrap_err();
        assert_eq!(short.reason, Reason::CaptionTooShort);
        assert_eq!(short.detail, "caption has 1 word(s) < min_words 2");
        let chars = check(Some(b"a cat")).unwrap_err();
        assert_eq!(chars.detail, "caption has 5 character(s) < min_chars 8");
        let bad = check(Some(b"caf\xe9 au lait")).unwrap_err();
        assert_eq!(bad.reason, Reason::CaptionNotUtf8);
        assert_eq!(
            bad.detail,
            "the .txt caption is not UTF-8: invalid bytes at offset 3 of 12"
        );
        // Without `required`, a missing caption passes and the length rules do not apply.
        let lenient = CaptionFilters::default();
        assert_eq!(check_caption(None, &lenient).unwrap(), None);
        assert_eq!(check_caption(Some(b""), &lenient).unwrap(), None);
    }

    fn info(width: u32, height: u32) -> ImageInfo {
        ImageInfo {
            format: ImageFormat::Png,
            width,
            height,
        }
    }

    #[test]
    fn header_checks_in_order() {
        let limits = ImageFilters {
            max_pixels: 1000,
            min_side: 10,
            max_aspect_ratio: 3.0,
            ..ImageFilters::default()
        };
        let reason = |w, h| check_header(&info(w, h), &limits).map(|d| d.reason);
        assert_eq!(reason(100, 11), Some(Reason::TooManyPixels));
        assert_eq!(reason(9, 50), Some(Reason::TooSmall));
        assert_eq!(reason(40, 10), Some(Reason::AspectRatio));
        assert_eq!(reason(30, 10), None);
        assert_eq!(
            check_header(&info(9, 50), &limits).unwrap().detail,
            "9x50: shorter side 9 < min_side 10"
        );
    }

    #[test]
    fn quality_checks_report_value_and_limit() {
        let limits = ImageFilters {
            min_sharpness: 30.0.into(),
            min_brightness: 20.0.into(),
            max_brightness: 235.0.into(),
            ..ImageFilters::default()
        };
        let q = |sharpness, brightness| ImageQuality {
            sharpness,
            brightness,
            clipped_fraction: 0.0,
            phash: 0,
            dhash: 0,
        };
        let blurry = check_quality(&q(3.14259, 100.0), &limits).unwrap();
        assert_eq!(blurry.reason, Reason::TooBlurry);
        assert_eq!(blurry.detail, "sharpness 3.14 < min_sharpness 30");
        assert_eq!(
            check_quality(&q(50.0, 12.0), &limits).unwrap().reason,
            Reason::TooDark
        );
        assert_eq!(
            check_quality(&q(50.0, 240.0), &limits).unwrap().reason,
            Reason::TooBright
        );
        assert_eq!(check_quality(&q(50.0, 100.0), &limits), None);
    }
}
