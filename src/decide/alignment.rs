//! Image-text alignment thresholds on CLIP scores: a fixed minimum (`min_clip_score`, as LAION
//! filtered) and a run-wide quantile (`keep_top_fraction`, as DataComp's CLIP score filter).
//! The quantile needs every score of the run, so this runs after dedup, on the samples still
//! kept. Samples without a score (no caption) are neither counted nor dropped.

use serde::Serialize;

use super::{Drop, Reason, Stage};
use crate::config::AlignmentFilters;

/// The thresholds as applied to a run, recorded in the run manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct AlignmentSummary {
    /// Samples that had a CLIP score when the thresholds were applied.
    pub scored: u64,
    pub min_clip_score: Option<f64>,
    pub keep_top_fraction: Option<f64>,
    /// The lowest score kept by `keep_top_fraction`: the run-wide quantile.
    pub quantile_threshold: Option<f64>,
    pub dropped: u64,
}

/// Decides, for each score (`None`: not scored), whether the sample is dropped.
pub fn decide_alignment(
    scores: &[Option<f64>],
    rules: &AlignmentFilters,
) -> (Vec<Option<Drop>>, AlignmentSummary) {
    let mut scored: Vec<f64> = scores.iter().flatten().copied().collect();
    let quantile_threshold = rules
        .keep_top_fraction
        .and_then(|fraction| top_fraction_threshold(&mut scored, fraction));
    let mut summary = AlignmentSummary {
        scored: scored.len() as u64,
        min_clip_score: rules.min_clip_score,
        keep_top_fraction: rules.keep_top_fraction,
        quantile_threshold,
        dropped: 0,
    };
    let drops: Vec<Option<Drop>> = scores
        .iter()
        .map(|score| {
            let score = (*score)?;
            let detail = match (rules.min_clip_score, quantile_threshold) {
                (Some(min), _) if score < min => {
                    format!("CLIP score {score:.4} < min_clip_score {min}")
                }
                (_, Some(threshold)) if score < threshold => format!(
                    "CLIP score {score:.4} < {threshold:.4}, the run's keep_top_fraction {} threshold over {} scored samples",
                    rules.keep_top_fraction.unwrap_or_default(),
                    summary.scored
                ),
                _ => return None,
            };
            Some(Drop::new(Stage::Alignment, Reason::LowClipScore, detail))
        })
        .collect();
    summary.dropped = drops.iter().flatten().count() as u64;
    (drops, summary)
}

/// The lowest score among the best `fraction` of `scores` (at least one is kept), so that
/// keeping every score at or above it keeps that fraction (more only where scores tie).
fn top_fraction_threshold(scores: &mut [f64], fraction: f64) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    scores.sort_unstable_by(|a, b| b.total_cmp(a));
    // 0.3 * 10 is 3.0000000000000004 in binary: a tolerance keeps it from rounding up to 4.
    let keep = ((fraction * scores.len() as f64) - 1e-9).ceil().max(1.0) as usize;
    Some(scores[keep.min(scores.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(min: Option<f64>, top: Option<f64>) -> AlignmentFilters {
        AlignmentFilters {
            min_clip_score: min,
            keep_top_fraction: top,
        }
    }

    #[test]
    fn keep_top_fraction_keeps_that_fraction_of_the_scored() {
        let mut scores: Vec<Option<f64>> = (0..10).map(|i| Some(i as f64 / 10.0)).collect();
        scores.push(None);
        let (drops, summary) = decide_alignment(&scores, &rules(None, Some(0.3)));
        let kept: Vec<usize> = (0..scores.len()).filter(|&i| drops[i].is_none()).collect();
        assert_eq!(kept, vec![7, 8, 9, 10], "the top 3 and the unscored one");
        assert_eq!(summary.quantile_threshold, Some(0.7));
        assert_eq!((summary.scored, summary.dropped), (10, 7));
        assert_eq!(
            drops[0].as_ref().unwrap().detail,
            "CLIP score 0.0000 < 0.7000, the run's keep_top_fraction 0.3 threshold over 10 scored samples"
        );
    }

    #[test]
    fn min_clip_score_and_both_rules() {
        let scores = vec![Some(0.17), Some(0.30), Some(0.35), Some(0.40), None];
        let (drops, summary) = decide_alignment(&scores, &rules(Some(0.28), None));
        assert_eq!(
            drops[0].as_ref().unwrap().detail,
            "CLIP score 0.1700 < min_clip_score 0.28"
        );
        assert!(drops[1..].iter().all(Option::is_none));
        assert_eq!(summary.quantile_threshold, None);
        let (drops, _) = decide_alignment(&scores, &rules(Some(0.28), Some(0.5)));
        let dropped: Vec<bool> = drops.iter().map(Option::is_some).collect();
        assert_eq!(dropped, vec![true, true, false, false, false]);
    }

    #[test]
    fn ties_at_the_threshold_are_kept_and_empty_runs_have_none() {
        let scores = vec![Some(0.5), Some(0.5), Some(0.5), Some(0.1)];
        let (drops, summary) = decide_alignment(&scores, &rules(None, Some(0.25)));
        assert_eq!(summary.quantile_threshold, Some(0.5));
        assert_eq!(drops.iter().flatten().count(), 1);
        let (drops, summary) = decide_alignment(&[None, None], &rules(None, Some(0.3)));
        assert!(drops.iter().all(Option::is_none));
        assert_eq!((summary.scored, summary.quantile_threshold), (0, None));
    }
}
