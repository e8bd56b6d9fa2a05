//! CLIP's image side as backends, not branches: a backend turns an image's bytes or a video's
//! sampled RGB frames into model inputs, and a batch of inputs into image features. The CPU
//! backend ([`CpuClipInputs`]) is the reference; the CUDA one ([`CudaClipInputs`]) decodes
//! JPEGs with nvJPEG into device memory (when asked), resizes and normalises on the GPU
//! (bit-identical to the CPU's from the same RGB) and, with the `cuda` feature and the model on
//! that GPU, hands the tensor to candle without a copy; on a GPU error it falls back to the CPU
//! itself. The CLIP stage (`pipeline::embed`) is written once against [`ClipInputs`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::clip::Clip;
use super::clip_preprocess::{
    clip_pixel_values, clip_pixel_values_rgb, PreprocessError, OPENAI_MEAN, OPENAI_STD,
};
use super::ModelError;
use crate::contain::{contain_panic, Panicked};
use crate::gpu::cuda::RgbInput;
use crate::gpu::nvjpeg::DeviceRgb;
use crate::gpu::{CudaKernels, GpuError, GpuJpegDecoder};
use crate::pixels::RgbImage;

/// Why a batch could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum ClipInputError {
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A GPU error the CPU fallback could not get around (e.g. reading back nvJPEG's pixels).
    #[error("CLIP preprocessing on the GPU: {0}")]
    Gpu(#[from] GpuError),
}

/// The image side of CLIP on one device.
pub trait ClipInputs: Sync {
    /// One image's (or one video's frames') input, as this backend keeps it until its batch
    /// is embedded.
    type Input: Send;

    /// Decoded RGB bytes a batch holds at most before preprocessing (decoded images wait in
    /// host or device memory until their batch is complete): a batch of large images is cut
    /// short. `u64::MAX` where inputs are preprocessed as soon as they are decoded.
    fn max_batch_rgb_bytes(&self) -> u64;

    /// An image's input from its bytes, or why it does not decode.
    fn image_input(&self, media: &[u8], size: u32) -> Result<Self::Input, PrepareError>;

    /// The input of a video's sampled frames.
    fn frames_input(&self, frames: Vec<RgbImage>, size: u32) -> Self::Input;

    /// The image features (not normalised) of every frame of `inputs`, in order (`frames` in
    /// all), through `clip` `batch_size` frames at a time. Adds the seconds the model ran on a
    /// GPU to `model_gpu_seconds`.
    fn image_features(
        &self,
        inputs: &[&Self::Input],
        frames: usize,
        clip: &Clip,
        batch_size: usize,
        model_gpu_seconds: &mut f64,
    ) -> Result<Vec<f32>, ClipInputError>;
}

/// Runs one image's input preparation; a panic in it (a decoder or resizer bug a hostile file
/// reaches) is that image's error, which the CLIP stage records as its dropped row.
fn prepare_contained<T>(
    prepare: impl FnOnce() -> Result<T, PrepareError>,
) -> Result<T, PrepareError> {
    contain_panic(prepare).unwrap_or_else(|panic| Err(PrepareError::Panicked(panic)))
}

/// Why one image has no CLIP input: the CLIP stage records it as the image's dropped row.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{0}")]
    Preprocess(#[from] PreprocessError),
    #[error("cannot decode the image: {0}")]
    Decode(#[from] image::ImageError),
    #[error("CLIP input preparation panicked: {0}")]
    Panicked(Panicked),
}

/// The CPU reference: the `image` crate (libjpeg-turbo for JPEG) and
/// `models::clip_preprocess`; inputs are preprocessed as soon as they are decoded.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuClipInputs;

impl ClipInputs for CpuClipInputs {
    /// `frames x 3 x size x size` floats.
    type Input = Vec<f32>;

    fn max_batch_rgb_bytes(&self) -> u64 {
        u64::MAX
    }

    /// A panic while decoding or resizing is this image's error (`prepare_contained`).
    fn image_input(&self, media: &[u8], size: u32) -> Result<Vec<f32>, PrepareError> {
        prepare_contained(|| Ok(clip_pixel_values(media, size, OPENAI_MEAN, OPENAI_STD)?))
    }

    fn frames_input(&self, frames: Vec<RgbImage>, size: u32) -> Vec<f32> {
        frames
            .iter()
            .flat_map(|rgb| cpu_values(&rgb.pixels, rgb.width, rgb.height, size))
            .collect()
    }

    fn image_features(
        &self,
        inputs: &[&Vec<f32>],
        frames: usize,
        clip: &Clip,
        batch_size: usize,
        model_gpu_seconds: &mut f64,
    ) -> Result<Vec<f32>, ClipInputError> {
        let size = clip.info.image_size as usize;
        let mut pixels = Vec::with_capacity(frames * 3 * size * size);
        for values in inputs {
            pixels.extend_from_slice(values);
        }
        Ok(embed_values(&pixels, clip, batch_size, model_gpu_seconds)?)
    }
}

/// Runs the model on preprocessed values, `batch_size` frames at a time.
fn embed_values(
    pixels: &[f32],
    clip: &Clip,
    batch_size: usize,
    model_gpu_seconds: &mut f64,
) -> Result<Vec<f32>, ModelError> {
    let size = clip.info.image_size as usize;
    let plane = 3 * size * size;
    let mut features = Vec::with_capacity(pixels.len() / plane * clip.info.dim);
    let started = Instant::now();
    for chunk in pixels.chunks(batch_size * plane) {
        features.extend(clip.embed_images(chunk, chunk.len() / plane)?);
    }
    if clip.on_gpu() {
        *model_gpu_seconds += started.elapsed().as_secs_f64();
    }
    Ok(features)
}

/// CLIP's input of one RGB image, preprocessed on the CPU (OpenAI's normalisation).
fn cpu_values(rgb: &[u8], width: u32, height: u32, size: u32) -> Vec<f32> {
    clip_pixel_values_rgb(rgb, width, height, size, OPENAI_MEAN, OPENAI_STD)
}

/// RGB bytes a GPU batch holds at most before preprocessing.
const MAX_GPU_BATCH_RGB_BYTES: u64 = 1 << 30;

/// Whether a GPU preprocessing failure was reported (once per run).
static GPU_FALLBACK_WARNED: AtomicBool = AtomicBool::new(false);

/// On one GPU: its kernels, and nvJPEG when JPEGs decode there.
#[derive(Clone, Copy)]
pub struct CudaClipInputs<'a> {
    pub kernels: &'a CudaKernels,
    pub jpeg: Option<&'a GpuJpegDecoder>,
}

/// What the CUDA backend keeps of an input until its batch runs.
pub enum CudaInput {
    /// Decoded frames (one for an image) on the host.
    Rgb(Vec<RgbImage>),
    /// An image decoded by nvJPEG, in device memory.
    Device(DeviceRgb),
}

impl CudaInput {
    /// The GPU inputs of its frames.
    fn rgb_inputs(&self) -> Vec<RgbInput<'_>> {
        match self {
            CudaInput::Rgb(rgbs) => rgbs
                .iter()
                .map(|rgb| RgbInput::Host {
                    width: rgb.width,
                    height: rgb.height,
                    pixels: &rgb.pixels,
                })
                .collect(),
            CudaInput::Device(rgb) => vec![RgbInput::Device(rgb)],
        }
    }
}

