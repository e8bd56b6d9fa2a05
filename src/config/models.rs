//! `[models]`: the auxiliary models (CLIP): where the checkpoint comes from and how it runs.
//! Loading it is `models::checkpoint`'s job; this module only types and checks the keys.

use serde::{Deserialize, Serialize};

use super::check::invalid;
use super::filters::AlignmentFilters;
use super::ConfigError;

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

impl ModelsConfig {
    /// Checks `[models.clip]`, and that `[filters.alignment]` has a CLIP model to score with;
    /// `device` is `run.device` (half precision needs a GPU).
    pub fn validate(&self, alignment: &AlignmentFilters, device: &str) -> Result<(), ConfigError> {
        let Some(clip) = &self.clip else {
            for (key, set) in [
                (
                    "filters.alignment.min_clip_score",
                    alignment.min_clip_score.map(|t| t.to_string()),
                ),
                (
                    "filters.alignment.keep_top_fraction",
                    alignment.keep_top_fraction.map(|f| f.to_string()),
                ),
            ] {
                if let Some(value) = set {
                    return Err(invalid(
                        key,
                        value,
                        "needs a CLIP model to score with: add a [models.clip] table with `path` or `hf`",
                    ));
                }
            }
            return Ok(());
        };
        clip.validate(device)
    }
}

impl ClipModelConfig {
    /// Checks `[models.clip]`; `device` is `run.device`.
    pub fn validate(&self, device: &str) -> Result<(), ConfigError> {
        let clip = self;
        match (&clip.path, &clip.hf) {
            (None, None) => {
                return Err(invalid(
                    "models.clip",
                    "{}",
                    "needs `path` (a local folder with config.json, model.safetensors and tokenizer.json) or `hf` (a Hugging Face repository id)",
                ))
            }
            (Some(_), Some(hf)) => {
                return Err(invalid(
                    "models.clip.hf",
                    format!("{hf:?}"),
                    "set either `path` or `hf`, not both",
                ))
            }
            (Some(path), None) if path.trim().is_empty() => {
                return Err(invalid("models.clip.path", "\"\"", "must name a folder"))
            }
            (None, Some(hf)) if hf.split('/').filter(|p| !p.is_empty()).count() != 2 => {
                return Err(invalid(
                    "models.clip.hf",
                    format!("{hf:?}"),
                    "must be a repository id such as \"openai/clip-vit-base-patch32\"",
                ))
            }
            _ => {}
        }
        if let (Some(revision), None) = (&clip.revision, &clip.hf) {
            return Err(invalid(
                "models.clip.revision",
                format!("{revision:?}"),
                "applies only to `hf`; a local `path` has no revision",
            ));
        }
        if !(1..=4096).contains(&clip.batch_size) {
            return Err(invalid(
                "models.clip.batch_size",
                clip.batch_size,
                "must be 1 to 4096",
            ));
        }
        if clip.dtype.needs_gpu() {
            // Whether `auto` finds a GPU is known only when the run starts (models::checkpoint
            // says so then); a CPU-only device or binary is known now.
            let dtype = format!("{:?}", clip.dtype.as_str());
            if device == "cpu" {
                return Err(invalid(
                    "models.clip.dtype",
                    &dtype,
                    "f16 and bf16 run only on a GPU, and run.device = \"cpu\": use \"auto\" (bf16 on a GPU, f32 on the CPU) or \"f32\", or set run.device = \"auto\" or \"cuda\"",
                ));
            }
            if !cfg!(feature = "cuda") {
                return Err(invalid(
                    "models.clip.dtype",
                    &dtype,
                    "f16 and bf16 run only on a GPU, and this mmcurate was built without the `cuda` feature (CLIP runs on the CPU): use \"auto\" or \"f32\", or build with `--features cuda` (scripts/gpu/build.sh)",
                ));
            }
        }
        Ok(())
    }
}
