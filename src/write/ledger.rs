//! The ledger schema, defined once: one [`Column`] per field of the per-sample record, with its
//! name, its Arrow type and how it is read from the [`Record`]. The Parquet ledger (one row per
//! input sample, kept or dropped: "why is this sample missing?" is answered from it alone), the
//! `"mmcurate"` object of each shard's `.json` (same names) and `mmcurate inspect` all use this
//! table; the README's "Ledger columns" table documents it, and a test keeps the two equal.

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, ListBuilder, PrimitiveBuilder, StringBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::types::{Float64Type, UInt32Type};
use arrow_array::ArrowPrimitiveType;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

use crate::measure::{MediaKind, MEASURE_VERSION};
use crate::record::Record;

/// Where a column goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The ledger, and the top level of the `.json`'s `"mmcurate"` object (identity and
    /// provenance).
    Both,
    /// The ledger, and `"mmcurate"."measurements"` in the `.json`.
    BothMeasurement,
    /// The ledger only: the decision and the shard (a shard holds kept samples only, and the
    /// `.json` is written before its shard is named), and the audio fingerprint (large).
    LedgerOnly,
    /// `"mmcurate"."measurements"` in the `.json` only: per-frame details the ledger leaves out.
    JsonMeasurement,
}

/// How a column's value is read from a record (`None`: null); the variant gives the Arrow type.
#[derive(Clone, Copy)]
pub enum Read {
    Utf8(for<'a> fn(&'a Record) -> Option<Cow<'a, str>>),
    UInt64(fn(&Record) -> Option<u64>),
    UInt32(fn(&Record) -> Option<u32>),
    Float64(fn(&Record) -> Option<f64>),
    Boolean(fn(&Record) -> Option<bool>),
    ListFloat64(for<'a> fn(&'a Record) -> Option<&'a [f64]>),
    ListUInt32(for<'a> fn(&'a Record) -> Option<&'a [u32]>),
    ListBoolean(for<'a> fn(&'a Record) -> Option<&'a [bool]>),
    /// 64-bit hashes, written as 16 hex digits each.
    ListHex64(for<'a> fn(&'a Record) -> Option<&'a [u64]>),
}

/// One column of the ledger schema.
#[derive(Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub nullable: bool,
    pub read: Read,
    pub placement: Placement,
}

impl Column {
    /// The Arrow type of the column.
    pub fn data_type(&self) -> DataType {
        let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
        match self.read {
            Read::Utf8(_) => DataType::Utf8,
            Read::UInt64(_) => DataType::UInt64,
            Read::UInt32(_) => DataType::UInt32,
            Read::Float64(_) => DataType::Float64,
            Read::Boolean(_) => DataType::Boolean,
            Read::ListFloat64(_) => list(DataType::Float64),
            Read::ListUInt32(_) => list(DataType::UInt32),
            Read::ListBoolean(_) => list(DataType::Boolean),
            Read::ListHex64(_) => list(DataType::Utf8),
        }
    }

    pub fn in_ledger(&self) -> bool {
        self.placement != Placement::JsonMeasurement
    }

    /// The value of this column for one record, as JSON (`Null` for null).
    pub fn json(&self, record: &Record) -> Value {
        fn list<T: Into<Value> + Copy>(items: Option<&[T]>) -> Value {
            items.map_or(Value::Null, |items| {
                Value::Array(items.iter().map(|&x| x.into()).collect())
            })
        }
        match self.read {
            Read::Utf8(read) => read(record).map_or(Value::Null, |s| Value::String(s.into_owned())),
            Read::UInt64(read) => read(record).map_or(Value::Null, Value::from),
            Read::UInt32(read) => read(record).map_or(Value::Null, Value::from),
            Read::Float64(read) => read(record).map_or(Value::Null, Value::from),
            Read::Boolean(read) => read(record).map_or(Value::Null, Value::from),
            Read::ListFloat64(read) => list(read(record)),
            Read::ListUInt32(read) => list(read(record)),
            Read::ListBoolean(read) => list(read(record)),
            Read::ListHex64(read) => read(record).map_or(Value::Null, |hashes| {
                Value::Array(hashes.iter().map(|h| Value::String(hex64(*h))).collect())
            }),
        }
    }
}

