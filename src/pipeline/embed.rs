//! The CLIP stage: embeds the samples still kept after the filters and exact/pHash dedup, from
//! their staged bytes, in batches of `[models.clip] batch_size`. A producer thread decodes and
//! preprocesses the next batch (on all cores, rayon) while the model runs on the current one,
//! through a queue of one batch. A video is embedded through its sampled frames (the same
//! frames measuring sampled): its embedding is the normalised mean of theirs, and its CLIP
//! score the mean or the max of the frames' scores (`[video] clip_score`). Audio files are not
//! embedded. Each embedded sample gets its caption's token count and its CLIP score; the
//! normalised embeddings are returned for semantic dedup and the `embeddings/` files.
//!
//! On a GPU ([`Preprocessing::Gpu`]) the images are only decoded here (by nvJPEG into device
//! memory when `run.gpu_jpeg_decode` is on) and the resize, crop and normalisation run in
//! `gpu::CudaKernels::clip_inputs`, bit-identical to the CPU's from the same RGB; with the
//! `cuda` feature the result is handed to candle on the device, with no copy to the host.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use super::backends::Backends;
use super::progress::Progress;
use crate::config::{Config, FrameScore};
use crate::decide::semantic::{cosine, normalise};
use crate::decide::{Drop, Reason, Stage};
use crate::decode::av::{sample_video_frames, FrameSampling, RgbFrame};
use crate::gpu::cuda::RgbInput;
use crate::gpu::nvjpeg::DeviceRgb;
use crate::gpu::{CudaKernels, GpuError, GpuJpegDecoder};
use crate::measure::video::frame_sampling;
use crate::measure::Embeddings;
use crate::models::clip::Clip;
use crate::models::clip_preprocess::{
    clip_pixel_values, clip_pixel_values_rgb, OPENAI_MEAN, OPENAI_STD,
};
use crate::models::ModelError;
use crate::record::{MediaKind, Record};
use crate::write::staging::{StagedPart, StagingReader};

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot read staged sample {id}: {source}")]
    Staging { id: String, source: std::io::Error },
    #[error("CLIP preprocessing on the GPU: {0}")]
    Gpu(#[from] GpuError),
}

/// Where CLIP's input tensors are made.
#[derive(Clone, Copy)]
pub enum Preprocessing<'a> {
    /// On the CPU: the reference.
    Cpu,
    /// On the GPU, from RGB decoded on the CPU, or by nvJPEG (JPEGs it takes) when given.
    Gpu {
        kernels: &'a CudaKernels,
        jpeg: Option<&'a GpuJpegDecoder>,
    },
}

/// RGB bytes a GPU batch holds at most before preprocessing (decoded images wait in host or
/// device memory until their batch is complete): a batch of large images is cut short.
const MAX_GPU_BATCH_RGB_BYTES: u64 = 1 << 30;

/// What the producer needs of a record (it cannot borrow the records the consumer updates).
struct Job {
    record: usize,
    id: String,
    is_video: bool,
    media: StagedPart,
    caption: Option<StagedPart>,
    /// Decoded RGB bytes, from the measured size (images), for cutting GPU batches.
    rgb_bytes: u64,
}

/// What a batch member brings to the model: one image, or a video's sampled frames.
struct Prepared {
    record: usize,
    input: Result<Input, String>,
    frames: usize,
    caption: Option<String>,
}

enum Input {
    /// Preprocessed on the CPU: `frames x 3 x size x size` floats.
    Values(Vec<f32>),
    /// Decoded frames (one for an image) for the GPU to preprocess.
    Rgb(Vec<RgbFrame>),
    /// An image decoded by nvJPEG, in device memory.
    Device(DeviceRgb),
}

/// How videos are embedded.
pub struct VideoEmbedding<'a> {
    pub sampling: &'a FrameSampling,
    pub score: FrameScore,
}

