//! Thresholds written as a percentile of the run (`min_sharpness = "p10"`): resolved over every
//! sample of the run that has the measurement (kept or already dropped, so the value does not
//! depend on the order the filters run in), then applied to the samples still kept, with the
//! same reasons as the fixed thresholds. Runs before dedup (cheap before expensive). The
//! per-sample checks in [`super::filters`] skip these thresholds; CLIP-score percentiles are
//! resolved in [`super::alignment`], over the scored samples.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Drop, Reason, Stage};
use crate::config::{Config, Threshold};
use crate::measure::{Measurements, MediaKind};
use crate::record::Record;

/// What a percentile threshold resolved to, recorded in the manifest under `thresholds.<key>`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ResolvedThreshold {
    /// The percentile asked for (0–100).
    pub percentile: f64,
    /// The value it resolved to; `None` when no sample of the run had the measurement.
    pub value: Option<f64>,
    /// Samples the quantile was taken over.
    pub samples: u64,
    /// Kept samples this threshold dropped.
    pub dropped: u64,
}

/// Which side of the threshold a sample must be on to be kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Kept when `value >= threshold`.
    Min,
    /// Kept when `value <= threshold`.
    Max,
}

/// One threshold on a measurement: its config key, what it reads, how it drops.
pub struct Rule {
    pub key: &'static str,
    pub threshold: Threshold,
    pub side: Side,
    /// The measurement, for samples of the kind the rule applies to.
    pub value: fn(&Measurements) -> Option<f64>,
    /// What the measurement is called in a drop's detail.
    pub label: &'static str,
    pub reason: Reason,
}

fn of_kind(m: &Measurements, kind: MediaKind) -> bool {
    m.media_kind == Some(kind)
}

/// Every threshold on a measured value that may be written as a percentile (fixed or not;
/// `min_snr_db` only when set). CLIP scores are [`super::alignment`]'s.
pub fn threshold_rules(config: &Config) -> Vec<Rule> {
    let image = &config.filters.image;
    let video = &config.filters.video;
    let audio = &config.filters.audio;
    let mut rules = vec![
        Rule {
            key: "filters.image.min_sharpness",
            threshold: image.min_sharpness,
            side: Side::Min,
            value: |m| m.sharpness.filter(|_| of_kind(m, MediaKind::Image)),
            label: "sharpness",
            reason: Reason::TooBlurry,
        },
        Rule {
            key: "filters.image.min_brightness",
            threshold: image.min_brightness,
            side: Side::Min,
            value: |m| m.brightness.filter(|_| of_kind(m, MediaKind::Image)),
            label: "brightness",
            reason: Reason::TooDark,
        },
        Rule {
            key: "filters.image.max_brightness",
            threshold: image.max_brightness,
            side: Side::Max,
            value: |m| m.brightness.filter(|_| of_kind(m, MediaKind::Image)),
            label: "brightness",
            reason: Reason::TooBright,
        },
        Rule {
            key: "filters.video.min_sharpness",
            threshold: video.min_sharpness,
            side: Side::Min,
            value: |m| m.video.as_ref().and_then(|v| v.sharpness_mean),
            label: "mean frame sharpness",
            reason: Reason::TooBlurry,
        },
        Rule {
            key: "filters.video.min_motion",
            // As the fixed rule: a video without a motion score has none (0).
            threshold: video.min_motion,
            side: Side::Min,
            value: |m| m.video.as_ref().map(|v| v.motion_score.unwrap_or(0.0)),
            label: "motion score",
            reason: Reason::StaticVideo,
        },
    ];
    if let Some(threshold) = audio.min_snr_db {
        rules.push(Rule {
            key: "filters.audio.min_snr_db",
            threshold,
            side: Side::Min,
            value: |m| m.audio.as_ref().and_then(|a| a.snr_db),
            label: "estimated SNR (dB)",
            reason: Reason::TooNoisy,
        });
    }
    rules
}

/// The thresholds of `config` written as a percentile, with that percentile, in the order
/// [`ThresholdSamples::value`] numbers them.
pub fn percentile_rules(config: &Config) -> Vec<(Rule, f64)> {
    threshold_rules(config)
        .into_iter()
        .filter_map(|rule| rule.threshold.percentile().map(|p| (rule, p)))
        .collect()
}

/// The samples percentile thresholds are resolved over and applied to: the records themselves,
/// or the decide phase's compact per-sample summaries ([`super::summary`]).
pub trait ThresholdSamples {
    fn count(&self) -> usize;
    /// Sample `i`'s value for rule `rule` (the `k`th of [`percentile_rules`]), if it has one.
    fn value(&self, k: usize, rule: &Rule, i: usize) -> Option<f64>;
    fn is_keep(&self, i: usize) -> bool;
    fn drop_sample(&mut self, i: usize, drop: Drop);
}

impl ThresholdSamples for [Record] {
    fn count(&self) -> usize {
        self.len()
    }
    fn value(&self, _k: usize, rule: &Rule, i: usize) -> Option<f64> {
        (rule.value)(&self[i].measurements)
    }
    fn is_keep(&self, i: usize) -> bool {
        self[i].decision.is_keep()
    }
    fn drop_sample(&mut self, i: usize, drop: Drop) {
        self[i].drop_with(drop);
    }
}

