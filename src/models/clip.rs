//! CLIP image and text embeddings with candle, from a folder in the Hugging Face layout
//! (`config.json`, `model.safetensors`, `tokenizer.json`), as `transformers.CLIPModel`'s
//! `get_image_features` / `get_text_features` compute them (projections before L2
//! normalisation).
//!
//! The transformer blocks are candle-transformers' CLIP; the pooling of the text model is ours:
//! candle pools at the position of the largest token id, transformers at the first end-of-text
//! token, which differ once a caption is padded. Because the text model's attention is causal,
//! tokens after a caption's end-of-text cannot change its pooled output, so a batch of captions
//! is cut to its longest caption instead of running all 77 positions: the result is the same.
//!
//! On a GPU (candle's CUDA backend, the `cuda` cargo feature) the model may run in bf16 or f16
//! (`[models.clip] dtype`); embeddings always leave it as f32.

use candle_core::{DType, Device, DeviceLocation, IndexOp, Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use serde::Deserialize;
use std::path::{Path, PathBuf};

use super::clip_cpu::{TextShape, TextTower, VisionShape, VisionTower};
use super::{ClipTokenizer, ModelError};
use crate::config::ClipDtype;

/// What a loaded checkpoint is: recorded in the run manifest and beside every score.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClipInfo {
    /// The model card's id when the weights match a card in `models/`, else the folder.
    pub id: String,
    /// sha256 of `model.safetensors`, hex.
    pub weights_sha256: String,
    /// Whether a model card lists these exact weights.
    pub card_verified: bool,
    /// Input side in pixels (the image is resized and cropped to it).
    pub image_size: u32,
    /// Embedding width (the projection dimension).
    pub dim: usize,
    /// Text context in tokens.
    pub context_length: usize,
    /// Where the model ran: `cpu` or `cuda:N`.
    pub device: String,
    /// The precision of its weights and activations: `f32`, `f16` or `bf16`.
    pub dtype: String,
}

/// The dtype `[models.clip] dtype` asks for on a GPU (`on_gpu`) or on the CPU: `auto` is bf16
/// on a GPU (tensor cores, half the memory traffic, f32's range) and f32 on the CPU, whose
/// forward is f32 only. `None`: f16 or bf16 on the CPU, which is not offered.
pub fn resolve_dtype(requested: ClipDtype, on_gpu: bool) -> Option<DType> {
    match (requested, on_gpu) {
        (ClipDtype::Auto, true) | (ClipDtype::Bf16, true) => Some(DType::BF16),
        (ClipDtype::F16, true) => Some(DType::F16),
        (ClipDtype::Auto, false) | (ClipDtype::F32, _) => Some(DType::F32),
        (ClipDtype::F16 | ClipDtype::Bf16, false) => None,
    }
}

/// `cpu` or `cuda:N`, as the manifest records the device.
fn device_label(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".to_string(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// A loaded CLIP model and its tokenizer.
pub struct Clip {
    towers: Towers,
    tokenizer: ClipTokenizer,
    eos_token_id: u32,
    pub info: ClipInfo,
}

/// Which implementation runs the two transformers.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `clip_cpu`: the CPU forward written for throughput. The default on the CPU.
    Cpu,
    /// candle-transformers' CLIP modules on a candle device.
    Candle(Device),
}

enum Towers {
    Cpu {
        vision: Box<VisionTower>,
        text: Box<TextTower>,
    },
    Candle {
        vision: Box<ClipVisionTransformer>,
        text: Box<ClipTextTransformer>,
        visual_projection: candle_nn::Linear,
        text_projection: candle_nn::Linear,
        device: Device,
        /// The weights' and activations' dtype; inputs are cast to it, outputs back to f32.
        dtype: DType,
    },
}

/// Image features with candle's modules: the input cast to the weights' dtype, the features
/// back to f32, row-major.
fn candle_image_features(
    vision: &ClipVisionTransformer,
    visual_projection: &candle_nn::Linear,
    dtype: DType,
    input: &Tensor,
) -> candle_core::Result<Vec<f32>> {
    let features = vision
        .forward(&input.to_dtype(dtype)?)?
        .apply(visual_projection)?;
    features
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()
}

/// The parts of Hugging Face's CLIP `config.json` that the model needs.
#[derive(Debug, Deserialize)]
struct HfConfig {
    projection_dim: usize,
    text_config: HfTextConfig,
    vision_config: HfVisionConfig,
}

#[derive(Debug, Deserialize)]
struct HfTextConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_eos")]
    eos_token_id: u32,
    pad_token_id: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct HfVisionConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    image_size: usize,
    patch_size: usize,
    #[serde(default = "three")]
    num_channels: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
}

