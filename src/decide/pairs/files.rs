//! The pair search's files: `pairs.parquet` (`a`, `b`: row numbers over the whole input,
//! a < b; `cosine`: float32; with an input id column also `a_id`, `b_id`), `groups.parquet`
//! (`row`, `group`, `kept`: every row that is in a pair, its group named by its lowest row, and
//! whether it is the one kept; with ids also `id`, `group_id`), per-shard pair files, and the
//! merge of shard files into the one-machine result. Groups are connected
//! components of the pairs (union-find); the kept row of a group is its lowest row number,
//! the rule for embeddings that come without any other measurement. This module does not
//! search.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt64Type};
use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use super::{io_error, parquet_error, CosinePair, PairsError};

/// Rows per written record batch (and row group).
const WRITE_BATCH: usize = 1 << 20;

/// A row of `groups.parquet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRow {
    pub row: u64,
    pub group: u64,
    pub kept: bool,
}

/// The groups of `pairs`, one entry per row in a pair, ascending by row.
pub fn groups_of(pairs: &[CosinePair]) -> Vec<GroupRow> {
    let mut rows: Vec<u64> = pairs.iter().flat_map(|p| [p.a, p.b]).collect();
    rows.sort_unstable();
    rows.dedup();
    let index = |r: u64| rows.binary_search(&r).unwrap_or_default() as u32;
    // Union-find with path halving; the root of a set is its lowest index, so the group's
    // name and kept row need no second pass.
    let mut parent: Vec<u32> = (0..rows.len() as u32).collect();
    fn find(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            let grandparent = parent[parent[x as usize] as usize];
            parent[x as usize] = grandparent;
            x = grandparent;
        }
        x
    }
    for p in pairs {
        let (a, b) = (find(&mut parent, index(p.a)), find(&mut parent, index(p.b)));
        if a != b {
            parent[a.max(b) as usize] = a.min(b);
        }
    }
    (0..rows.len() as u32)
        .map(|i| {
            let root = find(&mut parent, i);
            GroupRow {
                row: rows[i as usize],
                group: rows[root as usize],
                kept: root == i,
            }
        })
        .collect()
}

/// The ids (from an input id column) of a set of rows, for the output files.
#[derive(Debug, Clone, PartialEq)]
pub struct RowIds {
    /// Row numbers, ascending.
    pub rows: Vec<u64>,
    pub ids: IdValues,
}

/// Id values in the order of [`RowIds::rows`], typed as the input column was (strings, or
/// integers widened to 64 bits); `None` for a null id.
#[derive(Debug, Clone, PartialEq)]
pub enum IdValues {
    Text(Vec<Option<String>>),
    Signed(Vec<Option<i64>>),
    Unsigned(Vec<Option<u64>>),
}

impl RowIds {
    fn data_type(&self) -> DataType {
        match self.ids {
            IdValues::Text(_) => DataType::Utf8,
            IdValues::Signed(_) => DataType::Int64,
            IdValues::Unsigned(_) => DataType::UInt64,
        }
    }

    /// The ids of `rows` as one column (null for a row without one).
    fn column(&self, rows: impl Iterator<Item = u64>) -> ArrayRef {
        let at = |row: u64| self.rows.binary_search(&row).ok();
        match &self.ids {
            IdValues::Text(v) => Arc::new(StringArray::from_iter(
                rows.map(|r| at(r).and_then(|i| v[i].as_deref())),
            )),
            IdValues::Signed(v) => Arc::new(Int64Array::from_iter(
                rows.map(|r| at(r).and_then(|i| v[i])),
            )),
            IdValues::Unsigned(v) => Arc::new(UInt64Array::from_iter(
                rows.map(|r| at(r).and_then(|i| v[i])),
            )),
        }
    }
}

/// The rows that appear in `pairs`, ascending: the rows whose ids the files need.
pub fn rows_in_pairs(pairs: &[CosinePair]) -> Vec<u64> {
    let mut rows: Vec<u64> = pairs.iter().flat_map(|p| [p.a, p.b]).collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}

