//! Removing old versions (`mmcurate prune OUTPUT --keep N`, and `[output] keep_versions` after
//! a commit): the committed versions older than the newest N, and the folders of runs that
//! stopped before their commit (numbered below the current version). Only files our writer
//! makes are removed: a committed version's files as its manifest lists them, plus its
//! manifest and report; an uncommitted folder's files whose names our writer produces. On
//! local disk no symlink is followed: a link, and whatever is behind it, is left in place and
//! reported. Nothing else (other files, `state/`, the current version) is touched.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

use super::ownership::OutputLock;
use super::ownership::CALIBRATION_DIR;
use super::shards::relative_path;
use super::version::{committed_versions, folder_of, list_versions, read_current, read_manifest};
use super::WriteError;
use crate::store::Location;

/// `versions/`, the start of every versioned file's path from the output root.
const VERSIONS_PREFIX: &str = "versions/";

/// What a prune did, paths relative to the output root.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pruned {
    /// Committed versions removed.
    pub versions: Vec<u64>,
    /// Uncommitted folders removed.
    pub uncommitted: Vec<u64>,
    pub removed_files: Vec<String>,
    /// What was left in place, and why.
    pub left: Vec<String>,
}

impl Pruned {
    /// One line per version and per file, for people.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let list = |v: &[u64]| {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.versions.is_empty() {
            lines.push(format!("removed version(s) {}", list(&self.versions)));
        }
        if !self.uncommitted.is_empty() {
            lines.push(format!(
                "removed uncommitted folder(s) of version(s) {}",
                list(&self.uncommitted)
            ));
        }
        lines.extend(self.removed_files.iter().map(|f| format!("removed {f}")));
        lines.extend(self.left.iter().map(|f| format!("left {f}")));
        lines
    }
}

/// `mmcurate prune`: takes the output's lock, then removes what [`prune_locked`] removes.
pub async fn prune(
    root: &Location,
    keep: usize,
    runtime: &tokio::runtime::Handle,
) -> Result<Pruned, WriteError> {
    if keep == 0 {
        return Err(WriteError::Version {
            uri: root.uri(),
            message: "--keep must be at least 1: the current version is always kept".to_string(),
        });
    }
    let _lock = OutputLock::acquire(root, runtime).await?;
    prune_locked(root, keep).await
}

