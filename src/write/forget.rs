//! The file rewrites of a deletion request (`mmcurate forget`): a shard without the members
//! of some keys (every other member's bytes copied unchanged), a ledger file whose rows of
//! forgotten samples keep only their id and sha256 (status `forgotten`, the request in
//! `drop_detail`), an embeddings file without their rows, and the cumulative
//! `forgotten.parquet`. Which samples, which files and the new version are
//! `pipeline::forget`'s; this module only transforms bytes.

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use super::shards::TAR_END;

/// The status of a forgotten sample's ledger row.
pub const FORGOTTEN: &str = "forgotten";
/// `versions/NNNNNN/forgotten.parquet`: every sample forgotten so far, by any request.
pub const FORGOTTEN_FILE: &str = "forgotten.parquet";

/// One forgotten sample, as `forgotten.parquet` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ForgottenSample {
    pub sha256: String,
    pub id: String,
    pub request_id: String,
    /// RFC 3339, UTC.
    pub forgotten_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error("{0} is not a tar file mmcurate wrote: {1}")]
    Tar(String, String),
    #[error("{0}: {1}")]
    Parquet(String, String),
}

fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `path` of a pax extended header's records.
fn pax_path(records: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(records);
    text.lines().find_map(|line| {
        let (_, record) = line.split_once(' ')?;
        record.strip_prefix("path=").map(str::to_string)
    })
}

/// The shard without the members whose key (the name before its first dot) is in `keys`;
/// returns the new bytes and how many samples (distinct keys) are left. Written by hand rather
/// than with the `tar` crate: every kept member (pax header, header, data, padding) is copied
/// byte for byte, which a tar writer, setting its own header fields, would not promise.
pub fn shard_without(
    name: &str,
    bytes: &[u8],
    keys: &HashSet<&str>,
) -> Result<(Vec<u8>, u64), ForgetError> {
    let bad = |why: &str| ForgetError::Tar(name.to_string(), why.to_string());
    let mut out = Vec::with_capacity(bytes.len());
    let mut left = BTreeSet::new();
    let mut at = 0;
    loop {
        let start = at;
        let header = bytes.get(at..at + 512).ok_or_else(|| bad("cut short"))?;
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let mut path = None;
        let mut header = header;
        let size =
            |h: &[u8]| octal(&h[124..136]).ok_or_else(|| bad("a header's size is not octal"));
        if header[156] == b'x' {
            let len = size(header)? as usize;
            let records = bytes
                .get(at + 512..at + 512 + len)
                .ok_or_else(|| bad("cut short"))?;
            path = pax_path(records);
            at += 512 + len.div_ceil(512) * 512;
            header = bytes.get(at..at + 512).ok_or_else(|| bad("cut short"))?;
        }
        let len = size(header)? as usize;
        let end = at + 512 + len.div_ceil(512) * 512;
        if end > bytes.len() {
            return Err(bad("cut short"));
        }
        let member = path.unwrap_or_else(|| {
            let raw = &header[..100];
            let n = raw.iter().position(|&b| b == 0).unwrap_or(100);
            String::from_utf8_lossy(&raw[..n]).into_owned()
        });
        let key = member.split('.').next().unwrap_or(&member);
        if !keys.contains(key) {
            out.extend_from_slice(&bytes[start..end]);
            left.insert(key.to_string());
        }
        at = end;
    }
    out.resize(out.len() + TAR_END, 0);
    Ok((out, left.len() as u64))
}

fn read_batch(name: &str, bytes: Vec<u8>) -> Result<RecordBatch, ForgetError> {
    let bad = |e: String| ForgetError::Parquet(name.to_string(), e);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(|e| bad(e.to_string()))?;
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder
        .build()
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| bad(e.to_string()))
}

fn string_column<'a>(batch: &'a RecordBatch, column: &str) -> Option<&'a StringArray> {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
}

/// The (id, sha256) of every row of a ledger file, and its status and `duplicate_of`.
pub struct LedgerRows {
    pub ids: Vec<String>,
    pub sha256: Vec<Option<String>>,
    pub status: Vec<String>,
    pub duplicate_of: Vec<Option<String>>,
    pub keys: Vec<String>,
}

