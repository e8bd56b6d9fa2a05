//! The CLIP stage: embeds the samples still kept after the filters and exact/pHash dedup, from
//! their staged bytes, in batches of `[models.clip] batch_size`. Decoding and preprocessing of
//! a batch run on all cores (rayon), then the model runs on the batch (on all cores too). A
//! video is embedded through its sampled frames (the same frames measuring sampled): its
//! embedding is the normalised mean of theirs, and its CLIP score the mean or the max of the
//! frames' scores (`[video] clip_score`). Audio files are not embedded. Each embedded sample
//! gets its caption's token count and its CLIP score; the normalised embeddings are returned
//! for semantic dedup and the `embeddings/` files.

use rayon::prelude::*;

use super::progress::Progress;
use crate::config::FrameScore;
use crate::decide::semantic::{cosine, normalise};
use crate::decide::{Decision, Drop, Reason, Stage};
use crate::decode::av::{sample_video_frames, FrameSampling};
use crate::measure::Embeddings;
use crate::models::clip::Clip;
use crate::models::clip_preprocess::{
    clip_pixel_values, clip_pixel_values_rgb, OPENAI_MEAN, OPENAI_STD,
};
use crate::models::ModelError;
use crate::write::staging::StagingReader;
use crate::write::Record;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot read staged sample {id}: {source}")]
    Staging { id: String, source: std::io::Error },
}

/// What a batch member brings to the model: one image, or a video's sampled frames.
struct Prepared {
    record: usize,
    /// `frames x 3 x size x size`.
    pixels: Result<Vec<f32>, String>,
    frames: usize,
    caption: Option<String>,
}

/// How videos are embedded.
pub struct VideoEmbedding<'a> {
    pub sampling: &'a FrameSampling,
    pub score: FrameScore,
}

/// Embeds every kept record. Samples whose image the preprocessing cannot decode are dropped
/// (the CLIP decoder is stricter than the luminance one on a few damaged files).
pub fn embed_kept(
    records: &mut [Record],
    staging: &StagingReader,
    clip: &Clip,
    batch_size: usize,
    video: &VideoEmbedding,
    progress: &Progress,
) -> Result<Embeddings, EmbedError> {
    let kept: Vec<usize> = (0..records.len())
        .filter(|&i| {
            records[i].decision.is_keep() && records[i].measurements.media_kind != Some("audio")
        })
        .collect();
    let dim = clip.info.dim;
    let size = clip.info.image_size;
    let bar = progress.stage("embed", Some(kept.len() as u64));
    let mut out = Embeddings {
        dim,
        ..Embeddings::default()
    };
    for batch in kept.chunks(batch_size) {
        let prepared: Vec<Prepared> = batch
            .par_iter()
            .map(|&i| prepare(i, &records[i], staging, size, video.sampling))
            .collect::<Result<_, _>>()?;
        let (ok, failed): (Vec<&Prepared>, Vec<&Prepared>) =
            prepared.iter().partition(|p| p.pixels.is_ok());
        for p in failed {
            let message = p.pixels.as_ref().err().cloned().unwrap_or_default();
            let record = &mut records[p.record];
            record.decision = Decision::Drop(Drop::new(
                Stage::Decode,
                Reason::Unreadable,
                format!("CLIP preprocessing: {message}"),
            ));
            record.staged.clear();
            bar.inc_dropped(Reason::Unreadable.as_str());
        }
        if ok.is_empty() {
            continue;
        }
        let pixels: Vec<f32> = ok
            .iter()
            .flat_map(|p| p.pixels.as_ref().map_or(&[][..], Vec::as_slice))
            .copied()
            .collect();
        let frames: usize = ok.iter().map(|p| p.frames).sum();
        let plane = 3 * (size as usize) * (size as usize);
        let mut frame_features = Vec::with_capacity(frames * dim);
        for chunk in pixels.chunks(batch_size * plane) {
            frame_features.extend(clip.embed_images(chunk, chunk.len() / plane)?);
        }
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
            text[j * dim..(j + 1) * dim]
                .copy_from_slice(&text_features[row * dim..(row + 1) * dim]);
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
    }
    bar.finish();
    Ok(out)
}

/// Reads a record's staged media and caption; preprocesses the image, or the video's sampled
/// frames. Media that does not decode is `Err(message)` in the result; only a staging read
/// error fails the run.
fn prepare(
    index: usize,
    record: &Record,
    staging: &StagingReader,
    size: u32,
    sampling: &FrameSampling,
) -> Result<Prepared, EmbedError> {
    let read = |part: usize| {
        staging
            .read(&record.staged[part])
            .map_err(|source| EmbedError::Staging {
                id: record.id.clone(),
                source,
            })
    };
    // The media part is staged first.
    let media = read(0)?;
    let (pixels, frames) = if record.measurements.media_kind == Some("video") {
        let sampling = FrameSampling {
            keep_rgb: true,
            ..*sampling
        };
        match sample_video_frames(&media, &sampling) {
            Ok(video) if !video.frames.is_empty() => {
                let frames = video.frames.len();
                let pixels = video
                    .frames
                    .iter()
                    .filter_map(|f| f.rgb.as_ref())
                    .flat_map(|rgb| {
                        clip_pixel_values_rgb(
                            &rgb.pixels,
                            rgb.width,
                            rgb.height,
                            size,
                            OPENAI_MEAN,
                            OPENAI_STD,
                        )
                    })
                    .collect::<Vec<f32>>();
                let complete = pixels.len() == frames * 3 * (size * size) as usize;
                if complete {
                    (Ok(pixels), frames)
                } else {
                    let message = "the decoder returned a frame without its RGB pixels";
                    (Err(message.to_string()), frames)
                }
            }
            Ok(_) => (Err("no frame could be decoded".to_string()), 0),
            Err(e) => (Err(e.to_string()), 0),
        }
    } else {
        let pixels =
            clip_pixel_values(&media, size, OPENAI_MEAN, OPENAI_STD).map_err(|e| e.to_string());
        (pixels, 1)
    };
    let caption = match record.staged.iter().position(|p| p.ext == "txt") {
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
        record: index,
        pixels,
        frames,
        caption,
    })
}
