//! Small pictures of samples for the report's galleries: a JPEG thumbnail of an image, a strip
//! of a few frames of a video (decoded again with the same FFmpeg lane the run used), and a
//! waveform of an audio file (min/max per column, drawn as an inline SVG path).
//!
//! Thumbnails are embedded in the HTML as `data:` URIs, so the report is one file that works
//! offline from disk or object storage. Anything that cannot be drawn gets the reason.

use base64::Engine;
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};

use super::rows::ReportRow;
use crate::decode::av::{sample_video_frames, FrameSampling};
use crate::decode::{probe, sniff_av};

/// Thumbnails fit in this many pixels each way.
pub const THUMB_SIDE: u32 = 160;
/// Frames in a video strip, and their height.
pub const STRIP_FRAMES: usize = 4;
pub const STRIP_HEIGHT: u32 = 72;
/// JPEG quality of thumbnails and strips.
const JPEG_QUALITY: u8 = 70;
/// Images whose header declares more pixels than this are not decoded for a thumbnail.
const MAX_THUMB_SOURCE_PIXELS: u64 = 50_000_000;
/// Columns of a waveform, and the seconds of audio it shows at most.
const WAVEFORM_COLUMNS: usize = 160;
const WAVEFORM_SECONDS: f64 = 30.0;

/// Why a sample was not drawn; the report shows it in the picture's place.
#[derive(Debug, thiserror::Error)]
pub enum NotDrawn {
    #[error("the file is empty")]
    Empty,
    #[error("not drawn: {width}x{height} is more than {MAX_THUMB_SOURCE_PIXELS} pixels")]
    TooLarge { width: u32, height: u32 },
    #[error("{0}")]
    Image(#[from] image::ImageError),
    #[error("neither an image nor a video or audio file")]
    UnknownKind,
    #[error("{0}")]
    Decode(#[from] crate::decode::DecodeError),
    #[error("no frame could be decoded")]
    NoFrame,
    /// A sample dropped for a `[limits]` rule (the reason), not read again to be drawn.
    #[error("not drawn: dropped as {0}")]
    OverALimit(String),
    /// The sample's bytes could not be read back (why, as the fetch said).
    #[error("{0}")]
    NotFetched(String),
}

/// A sample drawn for the report.
#[derive(Debug, Clone, PartialEq)]
pub enum Picture {
    /// A `data:image/jpeg;base64,…` URI (an image thumbnail or a video strip).
    Jpeg { data_uri: String, video: bool },
    /// An SVG path (`d` attribute) of a waveform in a `WAVEFORM_COLUMNS` × 100 box.
    Waveform(String),
}

/// Draws one sample from its media bytes.
pub fn picture(bytes: &[u8], row: &ReportRow) -> Result<Picture, NotDrawn> {
    if bytes.is_empty() {
        return Err(NotDrawn::Empty);
    }
    if let Ok(info) = probe(bytes) {
        if info.pixels() > MAX_THUMB_SOURCE_PIXELS {
            return Err(NotDrawn::TooLarge {
                width: info.width,
                height: info.height,
            });
        }
        let image = image::load_from_memory(bytes)?;
        let thumb = image.thumbnail(THUMB_SIDE, THUMB_SIDE).to_rgb8();
        return Ok(Picture::Jpeg {
            data_uri: jpeg_data_uri(&thumb)?,
            video: false,
        });
    }
    if sniff_av(bytes).is_none() {
        return Err(NotDrawn::UnknownKind);
    }
    match row.media_kind.as_deref() {
        Some("audio") => waveform(bytes).map(Picture::Waveform),
        _ => match video_strip(bytes, row) {
            Ok(strip) => Ok(strip),
            // A dropped file of unknown kind may still be audio.
            Err(e) => waveform(bytes).map(Picture::Waveform).map_err(|_| e),
        },
    }
}

fn jpeg_data_uri(image: &RgbImage) -> Result<String, NotDrawn> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(image)?;
    Ok(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&jpeg)
    ))
}

