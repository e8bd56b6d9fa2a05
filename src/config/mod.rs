//! The run configuration: TOML in, a typed and validated [`Config`] out.
//!
//! Every key has a documented default (README, "Config reference"). `--set a.b=c` overrides are
//! applied to the TOML tree before it is typed, so they go through the same checks. Validation
//! happens here, before any work starts; an error names the key, the value and what is allowed.
//! This module does not touch the network: whether inputs exist is the `plan` stage's job.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

mod av;
mod bytesize_serde;
mod http;
pub use av::{AudioConfig, AudioFilters, FrameScore, VideoConfig, VideoFilters};
pub use bytesize_serde::ByteSize;
pub use http::HttpConfig;

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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A name for the run, recorded in the manifest.
    #[serde(default = "default_run_name")]
    pub name: String,
    /// Where shards, ledger and manifest go: a local path, `file://…` or `s3://bucket/prefix`.
    pub output: String,
    /// Worker threads for decoding and measuring; 0 means one per core.
    #[serde(default)]
    pub threads: usize,
    /// Where pixels are measured: `auto` (the GPU when there is a usable one, else the CPU),
    /// `cpu`, `cuda` or `cuda:N` (see `gpu::device`).
    #[serde(default = "default_device")]
    pub device: String,
    /// With a CUDA device: decode JPEGs with nvJPEG (the GPU's JPEG engine where it has one).
    /// Off by default: nvJPEG's inverse DCT rounds differently from libjpeg-turbo's, so the
    /// measurements are close to, not identical with, a CPU run's.
    #[serde(default)]
    pub gpu_jpeg_decode: bool,
    /// Local folder for staging candidate samples between measuring and writing. Default: a
    /// `.staging` folder inside a local output, or the system temporary folder for S3 output.
    #[serde(default)]
    pub staging_dir: Option<String>,
}

fn default_run_name() -> String {
    "mmcurate".to_string()
}

fn default_device() -> String {
    "auto".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// Every object under a prefix; captions from `.txt` / `.json` sidecars with the same stem.
    Files,
    /// Existing WebDataset `.tar` shards, streamed.
    Webdataset,
    /// JSONL or Parquet rows naming object URIs.
    Manifest,
}

impl InputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Files => "files",
            InputFormat::Webdataset => "webdataset",
            InputFormat::Manifest => "manifest",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// A local path, `file://…` or `s3://bucket/prefix`: a folder/prefix or a single object.
    pub uri: String,
    #[serde(default = "default_format")]
    pub format: InputFormat,
    /// Manifest column holding each object's URI.
    #[serde(default = "default_url_column")]
    pub url_column: String,
    /// Manifest column holding each object's caption.
    #[serde(default = "default_caption_column")]
    pub caption_column: String,
}

fn default_format() -> InputFormat {
    InputFormat::Files
}
fn default_url_column() -> String {
    "url".to_string()
}
fn default_caption_column() -> String {
    "caption".to_string()
}

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
    /// Drop samples whose CLIP score is below this (LAION-5B used 0.28 with ViT-B/32).
    #[serde(default)]
    pub min_clip_score: Option<f64>,
    /// Keep only this fraction of the scored samples, the best-aligned (DataComp's CLIP score
    /// filter kept 0.3); the threshold is the run-wide quantile, recorded in the manifest.
    #[serde(default)]
    pub keep_top_fraction: Option<f64>,
}

/// Auxiliary models. Without `[models.clip]` the CLIP stages (embeddings, semantic dedup,
/// alignment scores) are skipped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    #[serde(default)]
    pub clip: Option<ClipModelConfig>,
}