/// The CLIP stage of a run with a model (`backends.clip`): embeds the kept records and adds the
/// GPU's busy seconds of the stage to `gpu_busy_seconds`.
pub fn embed_kept_records(
    records: &mut [Record],
    staging: &StagingReader,
    config: &Config,
    backends: &Backends,
    gpu_busy_seconds: &mut std::collections::BTreeMap<String, f64>,
    progress: &Progress,
) -> Result<Embeddings, EmbedError> {
    let (Some(clip), Some(model)) = (&backends.clip, &config.models.clip) else {
        return Ok(Embeddings::default());
    };
    let sampling = frame_sampling(config, true);
    let video = VideoEmbedding {
        sampling: &sampling,
        score: config.video.clip_score,
    };
    let preprocessing = match &backends.cuda {
        Some(cuda) => Preprocessing::Gpu {
            kernels: &cuda.kernels,
            jpeg: cuda.jpeg.as_ref(),
        },
        None => Preprocessing::Cpu,
    };
    let mut model_gpu_seconds = 0.0;
    let embeddings = embed_kept(
        records,
        staging,
        clip,
        model.batch_size,
        &video,
        preprocessing,
        &mut model_gpu_seconds,
        progress,
    )?;
    if let Some(cuda) = &backends.cuda {
        let busy = cuda.kernels.busy().clip_inputs;
        gpu_busy_seconds.insert("embed.clip_inputs".to_string(), busy);
        if cuda.jpeg.is_some() {
            let measured = gpu_busy_seconds
                .get("measure.jpeg_decode")
                .copied()
                .unwrap_or_default();
            let seconds = backends.jpeg_busy_seconds() - measured;
            gpu_busy_seconds.insert("embed.jpeg_decode".to_string(), seconds);
        }
        if clip.on_gpu() {
            gpu_busy_seconds.insert("embed.model".to_string(), model_gpu_seconds);
        }
    }
    Ok(embeddings)
}

/// Embeds every kept record. Samples whose image the preprocessing cannot decode are dropped
/// (the CLIP decoder is stricter than the luminance one on a few damaged files).
#[allow(clippy::too_many_arguments)]
pub fn embed_kept(
    records: &mut [Record],
    staging: &StagingReader,
    clip: &Clip,
    batch_size: usize,
    video: &VideoEmbedding,
    preprocessing: Preprocessing,
    model_gpu_seconds: &mut f64,
    progress: &Progress,
) -> Result<Embeddings, EmbedError> {
    let jobs: Vec<Job> = (0..records.len())
        .filter(|&i| {
            records[i].decision.is_keep() && records[i].media_kind() != Some(MediaKind::Audio)
        })
        .map(|i| {
            let r = &records[i];
            let m = &r.measurements;
            Job {
                record: i,
                id: r.id.clone(),
                is_video: m.media_kind == Some(MediaKind::Video),
                // The media part is staged first.
                media: r.staged[0].clone(),
                caption: r.staged.iter().find(|p| p.ext == "txt").cloned(),
                rgb_bytes: 3 * u64::from(m.width.unwrap_or(0)) * u64::from(m.height.unwrap_or(0)),
            }
        })
        .collect();
    let max_bytes = match preprocessing {
        Preprocessing::Cpu => u64::MAX,
        Preprocessing::Gpu { .. } => MAX_GPU_BATCH_RGB_BYTES,
    };
    let sizes: Vec<u64> = jobs.iter().map(|j| j.rgb_bytes).collect();
    let batches = crate::gpu::plan::split_runs(&sizes, batch_size.max(1), max_bytes);
    let dim = clip.info.dim;
    let size = clip.info.image_size;
    let bar = progress.stage("embed", Some(jobs.len() as u64));
    let mut out = Embeddings {
        dim,
        ..Embeddings::default()
    };
    std::thread::scope(|scope| -> Result<(), EmbedError> {
        // One batch prepared ahead: decoding overlaps the model, and memory stays bounded.
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let jobs = &jobs;
        scope.spawn(move || {
            for batch in batches {
                let prepared: Result<Vec<Prepared>, EmbedError> = jobs[batch]
                    .par_iter()
                    .map(|job| prepare(job, staging, size, video.sampling, preprocessing))
                    .collect();
                let failed = prepared.is_err();
                // The consumer stopped (it failed): stop too.
                if sender.send(prepared).is_err() || failed {
                    break;
                }
            }
        });
        for prepared in receiver {
            let prepared = prepared?;
            embed_batch(
                records,
                prepared,
                clip,
                batch_size,
                video,
                preprocessing,
                model_gpu_seconds,
                &bar,
                &mut out,
            )?;
        }
        Ok(())
    })?;
    bar.finish();
    Ok(out)
}