/// Reads what a deletion request matches on from a ledger file.
pub fn ledger_rows(name: &str, bytes: Vec<u8>) -> Result<LedgerRows, ForgetError> {
    let batch = read_batch(name, bytes)?;
    let column = |c: &str| {
        string_column(&batch, c)
            .ok_or_else(|| ForgetError::Parquet(name.to_string(), format!("no column `{c}`")))
    };
    let optional = |a: &StringArray| -> Vec<Option<String>> {
        (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
            .collect()
    };
    let plain =
        |a: &StringArray| -> Vec<String> { (0..a.len()).map(|i| a.value(i).to_string()).collect() };
    Ok(LedgerRows {
        ids: plain(column("id")?),
        sha256: optional(column("sha256")?),
        status: plain(column("status")?),
        duplicate_of: optional(column("duplicate_of")?),
        keys: plain(column("key")?),
    })
}

/// The ledger file with the rows at `rows` forgotten: `id`, `sha256` and `measure_version`
/// kept, `status` = `forgotten`, `drop_reason` = `forgotten`, `drop_detail` = `detail`, every
/// other column null (empty or 0 where the column cannot be null).
pub fn ledger_with_forgotten(
    name: &str,
    bytes: Vec<u8>,
    rows: &HashSet<usize>,
    detail: &str,
) -> Result<Vec<u8>, ForgetError> {
    let bad = |e: String| ForgetError::Parquet(name.to_string(), e);
    let batch = read_batch(name, bytes)?;
    let n = batch.num_rows();
    let forgotten = BooleanArray::from((0..n).map(|i| rows.contains(&i)).collect::<Vec<_>>());
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let replacement: Option<ArrayRef> = match field.name().as_str() {
            "id" | "sha256" | "measure_version" => None,
            "status" => Some(Arc::new(StringArray::from(vec![FORGOTTEN; n]))),
            "drop_reason" => Some(Arc::new(StringArray::from(vec![FORGOTTEN; n]))),
            "drop_detail" => Some(Arc::new(StringArray::from(vec![detail; n]))),
            _ if field.is_nullable() => Some(arrow_array::new_null_array(field.data_type(), n)),
            _ => match field.data_type() {
                DataType::Utf8 => Some(Arc::new(StringArray::from(vec![""; n]))),
                DataType::UInt64 => Some(Arc::new(arrow_array::UInt64Array::from(vec![0; n]))),
                DataType::UInt32 => Some(Arc::new(arrow_array::UInt32Array::from(vec![0; n]))),
                other => return Err(bad(format!("column `{}` of type {other}", field.name()))),
            },
        };
        columns.push(match replacement {
            None => column.clone(),
            Some(value) => arrow_select::zip::zip(&forgotten, &value, column)
                .map_err(|e| bad(e.to_string()))?,
        });
    }
    let batch = RecordBatch::try_new(batch.schema(), columns).map_err(|e| bad(e.to_string()))?;
    super::parquet_file(&batch).map_err(|e| bad(e.to_string()))
}

/// An embeddings file without some rows.
pub struct FilteredEmbeddings {
    /// The new file and its rows; `None` when no row is left.
    pub file: Option<(Vec<u8>, u64)>,
    pub removed: u64,
}

/// The embeddings file without the rows of `ids` (its metadata kept).
pub fn embeddings_without(
    name: &str,
    bytes: Vec<u8>,
    ids: &HashSet<&str>,
) -> Result<FilteredEmbeddings, ForgetError> {
    let bad = |e: String| ForgetError::Parquet(name.to_string(), e);
    let batch = read_batch(name, bytes)?;
    let id = string_column(&batch, "id").ok_or_else(|| bad("no column `id`".into()))?;
    let keep = BooleanArray::from(
        (0..id.len())
            .map(|i| !ids.contains(id.value(i)))
            .collect::<Vec<_>>(),
    );
    let removed = keep.false_count() as u64;
    let kept =
        arrow_select::filter::filter_record_batch(&batch, &keep).map_err(|e| bad(e.to_string()))?;
    if kept.num_rows() == 0 {
        return Ok(FilteredEmbeddings {
            file: None,
            removed,
        });
    }
    let rows = kept.num_rows() as u64;
    let bytes = super::parquet_file(&kept).map_err(|e| bad(e.to_string()))?;
    Ok(FilteredEmbeddings {
        file: Some((bytes, rows)),
        removed,
    })
}

