//! The per-sample record: what the run knows about one sample as it moves through the stages
//! (where it came from, its measurements, the decision, where its parts are staged and the
//! shard it went into). Made when a sample is measured, decided on by `decide`, written by
//! `write`. Plain data: no stage logic lives here, and it imports only the stages before
//! `decide` (`source`, `measure`).

pub mod decision;

use crate::measure::Measurements;
pub use crate::measure::MediaKind;
use crate::source::Origin;
pub use decision::{Decision, Drop, Reason, Stage};

/// Everything the later stages need to know about one sample.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub id: String,
    /// The WebDataset key; made unique among kept samples when shards are written.
    pub key: String,
    pub name: String,
    pub origin: Origin,
    pub measurements: Measurements,
    pub decision: Decision,
    /// The parts in staging, in output order (media first), for samples that may be kept.
    pub staged: Vec<StagedPart>,
    /// The shard a kept sample went into.
    pub shard: Option<String>,
}

impl Record {
    /// The sample's media kind, when its bytes were recognised.
    pub fn media_kind(&self) -> Option<MediaKind> {
        self.measurements.media_kind
    }

    /// Drops the sample: the decision says why, and its staged parts are forgotten.
    pub fn drop_with(&mut self, drop: Drop) {
        self.decision = Decision::Drop(drop);
        self.staged.clear();
    }
}

/// A part stored in a staging file (`write::staging`, then the unit's staged file in `state`):
/// its unit, its extension and its byte range in that unit's file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StagedPart {
    /// The work unit whose staged file holds the part (`plan::units`), by ordinal.
    #[serde(default)]
    pub unit: u32,
    pub ext: String,
    pub offset: u64,
    pub len: u64,
}
