//! Parquet files with a list-of-float column of embeddings as an [`EmbeddingSource`]: one file
//! or a folder of `*.parquet` in name order. The column may be a list, large list or
//! fixed-size list of float32, float64 or float16; every row must have the same length. A null
//! row, or a null inside one, becomes a row of NaN, which pairs with nothing. Read in record
//! batches, never whole. An id column (strings or integers) is read apart, for the rows in
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
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::files::{IdValues, RowIds};
use super::npy::list_files;
use super::source::{ChunkVisit, EmbeddingSource, Rechunker};
use super::PairsError;

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

fn parquet_error(path: &Path, source: parquet::errors::ParquetError) -> PairsError {
    PairsError::Parquet {
        path: path.display().to_string(),
        source,
    }
}

fn format_error(path: &Path, message: String) -> PairsError {
    PairsError::Format {
        path: path.display().to_string(),
        message,
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
}
