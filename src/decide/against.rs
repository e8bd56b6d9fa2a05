//! Dedup of a run's new samples against an existing curated corpus (`mmcurate run --against`):
//! the corpus is known only through its persisted index (sha256, pHash, video signature, audio
//! fingerprint of every kept sample) and, with CLIP, its embeddings; no old shard is read.
//! Each dedup joins the corpus's samples to the run's, so groups are the same connected
//! components a single run over old and new inputs forms, but a group that holds a corpus
//! sample always keeps it (the corpus is not rewritten): new members are dropped naming the
//! corpus sample's id and version. It does not write or read files (`write::index` does).

use std::collections::{HashMap, HashSet};

use super::dedup::{
    audio_duplicates, exact_duplicates, near_duplicates, semantic_duplicates, video_duplicates,
    Candidate,
};
use super::run_wide::candidate;
use super::Drop;
use crate::config::Config;
use crate::measure::video::Signature;
use crate::measure::{Embeddings, MediaKind};
use crate::record::Record;
use crate::vector::PairProducts;

/// One kept sample of the corpus, as its index holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusSample {
    /// The ledger id.
    pub id: String,
    /// The version whose folder holds its shard.
    pub version: u32,
    /// Its shard, relative to the output root.
    pub shard: String,
    /// Its WebDataset key (new samples get keys no corpus sample uses).
    pub key: String,
    /// Hex sha256 of the media bytes.
    pub sha256: String,
    pub media_kind: Option<MediaKind>,
    /// Images only.
    pub phash: Option<u64>,
    /// Videos: the sampled frames' times and pHashes.
    pub video_frames: Option<(Vec<f64>, Vec<u64>)>,
    /// Audio (files and videos' tracks): the sub-fingerprints.
    pub audio_fingerprint: Option<Vec<u32>>,
}

/// The corpus a run is deduplicated against.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// The version of the corpus the index is of.
    pub version: u64,
    pub samples: Vec<CorpusSample>,
    /// With CLIP: the image embeddings of the corpus samples that have one.
    pub embeddings: Option<CorpusEmbeddings>,
}

/// Unit-length image embeddings of corpus samples, row `k` of `sample` `rows[k]`.
#[derive(Debug, Clone, Default)]
pub struct CorpusEmbeddings {
    pub dim: usize,
    /// The model's weights sha256 (embeddings of another model are not comparable).
    pub weights_sha256: String,
    pub rows: Vec<usize>,
    pub image: Vec<f32>,
}

/// What the corpus dedup dropped, by reason.
pub type CorpusDrops = std::collections::BTreeMap<String, u64>;

/// The name a corpus sample goes by in dedup: its id and version, which no new id can equal
/// (ids hold no spaces before `(version`), so a detail reads "… of 0:a.jpg (version 1)".
fn tagged(sample: &CorpusSample) -> String {
    format!("{} (version {})", sample.id, sample.version)
}

/// Candidates of the corpus samples at `indices`: they win every group they are in (a keep
/// rule of infinite sharpness and pixels), then by id among themselves.
fn corpus_candidates<'a>(
    names: &'a [String],
    corpus: &'a Corpus,
    indices: &[usize],
) -> Vec<Candidate<'a>> {
    indices
        .iter()
        .map(|&i| Candidate {
            id: &names[i],
            sha256: &corpus.samples[i].sha256,
            phash: corpus.samples[i].phash.unwrap_or_default(),
            sharpness: f64::INFINITY,
            pixels: u64::MAX,
        })
        .collect()
}

/// The corpus samples at `old`, then the records at `kept`.
fn joined<'a>(
    names: &'a [String],
    corpus: &'a Corpus,
    old: &[usize],
    kept: &[usize],
    records: &'a [Record],
) -> Vec<Candidate<'a>> {
    let mut all = corpus_candidates(names, corpus, old);
    all.extend(kept.iter().map(|&i| candidate(&records[i])));
    all
}

/// Applies the drops found for the joined list (corpus first, then the records at `kept`):
/// only new samples are dropped; a drop naming a corpus sample gets its plain id in
/// `duplicate_of` and is counted.
fn apply(
    records: &mut [Record],
    kept: &[usize],
    corpus_count: usize,
    drops: Vec<Option<Drop>>,
    names: &HashMap<&str, &str>,
    counts: &mut CorpusDrops,
) {
    for (k, drop) in drops.into_iter().enumerate().skip(corpus_count) {
        let Some(mut drop) = drop else { continue };
        if let Some(id) = drop.duplicate_of.as_deref().and_then(|d| names.get(d)) {
            drop.duplicate_of = Some(id.to_string());
            *counts.entry(drop.reason.as_str().to_string()).or_default() += 1;
        }
        records[kept[k - corpus_count]].drop_with(drop);
    }
}

