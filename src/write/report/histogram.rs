//! One histogram per measurement, with the configured thresholds drawn on it: which
//! measurements there are (and which config keys limit them), binning on a linear or
//! `log10(1 + x)` axis, and the kept/dropped count on each side of each threshold.
//!
//! Histograms use every sample (they are never sampled); this file draws nothing.

use serde::Serialize;
use serde_json::Value;

use super::rows::ReportRow;

/// Bins per histogram.
pub const BINS: usize = 40;

/// Which side of a threshold a filter drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Drops values below the threshold (`min_*`).
    DropsBelow,
    /// Drops values above the threshold (`max_*`).
    DropsAbove,
}

/// A config key that limits a measurement, and the value that turns it off.
pub struct ThresholdKey {
    /// The key, as the config and the manifest's resolved `config` spell it.
    pub key: &'static str,
    pub side: Side,
    /// The value that means "off" (`None`: every number is a limit).
    pub off: Option<f64>,
}

/// A measurement that gets a histogram.
pub struct Metric {
    pub id: &'static str,
    pub label: &'static str,
    /// Only samples of this media kind (`None`: any sample with the value).
    pub media_kind: Option<&'static str>,
    pub value: fn(&ReportRow) -> Option<f64>,
    /// Heavy-tailed values are binned on `log10(1 + x)`.
    pub log: bool,
    pub thresholds: &'static [ThresholdKey],
}

const fn min(key: &'static str, off: Option<f64>) -> ThresholdKey {
    ThresholdKey {
        key,
        side: Side::DropsBelow,
        off,
    }
}
const fn max(key: &'static str, off: Option<f64>) -> ThresholdKey {
    ThresholdKey {
        key,
        side: Side::DropsAbove,
        off,
    }
}

fn short_side(r: &ReportRow) -> Option<f64> {
    Some(f64::from(r.width?.min(r.height?)))
}
fn aspect_ratio(r: &ReportRow) -> Option<f64> {
    let (w, h) = (f64::from(r.width?), f64::from(r.height?));
    (w > 0.0 && h > 0.0).then(|| w.max(h) / w.min(h))
}

/// Every measurement with a histogram, in the order the report shows them.
pub const METRICS: &[Metric] = &[
    Metric {
        id: "image_sharpness",
        label: "Image sharpness (Laplacian variance)",
        media_kind: Some("image"),
        value: |r| r.sharpness,
        log: true,
        thresholds: &[min("filters.image.min_sharpness", Some(0.0))],
    },
    Metric {
        id: "image_brightness",
        label: "Image brightness (mean luminance, 0-255)",
        media_kind: Some("image"),
        value: |r| r.brightness,
        log: false,
        thresholds: &[
            min("filters.image.min_brightness", Some(0.0)),
            max("filters.image.max_brightness", Some(255.0)),
        ],
    },
    Metric {
        id: "image_short_side",
        label: "Image shorter side (pixels)",
        media_kind: Some("image"),
        value: short_side,
        log: true,
        thresholds: &[min("filters.image.min_side", None)],
    },
    Metric {
        id: "image_aspect_ratio",
        label: "Image aspect ratio (long / short side)",
        media_kind: Some("image"),
        value: aspect_ratio,
        log: false,
        thresholds: &[max("filters.image.max_aspect_ratio", None)],
    },
    Metric {
        id: "file_size",
        label: "File size (bytes)",
        media_kind: None,
        value: |r| (r.size_bytes > 0).then_some(r.size_bytes as f64),
        log: true,
        thresholds: &[],
    },
    Metric {
        id: "caption_words",
        label: "Caption length (words)",
        media_kind: None,
        value: |r| r.caption_words.map(f64::from),
        log: true,
        thresholds: &[min("filters.caption.min_words", Some(0.0))],
    },
    Metric {
        id: "clip_score",
        label: "CLIP score (image-caption cosine)",
        media_kind: None,
        value: |r| r.clip_score,
        log: false,
        thresholds: &[
            min("filters.alignment.min_clip_score", None),
            min(KEEP_TOP_FRACTION_THRESHOLD, None),
        ],
    },
    Metric {
        id: "video_duration",
        label: "Video duration (seconds)",
        media_kind: Some("video"),
        value: |r| r.duration_seconds,
        log: true,
        thresholds: &[
            min("filters.video.min_duration", Some(0.0)),
            max("filters.video.max_duration", Some(0.0)),
        ],
    },
    Metric {
        id: "video_sharpness",
        label: "Video sharpness (mean of sampled frames)",
        media_kind: Some("video"),
        value: |r| r.sharpness,
        log: true,
        thresholds: &[min("filters.video.min_sharpness", Some(0.0))],
    },
    Metric {
        id: "video_motion",
        label: "Video motion score (0-255)",
        media_kind: Some("video"),
        value: |r| r.motion_score,
        log: false,
        thresholds: &[min("filters.video.min_motion", Some(0.0))],
    },
    Metric {
        id: "video_scene_cuts",
        label: "Video scene cuts per minute",
        media_kind: Some("video"),
        value: |r| r.scene_cuts_per_minute,
        log: false,
        thresholds: &[],
    },
    Metric {
        id: "audio_duration",
        label: "Audio duration (seconds)",
        media_kind: Some("audio"),
        value: |r| r.duration_seconds,
        log: true,
        thresholds: &[
            min("filters.audio.min_duration", Some(0.0)),
            max("filters.audio.max_duration", Some(0.0)),
        ],
    },
    Metric {
        id: "audio_sample_rate",
        label: "Audio sample rate (Hz)",
        media_kind: None,
        value: |r| r.audio_sample_rate.map(f64::from),
        log: false,
        thresholds: &[min("filters.audio.min_sample_rate", Some(0.0))],
    },
    Metric {
        id: "audio_rms",
        label: "Audio loudness (RMS, dBFS)",
        media_kind: None,
        value: |r| r.audio_rms_dbfs,
        log: false,
        thresholds: &[],
    },
    Metric {
        id: "audio_silence",
        label: "Audio silent fraction",
        media_kind: None,
        value: |r| r.audio_silence_fraction,
        log: false,
        thresholds: &[max("filters.audio.max_silence_fraction", Some(1.0))],
    },
    Metric {
        id: "audio_clipped",
        label: "Audio clipped fraction",
        media_kind: None,
        value: |r| r.audio_clipped_fraction,
        log: false,
        thresholds: &[max("filters.audio.max_clipped_fraction", Some(1.0))],
    },
    Metric {
        id: "audio_snr",
        label: "Audio signal-to-noise ratio (dB)",
        media_kind: None,
        value: |r| r.audio_snr_db,
        log: false,
        thresholds: &[min("filters.audio.min_snr_db", None)],
    },
];

