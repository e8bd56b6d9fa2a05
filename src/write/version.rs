//! Versions of an output. Every run writes a new folder `versions/NNNNNN/` (its manifest,
//! shards, ledger, embeddings and report; never rewritten) and makes it current in one atomic
//! step written last: `current.json` at the output root (local: temporary file, fsync, rename;
//! object store: one PUT), naming the version, its folder, its manifest and its file lists.
//! Readers go through `current.json`, so they always see one complete version. This module
//! opens and commits versions and finds the current one; it deletes nothing (`write::prune`).
//!
//! An output written before versions existed (`manifest.json` and `shards/` at the top, no
//! `current.json`) is read as version 0, and the first versioned run over it is version 1.

use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;

use super::manifest::RunManifest;
use super::ownership::{
    check_ours, list_root, OutputLock, CURRENT_LINK, CURRENT_NAME, VERSIONS_DIR,
};
use super::{put, WriteError};
use crate::config::OutputConfig;
use crate::store::Location;

/// `format` of `current.json`.
pub const POINTER_FORMAT: &str = "mmcurate-current/1";

/// A version being written: where its files go, and what it replaces.
#[derive(Debug)]
pub struct OutputVersion {
    /// The output root (`run.output`).
    pub root: Location,
    /// This version's number (the first is 1).
    pub number: u64,
    /// The version current when this one was opened (`None` for the first).
    pub parent: Option<u64>,
    /// `root/versions/NNNNNN`: every file of the version goes below it.
    pub dir: Location,
    /// `[output] keep_versions`: after the commit, keep this many committed versions (0: all).
    keep_versions: usize,
    /// Keeps other runs off the output until this version is committed or abandoned.
    _lock: Option<OutputLock>,
}

/// `current.json`: the commit pointer. Paths are relative to the output root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentPointer {
    pub format: String,
    pub version: u64,
    pub parent_version: Option<u64>,
    /// `versions/NNNNNN`.
    pub folder: String,
    /// `versions/NNNNNN/manifest.json`.
    pub manifest: String,
    pub committed_at: String,
    /// Kept samples in the shards.
    pub samples: u64,
    pub shards: Vec<String>,
    pub ledger: Vec<String>,
    pub embeddings: Vec<String>,
    /// The version's index files (`index/samples.parquet`); absent before indexes.
    #[serde(default)]
    pub index: Vec<String>,
}

/// The path from the output root of a file listed by version `listing` as `name`, held by
/// version `held_by` when given (a file an incremental or forget version keeps from an
/// earlier one), else by `listing` itself.
pub fn path_from_root(listing: u64, name: &str, held_by: Option<u64>) -> String {
    format!("{}/{name}", folder_of(held_by.unwrap_or(listing)))
}

/// `versions/NNNNNN` (six digits, more past 999999).
pub fn folder_of(number: u64) -> String {
    format!("{VERSIONS_DIR}/{number:06}")
}

impl OutputVersion {
    /// Opens the next version of the output at `root`, before any work: refuses an output that
    /// is not ours, takes the lock, and numbers the version one past the highest number in use
    /// (a folder a killed run left uncommitted keeps its number; it is reported).
    pub fn open(
        root: Location,
        options: &OutputConfig,
        runtime: &tokio::runtime::Handle,
    ) -> Result<OutputVersion, WriteError> {
        runtime.block_on(async {
            let listing = list_root(&root).await?;
            let has = |name: &str| listing.names.iter().any(|n| n == name);
            let old_layout = !has(CURRENT_NAME)
                && has("manifest.json")
                && read_old_layout_manifest(&root).await.is_some();
            check_ours(&root, &listing, old_layout)?;
            let lock = OutputLock::acquire(&root, runtime).await?;
            let current = read_current(&root).await?;
            let parent = current
                .as_ref()
                .map(|c| c.version)
                .or(old_layout.then_some(0));
            let folders = list_versions(&root).await?;
            for left in folders.iter().filter(|n| Some(**n) > parent) {
                tracing::warn!(
                    "{} was left by a run that stopped before its commit: readers do not see \
                     it, its number is not reused, and `mmcurate prune` removes its files",
                    root.child(&folder_of(*left)).uri()
                );
            }
            let number = folders
                .iter()
                .copied()
                .chain(parent)
                .max()
                .map_or(1, |n| n + 1);
            let mut version = OutputVersion::at(root, number, parent);
            version.keep_versions = options.keep_versions;
            version._lock = Some(lock);
            Ok(version)
        })
    }

