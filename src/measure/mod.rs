//! Measuring samples: what an image is (format, size, sha256) and how good it is (sharpness,
//! brightness, clipping), plus the perceptual hashes dedup needs (pHash, dHash); videos through
//! their sampled frames ([`video`]), audio through its levels and fingerprint ([`audio`]). The
//! CLIP embeddings and scores are measured later, on the samples that survive dedup.
//!
//! Pixel work sits behind [`QualityKernels`] so that a GPU backend can implement it; the CPU
//! implementation here is the reference. This module records numbers and decides nothing.

pub mod audio;
pub mod audio_track;
pub mod backend;
pub mod clip_score;
pub mod hash;
pub mod quality;
pub mod video;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use std::borrow::Cow;

use crate::pixels::resample::{self, Filter};
use crate::pixels::LumaImage;

/// The algorithms behind the numbers, recorded with every measurement so a later run can tell
/// whether a stored value is still comparable. Bump a part when its computation changes.
pub const MEASURE_VERSION: &str =
    "mmcurate-measure/3 sharpness=laplacian3x3-var@512 brightness=mean-luma@512 phash=imagehash-dct32 dhash=imagehash-9x8 video=sampled-frames+thumb64-diff audio=levels-50ms+chroma12-fp32@11025";

/// Every metric of a sample; `None` when it was not computed (e.g. the image did not decode).
/// Its serde form is the work-unit state's (`state`), lossless; the ledger and the `.json` are
/// written from `write::ledger::COLUMNS`, not from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    /// Size of the media part in bytes.
    pub size_bytes: u64,
    /// sha256 of the media part's bytes, hex.
    pub sha256: Option<String>,
    /// Format detected from the bytes (`jpg`, `png`, …).
    pub format: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Variance of the 3x3 Laplacian of the luminance at a 512-pixel shorter side.
    pub sharpness: Option<f64>,
    /// Mean luminance, 0–255.
    pub brightness: Option<f64>,
    /// Fraction of pixels whose luminance is 0 or 255.
    pub clipped_fraction: Option<f64>,
    /// 64-bit DCT perceptual hash, as `imagehash.phash` builds it.
    pub phash: Option<u64>,
    /// 64-bit difference hash, as `imagehash.dhash` builds it.
    pub dhash: Option<u64>,
    /// Characters of the caption after trimming white space, when the sample has a caption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption_chars: Option<u32>,
    /// White-space separated words of the caption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption_words: Option<u32>,
    /// CLIP tokens of the caption, start and end tokens included, before it is cut to the
    /// model's context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption_tokens: Option<u32>,
    /// Whether the caption was longer than the model's context, so its end was not scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption_truncated: Option<bool>,
    /// Cosine similarity of the sample's CLIP image and caption embeddings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_score: Option<f64>,
    /// Why an embedded sample has no CLIP score (e.g. it has no caption).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_note: Option<String>,
    /// The model that embedded the sample: its id and the sha256 of its weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_weights_sha256: Option<String>,
    /// Image, video or audio, from the bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_kind: Option<MediaKind>,
    /// A video or audio file's container: FFmpeg's demuxer name (`mov,mp4,m4a,3gp,3g2,mj2`,
    /// `matroska,webm`, `wav`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// A video or audio file's duration as the container declares it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// The video measurements of a video file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoMeasurements>,
    /// The audio measurements of an audio file or of a video's audio track.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioMeasurements>,
}

/// What kind of media a sample is, from its bytes (not its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
}

impl MediaKind {
    /// The name in the ledger's `media_kind` column and the manifest's counts.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
        }
    }
}

/// Per-video measurements from the sampled frames (see `video`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoMeasurements {
    pub codec: String,
    /// Frames per second the stream declares.
    pub fps: Option<f64>,
    /// Frames the decoder produced to reach the samples.
    pub decoded_frames: u64,
    /// Timestamps (seconds) of the sampled frames, in order.
    pub frame_timestamps: Vec<f64>,
    /// Whether each sampled frame was taken at a scene cut (else on the regular grid).
    pub frame_scene_cut: Vec<bool>,
    /// Sharpness of each sampled frame, as for images.
    pub frame_sharpness: Vec<f64>,
    /// Mean luminance of each sampled frame.
    pub frame_brightness: Vec<f64>,
    /// pHash of each sampled frame: the video's signature, aligned by the timestamps.
    pub frame_phashes: Vec<u64>,
    pub sharpness_min: Option<f64>,
    pub sharpness_mean: Option<f64>,
    /// Detected scene cuts per minute of decoded video.
    pub scene_cuts_per_minute: Option<f64>,
    /// Mean absolute difference (0–255) between consecutive decoded frames' thumbnails: near 0
    /// for static videos and slideshows.
    pub motion_score: Option<f64>,
}

