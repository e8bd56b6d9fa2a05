//! The ledger: one Parquet row per input sample, kept or dropped, with its provenance, every
//! measurement and the decision. "Why is this sample missing?" is answered from it alone.

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, ListBuilder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use std::sync::Arc;

use super::Record;
use crate::measure::MEASURE_VERSION;

/// A nullable list column; its items are never null (arrow's default item field, `item`).
fn list(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, true))),
        true,
    )
}

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
        utf8("final_uri", true),
        Field::new("http_status", DataType::UInt32, true),
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
        utf8("media_kind", true),
        utf8("container", true),
        Field::new("duration_seconds", DataType::Float64, true),
        utf8("video_codec", true),
        Field::new("fps", DataType::Float64, true),
        Field::new("frames_decoded", DataType::UInt64, true),
        list("frame_timestamps", DataType::Float64),
        list("frame_phashes", DataType::Utf8),
        list("frame_sharpness", DataType::Float64),
        Field::new("sharpness_min", DataType::Float64, true),
        Field::new("scene_cuts_per_minute", DataType::Float64, true),
        Field::new("motion_score", DataType::Float64, true),
        utf8("audio_codec", true),
        Field::new("audio_sample_rate", DataType::UInt32, true),
        Field::new("audio_channels", DataType::UInt32, true),
        Field::new("audio_analysed_seconds", DataType::Float64, true),
        Field::new("audio_peak_dbfs", DataType::Float64, true),
        Field::new("audio_rms_dbfs", DataType::Float64, true),
        Field::new("audio_clipped_fraction", DataType::Float64, true),
        Field::new("audio_silence_fraction", DataType::Float64, true),
        Field::new("audio_snr_db", DataType::Float64, true),
        list("audio_fingerprint", DataType::UInt32),
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
    let mut final_uri = strings();
    let mut http_status = UInt32Builder::with_capacity(n);
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
    let floats = || Float64Builder::with_capacity(n);
    let (mut media_kind, mut container, mut video_codec, mut audio_codec) =
        (strings(), strings(), strings(), strings());
    let (mut duration, mut fps, mut sharpness_min, mut cuts, mut motion) =
        (floats(), floats(), floats(), floats(), floats());
    let mut frames_decoded = UInt64Builder::with_capacity(n);
    let mut frame_timestamps = ListBuilder::new(Float64Builder::new());
    let mut frame_phashes = ListBuilder::new(StringBuilder::new());
    let mut frame_sharpness = ListBuilder::new(Float64Builder::new());
    let (mut sample_rate, mut channels) = (uint32(), uint32());
    let (mut analysed, mut peak, mut rms, mut audio_clipped, mut silence, mut snr) =
        (floats(), floats(), floats(), floats(), floats(), floats());
    let mut fingerprint = ListBuilder::new(UInt32Builder::new());

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
        final_uri.append_option(r.origin.final_uri.as_deref());
        http_status.append_option(r.origin.http_status.map(u32::from));
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
        media_kind.append_option(m.media_kind);
        container.append_option(m.container.as_deref());
        duration.append_option(m.duration_seconds);
        let v = m.video.as_ref();
        video_codec.append_option(v.map(|v| v.codec.as_str()));
        fps.append_option(v.and_then(|v| v.fps));
        frames_decoded.append_option(v.map(|v| v.decoded_frames));
        match v {
            Some(v) => {
                frame_timestamps.values().append_slice(&v.frame_timestamps);
                frame_timestamps.append(true);
                for h in &v.frame_phashes {
                    frame_phashes.values().append_value(format!("{h:016x}"));
                }
                frame_phashes.append(true);
                frame_sharpness.values().append_slice(&v.frame_sharpness);
                frame_sharpness.append(true);
            }
            None => {
                frame_timestamps.append_null();
                frame_phashes.append_null();
                frame_sharpness.append_null();
            }
        }
        sharpness_min.append_option(v.and_then(|v| v.sharpness_min));
        cuts.append_option(v.and_then(|v| v.scene_cuts_per_minute));
        motion.append_option(v.and_then(|v| v.motion_score));
        let a = m.audio.as_ref();
        audio_codec.append_option(a.map(|a| a.codec.as_str()));
        sample_rate.append_option(a.map(|a| a.sample_rate));
        channels.append_option(a.map(|a| a.channels));
        analysed.append_option(a.map(|a| a.analysed_seconds));
        peak.append_option(a.map(|a| a.peak_dbfs));
        rms.append_option(a.map(|a| a.rms_dbfs));
        audio_clipped.append_option(a.map(|a| a.clipped_fraction));
        silence.append_option(a.map(|a| a.silence_fraction));
        snr.append_option(a.and_then(|a| a.snr_db));
        match a {
            Some(a) => {
                fingerprint.values().append_slice(&a.fingerprint);
                fingerprint.append(true);
            }
            None => fingerprint.append_null(),
        }
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
        Arc::new(final_uri.finish()),
        Arc::new(http_status.finish()),
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
        Arc::new(media_kind.finish()),
        Arc::new(container.finish()),
        Arc::new(duration.finish()),
        Arc::new(video_codec.finish()),
        Arc::new(fps.finish()),
        Arc::new(frames_decoded.finish()),
        Arc::new(frame_timestamps.finish()),
        Arc::new(frame_phashes.finish()),
        Arc::new(frame_sharpness.finish()),
        Arc::new(sharpness_min.finish()),
        Arc::new(cuts.finish()),
        Arc::new(motion.finish()),
        Arc::new(audio_codec.finish()),
        Arc::new(sample_rate.finish()),
        Arc::new(channels.finish()),
        Arc::new(analysed.finish()),
        Arc::new(peak.finish()),
        Arc::new(rms.finish()),
        Arc::new(audio_clipped.finish()),
        Arc::new(silence.finish()),
        Arc::new(snr.finish()),
        Arc::new(fingerprint.finish()),
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
