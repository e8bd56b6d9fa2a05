//! Writing the results into a new version of the output (`write::version`): WebDataset shards
//! of the kept samples (original bytes, caption, a `.json` with measurements and provenance,
//! keyframes), the Parquet ledger of every sample, the CLIP embeddings when a model ran, the
//! run manifest and report, then the commit (`current.json`). Every file appears complete or
//! not at all, and no file of an earlier version is rewritten or removed here (`write::prune`).
//!
//! Kept samples are read back from staging: this stage fetches and decodes nothing.

pub mod diff;
pub mod embeddings;
pub mod forget;
pub mod history;
pub mod index;
pub mod keyframes;
pub mod layout;
pub mod ledger;
pub mod ledger_read;
pub mod manifest;
pub mod ownership;
pub mod prune;
pub mod report;
pub mod shards;
pub mod staging;
pub mod verify;
pub mod version;

use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

use crate::record::Record;
use crate::store::Location;
use manifest::OutputFile;
use shards::{relative_path, ShardInfo};

/// Ledger rows per Parquet file.
const LEDGER_ROWS_PER_FILE: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {uri}: {message}")]
    Store { uri: String, message: String },
    #[error("cannot read staged sample {id}: {source}")]
    Staging { id: String, source: std::io::Error },
    #[error("cannot build the ledger: {0}")]
    Ledger(#[from] parquet::errors::ParquetError),
    #[error("cannot build the embeddings file: {0}")]
    Embeddings(parquet::errors::ParquetError),
    #[error(
        "{uri} is not empty and is not an mmcurate output (no current.json, versions/, state/ \
         or lock): it holds {found}. Choose another output path, or empty this one first"
    )]
    Foreign { uri: String, found: String },
    /// The output's lock is held, or left by a run this host cannot check.
    #[error("{0}")]
    Locked(String),
    #[error("{uri}: {message}")]
    Version { uri: String, message: String },
}

impl WriteError {
    /// Whether the output was refused before any work (not ours, or locked): a set-up error.
    pub fn is_refusal(&self) -> bool {
        matches!(self, WriteError::Foreign { .. } | WriteError::Locked(_))
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub shards: Vec<ShardInfo>,
    pub ledger: Vec<OutputFile>,
}

/// Writes the ledger of `records` (in id order) as `ledger/ledger-NNNNNN.parquet` files.
pub fn write_ledger(
    output: &Location,
    records: &[Record],
    runtime: &tokio::runtime::Handle,
) -> Result<Vec<OutputFile>, WriteError> {
    write_ledger_from(output, records, 0, runtime)
}

/// [`write_ledger`], numbering the files from `first` (an incremental version lists the
/// earlier versions' ledger files beside its own).
pub fn write_ledger_from(
    output: &Location,
    records: &[Record],
    first: usize,
    runtime: &tokio::runtime::Handle,
) -> Result<Vec<OutputFile>, WriteError> {
    let mut files = Vec::new();
    for (index, chunk) in records.chunks(LEDGER_ROWS_PER_FILE).enumerate() {
        let index = first + index;
        let name = format!("ledger/ledger-{index:06}.parquet");
        let bytes = ledger::to_parquet(chunk)?;
        let info = OutputFile::of(name.clone(), chunk.len() as u64, &bytes);
        runtime.block_on(put(output, &name, bytes))?;
        files.push(info);
    }
    Ok(files)
}

/// Ends a calibration (`mmcurate calibrate`): its ledger is written; writes `manifest.json`
/// with the threshold sweeps under `calibration`, then the report that draws them. No shards,
/// no `_SUCCESS`: a calibration is not a run's output.
pub fn finish_calibration(
    output: &Location,
    manifest: &manifest::RunManifest,
    calibration: &manifest::Calibration,
    records: &[Record],
    runtime: &tokio::runtime::Handle,
) -> Result<(), WriteError> {
    let mut value = serde_json::to_value(manifest).expect("the manifest serialises");
    value["calibration"] = serde_json::to_value(calibration).expect("the sweeps serialise");
    let bytes = serde_json::to_vec_pretty(&value).expect("the manifest serialises");
    runtime.block_on(put(output, "manifest.json", bytes))?;
    report::write_for_run(records, &value, output, runtime);
    Ok(())
}

/// Ends a run's output: writes `manifest.json` into the version's folder, then the run report
/// (`report.html` and `report.json`; a report that cannot be written is a warning), then
/// commits the version (`current.json`, last), then applies `[output] keep_versions`.
pub fn finish_run(
    version: &version::OutputVersion,
    manifest: &manifest::RunManifest,
    records: &[Record],
    runtime: &tokio::runtime::Handle,
) -> Result<version::CurrentPointer, WriteError> {
    let bytes = serde_json::to_vec_pretty(manifest).expect("the manifest serialises");
    runtime.block_on(put(&version.dir, "manifest.json", bytes))?;
    report::write_for_run(records, manifest, &version.dir, runtime);
    let pointer = version.commit(manifest, runtime)?;
    let keep = version.keep_versions();
    if keep > 0 {
        let pruned = runtime.block_on(prune::prune_locked(&version.root, keep))?;
        for line in pruned.lines() {
            tracing::info!("keep_versions = {keep}: {line}");
        }
    }
    Ok(pointer)
}

/// One record batch as a Snappy-compressed Parquet file (the ledger's and the embeddings').
fn parquet_file(
    batch: &arrow_array::RecordBatch,
) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(properties))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

/// Writes one object atomically (a single PUT on S3, write-then-rename locally).
pub async fn put(output: &Location, relative: &str, bytes: Vec<u8>) -> Result<(), WriteError> {
    let path = relative_path(&output.path, relative);
    output
        .store
        .put(&path, PutPayload::from(bytes))
        .await
        .map(|_| ())
        .map_err(|e| WriteError::Store {
            uri: output.uri_of(&path),
            message: e.to_string(),
        })
}