fn quick_gelu() -> String {
    "quick_gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_eos() -> u32 {
    49407
}
fn three() -> usize {
    3
}

impl Clip {
    /// Loads `dir/config.json`, `dir/model.safetensors` and `dir/tokenizer.json`. `id` and
    /// `card_verified` say what the weights were matched to; `weights_sha256` is their hash.
    /// On the CPU the model runs on [`Backend::Cpu`], elsewhere on candle's modules.
    pub fn load(
        dir: &Path,
        id: String,
        weights_sha256: String,
        card_verified: bool,
        device: &Device,
    ) -> Result<Clip, ModelError> {
        let backend = match device {
            Device::Cpu => Backend::Cpu,
            other => Backend::Candle(other.clone()),
        };
        Clip::load_with(dir, id, weights_sha256, card_verified, backend)
    }

    /// [`Clip::load`] on a chosen backend, in f32.
    pub fn load_with(
        dir: &Path,
        id: String,
        weights_sha256: String,
        card_verified: bool,
        backend: Backend,
    ) -> Result<Clip, ModelError> {
        Clip::load_in(dir, id, weights_sha256, card_verified, backend, DType::F32)
    }

    /// [`Clip::load`] on a chosen backend in `dtype`: f32 on [`Backend::Cpu`]; f32, f16 or
    /// bf16 on [`Backend::Candle`] (the weights are converted as they are loaded).
    pub fn load_in(
        dir: &Path,
        id: String,
        weights_sha256: String,
        card_verified: bool,
        backend: Backend,
        dtype: DType,
    ) -> Result<Clip, ModelError> {
        let allowed = match &backend {
            Backend::Cpu => matches!(dtype, DType::F32),
            Backend::Candle(_) => matches!(dtype, DType::F32 | DType::F16 | DType::BF16),
        };
        if !allowed {
            return Err(ModelError::Config {
                path: "models.clip.dtype".to_string(),
                message: format!(
                    "{} is not offered on this backend: the CPU forward runs in f32, candle's in f32, f16 or bf16",
                    dtype.as_str()
                ),
            });
        }
        let file = |name: &str| -> Result<PathBuf, ModelError> {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(ModelError::Missing {
                    path: path.display().to_string(),
                })
            }
        };
        let config_path = file("config.json")?;
        let config: HfConfig = std::fs::read(&config_path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
            .map_err(|message| ModelError::Config {
                path: config_path.display().to_string(),
                message,
            })?;
        let unsupported = |message: String| ModelError::Config {
            path: config_path.display().to_string(),
            message,
        };
        for (part, act, eps) in [
            (
                "text_config",
                &config.text_config.hidden_act,
                config.text_config.layer_norm_eps,
            ),
            (
                "vision_config",
                &config.vision_config.hidden_act,
                config.vision_config.layer_norm_eps,
            ),
        ] {
            if act != "quick_gelu" {
                return Err(unsupported(format!(
                    "{part}.hidden_act = {act:?}: only \"quick_gelu\" (OpenAI's CLIP) is supported"
                )));
            }
            if (eps - 1e-5).abs() > 1e-12 {
                return Err(unsupported(format!(
                    "{part}.layer_norm_eps = {eps}: only 1e-5 is supported"
                )));
            }
        }
        let t = &config.text_config;
        let v = &config.vision_config;
        let weights = file("model.safetensors")?;
        let device = match &backend {
            Backend::Cpu => Device::Cpu,
            Backend::Candle(device) => device.clone(),
        };
        // SAFETY: the weights file is memory-mapped read-only; mmcurate does not modify it
        // while the model lives, and a concurrent writer is outside what we support.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], dtype, &device) }
            .map_err(|e| ModelError::weights(&weights, e))?;
        let label = device_label(&device);
        let towers = match backend {
            Backend::Cpu => {
                let vision = VisionShape {
                    dim: v.hidden_size,
                    intermediate: v.intermediate_size,
                    layers: v.num_hidden_layers,
                    heads: v.num_attention_heads,
                    channels: v.num_channels,
                    image_size: v.image_size,
                    patch_size: v.patch_size,
                    projection_dim: config.projection_dim,
                };
                let text = TextShape {
                    dim: t.hidden_size,
                    intermediate: t.intermediate_size,
                    layers: t.num_hidden_layers,
                    heads: t.num_attention_heads,
                    vocab: t.vocab_size,
                    context: t.max_position_embeddings,
                    projection_dim: config.projection_dim,
                };
                let build = || -> candle_core::Result<Towers> {
                    Ok(Towers::Cpu {
                        vision: Box::new(VisionTower::load(
                            vb.pp("vision_model"),
                            vb.pp("visual_projection"),
                            &vision,
                        )?),
                        text: Box::new(TextTower::load(
                            vb.pp("text_model"),
                            vb.pp("text_projection"),
                            &text,
                        )?),
                    })
                };
                build().map_err(|e| ModelError::weights(&weights, e))?
            }
            Backend::Candle(device) => {
                let text_config = ClipTextConfig {
                    vocab_size: t.vocab_size,
                    embed_dim: t.hidden_size,
                    activation: Activation::QuickGelu,
                    intermediate_size: t.intermediate_size,
                    max_position_embeddings: t.max_position_embeddings,
                    pad_with: None,
                    num_hidden_layers: t.num_hidden_layers,
                    num_attention_heads: t.num_attention_heads,
                    projection_dim: config.projection_dim,
                };
                let vision_config = ClipVisionConfig {
                    embed_dim: v.hidden_size,
                    activation: Activation::QuickGelu,
                    intermediate_size: v.intermediate_size,
                    num_hidden_layers: v.num_hidden_layers,
                    num_attention_heads: v.num_attention_heads,
                    projection_dim: config.projection_dim,
                    num_channels: v.num_channels,
                    image_size: v.image_size,
                    patch_size: v.patch_size,
                };
                let build = || -> candle_core::Result<Towers> {
                    Ok(Towers::Candle {
                        vision: Box::new(ClipVisionTransformer::new(
                            vb.pp("vision_model"),
                            &vision_config,
                        )?),
                        text: Box::new(ClipTextTransformer::new(
                            vb.pp("text_model"),
                            &text_config,
                        )?),
                        visual_projection: candle_nn::linear_no_bias(
                            v.hidden_size,
                            config.projection_dim,
                            vb.pp("visual_projection"),
                        )?,
                        text_projection: candle_nn::linear_no_bias(
                            t.hidden_size,
                            config.projection_dim,
                            vb.pp("text_projection"),
                        )?,
                        device,
                        dtype,
                    })
                };
                build().map_err(|e| ModelError::weights(&weights, e))?
            }
        };
        let tokenizer = ClipTokenizer::from_file(
            &file("tokenizer.json")?,
            t.max_position_embeddings,
            t.eos_token_id,
            t.pad_token_id.unwrap_or(t.eos_token_id),
        )?;
        Ok(Clip {
            towers,
            tokenizer,
            eos_token_id: t.eos_token_id,
            info: ClipInfo {
                id,
                weights_sha256,
                card_verified,
                image_size: v.image_size as u32,
                dim: config.projection_dim,
                context_length: t.max_position_embeddings,
                device: label,
                dtype: dtype.as_str().to_string(),
            },
        })
    }

    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// Image features of `n` preprocessed images (`n x 3 x size x size` floats, CHW), row-major
    /// `n x dim`.
    pub fn embed_images(&self, pixel_values: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let size = self.info.image_size as usize;
        match &self.towers {
            Towers::Cpu { vision, .. } => {
                if pixel_values.len() != n * 3 * size * size {
                    return Err(ModelError::Inference(candle_core::Error::Msg(format!(
                        "{} pixel values for {n} images of 3 x {size} x {size}",
                        pixel_values.len()
                    ))));
                }
                Ok(vision.forward(pixel_values, n))
            }
            Towers::Candle {
                vision,
                visual_projection,
                device,
                dtype,
                ..
            } => Tensor::from_slice(pixel_values, (n, 3, size, size), device)
                .and_then(|input| candle_image_features(vision, visual_projection, *dtype, &input))
                .map_err(ModelError::Inference),
        }
    }

