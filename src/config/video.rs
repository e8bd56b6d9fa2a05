//! `[video]` (how frames are sampled and used) and `[filters.video]` (the per-video limits).
//! Every key has a default (README, "Config reference"); validation names the key, the value
//! and what is allowed.

use serde::{Deserialize, Serialize};

use super::check::{check_min_not_above_max, check_non_negative, invalid, SECONDS};
use super::threshold::Threshold;
use super::ConfigError;

/// How video frames are sampled and used.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoConfig {
    /// Regular frame samples per second of video.
    #[serde(default = "default_sample_fps")]
    pub sample_fps: f64,
    /// A scene cut is a mean absolute difference of at least this (0–255) between consecutive
    /// decoded frames' 64x64 luminance thumbnails; the frame after a cut is sampled too. 0 turns
    /// scene detection off.
    #[serde(default = "default_scene_threshold")]
    pub scene_threshold: f64,
    /// At most this many sampled frames per video (regular and scene-cut ones together).
    #[serde(default = "default_max_frames")]
    pub max_frames: usize,
    /// Write the sampled frames into the shard as `KEY.NNN.jpg` parts.
    #[serde(default)]
    pub write_keyframes: bool,
    /// With `[models.clip]`: which frame statistic is the video's CLIP score, `mean` or `max`
    /// of the frames' scores.
    #[serde(default)]
    pub clip_score: FrameScore,
    /// Decode video with NVDEC when the run's device (`run.device`) is a GPU; videos NVDEC
    /// cannot decode exactly still decode on the CPU, one by one. The frames are the same
    /// either way.
    #[serde(default = "default_gpu_decode")]
    pub gpu_decode: bool,
    /// Not a config key: the CUDA device videos decode on, resolved when the run has chosen
    /// its device (`pipeline::backends::Backends`: `gpu_decode` and a GPU). `None`
    /// decodes on the CPU; a config read from TOML always has `None`.
    #[serde(skip)]
    pub nvdec_device: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameScore {
    #[default]
    Mean,
    Max,
}

fn default_sample_fps() -> f64 {
    1.0
}
fn default_scene_threshold() -> f64 {
    30.0
}
fn default_max_frames() -> usize {
    16
}
fn default_gpu_decode() -> bool {
    true
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            sample_fps: default_sample_fps(),
            scene_threshold: default_scene_threshold(),
            max_frames: default_max_frames(),
            write_keyframes: false,
            clip_score: FrameScore::Mean,
            gpu_decode: default_gpu_decode(),
            nvdec_device: None,
        }
    }
}

/// Per-video limits. 0 turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoFilters {
    /// Drop videos shorter than this many seconds.
    #[serde(default)]
    pub min_duration: f64,
    /// Drop videos longer than this many seconds; 0: no limit.
    #[serde(default)]
    pub max_duration: f64,
    /// Drop videos whose frames' shorter side is below this many pixels.
    #[serde(default = "default_video_min_side")]
    pub min_side: u32,
    /// Drop videos without an audio track.
    #[serde(default)]
    pub require_audio: bool,
    /// Drop videos whose mean frame sharpness is below this (or a percentile, `"p10"`).
    #[serde(default = "zero")]
    pub min_sharpness: Threshold,
    /// Drop videos whose motion score (mean difference of consecutive frames, 0–255) is below
    /// this (or a percentile, `"p5"`): static videos and slideshows.
    #[serde(default = "zero")]
    pub min_motion: Threshold,
}

fn default_video_min_side() -> u32 {
    64
}

fn zero() -> Threshold {
    Threshold::Value(0.0)
}

impl Default for VideoFilters {
    fn default() -> Self {
        VideoFilters {
            min_duration: 0.0,
            max_duration: 0.0,
            min_side: default_video_min_side(),
            require_audio: false,
            min_sharpness: zero(),
            min_motion: zero(),
        }
    }
}

impl VideoConfig {
    /// Checks `[video]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let video = self;
        if !(video.sample_fps > 0.0 && video.sample_fps <= 120.0) {
            return Err(invalid(
                "video.sample_fps",
                video.sample_fps,
                "must be above 0 and at most 120 frames per second (e.g. 1.0)",
            ));
        }
        if !(0.0..=255.0).contains(&video.scene_threshold) {
            return Err(invalid(
                "video.scene_threshold",
                video.scene_threshold,
                "must be 0 (off) to 255, a mean luminance difference (e.g. 30)",
            ));
        }
        if !(1..=1000).contains(&video.max_frames) {
            return Err(invalid(
                "video.max_frames",
                video.max_frames,
                "must be 1 to 1000",
            ));
        }
        Ok(())
    }
}

impl VideoFilters {
    /// Checks `[filters.video]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let v = self;
        check_non_negative("filters.video.min_duration", v.min_duration, SECONDS)?;
        check_non_negative("filters.video.max_duration", v.max_duration, SECONDS)?;
        check_min_not_above_max(
            "filters.video.min_duration",
            v.min_duration,
            "filters.video.max_duration",
            v.max_duration,
        )?;
        if let Some(sharpness) = v.min_sharpness.fixed() {
            check_non_negative(
                "filters.video.min_sharpness",
                sharpness,
                "must be a finite number >= 0 (0 turns the filter off), or a percentile such as \"p10\"",
            )?;
        }
        if let Some(motion) = v.min_motion.fixed() {
            if !(0.0..=255.0).contains(&motion) {
                return Err(invalid(
                    "filters.video.min_motion",
                    motion,
                    "must be 0 (off) to 255, a mean frame difference, or a percentile such as \"p5\"",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const MINIMAL: &str = "[run]\noutput = \"out\"\n[[inputs]]\nuri = \"data/videos\"\n";

    fn load(text: &str, sets: &[&str]) -> Result<Config, String> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::from_toml_str(text, "test.toml", &sets).map_err(|e| e.to_string())
    }

    #[test]
    fn gpu_decode_defaults_to_on_and_must_be_a_boolean() {
        let c = load(MINIMAL, &[]).unwrap();
        assert!(c.video.gpu_decode);
        assert_eq!(c.video.nvdec_device, None);
        let c = load(&format!("{MINIMAL}[video]\ngpu_decode = false\n"), &[]).unwrap();
        assert!(!c.video.gpu_decode);
        let c = load(MINIMAL, &["video.gpu_decode=false"]).unwrap();
        assert!(!c.video.gpu_decode);

        let e = load(&format!("{MINIMAL}[video]\ngpu_decode = \"yes\"\n"), &[]).unwrap_err();
        assert!(
            e.starts_with(
                "config key `video.gpu_decode`: invalid type: string \"yes\", expected a boolean"
            ),
            "{e}"
        );
        let e = load(MINIMAL, &["video.gpu_decode=1"]).unwrap_err();
        assert!(
            e.starts_with("config key `video.gpu_decode`: invalid type"),
            "{e}"
        );
        // The resolved device is not a key: a config cannot set it.
        let e = load(&format!("{MINIMAL}[video]\nnvdec_device = 0\n"), &[]).unwrap_err();
        assert!(e.contains("unknown field `nvdec_device`"), "{e}");
        // And it stays out of the resolved config (and its hash) the manifest records.
        let mut resolved = load(MINIMAL, &[]).unwrap();
        let (json, hash) = resolved.resolved_json_and_sha256();
        assert!(json["video"].get("nvdec_device").is_none());
        assert_eq!(json["video"]["gpu_decode"], true);
        resolved.video.nvdec_device = Some(0);
        assert_eq!(resolved.resolved_json_and_sha256().1, hash);
    }
}
