//! The persisted index of a version, `versions/NNNNNN/index/samples.parquet`: one row per
//! sample kept in the corpus as of that version (cumulative over incremental versions), in id
//! order, with where it is (`version`, `shard`) and what dedup compares (sha256, pHash, video
//! signature, audio fingerprint), so that a later run dedups against the corpus
//! (`decide::against`) and `forget` finds samples without reading any shard. It does not hold
//! embeddings (they stay in `embeddings/`), nor dropped samples (the ledger has them).

use super::ledger_read::ReadError;
use arrow_array::{
    Array, ArrayRef, BinaryArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::sync::Arc;

use super::manifest::OutputFile;
use super::{put, WriteError};
use crate::decide::against::CorpusSample;
use crate::measure::MediaKind;
use crate::record::Record;
use crate::store::Location;

/// The index file's name, relative to its version's folder.
pub const SAMPLES_INDEX: &str = "index/samples.parquet";

/// The index rows of the kept `records` of version `version`, whose shards are in `folder`
/// (`versions/NNNNNN`).
pub fn samples_of(records: &[Record], version: u64, folder: &str) -> Vec<CorpusSample> {
    records
        .iter()
        .filter(|r| r.decision.is_keep())
        .filter_map(|r| {
            let m = &r.measurements;
            Some(CorpusSample {
                id: r.id.clone(),
                version: version as u32,
                shard: format!("{folder}/{}", r.shard.as_deref()?),
                key: r.key.clone(),
                sha256: m.sha256.clone().unwrap_or_default(),
                media_kind: m.media_kind,
                phash: m.phash.filter(|_| m.media_kind == Some(MediaKind::Image)),
                video_frames: m
                    .video
                    .as_ref()
                    .map(|v| (v.frame_timestamps.clone(), v.frame_phashes.clone())),
                audio_fingerprint: m.audio.as_ref().map(|a| a.fingerprint.clone()),
            })
        })
        .collect()
}

/// A video signature as bytes: per frame, its time (f64) then its pHash (u64), little-endian.
fn signature_bytes(times: &[f64], hashes: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(times.len() * 16);
    for (t, h) in times.iter().zip(hashes) {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&h.to_le_bytes());
    }
    out
}

fn signature_of(bytes: &[u8]) -> (Vec<f64>, Vec<u64>) {
    bytes
        .chunks_exact(16)
        .map(|c| {
            let (t, h) = c.split_at(8);
            (
                f64::from_le_bytes(t.try_into().expect("8 bytes")),
                u64::from_le_bytes(h.try_into().expect("8 bytes")),
            )
        })
        .unzip()
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("version", DataType::UInt32, false),
        Field::new("shard", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("sha256", DataType::Utf8, false),
        Field::new("media_kind", DataType::Utf8, true),
        Field::new("phash", DataType::UInt64, true),
        Field::new("video_signature", DataType::Binary, true),
        Field::new("audio_fingerprint", DataType::Binary, true),
    ])
}

/// The index as one Parquet file (rows as given).
pub fn to_parquet(samples: &[CorpusSample]) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let strings = |f: fn(&CorpusSample) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(samples.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        strings(|s| &s.id),
        Arc::new(UInt32Array::from_iter_values(
            samples.iter().map(|s| s.version),
        )),
        strings(|s| &s.shard),
        strings(|s| &s.key),
        strings(|s| &s.sha256),
        Arc::new(StringArray::from_iter(
            samples.iter().map(|s| s.media_kind.map(MediaKind::as_str)),
        )),
        Arc::new(UInt64Array::from_iter(samples.iter().map(|s| s.phash))),
        Arc::new(BinaryArray::from_iter(samples.iter().map(|s| {
            s.video_frames.as_ref().map(|(t, h)| signature_bytes(t, h))
        }))),
        Arc::new(BinaryArray::from_iter(samples.iter().map(|s| {
            s.audio_fingerprint
                .as_ref()
                .map(|f| f.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
        }))),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema()), columns)?;
    super::parquet_file(&batch)
}

