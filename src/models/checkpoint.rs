//! Finding and verifying a CLIP checkpoint from `[models.clip]`: a local folder (`path`), or a
//! Hugging Face Hub repository (`hf`) fetched into the Hugging Face cache with `hf-hub` (which
//! honours `HF_HOME` and `HF_ENDPOINT`, and reads the cache without network when the files are
//! there). The weights' sha256 is matched against the bundled model cards; this module does
//! not run the model. It also places it: on the run's GPU with candle's CUDA backend when this
//! binary has the `cuda` feature, in `[models.clip] dtype`, else on the CPU in f32.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::card::{bundled_cards, card_for_repo, match_weights};
use super::clip::{resolve_dtype, Backend, Clip};
use super::ModelError;
use crate::config::ClipModelConfig;
use crate::gpu::Selected;

/// The files a CLIP folder must hold.
const CLIP_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Resolves, verifies and loads the configured CLIP model on the run's device (`device`, from
/// `run.device`), see [`clip_backend`].
pub fn load_clip(config: &ClipModelConfig, device: &Selected) -> Result<Clip, ModelError> {
    // Where and in what precision first: a dtype the device cannot run is a setup error,
    // found before the weights are hashed.
    let backend = clip_backend(device)?;
    let on_gpu = matches!(&backend, Backend::Candle(d) if !d.is_cpu());
    let dtype = resolve_dtype(config.dtype, on_gpu).ok_or_else(|| ModelError::Config {
        path: format!("config key `models.clip.dtype` = {:?}", config.dtype.as_str()),
        message: format!(
            "f16 and bf16 run only on a GPU, and this run is on {}: set models.clip.dtype = \"auto\" (bf16 on a GPU, f32 on the CPU) or \"f32\", or run.device = \"cuda\" on a machine with a GPU",
            device.description()
        ),
    })?;
    let cards = bundled_cards();
    let (dir, repo_card) = match (&config.path, &config.hf) {
        (Some(path), _) => (PathBuf::from(path), None),
        (None, Some(repo)) => {
            let card = card_for_repo(&cards, repo);
            let revision = config
                .revision
                .clone()
                .or_else(|| card.and_then(|c| c.source.revision.clone()))
                .unwrap_or_else(|| "main".to_string());
            (fetch_from_hub(repo, &revision)?, card)
        }
        (None, None) => {
            return Err(ModelError::Config {
                path: "models.clip".to_string(),
                message: "set `path` (a local folder) or `hf` (a Hugging Face repository id)"
                    .to_string(),
            })
        }
    };
    if !dir.is_dir() {
        return Err(ModelError::Missing {
            path: dir.display().to_string(),
        });
    }
    let weights = dir.join("model.safetensors");
    let sha = sha256_file(&weights)?;
    // A repository with a card must hold the card's weights; a folder is matched by hash.
    if let Some(expected) = repo_card {
        let listed = expected.sha256_of("model.safetensors").unwrap_or_default();
        if listed != sha {
            return Err(ModelError::Checksum {
                path: weights.display().to_string(),
                actual: sha,
                card: expected.id.clone(),
                expected: listed.to_string(),
            });
        }
    }
    let card = match_weights(&cards, &sha);
    let (id, verified) = match card {
        Some(card) => (card.id.clone(), true),
        None => {
            tracing::warn!(
                "the CLIP weights {} (sha256 {sha}) match no model card in models/: they are used and recorded as unverified",
                weights.display()
            );
            (
                config
                    .hf
                    .clone()
                    .unwrap_or_else(|| dir.display().to_string()),
                false,
            )
        }
    };
    Clip::load_in(&dir, id, sha, verified, backend, dtype)
}

/// Where CLIP runs for the run's device: on its GPU through candle's CUDA backend when this
/// binary has the `cuda` feature; on the CPU otherwise, saying once (here) that a GPU run's
/// CLIP stays on the CPU.
pub fn clip_backend(device: &Selected) -> Result<Backend, ModelError> {
    let Some(gpu) = &device.cuda else {
        return Ok(Backend::Cpu);
    };
    if cfg!(feature = "cuda") {
        let cuda = candle_core::Device::new_cuda(gpu.ordinal).map_err(|e| ModelError::Config {
            path: format!("CLIP on cuda:{}", gpu.ordinal),
            message: format!(
                "candle cannot use the GPU: {e}; set run.device = \"cpu\" to run on the CPU"
            ),
        })?;
        Ok(Backend::Candle(cuda))
    } else {
        tracing::warn!(
            "CLIP runs on the CPU: this mmcurate was built without the `cuda` feature (measuring still uses cuda:{}); build with `--features cuda` (scripts/gpu/build.sh) to run CLIP on the GPU",
            gpu.ordinal
        );
        Ok(Backend::Cpu)
    }
}

/// Fetches the CLIP files of `repo` at `revision` (or finds them in the cache) and returns the
/// snapshot folder holding them.
fn fetch_from_hub(repo: &str, revision: &str) -> Result<PathBuf, ModelError> {
    let hub_error = |message: String| ModelError::Hub {
        repo: format!("{repo}@{revision}"),
        message,
    };
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| hub_error(e.to_string()))?;
    let remote = api.repo(hf_hub::Repo::with_revision(
        repo.to_string(),
        hf_hub::RepoType::Model,
        revision.to_string(),
    ));
    let mut dir = None;
    for name in CLIP_FILES {
        tracing::info!(
            "fetching {name} of {repo}@{revision} (or reading it from the Hugging Face cache)"
        );
        let path = remote
            .get(name)
            .map_err(|e| hub_error(format!("{name}: {e}")))?;
        dir = path.parent().map(Path::to_path_buf);
    }
    dir.ok_or_else(|| hub_error("the cache returned no folder".to_string()))
}

/// sha256 of a file, hex, read in 1 MiB blocks.
fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::Missing {
            path: path.display().to_string(),
        },
        _ => ModelError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        },
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
