//! The difference between two versions of an output, from their ledgers: the samples that
//! entered the kept set and those that left it, and why (the new drop, or the old one that no
//! longer applies). Written as `diff.parquet` in a version made by `mmcurate reenrich`, and
//! shown by `mmcurate inspect --history --diff A B`. It compares; it decides nothing.

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::ledger_read::LedgerRow;
use super::manifest::OutputFile;
use super::{put, WriteError};
use crate::store::Location;

/// `diff.parquet`, in the version's folder.
pub const DIFF_NAME: &str = "diff.parquet";

/// Whether a sample entered or left the kept set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Entered,
    Left,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Entered => "entered",
            Change::Left => "left",
        }
    }
}

/// One sample whose kept status differs between the two versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffRow {
    pub id: String,
    pub sha256: Option<String>,
    pub change: Change,
    /// Why: the drop that made it leave, or the old drop that no longer applies.
    pub reason: String,
    /// Status and drop reason in the old and the new version (null where it was not a sample).
    pub old_status: Option<String>,
    pub old_drop_reason: Option<String>,
    pub new_status: Option<String>,
    pub new_drop_reason: Option<String>,
}

/// The samples kept in exactly one of `old` and `new`, in id order.
pub fn diff(old: &[LedgerRow], new: &[LedgerRow]) -> Vec<DiffRow> {
    let old: BTreeMap<&str, &LedgerRow> = old.iter().map(|r| (r.id.as_str(), r)).collect();
    let new: BTreeMap<&str, &LedgerRow> = new.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut ids: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut rows = Vec::new();
    for id in ids {
        let (before, after) = (old.get(id).copied(), new.get(id).copied());
        let kept_before = before.is_some_and(LedgerRow::is_kept);
        let kept_after = after.is_some_and(LedgerRow::is_kept);
        if kept_before == kept_after {
            continue;
        }
        let (change, reason) = if kept_after {
            let reason = match before {
                None => "new sample".to_string(),
                Some(row) => format!("no longer {}", why(row)),
            };
            (Change::Entered, reason)
        } else {
            let reason = match after {
                None => "not in the new version".to_string(),
                Some(row) => why(row),
            };
            (Change::Left, reason)
        };
        let sha256 = after
            .and_then(|r| r.sha256.clone())
            .or_else(|| before.and_then(|r| r.sha256.clone()));
        rows.push(DiffRow {
            id: id.to_string(),
            sha256,
            change,
            reason,
            old_status: before.map(|r| r.status.clone()),
            old_drop_reason: before.and_then(|r| r.drop_reason.clone()),
            new_status: after.map(|r| r.status.clone()),
            new_drop_reason: after.and_then(|r| r.drop_reason.clone()),
        });
    }
    rows
}

/// A row's drop as words: `semantic_duplicate: cosine 0.99 with 0:a.jpg`.
fn why(row: &LedgerRow) -> String {
    match (&row.drop_reason, &row.drop_detail) {
        (Some(reason), Some(detail)) if !detail.is_empty() => format!("{reason}: {detail}"),
        (Some(reason), _) => reason.clone(),
        (None, _) => row.status.clone(),
    }
}

/// Writes `diff.parquet` into the version's folder `dir` and returns it, for the manifest.
pub fn write_diff(
    dir: &Location,
    rows: &[DiffRow],
    runtime: &tokio::runtime::Handle,
) -> Result<OutputFile, WriteError> {
    let bytes = to_parquet(rows).map_err(WriteError::Ledger)?;
    let file = OutputFile::of(DIFF_NAME, rows.len() as u64, &bytes);
    runtime.block_on(put(dir, DIFF_NAME, bytes))?;
    Ok(file)
}

fn to_parquet(rows: &[DiffRow]) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let schema = Schema::new(vec![
        text("id", false),
        text("sha256", true),
        text("change", false),
        text("reason", false),
        text("old_status", true),
        text("old_drop_reason", true),
        text("new_status", true),
        text("new_drop_reason", true),
    ]);
    let column = |get: fn(&DiffRow) -> Option<&str>| -> ArrayRef {
        Arc::new(rows.iter().map(get).collect::<StringArray>())
    };
    let columns = vec![
        column(|r| Some(&r.id)),
        column(|r| r.sha256.as_deref()),
        column(|r| Some(r.change.as_str())),
        column(|r| Some(&r.reason)),
        column(|r| r.old_status.as_deref()),
        column(|r| r.old_drop_reason.as_deref()),
        column(|r| r.new_status.as_deref()),
        column(|r| r.new_drop_reason.as_deref()),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns)?;
    super::parquet_file(&batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, status: &str, reason: Option<&str>) -> LedgerRow {
        LedgerRow {
            id: id.into(),
            key: Some(id.into()),
            sha256: Some(format!("sha-{id}")),
            status: status.into(),
            drop_reason: reason.map(str::to_string),
            drop_detail: reason.map(|_| "cosine 0.99 with 0:x".to_string()),
            shard: None,
        }
    }

    #[test]
    fn only_samples_whose_kept_status_changed_are_listed_with_why() {
        let old = vec![
            row("a", "kept", None),
            row("b", "dropped", Some("misaligned")),
            row("c", "kept", None),
            row("d", "dropped", Some("too_small")),
            row("gone", "kept", None),
        ];
        let new = vec![
            row("a", "kept", None),
            row("b", "kept", None),
            row("c", "dropped", Some("semantic_duplicate")),
            row("d", "dropped", Some("too_small")),
            row("e", "kept", None),
        ];
        let rows = diff(&old, &new);
        let summary: Vec<(&str, Change, &str)> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.change, r.reason.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "b",
                    Change::Entered,
                    "no longer misaligned: cosine 0.99 with 0:x"
                ),
                (
                    "c",
                    Change::Left,
                    "semantic_duplicate: cosine 0.99 with 0:x"
                ),
                ("e", Change::Entered, "new sample"),
                ("gone", Change::Left, "not in the new version"),
            ]
        );
        assert_eq!(rows[0].old_drop_reason.as_deref(), Some("misaligned"));
        assert_eq!(rows[0].new_status.as_deref(), Some("kept"));
        assert_eq!(rows[2].old_status, None);
        assert_eq!(rows[1].sha256.as_deref(), Some("sha-c"));
        let bytes = to_parquet(&rows).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
    }
}