    /// Whether the model runs on a GPU (candle's CUDA backend).
    pub fn on_gpu(&self) -> bool {
        matches!(&self.towers, Towers::Candle { device, .. } if device.is_cuda())
    }

    /// [`Self::embed_images`] on inputs already in device memory (`n x 3 x size x size` f32,
    /// made by `gpu::CudaKernels::clip_inputs` and complete): handed to candle without a copy
    /// when the model runs on that GPU, else copied to the host first.
    #[cfg(feature = "cuda")]
    pub fn embed_images_on_device(
        &self,
        pixel_values: cudarc::driver::CudaSlice<f32>,
        n: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let size = self.info.image_size as usize;
        let Towers::Candle {
            vision,
            visual_projection,
            device: Device::Cuda(cuda),
            dtype,
            ..
        } = &self.towers
        else {
            let stream = pixel_values.stream().clone();
            let host = stream
                .clone_dtoh(&pixel_values)
                .and_then(|host| stream.synchronize().map(|()| host))
                .map_err(|e| ModelError::Inference(candle_core::Error::Msg(e.to_string())))?;
            return self.embed_images(&host, n);
        };
        if pixel_values.len() != n * 3 * size * size {
            return Err(ModelError::Inference(candle_core::Error::Msg(format!(
                "{} pixel values on the device for {n} images of 3 x {size} x {size}",
                pixel_values.len()
            ))));
        }
        let storage = candle_core::Storage::Cuda(candle_core::CudaStorage::wrap_cuda_slice(
            pixel_values,
            cuda.clone(),
        ));
        let input = Tensor::from_storage(
            storage,
            (n, 3, size, size),
            candle_core::op::BackpropOp::none(),
            false,
        );
        candle_image_features(vision, visual_projection, *dtype, &input)
            .map_err(ModelError::Inference)
    }

