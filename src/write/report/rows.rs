//! What the report reads of each sample: [`ReportRow`], made from the run's in-memory records
//! or read back from the ledger's Parquet files (for `mmcurate report OUTPUT`). Rows are
//! streamed through a [`RowSource`] so a million-sample run is never held twice in memory.
//!
//! This file only reads; it decides and draws nothing.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};

use super::ReportError;
use crate::write::Record;

/// One sample as the report sees it: identity, where its bytes are, the measurements that
/// have histograms, and the decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportRow {
    pub id: String,
    pub key: String,
    pub name: String,
    pub source_uri: String,
    pub tar_member: Option<String>,
    pub manifest_uri: Option<String>,
    pub media_kind: Option<String>,
    pub size_bytes: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub sharpness: Option<f64>,
    pub brightness: Option<f64>,
    pub caption_words: Option<u32>,
    pub clip_score: Option<f64>,
    pub duration_seconds: Option<f64>,
    pub frame_timestamps: Vec<f64>,
    pub motion_score: Option<f64>,
    pub scene_cuts_per_minute: Option<f64>,
    pub audio_sample_rate: Option<u32>,
    pub audio_rms_dbfs: Option<f64>,
    pub audio_clipped_fraction: Option<f64>,
    pub audio_silence_fraction: Option<f64>,
    pub audio_snr_db: Option<f64>,
    pub kept: bool,
    pub drop_stage: Option<String>,
    pub drop_reason: Option<String>,
    pub drop_detail: Option<String>,
    pub duplicate_of: Option<String>,
    pub duplicate_distance: Option<f64>,
    pub duplicate_similarity: Option<f64>,
    /// The shard a kept sample is in (`shards/shard-000000.tar`).
    pub shard: Option<String>,
}

/// Rows, visited in ledger order; the report walks them twice (figures, then the rows its
/// galleries name).
pub trait RowSource {
    fn for_each_row(&self, visit: &mut dyn FnMut(ReportRow)) -> Result<(), ReportError>;
}

/// A run's records, still in memory at its end.
pub struct RecordRows<'a>(pub &'a [Record]);

impl RowSource for RecordRows<'_> {
    fn for_each_row(&self, visit: &mut dyn FnMut(ReportRow)) -> Result<(), ReportError> {
        for record in self.0 {
            visit(ReportRow::from_record(record));
        }
        Ok(())
    }
}

/// Rows already made (tests, benchmarks).
impl RowSource for Vec<ReportRow> {
    fn for_each_row(&self, visit: &mut dyn FnMut(ReportRow)) -> Result<(), ReportError> {
        for row in self {
            visit(row.clone());
        }
        Ok(())
    }
}

impl ReportRow {
    pub fn from_record(r: &Record) -> ReportRow {
        let m = &r.measurements;
        let drop = r.decision.dropped();
        let video = m.video.as_ref();
        let audio = m.audio.as_ref();
        ReportRow {
            id: r.id.clone(),
            key: r.key.clone(),
            name: r.name.clone(),
            source_uri: r.origin.uri.clone(),
            tar_member: r.origin.tar_member.clone(),
            manifest_uri: r.origin.manifest_uri.clone(),
            media_kind: m.media_kind.map(|kind| kind.as_str().to_string()),
            size_bytes: m.size_bytes,
            width: m.width,
            height: m.height,
            sharpness: m.sharpness,
            brightness: m.brightness,
            caption_words: m.caption_words,
            clip_score: m.clip_score,
            duration_seconds: m.duration_seconds,
            frame_timestamps: video
                .map(|v| v.frame_timestamps.clone())
                .unwrap_or_default(),
            motion_score: video.and_then(|v| v.motion_score),
            scene_cuts_per_minute: video.and_then(|v| v.scene_cuts_per_minute),
            audio_sample_rate: audio.map(|a| a.sample_rate),
            audio_rms_dbfs: audio.map(|a| a.rms_dbfs),
            audio_clipped_fraction: audio.map(|a| a.clipped_fraction),
            audio_silence_fraction: audio.map(|a| a.silence_fraction),
            audio_snr_db: audio.and_then(|a| a.snr_db),
            kept: drop.is_none(),
            drop_stage: drop.map(|d| d.stage.as_str().to_string()),
            drop_reason: drop.map(|d| d.reason.as_str().to_string()),
            drop_detail: drop.map(|d| d.detail.clone()),
            duplicate_of: drop.and_then(|d| d.duplicate_of.clone()),
            duplicate_distance: drop.and_then(|d| d.duplicate_distance),
            duplicate_similarity: drop.and_then(|d| d.duplicate_similarity),
            shard: r.shard.clone(),
        }
    }
}

/// Ledger Parquet files (their bytes), read batch by batch.
pub struct LedgerFiles(pub Vec<bytes::Bytes>);