/// The key itself if unused, else `key_<8 hex of the id's sha256>`: unique and stable.
pub(crate) fn unique_key(key: &str, id: &str, used: &mut HashSet<String>) -> String {
    let candidate = if used.contains(key) {
        renamed_key(key, id, |k| used.contains(k))
    } else {
        key.to_string()
    };
    used.insert(candidate.clone());
    candidate
}

/// The new key of a sample whose key is `taken`: `key_<8 hex of the id's sha256>`, numbered
/// on from 2 while that is taken too.
pub(crate) fn renamed_key(key: &str, id: &str, taken: impl Fn(&str) -> bool) -> String {
    let digest = hex::encode(Sha256::digest(id.as_bytes()));
    let mut candidate = format!("{key}_{}", &digest[..8]);
    let mut n = 2;
    while taken(&candidate) {
        candidate = format!("{key}_{}_{n}", &digest[..8]);
        n += 1;
    }
    candidate
}

/// The sample's `.json`: the source's own JSON object (sidecar, shard member or manifest
/// columns) with mmcurate's record added under `"mmcurate"`, in the ledger's column names
/// ([`ledger::json_object`]) plus the tool's `version`. JSON that is not an object is
/// kept as a string under `"source_json"`. Keys whose value is null are left out (see
/// `drop_null_keys`).
pub(crate) fn sample_json(record: &Record, original: Option<&[u8]>) -> Vec<u8> {
    let mut object = match original.map(serde_json::from_slice::<Value>) {
        Some(Ok(Value::Object(map))) => map,
        Some(_) => {
            let mut map = Map::new();
            let text = String::from_utf8_lossy(original.unwrap_or_default()).into_owned();
            map.insert("source_json".to_string(), Value::String(text));
            map
        }
        None => Map::new(),
    };
    let mut mmcurate = ledger::json_object(record);
    mmcurate.insert(
        "version".to_string(),
        Value::String(crate::VERSION.to_string()),
    );
    object.insert("mmcurate".to_string(), Value::Object(mmcurate));
    let mut json = Value::Object(object);
    drop_null_keys(&mut json);
    serde_json::to_vec(&json).expect("a JSON value serialises")
}

/// Removes the keys whose value is null from every object in `value`. Absent and null mean the
/// same to a JSON reader, but Hugging Face `datasets` types each `.json` field from the first
/// samples it reads: a field null in all of them is typed `null`, and a later sample with a
/// value then fails the whole load (huggingface/datasets#7549), whereas a field it has not seen
/// is only left out of its columns. Every field stays in the ledger.
fn drop_null_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_null_keys);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Measurements, MEASURE_VERSION};
    use crate::record::Decision;
    use crate::source::Origin;

    #[test]
    fn keys_are_made_unique_stably() {
        let mut used = HashSet::new();
        assert_eq!(unique_key("cat", "0:a/cat.jpg", &mut used), "cat");
        let second = unique_key("cat", "0:b/cat.jpg", &mut used);
        assert!(second.starts_with("cat_") && second.len() == 12, "{second}");
        assert_eq!(
            unique_key(
                "cat",
                "0:b/cat.jpg",
                &mut HashSet::from(["cat".to_string()])
            ),
            second
        );
    }

    #[test]
    fn sample_json_keeps_the_source_fields() {
        let record = Record {
            id: "0:a.jpg".into(),
            key: "a".into(),
            name: "a.jpg".into(),
            origin: Origin {
                uri: "file:///x/a.jpg".into(),
                ..Origin::default()
            },
            measurements: Measurements {
                phash: Some(0xabc),
                ..Measurements::default()
            },
            decision: Decision::Keep,
            staged: Vec::new(),
            shard: None,
        };
        let json: Value =
            serde_json::from_slice(&sample_json(&record, Some(br#"{"license": "cc0"}"#))).unwrap();
        assert_eq!(json["license"], "cc0");
        assert_eq!(json["mmcurate"]["id"], "0:a.jpg");
        assert_eq!(json["mmcurate"]["source_uri"], "file:///x/a.jpg");
        assert_eq!(json["mmcurate"]["measure_version"], MEASURE_VERSION);
        assert_eq!(
            json["mmcurate"]["measurements"]["phash"],
            "0000000000000abc"
        );
        let json: Value = serde_json::from_slice(&sample_json(&record, Some(b"[1,"))).unwrap();
        assert_eq!(json["source_json"], "[1,");
    }

    #[test]
    fn sample_json_leaves_out_null_fields() {
        let record = Record {
            id: "0:a.jpg".into(),
            key: "a".into(),
            name: "a.jpg".into(),
            origin: Origin::default(),
            measurements: Measurements::default(),
            decision: Decision::Keep,
            staged: Vec::new(),
            shard: None,
        };
        let source = br#"{"license": null, "score": 0.5, "tags": [{"a": null, "b": 1}]}"#;
        let json: Value = serde_json::from_slice(&sample_json(&record, Some(source))).unwrap();
        let object = json.as_object().unwrap();
        assert!(!object.contains_key("license"));
        assert_eq!(json["score"], 0.5);
        assert_eq!(json["tags"], serde_json::json!([{"b": 1}]));
        // `sharpness` is null in these measurements: not written; `size_bytes` is 0: written.
        let measurements = json["mmcurate"]["measurements"].as_object().unwrap();
        assert!(!measurements.contains_key("sharpness"));
        assert_eq!(measurements["size_bytes"], 0);
        assert!(!json.to_string().contains("null"), "{json}");
    }
}