impl ClipInputs for CudaClipInputs<'_> {
    type Input = CudaInput;

    fn max_batch_rgb_bytes(&self) -> u64 {
        MAX_GPU_BATCH_RGB_BYTES
    }

    /// nvJPEG's device RGB where it takes the JPEG, else the CPU decoder's RGB. A panic while
    /// decoding is this image's error (`prepare_contained`).
    fn image_input(&self, media: &[u8], size: u32) -> Result<CudaInput, PrepareError> {
        prepare_contained(|| self.image_input_unguarded(media, size))
    }

    fn frames_input(&self, frames: Vec<RgbImage>, _size: u32) -> CudaInput {
        CudaInput::Rgb(frames)
    }

    /// On the GPU; on a GPU error (reported once per run), preprocessed on the CPU instead.
    fn image_features(
        &self,
        inputs: &[&CudaInput],
        frames: usize,
        clip: &Clip,
        batch_size: usize,
        model_gpu_seconds: &mut f64,
    ) -> Result<Vec<f32>, ClipInputError> {
        let rgb_inputs: Vec<RgbInput> = inputs.iter().flat_map(|i| i.rgb_inputs()).collect();
        if rgb_inputs.len() == frames {
            match self.embed_on_gpu(&rgb_inputs, clip, batch_size, model_gpu_seconds) {
                Ok(features) => return Ok(features),
                Err(ClipInputError::Gpu(e)) => {
                    if !GPU_FALLBACK_WARNED.swap(true, Ordering::Relaxed) {
                        tracing::warn!("{e}; preprocessing for CLIP on the CPU instead");
                    }
                }
                Err(other) => return Err(other),
            }
        }
        let size = clip.info.image_size;
        let mut pixels = Vec::with_capacity(frames * 3 * (size as usize).pow(2));
        for input in inputs {
            match input {
                CudaInput::Rgb(rgbs) => {
                    for rgb in rgbs {
                        pixels.extend(cpu_values(&rgb.pixels, rgb.width, rgb.height, size));
                    }
                }
                CudaInput::Device(rgb) => {
                    let host = download_rgb(rgb)?;
                    pixels.extend(cpu_values(&host, rgb.width, rgb.height, size));
                }
            }
        }
        Ok(embed_values(&pixels, clip, batch_size, model_gpu_seconds)?)
    }
}

