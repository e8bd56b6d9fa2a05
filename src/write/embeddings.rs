//! The run's CLIP embeddings, `<output>/embeddings/clip-NNNNNN.parquet`: one row per embedded
//! sample, in id order, with its unit-length image embedding and caption embedding (null
//! without a caption), so that later runs and other tools can reuse them. The model's id and
//! weights sha256 are in each file's metadata and in the run manifest.

use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Schema};
use parquet::errors::ParquetError;
use std::collections::HashMap;
use std::sync::Arc;

use super::manifest::OutputFile;
use super::{put, WriteError};
use crate::measure::Embeddings;
use crate::models::clip::ClipInfo;
use crate::record::Record;
use crate::store::Location;

/// Rows per embeddings file: about 400 MB at 512 dimensions.
const ROWS_PER_FILE: usize = 100_000;

/// Writes the embeddings files and returns them, for the manifest.
pub fn write_embeddings(
    output: &Location,
    records: &[Record],
    embeddings: &Embeddings,
    model: &ClipInfo,
    runtime: &tokio::runtime::Handle,
) -> Result<Vec<OutputFile>, WriteError> {
    write_embeddings_from(output, records, embeddings, model, 0, runtime)
}

/// [`write_embeddings`], numbering the files from `first` (an incremental version lists the
/// earlier versions' embeddings files beside its own).
pub fn write_embeddings_from(
    output: &Location,
    records: &[Record],
    embeddings: &Embeddings,
    model: &ClipInfo,
    first: usize,
    runtime: &tokio::runtime::Handle,
) -> Result<Vec<OutputFile>, WriteError> {
    let mut files = Vec::new();
    let n = embeddings.rows.len();
    for (index, start) in (0..n).step_by(ROWS_PER_FILE).enumerate() {
        let index = first + index;
        let rows = start..(start + ROWS_PER_FILE).min(n);
        let name = format!("embeddings/clip-{index:06}.parquet");
        let bytes =
            to_parquet(records, embeddings, rows.clone(), model).map_err(WriteError::Embeddings)?;
        files.push(OutputFile::of(name.clone(), rows.len() as u64, &bytes));
        runtime.block_on(put(output, &name, bytes))?;
    }
    Ok(files)
}

fn to_parquet(
    records: &[Record],
    e: &Embeddings,
    rows: std::ops::Range<usize>,
    model: &ClipInfo,
) -> Result<Vec<u8>, ParquetError> {
    let dim = e.dim;
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let list = DataType::FixedSizeList(item.clone(), dim as i32);
    let metadata = HashMap::from([
        ("clip_model".to_string(), model.id.clone()),
        (
            "clip_weights_sha256".to_string(),
            model.weights_sha256.clone(),
        ),
        ("normalised".to_string(), "l2".to_string()),
    ]);
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("clip_image_embedding", list.clone(), false),
        Field::new("clip_text_embedding", list, true),
    ])
    .with_metadata(metadata);
    let ids = StringArray::from_iter_values(rows.clone().map(|i| records[e.rows[i]].id.as_str()));
    let span = rows.start * dim..rows.end * dim;
    let image = FixedSizeListArray::try_new(
        item.clone(),
        dim as i32,
        Arc::new(Float32Array::from(e.image[span.clone()].to_vec())),
        None,
    )?;
    let text = FixedSizeListArray::try_new(
        item,
        dim as i32,
        Arc::new(Float32Array::from(e.text[span].to_vec())),
        Some(NullBuffer::from(e.has_text[rows].to_vec())),
    )?;
    let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(image), Arc::new(text)];
    let batch = RecordBatch::try_new(Arc::new(schema), columns)?;
    super::parquet_file(&batch)
}
