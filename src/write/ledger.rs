//! The ledger: one Parquet row per input sample, kept or dropped, with its provenance, every
//! measurement and the decision. "Why is this sample missing?" is answered from it alone.

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use std::sync::Arc;

use super::Record;
use crate::measure::MEASURE_VERSION;

/// Column names and types, in order. The README's "Ledger columns" table documents each.
pub fn schema() -> Schema {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Schema::new(vec![
        utf8("id", false),
        utf8("key", false),
        utf8("name", false),
        utf8("source_uri", false),
        utf8("tar_member", true),
        utf8("manifest_uri", true),
        Field::new("manifest_row", DataType::UInt64, true),
        utf8("etag", true),
        Field::new("size_bytes", DataType::UInt64, false),
        utf8("sha256", true),
        utf8("format", true),
        Field::new("width", DataType::UInt32, true),
        Field::new("height", DataType::UInt32, true),
        Field::new("sharpness", DataType::Float64, true),
        Field::new("brightness", DataType::Float64, true),
        Field::new("clipped_fraction", DataType::Float64, true),
        utf8("phash", true),
        utf8("dhash", true),
        Field::new("caption_chars", DataType::UInt32, true),
        Field::new("caption_words", DataType::UInt32, true),
        Field::new("caption_tokens", DataType::UInt32, true),
        Field::new("caption_truncated", DataType::Boolean, true),
        Field::new("clip_score", DataType::Float64, true),
        utf8("clip_note", true),
        utf8("clip_model", true),
        utf8("clip_weights_sha256", true),
        utf8("measure_version", false),
        utf8("status", false),
        utf8("drop_stage", true),
        utf8("drop_reason", true),
        utf8("drop_detail", true),
        utf8("duplicate_of", true),
        Field::new("duplicate_distance", DataType::Float64, true),
        Field::new("duplicate_similarity", DataType::Float64, true),
        utf8("shard", true),
    ])
}

/// Serialises records (in the order given) as one Parquet file.
pub fn to_parquet(records: &[Record]) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let n = records.len();
    let strings = || StringBuilder::with_capacity(n, n * 16);
    let (mut id, mut key, mut name, mut source_uri) = (strings(), strings(), strings(), strings());
    let (mut tar_member, mut manifest_uri, mut etag) = (strings(), strings(), strings());
    let mut manifest_row = UInt64Builder::with_capacity(n);
    let mut size_bytes = UInt64Builder::with_capacity(n);
    let (mut sha256, mut format) = (strings(), strings());
    let (mut width, mut height) = (
        UInt32Builder::with_capacity(n),
        UInt32Builder::with_capacity(n),
    );
    let mut sharpness = Float64Builder::with_capacity(n);
    let mut brightness = Float64Builder::with_capacity(n);
    let mut clipped = Float64Builder::with_capacity(n);
    let (mut phash, mut dhash, mut version) = (strings(), strings(), strings());
    let uint32 = || UInt32Builder::with_capacity(n);
    let (mut caption_chars, mut caption_words, mut caption_tokens) = (uint32(), uint32(), uint32());
    let mut caption_truncated = BooleanBuilder::with_capacity(n);
    let mut clip_score = Float64Builder::with_capacity(n);
    let (mut clip_note, mut clip_model, mut clip_sha) = (strings(), strings(), strings());
    let (mut status, mut stage, mut reason, mut detail) =
        (strings(), strings(), strings(), strings());
    let mut duplicate_of = strings();
    let mut duplicate_distance = Float64Builder::with_capacity(n);
    let mut duplicate_similarity = Float64Builder::with_capacity(n);
    let mut shard = strings();

    for r in records {
        let m = &r.measurements;
        id.append_value(&r.id);
        key.append_value(&r.key);
        name.append_value(&r.name);
        source_uri.append_value(&r.origin.uri);
        tar_member.append_option(r.origin.tar_member.as_deref());
        manifest_uri.append_option(r.origin.manifest_uri.as_deref());
        manifest_row.append_option(r.origin.manifest_row);
        etag.append_option(r.origin.etag.as_deref());
        size_bytes.append_value(m.size_bytes);
        sha256.append_option(m.sha256.as_deref());
        format.append_option(m.format.as_deref());
        width.append_option(m.width);
        height.append_option(m.height);
        sharpness.append_option(m.sharpness);
        brightness.append_option(m.brightness);
        clipped.append_option(m.clipped_fraction);
        phash.append_option(m.phash.map(|h| format!("{h:016x}")));
        dhash.append_option(m.dhash.map(|h| format!("{h:016x}")));
        caption_chars.append_option(m.caption_chars);
        caption_words.append_option(m.caption_words);
        caption_tokens.append_option(m.caption_tokens);
        caption_truncated.append_option(m.caption_truncated);
        clip_score.append_option(m.clip_score);
        clip_note.append_option(m.clip_note.as_deref());
        clip_model.append_option(m.clip_model.as_deref());
        clip_sha.append_option(m.clip_weights_sha256.as_deref());
        version.append_value(MEASURE_VERSION);
        let dropped = r.decision.dropped();
        status.append_value(if dropped.is_some() { "dropped" } else { "kept" });
        stage.append_option(dropped.map(|d| d.stage.as_str()));
        reason.append_option(dropped.map(|d| d.reason.as_str()));
        detail.append_option(dropped.map(|d| d.detail.as_str()));
        duplicate_of.append_option(dropped.and_then(|d| d.duplicate_of.as_deref()));
        duplicate_distance.append_option(dropped.and_then(|d| d.duplicate_distance));
        duplicate_similarity.append_option(dropped.and_then(|d| d.duplicate_similarity));
        shard.append_option(r.shard.as_deref());
    }

    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(key.finish()),
        Arc::new(name.finish()),
        Arc::new(source_uri.finish()),
        Arc::new(tar_member.finish()),
        Arc::new(manifest_uri.finish()),
        Arc::new(manifest_row.finish()),
        Arc::new(etag.finish()),
        Arc::new(size_bytes.finish()),
        Arc::new(sha256.finish()),
        Arc::new(format.finish()),
        Arc::new(width.finish()),
        Arc::new(height.finish()),
        Arc::new(sharpness.finish()),
        Arc::new(brightness.finish()),
        Arc::new(clipped.finish()),
        Arc::new(phash.finish()),
        Arc::new(dhash.finish()),
        Arc::new(caption_chars.finish()),
        Arc::new(caption_words.finish()),
        Arc::new(caption_tokens.finish()),
        Arc::new(caption_truncated.finish()),
        Arc::new(clip_score.finish()),
        Arc::new(clip_note.finish()),
        Arc::new(clip_model.finish()),
        Arc::new(clip_sha.finish()),
        Arc::new(version.finish()),
        Arc::new(status.finish()),
        Arc::new(stage.finish()),
        Arc::new(reason.finish()),
        Arc::new(detail.finish()),
        Arc::new(duplicate_of.finish()),
        Arc::new(duplicate_distance.finish()),
        Arc::new(duplicate_similarity.finish()),
        Arc::new(shard.finish()),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema()), columns)?;
    super::parquet_file(&batch)
}
