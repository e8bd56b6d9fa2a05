//! `[filters]`: the per-sample rules for images (`[filters.image]`), captions
//! (`[filters.caption]`) and image-text alignment (`[filters.alignment]`); video and audio
//! limits are in their own sections' files. `decide` applies them; this module only types and
//! checks them.

use serde::{Deserialize, Serialize};

use super::audio::AudioFilters;
use super::check::invalid;
use super::threshold::Threshold;
use super::video::VideoFilters;
use super::ConfigError;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiltersConfig {
    #[serde(default)]
    pub image: ImageFilters,
    #[serde(default)]
    pub caption: CaptionFilters,
    #[serde(default)]
    pub alignment: AlignmentFilters,
    #[serde(default)]
    pub video: VideoFilters,
    #[serde(default)]
    pub audio: AudioFilters,
}

/// Checks on the caption (a `.txt` part, a sidecar's or a manifest's `caption`), run with the
/// cheap filters, before anything is embedded. A `.txt` part that is not UTF-8 is always
/// dropped: no tokenizer or training loader can read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptionFilters {
    /// Drop samples without a caption (none, or only white space).
    #[serde(default)]
    pub required: bool,
    /// Drop captions of fewer words (white-space separated) than this; 0 turns it off.
    #[serde(default)]
    pub min_words: u32,
    /// Drop captions of fewer characters (after trimming white space) than this; 0: off.
    #[serde(default)]
    pub min_chars: u32,
}

/// Image-text alignment: the CLIP score (cosine of image and caption embeddings) of samples
/// that survived dedup. Needs `[models.clip]`. Samples without a caption are not scored and
/// are not dropped by these rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignmentFilters {
    /// Drop samples whose CLIP score is below this (LAION-5B used 0.28 with ViT-B/32), or
    /// below a percentile of the run's scores (`"p70"`).
    #[serde(default)]
    pub min_clip_score: Option<Threshold>,
    /// Keep only this fraction of the scored samples, the best-aligned (DataComp's CLIP score
    /// filter kept 0.3); the threshold is the run-wide quantile, recorded in the manifest.
    #[serde(default)]
    pub keep_top_fraction: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFilters {
    /// Drop images whose shorter side is below this many pixels.
    #[serde(default = "default_min_side")]
    pub min_side: u32,
    /// Refuse images whose header declares more pixels than this, before decoding them.
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
    /// Drop images whose longer side is more than this many times the shorter side.
    #[serde(default = "default_max_aspect_ratio")]
    pub max_aspect_ratio: f64,
    /// Drop images whose sharpness (Laplacian variance at a 512-px shorter side) is below this;
    /// a percentile of the run (`"p10"`) is resolved over every measured image.
    #[serde(default = "zero")]
    pub min_sharpness: Threshold,
    /// Drop images whose mean luminance (0–255) is below this (or a percentile, `"p2"`).
    #[serde(default = "zero")]
    pub min_brightness: Threshold,
    /// Drop images whose mean luminance (0–255) is above this (or a percentile, `"p98"`).
    #[serde(default = "default_max_brightness")]
    pub max_brightness: Threshold,
}

fn default_min_side() -> u32 {
    64
}
fn default_max_pixels() -> u64 {
    100_000_000
}
fn default_max_aspect_ratio() -> f64 {
    10.0
}
fn default_max_brightness() -> Threshold {
    Threshold::Value(255.0)
}
fn zero() -> Threshold {
    Threshold::Value(0.0)
}

impl Default for ImageFilters {
    fn default() -> Self {
        ImageFilters {
            min_side: default_min_side(),
            max_pixels: default_max_pixels(),
            max_aspect_ratio: default_max_aspect_ratio(),
            min_sharpness: zero(),
            min_brightness: zero(),
            max_brightness: default_max_brightness(),
        }
    }
}

impl ImageFilters {
    /// Checks `[filters.image]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let f = self;
        if f.min_side == 0 {
            return Err(invalid(
                "filters.image.min_side",
                0,
                "must be at least 1 pixel",
            ));
        }
        if f.max_pixels == 0 {
            return Err(invalid(
                "filters.image.max_pixels",
                0,
                "must be at least 1 pixel",
            ));
        }
        if !(f.max_aspect_ratio >= 1.0 && f.max_aspect_ratio.is_finite()) {
            return Err(invalid(
                "filters.image.max_aspect_ratio",
                f.max_aspect_ratio,
                "must be a finite number >= 1.0",
            ));
        }
        if let Some(sharpness) = f.min_sharpness.fixed() {
            if !(sharpness >= 0.0 && sharpness.is_finite()) {
                return Err(invalid(
                    "filters.image.min_sharpness",
                    sharpness,
                    "must be a finite number >= 0 (0 turns the filter off), or a percentile such as \"p10\"",
                ));
            }
        }
        for (key, threshold) in [
            ("filters.image.min_brightness", f.min_brightness),
            ("filters.image.max_brightness", f.max_brightness),
        ] {
            let Some(value) = threshold.fixed() else {
                continue;
            };
            if !(0.0..=255.0).contains(&value) {
                return Err(invalid(
                    key,
                    value,
                    "must be between 0 and 255 (mean luminance), or a percentile such as \"p2\"",
                ));
            }
        }
        let above = match (f.min_brightness, f.max_brightness) {
            (Threshold::Value(min), Threshold::Value(max)) => min > max,
            (Threshold::Percentile(min), Threshold::Percentile(max)) => min > max,
            _ => false,
        };
        if above {
            return Err(invalid(
                "filters.image.min_brightness",
                f.min_brightness,
                &format!(
                    "must not exceed filters.image.max_brightness ({})",
                    f.max_brightness
                ),
            ));
        }

        Ok(())
    }
}

impl AlignmentFilters {
    /// Checks the ranges of `[filters.alignment]` (whether a CLIP model is there to score with
    /// is `[models]`' check).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(score) = self.min_clip_score.and_then(Threshold::fixed) {
            if !(-1.0..=1.0).contains(&score) {
                return Err(invalid(
                    "filters.alignment.min_clip_score",
                    score,
                    "must be a cosine similarity between -1 and 1 (LAION used 0.28 with ViT-B/32)",
                ));
            }
        }
        if let Some(fraction) = self.keep_top_fraction {
            if !(fraction > 0.0 && fraction <= 1.0) {
                return Err(invalid(
                    "filters.alignment.keep_top_fraction",
                    fraction,
                    "must be above 0 and at most 1 (DataComp kept 0.3)",
                ));
            }
        }
        Ok(())
    }
}