/// `forgotten.parquet`: `sha256`, `id`, `request_id`, `forgotten_at` (strings), as given.
pub fn forgotten_to_parquet(samples: &[ForgottenSample]) -> Result<Vec<u8>, ForgetError> {
    let bad = |e: String| ForgetError::Parquet(FORGOTTEN_FILE.to_string(), e);
    let column = |f: fn(&ForgottenSample) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(samples.iter().map(f)))
    };
    let schema = arrow_schema::Schema::new(
        ["sha256", "id", "request_id", "forgotten_at"]
            .map(|c| arrow_schema::Field::new(c, DataType::Utf8, false))
            .to_vec(),
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            column(|s| &s.sha256),
            column(|s| &s.id),
            column(|s| &s.request_id),
            column(|s| &s.forgotten_at),
        ],
    )
    .map_err(|e| bad(e.to_string()))?;
    super::parquet_file(&batch).map_err(|e| bad(e.to_string()))
}

/// The rows of a `forgotten.parquet`.
pub fn forgotten_from_parquet(bytes: Vec<u8>) -> Result<Vec<ForgottenSample>, ForgetError> {
    let batch = read_batch(FORGOTTEN_FILE, bytes)?;
    let column = |c: &str| {
        string_column(&batch, c).ok_or_else(|| {
            ForgetError::Parquet(FORGOTTEN_FILE.to_string(), format!("no column `{c}`"))
        })
    };
    let (sha, id, request, at) = (
        column("sha256")?,
        column("id")?,
        column("request_id")?,
        column("forgotten_at")?,
    );
    Ok((0..batch.num_rows())
        .map(|i| ForgottenSample {
            sha256: sha.value(i).to_string(),
            id: id.value(i).to_string(),
            request_id: request.value(i).to_string(),
            forgotten_at: at.value(i).to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::shards::append_member;

    #[test]
    fn a_shard_loses_only_the_members_of_the_keys_given() {
        let long_key = "k".repeat(120);
        let mut tar = Vec::new();
        for (key, data) in [
            ("a", &b"AAA"[..]),
            (long_key.as_str(), b"LONG"),
            ("b", b"BB"),
        ] {
            append_member(&mut tar, &format!("{key}.jpg"), data).unwrap();
            append_member(&mut tar, &format!("{key}.json"), b"{}").unwrap();
        }
        let mut expected = Vec::new();
        append_member(&mut expected, "a.jpg", b"AAA").unwrap();
        append_member(&mut expected, "a.json", b"{}").unwrap();
        append_member(&mut expected, "b.jpg", b"BB").unwrap();
        append_member(&mut expected, "b.json", b"{}").unwrap();
        tar.resize(tar.len() + TAR_END, 0);
        expected.resize(expected.len() + TAR_END, 0);
        let (out, left) =
            shard_without("s.tar", &tar, &HashSet::from([long_key.as_str()])).unwrap();
        assert_eq!(left, 2);
        assert_eq!(out, expected);
        let (out, left) = shard_without("s.tar", &tar, &HashSet::new()).unwrap();
        assert_eq!((out, left), (tar.clone(), 3));
        assert!(shard_without("s.tar", &tar[..700], &HashSet::new()).is_err());
    }

    #[test]
    fn forgotten_lists_round_trip() {
        let samples = vec![ForgottenSample {
            sha256: "ab".repeat(32),
            id: "0:a.jpg".into(),
            request_id: "R-1".into(),
            forgotten_at: "2026-12-02T13:00:00Z".into(),
        }];
        let bytes = forgotten_to_parquet(&samples).unwrap();
        assert_eq!(forgotten_from_parquet(bytes).unwrap(), samples);
    }
}
