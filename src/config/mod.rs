//! The run configuration: TOML in, a typed and validated [`Config`] out.
//!
//! Every key has a documented default (README, "Config reference"). `--set a.b=c` overrides are
//! applied to the TOML tree before it is typed, so they go through the same checks. Validation
//! happens here, before any work starts; an error names the key, the value and what is allowed.
//! Each section has its own file with its types and its `validate()`, over the shared range
//! checks in `check`; [`Config::validate`] runs them in order.
//! This module does not touch the network: whether inputs exist is the `plan` stage's job.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

mod audio;
mod bytesize_serde;
mod check;
mod dedup;
mod filters;
mod http;
mod input;
mod limits;
mod models;
mod object_store;
mod output;
mod run;
mod threshold;
mod video;
pub use audio::{AudioConfig, AudioFilters};
pub use bytesize_serde::ByteSize;
pub use dedup::{DedupConfig, DEFAULT_MAX_BIT_ERROR_RATE};
pub use filters::{AlignmentFilters, CaptionFilters, FiltersConfig, ImageFilters};
pub use http::HttpConfig;
pub use input::{InputConfig, InputFormat};
pub use limits::LimitsConfig;
pub use models::{ClipDtype, ClipModelConfig, ModelsConfig};
pub use object_store::ObjectStoreConfig;
pub use output::OutputConfig;
pub use run::{DeviceRequest, RunConfig, DEVICE_VALUES};
pub use threshold::Threshold;
pub use video::{FrameScore, VideoConfig, VideoFilters};

/// A configuration problem, reported before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Type { key: String, message: String },
    #[error("config key `{key}` = {value}: {allowed}")]
    Invalid {
        key: String,
        value: String,
        allowed: String,
    },
    #[error("--set {arg}: {message}")]
    Override { arg: String, message: String },
}

/// The whole run configuration, with every default filled in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub run: RunConfig,
    #[serde(default)]
    pub inputs: Vec<InputConfig>,
    #[serde(default)]
    pub filters: FiltersConfig,
    #[serde(default)]
    pub dedup: DedupConfig,
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(default)]
    pub models: ModelsConfig,
    #[serde(default)]
    pub video: VideoConfig,
    #[serde(default)]
    pub audio: AudioConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
}

