//! Deciding which samples to keep: the per-sample judgement ([`judge`]: the filters on size,
//! aspect ratio, caption, sharpness, brightness, video and audio limits, cheap before
//! expensive), global deduplication over the whole run (exact by sha256, then near by pHash,
//! video signatures and audio fingerprints, then semantic by embedding neighbours found in
//! `semantic`; the keep policy in [`run_wide`]) and the run-wide alignment threshold on CLIP
//! scores. Every drop says which stage dropped it, why, and the numbers behind it.
//!
//! The filters and dedup work on measurements only; `judge` calls `decode` and `measure` (in
//! that order) to get them, and never stages or writes anything.

pub mod against;
pub mod alignment;
pub mod audio_index;
pub mod dedup;
pub mod filters;
pub mod hamming_index;
pub mod judge;
pub mod pairs;
pub mod percentiles;
pub mod run_wide;
pub mod semantic;
pub mod summary;
pub mod sweeps;

pub use crate::record::decision::{Decision, Drop, Reason, Stage};

/// What the run-wide deciders' unit tests share: a kept record with one staged part, and a
/// config from a few TOML lines.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::config::Config;
    use crate::measure::Measurements;
    use crate::record::{Decision, Record, StagedPart};
    use crate::source::Origin;

    pub fn kept_record(id: &str, measurements: Measurements) -> Record {
        Record {
            id: id.into(),
            key: id.into(),
            name: id.into(),
            origin: Origin::default(),
            measurements,
            decision: Decision::Keep,
            staged: vec![StagedPart {
                unit: 0,
                ext: "jpg".into(),
                offset: 0,
                len: 1,
            }],
            shard: None,
        }
    }

    /// A valid config with `extra` TOML appended.
    pub fn config(extra: &str) -> Config {
        let text =
            format!("[run]\noutput = \"/tmp/unused\"\n[[inputs]]\nuri = \"/tmp/unused\"\n{extra}");
        Config::from_toml_str(&text, "test", &[]).unwrap()
    }
}