    /// Refuses an output that is not ours, as [`OutputVersion::open`] does, without taking the
    /// lock or numbering a version: for the phases of a split run that neither number nor
    /// commit one (measure, write), which run on many nodes at once.
    pub fn check_ours(root: &Location, runtime: &tokio::runtime::Handle) -> Result<(), WriteError> {
        runtime.block_on(async {
            let listing = list_root(root).await?;
            let has = |name: &str| listing.names.iter().any(|n| n == name);
            let old_layout = !has(CURRENT_NAME)
                && has("manifest.json")
                && read_old_layout_manifest(root).await.is_some();
            check_ours(root, &listing, old_layout)
        })
    }

    /// Applies `[output] keep_versions` after the commit (what [`OutputVersion::open`] reads
    /// from the config; [`OutputVersion::at`] keeps all).
    pub fn keeping(mut self, keep_versions: usize) -> OutputVersion {
        self.keep_versions = keep_versions;
        self
    }

    /// Version `number` of `root`, replacing `parent`, without checks or lock: for a phase of a
    /// run whose number was chosen (and the output locked) by an earlier phase.
    pub fn at(root: Location, number: u64, parent: Option<u64>) -> OutputVersion {
        let dir = root.child(&folder_of(number));
        OutputVersion {
            root,
            number,
            parent,
            dir,
            keep_versions: 0,
            _lock: None,
        }
    }

    /// `versions/NNNNNN`.
    pub fn folder(&self) -> String {
        folder_of(self.number)
    }

    /// Makes this version current: writes `current.json` from its manifest (the manifest and
    /// every file it lists must be written), then, for a local output, points the `current`
    /// symlink at the folder. Retention is the caller's (`write::finish_run`).
    pub fn commit(
        &self,
        manifest: &RunManifest,
        runtime: &tokio::runtime::Handle,
    ) -> Result<CurrentPointer, WriteError> {
        let pointer = self.pointer(manifest);
        self.commit_pointer(pointer, runtime)
    }

    /// Makes this version current with `pointer` (its manifest and every file it lists must be
    /// written): for versions whose manifest is not a run's (`mmcurate forget`).
    pub fn commit_pointer(
        &self,
        pointer: CurrentPointer,
        runtime: &tokio::runtime::Handle,
    ) -> Result<CurrentPointer, WriteError> {
        let bytes = serde_json::to_vec_pretty(&pointer).expect("the pointer serialises");
        match self.root.local_path() {
            Some(dir) => {
                write_local_durably(&dir, CURRENT_NAME, &bytes).map_err(|e| WriteError::Store {
                    uri: self.root.child(CURRENT_NAME).uri(),
                    message: e.to_string(),
                })?;
                if let Err(e) = point_current_link(&dir, &self.folder()) {
                    tracing::warn!(
                        "the convenience link {}/{CURRENT_LINK} was not updated ({e}); \
                         current.json names the current version",
                        dir.display()
                    );
                }
            }
            None => runtime.block_on(put(&self.root, CURRENT_NAME, bytes))?,
        }
        tracing::info!("version {} committed: {}", self.number, self.dir.uri());
        Ok(pointer)
    }

    /// `[output] keep_versions` as the version was opened with (0: keep all).
    pub fn keep_versions(&self) -> usize {
        self.keep_versions
    }

    fn pointer(&self, manifest: &RunManifest) -> CurrentPointer {
        let n = self.number;
        let files = |list: &[super::manifest::OutputFile]| -> Vec<String> {
            list.iter()
                .map(|f| path_from_root(n, &f.name, f.version))
                .collect()
        };
        let samples = manifest
            .incremental
            .as_ref()
            .filter(|i| i.same_output)
            .map_or(manifest.counts.kept, |i| i.corpus_after);
        self.pointer_of(
            samples,
            manifest
                .shards
                .iter()
                .map(|s| path_from_root(n, &s.name, s.version))
                .collect(),
            files(&manifest.ledger),
            files(&manifest.embeddings),
            files(&manifest.index),
        )
    }