fn hex64(h: u64) -> String {
    format!("{h:016x}")
}

fn borrowed(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(Cow::Borrowed)
}

/// The `status` column: `kept` or `dropped`.
pub const STATUS: &str = "status";
/// The `drop_reason` column.
pub const DROP_REASON: &str = "drop_reason";

/// Every column, in the ledger's order.
pub static COLUMNS: &[Column] = &[
    utf8("id", false, Placement::Both, |r| Some(Cow::Borrowed(&r.id))),
    utf8("key", false, Placement::Both, |r| {
        Some(Cow::Borrowed(&r.key))
    }),
    utf8("name", false, Placement::Both, |r| {
        Some(Cow::Borrowed(&r.name))
    }),
    utf8("source_uri", false, Placement::Both, |r| {
        Some(Cow::Borrowed(&r.origin.uri))
    }),
    utf8("tar_member", true, Placement::Both, |r| {
        borrowed(r.origin.tar_member.as_deref())
    }),
    utf8("manifest_uri", true, Placement::Both, |r| {
        borrowed(r.origin.manifest_uri.as_deref())
    }),
    column(
        "manifest_row",
        true,
        Placement::Both,
        Read::UInt64(|r| r.origin.manifest_row),
    ),
    utf8("etag", true, Placement::Both, |r| {
        borrowed(r.origin.etag.as_deref())
    }),
    utf8("final_uri", true, Placement::Both, |r| {
        borrowed(r.origin.final_uri.as_deref())
    }),
    column(
        "http_status",
        true,
        Placement::Both,
        Read::UInt32(|r| r.origin.http_status.map(u32::from)),
    ),
    utf8("part_changes", true, Placement::Both, |r| {
        let changes = &r.origin.part_changes;
        (!changes.is_empty()).then(|| Cow::Owned(changes.join("; ")))
    }),
    column(
        "size_bytes",
        false,
        M,
        Read::UInt64(|r| Some(r.measurements.size_bytes)),
    ),
    utf8("sha256", true, M, |r| {
        borrowed(r.measurements.sha256.as_deref())
    }),
    utf8("format", true, M, |r| {
        borrowed(r.measurements.format.as_deref())
    }),
    column("width", true, M, Read::UInt32(|r| r.measurements.width)),
    column("height", true, M, Read::UInt32(|r| r.measurements.height)),
    column(
        "sharpness",
        true,
        M,
        Read::Float64(|r| r.measurements.sharpness),
    ),
    column(
        "brightness",
        true,
        M,
        Read::Float64(|r| r.measurements.brightness),
    ),
    column(
        "clipped_fraction",
        true,
        M,
        Read::Float64(|r| r.measurements.clipped_fraction),
    ),
    utf8("phash", true, M, |r| {
        r.measurements.phash.map(|h| Cow::Owned(hex64(h)))
    }),
    utf8("dhash", true, M, |r| {
        r.measurements.dhash.map(|h| Cow::Owned(hex64(h)))
    }),
    column(
        "caption_chars",
        true,
        M,
        Read::UInt32(|r| r.measurements.caption_chars),
    ),
    column(
        "caption_words",
        true,
        M,
        Read::UInt32(|r| r.measurements.caption_words),
    ),
    column(
        "caption_tokens",
        true,
        M,
        Read::UInt32(|r| r.measurements.caption_tokens),
    ),
    column(
        "caption_truncated",
        true,
        M,
        Read::Boolean(|r| r.measurements.caption_truncated),
    ),
    column(
        "clip_score",
        true,
        M,
        Read::Float64(|r| r.measurements.clip_score),
    ),
    utf8("clip_note", true, M, |r| {
        borrowed(r.measurements.clip_note.as_deref())
    }),
    utf8("clip_model", true, M, |r| {
        borrowed(r.measurements.clip_model.as_deref())
    }),
    utf8("clip_weights_sha256", true, M, |r| {
        borrowed(r.measurements.clip_weights_sha256.as_deref())
    }),
    utf8("media_kind", true, M, |r| {
        r.measurements
            .media_kind
            .map(|k| Cow::Borrowed(MediaKind::as_str(k)))
    }),
    utf8("container", true, M, |r| {
        borrowed(r.measurements.container.as_deref())
    }),
    column(
        "duration_seconds",
        true,
        M,
        Read::Float64(|r| r.measurements.duration_seconds),
    ),
    utf8("video_codec", true, M, |r| {
        borrowed(r.measurements.video.as_ref().map(|v| v.codec.as_str()))
    }),
    column(
        "fps",
        true,
        M,
        Read::Float64(|r| r.measurements.video.as_ref()?.fps),
    ),
    column(
        "frames_decoded",
        true,
        M,
        Read::UInt64(|r| r.measurements.video.as_ref().map(|v| v.decoded_frames)),
    ),
    column(
        "frame_timestamps",
        true,
        M,
        Read::ListFloat64(|r| {
            r.measurements
                .video
                .as_ref()
                .map(|v| v.frame_timestamps.as_slice())
        }),
    ),
    column(
        "frame_phashes",
        true,
        M,
        Read::ListHex64(|r| {
            r.measurements
                .video
                .as_ref()
                .map(|v| v.frame_phashes.as_slice())
        }),
    ),
    column(
        "frame_sharpness",
        true,
        M,
        Read::ListFloat64(|r| {
            r.measurements
                .video
                .as_ref()
                .map(|v| v.frame_sharpness.as_slice())
        }),
    ),
    column(
        "sharpness_min",
        true,
        M,
        Read::Float64(|r| r.measurements.video.as_ref()?.sharpness_min),
    ),
    column(
        "scene_cuts_per_minute",
        true,
        M,
        Read::Float64(|r| r.measurements.video.as_ref()?.scene_cuts_per_minute),
    ),
    column(
        "motion_score",
        true,
        M,
        Read::Float64(|r| r.measurements.video.as_ref()?.motion_score),
    ),
    utf8("audio_codec", true, M, |r| {
        borrowed(r.measurements.audio.as_ref().map(|a| a.codec.as_str()))
    }),
    column(
        "audio_sample_rate",
        true,
        M,
        Read::UInt32(|r| r.measurements.audio.as_ref().map(|a| a.sample_rate)),
    ),
    column(
        "audio_channels",
        true,
        M,
        Read::UInt32(|r| r.measurements.audio.as_ref().map(|a| a.channels)),
    ),
    column(
        "audio_analysed_seconds",
        true,
        M,
        Read::Float64(|r| r.measurements.audio.as_ref().map(|a| a.analysed_seconds)),
    ),
    column(
        "audio_peak_dbfs",
        true,
        M,
        Read::Float64(|r| r.measurements.audio.as_ref().map(|a| a.peak_dbfs)),
    ),
    column(
        "audio_rms_dbfs",
        true,
        M,
        Read::Float64(|r| r.measurements.audio.as_ref().map(|a| a.rms_dbfs)),
    ),
    column(
        "audio_clipped_fraction",
        true,
        M,
        Read::Float64(|r| r.measurements.audio.as_ref().map(|a| a.clipped_fraction)),
    ),
    column(
        "audio_silence_fraction",
        true,
        M,
        Read::Float64(|r| r.measurements.audio.as_ref().map(|a| a.silence_fraction)),
    ),
    column(
        "audio_snr_db",
        true,
        M,
        Read::Float64(|r| r.measurements.audio.as_ref()?.snr_db),
    ),
    column(
        "audio_fingerprint",
        true,
        Placement::LedgerOnly,
        Read::ListUInt32(|r| {
            r.measurements
                .audio
                .as_ref()
                .map(|a| a.fingerprint.as_slice())
        }),
    ),
    utf8("measure_version", false, Placement::Both, |_| {
        Some(Cow::Borrowed(MEASURE_VERSION))
    }),
    utf8(STATUS, false, Placement::LedgerOnly, |r| {
        Some(Cow::Borrowed(if r.decision.is_keep() {
            "kept"
        } else {
            "dropped"
        }))
    }),
    utf8("drop_stage", true, Placement::LedgerOnly, |r| {
        r.decision
            .dropped()
            .map(|d| Cow::Borrowed(d.stage.as_str()))
    }),
    utf8(DROP_REASON, true, Placement::LedgerOnly, |r| {
        r.decision
            .dropped()
            .map(|d| Cow::Borrowed(d.reason.as_str()))
    }),
    utf8("drop_detail", true, Placement::LedgerOnly, |r| {
        borrowed(r.decision.dropped().map(|d| d.detail.as_str()))
    }),
    utf8("duplicate_of", true, Placement::LedgerOnly, |r| {
        borrowed(r.decision.dropped().and_then(|d| d.duplicate_of.as_deref()))
    }),
    column(
        "duplicate_distance",
        true,
        Placement::LedgerOnly,
        Read::Float64(|r| r.decision.dropped()?.duplicate_distance),
    ),
    column(
        "duplicate_similarity",
        true,
        Placement::LedgerOnly,
        Read::Float64(|r| r.decision.dropped()?.duplicate_similarity),
    ),
    utf8("shard", true, Placement::LedgerOnly, |r| {
        borrowed(r.shard.as_deref())
    }),
    // In the `.json` only (the ledger has the per-frame timestamps, pHashes and sharpness).
    column(
        "frame_scene_cut",
        true,
        JSON_ONLY,
        Read::ListBoolean(|r| {
            r.measurements
                .video
                .as_ref()
                .map(|v| v.frame_scene_cut.as_slice())
        }),
    ),
    column(
        "frame_brightness",
        true,
        JSON_ONLY,
        Read::ListFloat64(|r| {
            r.measurements
                .video
                .as_ref()
                .map(|v| v.frame_brightness.as_slice())
        }),
    ),
    column(
        "sharpness_mean",
        true,
        JSON_ONLY,
        Read::Float64(|r| r.measurements.video.as_ref()?.sharpness_mean),
    ),
];

