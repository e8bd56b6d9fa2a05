//! Parquet files with a list-of-float column of embeddings as an [`EmbeddingSource`]: one file
//! or a folder of `*.parquet` in name order. The column may be a list, large list or
//! fixed-size list of float32, float64 or float16; every row must have the same length. A null
//! row, or a null inside one, becomes a row of NaN, which pairs with nothing. Read in record
//! batches, never whole; a gather reads only the row groups that hold a row it wants, and
//! decodes only those rows. An id column (strings or integers) is read apart, for the rows in
//! pairs only, so the output files can name rows by id.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::arrow::ProjectionMask;

use super::files::{IdValues, RowIds};
use super::npy::list_files;
use super::source::{ChunkVisit, EmbeddingSource, Rechunker, RowVisit};
use super::{format_error, parquet_error, PairsError};

pub struct ParquetEmbeddings {
    files: Vec<PathBuf>,
    column: String,
    rows: u64,
    dim: usize,
}

impl ParquetEmbeddings {
    /// Opens `path` (a file or a folder) and finds the width of `column` from its first row.
    pub fn open(path: &Path, column: &str) -> Result<ParquetEmbeddings, PairsError> {
        let files = if path.is_dir() {
            list_files(path, "parquet")?
        } else {
            vec![path.to_path_buf()]
        };
        let mut rows = 0;
        let mut dim = None;
        for file in &files {
            let builder = builder(file, column)?;
            rows += builder.metadata().file_metadata().num_rows() as u64;
            if dim.is_none() {
                let mut reader = builder
                    .with_batch_size(1)
                    .build()
                    .map_err(|e| parquet_error(file, e))?;
                if let Some(batch) = reader.next() {
                    let batch = batch.map_err(|e| format_error(file, e.to_string()))?;
                    dim = Some(list_width(file, batch.column(0))?);
                }
            }
        }
        Ok(ParquetEmbeddings {
            files,
            column: column.to_string(),
            rows,
            dim: dim.unwrap_or(0),
        })
    }
}

impl ParquetEmbeddings {
    /// Checks that every file has `column`, a string or integer column, before any work.
    pub fn check_id_column(&self, column: &str) -> Result<(), PairsError> {
        for file in &self.files {
            id_reader(file, column)?;
        }
        Ok(())
    }