/// Exact, pHash, video and audio dedup of the kept records (in id order) joined with the
/// corpus, as `run_wide::drop_duplicates` does within a run. Returns the drops that name a
/// corpus sample, by reason.
pub fn drop_corpus_duplicates(
    records: &mut [Record],
    corpus: &Corpus,
    config: &Config,
) -> CorpusDrops {
    let dedup = &config.dedup;
    let names: Vec<String> = corpus.samples.iter().map(tagged).collect();
    let plain: HashMap<&str, &str> = names
        .iter()
        .zip(&corpus.samples)
        .map(|(t, s)| (t.as_str(), s.id.as_str()))
        .collect();
    let mut counts = CorpusDrops::new();
    let kept_where = |records: &[Record], applies: &dyn Fn(&Record) -> bool| -> Vec<usize> {
        (0..records.len())
            .filter(|&i| records[i].decision.is_keep() && applies(&records[i]))
            .collect()
    };
    let corpus_where = |applies: &dyn Fn(&CorpusSample) -> bool| -> Vec<usize> {
        (0..corpus.samples.len())
            .filter(|&i| applies(&corpus.samples[i]))
            .collect()
    };
    if dedup.exact {
        let old = corpus_where(&|_| true);
        let kept = kept_where(records, &|r| r.measurements.sha256.is_some());
        let drops = exact_duplicates(&joined(&names, corpus, &old, &kept, records));
        apply(records, &kept, old.len(), drops, &plain, &mut counts);
    }
    if dedup.phash_max_distance > 0 {
        let old = corpus_where(&|s| s.phash.is_some());
        let kept = kept_where(records, &|r| r.measurements.phash.is_some());
        let drops = near_duplicates(
            &joined(&names, corpus, &old, &kept, records),
            dedup.phash_max_distance,
        );
        apply(records, &kept, old.len(), drops, &plain, &mut counts);
    }
    if dedup.video_max_distance > 0.0 {
        let old = corpus_where(&|s| s.video_frames.is_some());
        let kept = kept_where(records, &|r| r.measurements.video.is_some());
        let candidates = joined(&names, corpus, &old, &kept, records);
        let mut signatures: Vec<Signature> = old
            .iter()
            .filter_map(|&i| corpus.samples[i].video_frames.as_ref())
            .map(|(times, hashes)| Signature { times, hashes })
            .collect();
        signatures.extend(
            kept.iter()
                .filter_map(|&i| records[i].measurements.video.as_ref().map(Signature::of)),
        );
        let tolerance = 0.5 / config.video.sample_fps;
        let drops = video_duplicates(
            &candidates,
            &signatures,
            dedup.video_max_distance,
            tolerance,
        );
        drop(signatures);
        drop(candidates);
        apply(records, &kept, old.len(), drops, &plain, &mut counts);
    }
    if dedup.audio_max_bit_error_rate > 0.0 {
        let old = corpus_where(&|s| {
            s.media_kind == Some(MediaKind::Audio) && s.audio_fingerprint.is_some()
        });
        let kept = kept_where(records, &|r| {
            r.media_kind() == Some(MediaKind::Audio) && r.measurements.audio.is_some()
        });
        let candidates = joined(&names, corpus, &old, &kept, records);
        let mut prints: Vec<&[u32]> = old
            .iter()
            .filter_map(|&i| corpus.samples[i].audio_fingerprint.as_deref())
            .collect();
        prints.extend(
            kept.iter()
                .filter_map(|&i| records[i].measurements.audio.as_ref())
                .map(|a| a.fingerprint.as_slice()),
        );
        let drops = audio_duplicates(&candidates, &prints, dedup.audio_max_bit_error_rate);
        drop(prints);
        drop(candidates);
        apply(records, &kept, old.len(), drops, &plain, &mut counts);
    }
    counts
}

/// Semantic dedup of the embedded, still kept records against the corpus's embeddings (when
/// made by the same model: `weights_sha256`), the search's products on `products`. Returns the
/// drops that name a corpus sample.
pub fn drop_corpus_semantic_duplicates(
    records: &mut [Record],
    embeddings: &Embeddings,
    corpus: &Corpus,
    weights_sha256: &str,
    config: &Config,
    products: &dyn PairProducts,
) -> CorpusDrops {
    let mut counts = CorpusDrops::new();
    let min_cosine = config.dedup.embedding_min_cosine;
    let Some(old) = corpus.embeddings.as_ref().filter(|e| !e.rows.is_empty()) else {
        return counts;
    };
    if min_cosine <= 0.0 {
        return counts;
    }
    if old.weights_sha256 != weights_sha256 || old.dim != embeddings.dim {
        tracing::warn!(
            "the corpus's embeddings were made by another model (weights sha256 {}): semantic \
             dedup against the corpus is skipped; run `mmcurate reenrich` on it first",
            old.weights_sha256
        );
        return counts;
    }
    let names: Vec<String> = corpus.samples.iter().map(tagged).collect();
    let plain: HashMap<&str, &str> = names
        .iter()
        .zip(&corpus.samples)
        .map(|(t, s)| (t.as_str(), s.id.as_str()))
        .collect();
    let dim = embeddings.dim;
    let (mut kept, mut rows) = (Vec::new(), Vec::new());
    for (k, &i) in embeddings.rows.iter().enumerate() {
        if records[i].decision.is_keep() {
            kept.push(i);
            rows.push(k);
        }
    }
    let mut vectors = old.image.clone();
    for &k in &rows {
        vectors.extend_from_slice(&embeddings.image[k * dim..(k + 1) * dim]);
    }
    let mut candidates = corpus_candidates(&names, corpus, &old.rows);
    candidates.extend(kept.iter().map(|&i| candidate(&records[i])));
    let drops = semantic_duplicates(&candidates, &vectors, dim, min_cosine as f32, products);
    drop(candidates);
    apply(records, &kept, old.rows.len(), drops, &plain, &mut counts);
    counts
}

