//! The CLIP stage: embeds the samples still kept after the filters and exact/pHash dedup, from
//! their staged bytes, in batches of `[models.clip] batch_size`. A producer thread decodes and
//! preprocesses the next batch (on all cores, rayon) while the model runs on the current one,
//! through a queue of one batch. A video is embedded through its sampled frames (the same
//! frames measuring sampled): its embedding and CLIP score are made from its frames' by
//! `measure::clip_score` (`[video] clip_score`). Audio files are not
//! embedded. Each embedded sample gets its caption's token count and its CLIP score; the
//! normalised embeddings are returned for semantic dedup and the `embeddings/` files.
//!
//! With a model-output cache (`state::model_outputs`), a sample whose content this checkpoint
//! has embedded before takes its outputs from the cache and is neither read nor decoded; what
//! the model computes is added to it.
//!
//! Where the inputs are decoded and preprocessed, and where the model runs, is the backend's
//! business ([`ClipInputs`]: CPU, or CUDA with its own fallback to the CPU); this stage is the
//! same on every device.

use rayon::prelude::*;

use super::backends::Backends;
use super::progress::Progress;
use crate::config::{Config, FrameScore};
use crate::decide::{Drop, Reason, Stage};
use crate::decode::av::{sample_video_frames, FrameSampling};
use crate::decode::DecodeError;
use crate::gpu::GpuError;
use crate::measure::clip_score::{clip_score, sample_embeddings};
use crate::measure::video::frame_sampling;
use crate::measure::Embeddings;
use crate::models::clip::Clip;
use crate::models::clip_inputs::{
    ClipInputError, ClipInputs, CpuClipInputs, CudaClipInputs, PrepareError,
};
use crate::models::ModelError;
use crate::pixels::RgbImage;
use crate::record::{MediaKind, Record};
use crate::state::model_outputs::{CachedOutput, ModelOutputCache};
use crate::state::StagedBytes;
use crate::vector::normalise;
use crate::write::staging::StagedPart;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot read staged sample {id}: {source}")]
    Staging { id: String, source: std::io::Error },
    #[error("CLIP preprocessing on the GPU: {0}")]
    Gpu(#[from] GpuError),
    #[error("model-output cache: {0}")]
    Cache(crate::state::StateError),
}

impl From<ClipInputError> for EmbedError {
    fn from(e: ClipInputError) -> EmbedError {
        match e {
            ClipInputError::Model(e) => EmbedError::Model(e),
            ClipInputError::Gpu(e) => EmbedError::Gpu(e),
        }
    }
}

/// What the producer needs of a record (it cannot borrow the records the consumer updates).
struct Job {
    record: usize,
    id: String,
    is_video: bool,
    media: StagedPart,
    caption: Option<StagedPart>,
    /// Decoded RGB bytes, from the measured size (images), for cutting GPU batches.
    rgb_bytes: u64,
    /// Its key in the model-output cache, when there is one.
    cache_key: Option<String>,
}

/// What a batch member brings to the model: one image, or a video's sampled frames, as the
/// backend keeps them (`Err`: the media did not decode).
struct Prepared<I> {
    record: usize,
    input: Result<I, NoInput>,
    frames: usize,
    caption: Option<String>,
    cache_key: Option<String>,
}

/// Why a batch member has no model input (its record is dropped saying so).
#[derive(Debug, thiserror::Error)]
enum NoInput {
    #[error("{0}")]
    Image(PrepareError),
    #[error("{0}")]
    Video(DecodeError),
    #[error("no frame could be decoded")]
    NoFrame,
    #[error("the decoder returned a frame without its RGB pixels")]
    FrameWithoutRgb,
}

/// How videos are embedded.
pub struct VideoEmbedding<'a> {
    pub sampling: &'a FrameSampling,
    pub score: FrameScore,
}

/// The CLIP stage of a run with a model (`backends.clip`): embeds the kept records (taking
/// what `cache` holds for this checkpoint from it, and adding the rest to it) and adds the
/// GPU's busy seconds of the stage to `gpu_busy_seconds`.
pub fn embed_kept_records(
    records: &mut [Record],
    staging: &dyn StagedBytes,
    config: &Config,
    backends: &Backends,
    gpu_busy_seconds: &mut std::collections::BTreeMap<String, f64>,
    progress: &Progress,
    cache: Option<&ModelOutputCache>,
) -> Result<Embeddings, EmbedError> {
    let (Some(clip), Some(model)) = (&backends.clip, &config.models.clip) else {
        return Ok(Embeddings::default());
    };
    let sampling = frame_sampling(config, true);
    let video = VideoEmbedding {
        sampling: &sampling,
        score: config.video.clip_score,
    };
    let mut model_gpu_seconds = 0.0;
    let stage = ClipStage {
        clip,
        batch_size: model.batch_size,
        video: &video,
        progress,
        cache,
    };
    let embeddings = match &backends.cuda {
        Some(cuda) => {
            let inputs = CudaClipInputs {
                kernels: &cuda.kernels,
                jpeg: cuda.jpeg.as_ref(),
            };
            stage.embed_kept(records, staging, &inputs, &mut model_gpu_seconds)?
        }
        None => stage.embed_kept(records, staging, &CpuClipInputs, &mut model_gpu_seconds)?,
    };
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

/// The model and how it is run.
pub struct ClipStage<'a> {
    pub clip: &'a Clip,
    pub batch_size: usize,
    pub video: &'a VideoEmbedding<'a>,
    pub progress: &'a Progress,
    pub cache: Option<&'a ModelOutputCache>,
}