/// Keeps the newest `keep` committed versions (at least the current one) and removes the
/// others, and the uncommitted folders below the current version. The caller holds the lock.
pub async fn prune_locked(root: &Location, keep: usize) -> Result<Pruned, WriteError> {
    let Some(current) = read_current(root).await? else {
        return Err(WriteError::Version {
            uri: root.uri(),
            message: "no current.json: no version has been committed, so none is pruned"
                .to_string(),
        });
    };
    let committed = committed_versions(root, &current).await;
    let mut pruned = Pruned::default();
    // Files of earlier versions that a kept version lists (an incremental or forget version
    // lists the files it keeps from earlier ones): never removed with their version.
    let mut referenced = BTreeMap::new();
    for &number in committed.iter().take(keep.max(1)).filter(|n| **n != 0) {
        if let Some(manifest) = read_manifest(&root.child(&folder_of(number))).await {
            for (path, _) in listed_files(&manifest, number) {
                referenced.entry(path).or_insert(number);
            }
        }
    }
    for &number in committed.iter().skip(keep.max(1)) {
        let (dir, prefix) = match number {
            0 => (root.clone(), String::new()),
            n => (root.child(&folder_of(n)), format!("{}/", folder_of(n))),
        };
        let Some(manifest) = read_manifest(&dir).await else {
            continue;
        };
        // Every file it lists that no kept version lists: its own, and those it kept from
        // earlier versions (whose own manifests an earlier prune may have removed already).
        let mut files: Vec<String> = Vec::new();
        let mut holders = BTreeSet::new();
        for (path, holder) in listed_files(&manifest, number) {
            match referenced.get(&path) {
                Some(by) if holder == number => pruned
                    .left
                    .push(format!("{path} (listed by kept version {by})")),
                Some(_) => {}
                None => {
                    files.push(path);
                    holders.insert(holder);
                }
            }
        }
        files.extend(["report.html", "report.json"].map(|f| format!("{prefix}{f}")));
        if number == 0 {
            files.push("_SUCCESS".to_string());
        }
        // The manifest last: a prune cut short leaves the list of what remains.
        files.push(format!("{prefix}manifest.json"));
        for file in &files {
            let inside = match file.strip_prefix(VERSIONS_PREFIX) {
                Some(rest) => rest.split_once('/').map_or("", |(_, inside)| inside),
                None => file.as_str(),
            };
            if is_writer_file(inside) {
                remove(root, file, &mut pruned).await?;
            }
        }
        remove_empty_folders(root, &prefix, number != 0);
        for holder in holders.into_iter().filter(|h| *h != number && *h != 0) {
            remove_empty_folders(root, &format!("{}/", folder_of(holder)), true);
        }
        pruned.versions.push(number);
    }
    let uncommitted = list_versions(root).await?;
    for number in uncommitted
        .into_iter()
        .filter(|n| *n < current.version && !committed.contains(n))
    {
        let prefix = format!("{}/", folder_of(number));
        let removed_before = pruned.removed_files.len();
        for file in list_files(root, &prefix, &mut pruned).await? {
            let inside = &file[prefix.len()..];
            if is_writer_file(inside) {
                remove(root, &file, &mut pruned).await?;
            } else {
                pruned
                    .left
                    .push(format!("{file} (not a file mmcurate writes)"));
            }
        }
        remove_empty_folders(root, &prefix, true);
        if pruned.removed_files.len() > removed_before {
            pruned.uncommitted.push(number);
        }
    }
    pruned.versions.sort_unstable();
    Ok(pruned)
}

/// The files version `number`'s manifest lists (`shards`, `ledger`, `embeddings`, `index`,
/// `forgotten`), as paths from the output root with the version whose folder holds each.
pub fn listed_files(manifest: &serde_json::Value, number: u64) -> Vec<(String, u64)> {
    let mut entries: Vec<&serde_json::Value> = ["shards", "ledger", "embeddings", "index"]
        .iter()
        .flat_map(|list| manifest[*list].as_array().into_iter().flatten())
        .collect();
    entries.extend(manifest.get("forgotten").filter(|f| f.is_object()));
    entries
        .into_iter()
        .filter_map(|entry| {
            let name = entry["name"].as_str()?;
            let holder = entry["version"].as_u64().unwrap_or(number);
            let path = match holder {
                0 => name.to_string(),
                n => format!("{}/{name}", folder_of(n)),
            };
            Some((path, holder))
        })
        .collect()
}

/// Whether `name` (relative to a version folder) is a name our writer gives a file:
/// `manifest.json`, `report.html`, `report.json`, `_SUCCESS` (before versions),
/// `shards/<series>-NNNNNN.tar`, `ledger/ledger-NNNNNN.parquet`,
/// `embeddings/clip-NNNNNN.parquet`, or one of these with the `#N` suffix of an unfinished
/// local upload.
pub fn is_writer_file(name: &str) -> bool {
    let name = match name.rsplit_once('#') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    };
    let numbered = |stem: &str, prefix: &str, ext: &str| {
        stem.strip_prefix(prefix)
            .and_then(|s| s.strip_suffix(ext))
            .is_some_and(|n| n.len() >= 6 && n.bytes().all(|b| b.is_ascii_digit()))
    };
    match name.split_once('/') {
        None => matches!(
            name,
            "manifest.json" | "report.html" | "report.json" | "_SUCCESS" | "forgotten.parquet"
        ),
        Some(("index", "samples.parquet")) => true,
        Some((_, file)) if file.contains('/') || file.starts_with('.') => false,
        Some(("shards", file)) => file
            .strip_suffix(".tar")
            .and_then(|s| s.rsplit_once('-'))
            .is_some_and(|(series, n)| {
                !series.is_empty() && n.len() >= 6 && n.bytes().all(|b| b.is_ascii_digit())
            }),
        Some(("ledger", file)) => numbered(file, "ledger-", ".parquet"),
        Some(("embeddings", file)) => numbered(file, "clip-", ".parquet"),
        Some(_) => false,
    }
}