    /// Text features of tokenised captions (each `context_length` ids), row-major `n x dim`.
    pub fn embed_texts(&self, ids: &[Vec<u32>]) -> Result<Vec<f32>, ModelError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Where each caption ends: its first end-of-text token, as transformers pools.
        let ends: Vec<usize> = ids
            .iter()
            .map(|row| {
                row.iter()
                    .position(|&id| id == self.eos_token_id)
                    .unwrap_or(row.len() - 1)
            })
            .collect();
        let width = ends.iter().max().map_or(1, |&e| e + 1);
        let flat: Vec<u32> = ids.iter().flat_map(|row| row[..width].to_vec()).collect();
        match &self.towers {
            Towers::Cpu { text, .. } => text
                .forward(&flat, width, &ends)
                .map_err(|e| ModelError::Inference(candle_core::Error::Msg(e.to_string()))),
            Towers::Candle {
                text,
                text_projection,
                device,
                ..
            } => {
                // The token embedding gives the activations the weights' dtype.
                let run = || -> candle_core::Result<Vec<f32>> {
                    let input = Tensor::from_vec(flat, (ids.len(), width), device)?;
                    let hidden = text.forward_with_mask(&input, usize::MAX)?;
                    let pooled = ends
                        .iter()
                        .enumerate()
                        .map(|(row, &end)| hidden.i((row, end))?.unsqueeze(0))
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    let features = Tensor::cat(&pooled, 0)?.apply(text_projection)?;
                    features
                        .to_dtype(DType::F32)?
                        .flatten_all()?
                        .to_vec1::<f32>()
                };
                run().map_err(ModelError::Inference)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_bf16_on_a_gpu_and_f32_on_the_cpu() {
        let cases = [
            (ClipDtype::Auto, true, Some(DType::BF16)),
            (ClipDtype::Auto, false, Some(DType::F32)),
            (ClipDtype::F32, true, Some(DType::F32)),
            (ClipDtype::F32, false, Some(DType::F32)),
            (ClipDtype::F16, true, Some(DType::F16)),
            (ClipDtype::Bf16, true, Some(DType::BF16)),
            (ClipDtype::F16, false, None),
            (ClipDtype::Bf16, false, None),
        ];
        for (requested, on_gpu, expected) in cases {
            assert_eq!(
                resolve_dtype(requested, on_gpu),
                expected,
                "{requested:?} on_gpu={on_gpu}"
            );
        }
    }

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny")
    }

    #[test]
    fn the_cpu_forward_refuses_half_precision_and_candle_runs_it_with_f32_out() {
        let load = |backend, dtype| {
            Clip::load_in(
                &fixture(),
                "clip-tiny".into(),
                String::new(),
                false,
                backend,
                dtype,
            )
        };
        let e = load(Backend::Cpu, DType::BF16).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.starts_with("models.clip.dtype: bf16 is not offered")),
            "{e:?}"
        );
        let f32_model = load(Backend::Cpu, DType::F32).unwrap();
        assert_eq!(
            (
                f32_model.info.device.as_str(),
                f32_model.info.dtype.as_str()
            ),
            ("cpu", "f32")
        );
        // f16 weights on candle's CPU backend (which has no bf16 matrix product): the same
        // model within f16's precision, and what leaves it is f32. The GPU's bf16 is checked
        // by scripts/gpu/check.sh.
        let half_model = load(Backend::Candle(Device::Cpu), DType::F16).unwrap();
        assert_eq!(half_model.info.dtype, "f16");
        let size = f32_model.info.image_size as usize;
        let n = 2;
        let pixels: Vec<f32> = (0..n * 3 * size * size)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
            .collect();
        let a = f32_model.embed_images(&pixels, n).unwrap();
        let b = half_model.embed_images(&pixels, n).unwrap();
        assert_eq!(a.len(), b.len());
        let dim = f32_model.info.dim;
        for row in 0..n {
            let (x, y) = (
                &a[row * dim..(row + 1) * dim],
                &b[row * dim..(row + 1) * dim],
            );
            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let norm = |v: &[f32]| v.iter().map(|p| p * p).sum::<f32>().sqrt();
            let cosine = dot / (norm(x) * norm(y));
            assert!(cosine > 0.99, "row {row}: cosine {cosine}");
        }
    }
}