/// The settings besides the weights that change what a checkpoint makes of a sample: the
/// precision it ran in, its input size, and how videos are sampled and scored (part of every
/// model-output cache key).
pub fn model_output_settings(config: &Config, clip: &Clip) -> String {
    format!(
        "dtype={} image_size={} video={}",
        clip.info.dtype,
        clip.info.image_size,
        serde_json::to_string(&config.video).unwrap_or_default()
    )
}

impl ClipStage<'_> {
    /// Embeds every kept record with `inputs`' backend. Samples whose image the preprocessing
    /// cannot decode are dropped (the CLIP decoder is stricter than the luminance one on a few
    /// damaged files).
    pub fn embed_kept<B: ClipInputs>(
        &self,
        records: &mut [Record],
        staging: &dyn StagedBytes,
        inputs: &B,
        model_gpu_seconds: &mut f64,
    ) -> Result<Embeddings, EmbedError> {
        let (clip, batch_size, video, progress) =
            (self.clip, self.batch_size, self.video, self.progress);
        let mut jobs: Vec<Job> = Vec::new();
        let mut cached: Vec<(usize, CachedOutput)> = Vec::new();
        let eligible = (0..records.len()).filter(|&i| {
            records[i].decision.is_keep() && records[i].media_kind() != Some(MediaKind::Audio)
        });
        for i in eligible {
            let r = &records[i];
            let m = &r.measurements;
            let caption = r.staged.iter().find(|p| p.ext == "txt").cloned();
            let cache_key = match (self.cache, &m.sha256) {
                (Some(cache), Some(sha256)) => {
                    let text = match &caption {
                        Some(part) => {
                            Some(staging.read(part).map_err(|source| EmbedError::Staging {
                                id: r.id.clone(),
                                source,
                            })?)
                        }
                        None => None,
                    };
                    let key = cache.key(sha256, text.as_deref());
                    if let Some(output) = cache.lookup(&key) {
                        cached.push((i, output.clone()));
                        continue;
                    }
                    Some(key)
                }
                _ => None,
            };
            jobs.push(Job {
                record: i,
                id: r.id.clone(),
                is_video: m.media_kind == Some(MediaKind::Video),
                // The media part is staged first.
                media: r.staged[0].clone(),
                caption,
                rgb_bytes: 3 * u64::from(m.width.unwrap_or(0)) * u64::from(m.height.unwrap_or(0)),
                cache_key,
            });
        }
        let max_bytes = inputs.max_batch_rgb_bytes();
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
                    let prepared: Result<Vec<Prepared<B::Input>>, EmbedError> = jobs[batch]
                        .par_iter()
                        .map(|job| prepare(job, staging, size, video.sampling, inputs))
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
                    (clip, self.cache),
                    batch_size,
                    video,
                    inputs,
                    model_gpu_seconds,
                    &bar,
                    &mut out,
                )?;
            }
            Ok(())
        })?;
        for (record, output) in cached {
            apply_cached(records, record, &output, clip, &mut out);
            bar.inc();
        }
        bar.finish();
        if let Some(cache) = self.cache {
            cache.persist().map_err(EmbedError::Cache)?;
        }
        Ok(in_record_order(out))
    }
}

/// A cached sample's outputs, as the model would have given them.
fn apply_cached(
    records: &mut [Record],
    record: usize,
    output: &CachedOutput,
    clip: &Clip,
    out: &mut Embeddings,
) {
    let m = &mut records[record].measurements;
    m.clip_model = Some(clip.info.id.clone());
    m.clip_weights_sha256 = Some(clip.info.weights_sha256.clone());
    m.clip_score = output.clip_score;
    m.caption_tokens = output.caption_tokens;
    m.caption_truncated = output.caption_truncated;
    if output.clip_note.is_some() {
        m.clip_note = output.clip_note.clone();
    }
    // Rows are put in record order once all are in (`in_record_order`).
    out.rows.push(record);
    out.image.extend_from_slice(&output.image);
    match &output.text {
        Some(text) => out.text.extend_from_slice(text),
        None => out.text.extend(std::iter::repeat_n(0.0, out.dim)),
    }
    out.has_text.push(output.text.is_some());
}