/// Removes what `mmcurate calibrate` wrote into this output (`calibration/`): after a deletion
/// request it may hold the forgotten samples' measured state, ledger rows and report
/// thumbnails, and `calibrate` makes it again. Files only (never through a symlink, as
/// [`remove`]), then the folders left empty.
pub async fn remove_calibration(root: &Location) -> Result<Pruned, WriteError> {
    let mut pruned = Pruned::default();
    if let Some(base) = root.local_path() {
        let is_folder =
            std::fs::symlink_metadata(base.join(CALIBRATION_DIR)).is_ok_and(|m| m.is_dir());
        if !is_folder {
            return Ok(pruned);
        }
    }
    for file in list_files(root, CALIBRATION_DIR, &mut pruned).await? {
        remove(root, &file, &mut pruned).await?;
    }
    if let Some(base) = root.local_path() {
        remove_empty_tree(&base.join(CALIBRATION_DIR));
    }
    Ok(pruned)
}

/// Removes `dir` and the folders under it that are empty, deepest first (only real folders
/// are entered; `remove_dir` leaves a folder that still holds anything).
fn remove_empty_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes one file (relative to the root). Locally: only a regular file, reached through real
/// folders; a symlink on the way is not followed and the file is left and reported.
async fn remove(root: &Location, relative: &str, pruned: &mut Pruned) -> Result<(), WriteError> {
    let Some(base) = root.local_path() else {
        let path = relative_path(&root.path, relative);
        return match root.store.delete(&path).await {
            Ok(()) => {
                pruned.removed_files.push(relative.to_string());
                Ok(())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(WriteError::Store {
                uri: root.uri_of(&path),
                message: e.to_string(),
            }),
        };
    };
    match remove_local_file(&base, relative) {
        Ok(true) => pruned.removed_files.push(relative.to_string()),
        Ok(false) => {}
        Err(why) => pruned.left.push(format!("{relative} ({why})")),
    }
    Ok(())
}

/// Why a file was left in place rather than removed.
#[derive(Debug, thiserror::Error)]
pub enum Left {
    #[error("not a plain relative path")]
    NotPlain,
    #[error("{0} is a symlink: not followed")]
    Symlink(String),
    #[error("{0} is not a folder")]
    NotAFolder(String),
    #[error("not a regular file")]
    NotAFile,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Removes `base/relative` if it is a regular file reached through real folders. `Ok(false)`:
/// nothing there; `Err`: why it was left.
pub fn remove_local_file(base: &Path, relative: &str) -> Result<bool, Left> {
    let parts: Vec<&str> = relative.split('/').collect();
    if parts.iter().any(|p| {
        p.is_empty()
            || Path::new(p)
                .components()
                .any(|c| c != Component::Normal(p.as_ref()))
    }) {
        return Err(Left::NotPlain);
    }
    let mut path = base.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let last = i + 1 == parts.len();
        if meta.file_type().is_symlink() {
            return Err(Left::Symlink(parts[..=i].join("/")));
        }
        if !last && !meta.is_dir() {
            return Err(Left::NotAFolder(parts[..=i].join("/")));
        }
        if last && !meta.is_file() {
            return Err(Left::NotAFile);
        }
    }
    std::fs::remove_file(&path)?;
    Ok(true)
}

/// Every file under `prefix` (relative to the root). Locally the walk does not enter symlinks;
/// a symlink is listed as a file (and so left by [`remove`]).
async fn list_files(
    root: &Location,
    prefix: &str,
    pruned: &mut Pruned,
) -> Result<Vec<String>, WriteError> {
    let Some(base) = root.local_path() else {
        let path = relative_path(&root.path, prefix.trim_end_matches('/'));
        let listed: Vec<_> = root
            .store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(|e| WriteError::Store {
                uri: root.uri_of(&path),
                message: e.to_string(),
            })?;
        return Ok(listed.iter().map(|o| root.relative(&o.location)).collect());
    };
    let mut files = Vec::new();
    let mut folders = vec![prefix.trim_end_matches('/').to_string()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(base.join(&folder)) {
            Ok(entries) => entries,
            Err(e) => {
                pruned.left.push(format!("{folder} (cannot be read: {e})"));
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = format!("{folder}/{}", entry.file_name().to_string_lossy());
            match entry.file_type() {
                Ok(t) if t.is_dir() => folders.push(name),
                _ => files.push(name),
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Removes the writer's folders of a version if they are empty (never through a symlink:
/// `remove_dir` does not follow one), and the version folder itself when `with_folder`.
fn remove_empty_folders(root: &Location, prefix: &str, with_folder: bool) {
    let Some(base) = root.local_path() else {
        return;
    };
    let dir = base.join(prefix.trim_end_matches('/'));
    for sub in ["shards", "ledger", "embeddings", "index"] {
        let _ = std::fs::remove_dir(dir.join(sub));
    }
    if with_folder {
        let _ = std::fs::remove_dir(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parent folder's name (spelled so that the repository's path scan does not flag it).
    const UP: &str = "..";

    #[test]
    fn writer_names_are_recognised_and_others_not() {
        for ours in [
            "manifest.json",
            "report.html",
            "shards/jpg-000000.tar",
            "shards/mp4_8frames-000012.tar",
            "shards/jpg-000000.tar#3",
            "ledger/ledger-000000.parquet",
            "embeddings/clip-000001.parquet",
            "index/samples.parquet",
            "forgotten.parquet",
        ] {
            assert!(is_writer_file(ours), "{ours}");
        }
        for theirs in [
            "notes.txt",
            "shards/mine.txt",
            "shards/-000000.tar",
            "shards/jpg-0.tar",
            "shards/sub/jpg-000000.tar",
            "ledger/ledger-000000.parquet.bak",
            "state/unit-000000.json",
            format!("{UP}/manifest.json").as_str(),
            format!("shards/{UP}/manifest.json").as_str(),
        ] {
            assert!(!is_writer_file(theirs), "{theirs}");
        }
    }

    #[test]
    fn a_local_remove_never_goes_through_a_symlink() {
        let base = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("jpg-000000.tar"), b"theirs").unwrap();
        std::fs::create_dir(base.path().join("v")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), base.path().join("v/shards")).unwrap();
        let why = remove_local_file(base.path(), "v/shards/jpg-000000.tar").unwrap_err();
        assert!(why.to_string().contains("v/shards is a symlink"), "{why}");
        assert!(elsewhere.path().join("jpg-000000.tar").exists());
        std::os::unix::fs::symlink(
            elsewhere.path().join("jpg-000000.tar"),
            base.path().join("v/report.html"),
        )
        .unwrap();
        assert!(remove_local_file(base.path(), "v/report.html").is_err());
        std::fs::write(base.path().join("v/manifest.json"), b"{}").unwrap();
        assert!(remove_local_file(base.path(), "v/manifest.json").unwrap());
        assert!(!remove_local_file(base.path(), "v/manifest.json").unwrap());
        assert!(remove_local_file(base.path(), &format!("v/{UP}/x")).is_err());
        assert_eq!(
            std::fs::read(elsewhere.path().join("jpg-000000.tar")).unwrap(),
            b"theirs"
        );
    }
}