    /// The values of the id column `column` for `rows` (ascending row numbers over all files).
    pub fn read_ids(&self, column: &str, rows: &[u64]) -> Result<RowIds, PairsError> {
        let (mut text, mut signed, mut unsigned) = (Vec::new(), Vec::new(), Vec::new());
        let mut kind = None;
        let mut next = 0usize;
        let mut first = 0u64;
        for file in &self.files {
            let (builder, id_kind) = id_reader(file, column)?;
            kind = Some(id_kind);
            let reader = builder
                .with_batch_size(8192)
                .build()
                .map_err(|e| parquet_error(file, e))?;
            for batch in reader {
                let batch = batch.map_err(|e| format_error(file, e.to_string()))?;
                let values = batch.column(0);
                let end = first + batch.num_rows() as u64;
                while next < rows.len() && rows[next] < end {
                    let i = (rows[next] - first) as usize;
                    let null = values.is_null(i);
                    match id_kind {
                        IdKind::Text => text.push((!null).then(|| text_at(values, i))),
                        IdKind::Signed => signed.push((!null).then(|| signed_at(values, i))),
                        IdKind::Unsigned => unsigned.push((!null).then(|| unsigned_at(values, i))),
                    }
                    next += 1;
                }
                first = end;
            }
        }
        let ids = match kind.unwrap_or(IdKind::Text) {
            IdKind::Text => IdValues::Text(text),
            IdKind::Signed => IdValues::Signed(signed),
            IdKind::Unsigned => IdValues::Unsigned(unsigned),
        };
        Ok(RowIds {
            rows: rows[..next].to_vec(),
            ids,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum IdKind {
    Text,
    Signed,
    Unsigned,
}

/// A reader of `column` alone, and how its values are carried.
fn id_reader(
    path: &Path,
    column: &str,
) -> Result<(ParquetRecordBatchReaderBuilder<File>, IdKind), PairsError> {
    let file = File::open(path).map_err(|source| PairsError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))?;
    let schema = builder.schema().clone();
    let Some((index, field)) = schema.column_with_name(column) else {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(format_error(
            path,
            format!(
                "no id column {column:?} (columns: {}); name it with --id-column",
                names.join(", ")
            ),
        ));
    };
    let kind = match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => IdKind::Text,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => IdKind::Signed,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            IdKind::Unsigned
        }
        other => {
            return Err(format_error(
                path,
                format!("id column {column:?} is {other}: ids must be strings or integers"),
            ))
        }
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    Ok((builder.with_projection(mask), kind))
}

// The accessors below read a column whose type `id_reader` checked; the fallbacks are not
// reached.
fn text_at(values: &ArrayRef, i: usize) -> String {
    if let Some(v) = values.as_string_opt::<i32>() {
        v.value(i).to_string()
    } else if let Some(v) = values.as_string_opt::<i64>() {
        v.value(i).to_string()
    } else if let Some(v) = values.as_string_view_opt() {
        v.value(i).to_string()
    } else {
        String::new()
    }
}

fn signed_at(values: &ArrayRef, i: usize) -> i64 {
    if let Some(v) = values.as_primitive_opt::<Int64Type>() {
        v.value(i)
    } else if let Some(v) = values.as_primitive_opt::<Int32Type>() {
        i64::from(v.value(i))
    } else if let Some(v) = values.as_primitive_opt::<Int16Type>() {
        i64::from(v.value(i))
    } else if let Some(v) = values.as_primitive_opt::<Int8Type>() {
        i64::from(v.value(i))
    } else {
        0
    }
}

fn unsigned_at(values: &ArrayRef, i: usize) -> u64 {
    if let Some(v) = values.as_primitive_opt::<UInt64Type>() {
        v.value(i)
    } else if let Some(v) = values.as_primitive_opt::<UInt32Type>() {
        u64::from(v.value(i))
    } else if let Some(v) = values.as_primitive_opt::<UInt16Type>() {
        u64::from(v.value(i))
    } else if let Some(v) = values.as_primitive_opt::<UInt8Type>() {
        u64::from(v.value(i))
    } else {
        0
    }
}

fn builder(path: &Path, column: &str) -> Result<ParquetRecordBatchReaderBuilder<File>, PairsError> {
    let file = File::open(path).map_err(|source| PairsError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))?;
    let schema = builder.schema().clone();
    let Some((index, field)) = schema.column_with_name(column) else {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(format_error(
            path,
            format!(
                "no column {column:?} (columns: {}); name it with --column",
                names.join(", ")
            ),
        ));
    };
    let inner = match field.data_type() {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => f.data_type(),
        other => {
            return Err(format_error(
                path,
                format!("column {column:?} is {other}, not a list of floats"),
            ))
        }
    };
    if !matches!(
        inner,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    ) {
        return Err(format_error(
            path,
            format!("column {column:?} holds {inner}, not float16, float32 or float64"),
        ));
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    Ok(builder.with_projection(mask))
}

/// The width of the first non-null row of a list column.
fn list_width(path: &Path, column: &ArrayRef) -> Result<usize, PairsError> {
    let mut out = Vec::new();
    append_rows(path, column, None, 0, &mut out)
}

/// Appends the rows of a list column as f32 to `out` (a null row or value as NaN) and returns
/// the width; `dim` is the expected width (`None`: take the first row's).
fn append_rows(
    path: &Path,
    column: &ArrayRef,
    dim: Option<usize>,
    first_row: u64,
    out: &mut Vec<f32>,
) -> Result<usize, PairsError> {
    let (offsets, values): (Vec<usize>, ArrayRef) = if let Some(list) = column.as_list_opt::<i32>()
    {
        (
            list.offsets().iter().map(|&o| o as usize).collect(),
            list.values().clone(),
        )
    } else if let Some(list) = column.as_list_opt::<i64>() {
        (
            list.offsets().iter().map(|&o| o as usize).collect(),
            list.values().clone(),
        )
    } else if let Some(list) = column.as_fixed_size_list_opt() {
        let w = list.value_length() as usize;
        (
            (0..=list.len()).map(|i| i * w).collect(),
            list.values().clone(),
        )
    } else {
        return Err(format_error(
            path,
            "the embedding column is not a list".into(),
        ));
    };
    // Converted once per batch, nulls as NaN.
    let floats: Vec<f32> = if let Some(v) = values.as_primitive_opt::<Float32Type>() {
        v.values().to_vec()
    } else if let Some(v) = values.as_primitive_opt::<Float64Type>() {
        v.values().iter().map(|&x| x as f32).collect()
    } else if let Some(v) = values.as_primitive_opt::<Float16Type>() {
        v.values().iter().map(|x| x.to_f32()).collect()
    } else {
        return Err(format_error(
            path,
            "the embedding column does not hold floats".into(),
        ));
    };
    let value = |i: usize| -> f32 {
        if values.is_null(i) {
            f32::NAN
        } else {
            floats[i]
        }
    };
    let mut dim = dim;
    for row in 0..column.len() {
        let (start, end) = (offsets[row], offsets[row + 1]);
        let width = *dim.get_or_insert(end - start);
        if column.is_null(row) {
            out.extend(std::iter::repeat_n(f32::NAN, width));
            continue;
        }
        if end - start != width {
            return Err(format_error(
                path,
                format!(
                    "row {} has {} values, but the rows before have {width}: embeddings must all have the same width",
                    first_row + row as u64,
                    end - start
                ),
            ));
        }
        out.extend((start..end).map(value));
    }
    Ok(dim.unwrap_or(0))
}

impl EmbeddingSource for ParquetEmbeddings {
    fn rows(&self) -> u64 {
        self.rows
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn scan(&self, visit: ChunkVisit<'_>) -> Result<(), PairsError> {
        let mut chunker = Rechunker::new(self.dim);
        let mut values = Vec::new();
        let mut row = 0u64;
        for file in &self.files {
            let reader = builder(file, &self.column)?
                .with_batch_size(4096)
                .build()
                .map_err(|e| parquet_error(file, e))?;
            for batch in reader {
                let batch = batch.map_err(|e| format_error(file, e.to_string()))?;
                values.clear();
                append_rows(file, batch.column(0), Some(self.dim), row, &mut values)?;
                row += batch.num_rows() as u64;
                chunker.push(&values, visit)?;
            }
        }
        chunker.finish(visit)
    }

    fn gather(&self, rows: &[u32], visit: RowVisit<'_>) -> Result<(), PairsError> {
        let dim = self.dim;
        let (mut next, mut file_first) = (0usize, 0u64);
        let mut values = Vec::new();
        for file in &self.files {
            let builder = builder(file, &self.column)?;
            let metadata = builder.metadata().clone();
            let file_end = file_first + metadata.file_metadata().num_rows() as u64;
            let end = next + rows[next..].partition_point(|&r| u64::from(r) < file_end);
            if end == next {
                file_first = file_end;
                continue;
            }
            // The row groups holding a wanted row, and the wanted rows' positions among the
            // rows of those groups.
            let (mut groups, mut ranges, mut selected) = (Vec::new(), Vec::new(), 0usize);
            let (mut group_first, mut i) = (file_first, next);
            for (g, group) in metadata.row_groups().iter().enumerate() {
                let group_end = group_first + group.num_rows() as u64;
                let j = i + rows[i..end].partition_point(|&r| u64::from(r) < group_end);
                if j > i {
                    groups.push(g);
                    for &r in &rows[i..j] {
                        let at = selected + (u64::from(r) - group_first) as usize;
                        ranges.push(at..at + 1);
                    }
                    selected += group.num_rows() as usize;
                }
                (i, group_first) = (j, group_end);
            }
            let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), selected);
            let reader = builder
                .with_row_groups(groups)
                .with_row_selection(selection)
                .with_batch_size(4096)
                .build()
                .map_err(|e| parquet_error(file, e))?;
            let mut k = next;
            for batch in reader {
                let batch = batch.map_err(|e| format_error(file, e.to_string()))?;
                values.clear();
                let first = rows.get(k).map_or(0, |&r| u64::from(r));
                append_rows(file, batch.column(0), Some(dim), first, &mut values)?;
                for row in values.chunks_exact(dim.max(1)) {
                    if k < end {
                        visit(k, row)?;
                    }
                    k += 1;
                }
            }
            if k != end {
                return Err(format_error(
                    file,
                    format!(
                        "{} rows read of the {} asked for: the file changed while it was read",
                        k - next,
                        end - next
                    ),
                ));
            }
            (next, file_first) = (end, file_end);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{FixedSizeListArray, Float32Array, RecordBatch};
    use arrow_schema::{Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;
    use crate::decide::pairs::source::{VectorsInMemory, CHUNK_ROWS};

    /// `values` (rows × dim) as Parquet files of `per_file` rows, in row groups of 1,000.
    fn write_files(dir: &Path, values: &[f32], dim: usize, per_file: usize) {
        let field = Arc::new(Field::new("item", DataType::Float32, true));
        let schema = Arc::new(Schema::new(vec![Field::new(
            "embedding",
            DataType::FixedSizeList(field.clone(), dim as i32),
            true,
        )]));
        for (f, part) in values.chunks(per_file * dim).enumerate() {
            let list = FixedSizeListArray::new(
                field.clone(),
                dim as i32,
                Arc::new(Float32Array::from(part.to_vec())),
                None,
            );
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(list)]).unwrap();
            let props = WriterProperties::builder()
                .set_max_row_group_size(1000)
                .build();
            let file = File::create(dir.join(format!("part-{f}.parquet"))).unwrap();
            let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
        }
    }

    #[test]
    fn gathers_and_row_ranges_read_the_rows_asked_for() {
        let (dim, rows) = (3, 2 * CHUNK_ROWS + 700);
        let values: Vec<f32> = (0..rows * dim).map(|i| i as f32 * 0.5).collect();
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &values, dim, 7000);
        let parquet = ParquetEmbeddings::open(dir.path(), "embedding").unwrap();
        let memory = VectorsInMemory {
            vectors: &values,
            dim,
        };
        assert_eq!((parquet.rows(), parquet.dim()), (rows as u64, dim));
        // Rows in some row groups of some files only, the first and last rows included.
        let wanted: Vec<u32> = (0..rows as u32)
            .filter(|r| r % 997 == 0 || (2500..2510).contains(r) || *r == rows as u32 - 1)
            .collect();
        let collect = |source: &dyn EmbeddingSource| {
            let mut out = Vec::new();
            source
                .gather(&wanted, &mut |i, row| {
                    out.push((i, row.to_vec()));
                    Ok(())
                })
                .unwrap();
            out
        };
        let from_parquet = collect(&parquet);
        assert_eq!(from_parquet.len(), wanted.len());
        assert_eq!(from_parquet, collect(&memory));
        // A row range: the chunks of a whole scan.
        let chunks = |source: &dyn EmbeddingSource| {
            let mut out = Vec::new();
            source
                .scan_rows(CHUNK_ROWS as u64..rows as u64, &mut |first, values| {
                    out.push((first, values.to_vec()));
                    Ok(())
                })
                .unwrap();
            out
        };
        let range = chunks(&parquet);
        assert_eq!(
            range
                .iter()
                .map(|(first, v)| (*first, v.len() / dim))
                .collect::<Vec<_>>(),
            [
                (CHUNK_ROWS as u64, CHUNK_ROWS),
                (2 * CHUNK_ROWS as u64, 700)
            ]
        );
        assert_eq!(range, chunks(&memory));
    }
}