/// Whether a GPU preprocessing failure was reported (once per run).
static GPU_FALLBACK_WARNED: AtomicBool = AtomicBool::new(false);

/// The model inputs of a batch's frames, in order: on the GPU when asked (and, with the
/// `cuda` feature and CLIP on the GPU, straight into the model), else on the CPU. Returns
/// the frames' image features.
fn frame_features(
    ok: &[&Prepared],
    clip: &Clip,
    batch_size: usize,
    preprocessing: Preprocessing,
    model_gpu_seconds: &mut f64,
) -> Result<Vec<f32>, EmbedError> {
    let size = clip.info.image_size;
    let plane = 3 * (size as usize) * (size as usize);
    let frames: usize = ok.iter().map(|p| p.frames).sum();
    let mut features = Vec::with_capacity(frames * clip.info.dim);
    if let Preprocessing::Gpu { kernels, .. } = preprocessing {
        let inputs: Vec<RgbInput> = ok
            .iter()
            .flat_map(|p| gpu_inputs(p.input.as_ref().ok()))
            .collect();
        if inputs.len() == frames {
            match embed_on_gpu(&inputs, kernels, clip, batch_size, model_gpu_seconds) {
                Ok(features) => return Ok(features),
                Err(EmbedError::Gpu(e)) => {
                    if !GPU_FALLBACK_WARNED.swap(true, Ordering::Relaxed) {
                        tracing::warn!("{e}; preprocessing for CLIP on the CPU instead");
                    }
                }
                Err(other) => return Err(other),
            }
        }
    }
    let mut pixels = Vec::with_capacity(frames * plane);
    for p in ok {
        match p.input.as_ref() {
            Ok(Input::Values(values)) => pixels.extend_from_slice(values),
            Ok(Input::Rgb(rgbs)) => {
                for rgb in rgbs {
                    pixels.extend(cpu_values(&rgb.pixels, rgb.width, rgb.height, size));
                }
            }
            Ok(Input::Device(rgb)) => {
                let host = download_rgb(rgb)?;
                pixels.extend(cpu_values(&host, rgb.width, rgb.height, size));
            }
            Err(_) => {}
        }
    }
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

/// The GPU inputs of a prepared sample's frames.
fn gpu_inputs(input: Option<&Input>) -> Vec<RgbInput<'_>> {
    match input {
        Some(Input::Rgb(rgbs)) => rgbs
            .iter()
            .map(|rgb| RgbInput::Host {
                width: rgb.width,
                height: rgb.height,
                pixels: &rgb.pixels,
            })
            .collect(),
        Some(Input::Device(rgb)) => vec![RgbInput::Device(rgb)],
        Some(Input::Values(_)) | None => Vec::new(),
    }
}

/// Preprocesses on the GPU, `batch_size` frames at a time, and runs the model on each batch.
fn embed_on_gpu(
    inputs: &[RgbInput],
    kernels: &CudaKernels,
    clip: &Clip,
    batch_size: usize,
    model_gpu_seconds: &mut f64,
) -> Result<Vec<f32>, EmbedError> {
    let size = clip.info.image_size;
    let mut features = Vec::with_capacity(inputs.len() * clip.info.dim);
    for chunk in inputs.chunks(batch_size.max(1)) {
        #[cfg(feature = "cuda")]
        if clip.on_gpu() {
            let device = kernels.clip_inputs(chunk, size, OPENAI_MEAN, OPENAI_STD)?;
            let model_started = Instant::now();
            features.extend(clip.embed_images_on_device(device, chunk.len())?);
            *model_gpu_seconds += model_started.elapsed().as_secs_f64();
            continue;
        }
        let host = kernels.clip_inputs_host(chunk, size, OPENAI_MEAN, OPENAI_STD)?;
        let model_started = Instant::now();
        features.extend(clip.embed_images(&host, chunk.len())?);
        if clip.on_gpu() {
            *model_gpu_seconds += model_started.elapsed().as_secs_f64();
        }
    }
    Ok(features)
}

