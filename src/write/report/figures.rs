//! The report's figures, gathered in one pass over the rows: the funnel (inputs, drops per
//! stage and reason, kept), a histogram per measurement, and the samples the galleries show
//! (a deterministic sample per drop reason, the duplicate pairs nearest their threshold, the
//! lowest and highest CLIP scores). Serialised as `report.json`.
//!
//! Galleries are bounded (see the `*_SHOWN` constants) so the report's size does not grow
//! with the run; histograms and counts use every row. Nothing here fetches or draws.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

use super::histogram::{histogram, Histogram, Values, METRICS};
use super::rows::{ReportRow, RowSource};
use super::ReportError;
use crate::decide::sweeps::Sweeps;

/// Samples shown per drop reason.
pub const DROPPED_SHOWN: usize = 8;
/// Duplicate pairs shown per kind of duplicate.
pub const PAIRS_SHOWN: usize = 8;
/// Samples shown at each end of the CLIP scores.
pub const CLIP_SHOWN: usize = 8;

/// Stages in the order samples meet them.
const STAGE_ORDER: [&str; 5] = ["source", "decode", "filter", "dedup", "alignment"];

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub run: RunFacts,
    pub funnel: Funnel,
    pub histograms: Vec<Histogram>,
    pub dropped: Vec<ReasonGallery>,
    pub duplicates: Vec<DuplicateGallery>,
    pub clip: ClipGallery,
    pub stages: Vec<StageTime>,
    pub limits: Limits,
    /// Threshold sweeps, in the report of `mmcurate calibrate` (from the manifest's
    /// `calibration.sweeps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweeps: Option<Sweeps>,
}

