//! Threshold sweeps for `mmcurate calibrate`: what each filter and each dedup would do at a range
//! of thresholds, from one pass of measuring. A filter's sweep is the share of the measured
//! samples it would keep at each value; a dedup's sweep runs the real dedup (same keep policy)
//! at each distance or similarity and counts groups and dropped samples, with example pairs at
//! the boundary. Nothing here changes a record: every sweep works on a copy.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::percentiles::{threshold_rules, Side};
use super::run_wide::{drop_duplicates, drop_semantic_duplicates_and_misaligned, SemanticPairs};
use super::Reason;
use crate::config::{AlignmentFilters, Config};
use crate::measure::Embeddings;
use crate::record::Record;
use crate::vector::PairProducts;

/// Points per filter sweep.
const FILTER_POINTS: usize = 21;
/// Example pairs kept per dedup threshold.
const EXAMPLES_PER_POINT: usize = 3;

/// Every sweep of a calibration run, as `report.json` and the manifest's `calibration` hold it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sweeps {
    pub filters: Vec<FilterSweep>,
    pub dedups: Vec<DedupSweep>,
}

/// The share of samples a filter keeps at a range of thresholds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilterSweep {
    /// The config key, e.g. `filters.image.min_sharpness`.
    pub key: String,
    pub label: String,
    /// `min`: kept when the value is at least the threshold; `max`: at most.
    pub side: Side,
    /// Samples with the measurement.
    pub samples: u64,
    /// The threshold in force in the config (a percentile's resolved value), if any.
    pub configured: Option<f64>,
    pub points: Vec<FilterPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilterPoint {
    pub threshold: f64,
    pub kept: u64,
    pub kept_share: f64,
}

/// What a dedup would drop at a range of distances (pHash, video) or similarities (embeddings).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DedupSweep {
    /// The config key, e.g. `dedup.phash_max_distance`.
    pub key: String,
    /// Samples the dedup compares (those still kept when it runs).
    pub candidates: u64,
    /// The value in the config.
    pub configured: f64,
    pub points: Vec<DedupPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DedupPoint {
    pub threshold: f64,
    /// Groups of linked samples (each keeps one).
    pub groups: u64,
    pub dropped: u64,
    /// Pairs dropped at this threshold that the previous (stricter) one kept: the boundary.
    pub examples: Vec<ExamplePair>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExamplePair {
    pub duplicate: String,
    pub kept: String,
    /// Hamming distance, mean frame distance, bit error rate or cosine similarity.
    pub value: f64,
}

/// The filter sweeps over every record's measurements (kept or dropped: a filter's sweep shows
/// that filter alone). `resolved` gives the value a percentile threshold resolved to.
pub fn filter_sweeps(
    records: &[Record],
    config: &Config,
    resolved: &dyn Fn(&str) -> Option<f64>,
) -> Vec<FilterSweep> {
    let mut sweeps: Vec<FilterSweep> = threshold_rules(config)
        .into_iter()
        .filter_map(|rule| {
            let values: Vec<f64> = records
                .iter()
                .filter_map(|r| (rule.value)(&r.measurements))
                .filter(|v| v.is_finite())
                .collect();
            let configured = rule.threshold.fixed().or_else(|| resolved(rule.key));
            sweep_values(rule.key, rule.label, rule.side, values, configured)
        })
        .collect();
    if config.models.clip.is_some() {
        let scores: Vec<f64> = records
            .iter()
            .filter_map(|r| r.measurements.clip_score)
            .filter(|v| v.is_finite())
            .collect();
        let key = "filters.alignment.min_clip_score";
        let configured = config
            .filters
            .alignment
            .min_clip_score
            .and_then(|t| t.fixed())
            .or_else(|| resolved(key));
        sweeps.extend(sweep_values(
            key,
            "CLIP score",
            Side::Min,
            scores,
            configured,
        ));
    }
    sweeps
}

/// `FILTER_POINTS` thresholds evenly spaced from the smallest to the largest value, and the
/// share of `values` each keeps; `None` without values.
fn sweep_values(
    key: &str,
    label: &str,
    side: Side,
    mut values: Vec<f64>,
    configured: Option<f64>,
) -> Option<FilterSweep> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let (lo, hi) = (values[0], values[values.len() - 1]);
    let n = values.len();
    let points = (0..FILTER_POINTS)
        .map(|i| {
            let threshold = lo + (hi - lo) * i as f64 / (FILTER_POINTS - 1) as f64;
            let kept = match side {
                Side::Min => n - values.partition_point(|&v| v < threshold),
                Side::Max => values.partition_point(|&v| v <= threshold),
            };
            FilterPoint {
                threshold,
                kept: kept as u64,
                kept_share: kept as f64 / n as f64,
            }
        })
        .collect();
    Some(FilterSweep {
        key: key.to_string(),
        label: label.to_string(),
        side,
        samples: n as u64,
        configured,
        points,
    })
}