/// Where a CLIP checkpoint comes from (`path` or `hf`, not both) and how it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipModelConfig {
    /// A local folder in the Hugging Face layout: config.json, model.safetensors, tokenizer.json.
    #[serde(default)]
    pub path: Option<String>,
    /// A Hugging Face Hub repository id, fetched into the Hugging Face cache (`HF_HOME`).
    #[serde(default)]
    pub hf: Option<String>,
    /// The hub revision (commit, branch or tag) for `hf`. Default: the revision its model card
    /// pins, or `main` for a repository without a card.
    #[serde(default)]
    pub revision: Option<String>,
    /// Images or captions per forward pass.
    #[serde(default = "default_clip_batch_size")]
    pub batch_size: usize,
    /// The precision CLIP runs in: `auto` (bf16 on a GPU, f32 on the CPU), `f32`, `f16` or
    /// `bf16`. f16 and bf16 need CLIP on a GPU: `run.device` a GPU and a binary built with
    /// `--features cuda`. Embeddings are f32 whatever this is.
    #[serde(default)]
    pub dtype: ClipDtype,
}

/// `[models.clip] dtype`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipDtype {
    /// bf16 on a GPU, f32 on the CPU.
    #[default]
    Auto,
    F32,
    F16,
    Bf16,
}

impl ClipDtype {
    /// The value as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClipDtype::Auto => "auto",
            ClipDtype::F32 => "f32",
            ClipDtype::F16 => "f16",
            ClipDtype::Bf16 => "bf16",
        }
    }

    /// Whether this precision runs only on a GPU.
    pub fn needs_gpu(self) -> bool {
        matches!(self, ClipDtype::F16 | ClipDtype::Bf16)
    }
}

fn default_clip_batch_size() -> usize {
    32
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
    /// Drop images whose sharpness (Laplacian variance at a 512-px shorter side) is below this.
    #[serde(default)]
    pub min_sharpness: f64,
    /// Drop images whose mean luminance (0–255) is below this.
    #[serde(default)]
    pub min_brightness: f64,
    /// Drop images whose mean luminance (0–255) is above this.
    #[serde(default = "default_max_brightness")]
    pub max_brightness: f64,
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
fn default_max_brightness() -> f64 {
    255.0
}

impl Default for ImageFilters {
    fn default() -> Self {
        ImageFilters {
            min_side: default_min_side(),
            max_pixels: default_max_pixels(),
            max_aspect_ratio: default_max_aspect_ratio(),
            min_sharpness: 0.0,
            min_brightness: 0.0,
            max_brightness: default_max_brightness(),
        }
    }
}

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
    crate::measure::audio::DEFAULT_MAX_BIT_ERROR_RATE
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Start a new shard after this many samples.
    #[serde(default = "default_max_samples_per_shard")]
    pub max_samples_per_shard: u64,
    /// Start a new shard before it would grow past this size ("512MB", "1GiB" or bytes).
    #[serde(default = "default_max_bytes_per_shard")]
    pub max_bytes_per_shard: ByteSize,
}