/// `STRIP_FRAMES` frames spread over the video (over the span of the frames the run sampled,
/// from the ledger's timestamps, else over its duration), side by side.
fn video_strip(bytes: &[u8], row: &ReportRow) -> Result<Picture, NotDrawn> {
    let span = row
        .frame_timestamps
        .last()
        .copied()
        .filter(|t| *t > 0.0)
        .or(row.duration_seconds)
        .filter(|d| *d > 0.0 && d.is_finite())
        .unwrap_or(STRIP_FRAMES as f64);
    let sampling = FrameSampling {
        sample_fps: STRIP_FRAMES as f64 / span,
        scene_threshold: 0.0,
        max_frames: STRIP_FRAMES,
        min_side: 16,
        keep_rgb: true,
        cuda_device: None,
    };
    let frames = sample_video_frames(bytes, &sampling)?;
    let tiles: Vec<RgbImage> = frames
        .frames
        .iter()
        .filter_map(|f| f.rgb.as_ref())
        .filter_map(|rgb| RgbImage::from_raw(rgb.width, rgb.height, rgb.pixels.clone()))
        .map(|frame| {
            let width =
                (frame.width() * STRIP_HEIGHT / frame.height().max(1)).clamp(1, 4 * STRIP_HEIGHT);
            DynamicImage::ImageRgb8(frame)
                .resize_exact(width, STRIP_HEIGHT, FilterType::Triangle)
                .to_rgb8()
        })
        .collect();
    if tiles.is_empty() {
        return Err(NotDrawn::NoFrame);
    }
    let width: u32 = tiles.iter().map(|t| t.width()).sum();
    let mut strip = RgbImage::new(width, STRIP_HEIGHT);
    let mut x = 0;
    for tile in &tiles {
        image::imageops::replace(&mut strip, tile, i64::from(x), 0);
        x += tile.width();
    }
    Ok(Picture::Jpeg {
        data_uri: jpeg_data_uri(&strip)?,
        video: true,
    })
}

/// The min/max envelope of the first `WAVEFORM_SECONDS` of the mono downmix, as a path.
fn waveform(bytes: &[u8]) -> Result<String, NotDrawn> {
    let (audio, _) =
        crate::measure::audio::decode_audio_levels(bytes, 8000, WAVEFORM_SECONDS, -60.0)?;
    Ok(waveform_path(&audio.mono))
}

/// The envelope path of samples in [-1, 1]: one vertical stroke per column.
pub fn waveform_path(mono: &[f32]) -> String {
    let mut d = String::new();
    if mono.is_empty() {
        return d;
    }
    let per_column = mono.len().div_ceil(WAVEFORM_COLUMNS).max(1);
    for (x, chunk) in mono.chunks(per_column).enumerate() {
        let (lo, hi) = chunk.iter().fold((0f32, 0f32), |(lo, hi), &s| {
            (lo.min(s.clamp(-1.0, 1.0)), hi.max(s.clamp(-1.0, 1.0)))
        });
        let top = 50.0 - f64::from(hi) * 48.0;
        let bottom = (50.0 - f64::from(lo) * 48.0).max(top + 0.5);
        d.push_str(&format!("M{x}.5 {top:.1}V{bottom:.1}"));
    }
    d
}

/// The waveform box's width.
pub const WAVEFORM_WIDTH: usize = WAVEFORM_COLUMNS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_becomes_a_small_jpeg() {
        let image = RgbImage::from_fn(640, 320, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 0])
        });
        let mut png = Vec::new();
        DynamicImage::ImageRgb8(image)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let Picture::Jpeg { data_uri, video } = picture(&png, &ReportRow::default()).unwrap()
        else {
            panic!("not a JPEG")
        };
        assert!(!video);
        let b64 = data_uri.strip_prefix("data:image/jpeg;base64,").unwrap();
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let thumb = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (160, 80));
    }

    #[test]
    fn text_is_not_drawn_and_says_why() {
        let e = picture(b"hello, I am not a picture", &ReportRow::default()).unwrap_err();
        assert_eq!(e.to_string(), "neither an image nor a video or audio file");
        assert_eq!(
            picture(b"", &ReportRow::default()).unwrap_err().to_string(),
            "the file is empty"
        );
    }

    #[test]
    fn a_waveform_has_one_stroke_per_column() {
        let tone: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let d = waveform_path(&tone);
        assert_eq!(d.matches('M').count(), WAVEFORM_COLUMNS);
        assert!(d.starts_with("M0.5 26.0V74.0"), "{}", &d[..20]);
        assert_eq!(waveform_path(&[]), "");
    }
}