/// The sweeps of the dedups that run before embedding, over records as they stand after the
/// per-sample filters (exact copies removed first when `dedup.exact` is on, as in a run).
pub fn dedup_sweeps(records: &[Record], config: &Config) -> Vec<DedupSweep> {
    let only = |phash: u32, video: f64, audio: f64| {
        let mut c = config.clone();
        c.dedup.phash_max_distance = phash;
        c.dedup.video_max_distance = video;
        c.dedup.audio_max_bit_error_rate = audio;
        c
    };
    let mut sweeps = Vec::new();
    let has = |f: &dyn Fn(&Record) -> bool| {
        records
            .iter()
            .filter(|r| r.decision.is_keep() && f(r))
            .count()
    };
    let images = has(&|r| r.measurements.phash.is_some());
    if images > 1 {
        let thresholds: Vec<f64> = (0..=16).map(f64::from).collect();
        sweeps.push(dedup_sweep(
            records,
            "dedup.phash_max_distance",
            images,
            f64::from(config.dedup.phash_max_distance),
            &thresholds,
            Reason::NearDuplicate,
            |records, t| drop_duplicates(records, &only(t as u32, 0.0, 0.0)),
        ));
    }
    let videos = has(&|r| r.measurements.video.is_some());
    if videos > 1 {
        let thresholds: Vec<f64> = (1..=16).map(f64::from).collect();
        sweeps.push(dedup_sweep(
            records,
            "dedup.video_max_distance",
            videos,
            config.dedup.video_max_distance,
            &thresholds,
            Reason::VideoDuplicate,
            |records, t| drop_duplicates(records, &only(0, t, 0.0)),
        ));
    }
    let audio = has(&|r| {
        r.measurements.media_kind == Some(crate::measure::MediaKind::Audio)
            && r.measurements.audio.is_some()
    });
    if audio > 1 {
        let thresholds: Vec<f64> = (1..=20).map(|i| f64::from(i) * 0.02).collect();
        sweeps.push(dedup_sweep(
            records,
            "dedup.audio_max_bit_error_rate",
            audio,
            config.dedup.audio_max_bit_error_rate,
            &thresholds,
            Reason::AudioDuplicate,
            |records, t| drop_duplicates(records, &only(0, 0.0, t)),
        ));
    }
    sweeps
}

/// The semantic dedup's sweep over the embedded samples (records as they stand before semantic
/// dedup), at cosine similarities from 0.80 to 0.99, the searches' products on `products`.
pub fn semantic_sweep(
    records: &[Record],
    embeddings: &Embeddings,
    config: &Config,
    products: &dyn PairProducts,
) -> Option<DedupSweep> {
    if embeddings.rows.len() < 2 {
        return None;
    }
    let thresholds: Vec<f64> = (0..20).map(|i| 0.99 - f64::from(i) * 0.01).collect();
    let mut c = config.clone();
    c.filters.alignment = AlignmentFilters::default();
    Some(dedup_sweep(
        records,
        "dedup.embedding_min_cosine",
        embeddings.rows.len(),
        config.dedup.embedding_min_cosine,
        &thresholds,
        Reason::SemanticDuplicate,
        |records, t| {
            c.dedup.embedding_min_cosine = t;
            drop_semantic_duplicates_and_misaligned(
                records,
                embeddings,
                &c,
                SemanticPairs::Search(products),
            );
        },
    ))
}