impl CudaClipInputs<'_> {
    fn image_input_unguarded(&self, media: &[u8], _size: u32) -> Result<CudaInput, PrepareError> {
        let is_jpeg = media.starts_with(&[0xff, 0xd8, 0xff]);
        if let (Some(decoder), true) = (self.jpeg, is_jpeg) {
            match decoder.decode_rgb_device(media) {
                Ok(rgb) => return Ok(CudaInput::Device(rgb)),
                Err(e) => tracing::debug!("CLIP input decoded on the CPU, not nvJPEG: {e}"),
            }
        }
        let rgb = image::load_from_memory(media)?.to_rgb8();
        let (width, height) = rgb.dimensions();
        Ok(CudaInput::Rgb(vec![RgbImage {
            width,
            height,
            pixels: rgb.into_raw(),
        }]))
    }

    /// Preprocesses on the GPU, `batch_size` frames at a time, and runs the model on each batch.
    fn embed_on_gpu(
        &self,
        inputs: &[RgbInput],
        clip: &Clip,
        batch_size: usize,
        model_gpu_seconds: &mut f64,
    ) -> Result<Vec<f32>, ClipInputError> {
        let size = clip.info.image_size;
        let mut features = Vec::with_capacity(inputs.len() * clip.info.dim);
        for chunk in inputs.chunks(batch_size.max(1)) {
            #[cfg(feature = "cuda")]
            if clip.on_gpu() {
                let device = self
                    .kernels
                    .clip_inputs(chunk, size, OPENAI_MEAN, OPENAI_STD)?;
                let model_started = Instant::now();
                features.extend(clip.embed_images_on_device(device, chunk.len())?);
                *model_gpu_seconds += model_started.elapsed().as_secs_f64();
                continue;
            }
            let host = self
                .kernels
                .clip_inputs_host(chunk, size, OPENAI_MEAN, OPENAI_STD)?;
            let model_started = Instant::now();
            features.extend(clip.embed_images(&host, chunk.len())?);
            if clip.on_gpu() {
                *model_gpu_seconds += model_started.elapsed().as_secs_f64();
            }
        }
        Ok(features)
    }
}

/// An nvJPEG image's pixels on the host (the CPU fallback of a failed GPU batch).
fn download_rgb(rgb: &DeviceRgb) -> Result<Vec<u8>, GpuError> {
    let stream = rgb.pixels.stream().clone();
    let host = stream
        .clone_dtoh(&rgb.pixels)
        .map_err(|e| GpuError::Driver {
            during: "download",
            message: e.to_string(),
        })?;
    stream.synchronize().map_err(|e| GpuError::Driver {
        during: "synchronize",
        message: e.to_string(),
    })?;
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_preparing_an_image_is_that_images_error() {
        let out: Result<u8, PrepareError> =
            prepare_contained(|| panic!("resize of a 0-pixel image"));
        assert_eq!(
            out.unwrap_err().to_string(),
            "CLIP input preparation panicked: resize of a 0-pixel image"
        );
        assert_eq!(prepare_contained(|| Ok::<_, PrepareError>(3)).unwrap(), 3);
        let error = CpuClipInputs
            .image_input(b"not an image", 224)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("panicked"), "{error}");
    }
}
