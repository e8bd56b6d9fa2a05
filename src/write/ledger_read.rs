//! Reading a version's ledger back: the few columns that say what happened to each sample
//! (id, content sha256, status, drop reason and detail, shard), for the diff between versions,
//! `mmcurate verify` and `mmcurate inspect --history`. Reading only; the ledger's schema is
//! `write::ledger`'s.

use arrow_array::{Array, StringArray};
use object_store::ObjectStoreExt;

use super::ledger::{DROP_REASON, STATUS};
use crate::store::Location;

/// What the ledger says of one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub id: String,
    /// The sample's key in its shard.
    pub key: Option<String>,
    pub sha256: Option<String>,
    /// `kept`, `dropped` (or `forgotten`, for a sample removed on request).
    pub status: String,
    pub drop_reason: Option<String>,
    pub drop_detail: Option<String>,
    /// The shard that holds a kept sample, relative to the version's folder.
    pub shard: Option<String>,
}

impl LedgerRow {
    pub fn is_kept(&self) -> bool {
        self.status == "kept"
    }
}

/// The rows of one ledger file's bytes.
pub fn ledger_rows(bytes: bytes::Bytes) -> Result<Vec<LedgerRow>, String> {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| format!("not a Parquet file: {e}"))?;
    let reader = builder.build().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format!("unreadable rows: {e}"))?;
        let column = |name: &str| -> Result<Option<StringArray>, String> {
            let Some(array) = batch.column_by_name(name) else {
                return Ok(None);
            };
            array
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .map(Some)
                .ok_or_else(|| format!("column {name} is not a string column"))
        };
        let required = |name: &str| -> Result<StringArray, String> {
            column(name)?.ok_or_else(|| format!("no {name} column"))
        };
        let (id, status) = (required("id")?, required(STATUS)?);
        let key = column("key")?;
        let (sha256, reason, detail, shard) = (
            column("sha256")?,
            column(DROP_REASON)?,
            column("drop_detail")?,
            column("shard")?,
        );
        let value = |array: &Option<StringArray>, i: usize| {
            array
                .as_ref()
                .filter(|a| !a.is_null(i))
                .map(|a| a.value(i).to_string())
        };
        for i in 0..batch.num_rows() {
            rows.push(LedgerRow {
                id: id.value(i).to_string(),
                key: value(&key, i),
                sha256: value(&sha256, i),
                status: status.value(i).to_string(),
                drop_reason: value(&reason, i),
                drop_detail: value(&detail, i),
                shard: value(&shard, i),
            });
        }
    }
    Ok(rows)
}

/// Reads an object's bytes.
pub async fn read_object(at: &Location) -> Result<bytes::Bytes, String> {
    match at.store.get(&at.path).await {
        Ok(result) => result.bytes().await.map_err(|e| e.to_string()),
        Err(object_store::Error::NotFound { .. }) => Err("missing".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Every row of a version's ledger: `files` relative to `dir` (the manifest's `ledger` names).
pub async fn version_ledger(dir: &Location, files: &[String]) -> Result<Vec<LedgerRow>, String> {
    let mut rows = Vec::new();
    for name in files {
        let at = dir.child(name);
        let bytes = read_object(&at)
            .await
            .map_err(|e| format!("{}: {e}", at.uri()))?;
        rows.extend(ledger_rows(bytes).map_err(|e| format!("{}: {e}", at.uri()))?);
    }
    Ok(rows)
}

/// The ledger file names a manifest lists.
pub fn ledger_names(manifest: &serde_json::Value) -> Vec<String> {
    manifest["ledger"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str().map(str::to_string))
        .collect()
}