/// The gallery bounds this report was made with.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub dropped_shown_per_reason: usize,
    pub pairs_shown_per_kind: usize,
    pub clip_shown_per_end: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunFacts {
    pub name: String,
    pub output: String,
    pub started_at: String,
    pub finished_at: String,
    pub device: String,
    pub tool_version: String,
    pub config_sha256: String,
    pub samples: u64,
    pub kept: u64,
    pub dropped: u64,
    /// The stages' seconds added up.
    pub seconds: f64,
    pub samples_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Funnel {
    pub inputs: Vec<FunnelInput>,
    pub samples: u64,
    /// Samples and kept samples by media kind.
    pub by_media_kind: BTreeMap<String, (u64, u64)>,
    pub stages: Vec<FunnelStage>,
    pub kept: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunnelInput {
    pub uri: String,
    pub format: String,
    pub objects: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunnelStage {
    pub stage: String,
    pub dropped: u64,
    /// Samples left after this stage.
    pub remaining: u64,
    /// Drops by reason, most first.
    pub reasons: Vec<(String, u64)>,
}

/// One sample in a gallery. `value` is the number it is shown for (the measurement behind
/// its drop reason, its distance or similarity, or its CLIP score).
#[derive(Debug, Clone, Serialize)]
pub struct Tile {
    pub id: String,
    pub name: String,
    pub media_kind: Option<String>,
    pub kept: bool,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub value: Option<f64>,
    /// Filled in when the media is fetched (captions are not in the ledger).
    pub caption: Option<String>,
    #[serde(skip)]
    pub row: ReportRow,
}

impl Tile {
    fn of(row: &ReportRow, value: Option<f64>) -> Tile {
        Tile {
            id: row.id.clone(),
            name: row.name.clone(),
            media_kind: row.media_kind.clone(),
            kept: row.kept,
            reason: row.drop_reason.clone(),
            detail: row.drop_detail.clone(),
            value,
            caption: None,
            row: row.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReasonGallery {
    pub reason: String,
    pub stage: String,
    pub count: u64,
    pub shown: Vec<Tile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DuplicatePair {
    pub duplicate: Tile,
    /// The sample kept instead (absent if the ledger does not have it).
    pub kept: Option<Tile>,
    pub distance: Option<f64>,
    pub similarity: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DuplicateGallery {
    pub reason: String,
    /// The config key that set the boundary and its value, when there is one.
    pub threshold_key: Option<String>,
    pub threshold: Option<f64>,
    pub count: u64,
    /// Nearest to the threshold first.
    pub pairs: Vec<DuplicatePair>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClipGallery {
    pub scored: u64,
    pub lowest: Vec<Tile>,
    pub highest: Vec<Tile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub stage: String,
    pub seconds: f64,
    pub samples_per_second: f64,
}

/// The `n` rows with the smallest keys, ties broken by id: bounded memory whatever the number
/// of rows offered.
struct Smallest<K> {
    n: usize,
    items: Vec<(K, String, ReportRow)>,
}

impl<K: PartialOrd + Copy> Smallest<K> {
    fn new(n: usize) -> Self {
        Smallest {
            n,
            items: Vec::new(),
        }
    }

    fn offer(&mut self, key: K, row: &ReportRow) {
        if self.items.len() >= self.n * 4 {
            self.shrink();
            // Rows that would be cut at once are not cloned.
            if let Some((last, id, _)) = self.items.last() {
                if key > *last || (key == *last && row.id >= *id) {
                    return;
                }
            }
        }
        self.items.push((key, row.id.clone(), row.clone()));
    }

    fn shrink(&mut self) {
        self.items.sort_by(|a, b| {
            a.0.partial_cmp(&b.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.1.cmp(&b.1))
        });
        self.items.truncate(self.n);
    }

    fn finish(mut self) -> Vec<(K, ReportRow)> {
        self.shrink();
        self.items.into_iter().map(|(k, _, r)| (k, r)).collect()
    }
}

/// A stable pseudo-random rank for a sample: the first 8 bytes of sha256(id).
fn rank(id: &str) -> u64 {
    let digest = Sha256::digest(id.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Which dedup kind a reason is, its measure and the config key of its boundary.
fn duplicate_kind(reason: &str) -> Option<(&'static str, bool)> {
    match reason {
        "exact_duplicate" => Some(("dedup.exact", false)),
        "near_duplicate" => Some(("dedup.phash_max_distance", false)),
        "video_duplicate" => Some(("dedup.video_max_distance", false)),
        "audio_duplicate" => Some(("dedup.audio_max_bit_error_rate", false)),
        "semantic_duplicate" => Some(("dedup.embedding_min_cosine", true)),
        _ => None,
    }
}

/// The measurement behind a drop reason, shown under its tile.
fn reason_value(row: &ReportRow) -> Option<f64> {
    let image = row.media_kind.as_deref() == Some("image");
    match row.drop_reason.as_deref()? {
        "too_blurry" => row.sharpness,
        "too_dark" | "too_bright" => row.brightness,
        "too_small" => Some(f64::from(row.width?.min(row.height?))),
        "too_short" | "too_long" => row.duration_seconds,
        "static_video" => row.motion_score,
        "too_silent" => row.audio_silence_fraction,
        "too_clipped" if !image => row.audio_clipped_fraction,
        "too_noisy" => row.audio_snr_db,
        "low_sample_rate" => row.audio_sample_rate.map(f64::from),
        "low_clip_score" => row.clip_score,
        "caption_too_short" => row.caption_words.map(f64::from),
        _ => row.duplicate_distance.or(row.duplicate_similarity),
    }
}

/// Everything gathered in the first pass.
struct Gathered {
    samples: u64,
    kept: u64,
    by_kind: BTreeMap<String, (u64, u64)>,
    by_stage_reason: BTreeMap<(String, String), u64>,
    values: Vec<Values>,
    dropped: BTreeMap<String, Smallest<u64>>,
    duplicates: BTreeMap<String, Smallest<f64>>,
    clip_low: Smallest<f64>,
    clip_high: Smallest<f64>,
    scored: u64,
}

/// Builds the figures from the rows and the run manifest (as JSON). Walks the rows twice: once
/// for everything, once more for the kept samples the duplicate pairs name.
pub fn gather(rows: &dyn RowSource, manifest: &Value) -> Result<Figures, ReportError> {
    let dedup_threshold = |key: &str| {
        manifest
            .pointer(&format!("/config/{}", key.replace('.', "/")))
            .and_then(Value::as_f64)
    };
    let mut g = Gathered {
        samples: 0,
        kept: 0,
        by_kind: BTreeMap::new(),
        by_stage_reason: BTreeMap::new(),
        values: METRICS.iter().map(|_| Values::default()).collect(),
        dropped: BTreeMap::new(),
        duplicates: BTreeMap::new(),
        clip_low: Smallest::new(CLIP_SHOWN),
        clip_high: Smallest::new(CLIP_SHOWN),
        scored: 0,
    };
    rows.for_each_row(&mut |row| {
        g.samples += 1;
        g.kept += u64::from(row.kept);
        let kind = row.media_kind.clone().unwrap_or_else(|| "unknown".into());
        let entry = g.by_kind.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += u64::from(row.kept);
        for (metric, values) in METRICS.iter().zip(&mut g.values) {
            if let Some(v) = metric.of(&row) {
                values.0.push((v, row.kept));
            }
        }
        if let Some(score) = row.clip_score.filter(|s| s.is_finite()) {
            g.scored += 1;
            g.clip_low.offer(score, &row);
            g.clip_high.offer(-score, &row);
        }
        let (Some(stage), Some(reason)) = (&row.drop_stage, &row.drop_reason) else {
            return;
        };
        *g.by_stage_reason
            .entry((stage.clone(), reason.clone()))
            .or_default() += 1;
        match duplicate_kind(reason) {
            Some((key, similarity)) => {
                // Nearest the boundary first: the largest distance below a maximum, the
                // smallest similarity above a minimum.
                let closeness = if similarity {
                    let s = row.duplicate_similarity.unwrap_or(1.0);
                    s - dedup_threshold(key).unwrap_or(0.0)
                } else {
                    let d = row.duplicate_distance.unwrap_or(0.0);
                    dedup_threshold(key).unwrap_or(0.0) - d
                };
                g.duplicates
                    .entry(reason.clone())
                    .or_insert_with(|| Smallest::new(PAIRS_SHOWN))
                    .offer(closeness, &row);
            }
            None => g
                .dropped
                .entry(reason.clone())
                .or_insert_with(|| Smallest::new(DROPPED_SHOWN))
                .offer(rank(&row.id), &row),
        }
    })?;

    // The kept side of each shown duplicate pair.
    let duplicates: BTreeMap<String, Vec<ReportRow>> = std::mem::take(&mut g.duplicates)
        .into_iter()
        .map(|(reason, picked)| {
            (
                reason,
                picked.finish().into_iter().map(|(_, r)| r).collect(),
            )
        })
        .collect();
    let wanted: HashMap<String, ()> = duplicates
        .values()
        .flatten()
        .filter_map(|r| r.duplicate_of.clone())
        .map(|id| (id, ()))
        .collect();
    let mut partners: HashMap<String, ReportRow> = HashMap::new();
    if !wanted.is_empty() {
        rows.for_each_row(&mut |row| {
            if wanted.contains_key(&row.id) {
                partners.insert(row.id.clone(), row);
            }
        })?;
    }
    Ok(assemble(g, duplicates, &partners, manifest))
}

fn assemble(
    g: Gathered,
    duplicates: BTreeMap<String, Vec<ReportRow>>,
    partners: &HashMap<String, ReportRow>,
    manifest: &Value,
) -> Figures {
    let histograms = METRICS
        .iter()
        .zip(&g.values)
        .filter_map(|(metric, values)| histogram(metric, values, manifest))
        .collect();

    let mut stage_names: Vec<String> = STAGE_ORDER.iter().map(|s| s.to_string()).collect();
    for (stage, _) in g.by_stage_reason.keys() {
        if !stage_names.contains(stage) {
            stage_names.push(stage.clone());
        }
    }
    let mut remaining = g.samples;
    let stages = stage_names
        .iter()
        .map(|stage| {
            let mut reasons: Vec<(String, u64)> = g
                .by_stage_reason
                .iter()
                .filter(|((s, _), _)| s == stage)
                .map(|((_, r), n)| (r.clone(), *n))
                .collect();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let dropped: u64 = reasons.iter().map(|(_, n)| n).sum();
            remaining -= dropped.min(remaining);
            FunnelStage {
                stage: stage.clone(),
                dropped,
                remaining,
                reasons,
            }
        })
        .collect();
    let inputs = manifest["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| FunnelInput {
            uri: i["uri"].as_str().unwrap_or_default().to_string(),
            format: i["format"].as_str().unwrap_or_default().to_string(),
            objects: i["object_count"].as_u64().unwrap_or_default(),
        })
        .collect();

    let stage_of_reason: HashMap<&str, &str> = g
        .by_stage_reason
        .keys()
        .map(|(s, r)| (r.as_str(), s.as_str()))
        .collect();
    let count_of_reason = |reason: &str| -> u64 {
        g.by_stage_reason
            .iter()
            .filter(|((_, r), _)| r == reason)
            .map(|(_, n)| n)
            .sum()
    };
    let dropped = g
        .dropped
        .into_iter()
        .map(|(reason, picked)| ReasonGallery {
            stage: stage_of_reason
                .get(reason.as_str())
                .copied()
                .unwrap_or_default()
                .to_string(),
            count: count_of_reason(&reason),
            shown: picked
                .finish()
                .iter()
                .map(|(_, r)| Tile::of(r, reason_value(r)))
                .collect(),
            reason,
        })
        .collect();
    let duplicates = duplicates
        .into_iter()
        .map(|(reason, rows)| {
            let key = duplicate_kind(&reason).map(|(k, _)| k.to_string());
            let threshold = key.as_deref().and_then(|k| {
                manifest
                    .pointer(&format!("/config/{}", k.replace('.', "/")))
                    .and_then(Value::as_f64)
            });
            DuplicateGallery {
                count: count_of_reason(&reason),
                threshold_key: key,
                threshold,
                pairs: rows
                    .iter()
                    .map(|r| DuplicatePair {
                        duplicate: Tile::of(r, reason_value(r)),
                        kept: r
                            .duplicate_of
                            .as_ref()
                            .and_then(|id| partners.get(id))
                            .map(|p| Tile::of(p, None)),
                        distance: r.duplicate_distance,
                        similarity: r.duplicate_similarity,
                    })
                    .collect(),
                reason,
            }
        })
        .collect();
    let clip = ClipGallery {
        scored: g.scored,
        lowest: g
            .clip_low
            .finish()
            .iter()
            .map(|(s, r)| Tile::of(r, Some(*s)))
            .collect(),
        highest: g
            .clip_high
            .finish()
            .iter()
            .map(|(s, r)| Tile::of(r, Some(-*s)))
            .collect(),
    };

    let stage_seconds: Vec<(String, f64)> = manifest["stage_seconds"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
        .collect();
    let seconds: f64 = stage_seconds.iter().map(|(_, s)| s).sum();
    let order = |s: &str| {
        ["plan", "measure", "embed", "decide", "write"]
            .iter()
            .position(|x| *x == s)
            .unwrap_or(usize::MAX)
    };
    let mut stages_time: Vec<StageTime> = stage_seconds
        .into_iter()
        .map(|(stage, seconds)| StageTime {
            samples_per_second: g.samples as f64 / seconds.max(1e-9),
            stage,
            seconds,
        })
        .collect();
    stages_time.sort_by_key(|s| (order(&s.stage), s.stage.clone()));
    let text = |pointer: &str| {
        manifest
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Figures {
        run: RunFacts {
            name: text("/run/name"),
            output: text("/run/output"),
            started_at: text("/run/started_at"),
            finished_at: text("/run/finished_at"),
            device: text("/run/device"),
            tool_version: text("/tool/version"),
            config_sha256: text("/config_sha256"),
            samples: g.samples,
            kept: g.kept,
            dropped: g.samples - g.kept,
            seconds,
            samples_per_second: g.samples as f64 / seconds.max(1e-9),
        },
        funnel: Funnel {
            inputs,
            samples: g.samples,
            by_media_kind: g.by_kind,
            stages,
            kept: g.kept,
        },
        histograms,
        dropped,
        duplicates,
        clip,
        stages: stages_time,
        limits: Limits {
            dropped_shown_per_reason: DROPPED_SHOWN,
            pairs_shown_per_kind: PAIRS_SHOWN,
            clip_shown_per_end: CLIP_SHOWN,
        },
        sweeps: manifest
            .pointer("/calibration/sweeps")
            .and_then(|v| serde_json::from_value(v.clone()).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: &str, kept: bool) -> ReportRow {
        ReportRow {
            id: id.into(),
            name: id.into(),
            media_kind: Some("image".into()),
            kept,
            ..ReportRow::default()
        }
    }

    fn dropped(id: &str, stage: &str, reason: &str) -> ReportRow {
        ReportRow {
            drop_stage: Some(stage.into()),
            drop_reason: Some(reason.into()),
            ..row(id, false)
        }
    }

    #[test]
    fn funnel_galleries_and_pairs_from_rows() {
        let mut rows = vec![row("0:keep", true), row("0:a", true)];
        for i in 0..20 {
            let mut r = dropped(&format!("0:blur{i:02}"), "filter", "too_blurry");
            r.sharpness = Some(i as f64);
            rows.push(r);
        }
        for (i, d) in [1.0, 4.0, 2.0].iter().enumerate() {
            let mut r = dropped(&format!("0:dup{i}"), "dedup", "near_duplicate");
            r.duplicate_of = Some("0:keep".into());
            r.duplicate_distance = Some(*d);
            rows.push(r);
        }
        let mut low = row("0:scored", true);
        low.clip_score = Some(0.1);
        rows.push(low);
        let manifest = json!({
            "config": {"dedup": {"phash_max_distance": 4}},
            "stage_seconds": {"measure": 2.0, "plan": 0.5},
            "inputs": [{"uri": "file:///x", "format": "files", "object_count": 26}],
        });
        let f = gather(&rows, &manifest).unwrap();
        assert_eq!((f.funnel.samples, f.funnel.kept), (26, 3));
        let filter = f
            .funnel
            .stages
            .iter()
            .find(|s| s.stage == "filter")
            .unwrap();
        assert_eq!((filter.dropped, filter.remaining), (20, 6));
        let dedup = f.funnel.stages.iter().find(|s| s.stage == "dedup").unwrap();
        assert_eq!((dedup.dropped, dedup.remaining), (3, 3));
        assert_eq!(f.funnel.inputs[0].objects, 26);

        assert_eq!(f.dropped.len(), 1);
        let blurry = &f.dropped[0];
        assert_eq!((blurry.reason.as_str(), blurry.count), ("too_blurry", 20));
        assert_eq!(blurry.shown.len(), DROPPED_SHOWN);
        // The same rows are picked whatever their order.
        let mut reversed = rows.clone();
        reversed.reverse();
        let again = gather(&reversed, &manifest).unwrap();
        let ids = |f: &Figures| {
            f.dropped[0]
                .shown
                .iter()
                .map(|t| t.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&f), ids(&again));

        let pairs = &f.duplicates[0];
        assert_eq!(pairs.threshold, Some(4.0));
        let distances: Vec<f64> = pairs.pairs.iter().filter_map(|p| p.distance).collect();
        assert_eq!(distances, vec![4.0, 2.0, 1.0]);
        assert_eq!(pairs.pairs[0].kept.as_ref().unwrap().id, "0:keep");

        assert_eq!(f.clip.scored, 1);
        assert_eq!(f.clip.lowest[0].value, Some(0.1));
        assert_eq!(f.clip.highest[0].value, Some(0.1));
        assert_eq!(f.stages[0].stage, "plan");
        assert_eq!(f.run.seconds, 2.5);
        assert!(f.histograms.iter().any(|h| h.id == "image_sharpness"));
    }
}
