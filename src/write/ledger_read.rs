//! Reading a version's ledger back: the few columns that say what happened to each sample
//! (id, content sha256, status, drop reason and detail, shard), for the diff between versions,
//! `mmcurate verify` and `mmcurate inspect --history`. Reading only; the ledger's schema is
//! `write::ledger`'s.

use arrow_array::{Array, StringArray};
use object_store::ObjectStoreExt;

use super::ledger::{DROP_REASON, STATUS};
use super::version::listed_file;
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

/// Why a file of a version could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("missing")]
    Missing,
    #[error("{0}")]
    Store(object_store::Error),
    #[error("not a Parquet file: {0}")]
    NotParquet(#[from] parquet::errors::ParquetError),
    #[error("unreadable rows: {0}")]
    Rows(#[from] arrow_schema::ArrowError),
    #[error("no {0} column")]
    NoColumn(String),
    #[error("column {column} is not a {expected} column")]
    WrongType {
        column: String,
        expected: &'static str,
    },
    #[error("{uri}: {source}")]
    At { uri: String, source: Box<ReadError> },
}

impl ReadError {
    /// This error, said of the file at `uri`.
    pub fn at(self, uri: String) -> ReadError {
        ReadError::At {
            uri,
            source: Box::new(self),
        }
    }
}

/// The rows of one ledger file's bytes.
pub fn ledger_rows(bytes: bytes::Bytes) -> Result<Vec<LedgerRow>, ReadError> {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let reader = builder.build()?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| -> Result<Option<StringArray>, ReadError> {
            let Some(array) = batch.column_by_name(name) else {
                return Ok(None);
            };
            array
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .map(Some)
                .ok_or_else(|| ReadError::WrongType {
                    column: name.to_string(),
                    expected: "string",
                })
        };
        let required = |name: &str| -> Result<StringArray, ReadError> {
            column(name)?.ok_or_else(|| ReadError::NoColumn(name.to_string()))
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
pub async fn read_object(at: &Location) -> Result<bytes::Bytes, ReadError> {
    match at.store.get(&at.path).await {
        Ok(result) => result.bytes().await.map_err(ReadError::Store),
        Err(object_store::Error::NotFound { .. }) => Err(ReadError::Missing),
        Err(e) => Err(ReadError::Store(e)),
    }
}

/// Every row of the ledger files `names`, relative to `dir`.
pub async fn ledger_files(dir: &Location, names: &[String]) -> Result<Vec<LedgerRow>, ReadError> {
    let mut rows = Vec::new();
    for name in names {
        rows.extend(ledger_at(&dir.child(name)).await?);
    }
    Ok(rows)
}

/// Every row of the ledger a version's manifest lists: files in the version's folder `dir`,
/// and those kept from an earlier version's folder (an entry with a `version`).
pub async fn version_ledger(
    dir: &Location,
    manifest: &serde_json::Value,
) -> Result<Vec<LedgerRow>, ReadError> {
    let mut rows = Vec::new();
    for entry in manifest["ledger"].as_array().into_iter().flatten() {
        let Some(at) = listed_file(dir, entry) else {
            continue;
        };
        rows.extend(ledger_at(&at).await?);
    }
    Ok(rows)
}

async fn ledger_at(at: &Location) -> Result<Vec<LedgerRow>, ReadError> {
    let bytes = read_object(at).await.map_err(|e| e.at(at.uri()))?;
    ledger_rows(bytes).map_err(|e| e.at(at.uri()))
}
