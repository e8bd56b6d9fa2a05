//! The lineage of an output: every version folder with what its manifest says made it
//! (`made_by`, parent, counts, config hash, model digests), and the samples that entered or
//! left the kept set between two versions, from their ledgers. Reading only
//! (`mmcurate inspect OUTPUT --history [--diff A B]`).

use super::diff::{diff, DiffRow};
use super::ledger_read::version_ledger;
use super::version::{folder_of, list_versions, read_current, read_manifest};
use super::WriteError;
use crate::store::Location;

/// One version of the output, as its manifest records it.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionEntry {
    pub number: u64,
    pub current: bool,
    /// `None` for a folder without a manifest (a run that stopped before its commit).
    pub manifest: Option<serde_json::Value>,
}

impl VersionEntry {
    /// `run`, `incremental`, `reenrich` or `forget` (`run` for manifests written before
    /// `made_by` was recorded).
    pub fn made_by(&self) -> &str {
        self.manifest
            .as_ref()
            .and_then(|m| m["made_by"].as_str())
            .unwrap_or("run")
    }
}

/// Every version folder of the output at `root`, oldest first.
pub async fn versions(root: &Location) -> Result<Vec<VersionEntry>, WriteError> {
    let current = read_current(root).await?.map(|p| p.version);
    let mut entries = Vec::new();
    for number in list_versions(root).await? {
        entries.push(VersionEntry {
            number,
            current: Some(number) == current,
            manifest: read_manifest(&root.child(&folder_of(number))).await,
        });
    }
    Ok(entries)
}

/// The samples kept in exactly one of versions `a` and `b` (entered: kept in `b` only).
pub async fn diff_versions(root: &Location, a: u64, b: u64) -> Result<Vec<DiffRow>, WriteError> {
    let old = ledger_of(root, a).await?;
    let new = ledger_of(root, b).await?;
    Ok(diff(&old, &new))
}

async fn ledger_of(
    root: &Location,
    number: u64,
) -> Result<Vec<super::ledger_read::LedgerRow>, WriteError> {
    let dir = root.child(&folder_of(number));
    let unreadable = |message: String| WriteError::Version {
        uri: dir.uri(),
        message,
    };
    let manifest = read_manifest(&dir)
        .await
        .ok_or_else(|| unreadable(format!("version {number} has no readable manifest.json")))?;
    version_ledger(&dir, &manifest)
        .await
        .map_err(|e| unreadable(e.to_string()))
}
