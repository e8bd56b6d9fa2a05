//! Work units: the plan's inputs cut into the pieces a run measures, commits and resumes by.
//! One unit per `.tar` shard; loose files and manifest rows in batches of `run.unit_size`, in
//! plan order. Each unit has an ordinal (its place in the run) and a stable id derived from
//! its input, its ordinal and the names, sizes and etags of what it covers, so a unit whose
//! objects changed is a different unit. Only the cutting: nothing here fetches or stores.

use sha2::{Digest, Sha256};
use std::ops::Range;

use super::{Plan, Units};

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkUnit {
    /// Its place among all the run's units, from 0, in plan order.
    pub ordinal: usize,
    /// The `[[inputs]]` index it belongs to.
    pub input: usize,
    pub span: UnitSpan,
    /// `<ordinal, 6 digits>-<16 hex of the digest of what it covers>`.
    pub id: String,
}

/// What a unit covers in its input's [`Units`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitSpan {
    /// Loose media objects (with their sidecars), by index.
    Files(Range<usize>),
    /// One `.tar` shard, by index.
    Shard(usize),
    /// Rows of one manifest file, by index of the manifest and of its rows.
    ManifestRows { manifest: usize, rows: Range<usize> },
}

/// Cuts the plan into units of at most `unit_size` objects or rows (`unit_size` ≥ 1).
pub fn work_units(plan: &Plan, unit_size: usize) -> Vec<WorkUnit> {
    let size = unit_size.max(1);
    let mut units = Vec::new();
    for input in &plan.inputs {
        let mut push = |span: UnitSpan, covered: String| {
            let ordinal = units.len();
            let mut hasher = Sha256::new();
            hasher.update(format!("{}\t{ordinal}\n", input.index));
            hasher.update(covered.as_bytes());
            let digest = hex::encode(hasher.finalize());
            units.push(WorkUnit {
                ordinal,
                input: input.index,
                span,
                id: format!("{ordinal:06}-{}", &digest[..16]),
            });
        };
        match &input.units {
            Units::Files(files) => {
                for start in (0..files.len()).step_by(size) {
                    let range = start..(start + size).min(files.len());
                    let mut covered = String::new();
                    for file in &files[range.clone()] {
                        for object in std::iter::once(&file.media).chain(&file.sidecars) {
                            covered.push_str(&object_line(object));
                        }
                    }
                    push(UnitSpan::Files(range), covered);
                }
            }
            Units::Shards(shards) => {
                for (index, shard) in shards.iter().enumerate() {
                    push(UnitSpan::Shard(index), object_line(shard));
                }
            }
            Units::Manifests(manifests) => {
                for (m, manifest) in manifests.iter().enumerate() {
                    for start in (0..manifest.rows.len()).step_by(size) {
                        let rows = start..(start + size).min(manifest.rows.len());
                        let mut covered = format!("{}\n", manifest.relative);
                        for row in &manifest.rows[rows.clone()] {
                            let columns = serde_json::to_string(&row.columns).unwrap_or_default();
                            covered.push_str(&format!(
                                "{}\t{}\t{}\t{columns}\t{}\n",
                                row.row,
                                row.url.as_deref().unwrap_or(""),
                                row.caption.as_deref().unwrap_or(""),
                                row.error.as_deref().unwrap_or("")
                            ));
                        }
                        push(UnitSpan::ManifestRows { manifest: m, rows }, covered);
                    }
                }
            }
        }
    }
    units
}

fn object_line(object: &object_store::ObjectMeta) -> String {
    format!(
        "{}\t{}\t{}\n",
        object.location,
        object.size,
        object.e_tag.as_deref().unwrap_or("")
    )
}

/// Which units a slice `index` of `count` measures: those whose ordinal is `index` modulo
/// `count`, so slices are balanced and the same whatever else runs.
pub fn in_slice(unit: &WorkUnit, count: usize, index: usize) -> bool {
    unit.ordinal % count.max(1) == index
}