/// The rows sorted by record (the order the model alone gives them in), so an output does not
/// depend on which samples came from the cache.
fn in_record_order(e: Embeddings) -> Embeddings {
    let dim = e.dim;
    let mut order: Vec<usize> = (0..e.rows.len()).collect();
    order.sort_by_key(|&k| e.rows[k]);
    if order.iter().enumerate().all(|(a, &b)| a == b) {
        return e;
    }
    let mut sorted = Embeddings {
        dim,
        ..Embeddings::default()
    };
    for k in order {
        sorted.rows.push(e.rows[k]);
        sorted
            .image
            .extend_from_slice(&e.image[k * dim..(k + 1) * dim]);
        sorted
            .text
            .extend_from_slice(&e.text[k * dim..(k + 1) * dim]);
        sorted.has_text.push(e.has_text[k]);
    }
    sorted
}

/// Embeds one prepared batch and records the results.
#[allow(clippy::too_many_arguments)]
fn embed_batch<B: ClipInputs>(
    records: &mut [Record],
    prepared: Vec<Prepared<B::Input>>,
    (clip, cache): (&Clip, Option<&ModelOutputCache>),
    batch_size: usize,
    video: &VideoEmbedding,
    inputs: &B,
    model_gpu_seconds: &mut f64,
    bar: &super::progress::StageBar,
    out: &mut Embeddings,
) -> Result<(), EmbedError> {
    let dim = clip.info.dim;
    #[allow(clippy::type_complexity)]
    let (ok, failed): (Vec<&Prepared<B::Input>>, Vec<&Prepared<B::Input>>) =
        prepared.iter().partition(|p| p.input.is_ok());
    for p in failed {
        let message = p
            .input
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
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
    let frames: usize = ok.iter().map(|p| p.frames).sum();
    let batch_inputs: Vec<&B::Input> = ok.iter().filter_map(|p| p.input.as_ref().ok()).collect();
    let mut frame_features =
        inputs.image_features(&batch_inputs, frames, clip, batch_size, model_gpu_seconds)?;
    normalise(&mut frame_features, dim);
    // One row per sample: an image's own, a video's normalised frame mean.
    let frame_counts: Vec<usize> = ok.iter().map(|p| p.frames).collect();
    let (image, frame_rows) = sample_embeddings(&frame_features, &frame_counts, dim);

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
            let score = clip_score(&frame_features, frame_rows[j].clone(), caption, video.score);
            m.clip_score = Some(f64::from(score));
        } else if m.clip_note.is_none() {
            m.clip_note = Some("not scored: no caption".to_string());
        }
        if let (Some(cache), Some(key), Some(sha256)) = (cache, &p.cache_key, &m.sha256) {
            cache.add(
                key.clone(),
                CachedOutput {
                    sha256: sha256.clone(),
                    image: image[j * dim..(j + 1) * dim].to_vec(),
                    text: has_text[j].then(|| text[j * dim..(j + 1) * dim].to_vec()),
                    clip_score: m.clip_score,
                    caption_tokens: m.caption_tokens,
                    caption_truncated: m.caption_truncated,
                    clip_note: m.clip_note.clone(),
                },
            );
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
fn prepare<B: ClipInputs>(
    job: &Job,
    staging: &dyn StagedBytes,
    size: u32,
    sampling: &FrameSampling,
    inputs: &B,
) -> Result<Prepared<B::Input>, EmbedError> {
    let read = |part: &StagedPart| {
        staging.read(part).map_err(|source| EmbedError::Staging {
            id: job.id.clone(),
            source,
        })
    };
    let media = read(&job.media)?;
    let (input, frames) = if job.is_video {
        let sampling = FrameSampling {
            keep_rgb: true,
            ..*sampling
        };
        match sample_video_frames(&media, &sampling) {
            Ok(video) if !video.frames.is_empty() => {
                let frames = video.frames.len();
                let rgbs: Vec<RgbImage> = video.frames.into_iter().filter_map(|f| f.rgb).collect();
                if rgbs.len() != frames {
                    (Err(NoInput::FrameWithoutRgb), frames)
                } else {
                    (Ok(inputs.frames_input(rgbs, size)), frames)
                }
            }
            Ok(_) => (Err(NoInput::NoFrame), 0),
            Err(e) => (Err(NoInput::Video(e)), 0),
        }
    } else {
        (inputs.image_input(&media, size).map_err(NoInput::Image), 1)
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
        cache_key: job.cache_key.clone(),
    })
}