fn write_batches(
    path: &Path,
    schema: Arc<Schema>,
    rows: usize,
    batch: impl Fn(std::ops::Range<usize>) -> Vec<ArrayRef>,
) -> Result<(), PairsError> {
    // Written next to the target and renamed: a reader never sees half a file.
    let partial = path.with_extension("parquet.partial");
    let file = File::create(&partial).map_err(|e| io_error(&partial, e))?;
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), None).map_err(|e| parquet_error(path, e))?;
    let mut start = 0;
    while start < rows || (rows == 0 && start == 0) {
        let end = (start + WRITE_BATCH).min(rows);
        let columns = batch(start..end);
        let record = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| parquet_error(path, e.into()))?;
        writer.write(&record).map_err(|e| parquet_error(path, e))?;
        if rows == 0 {
            break;
        }
        start = end;
    }
    writer.close().map_err(|e| parquet_error(path, e))?;
    std::fs::rename(&partial, path).map_err(|e| io_error(path, e))
}

/// Writes pairs (sorted by (a, b)) as `a`, `b` (uint64) and `cosine` (float32).
pub fn write_pairs(path: &Path, pairs: &[CosinePair]) -> Result<(), PairsError> {
    write_pairs_with_ids(path, pairs, None)
}

/// [`write_pairs`], then `a_id` and `b_id` when `ids` are given.
pub fn write_pairs_with_ids(
    path: &Path,
    pairs: &[CosinePair],
    ids: Option<&RowIds>,
) -> Result<(), PairsError> {
    let mut fields = vec![
        Field::new("a", DataType::UInt64, false),
        Field::new("b", DataType::UInt64, false),
        Field::new("cosine", DataType::Float32, false),
    ];
    if let Some(ids) = ids {
        fields.push(Field::new("a_id", ids.data_type(), true));
        fields.push(Field::new("b_id", ids.data_type(), true));
    }
    write_batches(path, Arc::new(Schema::new(fields)), pairs.len(), |range| {
        let slice = &pairs[range];
        let mut columns = vec![
            Arc::new(UInt64Array::from_iter_values(slice.iter().map(|p| p.a))) as ArrayRef,
            Arc::new(UInt64Array::from_iter_values(slice.iter().map(|p| p.b))),
            Arc::new(Float32Array::from_iter_values(
                slice.iter().map(|p| p.cosine),
            )),
        ];
        if let Some(ids) = ids {
            columns.push(ids.column(slice.iter().map(|p| p.a)));
            columns.push(ids.column(slice.iter().map(|p| p.b)));
        }
        columns
    })
}

/// Writes groups as `row`, `group` (uint64) and `kept` (bool).
pub fn write_groups(path: &Path, groups: &[GroupRow]) -> Result<(), PairsError> {
    write_groups_with_ids(path, groups, None)
}

/// [`write_groups`], then `id` and `group_id` (the kept row's id) when `ids` are given.
pub fn write_groups_with_ids(
    path: &Path,
    groups: &[GroupRow],
    ids: Option<&RowIds>,
) -> Result<(), PairsError> {
    let mut fields = vec![
        Field::new("row", DataType::UInt64, false),
        Field::new("group", DataType::UInt64, false),
        Field::new("kept", DataType::Boolean, false),
    ];
    if let Some(ids) = ids {
        fields.push(Field::new("id", ids.data_type(), true));
        fields.push(Field::new("group_id", ids.data_type(), true));
    }
    write_batches(path, Arc::new(Schema::new(fields)), groups.len(), |range| {
        let slice = &groups[range];
        let mut columns = vec![
            Arc::new(UInt64Array::from_iter_values(slice.iter().map(|g| g.row))) as ArrayRef,
            Arc::new(UInt64Array::from_iter_values(slice.iter().map(|g| g.group))),
            Arc::new(BooleanArray::from_iter(slice.iter().map(|g| Some(g.kept)))),
        ];
        if let Some(ids) = ids {
            columns.push(ids.column(slice.iter().map(|g| g.row)));
            columns.push(ids.column(slice.iter().map(|g| g.group)));
        }
        columns
    })
}