/// Resolves every percentile threshold of `config` over the run and drops the kept samples on
/// the wrong side of it. Returns what each resolved to, by config key.
pub fn apply_percentile_thresholds(
    records: &mut [Record],
    config: &Config,
) -> BTreeMap<String, ResolvedThreshold> {
    apply_percentile_thresholds_to(records, config)
}

/// [`apply_percentile_thresholds`] over any [`ThresholdSamples`].
pub fn apply_percentile_thresholds_to<S: ThresholdSamples + ?Sized>(
    samples: &mut S,
    config: &Config,
) -> BTreeMap<String, ResolvedThreshold> {
    let mut resolved = BTreeMap::new();
    for (k, (rule, percentile)) in percentile_rules(config).into_iter().enumerate() {
        let mut values: Vec<f64> = (0..samples.count())
            .filter_map(|i| samples.value(k, &rule, i))
            .filter(|v| v.is_finite())
            .collect();
        let count = values.len() as u64;
        let value = quantile(&mut values, percentile);
        drop(values);
        let mut dropped = 0;
        if let Some(threshold) = value {
            for i in 0..samples.count() {
                if !samples.is_keep(i) {
                    continue;
                }
                let Some(v) = samples.value(k, &rule, i) else {
                    continue;
                };
                let (outside, sign, bound) = match rule.side {
                    Side::Min => (v < threshold, "<", "min"),
                    Side::Max => (v > threshold, ">", "max"),
                };
                if !outside {
                    continue;
                }
                let name = rule.key.rsplit('.').next().unwrap_or(rule.key);
                debug_assert!(name.starts_with(bound));
                samples.drop_sample(
                    i,
                    Drop::new(
                        Stage::Filter,
                        rule.reason,
                        format!(
                            "{} {v:.3} {sign} {name} {threshold:.3}, the run's p{percentile} over {count} samples",
                            rule.label
                        ),
                    ),
                );
                dropped += 1;
            }
        }
        resolved.insert(
            rule.key.to_string(),
            ResolvedThreshold {
                percentile,
                value,
                samples: count,
                dropped,
            },
        );
    }
    resolved
}

/// The `percentile`th percentile (0–100) of `values`, interpolated linearly between the two
/// nearest ranks (as NumPy's default); `None` for no values. Sorts `values`.
pub fn quantile(values: &mut [f64], percentile: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = (percentile / 100.0).clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let fraction = rank - lo as f64;
    Some(values[lo] + (values[hi] - values[lo]) * fraction)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{config, kept_record};
    use super::*;
    use crate::record::Decision;

    #[test]
    fn quantile_interpolates_between_ranks() {
        let mut v: Vec<f64> = (1..=5).rev().map(f64::from).collect();
        assert_eq!(quantile(&mut v, 50.0), Some(3.0));
        assert_eq!(quantile(&mut v, 10.0), Some(1.4));
        assert_eq!(quantile(&mut v, 99.0), Some(4.96));
        assert_eq!(quantile(&mut [7.0], 30.0), Some(7.0));
        assert_eq!(quantile(&mut [], 30.0), None);
    }

    fn image(id: &str, sharpness: f64, brightness: f64) -> Record {
        let m = Measurements {
            media_kind: Some(MediaKind::Image),
            sharpness: Some(sharpness),
            brightness: Some(brightness),
            ..Measurements::default()
        };
        kept_record(id, m)
    }

    #[test]
    fn percentiles_resolve_over_the_whole_run_and_drop_the_kept_only() {
        // Sharpness 0..=10: p20 is 2.0. Sample 0 was already dropped for another reason:
        // it counts in the quantile and keeps its first reason.
        let mut records: Vec<Record> = (0..=10)
            .map(|i| image(&format!("s{i:02}"), f64::from(i), 100.0 + f64::from(i)))
            .collect();
        records[0].drop_with(Drop::new(Stage::Filter, Reason::TooSmall, "small"));
        let config = config("[filters.image]\nmin_sharpness = \"p20\"\nmax_brightness = \"p90\"\n");
        let resolved = apply_percentile_thresholds(&mut records, &config);

        let sharp = &resolved["filters.image.min_sharpness"];
        assert_eq!(
            (sharp.value, sharp.samples, sharp.dropped),
            (Some(2.0), 11, 1)
        );
        let bright = &resolved["filters.image.max_brightness"];
        assert_eq!((bright.value, bright.dropped), (Some(109.0), 1));
        assert!(!resolved.contains_key("filters.image.min_brightness"));

        let reasons: Vec<Option<Reason>> = records
            .iter()
            .map(|r| match &r.decision {
                Decision::Keep => None,
                Decision::Drop(d) => Some(d.reason),
            })
            .collect();
        let mut expected = vec![None; 11];
        expected[0] = Some(Reason::TooSmall);
        expected[1] = Some(Reason::TooBlurry);
        expected[10] = Some(Reason::TooBright);
        assert_eq!(reasons, expected);
        let Decision::Drop(d) = &records[1].decision else {
            unreachable!()
        };
        assert_eq!(
            d.detail,
            "sharpness 1.000 < min_sharpness 2.000, the run's p20 over 11 samples"
        );
    }

    #[test]
    fn fixed_thresholds_are_left_to_the_per_sample_checks() {
        let mut records = vec![image("a", 1.0, 10.0), image("b", 50.0, 10.0)];
        let config = config("[filters.image]\nmin_sharpness = 30\n");
        assert!(apply_percentile_thresholds(&mut records, &config).is_empty());
        assert!(records.iter().all(|r| r.decision.is_keep()));
    }
}