    /// The pointer to this version, with its file lists (paths from the output root).
    pub fn pointer_of(
        &self,
        samples: u64,
        shards: Vec<String>,
        ledger: Vec<String>,
        embeddings: Vec<String>,
        index: Vec<String>,
    ) -> CurrentPointer {
        let folder = self.folder();
        CurrentPointer {
            format: POINTER_FORMAT.to_string(),
            version: self.number,
            parent_version: self.parent,
            manifest: format!("{folder}/manifest.json"),
            committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            samples,
            shards,
            ledger,
            embeddings,
            index,
            folder,
        }
    }
}

/// Writes `dir/name` so that it is whole after a crash: a temporary file in the same folder,
/// fsync, rename over the name, fsync of the folder. (object_store's local `put` renames but
/// does not sync, which a commit pointer needs.)
fn write_local_durably(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Points `dir/current` at `folder` by renaming a new symlink over it; a `current` that is not
/// a symlink (someone's file or folder) is left alone.
fn point_current_link(dir: &std::path::Path, folder: &str) -> std::io::Result<()> {
    let link = dir.join(CURRENT_LINK);
    if let Ok(meta) = std::fs::symlink_metadata(&link) {
        if !meta.file_type().is_symlink() {
            return Err(std::io::Error::other(
                "a file or folder of that name is in the way",
            ));
        }
    }
    let temporary = dir.join(format!(".{CURRENT_LINK}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(folder, &temporary)?;
    std::fs::rename(&temporary, &link)
}

/// Where a file a manifest lists is: `version_dir/name`, or, for an entry with `version` (a
/// file kept from an earlier version), `versions/<version>/name` beside `version_dir`.
pub fn listed_file(version_dir: &Location, entry: &serde_json::Value) -> Option<Location> {
    let name = entry["name"].as_str()?;
    match entry["version"].as_u64() {
        None => Some(version_dir.child(name)),
        Some(number) => {
            let parts: Vec<_> = version_dir.path.parts().collect();
            let root: object_store::path::Path = parts[..parts.len().checked_sub(2)?]
                .iter()
                .cloned()
                .collect();
            Some(
                version_dir
                    .at(root)
                    .child(&format!("{}/{name}", folder_of(number))),
            )
        }
    }
}

/// The output's `current.json`, or `None` when there is none (nothing committed yet).
pub async fn read_current(root: &Location) -> Result<Option<CurrentPointer>, WriteError> {
    let location = root.child(CURRENT_NAME);
    let bytes = match location.store.get(&location.path).await {
        Ok(object) => object.bytes().await,
        Err(e) => Err(e),
    };
    match bytes {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| WriteError::Version {
                uri: location.uri(),
                message: format!("not an mmcurate commit pointer: {e}"),
            }),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(WriteError::Store {
            uri: location.uri(),
            message: e.to_string(),
        }),
    }
}

/// The numbers of the folders under `versions/` (committed or not).
pub async fn list_versions(root: &Location) -> Result<BTreeSet<u64>, WriteError> {
    let versions = root.child(VERSIONS_DIR);
    let parse = |name: &str| {
        (!name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()))
            .then(|| name.parse::<u64>().ok())
            .flatten()
    };
    let store_error = |message: String| WriteError::Store {
        uri: versions.uri(),
        message,
    };
    if let Some(dir) = versions.local_path() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(e) => return Err(store_error(e.to_string())),
        };
        return Ok(entries
            .flatten()
            .filter_map(|e| parse(&e.file_name().to_string_lossy()))
            .collect());
    }
    let listing = root
        .store
        .list_with_delimiter(Some(&versions.path))
        .await
        .map_err(|e| store_error(e.to_string()))?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().and_then(parse))
        .collect())
}

