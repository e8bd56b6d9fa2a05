//! The decisions that need the whole run, over the per-sample records: the keep policy of every
//! dedup (exact copies of any media, pHash neighbours among images, signature matches among
//! videos, fingerprint matches among audio, then semantic neighbours among embedded samples) and
//! the alignment thresholds. What counts as the better copy is said once, in [`candidate`]; the
//! searches themselves are in [`super::dedup`] and [`super::alignment`].

use std::time::Instant;

use super::alignment::{decide_alignment, AlignmentSummary};
use super::dedup::{
    audio_duplicates, exact_duplicates, near_duplicates, semantic_duplicates,
    semantic_duplicates_of_pairs, video_duplicates, Candidate,
};
use super::semantic::SimilarPair;
use super::Drop;
use crate::config::Config;
use crate::measure::video::Signature;
use crate::measure::{Embeddings, MediaKind};
use crate::record::Record;
use crate::vector::PairProducts;

/// What dedup knows of a record. Audio has neither sharpness nor pixels: of two copies, the
/// one with more samples per second (rate × channels) is kept, then the higher bit rate.
pub fn candidate(record: &Record) -> Candidate<'_> {
    let m = &record.measurements;
    let (sharpness, pixels) = match (m.media_kind, &m.audio) {
        (Some(MediaKind::Audio), Some(audio)) => (
            f64::from(audio.sample_rate) * f64::from(audio.channels),
            m.duration_seconds
                .filter(|&d| d > 0.0)
                .map_or(m.size_bytes, |d| (m.size_bytes as f64 / d) as u64),
        ),
        _ => (
            m.sharpness.unwrap_or_default(),
            m.width.unwrap_or(0) as u64 * m.height.unwrap_or(0) as u64,
        ),
    };
    Candidate {
        id: &record.id,
        sha256: m.sha256.as_deref().unwrap_or_default(),
        phash: m.phash.unwrap_or_default(),
        sharpness,
        pixels,
    }
}

/// What dedup knows of the records at `indices`.
fn candidates<'a>(indices: &[usize], records: &'a [Record]) -> Vec<Candidate<'a>> {
    indices.iter().map(|&i| candidate(&records[i])).collect()
}

/// Drops `records[indices[k]]` where `drops[k]` says so.
fn apply_drops(records: &mut [Record], indices: &[usize], drops: Vec<Option<Drop>>) {
    for (&i, drop) in indices.iter().zip(drops) {
        if let Some(drop) = drop {
            records[i].drop_with(drop);
        }
    }
}

/// Global dedup over the samples still kept (records in id order): exact copies first (any
/// media), then pHash neighbours among images, signature matches among videos and fingerprint
/// matches among audio files.
pub fn drop_duplicates(records: &mut [Record], config: &Config) {
    /// Finds the drops among the records at the indices given.
    type FindDrops<'f> = &'f dyn Fn(&[usize], &[Record]) -> Vec<Option<Drop>>;
    let dedup = &config.dedup;
    let run = |records: &mut [Record], applies: &dyn Fn(&Record) -> bool, find: FindDrops| {
        let kept: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].decision.is_keep() && applies(&records[i]))
            .collect();
        let drops = find(&kept, records);
        apply_drops(records, &kept, drops);
    };
    if dedup.exact {
        run(records, &|_| true, &|kept, records| {
            exact_duplicates(&candidates(kept, records))
        });
    }
    if dedup.phash_max_distance > 0 {
        let d = dedup.phash_max_distance;
        run(
            records,
            &|r| r.measurements.phash.is_some(),
            &|kept, records| near_duplicates(&candidates(kept, records), d),
        );
    }
    if dedup.video_max_distance > 0.0 {
        let tolerance = 0.5 / config.video.sample_fps;
        run(
            records,
            &|r| r.measurements.video.is_some(),
            &|kept, records| {
                let signatures: Vec<Signature> = kept
                    .iter()
                    .filter_map(|&i| records[i].measurements.video.as_ref().map(Signature::of))
                    .collect();
                video_duplicates(
                    &candidates(kept, records),
                    &signatures,
                    dedup.video_max_distance,
                    tolerance,
                )
            },
        );
    }
    if dedup.audio_max_bit_error_rate > 0.0 {
        let is_audio =
            |r: &Record| r.media_kind() == Some(MediaKind::Audio) && r.measurements.audio.is_some();
        run(records, &is_audio, &|kept, records| {
            let prints: Vec<&[u32]> = kept
                .iter()
                .filter_map(|&i| records[i].measurements.audio.as_ref())
                .map(|a| a.fingerprint.as_slice())
                .collect();
            audio_duplicates(
                &candidates(kept, records),
                &prints,
                dedup.audio_max_bit_error_rate,
            )
        });
    }
}

/// Whether `run`'s semantic dedup searches these embeddings for pairs at all (the decide
/// phase's partition tasks have nothing to search otherwise).
pub fn searches_semantic_pairs(embeddings: &Embeddings, config: &Config) -> bool {
    config.dedup.embedding_min_cosine > 0.0 && embeddings.rows.len() > 1
}