/// The rows of an index file.
pub fn from_parquet(bytes: Vec<u8>) -> Result<Vec<CorpusSample>, ReadError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?.build()?;
    let mut samples = Vec::new();
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| ReadError::NoColumn(name.to_string()))
        };
        let wrong = |name: &str, expected| ReadError::WrongType {
            column: name.to_string(),
            expected,
        };
        let strings = |name: &str| -> Result<StringArray, ReadError> {
            column(name)?
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| wrong(name, "string"))
        };
        let binary = |name: &str| -> Result<BinaryArray, ReadError> {
            column(name)?
                .as_any()
                .downcast_ref::<BinaryArray>()
                .cloned()
                .ok_or_else(|| wrong(name, "binary"))
        };
        let (id, shard, key, sha256, kind) = (
            strings("id")?,
            strings("shard")?,
            strings("key")?,
            strings("sha256")?,
            strings("media_kind")?,
        );
        let version = column("version")?
            .as_any()
            .downcast_ref::<UInt32Array>()
            .cloned()
            .ok_or_else(|| wrong("version", "uint32"))?;
        let phash = column("phash")?
            .as_any()
            .downcast_ref::<UInt64Array>()
            .cloned()
            .ok_or_else(|| wrong("phash", "uint64"))?;
        let (video, audio) = (binary("video_signature")?, binary("audio_fingerprint")?);
        for i in 0..batch.num_rows() {
            let media_kind = match kind.is_valid(i).then(|| kind.value(i)) {
                Some("image") => Some(MediaKind::Image),
                Some("video") => Some(MediaKind::Video),
                Some("audio") => Some(MediaKind::Audio),
                _ => None,
            };
            samples.push(CorpusSample {
                id: id.value(i).to_string(),
                version: version.value(i),
                shard: shard.value(i).to_string(),
                key: key.value(i).to_string(),
                sha256: sha256.value(i).to_string(),
                media_kind,
                phash: phash.is_valid(i).then(|| phash.value(i)),
                video_frames: video.is_valid(i).then(|| signature_of(video.value(i))),
                audio_fingerprint: audio.is_valid(i).then(|| {
                    audio
                        .value(i)
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect()
                }),
            });
        }
    }
    Ok(samples)
}

/// Sorts the rows (id, then version) and writes them as the version's index; returns the file
/// for the manifest.
pub fn write_index(
    dir: &Location,
    samples: &mut [CorpusSample],
    runtime: &tokio::runtime::Handle,
) -> Result<OutputFile, WriteError> {
    samples.sort_by(|a, b| a.id.cmp(&b.id).then(a.version.cmp(&b.version)));
    let bytes = to_parquet(samples).map_err(WriteError::Ledger)?;
    let file = OutputFile::of(SAMPLES_INDEX, samples.len() as u64, &bytes);
    runtime.block_on(put(dir, SAMPLES_INDEX, bytes))?;
    Ok(file)
}

/// The index of version `number` of the output at `root` (`None` when that version has no
/// index: it was written before indexes were).
pub async fn read_index(
    root: &Location,
    number: u64,
) -> Result<Option<Vec<CorpusSample>>, WriteError> {
    let folder = super::version::folder_of(number);
    let location = root.child(&format!("{folder}/{SAMPLES_INDEX}"));
    let bytes = match location.store.get(&location.path).await {
        Ok(object) => object.bytes().await,
        Err(e) => Err(e),
    };
    match bytes {
        Ok(bytes) => from_parquet(bytes.to_vec())
            .map(Some)
            .map_err(|e| WriteError::Version {
                uri: location.uri(),
                message: format!("not an mmcurate index: {e}"),
            }),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(WriteError::Store {
            uri: location.uri(),
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_rows_round_trip_through_parquet() {
        let samples = vec![
            CorpusSample {
                id: "0:a.jpg".into(),
                version: 1,
                shard: "versions/000001/shards/jpg-000000.tar".into(),
                key: "a".into(),
                sha256: "ab".repeat(32),
                media_kind: Some(MediaKind::Image),
                phash: Some(0xdead_beef_0000_0001),
                video_frames: None,
                audio_fingerprint: None,
            },
            CorpusSample {
                id: "0:v.mp4".into(),
                version: 2,
                shard: "versions/000002/shards/mp4-000003.tar".into(),
                key: "v".into(),
                sha256: "cd".repeat(32),
                media_kind: Some(MediaKind::Video),
                phash: None,
                video_frames: Some((vec![0.0, 0.5, 1.25], vec![1, u64::MAX, 42])),
                audio_fingerprint: Some(vec![7, u32::MAX]),
            },
        ];
        let bytes = to_parquet(&samples).unwrap();
        assert_eq!(from_parquet(bytes).unwrap(), samples);
    }
}