impl Config {
    /// Reads a TOML file, applies `--set KEY=VALUE` overrides, types and validates it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// Like [`Config::load`], from TOML text; `origin` names it in errors.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        overrides: &[String],
    ) -> Result<Config, ConfigError> {
        let tree: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: origin.to_string(),
                message: e.to_string(),
            })?;
        let mut tree = toml::Value::Table(tree);
        for arg in overrides {
            apply_override(&mut tree, arg)?;
        }
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            // toml appends "in `table`" on a line of its own; the key already says where.
            let message = e.inner().to_string();
            let message = message.split("\nin `").next().unwrap_or_default().trim();
            ConfigError::Type {
                key: e.path().to_string(),
                message: message.to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value against what it allows, section by section (each section's own
    /// `validate()`); the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.run.validate()?;
        input::validate(&self.inputs)?;
        self.filters.image.validate()?;
        self.dedup.validate()?;
        self.video.validate()?;
        self.audio.validate()?;
        self.filters.video.validate()?;
        self.filters.audio.validate()?;
        self.filters.alignment.validate()?;
        self.models
            .validate(&self.filters.alignment, &self.run.device)?;
        http::validate(&self.http)?;
        self.output.validate()?;
        self.limits.validate()?;
        Ok(())
    }

    /// The resolved configuration as canonical JSON (every default filled in) and its sha256,
    /// as recorded in the run manifest.
    pub fn resolved_json_and_sha256(&self) -> (serde_json::Value, String) {
        let value = serde_json::to_value(self).expect("config serialises to JSON");
        let canonical = serde_json::to_vec(&value).expect("JSON value serialises");
        (value, hex::encode(Sha256::digest(&canonical)))
    }

    /// Worker threads to use: `run.threads`, or one per core when it is 0.
    pub fn worker_threads(&self) -> usize {
        if self.run.threads > 0 {
            self.run.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Applies one `KEY=VALUE` override to the TOML tree. The value is read as a TOML value when
/// it parses as one (`3`, `true`, `"x"`, `[1,2]`), else taken as a plain string. Array items
/// are addressed by index: `inputs.0.uri=...`.
fn apply_override(tree: &mut toml::Value, arg: &str) -> Result<(), ConfigError> {
    let err = |message: &str| ConfigError::Override {
        arg: arg.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected KEY=VALUE, e.g. --set run.threads=4"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(err(
            "the key must be a dotted path such as filters.image.min_side",
        ));
    }
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let segments: Vec<&str> = key.split('.').collect();
    let mut node = tree;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        node = match node {
            toml::Value::Table(table) => {
                if last {
                    table.insert(segment.to_string(), value);
                    return Ok(());
                }
                table
                    .entry(segment.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            toml::Value::Array(items) => {
                let index: usize = segment
                    .parse()
                    .map_err(|_| err(&format!("`{segment}` must be an index into the array")))?;
                let len = items.len();
                let item = items.get_mut(index).ok_or_else(|| {
                    err(&format!(
                        "index {index} is out of range (the array has {len} items)"
                    ))
                })?;
                if last {
                    *item = value;
                    return Ok(());
                }
                item
            }
            _ => {
                return Err(err(&format!(
                    "`{segment}` is inside a value that is not a table"
                )))
            }
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[run]
output = "out"
[[inputs]]
uri = "data/images"
"#;

    fn load(text: &str, sets: &[&str]) -> Result<Config, String> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::from_toml_str(text, "test.toml", &sets).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_fill_every_key() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.run.name, "mmcurate");
        assert_eq!(c.inputs[0].format, InputFormat::Files);
        assert_eq!(c.inputs[0].url_column, "url");
        assert_eq!(c.filters.image.min_side, 64);
        assert_eq!(c.filters.image.max_pixels, 100_000_000);
        assert!(c.dedup.exact);
        assert_eq!(c.dedup.phash_max_distance, 4);
        assert_eq!(c.output.max_samples_per_shard, 10_000);
        assert_eq!(c.output.max_bytes_per_shard, ByteSize(1 << 30));
    }

    #[test]
    fn overrides_reach_any_key_and_are_validated() {
        let c = load(
            MINIMAL,
            &[
                "run.threads=3",
                "filters.image.min_sharpness=12.5",
                "output.max_bytes_per_shard=512MB",
                "inputs.0.format=webdataset",
                "run.name=nightly",
            ],
        )
        .unwrap();
        assert_eq!(c.run.threads, 3);
        assert_eq!(c.filters.image.min_sharpness, Threshold::Value(12.5));
        assert_eq!(c.output.max_bytes_per_shard, ByteSize(512_000_000));
        assert_eq!(c.inputs[0].format, InputFormat::Webdataset);
        assert_eq!(c.run.name, "nightly");

        let e = load(MINIMAL, &["dedup.phash_max_distance=65"]).unwrap_err();
        assert_eq!(
            e,
            "config key `dedup.phash_max_distance` = 65: must be 0 (off) to 64 bits"
        );
        let e = load(MINIMAL, &["inputs.3.uri=x"]).unwrap_err();
        assert!(
            e.contains("index 3 is out of range (the array has 1 items)"),
            "{e}"
        );
        let e = load(MINIMAL, &["novalue"]).unwrap_err();
        assert!(e.contains("expected KEY=VALUE"), "{e}");
    }

    #[test]
    fn video_and_audio_keys_have_defaults_and_are_checked() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.video.sample_fps, 1.0);
        assert_eq!(c.video.max_frames, 16);
        assert_eq!(c.video.clip_score, FrameScore::Mean);
        assert_eq!(c.audio.silence_threshold_dbfs, -60.0);
        assert_eq!(c.filters.audio.max_clipped_fraction, 1.0);
        assert_eq!(c.dedup.video_max_distance, 8.0);
        assert_eq!(c.dedup.audio_max_bit_error_rate, 0.2);
        let cases: [(&[&str], &str); 7] = [
            (&["video.sample_fps=0"], "config key `video.sample_fps` = 0: must be above 0"),
            (&["video.max_frames=0"], "config key `video.max_frames` = 0: must be 1 to 1000"),
            (&["video.clip_score=\"median\""], "config key `video.clip_score`: unknown variant `median`"),
            (
                &["filters.audio.max_clipped_fraction=2"],
                "config key `filters.audio.max_clipped_fraction` = 2: must be a fraction from 0 to 1",
            ),
            (
                &["filters.video.min_duration=10", "filters.video.max_duration=5"],
                "config key `filters.video.min_duration` = 10: must not exceed filters.video.max_duration (5)",
            ),
            (
                &["dedup.audio_max_bit_error_rate=0.6"],
                "config key `dedup.audio_max_bit_error_rate` = 0.6: must be 0 (off) or a bit error rate below 0.5",
            ),
            (
                &["audio.silence_threshold_dbfs=3"],
                "config key `audio.silence_threshold_dbfs` = 3: must be a level from -150 to 0 dBFS",
            ),
        ];
        for (sets, expected) in cases {
            let e = load(MINIMAL, sets).unwrap_err();
            assert!(e.starts_with(expected), "{sets:?}: {e}");
        }
    }

    #[test]
    fn errors_name_key_value_and_what_is_allowed() {
        let e = load(&MINIMAL.replace("data/images", "ftp://x/y"), &[]).unwrap_err();
        assert!(
            e.starts_with("config key `inputs[0].uri` = \"ftp://x/y\": unsupported scheme"),
            "{e}"
        );

        let e = load(MINIMAL, &["inputs.0.format=zip"]).unwrap_err();
        assert!(
            e.starts_with("config key `inputs[0].format`: unknown variant `zip`"),
            "{e}"
        );
        assert!(e.contains("`files`, `webdataset`, `manifest`"), "{e}");

        let e = load(MINIMAL, &["filters.image.min_sid=3"]).unwrap_err();
        assert!(
            e.starts_with("config key `filters.image.min_sid`: unknown field `min_sid`, expected one of `min_side`"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");

        let e = load(MINIMAL, &["filters.image.min_side=\"big\""]).unwrap_err();
        assert!(
            e.starts_with("config key `filters.image.min_side`: invalid type: string \"big\""),
            "{e}"
        );

        let e = load(
            MINIMAL,
            &[
                "filters.image.min_brightness=200",
                "filters.image.max_brightness=100",
            ],
        )
        .unwrap_err();
        assert_eq!(
            e,
            "config key `filters.image.min_brightness` = 200: must not exceed filters.image.max_brightness (100)"
        );

        let e = load(MINIMAL, &["output.max_bytes_per_shard=\"lots\""]).unwrap_err();
        assert!(
            e.contains("`output.max_bytes_per_shard`") && e.contains("\"lots\" is not a size"),
            "{e}"
        );

        let e = load("[run]\noutput = \"o\"\n", &[]).unwrap_err();
        assert!(
            e.starts_with("config key `inputs` = []: at least one [[inputs]]"),
            "{e}"
        );

        let e = load("[run]\n", &[]).unwrap_err();
        assert!(e.contains("missing field `output`"), "{e}");

        let e = load("[run\n", &[]).unwrap_err();
        assert!(
            e.starts_with("config file test.toml is not valid TOML"),
            "{e}"
        );
    }

    #[test]
    fn model_caption_and_alignment_keys_are_checked() {
        let clip = "models.clip.path=\"models/b32\"";
        assert!(load(MINIMAL, &[clip, "filters.alignment.min_clip_score=0.28"]).is_ok());
        let cases: [(&[&str], &str); 8] = [
            (
                &["models.clip.batch_size=8"],
                "config key `models.clip` = {}: needs `path` (a local folder",
            ),
            (
                &[clip, "models.clip.hf=\"openai/clip-vit-base-patch32\""],
                "config key `models.clip.hf` = \"openai/clip-vit-base-patch32\": set either `path` or `hf`, not both",
            ),
            (
                &["models.clip.hf=\"clip\""],
                "config key `models.clip.hf` = \"clip\": must be a repository id",
            ),
            (
                &[clip, "models.clip.revision=\"main\""],
                "config key `models.clip.revision` = \"main\": applies only to `hf`",
            ),
            (
                &[clip, "models.clip.batch_size=0"],
                "config key `models.clip.batch_size` = 0: must be 1 to 4096",
            ),
            (
                &[clip, "filters.alignment.keep_top_fraction=1.5"],
                "config key `filters.alignment.keep_top_fraction` = 1.5: must be above 0 and at most 1",
            ),
            (
                &["filters.alignment.min_clip_score=0.28"],
                "config key `filters.alignment.min_clip_score` = 0.28: needs a CLIP model to score with",
            ),
            (
                &["dedup.embedding_min_cosine=1.2"],
                "config key `dedup.embedding_min_cosine` = 1.2: must be 0 (off) or a cosine similarity",
            ),
        ];
        for (sets, expected) in cases {
            let e = load(MINIMAL, sets).unwrap_err();
            assert!(e.starts_with(expected), "{sets:?}: {e}");
        }
    }

    #[test]
    fn clip_dtype_defaults_to_auto_and_half_precision_needs_a_gpu() {
        let clip = "models.clip.path=\"models/b32\"";
        let c = load(MINIMAL, &[clip]).unwrap();
        assert_eq!(c.models.clip.as_ref().unwrap().dtype, ClipDtype::Auto);
        assert_eq!(
            c.resolved_json_and_sha256().0["models"]["clip"]["dtype"],
            "auto"
        );
        for (value, dtype) in [("auto", ClipDtype::Auto), ("f32", ClipDtype::F32)] {
            let set = format!("models.clip.dtype=\"{value}\"");
            for device in ["run.device=\"cpu\"", "run.device=\"auto\""] {
                let c = load(MINIMAL, &[clip, &set, device]).unwrap();
                assert_eq!(c.models.clip.unwrap().dtype, dtype);
            }
        }
        let e = load(MINIMAL, &[clip, "models.clip.dtype=\"fp16\""]).unwrap_err();
        assert!(
            e.starts_with("config key `models.clip.dtype`: unknown variant `fp16`")
                && e.contains("`auto`, `f32`, `f16`, `bf16`"),
            "{e}"
        );
        for value in ["f16", "bf16"] {
            let set = format!("models.clip.dtype=\"{value}\"");
            let e = load(MINIMAL, &[clip, &set, "run.device=\"cpu\""]).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "config key `models.clip.dtype` = \"{value}\": f16 and bf16 run only on a GPU, and run.device = \"cpu\""
                )),
                "{e}"
            );
            let on_gpu = load(MINIMAL, &[clip, &set, "run.device=\"cuda\""]);
            if cfg!(feature = "cuda") {
                assert_eq!(on_gpu.unwrap().models.clip.unwrap().dtype.as_str(), value);
            } else {
                let e = on_gpu.unwrap_err();
                assert!(
                    e.starts_with(&format!("config key `models.clip.dtype` = \"{value}\":"))
                        && e.contains("built without the `cuda` feature"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn run_device_defaults_to_auto_and_allows_cpu_cuda_and_cuda_n() {
        assert_eq!(load(MINIMAL, &[]).unwrap().run.device, "auto");
        for ok in ["auto", "cpu", "cuda", "cuda:1"] {
            let set = format!("run.device=\"{ok}\"");
            assert_eq!(load(MINIMAL, &[set.as_str()]).unwrap().run.device, ok);
        }
        for bad in ["gpu", "cuda:x", "CPU"] {
            let set = format!("run.device=\"{bad}\"");
            let e = load(MINIMAL, &[set.as_str()]).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "config key `run.device` = \"{bad}\": must be \"auto\""
                )) && e.contains("\"cpu\", \"cuda\" or \"cuda:N\""),
                "{e}"
            );
        }
    }

    #[test]
    fn resolved_config_hash_is_stable_and_sensitive() {
        let a = load(MINIMAL, &[]).unwrap().resolved_json_and_sha256();
        let b = load(MINIMAL, &[]).unwrap().resolved_json_and_sha256();
        let c = load(MINIMAL, &["run.threads=2"])
            .unwrap()
            .resolved_json_and_sha256();
        assert_eq!(a.1, b.1);
        assert_ne!(a.1, c.1);
        assert_eq!(a.0["filters"]["image"]["min_side"], 64);
    }
}
