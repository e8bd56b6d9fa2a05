//! `[audio]` (how audio files and the audio track of videos are analysed) and
//! `[filters.audio]` (the per-audio limits). Every key has a default (README, "Config
//! reference"); validation names the key, the value and what is allowed.

use serde::{Deserialize, Serialize};

use super::check::{check_fraction, check_min_not_above_max, check_non_negative, invalid, SECONDS};
use super::threshold::Threshold;
use super::ConfigError;

/// How audio (audio files, and the audio track of videos) is analysed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioConfig {
    /// Analyse at most this many seconds from the start of each file.
    #[serde(default = "default_max_analysis_seconds")]
    pub max_analysis_seconds: f64,
    /// 50 ms windows quieter than this (RMS, dBFS) count as silence.
    #[serde(default = "default_silence_threshold_dbfs")]
    pub silence_threshold_dbfs: f64,
}

fn default_max_analysis_seconds() -> f64 {
    600.0
}
fn default_silence_threshold_dbfs() -> f64 {
    -60.0
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            max_analysis_seconds: default_max_analysis_seconds(),
            silence_threshold_dbfs: default_silence_threshold_dbfs(),
        }
    }
}

/// Per-audio-file limits. 0 (or 1 for fractions) turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioFilters {
    /// Drop audio shorter than this many seconds.
    #[serde(default)]
    pub min_duration: f64,
    /// Drop audio longer than this many seconds; 0: no limit.
    #[serde(default)]
    pub max_duration: f64,
    /// Drop audio sampled below this rate (Hz).
    #[serde(default)]
    pub min_sample_rate: u32,
    /// Drop audio with more than this fraction of samples at full scale.
    #[serde(default = "one")]
    pub max_clipped_fraction: f64,
    /// Drop audio with more than this fraction of silent 50 ms windows.
    #[serde(default = "one")]
    pub max_silence_fraction: f64,
    /// Drop audio whose estimated signal-to-noise ratio is below this (dB), or below a
    /// percentile of the run (`"p10"`); unset: off.
    #[serde(default)]
    pub min_snr_db: Option<Threshold>,
}

fn one() -> f64 {
    1.0
}

impl Default for AudioFilters {
    fn default() -> Self {
        AudioFilters {
            min_duration: 0.0,
            max_duration: 0.0,
            min_sample_rate: 0,
            max_clipped_fraction: 1.0,
            max_silence_fraction: 1.0,
            min_snr_db: None,
        }
    }
}

impl AudioConfig {
    /// Checks `[audio]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let audio = self;
        if !(audio.max_analysis_seconds >= 1.0 && audio.max_analysis_seconds.is_finite()) {
            return Err(invalid(
                "audio.max_analysis_seconds",
                audio.max_analysis_seconds,
                "must be a finite number of seconds, at least 1",
            ));
        }
        if !(-150.0..=0.0).contains(&audio.silence_threshold_dbfs) {
            return Err(invalid(
                "audio.silence_threshold_dbfs",
                audio.silence_threshold_dbfs,
                "must be a level from -150 to 0 dBFS (e.g. -60)",
            ));
        }
        Ok(())
    }
}

impl AudioFilters {
    /// Checks `[filters.audio]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = self;
        check_non_negative("filters.audio.min_duration", a.min_duration, SECONDS)?;
        check_non_negative("filters.audio.max_duration", a.max_duration, SECONDS)?;
        check_min_not_above_max(
            "filters.audio.min_duration",
            a.min_duration,
            "filters.audio.max_duration",
            a.max_duration,
        )?;
        check_fraction("filters.audio.max_clipped_fraction", a.max_clipped_fraction)?;
        check_fraction("filters.audio.max_silence_fraction", a.max_silence_fraction)?;
        if let Some(snr) = a.min_snr_db.and_then(Threshold::fixed) {
            if !(-100.0..=200.0).contains(&snr) {
                return Err(invalid(
                    "filters.audio.min_snr_db",
                    snr,
                    "must be a ratio from -100 to 200 dB (e.g. 15), or a percentile such as \"p10\"",
                ));
            }
        }
        Ok(())
    }
}