/// Not a config key: the run-wide CLIP-score quantile `keep_top_fraction` resolved to, which
/// the manifest records under `alignment.quantile_threshold`.
pub const KEEP_TOP_FRACTION_THRESHOLD: &str = "alignment.quantile_threshold";

impl Metric {
    /// The value this metric has for a row, if the row is of its kind and has one.
    pub fn of(&self, row: &ReportRow) -> Option<f64> {
        if let Some(kind) = self.media_kind {
            if row.media_kind.as_deref() != Some(kind) {
                return None;
            }
        }
        (self.value)(row).filter(|v| v.is_finite())
    }

    /// The thresholds in force, read from the run manifest (its resolved `config`, and the
    /// resolved quantile under `alignment`).
    pub fn thresholds(&self, manifest: &Value) -> Vec<(&'static str, Side, f64)> {
        self.thresholds
            .iter()
            .filter_map(|t| {
                let value = if t.key == KEEP_TOP_FRACTION_THRESHOLD {
                    manifest.pointer("/alignment/quantile_threshold")
                } else {
                    resolved_threshold(manifest, t.key)
                }?;
                let value = value.as_f64().filter(|v| v.is_finite())?;
                (t.off != Some(value)).then_some((t.key, t.side, value))
            })
            .collect()
    }
}

/// A config value from the manifest: the number a percentile resolved to when the manifest
/// records one (`thresholds.<key>.value`), else the resolved config's own value.
fn resolved_threshold<'a>(manifest: &'a Value, key: &str) -> Option<&'a Value> {
    if let Some(resolved) = manifest
        .get("thresholds")
        .and_then(|t| t.get(key))
        .and_then(|t| t.get("value"))
    {
        return Some(resolved);
    }
    let pointer = format!("/config/{}", key.replace('.', "/"));
    manifest.pointer(&pointer)
}

/// One bar: `[lo, hi)` in the measurement's own units.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub kept: u64,
    pub dropped: u64,
}

/// Samples on one side of a threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SideCount {
    pub samples: u64,
    pub kept: u64,
    pub dropped: u64,
}

/// A threshold and how the samples fall around it: `below` is `value < threshold`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdShare {
    pub key: String,
    pub value: f64,
    pub side: Side,
    pub below: SideCount,
    pub above: SideCount,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    pub id: String,
    pub label: String,
    /// `linear` or `log10(1+x)`: how bins are spaced.
    pub scale: &'static str,
    pub samples: u64,
    pub min: f64,
    pub max: f64,
    pub bins: Vec<Bin>,
    pub thresholds: Vec<ThresholdShare>,
}

/// The values of one metric over the run: (value, kept).
#[derive(Debug, Default)]
pub struct Values(pub Vec<(f64, bool)>);

