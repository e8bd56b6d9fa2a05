//! `[dedup]`: which duplicates are removed and how close two samples must be to count as
//! copies. `decide::dedup` applies it; this module only types and checks the keys.

use serde::{Deserialize, Serialize};

use super::check::invalid;
use super::ConfigError;

/// Bit error rate up to which two audio fingerprints are the same audio
/// (`dedup.audio_max_bit_error_rate`'s default). Observed: re-encodes, resampling and level
/// changes of music 0–0.016, trimmed copies (frame grids misaligned by up to half a hop)
/// 0.05–0.10; unrelated audio at the best of all offsets 0.42–0.56 (see `measure::audio`'s
/// tests), so 0.2 leaves a margin of 2x above the copies and 0.2 below the unrelated.
pub const DEFAULT_MAX_BIT_ERROR_RATE: f64 = 0.2;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// Drop byte-identical copies (same sha256).
    #[serde(default = "default_true")]
    pub exact: bool,
    /// Near duplicates: pHashes within this many differing bits (0–64); 0 turns it off.
    #[serde(default = "default_phash_max_distance")]
    pub phash_max_distance: u32,
    /// Semantic duplicates (with `[models.clip]`): image embeddings whose cosine similarity is
    /// at least this are linked; 0 turns it off.
    #[serde(default = "default_embedding_min_cosine")]
    pub embedding_min_cosine: f64,
    /// Video copies: mean pHash distance (bits) of time-aligned sampled frames at or below
    /// this; 0 turns it off.
    #[serde(default = "default_video_max_distance")]
    pub video_max_distance: f64,
    /// Audio copies: fingerprint bit error rate at the best alignment at or below this; 0
    /// turns it off.
    #[serde(default = "default_audio_max_bit_error_rate")]
    pub audio_max_bit_error_rate: f64,
}

fn default_video_max_distance() -> f64 {
    8.0
}
fn default_audio_max_bit_error_rate() -> f64 {
    DEFAULT_MAX_BIT_ERROR_RATE
}

fn default_embedding_min_cosine() -> f64 {
    0.95
}

fn default_true() -> bool {
    true
}
fn default_phash_max_distance() -> u32 {
    4
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            exact: true,
            phash_max_distance: default_phash_max_distance(),
            embedding_min_cosine: default_embedding_min_cosine(),
            video_max_distance: default_video_max_distance(),
            audio_max_bit_error_rate: default_audio_max_bit_error_rate(),
        }
    }
}

impl DedupConfig {
    /// Checks `[dedup]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.phash_max_distance > 64 {
            return Err(invalid(
                "dedup.phash_max_distance",
                self.phash_max_distance,
                "must be 0 (off) to 64 bits",
            ));
        }
        let d = self.embedding_min_cosine;
        if !(0.0..=1.0).contains(&d) {
            return Err(invalid(
                "dedup.embedding_min_cosine",
                d,
                "must be 0 (off) or a cosine similarity up to 1.0 (e.g. 0.95)",
            ));
        }
        if !(0.0..=64.0).contains(&self.video_max_distance) {
            return Err(invalid(
                "dedup.video_max_distance",
                self.video_max_distance,
                "must be 0 (off) to 64 bits, a mean pHash distance (e.g. 8)",
            ));
        }
        if !(0.0..0.5).contains(&self.audio_max_bit_error_rate) {
            return Err(invalid(
                "dedup.audio_max_bit_error_rate",
                self.audio_max_bit_error_rate,
                "must be 0 (off) or a bit error rate below 0.5, where unrelated audio lies (e.g. 0.2)",
            ));
        }
        Ok(())
    }
}