/// An nvJPEG image's pixels on the host (the CPU fallback of a failed GPU batch).
fn download_rgb(rgb: &DeviceRgb) -> Result<Vec<u8>, EmbedError> {
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

/// Embeds one prepared batch and records the results.
#[allow(clippy::too_many_arguments)]
fn embed_batch(
    records: &mut [Record],
    prepared: Vec<Prepared>,
    clip: &Clip,
    batch_size: usize,
    video: &VideoEmbedding,
    preprocessing: Preprocessing,
    model_gpu_seconds: &mut f64,
    bar: &super::progress::StageBar,
    out: &mut Embeddings,
) -> Result<(), EmbedError> {
    let dim = clip.info.dim;
    let (ok, failed): (Vec<&Prepared>, Vec<&Prepared>) =
        prepared.iter().partition(|p| p.input.is_ok());
    for p in failed {
        let message = p.input.as_ref().err().cloned().unwrap_or_default();
        records[p.record].drop_with(Drop::new(
            Stage::Decode,
            Reason::Unreadable,
            format!("CLIP preprocessing: {message}"),
        ));
        bar.inc_dropped(Reason::Unreadable.as_str());
    }
    if ok.is_empty() {
        return Ok(());
    }
    let mut frame_features =
        frame_features(&ok, clip, batch_size, preprocessing, model_gpu_seconds)?;
    normalise(&mut frame_features, dim);
    // One row per sample: an image's own, a video's normalised frame mean.
    let mut image = vec![0f32; ok.len() * dim];
    let mut first_frame = 0;
    let mut frame_rows = Vec::with_capacity(ok.len());
    for (j, p) in ok.iter().enumerate() {
        let rows = &frame_features[first_frame * dim..(first_frame + p.frames) * dim];
        let out = &mut image[j * dim..(j + 1) * dim];
        for row in rows.chunks_exact(dim) {
            out.iter_mut().zip(row).for_each(|(o, x)| *o += x);
        }
        frame_rows.push(first_frame..first_frame + p.frames);
        first_frame += p.frames;
    }
    normalise(&mut image, dim);

    let mut tokens = Vec::new();
    let mut with_caption = Vec::new();
    for (j, p) in ok.iter().enumerate() {
        let Some(caption) = &p.caption else { continue };
        let m = &mut records[p.record].measurements;
        match clip.tokenizer().encode(caption) {
            Ok(t) => {
                m.caption_tokens = Some(t.length as u32);
                m.caption_truncated = Some(t.truncated);
                tokens.push(t.ids);
                with_caption.push(j);
            }
            // Not seen with valid UTF-8, but a caption is data: say so, do not stop.
            Err(e) => m.clip_note = Some(format!("not scored: {e}")),
        }
    }
    let mut text_features = clip.embed_texts(&tokens)?;
    normalise(&mut text_features, dim);
    let mut text = vec![0f32; ok.len() * dim];
    let mut has_text = vec![false; ok.len()];
    for (row, &j) in with_caption.iter().enumerate() {
        text[j * dim..(j + 1) * dim].copy_from_slice(&text_features[row * dim..(row + 1) * dim]);
        has_text[j] = true;
    }
    for (j, p) in ok.iter().enumerate() {
        let m = &mut records[p.record].measurements;
        m.clip_model = Some(clip.info.id.clone());
        m.clip_weights_sha256 = Some(clip.info.weights_sha256.clone());
        if has_text[j] {
            let caption = &text[j * dim..(j + 1) * dim];
            let scores = frame_rows[j]
                .clone()
                .map(|f| cosine(&frame_features[f * dim..(f + 1) * dim], caption));
            let score = match video.score {
                FrameScore::Mean => scores.sum::<f32>() / p.frames as f32,
                FrameScore::Max => scores.fold(f32::MIN, f32::max),
            };
            m.clip_score = Some(f64::from(score));
        } else if m.clip_note.is_none() {
            m.clip_note = Some("not scored: no caption".to_string());
        }
        out.rows.push(p.record);
        bar.inc();
    }
    out.image.extend_from_slice(&image);
    out.text.extend_from_slice(&text);
    out.has_text.extend_from_slice(&has_text);
    Ok(())
}

/// Reads a record's staged media and caption, and decodes the image, or the video's sampled
/// frames: preprocessed on the CPU, or left as RGB (on the host, or on the device from nvJPEG)
/// for the GPU. Media that does not decode is `Err(message)` in the result; only a staging
/// read error fails the run.
fn prepare(
    job: &Job,
    staging: &StagingReader,
    size: u32,
    sampling: &FrameSampling,
    preprocessing: Preprocessing,
) -> Result<Prepared, EmbedError> {
    let read = |part: &StagedPart| {
        staging.read(part).map_err(|source| EmbedError::Staging {
            id: job.id.clone(),
            source,
        })
    };
    let media = read(&job.media)?;
    let on_gpu = matches!(preprocessing, Preprocessing::Gpu { .. });
    let (input, frames) = if job.is_video {
        let sampling = FrameSampling {
            keep_rgb: true,
            ..*sampling
        };
        match sample_video_frames(&media, &sampling) {
            Ok(video) if !video.frames.is_empty() => {
                let frames = video.frames.len();
                let rgbs: Vec<RgbFrame> = video.frames.into_iter().filter_map(|f| f.rgb).collect();
                if rgbs.len() != frames {
                    let message = "the decoder returned a frame without its RGB pixels";
                    (Err(message.to_string()), frames)
                } else if on_gpu {
                    (Ok(Input::Rgb(rgbs)), frames)
                } else {
                    let values = rgbs
                        .iter()
                        .flat_map(|rgb| cpu_values(&rgb.pixels, rgb.width, rgb.height, size))
                        .collect();
                    (Ok(Input::Values(values)), frames)
                }
            }
            Ok(_) => (Err("no frame could be decoded".to_string()), 0),
            Err(e) => (Err(e.to_string()), 0),
        }
    } else {
        (prepare_image(&media, size, preprocessing), 1)
    };
    let caption = match &job.caption {
        Some(part) => {
            let bytes = read(part)?;
            // The caption check already required UTF-8 and measured it.
            String::from_utf8(bytes)
                .ok()
                .map(|text| text.trim().to_string())
                .filter(|text| !text.is_empty())
        }
        None => None,
    };
    Ok(Prepared {
        record: job.record,
        input,
        frames,
        caption,
    })
}

/// One image: nvJPEG's device RGB where it takes the JPEG, else the CPU decoder's RGB (for the
/// GPU) or the CPU's whole preprocessing.
fn prepare_image(media: &[u8], size: u32, preprocessing: Preprocessing) -> Result<Input, String> {
    match preprocessing {
        Preprocessing::Cpu => clip_pixel_values(media, size, OPENAI_MEAN, OPENAI_STD)
            .map(Input::Values)
            .map_err(|e| e.to_string()),
        Preprocessing::Gpu { jpeg, .. } => {
            let is_jpeg = media.starts_with(&[0xff, 0xd8, 0xff]);
            if let (Some(decoder), true) = (jpeg, is_jpeg) {
                match decoder.decode_rgb_device(media) {
                    Ok(rgb) => return Ok(Input::Device(rgb)),
                    Err(e) => tracing::debug!("CLIP input decoded on the CPU, not nvJPEG: {e}"),
                }
            }
            let rgb = image::load_from_memory(media)
                .map_err(|e| format!("cannot decode the image: {e}"))?
                .to_rgb8();
            let (width, height) = rgb.dimensions();
            Ok(Input::Rgb(vec![RgbFrame {
                width,
                height,
                pixels: rgb.into_raw(),
            }]))
        }
    }
}
