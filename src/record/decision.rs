//! What was decided about one sample: [`Decision`] (`Keep` or `Drop` with the stage, the reason
//! and the numbers behind it). Made by `decide` (and by the stages before it, for samples that
//! cannot be read), carried by the per-sample [`super::Record`] and written to the ledger by
//! `write`. Only the types: the rules that decide live in `decide`.

use serde::{Deserialize, Serialize};

/// The verdict on one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Decision {
    Keep,
    Drop(Drop),
}

impl Decision {
    pub fn is_keep(&self) -> bool {
        matches!(self, Decision::Keep)
    }

    pub fn dropped(&self) -> Option<&Drop> {
        match self {
            Decision::Keep => None,
            Decision::Drop(d) => Some(d),
        }
    }
}

/// Why a sample was dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drop {
    pub stage: Stage,
    pub reason: Reason,
    /// Human-readable specifics: the decoder's message, the measured value and the limit, or
    /// the sample this one duplicates and at what distance.
    pub detail: String,
    /// For duplicates: the id of the sample that was kept instead.
    pub duplicate_of: Option<String>,
    /// For exact and pHash duplicates: Hamming distance of the pHashes (0 for exact copies).
    pub duplicate_distance: Option<f64>,
    /// For semantic duplicates: cosine similarity of the two image embeddings.
    pub duplicate_similarity: Option<f64>,
}

impl Drop {
    pub fn new(stage: Stage, reason: Reason, detail: impl Into<String>) -> Drop {
        Drop {
            stage,
            reason,
            detail: detail.into(),
            duplicate_of: None,
            duplicate_distance: None,
            duplicate_similarity: None,
        }
    }
}

/// The pipeline stage that dropped a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Source,
    Decode,
    Filter,
    Dedup,
    Alignment,
}

/// Why a sample was dropped; the ledger's `drop_reason` column holds [`Reason::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The bytes could not be fetched from the store.
    FetchFailed,
    /// The server opted the object out of this use (`X-Robots-Tag`, `[http]`).
    OptedOut,
    /// The sample has no media part (e.g. a tar sample with only `.txt`).
    NoMedia,
    /// The media part is 0 bytes.
    EmptyFile,
    /// The bytes are not an image of a known format (e.g. text named `.jpg`).
    NotAnImage,
    /// The decoder failed (corrupt or truncated file); the detail has its message.
    Unreadable,
    /// The header declares more pixels than `max_pixels`, or an image that decodes to more
    /// than `limits.max_decode_bytes`; it was not decoded.
    TooManyPixels,
    /// The shorter side is below `min_side`.
    TooSmall,
    /// The aspect ratio is above `max_aspect_ratio`.
    AspectRatio,
    /// Sharpness is below `min_sharpness`.
    TooBlurry,
    /// Mean luminance is below `min_brightness`.
    TooDark,
    /// Mean luminance is above `max_brightness`.
    TooBright,
    /// No caption (or only white space) while `[filters.caption] required` is set.
    NoCaption,
    /// The `.txt` caption is not valid UTF-8.
    CaptionNotUtf8,
    /// The caption has fewer words than `min_words` or characters than `min_chars`.
    CaptionTooShort,
    /// The caption is longer than `limits.max_caption_bytes`.
    CaptionTooLong,
    /// An audio stream declares more channels than `limits.max_audio_channels`.
    TooManyChannels,
    /// A part or the whole sample is over `limits.max_part_bytes` / `max_sample_bytes`; it
    /// was not read.
    TooLarge,
    /// A manifest row names a location outside its input's own, which the input does not
    /// allow (`allow_outside`); it was not read.
    OutsideInput,
    /// A video declares (or decodes) more frames than `limits.max_video_frames`.
    TooManyFrames,
    /// Decoding and measuring took longer than `limits.max_decode_seconds`.
    DecodeTimeout,
    /// Byte-identical to a kept sample.
    ExactDuplicate,
    /// pHash within `phash_max_distance` of a kept sample.
    NearDuplicate,
    /// Image embedding within `embedding_min_cosine` of a kept sample's.
    SemanticDuplicate,
    /// A video whose time-aligned frame pHashes are within `video_max_distance` of a kept one's.
    VideoDuplicate,
    /// Audio whose fingerprint is within `audio_max_bit_error_rate` of a kept one's.
    AudioDuplicate,
    /// The bytes are neither an image nor a video or audio file FFmpeg can open.
    NotMedia,
    /// A video or audio file without a stream that can be decoded.
    NoStream,
    /// Shorter than `min_duration`.
    TooShort,
    /// Longer than `max_duration`.
    TooLong,
    /// A video without an audio track while `require_audio` is set.
    NoAudio,
    /// Audio sampled below `min_sample_rate`.
    LowSampleRate,
    /// A video whose motion score is below `min_motion` (static or a slideshow).
    StaticVideo,
    /// More samples at full scale than `max_clipped_fraction`.
    TooClipped,
    /// More silent windows than `max_silence_fraction`.
    TooSilent,
    /// Estimated signal-to-noise ratio below `min_snr_db`.
    TooNoisy,
    /// CLIP score below `min_clip_score` or below the `keep_top_fraction` quantile.
    LowClipScore,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Decode => "decode",
            Stage::Filter => "filter",
            Stage::Dedup => "dedup",
            Stage::Alignment => "alignment",
        }
    }
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FetchFailed => "fetch_failed",
            Reason::OptedOut => "opted_out",
            Reason::NoMedia => "no_media",
            Reason::EmptyFile => "empty_file",
            Reason::NotAnImage => "not_an_image",
            Reason::Unreadable => "unreadable",
            Reason::TooManyPixels => "too_many_pixels",
            Reason::TooSmall => "too_small",
            Reason::AspectRatio => "aspect_ratio",
            Reason::TooBlurry => "too_blurry",
            Reason::TooDark => "too_dark",
            Reason::TooBright => "too_bright",
            Reason::NoCaption => "no_caption",
            Reason::CaptionNotUtf8 => "caption_not_utf8",
            Reason::CaptionTooShort => "caption_too_short",
            Reason::CaptionTooLong => "caption_too_long",
            Reason::TooManyChannels => "too_many_channels",
            Reason::TooLarge => "too_large",
            Reason::OutsideInput => "outside_input",
            Reason::TooManyFrames => "too_many_frames",
            Reason::DecodeTimeout => "decode_timeout",
            Reason::ExactDuplicate => "exact_duplicate",
            Reason::NearDuplicate => "near_duplicate",
            Reason::SemanticDuplicate => "semantic_duplicate",
            Reason::VideoDuplicate => "video_duplicate",
            Reason::AudioDuplicate => "audio_duplicate",
            Reason::NotMedia => "not_media",
            Reason::NoStream => "no_stream",
            Reason::TooShort => "too_short",
            Reason::TooLong => "too_long",
            Reason::NoAudio => "no_audio",
            Reason::LowSampleRate => "low_sample_rate",
            Reason::StaticVideo => "static_video",
            Reason::TooClipped => "too_clipped",
            Reason::TooSilent => "too_silent",
            Reason::TooNoisy => "too_noisy",
            Reason::LowClipScore => "low_clip_score",
        }
    }
}