fn default_max_samples_per_shard() -> u64 {
    10_000
}
fn default_max_bytes_per_shard() -> ByteSize {
    ByteSize(1 << 30)
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            max_samples_per_shard: default_max_samples_per_shard(),
            max_bytes_per_shard: default_max_bytes_per_shard(),
        }
    }
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

    /// Checks every value against what it allows; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &str, value: impl std::fmt::Display, allowed: &str) -> ConfigError {
            ConfigError::Invalid {
                key: key.to_string(),
                value: value.to_string(),
                allowed: allowed.to_string(),
            }
        }
        check_uri("run.output", &self.run.output)?;
        if self.run.name.trim().is_empty() {
            return Err(invalid("run.name", "\"\"", "must not be empty"));
        }
        if self.run.threads > 4096 {
            return Err(invalid(
                "run.threads",
                self.run.threads,
                "must be 0 (one per core) to 4096",
            ));
        }
        if crate::gpu::DeviceRequest::parse(&self.run.device).is_none() {
            return Err(invalid(
                "run.device",
                format!("{:?}", self.run.device),
                crate::gpu::device::DEVICE_VALUES,
            ));
        }
        if self.inputs.is_empty() {
            return Err(invalid(
                "inputs",
                "[]",
                "at least one [[inputs]] table with a `uri` is required",
            ));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            check_uri(&format!("inputs[{i}].uri"), &input.uri)?;
            if input.url_column.is_empty() {
                return Err(invalid(
                    &format!("inputs[{i}].url_column"),
                    "\"\"",
                    "must name a column",
                ));
            }
        }
        let f = &self.filters.image;
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
        if !(f.min_sharpness >= 0.0 && f.min_sharpness.is_finite()) {
            return Err(invalid(
                "filters.image.min_sharpness",
                f.min_sharpness,
                "must be a finite number >= 0 (0 turns the filter off)",
            ));
        }
        for (key, value) in [
            ("filters.image.min_brightness", f.min_brightness),
            ("filters.image.max_brightness", f.max_brightness),
        ] {
            if !(0.0..=255.0).contains(&value) {
                return Err(invalid(
                    key,
                    value,
                    "must be between 0 and 255 (mean luminance)",
                ));
            }
        }
        if f.min_brightness > f.max_brightness {
            return Err(invalid(
                "filters.image.min_brightness",
                f.min_brightness,
                &format!(
                    "must not exceed filters.image.max_brightness ({})",
                    f.max_brightness
                ),
            ));
        }
        if self.dedup.phash_max_distance > 64 {
            return Err(invalid(
                "dedup.phash_max_distance",
                self.dedup.phash_max_distance,
                "must be 0 (off) to 64 bits",
            ));
        }
        let d = self.dedup.embedding_min_cosine;
        if !(0.0..=1.0).contains(&d) {
            return Err(invalid(
                "dedup.embedding_min_cosine",
                d,
                "must be 0 (off) or a cosine similarity up to 1.0 (e.g. 0.95)",
            ));
        }
        if !(0.0..=64.0).contains(&self.dedup.video_max_distance) {
            return Err(invalid(
                "dedup.video_max_distance",
                self.dedup.video_max_distance,
                "must be 0 (off) to 64 bits, a mean pHash distance (e.g. 8)",
            ));
        }
        if !(0.0..0.5).contains(&self.dedup.audio_max_bit_error_rate) {
            return Err(invalid(
                "dedup.audio_max_bit_error_rate",
                self.dedup.audio_max_bit_error_rate,
                "must be 0 (off) or a bit error rate below 0.5, where unrelated audio lies (e.g. 0.2)",
            ));
        }
        av::validate(
            &self.video,
            &self.audio,
            &self.filters.video,
            &self.filters.audio,
        )?;
        self.validate_captions_and_models()?;
        http::validate(&self.http)?;
        if self.output.max_samples_per_shard == 0 {
            return Err(invalid(
                "output.max_samples_per_shard",
                0,
                "must be at least 1",
            ));
        }
        if self.output.max_bytes_per_shard.0 < 10 * 1024 {
            return Err(invalid(
                "output.max_bytes_per_shard",
                self.output.max_bytes_per_shard,
                "must be at least 10KiB",
            ));
        }
        Ok(())
    }

    fn validate_captions_and_models(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: &dyn std::fmt::Display, allowed: &str| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                value: value.to_string(),
                allowed: allowed.to_string(),
            })
        };
        let a = &self.filters.alignment;
        if let Some(score) = a.min_clip_score {
            if !(-1.0..=1.0).contains(&score) {
                return invalid(
                    "filters.alignment.min_clip_score",
                    &score,
                    "must be a cosine similarity between -1 and 1 (LAION used 0.28 with ViT-B/32)",
                );
            }
        }
        if let Some(fraction) = a.keep_top_fraction {
            if !(fraction > 0.0 && fraction <= 1.0) {
                return invalid(
                    "filters.alignment.keep_top_fraction",
                    &fraction,
                    "must be above 0 and at most 1 (DataComp kept 0.3)",
                );
            }
        }
        let Some(clip) = &self.models.clip else {
            for (key, set) in [
                ("filters.alignment.min_clip_score", a.min_clip_score),
                ("filters.alignment.keep_top_fraction", a.keep_top_fraction),
            ] {
                if let Some(value) = set {
                    return invalid(
                        key,
                        &value,
                        "needs a CLIP model to score with: add a [models.clip] table with `path` or `hf`",
                    );
                }
            }
            return Ok(());
        };
        match (&clip.path, &clip.hf) {
            (None, None) => {
                return invalid(
                    "models.clip",
                    &"{}",
                    "needs `path` (a local folder with config.json, model.safetensors and tokenizer.json) or `hf` (a Hugging Face repository id)",
                )
            }
            (Some(_), Some(hf)) => {
                return invalid(
                    "models.clip.hf",
                    &format!("{hf:?}"),
                    "set either `path` or `hf`, not both",
                )
            }
            (Some(path), None) if path.trim().is_empty() => {
                return invalid("models.clip.path", &"\"\"", "must name a folder")
            }
            (None, Some(hf)) if hf.split('/').filter(|p| !p.is_empty()).count() != 2 => {
                return invalid(
                    "models.clip.hf",
                    &format!("{hf:?}"),
                    "must be a repository id such as \"openai/clip-vit-base-patch32\"",
                )
            }
            _ => {}
        }
        if let (Some(revision), None) = (&clip.revision, &clip.hf) {
            return invalid(
                "models.clip.revision",
                &format!("{revision:?}"),
                "applies only to `hf`; a local `path` has no revision",
            );
        }
        if !(1..=4096).contains(&clip.batch_size) {
            return invalid(
                "models.clip.batch_size",
                &clip.batch_size,
                "must be 1 to 4096",
            );
        }
        if clip.dtype.needs_gpu() {
            // Whether `auto` finds a GPU is known only when the run starts (models::checkpoint
            // says so then); a CPU-only device or binary is known now.
            let dtype = format!("{:?}", clip.dtype.as_str());
            if self.run.device == "cpu" {
                return invalid(
                    "models.clip.dtype",
                    &dtype,
                    "f16 and bf16 run only on a GPU, and run.device = \"cpu\": use \"auto\" (bf16 on a GPU, f32 on the CPU) or \"f32\", or set run.device = \"auto\" or \"cuda\"",
                );
            }
            if !cfg!(feature = "cuda") {
                return invalid(
                    "models.clip.dtype",
                    &dtype,
                    "f16 and bf16 run only on a GPU, and this mmcurate was built without the `cuda` feature (CLIP runs on the CPU): use \"auto\" or \"f32\", or build with `--features cuda` (scripts/gpu/build.sh)",
                );
            }
        }
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

