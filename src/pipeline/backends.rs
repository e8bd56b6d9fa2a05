//! Setting a run up on its device, before any work: the device `run.device` asks for, the
//! decode-and-measure backend for it (CPU, or CUDA with nvJPEG when `run.gpu_jpeg_decode`), the
//! CLIP model on it, NVDEC for videos, and the semantic dedup's pair products (cuBLAS on the GPU,
//! `decide::pairs::CpuProducts` otherwise). A device or model that cannot be used is a setup
//! error, found before the first sample is fetched. This module picks implementations; what
//! they compute lives in `measure`, `gpu` and `models`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::RunError;
use crate::config::Config;
use crate::decide::pairs::CpuProducts;
use crate::gpu::backend::CudaBackend;
use crate::gpu::pair_products::{products_on, SharedProducts};
use crate::gpu::{CudaKernels, DeviceRequest, GpuJpegDecoder, Selected};
use crate::measure::backend::{CpuBackend, MeasureBackend};
use crate::models::checkpoint::load_clip;
use crate::models::clip::Clip;
use crate::vector::PairProducts;

/// The device a run works on and what runs there.
pub struct Backends {
    pub device: Selected,
    /// The CUDA backend, on a GPU.
    pub cuda: Option<CudaBackend>,
    /// The CLIP model, with `[models.clip]`.
    pub clip: Option<Clip>,
    /// The within-partition products of the semantic dedup's pair search.
    pairs: SharedProducts,
}

impl Backends {
    /// Selects the device and loads what runs on it; logs what it took and why.
    pub fn set_up(config: &Config) -> Result<Backends, RunError> {
        let device = select_device(config)?;
        let cuda = match &device.cuda {
            Some(gpu) => Some(CudaBackend {
                kernels: CudaKernels::new(gpu).map_err(RunError::Device)?,
                jpeg: jpeg_decoder(config, &device),
            }),
            None => None,
        };
        tracing::info!("measuring on {}", device.description());
        let clip = load_model(config, &device)?;
        let pairs = pair_products(config, &device, clip.is_some())?;
        Ok(Backends {
            device,
            cuda,
            clip,
            pairs,
        })
    }

    /// The semantic dedup's pair products: the same pairs on any device.
    pub fn pair_products(&self) -> &dyn PairProducts {
        self.pairs.as_ref()
    }

    /// The decode-and-measure backend.
    pub fn measure(&self) -> &dyn MeasureBackend {
        match &self.cuda {
            Some(cuda) => cuda,
            None => &CpuBackend,
        }
    }

    /// nvJPEG, when JPEGs decode on the GPU.
    pub fn jpeg(&self) -> Option<&GpuJpegDecoder> {
        self.cuda.as_ref().and_then(|c| c.jpeg.as_ref())
    }

    /// What decodes the JPEGs, for the manifest.
    pub fn jpeg_decoder_description(&self) -> String {
        self.jpeg()
            .map_or("libjpeg-turbo (cpu)".to_string(), |d| d.description())
    }

    /// nvJPEG's busy seconds so far (0 without it).
    pub fn jpeg_busy_seconds(&self) -> f64 {
        self.jpeg().map_or(0.0, |d| d.busy_seconds())
    }

    /// The GPU's busy time in the measure phase, by step (empty on the CPU).
    pub fn measure_busy_seconds(&self) -> BTreeMap<String, f64> {
        let mut busy = BTreeMap::new();
        if let Some(cuda) = &self.cuda {
            busy.insert("measure.kernels".to_string(), cuda.kernels.busy().measure);
            if cuda.jpeg.is_some() {
                busy.insert("measure.jpeg_decode".to_string(), self.jpeg_busy_seconds());
            }
        }
        busy
    }

    /// The config a run on this device works with: with `[video] gpu_decode` (the default) and
    /// a GPU, videos decode with NVDEC on it (each falls back to the CPU on its own when NVDEC
    /// cannot decode it exactly); otherwise on the CPU. Nothing users set changes, so neither
    /// does the resolved config the manifest records.
    pub fn resolve_video_decoding(&self, config: &Config) -> Config {
        let mut config = config.clone();
        config.video.nvdec_device = self
            .device
            .cuda
            .as_ref()
            .filter(|_| config.video.gpu_decode)
            .map(|gpu| gpu.ordinal);
        config
    }
}

/// The device `run.device` asks for (validated with the config, so it parses). `run.device =
/// "cuda"` without a GPU is a setup error; `auto` says once which device it took and why.
fn select_device(config: &Config) -> Result<Selected, RunError> {
    let request = DeviceRequest::parse(&config.run.device).unwrap_or(
        // Unreachable after `Config::validate`; the CPU is the safe reading.
        DeviceRequest::Cpu,
    );
    crate::gpu::select(request).map_err(RunError::Device)
}

/// The semantic dedup's products: on the run's GPU when it has one and embeds with CLIP (there
/// is no semantic dedup without), else the CPU reference, chosen as `dedup --device` chooses
/// (`gpu::pair_products`): cuBLAS that cannot be loaded is a setup error with `run.device =
/// "cuda"`; with `auto` the search runs on the CPU, saying why.
fn pair_products(
    config: &Config,
    device: &Selected,
    embeds: bool,
) -> Result<SharedProducts, RunError> {
    let cpu: SharedProducts = Arc::new(CpuProducts);
    if device.cuda.is_none() || !embeds {
        return Ok(cpu);
    }
    let request = DeviceRequest::parse(&config.run.device).unwrap_or(DeviceRequest::Auto);
    let chosen = products_on(device, request, cpu).map_err(RunError::Device)?;
    tracing::info!("semantic dedup: pair products on {}", chosen.description);
    Ok(chosen.products)
}

/// nvJPEG, only when asked (`run.gpu_jpeg_decode`): its inverse DCT rounds differently from
/// libjpeg-turbo's, so the numbers, unlike the kernels', are not bit-identical to a CPU run's.
fn jpeg_decoder(config: &Config, device: &Selected) -> Option<GpuJpegDecoder> {
    if !config.run.gpu_jpeg_decode {
        return None;
    }
    let decoder = crate::gpu::nvjpeg::decoder_for(device);
    if decoder.is_none() {
        tracing::warn!(
            "run.gpu_jpeg_decode = true, but nvJPEG cannot be used on {}: JPEGs decode on the CPU",
            device.label()
        );
    }
    decoder
}

/// The CLIP model on the device: a wrong path, a failed download or a dtype the device cannot
/// run is a setup error.
fn load_model(config: &Config, device: &Selected) -> Result<Option<Clip>, RunError> {
    let Some(model) = &config.models.clip else {
        tracing::info!(
            "no [models.clip] in the config: CLIP embeddings, semantic dedup and CLIP scores are skipped"
        );
        return Ok(None);
    };
    let clip = load_clip(model, device)?;
    tracing::info!(
        "CLIP model {} (weights sha256 {}{}) on {} in {}, batch size {}",
        clip.info.id,
        clip.info.weights_sha256,
        if clip.info.card_verified {
            ", matches its model card"
        } else {
            ", no model card"
        },
        clip.info.device,
        clip.info.dtype,
        model.batch_size
    );
    Ok(Some(clip))
}