/// Reads a file written by [`write_pairs`].
pub fn read_pairs(path: &Path) -> Result<Vec<CosinePair>, PairsError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| parquet_error(path, e))?;
    let mut pairs = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e.into()))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| PairsError::Format {
                    path: path.display().to_string(),
                    message: format!("no column {name:?}: not a pairs file"),
                })
        };
        let (a, b, c) = (column("a")?, column("b")?, column("cosine")?);
        let (Some(a), Some(b), Some(c)) = (
            a.as_primitive_opt::<UInt64Type>(),
            b.as_primitive_opt::<UInt64Type>(),
            c.as_primitive_opt::<Float32Type>(),
        ) else {
            return Err(PairsError::Format {
                path: path.display().to_string(),
                message: "columns a, b, cosine are not uint64, uint64, float32".into(),
            });
        };
        for i in 0..batch.num_rows() {
            pairs.push(CosinePair {
                a: a.value(i),
                b: b.value(i),
                cosine: c.value(i),
            });
        }
    }
    Ok(pairs)
}

/// Where shard `index` of `count` writes its pairs under an output folder.
pub fn shard_pairs_path(output: &Path, index: u32, count: u32) -> PathBuf {
    output
        .join("shards")
        .join(format!("pairs-{index:05}-of-{count:05}.parquet"))
}

/// The pairs of all `count` shards under `output`, sorted: exactly the pairs a single
/// search finds (each pair is reported by one partition only, and shards split the
/// partitions). Fails naming the first missing shard.
pub fn merge_shards(output: &Path, count: u32) -> Result<Vec<CosinePair>, PairsError> {
    let mut pairs = Vec::new();
    for index in 0..count {
        let path = shard_pairs_path(output, index, count);
        if !path.exists() {
            return Err(PairsError::Format {
                path: path.display().to_string(),
                message: format!("shard {index} of {count} has not been written: run it first"),
            });
        }
        pairs.extend(read_pairs(&path)?);
    }
    pairs.sort_unstable_by_key(|p| (p.a, p.b));
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: u64, b: u64) -> CosinePair {
        CosinePair { a, b, cosine: 0.99 }
    }

    #[test]
    fn groups_are_components_named_and_kept_by_their_lowest_row() {
        let pairs = [
            pair(3, 9),
            pair(5, 7),
            pair(7, 12),
            pair(9, 20),
            pair(2, 12),
        ];
        let g = groups_of(&pairs);
        let expect = [
            (2, 2, true),
            (3, 3, true),
            (5, 2, false),
            (7, 2, false),
            (9, 3, false),
            (12, 2, false),
            (20, 3, false),
        ];
        let got: Vec<(u64, u64, bool)> = g.iter().map(|r| (r.row, r.group, r.kept)).collect();
        assert_eq!(got, expect);
        assert!(groups_of(&[]).is_empty());
    }

    #[test]
    fn pairs_round_trip_and_shards_merge() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shards")).unwrap();
        let one = vec![pair(1, 4), pair(6, 8)];
        let two = vec![pair(0, 9), pair(4, 5)];
        write_pairs(&shard_pairs_path(dir.path(), 0, 2), &one).unwrap();
        let e = merge_shards(dir.path(), 2).unwrap_err().to_string();
        assert!(e.contains("shard 1 of 2"), "{e}");
        write_pairs(&shard_pairs_path(dir.path(), 1, 2), &two).unwrap();
        assert_eq!(
            read_pairs(&shard_pairs_path(dir.path(), 0, 2)).unwrap(),
            one
        );
        let merged = merge_shards(dir.path(), 2).unwrap();
        assert_eq!(merged, [pair(0, 9), pair(1, 4), pair(4, 5), pair(6, 8)]);
        let empty = dir.path().join("empty.parquet");
        write_pairs(&empty, &[]).unwrap();
        assert!(read_pairs(&empty).unwrap().is_empty());
        let groups = dir.path().join("groups.parquet");
        write_groups(&groups, &groups_of(&merged)).unwrap();
        assert!(std::fs::metadata(&groups).unwrap().len() > 0);
    }
}