impl RowSource for LedgerFiles {
    fn for_each_row(&self, visit: &mut dyn FnMut(ReportRow)) -> Result<(), ReportError> {
        for file in &self.0 {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                file.clone(),
            )
            .and_then(|b| b.with_batch_size(8192).build())
            .map_err(|e| ReportError::Ledger(e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| ReportError::Ledger(e.to_string()))?;
                rows_of_batch(&batch, visit)?;
            }
        }
        Ok(())
    }
}

/// The rows of one ledger record batch. Columns are looked up by name, so a ledger with
/// columns added later still reads; a missing required column is an error naming it.
fn rows_of_batch(batch: &RecordBatch, visit: &mut dyn FnMut(ReportRow)) -> Result<(), ReportError> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| ReportError::Ledger(format!("the ledger has no `{name}` column")))
    };
    let text = |name: &str| -> Result<_, ReportError> {
        column(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| ReportError::Ledger(format!("ledger column `{name}` is not text")))
    };
    let float = |name: &str| -> Result<_, ReportError> {
        column(name)?
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| ReportError::Ledger(format!("ledger column `{name}` is not f64")))
    };
    let uint32 = |name: &str| -> Result<_, ReportError> {
        column(name)?
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| ReportError::Ledger(format!("ledger column `{name}` is not u32")))
    };
    let (id, key, name, uri) = (
        text("id")?,
        text("key")?,
        text("name")?,
        text("source_uri")?,
    );
    let (member, manifest) = (text("tar_member")?, text("manifest_uri")?);
    let kind = text("media_kind")?;
    let size = column("size_bytes")?
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| ReportError::Ledger("ledger column `size_bytes` is not u64".into()))?;
    let (width, height, words) = (
        uint32("width")?,
        uint32("height")?,
        uint32("caption_words")?,
    );
    let (sharpness, brightness, clip) = (
        float("sharpness")?,
        float("brightness")?,
        float("clip_score")?,
    );
    let (duration, motion, cuts) = (
        float("duration_seconds")?,
        float("motion_score")?,
        float("scene_cuts_per_minute")?,
    );
    let timestamps = column("frame_timestamps")?
        .as_list_opt::<i32>()
        .ok_or_else(|| {
            ReportError::Ledger("ledger column `frame_timestamps` is not a list".into())
        })?;
    let rate = uint32("audio_sample_rate")?;
    let (rms, clipped, silence, snr) = (
        float("audio_rms_dbfs")?,
        float("audio_clipped_fraction")?,
        float("audio_silence_fraction")?,
        float("audio_snr_db")?,
    );
    let (status, stage, reason, detail) = (
        text("status")?,
        text("drop_stage")?,
        text("drop_reason")?,
        text("drop_detail")?,
    );
    let (dup_of, dup_distance, dup_similarity) = (
        text("duplicate_of")?,
        float("duplicate_distance")?,
        float("duplicate_similarity")?,
    );
    let shard = text("shard")?;
    let s = |a: &arrow_array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    let f = |a: &arrow_array::Float64Array, i: usize| a.is_valid(i).then(|| a.value(i));
    let u = |a: &arrow_array::UInt32Array, i: usize| a.is_valid(i).then(|| a.value(i));
    for i in 0..batch.num_rows() {
        let frame_timestamps = if timestamps.is_valid(i) {
            timestamps
                .value(i)
                .as_primitive_opt::<Float64Type>()
                .map(|v| v.values().to_vec())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        visit(ReportRow {
            id: id.value(i).to_string(),
            key: key.value(i).to_string(),
            name: name.value(i).to_string(),
            source_uri: uri.value(i).to_string(),
            tar_member: s(member, i),
            manifest_uri: s(manifest, i),
            media_kind: s(kind, i),
            size_bytes: size.value(i),
            width: u(width, i),
            height: u(height, i),
            sharpness: f(sharpness, i),
            brightness: f(brightness, i),
            caption_words: u(words, i),
            clip_score: f(clip, i),
            duration_seconds: f(duration, i),
            frame_timestamps,
            motion_score: f(motion, i),
            scene_cuts_per_minute: f(cuts, i),
            audio_sample_rate: u(rate, i),
            audio_rms_dbfs: f(rms, i),
            audio_clipped_fraction: f(clipped, i),
            audio_silence_fraction: f(silence, i),
            audio_snr_db: f(snr, i),
            kept: status.value(i) == "kept",
            drop_stage: s(stage, i),
            drop_reason: s(reason, i),
            drop_detail: s(detail, i),
            duplicate_of: s(dup_of, i),
            duplicate_distance: f(dup_distance, i),
            duplicate_similarity: f(dup_similarity, i),
            shard: s(shard, i),
        });
    }
    Ok(())
}
