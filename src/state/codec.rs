//! How state objects are encoded: CBOR through `ciborium` (compact, self-describing, and
//! lossless for every `f64`, which JSON is not for NaN and infinities). Encoding only.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes a value; state values are plain data, so encoding cannot fail.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("state values encode to CBOR");
    out
}

/// Bytes that do not decode as the state object asked for.
#[derive(Debug, thiserror::Error)]
#[error("not a valid state object: {0}")]
pub struct NotState(#[from] ciborium::de::Error<std::io::Error>);

/// Decodes a value, saying what is wrong with bytes that are not one.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, NotState> {
    Ok(ciborium::from_reader(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{AudioMeasurements, Measurements, MediaKind, VideoMeasurements};
    use crate::record::{Decision, Drop, Reason, Record, Stage, StagedPart};
    use crate::source::Origin;
    use crate::state::UnitRecords;

    /// A record with every kind of field set, and floats that JSON would not carry exactly.
    fn full_record() -> Record {
        Record {
            id: "0:a/b.mp4".into(),
            key: "a_b".into(),
            name: "a/b.mp4".into(),
            origin: Origin {
                uri: "s3://bucket/a/b.mp4".into(),
                tar_member: Some("b.mp4".into()),
                manifest_uri: Some("s3://bucket/m.jsonl".into()),
                manifest_row: Some(7),
                etag: Some("\"etag\"".into()),
                final_uri: Some("https://example.org/b.mp4".into()),
                http_status: Some(200),
                part_changes: vec!["k1.aaa: extension cut to `aaa-1a2b`".into()],
            },
            measurements: Measurements {
                size_bytes: u64::MAX,
                sha256: Some("ab".repeat(32)),
                format: Some("mp4".into()),
                width: Some(1920),
                height: Some(1080),
                sharpness: Some(0.1 + 0.2),
                brightness: Some(f64::MIN_POSITIVE),
                clipped_fraction: Some(-0.0),
                phash: Some(u64::MAX - 1),
                dhash: Some(1 << 63),
                caption_chars: Some(12),
                caption_words: Some(3),
                caption_tokens: Some(5),
                caption_truncated: Some(false),
                clip_score: Some(0.312_345_678_901_234_5),
                clip_note: Some("not scored: no caption".into()),
                clip_model: Some("clip-tiny".into()),
                clip_weights_sha256: Some("cd".repeat(32)),
                media_kind: Some(MediaKind::Video),
                container: Some("mov,mp4,m4a,3gp,3g2,mj2".into()),
                duration_seconds: Some(f64::INFINITY),
                video: Some(VideoMeasurements {
                    codec: "h264".into(),
                    fps: Some(29.97),
                    decoded_frames: 300,
                    frame_timestamps: vec![0.0, 1.0 / 3.0, 2.5e-300],
                    frame_scene_cut: vec![true, false, true],
                    frame_sharpness: vec![1.5, f64::NEG_INFINITY, 3.0],
                    frame_brightness: vec![10.0, 20.0, 30.0],
                    frame_phashes: vec![0, u64::MAX, 12345],
                    sharpness_min: Some(1.5),
                    sharpness_mean: None,
                    scene_cuts_per_minute: Some(2.0),
                    motion_score: Some(0.7),
                }),
                audio: Some(AudioMeasurements {
                    codec: "aac".into(),
                    sample_rate: 44_100,
                    channels: 2,
                    analysed_seconds: 30.0,
                    peak_dbfs: -0.1,
                    rms_dbfs: -20.0,
                    clipped_fraction: 0.0,
                    silence_fraction: 0.25,
                    snr_db: Some(42.0),
                    fingerprint: vec![0, u32::MAX, 7],
                }),
            },
            decision: Decision::Drop(Drop {
                stage: Stage::Dedup,
                reason: Reason::SemanticDuplicate,
                detail: "cosine 0.97 with 0:a.mp4".into(),
                duplicate_of: Some("0:a.mp4".into()),
                duplicate_distance: Some(2.0),
                duplicate_similarity: Some(0.97),
            }),
            staged: vec![StagedPart {
                unit: 3,
                ext: "mp4".into(),
                offset: 1 << 40,
                len: 12,
            }],
            shard: Some("shards/mp4-000001.tar".into()),
        }
    }

    #[test]
    fn records_round_trip_exactly() {
        let unit = UnitRecords {
            unit_id: "000003-0123456789abcdef".into(),
            records: vec![
                full_record(),
                Record {
                    id: "0:c.jpg".into(),
                    key: "c".into(),
                    name: "c.jpg".into(),
                    origin: Origin::default(),
                    measurements: Measurements::default(),
                    decision: Decision::Keep,
                    staged: Vec::new(),
                    shard: None,
                },
            ],
            input_errors: vec![(0, "cannot read m.jsonl".into())],
        };
        let bytes = encode(&unit);
        let back: UnitRecords = decode(&bytes).unwrap();
        assert_eq!(back, unit);
        // Bit for bit, not only equal: -0.0 stays negative.
        let clipped = back.records[0].measurements.clipped_fraction.unwrap();
        assert!(clipped.is_sign_negative());
        // NaN (which equality cannot check) comes back as NaN.
        let mut nan = full_record();
        nan.measurements.sharpness = Some(f64::NAN);
        let back: Record = decode(&encode(&nan)).unwrap();
        assert!(back.measurements.sharpness.unwrap().is_nan());
    }

    #[test]
    fn bytes_that_are_not_state_are_an_error() {
        let error = decode::<UnitRecords>(b"not cbor at all").unwrap_err();
        assert!(
            error.to_string().starts_with("not a valid state object"),
            "{error}"
        );
        let truncated = &encode(&full_record())[..40];
        assert!(decode::<Record>(truncated).is_err());
    }
}
