//! Hugging Face `datasets` reads the shards: each shard series loads with
//! `load_dataset("webdataset", data_files=…)` (tests/python/read_datasets.py) and every kept
//! sample comes back exactly once, with the parts of its series, its original bytes, its caption
//! and a `.json` whose measurements equal its ledger row. The video and audio run's check is in
//! av_run.rs (it reuses that test's output).

use crate::common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Ledger columns that the `.json`'s `mmcurate.measurements` carries under the same name.
const SHARED_FIELDS: [&str; 19] = [
    "size_bytes",
    "sha256",
    "format",
    "width",
    "height",
    "sharpness",
    "brightness",
    "clipped_fraction",
    "phash",
    "dhash",
    "caption_chars",
    "caption_words",
    "caption_tokens",
    "caption_truncated",
    "clip_score",
    "clip_note",
    "media_kind",
    "container",
    "duration_seconds",
];

/// Loads `output`'s shards with `datasets`, series by series, and holds every sample to the
/// ledger. Returns the reader's report (series, columns, samples).
pub fn assert_datasets_reads_every_kept_sample(output: &Path) -> Value {
    let cache = tempfile::tempdir().unwrap();
    let report = python_json(
        "read_datasets.py",
        &[output.to_str().unwrap(), cache.path().to_str().unwrap()],
    );
    let rows = ledger_rows(output);
    let kept: BTreeMap<&str, &Value> = rows
        .iter()
        .filter(|r| r["status"] == "kept")
        .map(|r| (r["key"].as_str().unwrap(), r))
        .collect();
    let samples = report["samples"].as_array().unwrap();
    assert_eq!(samples.len(), kept.len(), "one sample per kept ledger row");
    let mut seen = BTreeSet::new();
    let mut parts_of_series: BTreeMap<&str, &Value> = BTreeMap::new();
    for sample in samples {
        let key = sample["key"].as_str().unwrap();
        assert!(seen.insert(key), "{key} read twice");
        let row = kept
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not a kept sample of the ledger"));
        let series = sample["series"].as_str().unwrap();
        let shard = row["shard"].as_str().unwrap();
        assert!(
            shard.starts_with(&format!("shards/{series}-")),
            "{key}: {shard}"
        );
        assert!(
            sample["url"].as_str().unwrap().ends_with(shard),
            "{key}: {} is not {shard}",
            sample["url"]
        );
        // Every sample of a series has the same parts, `datasets` sees them all.
        let parts = parts_of_series.entry(series).or_insert(&sample["parts"]);
        assert_eq!(*parts, &sample["parts"], "{key}: not its series' parts");
        // The original bytes.
        assert_eq!(sample["media"], row["format"], "{key}");
        assert_eq!(sample["sha256"], row["sha256"], "{key}: bytes changed");
        assert_eq!(sample["bytes"], row["size_bytes"], "{key}");
        // The caption: the ledger counts its characters (trimmed); none is an empty .txt.
        let txt = sample["txt"].as_str().unwrap_or_default().trim();
        match row["caption_chars"].as_u64() {
            Some(chars) => assert_eq!(txt.chars().count() as u64, chars, "{key}: {txt:?}"),
            None => assert_eq!(txt, "", "{key}: no caption in the ledger"),
        }
        // The .json, as `datasets` typed it.
        let record = &sample["json"]["mmcurate"];
        for field in ["id", "key", "name"] {
            assert_eq!(record[field], row[field], "{key}: {field}");
        }
        for field in SHARED_FIELDS {
            assert_eq!(
                record["measurements"][field], row[field],
                "{key}: measurements.{field}"
            );
        }
    }
    report
}

/// The quickstart: JPEGs and PNGs, captioned and not, one with a `.json` sidecar whose own
/// fields go into the sample's `.json`.
#[test]
fn datasets_loads_every_series_of_a_mixed_format_run() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    ok(&mmcurate(&[
        "run",
        "configs/quickstart.toml",
        "--set",
        &format!("run.output={}", output.display()),
    ]));
    let report = assert_datasets_reads_every_kept_sample(&output);
    let series = &report["series"];
    assert_eq!(
        series.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["jpg", "png"]
    );
    assert_eq!(
        (
            series["jpg"]["rows"].as_u64(),
            series["png"]["rows"].as_u64()
        ),
        (Some(8), Some(2))
    );
    // `datasets` types the media as images, the caption as text.
    let jpg = &series["jpg"]["columns"];
    assert!(jpg["jpg"].as_str().unwrap().starts_with("Image("), "{jpg}");
    assert!(jpg["txt"].as_str().unwrap().contains("string"), "{jpg}");
    // The sidecar's own fields, and the uncaptioned image's empty caption.
    let sample = |key: &str| {
        report["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap()
            .clone()
    };
    let sidecar: Value = serde_json::from_slice(&read(
        root().join("examples/quickstart/images/matplotlib_grace_hopper.json"),
    ))
    .unwrap();
    let hopper = sample("matplotlib_grace_hopper");
    assert_eq!(hopper["json"]["license"], sidecar["license"]);
    assert_eq!(hopper["txt"], sidecar["caption"]);
    assert_eq!(sample("opencv_aero1")["txt"], "");
    assert_eq!(report["notes"].as_array().unwrap().len(), 0);
}
