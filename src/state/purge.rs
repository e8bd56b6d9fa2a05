//! Removing samples from the state (`mmcurate forget`): in every measure folder, the records
//! of the samples whose sha256 is given are taken out of their unit's records and their staged
//! bytes overwritten with zeros (so every other part keeps its offset and the unit stays
//! finished and reusable); the decide folders of a measure folder that held any are removed
//! (their decisions hold every record; a rerun decides again from the units); and any object
//! whose name holds one of the sha256s (a cache keyed by content) is removed, as are their
//! outputs in the model-output cache's segments (`model_outputs::purge`). It decides
//! nothing about which samples.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::collections::{BTreeSet, HashSet};

use super::{codec, get, put, store_error, StateError, UnitRecords, RECORDS_EXT, STAGED_EXT};
use crate::store::Location;

/// What a purge changed, paths relative to the output root.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Purged {
    /// Units whose records and staged bytes were rewritten.
    pub units: Vec<String>,
    /// Records taken out of them.
    pub records: u64,
    /// Objects removed (decide folders' files, content-keyed cache entries).
    pub removed: Vec<String>,
    /// Segments of the model-output cache rewritten (or removed) without their outputs.
    pub cache_segments: Vec<String>,
}

/// Purges the samples with these sha256s (hex) from `root/state/`.
pub async fn purge_samples(
    root: &Location,
    sha256s: &HashSet<String>,
) -> Result<Purged, StateError> {
    let state = super::sub(root, "state");
    let listed: Vec<_> = match state.store.list(Some(&state.path)).try_collect().await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(store_error(&state, e)),
    };
    let names: Vec<String> = listed.iter().map(|o| root.relative(&o.location)).collect();
    let mut purged = Purged::default();
    let mut touched_measures = BTreeSet::new();
    for name in names
        .iter()
        .filter(|n| n.ends_with(&format!(".{RECORDS_EXT}")))
    {
        let Some((folder, file)) = name.rsplit_once('/') else {
            continue;
        };
        let folder = root.child(folder);
        let Some(bytes) = get(&folder, file).await? else {
            continue;
        };
        let mut unit: UnitRecords =
            codec::decode(&bytes).map_err(|message| StateError::Corrupt {
                uri: root.child(name).uri(),
                message: message.to_string(),
            })?;
        let matches = |r: &crate::record::Record| {
            r.measurements
                .sha256
                .as_ref()
                .is_some_and(|s| sha256s.contains(s))
        };
        if !unit.records.iter().any(matches) {
            continue;
        }
        let staged_name = format!(
            "{}.{STAGED_EXT}",
            file.strip_suffix(&format!(".{RECORDS_EXT}"))
                .unwrap_or(file)
        );
        if let Some(mut staged) = get(&folder, &staged_name).await? {
            for part in unit
                .records
                .iter()
                .filter(|r| matches(r))
                .flat_map(|r| &r.staged)
            {
                let start = (part.offset as usize).min(staged.len());
                let end = (part.offset + part.len).min(staged.len() as u64) as usize;
                staged[start..end].fill(0);
            }
            put(&folder, &staged_name, staged).await?;
        }
        let before = unit.records.len();
        unit.records.retain(|r| !matches(r));
        purged.records += (before - unit.records.len()) as u64;
        put(&folder, file, codec::encode(&unit)).await?;
        purged.units.push(name.clone());
        if let Some((measure, _)) = name.split_once("/units/") {
            touched_measures.insert(format!("{measure}/decide-"));
        }
    }
    for name in &names {
        let decided = touched_measures
            .iter()
            .any(|m| name.starts_with(m.as_str()));
        let keyed = sha256s.iter().any(|s| name.contains(s.as_str()));
        if decided || keyed {
            let at = root.child(name);
            match at.store.delete(&at.path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    purged.removed.push(name.clone())
                }
                Err(e) => return Err(store_error(&at, e)),
            }
        }
    }
    purged.cache_segments = super::model_outputs::purge(root, sha256s).await?;
    Ok(purged)
}