const M: Placement = Placement::BothMeasurement;
const JSON_ONLY: Placement = Placement::JsonMeasurement;

const fn column(name: &'static str, nullable: bool, placement: Placement, read: Read) -> Column {
    Column {
        name,
        nullable,
        read,
        placement,
    }
}

const fn utf8(
    name: &'static str,
    nullable: bool,
    placement: Placement,
    read: for<'a> fn(&'a Record) -> Option<Cow<'a, str>>,
) -> Column {
    column(name, nullable, placement, Read::Utf8(read))
}

/// The ledger's columns, in order.
pub fn ledger_columns() -> impl Iterator<Item = &'static Column> {
    COLUMNS.iter().filter(|c| c.in_ledger())
}

/// The ledger's Arrow schema: [`ledger_columns`]' names and types.
pub fn schema() -> Schema {
    Schema::new(
        ledger_columns()
            .map(|c| Field::new(c.name, c.data_type(), c.nullable))
            .collect::<Vec<_>>(),
    )
}

/// A list column of primitive values (null where `read` gives `None`).
fn primitive_list<T: ArrowPrimitiveType>(
    records: &[Record],
    read: for<'a> fn(&'a Record) -> Option<&'a [T::Native]>,
) -> ArrayRef {
    let mut b = ListBuilder::new(PrimitiveBuilder::<T>::new());
    for r in records {
        match read(r) {
            Some(items) => {
                b.values().append_slice(items);
                b.append(true);
            }
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

/// One column of `records` as an Arrow array.
fn array(column: &Column, records: &[Record]) -> ArrayRef {
    let n = records.len();
    match column.read {
        Read::Utf8(read) => {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            records.iter().for_each(|r| b.append_option(read(r)));
            Arc::new(b.finish())
        }
        Read::UInt64(read) => {
            let mut b = UInt64Builder::with_capacity(n);
            records.iter().for_each(|r| b.append_option(read(r)));
            Arc::new(b.finish())
        }
        Read::UInt32(read) => {
            let mut b = UInt32Builder::with_capacity(n);
            records.iter().for_each(|r| b.append_option(read(r)));
            Arc::new(b.finish())
        }
        Read::Float64(read) => {
            let mut b = Float64Builder::with_capacity(n);
            records.iter().for_each(|r| b.append_option(read(r)));
            Arc::new(b.finish())
        }
        Read::Boolean(read) => {
            let mut b = BooleanBuilder::with_capacity(n);
            records.iter().for_each(|r| b.append_option(read(r)));
            Arc::new(b.finish())
        }
        Read::ListFloat64(read) => primitive_list::<Float64Type>(records, read),
        Read::ListUInt32(read) => primitive_list::<UInt32Type>(records, read),
        Read::ListBoolean(read) => {
            let mut b = ListBuilder::new(BooleanBuilder::new());
            for r in records {
                match read(r) {
                    Some(items) => {
                        b.values().append_slice(items);
                        b.append(true);
                    }
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Read::ListHex64(read) => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for r in records {
                match read(r) {
                    Some(hashes) => {
                        for h in hashes {
                            b.values().append_value(hex64(*h));
                        }
                        b.append(true);
                    }
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// Serialises records (in the order given) as one Parquet file.
pub fn to_parquet(records: &[Record]) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let columns: Vec<ArrayRef> = ledger_columns().map(|c| array(c, records)).collect();
    let batch = RecordBatch::try_new(Arc::new(schema()), columns)?;
    super::parquet_file(&batch)
}

/// mmcurate's part of a sample's `.json`: the columns placed there, under the ledger's names;
/// identity and provenance at the top, the measurements under `"measurements"`. Nulls are
/// left out: a value is there when it is known.
pub fn json_object(record: &Record) -> Map<String, Value> {
    let mut top = Map::new();
    let mut measurements = Map::new();
    for column in COLUMNS {
        let value = column.json(record);
        match column.placement {
            Placement::Both if !value.is_null() => {
                top.insert(column.name.to_string(), value);
            }
            Placement::BothMeasurement | Placement::JsonMeasurement if !value.is_null() => {
                measurements.insert(column.name.to_string(), value);
            }
            _ => {}
        }
    }
    top.insert("measurements".to_string(), Value::Object(measurements));
    top
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Measurements, VideoMeasurements};
    use crate::record::{Decision, Drop, Reason, Stage};
    use crate::source::Origin;
    use arrow_array::{Array, Float64Array, ListArray, StringArray, UInt64Array};

    fn readme_type(data_type: &DataType) -> String {
        match data_type {
            DataType::Utf8 => "string".into(),
            DataType::UInt64 => "uint64".into(),
            DataType::UInt32 => "uint32".into(),
            DataType::Float64 => "float64".into(),
            DataType::Boolean => "bool".into(),
            DataType::List(item) => format!("list<{}>", readme_type(item.data_type())),
            other => format!("{other:?}"),
        }
    }

    /// `(name, type)` of every column the README's "Ledger columns" table lists, in order.
    fn readme_columns() -> Vec<(String, String)> {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let table = readme
            .split("### Ledger columns")
            .nth(1)
            .expect("the README has a Ledger columns section");
        let mut out = Vec::new();
        for line in table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let names: Vec<&str> = cells[1].split(", ").map(|n| n.trim_matches('`')).collect();
            let types: Vec<&str> = cells[2].split(", ").collect();
            for (i, name) in names.iter().enumerate() {
                let ty = if types.len() == names.len() {
                    types[i]
                } else {
                    types[0]
                };
                out.push((name.to_string(), ty.to_string()));
            }
        }
        out
    }

    #[test]
    fn the_readme_documents_exactly_the_written_columns() {
        let written: Vec<(String, String)> = schema()
            .fields()
            .iter()
            .map(|f| {
                let optional = if f.is_nullable() { "?" } else { "" };
                (
                    f.name().clone(),
                    format!("{}{optional}", readme_type(f.data_type())),
                )
            })
            .collect();
        assert_eq!(readme_columns(), written);
        assert_eq!(written.len(), 60);
    }

    #[test]
    fn column_names_are_unique() {
        let mut names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COLUMNS.len());
    }

    fn records() -> Vec<Record> {
        let video = VideoMeasurements {
            codec: "h264".into(),
            decoded_frames: 12,
            frame_timestamps: vec![0.0, 1.5],
            frame_phashes: vec![0xabc, 0xdef],
            frame_scene_cut: vec![false, true],
            sharpness_mean: Some(33.0),
            ..VideoMeasurements::default()
        };
        let kept = Record {
            id: "0:a.mp4".into(),
            key: "a".into(),
            name: "a.mp4".into(),
            origin: Origin {
                uri: "file:///in/a.mp4".into(),
                ..Origin::default()
            },
            measurements: Measurements {
                size_bytes: 1234,
                media_kind: Some(MediaKind::Video),
                phash: Some(0x1f),
                video: Some(video),
                ..Measurements::default()
            },
            decision: Decision::Keep,
            staged: Vec::new(),
            shard: Some("shards/shard-000000.tar".into()),
        };
        let mut drop = Drop::new(
            Stage::Dedup,
            Reason::ExactDuplicate,
            "same bytes as 0:a.mp4",
        );
        drop.duplicate_of = Some("0:a.mp4".into());
        drop.duplicate_distance = Some(0.0);
        let dropped = Record {
            id: "0:b.mp4".into(),
            decision: Decision::Drop(drop),
            shard: None,
            ..kept.clone()
        };
        vec![kept, dropped]
    }

    #[test]
    fn parquet_rows_read_back_by_the_schema_names() {
        let bytes = to_parquet(&records()).unwrap();
        let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
        assert_eq!(batch.schema().as_ref(), &schema());
        let strings = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        assert_eq!(strings(STATUS).value(0), "kept");
        assert_eq!(strings(STATUS).value(1), "dropped");
        assert!(strings(DROP_REASON).is_null(0));
        assert_eq!(strings(DROP_REASON).value(1), "exact_duplicate");
        assert_eq!(strings("phash").value(0), "000000000000001f");
        assert_eq!(strings("media_kind").value(1), "video");
        assert_eq!(strings("measure_version").value(0), MEASURE_VERSION);
        let sizes = batch.column_by_name("size_bytes").unwrap();
        assert_eq!(
            sizes
                .as_any()
                .downcast_ref::<UInt64Array>()
                .unwrap()
                .value(0),
            1234
        );
        let distance = batch.column_by_name("duplicate_distance").unwrap();
        let distance = distance.as_any().downcast_ref::<Float64Array>().unwrap();
        assert!(distance.is_null(0) && distance.value(1) == 0.0);
        let phashes = batch.column_by_name("frame_phashes").unwrap();
        let phashes = phashes
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap()
            .value(0);
        let phashes = phashes.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(phashes.value(1), "0000000000000def");
        assert!(
            batch.column_by_name("frame_scene_cut").is_none(),
            "a .json-only column"
        );
    }

    #[test]
    fn the_json_object_uses_the_ledger_names() {
        let record = &records()[0];
        let json = json_object(record);
        assert_eq!(json["id"], "0:a.mp4");
        assert_eq!(json["source_uri"], "file:///in/a.mp4");
        assert!(!json.contains_key("tar_member"), "nulls are left out");
        assert!(!json.contains_key(STATUS) && !json.contains_key("shard"));
        let m = json["measurements"].as_object().unwrap();
        assert_eq!(m["frames_decoded"], 12);
        assert_eq!(
            m["frame_phashes"],
            serde_json::json!(["0000000000000abc", "0000000000000def"])
        );
        assert_eq!(m["frame_scene_cut"], serde_json::json!([false, true]));
        assert_eq!(m["media_kind"], "video");
        assert!(!m.contains_key("audio_fingerprint"));
        // Every name in the .json is a column's name.
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        for key in json.keys().filter(|k| *k != "measurements").chain(m.keys()) {
            assert!(names.contains(&key.as_str()), "{key}");
        }
    }
}