/// The manifest at `dir/manifest.json`, parsed, or `None` when absent or not JSON.
pub async fn read_manifest(dir: &Location) -> Option<serde_json::Value> {
    let location = dir.child("manifest.json");
    let object = location.store.get(&location.path).await.ok()?;
    serde_json::from_slice(&object.bytes().await.ok()?).ok()
}

/// The top-level manifest of an output written before versions, if it is one of ours.
async fn read_old_layout_manifest(root: &Location) -> Option<serde_json::Value> {
    read_manifest(root)
        .await
        .filter(|m| m["tool"]["name"] == "mmcurate" && m.get("version").is_none())
}

/// The committed versions, newest first: the current one, then its parents as their manifests
/// record them, back to the first (or to one whose manifest was removed). Version 0 is the
/// layout before versions.
pub async fn committed_versions(root: &Location, current: &CurrentPointer) -> Vec<u64> {
    let mut chain = vec![current.version];
    let mut parent = current.parent_version;
    while let Some(number) = parent.filter(|p| !chain.contains(p)) {
        if number == 0 {
            if read_old_layout_manifest(root).await.is_some() {
                chain.push(0);
            }
            break;
        }
        match read_manifest(&root.child(&folder_of(number))).await {
            Some(manifest) => {
                chain.push(number);
                parent = manifest["parent_version"].as_u64();
            }
            None => break,
        }
    }
    chain
}

/// The folder a reader reads: the current version of an output, or the folder itself when
/// it holds a manifest (a version folder, or an output in the layout before versions).
#[derive(Debug)]
pub struct ReadableVersion {
    pub dir: Location,
    /// 0 for the layout before versions.
    pub number: u64,
    /// `None` when `dir` was given directly.
    pub pointer: Option<CurrentPointer>,
}

/// Finds what `mmcurate inspect` and `mmcurate report` read at `location`.
pub async fn locate_current(location: &Location) -> Result<ReadableVersion, WriteError> {
    if let Some(pointer) = read_current(location).await? {
        return Ok(ReadableVersion {
            dir: location.child(&pointer.folder),
            number: pointer.version,
            pointer: Some(pointer),
        });
    }
    if let Some(manifest) = read_manifest(location).await {
        return Ok(ReadableVersion {
            dir: location.clone(),
            number: manifest["version"].as_u64().unwrap_or(0),
            pointer: None,
        });
    }
    let uncommitted = list_versions(location).await.unwrap_or_default();
    let message = if uncommitted.is_empty() {
        "no current.json and no manifest.json: not an mmcurate output (or not one yet)".to_string()
    } else {
        let folders: Vec<String> = uncommitted.iter().map(|n| folder_of(*n)).collect();
        format!(
            "no version has been committed (no current.json); {} left by a run that stopped \
             before its commit",
            folders.join(", ")
        )
    };
    Err(WriteError::Version {
        uri: location.uri(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_have_six_digits_or_more() {
        assert_eq!(folder_of(1), "versions/000001");
        assert_eq!(folder_of(1_234_567), "versions/1234567");
    }

    #[test]
    fn the_pointer_is_written_whole_and_the_link_replaced() {
        let dir = tempfile::tempdir().unwrap();
        write_local_durably(dir.path(), CURRENT_NAME, b"{\"version\": 1}").unwrap();
        write_local_durably(dir.path(), CURRENT_NAME, b"{\"version\": 2}").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(CURRENT_NAME)).unwrap(),
            b"{\"version\": 2}"
        );
        point_current_link(dir.path(), "versions/000001").unwrap();
        point_current_link(dir.path(), "versions/000002").unwrap();
        let target = std::fs::read_link(dir.path().join(CURRENT_LINK)).unwrap();
        assert_eq!(target, std::path::PathBuf::from("versions/000002"));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary names left: {names:?}");
        std::fs::remove_file(dir.path().join(CURRENT_LINK)).unwrap();
        std::fs::create_dir(dir.path().join(CURRENT_LINK)).unwrap();
        assert!(point_current_link(dir.path(), "versions/000003").is_err());
        assert!(
            dir.path().join(CURRENT_LINK).is_dir(),
            "a real folder is left alone"
        );
    }
}