/// Where the semantic dedup's pairs (rows of the embeddings) come from.
#[derive(Clone, Copy)]
pub enum SemanticPairs<'a> {
    /// A search here, its products on this device (the run's: the same pairs on any).
    Search(&'a dyn PairProducts),
    /// Found already: the merged pairs of the decide phase's partition tasks, which are the
    /// pairs a search here would find.
    Found(&'a [SimilarPair]),
}

/// After embedding: semantic dedup over the embedded samples (all still kept), its pairs from
/// `pairs`, then the alignment thresholds over the CLIP scores of the samples still kept after
/// it. Returns the thresholds as applied, when the config has alignment rules.
pub fn drop_semantic_duplicates_and_misaligned(
    records: &mut [Record],
    embeddings: &Embeddings,
    config: &Config,
    pairs: SemanticPairs<'_>,
) -> Option<AlignmentSummary> {
    let min_cosine = config.dedup.embedding_min_cosine;
    if searches_semantic_pairs(embeddings, config) {
        let rows = &embeddings.rows;
        let started = Instant::now();
        let candidates: Vec<Candidate> = rows.iter().map(|&i| candidate(&records[i])).collect();
        let (image, dim) = (&embeddings.image, embeddings.dim);
        let drops = match pairs {
            SemanticPairs::Found(pairs) => {
                tracing::info!(
                    "semantic dedup: {} pairs found by the partition tasks among {} image embeddings (cosine >= {min_cosine})",
                    pairs.len(),
                    rows.len()
                );
                semantic_duplicates_of_pairs(&candidates, image, dim, min_cosine as f32, pairs)
            }
            SemanticPairs::Search(products) => {
                tracing::info!(
                    "semantic dedup: searching {} image embeddings (cosine >= {min_cosine}) on {}",
                    rows.len(),
                    products.device()
                );
                semantic_duplicates(&candidates, image, dim, min_cosine as f32, products)
            }
        };
        let dropped = drops.iter().flatten().count();
        apply_drops(records, rows, drops);
        tracing::info!(
            "semantic dedup: {dropped} semantic duplicates dropped in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let rules = &config.filters.alignment;
    if rules.min_clip_score.is_none() && rules.keep_top_fraction.is_none() {
        return None;
    }
    let kept: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].decision.is_keep())
        .collect();
    let scores: Vec<Option<f64>> = kept
        .iter()
        .map(|&i| records[i].measurements.clip_score)
        .collect();
    let (drops, summary) = decide_alignment(&scores, rules);
    apply_drops(records, &kept, drops);
    tracing::info!(
        "alignment: {} of {} scored samples dropped{}",
        summary.dropped,
        summary.scored,
        summary
            .quantile_threshold
            .map_or(String::new(), |t| format!(
                " (keep_top_fraction threshold {t:.4})"
            ))
    );
    Some(summary)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{config, kept_record as record};
    use super::*;
    use crate::measure::{AudioMeasurements, Measurements};
    use crate::record::Reason;

    fn image(sha: &str, sharpness: f64, side: u32) -> Measurements {
        Measurements {
            media_kind: Some(MediaKind::Image),
            sha256: Some(sha.into()),
            sharpness: Some(sharpness),
            width: Some(side),
            height: Some(side),
            phash: Some(0x1234),
            ..Measurements::default()
        }
    }

    #[test]
    fn of_audio_copies_the_one_with_more_samples_per_second_is_better() {
        let audio = |rate, channels| Measurements {
            media_kind: Some(MediaKind::Audio),
            size_bytes: 1000,
            duration_seconds: Some(10.0),
            audio: Some(AudioMeasurements {
                sample_rate: rate,
                channels,
                ..AudioMeasurements::default()
            }),
            ..Measurements::default()
        };
        let stereo = record("0:a.flac", audio(44100, 2));
        let c = candidate(&stereo);
        assert_eq!((c.sharpness, c.pixels), (88200.0, 100));
        let img = record("0:b.jpg", image("ab", 12.5, 10));
        let c = candidate(&img);
        assert_eq!((c.sharpness, c.pixels), (12.5, 100));
    }

    #[test]
    fn exact_copies_keep_the_sharper_and_drop_the_rest_with_their_staging() {
        let mut records = vec![
            record("0:a.jpg", image("same", 10.0, 64)),
            record("0:b.jpg", image("same", 20.0, 64)),
            record("0:c.jpg", image("other", 5.0, 64)),
        ];
        drop_duplicates(
            &mut records,
            &config("[dedup]\nexact = true\nphash_max_distance = 0\n"),
        );
        let a = records[0].decision.dropped().expect("a is the worse copy");
        assert_eq!(a.reason, Reason::ExactDuplicate);
        assert_eq!(a.duplicate_of.as_deref(), Some("0:b.jpg"));
        assert!(records[0].staged.is_empty());
        assert!(records[1].decision.is_keep() && records[2].decision.is_keep());
        assert_eq!(records[1].staged.len(), 1);

        // pHash dedup on (all three share a pHash): the sharpest of the kept stays.
        drop_duplicates(
            &mut records,
            &config("[dedup]\nexact = false\nphash_max_distance = 4\n"),
        );
        assert!(records[1].decision.is_keep());
        let c = records[2].decision.dropped().expect("c is near b");
        assert_eq!(c.reason, Reason::NearDuplicate);
    }
}