/// Accepts a local path, `file://`, or a bucket/container URI of a store `source::store`
/// opens: `s3://`, `gs://`, `az://`, `abfs://`, `abfss://`.
fn check_uri(key: &str, uri: &str) -> Result<(), ConfigError> {
    const ALLOWED: &str = "a local path, file://PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX or abfs[s]://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX";
    let bad = |allowed: &str| ConfigError::Invalid {
        key: key.to_string(),
        value: format!("{uri:?}"),
        allowed: allowed.to_string(),
    };
    if uri.trim().is_empty() {
        return Err(bad(&format!("must be {ALLOWED}")));
    }
    if let Some((scheme, rest)) = uri.split_once("://") {
        match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(bad(
                        "a file:// URI must hold an absolute path (file:///data/x)",
                    ));
                }
            }
            "s3" | "gs" | "az" | "abfs" | "abfss" => {
                if rest.split('/').next().unwrap_or("").is_empty() {
                    return Err(bad(&format!(
                        "a {scheme}:// URI must name a bucket or container ({scheme}://NAME/PREFIX)"
                    )));
                }
            }
            _ => return Err(bad(&format!("unsupported scheme: use {ALLOWED}"))),
        }
    }
    Ok(())
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
        assert_eq!(c.filters.image.min_sharpness, 12.5);
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
