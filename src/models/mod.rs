//! Auxiliary models as versioned inputs: model cards (`models/*.toml`), weights and
//! tokenizers. It holds CLIP's text tokenizer (a Hugging Face `tokenizer.json` run by the
//! `tokenizers` crate, cut and padded to the model's context as OpenAI's CLIP does it), its
//! image preprocessing (`clip_preprocess`), the model itself (`clip`, on candle) and where a
//! checkpoint comes from and whether a card vouches for it (`card`).

pub mod card;
pub mod checkpoint;
pub mod clip;
mod clip_cpu;
pub mod clip_inputs;
pub mod clip_preprocess;

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot load the tokenizer {path}: {message}")]
    Tokenizer { path: String, message: String },
    #[error("cannot tokenise {text:?}: {message}")]
    Encode { text: String, message: String },
    #[error("{path} is missing: a CLIP folder holds config.json, model.safetensors and tokenizer.json (the Hugging Face layout)")]
    Missing { path: String },
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("cannot load the weights {path}: {message}")]
    Weights { path: String, message: String },
    #[error("model inference failed: {0}")]
    Inference(candle_core::Error),
    #[error("cannot fetch {repo} from the Hugging Face Hub: {message}. Without network access, download the repository elsewhere and set `models.clip.path` to its folder")]
    Hub { repo: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path} has sha256 {actual}, but the model card {card} lists {expected}: the download is corrupt or the repository changed. Delete it from the Hugging Face cache to fetch it again, or pin `models.clip.revision`")]
    Checksum {
        path: String,
        actual: String,
        card: String,
        expected: String,
    },
}

impl ModelError {
    fn weights(path: &Path, e: candle_core::Error) -> ModelError {
        ModelError::Weights {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// A caption as model input: exactly `context_length` ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// Whether the caption was longer than the context and lost its end.
    pub truncated: bool,
    /// Tokens of the whole caption, start and end tokens included: more than the context
    /// when it was truncated.
    pub length: usize,
}

/// CLIP's tokenizer: start token, BPE tokens, end token; cut to the context (keeping the end
/// token last) and padded with `pad_id` (OpenAI's models pad with the end-of-text id).
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    context_length: usize,
    eos_id: u32,
    pad_id: u32,
}

impl ClipTokenizer {
    pub fn from_file(
        path: &Path,
        context_length: usize,
        eos_id: u32,
        pad_id: u32,
    ) -> Result<ClipTokenizer, ModelError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(ClipTokenizer {
            inner,
            context_length,
            eos_id,
            pad_id,
        })
    }

    pub fn encode(&self, text: &str) -> Result<Tokens, ModelError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| ModelError::Encode {
                text: text.chars().take(80).collect(),
                message: e.to_string(),
            })?;
        let mut ids = encoding.get_ids().to_vec();
        let length = ids.len();
        let truncated = length > self.context_length;
        if truncated {
            ids.truncate(self.context_length - 1);
            ids.push(self.eos_id);
        }
        ids.resize(self.context_length, self.pad_id);
        Ok(Tokens {
            ids,
            truncated,
            length,
        })
    }
}
