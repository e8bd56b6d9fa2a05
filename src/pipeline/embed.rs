//! The CLIP stage: embeds the samples still kept after the filters and exact/pHash dedup, from
//! their staged bytes, in batches of `[models.clip] batch_size`. Decoding and preprocessing of
//! a batch run on all cores (rayon), then the model runs on the batch (candle uses all cores
//! itself). Each embedded sample gets its caption's token count and its CLIP score; the
//! normalised embeddings are returned for semantic dedup and the `embeddings/` files.

use rayon::prelude::*;

use super::progress::Progress;
use crate::decide::semantic::{cosine, normalise};
use crate::decide::{Decision, Drop, Reason, Stage};
use crate::measure::Embeddings;
use crate::models::clip::Clip;
use crate::models::clip_preprocess::{clip_pixel_values, OPENAI_MEAN, OPENAI_STD};
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

/// What a batch member brings to the model.
struct Prepared {
    record: usize,
    pixels: Result<Vec<f32>, String>,
    caption: Option<String>,
}

/// Embeds every kept record. Samples whose image the preprocessing cannot decode are dropped
/// (the CLIP decoder is stricter than the luminance one on a few damaged files).
pub fn embed_kept(
    records: &mut [Record],
    staging: &StagingReader,
    clip: &Clip,
    batch_size: usize,
    progress: &Progress,
) -> Result<Embeddings, EmbedError> {
    let kept: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].decision.is_keep())
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
            .map(|&i| prepare(i, &records[i], staging, size))
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
        let mut image = clip.embed_images(&pixels, ok.len())?;
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
            let image_row = &image[j * dim..(j + 1) * dim];
            if has_text[j] {
                let score = cosine(image_row, &text[j * dim..(j + 1) * dim]);
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

/// Reads a record's staged media and caption; preprocesses the image. An image that does not
/// decode is `Err(message)` in the result; only a staging read error fails the run.
fn prepare(
    index: usize,
    record: &Record,
    staging: &StagingReader,
    size: u32,
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
    let pixels =
        clip_pixel_values(&media, size, OPENAI_MEAN, OPENAI_STD).map_err(|e| e.to_string());
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
        caption,
    })
}