/// The embeddings of the rows whose record is still kept: what the run's own semantic dedup
/// and alignment take after the corpus dedup, so that a sample dropped as a copy of a corpus
/// sample keeps that reason.
pub fn still_kept(embeddings: &Embeddings, records: &[Record]) -> Embeddings {
    let dim = embeddings.dim;
    let mut out = Embeddings {
        dim,
        ..Embeddings::default()
    };
    for (k, &i) in embeddings.rows.iter().enumerate() {
        if records[i].decision.is_keep() {
            out.rows.push(i);
            out.image
                .extend_from_slice(&embeddings.image[k * dim..(k + 1) * dim]);
            out.text
                .extend_from_slice(&embeddings.text[k * dim..(k + 1) * dim]);
            out.has_text.push(embeddings.has_text[k]);
        }
    }
    out
}

/// The keys the corpus uses, so the new samples' keys are made unique against them.
pub fn corpus_keys(corpus: &Corpus) -> HashSet<String> {
    corpus.samples.iter().map(|s| s.key.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::test_support::{config, kept_record};
    use crate::measure::Measurements;

    fn image(id: &str, sha: &str, phash: u64, sharpness: f64) -> Record {
        kept_record(
            id,
            Measurements {
                sha256: Some(sha.to_string()),
                phash: Some(phash),
                sharpness: Some(sharpness),
                width: Some(100),
                height: Some(100),
                media_kind: Some(MediaKind::Image),
                ..Measurements::default()
            },
        )
    }

    fn old(id: &str, sha: &str, phash: u64) -> CorpusSample {
        CorpusSample {
            id: id.to_string(),
            version: 1,
            shard: "versions/000001/shards/jpg-000000.tar".to_string(),
            key: id.to_string(),
            sha256: sha.to_string(),
            media_kind: Some(MediaKind::Image),
            phash: Some(phash),
            video_frames: None,
            audio_fingerprint: None,
        }
    }

    #[test]
    fn copies_of_corpus_samples_are_dropped_naming_them_and_the_corpus_always_wins() {
        let corpus = Corpus {
            version: 1,
            samples: vec![old("0:a.jpg", "aa", 0), old("0:b.jpg", "bb", u64::MAX)],
            embeddings: None,
        };
        let mut records = vec![
            // Same id as a corpus sample, same bytes: an exact copy.
            image("0:a.jpg", "aa", 0, 1.0),
            // Much sharper, 2 bits from b: still a copy of b, which stays.
            image("0:c.jpg", "cc", u64::MAX ^ 0b11, 1e9),
            // 3 bits from c (5 from b): linked to b through c, as a single run would link it.
            image("0:d.jpg", "dd", u64::MAX ^ 0b1110_0000_0011 ^ 0b11, 5.0),
            // Unrelated.
            image("0:e.jpg", "ee", 0x00ff_00ff_00ff_00ff, 5.0),
        ];
        let counts = drop_corpus_duplicates(&mut records, &corpus, &config(""));
        let a = records[0].decision.dropped().unwrap();
        assert_eq!(a.reason.as_str(), "exact_duplicate");
        assert_eq!(a.duplicate_of.as_deref(), Some("0:a.jpg"));
        assert!(a.detail.contains("0:a.jpg (version 1)"), "{}", a.detail);
        let c = records[1].decision.dropped().unwrap();
        assert_eq!(c.reason.as_str(), "near_duplicate");
        assert_eq!(c.duplicate_of.as_deref(), Some("0:b.jpg"));
        assert!(c.detail.contains("(version 1)"), "{}", c.detail);
        assert_eq!(
            records[2]
                .decision
                .dropped()
                .unwrap()
                .duplicate_of
                .as_deref(),
            Some("0:b.jpg")
        );
        assert!(records[3].decision.is_keep());
        assert_eq!(counts.get("exact_duplicate"), Some(&1));
        assert_eq!(counts.get("near_duplicate"), Some(&2));
    }

    #[test]
    fn copies_among_new_samples_are_decided_as_in_a_run() {
        let corpus = Corpus::default();
        let mut records = vec![
            image("0:a.jpg", "aa", 0, 1.0),
            image("0:b.jpg", "aa", 0, 2.0),
        ];
        let counts = drop_corpus_duplicates(&mut records, &corpus, &config(""));
        assert!(counts.is_empty());
        assert!(records[0].decision.is_keep() ^ records[1].decision.is_keep());
    }
}