/// Bins `values` (every one of them) and counts each side of each threshold.
pub fn histogram(metric: &Metric, values: &Values, manifest: &Value) -> Option<Histogram> {
    let values = &values.0;
    if values.is_empty() {
        return None;
    }
    let forward = |v: f64| {
        if metric.log {
            v.max(0.0).ln_1p() / std::f64::consts::LN_10
        } else {
            v
        }
    };
    let back = |t: f64| {
        if metric.log {
            (t * std::f64::consts::LN_10).exp_m1()
        } else {
            t
        }
    };
    let thresholds = metric.thresholds(manifest);
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(v, _)| {
            (lo.min(v), hi.max(v))
        });
    let (min, max) = (lo, hi);
    for &(_, _, t) in &thresholds {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    let (mut t_lo, mut t_hi) = (forward(lo), forward(hi));
    if t_hi - t_lo < 1e-9 {
        t_lo -= 0.5;
        t_hi += 0.5;
    }
    let width = (t_hi - t_lo) / BINS as f64;
    let mut bins: Vec<Bin> = (0..BINS)
        .map(|i| Bin {
            lo: back(t_lo + width * i as f64),
            hi: back(t_lo + width * (i + 1) as f64),
            kept: 0,
            dropped: 0,
        })
        .collect();
    let mut shares: Vec<ThresholdShare> = thresholds
        .iter()
        .map(|&(key, side, value)| ThresholdShare {
            key: key.to_string(),
            value,
            side,
            below: SideCount::default(),
            above: SideCount::default(),
        })
        .collect();
    for &(v, kept) in values {
        let index = (((forward(v) - t_lo) / width) as usize).min(BINS - 1);
        let bin = &mut bins[index];
        if kept {
            bin.kept += 1;
        } else {
            bin.dropped += 1;
        }
        for share in &mut shares {
            let side = if v < share.value {
                &mut share.below
            } else {
                &mut share.above
            };
            side.samples += 1;
            if kept {
                side.kept += 1;
            } else {
                side.dropped += 1;
            }
        }
    }
    Some(Histogram {
        id: metric.id.to_string(),
        label: metric.label.to_string(),
        scale: if metric.log { "log10(1+x)" } else { "linear" },
        samples: values.len() as u64,
        min,
        max,
        bins,
        thresholds: shares,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metric(id: &str) -> &'static Metric {
        METRICS.iter().find(|m| m.id == id).unwrap()
    }

    #[test]
    fn bins_and_sides_count_every_value() {
        let manifest = json!({"config": {"filters": {"image": {
            "min_brightness": 50.0, "max_brightness": 255.0}}}});
        let values = Values(vec![
            (10.0, false),
            (40.0, false),
            (60.0, true),
            (200.0, true),
            (250.0, false),
        ]);
        let h = histogram(metric("image_brightness"), &values, &manifest).unwrap();
        assert_eq!(h.samples, 5);
        assert_eq!((h.min, h.max), (10.0, 250.0));
        assert_eq!(h.bins.len(), BINS);
        assert_eq!(h.bins.iter().map(|b| b.kept + b.dropped).sum::<u64>(), 5);
        assert_eq!(h.bins[0].dropped, 1);
        assert_eq!(h.bins[BINS - 1].dropped, 1);
        // max_brightness = 255 is the default: no limit, so not drawn.
        assert_eq!(h.thresholds.len(), 1);
        let t = &h.thresholds[0];
        assert_eq!(
            (t.key.as_str(), t.value),
            ("filters.image.min_brightness", 50.0)
        );
        assert_eq!((t.below.samples, t.below.dropped, t.below.kept), (2, 2, 0));
        assert_eq!((t.above.samples, t.above.kept, t.above.dropped), (3, 2, 1));
    }

    #[test]
    fn log_bins_cover_the_range_and_the_threshold() {
        let manifest = json!({"config": {"filters": {"image": {"min_side": 64}}}});
        let values = Values(vec![(100.0, true), (1000.0, true), (10000.0, true)]);
        let h = histogram(metric("image_short_side"), &values, &manifest).unwrap();
        assert_eq!(h.scale, "log10(1+x)");
        assert!((h.bins[0].lo - 64.0).abs() < 1e-6, "{}", h.bins[0].lo);
        assert!((h.bins[BINS - 1].hi - 10000.0).abs() < 1e-6);
        assert_eq!(h.thresholds[0].below.samples, 0);
        assert_eq!(h.thresholds[0].above.samples, 3);
    }

    #[test]
    fn percentile_thresholds_come_from_the_manifest_s_resolved_values() {
        let manifest = json!({
            "config": {"filters": {"image": {"min_sharpness": "p10"}}},
            "thresholds": {"filters.image.min_sharpness": {"percentile": 10.0, "value": 12.5}},
            "alignment": {"quantile_threshold": 0.21},
        });
        let t = metric("image_sharpness").thresholds(&manifest);
        assert_eq!(
            t,
            vec![("filters.image.min_sharpness", Side::DropsBelow, 12.5)]
        );
        let t = metric("clip_score").thresholds(&manifest);
        assert_eq!(
            t,
            vec![(KEEP_TOP_FRACTION_THRESHOLD, Side::DropsBelow, 0.21)]
        );
        assert!(histogram(metric("clip_score"), &Values::default(), &manifest).is_none());
    }

    #[test]
    fn metrics_take_only_their_media_kind() {
        let row = ReportRow {
            media_kind: Some("video".into()),
            sharpness: Some(5.0),
            ..ReportRow::default()
        };
        assert_eq!(metric("image_sharpness").of(&row), None);
        assert_eq!(metric("video_sharpness").of(&row), Some(5.0));
    }
}