/// Audio measurements (see `audio`), over at most `[audio] max_analysis_seconds`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudioMeasurements {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    /// Seconds of audio analysed.
    pub analysed_seconds: f64,
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
    pub clipped_fraction: f64,
    pub silence_fraction: f64,
    pub snr_db: Option<f64>,
    /// The fingerprint's 32-bit sub-fingerprints (written to the ledger, not to the `.json`).
    pub fingerprint: Vec<u32>,
}

/// The CLIP embeddings of one run: row `i` belongs to the sample `rows[i]` (an index into the
/// run's records, which are in id order). Unit length.
#[derive(Debug, Default)]
pub struct Embeddings {
    pub dim: usize,
    pub rows: Vec<usize>,
    /// `rows.len() x dim`, row-major.
    pub image: Vec<f32>,
    /// `rows.len() x dim`; a row of zeros where the sample has no caption (`has_text`).
    pub text: Vec<f32>,
    pub has_text: Vec<bool>,
}

/// What the pixel kernels compute for one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageQuality {
    pub sharpness: f64,
    pub brightness: f64,
    pub clipped_fraction: f64,
    pub phash: u64,
    pub dhash: u64,
}

/// The shorter side of the image that sharpness and brightness are measured on.
pub const ANALYSIS_SHORT_SIDE: u32 = 512;

/// Hashes are computed from a copy no larger than this on each side.
const HASH_PREREDUCE: u32 = 128;

/// Pixel kernels: one CPU reference implementation, and room for a GPU one.
pub trait QualityKernels: Send + Sync {
    fn measure(&self, luma: &LumaImage) -> ImageQuality;

    /// [`Self::measure`] of a plane the caller no longer needs, which a batching backend can
    /// queue without copying it.
    fn measure_owned(&self, luma: LumaImage) -> ImageQuality {
        self.measure(&luma)
    }
}

/// The CPU reference kernels.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuKernels;

impl QualityKernels for CpuKernels {
    fn measure(&self, luma: &LumaImage) -> ImageQuality {
        // The analysis plane comes back transposed, which the analysis does not see; resizing
        // it transposed again gives the hash source its original orientation.
        let transposed = quality::resize_shorter_side_transposed(luma, ANALYSIS_SHORT_SIDE);
        let analysis = transposed.as_ref().unwrap_or(luma);
        let stats = quality::analyse(analysis);
        // Hashes are taken from an area-averaged 128x128 copy, as Pillow's `reducing_gap` does
        // before a Lanczos resize: the result differs from resampling the whole image by a bit
        // or two at most (tests/it/phash_reference.rs), at a small fraction of the cost.
        let side = HASH_PREREDUCE as usize;
        let hash_source = if luma.width.min(luma.height) <= HASH_PREREDUCE {
            Cow::Borrowed(luma)
        } else {
            let (w, h) = (analysis.width as usize, analysis.height as usize);
            let pixels = if transposed.is_some() {
                resample::resize_plane_transposed(&analysis.pixels, w, h, side, side, Filter::Box)
            } else {
                resample::resize_plane(&analysis.pixels, w, h, side, side, Filter::Box)
            };
            Cow::Owned(LumaImage {
                width: HASH_PREREDUCE,
                height: HASH_PREREDUCE,
                pixels,
            })
        };
        let hash_source = hash_source.as_ref();
        ImageQuality {
            sharpness: stats.sharpness,
            brightness: stats.brightness,
            clipped_fraction: stats.clipped_fraction,
            phash: hash::phash(hash_source),
            dhash: hash::dhash(hash_source),
        }
    }
}

/// sha256 of some bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