/// Runs `dedup` on a copy of `records` at each threshold (strictest first) and counts what it
/// drops for `reason`.
fn dedup_sweep(
    records: &[Record],
    key: &str,
    candidates: usize,
    configured: f64,
    thresholds: &[f64],
    reason: Reason,
    mut dedup: impl FnMut(&mut [Record], f64),
) -> DedupSweep {
    let mut previous: BTreeSet<String> = BTreeSet::new();
    let points = thresholds
        .iter()
        .map(|&threshold| {
            let mut copy = records.to_vec();
            dedup(&mut copy, threshold);
            // Only this dedup drops for `reason`: the records come before it runs.
            let drops: Vec<(&Record, &super::Drop)> = copy
                .iter()
                .filter_map(|r| Some((r, r.decision.dropped()?)))
                .filter(|(_, d)| d.reason == reason)
                .collect();
            let groups: BTreeSet<&str> = drops
                .iter()
                .filter_map(|(_, d)| d.duplicate_of.as_deref())
                .collect();
            let dropped_ids: BTreeSet<String> = drops.iter().map(|(r, _)| r.id.clone()).collect();
            let examples = drops
                .iter()
                .filter(|(r, _)| !previous.contains(&r.id))
                .take(EXAMPLES_PER_POINT)
                .map(|(r, d)| ExamplePair {
                    duplicate: r.id.clone(),
                    kept: d.duplicate_of.clone().unwrap_or_default(),
                    value: d
                        .duplicate_similarity
                        .or(d.duplicate_distance)
                        .unwrap_or_default(),
                })
                .collect();
            let point = DedupPoint {
                threshold,
                groups: groups.len() as u64,
                dropped: dropped_ids.len() as u64,
                examples,
            };
            previous = dropped_ids;
            point
        })
        .collect();
    DedupSweep {
        key: key.to_string(),
        candidates: candidates as u64,
        configured,
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{config, kept_record};
    use super::*;
    use crate::measure::{Measurements, MediaKind};

    fn image(id: &str, sharpness: f64, phash: u64) -> Record {
        let m = Measurements {
            media_kind: Some(MediaKind::Image),
            sha256: Some(id.into()),
            sharpness: Some(sharpness),
            brightness: Some(100.0),
            phash: Some(phash),
            width: Some(100),
            height: Some(100),
            ..Measurements::default()
        };
        kept_record(id, m)
    }

    #[test]
    fn a_filter_sweep_counts_the_share_kept_at_each_threshold() {
        let records: Vec<Record> = (0..=20)
            .map(|i| image(&format!("s{i:02}"), f64::from(i), 1 << i))
            .collect();
        let config = config("[filters.image]\nmin_sharpness = \"p25\"\n");
        let sweeps = filter_sweeps(&records, &config, &|key| {
            (key == "filters.image.min_sharpness").then_some(5.0)
        });
        let sharp = sweeps
            .iter()
            .find(|s| s.key == "filters.image.min_sharpness")
            .unwrap();
        assert_eq!((sharp.samples, sharp.configured), (21, Some(5.0)));
        let at = |t: f64| sharp.points.iter().find(|p| p.threshold == t).unwrap().kept;
        // Values 0..=20, thresholds 0, 1, …, 20: `>= t` keeps 21 - t.
        assert_eq!((at(0.0), at(5.0), at(20.0)), (21, 16, 1));
        let bright = sweeps
            .iter()
            .find(|s| s.key == "filters.image.max_brightness")
            .unwrap();
        assert!(bright
            .points
            .iter()
            .all(|p| p.kept == 21 && p.kept_share == 1.0));
    }

    #[test]
    fn a_phash_sweep_runs_the_real_dedup_at_each_distance() {
        // b is 2 bits from a; c is 6 bits from a and 4 from b; d is far from all.
        let a = 0u64;
        let b = 0b11u64; // 2 bits from a
        let c = 0b11_1111u64; // 6 bits from a, 4 from b
        let d = u64::MAX; // far from all
        let records = vec![
            image("a", 10.0, a),
            image("b", 5.0, b),
            image("c", 1.0, c),
            image("d", 1.0, d),
        ];
        let sweeps = dedup_sweeps(&records, &config(""));
        let phash = &sweeps[0];
        assert_eq!(phash.key, "dedup.phash_max_distance");
        assert_eq!((phash.candidates, phash.configured), (4, 4.0));
        let at = |t: f64| phash.points.iter().find(|p| p.threshold == t).unwrap();
        assert_eq!((at(1.0).groups, at(1.0).dropped), (0, 0));
        assert_eq!((at(2.0).groups, at(2.0).dropped), (1, 1));
        // At 4, c links to b, so a, b, c are one group and a (the sharpest) is kept.
        assert_eq!((at(4.0).groups, at(4.0).dropped), (1, 2));
        let boundary = &at(2.0).examples;
        assert_eq!(boundary.len(), 1);
        assert_eq!(
            (
                boundary[0].duplicate.as_str(),
                boundary[0].kept.as_str(),
                boundary[0].value
            ),
            ("b", "a", 2.0)
        );
        assert_eq!(at(4.0).examples[0].duplicate, "c");
        assert!(at(3.0).examples.is_empty());
        // The records themselves are untouched.
        assert!(records.iter().all(|r| r.decision.is_keep()));
    }
}
