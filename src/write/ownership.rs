//! Keeping the output ours: before a run writes anything, [`check_ours`] refuses a non-empty
//! folder or prefix that is not an mmcurate output (saying what it found), and [`OutputLock`]
//! keeps two runs off one output (`.mmcurate.lock`, created exclusively). It decides nothing
//! about versions (`write::version`) and deletes nothing (`write::prune`).
//!
//! Local lock: the file is created with `O_EXCL` and, while the run lives, held with an
//! advisory `flock`, which the kernel releases when the process dies however it dies. A lock
//! file whose `flock` is free, written on this host by a process that is gone, is stale: it is
//! taken over with a warning. Any other lock refuses the run with what to do. On object stores
//! the lock object is made with a conditional create (`If-None-Match: *`); one this host wrote
//! for a process that is gone is taken over by a conditional overwrite (`If-Match` its etag).

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::WriteError;
use crate::store::Location;

/// The lock file or object at the output root.
pub const LOCK_NAME: &str = ".mmcurate.lock";
/// The commit pointer.
pub const CURRENT_NAME: &str = "current.json";
/// The local convenience symlink to the current version's folder.
pub const CURRENT_LINK: &str = "current";
/// One folder per version.
pub const VERSIONS_DIR: &str = "versions";
/// Work-unit state of runs (written by the pipeline's phases).
pub const STATE_DIR: &str = "state";
/// The default staging folder of a local output.
pub const STAGING_DIR: &str = ".staging";
/// Where `mmcurate calibrate` writes by default (`pipeline::calibrate::default_output`).
pub const CALIBRATION_DIR: &str = "calibration";

/// What is at the output root.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RootListing {
    /// Top-level names (a trailing `/` marks a folder or prefix), sorted.
    pub names: Vec<String>,
}

impl RootListing {
    fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.trim_end_matches('/') == name)
    }

    /// Whether something of ours marks this output: the commit pointer, the versions, the
    /// state, the lock, or a manifest of the layout before versions (`manifest.json` at the
    /// top, checked by the caller).
    pub fn has_our_marker(&self) -> bool {
        [CURRENT_NAME, VERSIONS_DIR, STATE_DIR, LOCK_NAME]
            .iter()
            .any(|n| self.has(n))
    }

    /// Names that are neither ours nor left by our writer (temporary names of `current.json`
    /// and of the `current` symlink, the default staging folder).
    pub fn others(&self) -> Vec<&str> {
        self.names
            .iter()
            .map(String::as_str)
            .filter(|n| {
                let bare = n.trim_end_matches('/');
                ![
                    CURRENT_NAME,
                    CURRENT_LINK,
                    VERSIONS_DIR,
                    STATE_DIR,
                    LOCK_NAME,
                    STAGING_DIR,
                    CALIBRATION_DIR,
                ]
                .contains(&bare)
                    && !bare.starts_with(".current.json.tmp-")
                    && !bare.starts_with(".current.tmp-")
            })
            .collect()
    }
}

/// Lists the top level of the output (which also tells that it can be reached).
pub async fn list_root(root: &Location) -> Result<RootListing, WriteError> {
    let mut names = Vec::new();
    if let Some(dir) = root.local_path() {
        // Read directly: object_store's listing hides names it cannot map and follows links.
        let entries = std::fs::read_dir(&dir).map_err(|e| store_error(root, e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| store_error(root, e.to_string()))?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let name = entry.file_name().to_string_lossy().into_owned();
            names.push(if is_dir { format!("{name}/") } else { name });
        }
    } else {
        let listing = root
            .store
            .list_with_delimiter(Some(&root.path))
            .await
            .map_err(|e| store_error(root, e.to_string()))?;
        names.extend(
            listing
                .common_prefixes
                .iter()
                .map(|p| format!("{}/", root.relative(p))),
        );
        names.extend(listing.objects.iter().map(|o| root.relative(&o.location)));
    }
    names.sort();
    Ok(RootListing { names })
}

/// Refuses an output that holds files and is not an mmcurate output. `old_layout` says whether
/// a `manifest.json` of mmcurate is at the top (an output written before versions).
pub fn check_ours(
    root: &Location,
    listing: &RootListing,
    old_layout: bool,
) -> Result<(), WriteError> {
    let others = listing.others();
    if others.is_empty() || listing.has_our_marker() || old_layout {
        return Ok(());
    }
    let mut found: Vec<&str> = others.iter().take(5).copied().collect();
    if others.len() > 5 {
        found.push("…");
    }
    Err(WriteError::Foreign {
        uri: root.uri(),
        found: format!("{} entries: {}", others.len(), found.join(", ")),
    })
}

/// What a lock holds: who took it, where, when, for what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    pub started_at: String,
    pub command: String,
}

impl LockHolder {
    fn this_process() -> LockHolder {
        LockHolder {
            pid: std::process::id(),
            host: host_name(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }

    fn describe(&self) -> String {
        format!(
            "pid {} on {} since {} ({})",
            self.pid, self.host, self.started_at, self.command
        )
    }
}

/// This machine's name, as the lock records it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// Whether a process with this id runs on this machine.
fn process_alive(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

/// A held output lock; released (the file or object removed) when dropped.
#[derive(Debug)]
pub struct OutputLock {
    held: Held,
}

#[derive(Debug)]
enum Held {
    /// The open, `flock`ed lock file; removed before it is closed.
    Local { path: PathBuf, file: Option<File> },
    /// The lock object; deleted on a thread of its own when released.
    Remote {
        location: Location,
        runtime: tokio::runtime::Handle,
    },
}

impl OutputLock {
    /// Takes the lock of the output at `root`, or says who holds it and what to do.
    pub async fn acquire(
        root: &Location,
        runtime: &tokio::runtime::Handle,
    ) -> Result<OutputLock, WriteError> {
        let holder = LockHolder::this_process();
        match root.local_path() {
            Some(dir) => acquire_local(&dir.join(LOCK_NAME), &holder),
            None => acquire_remote(&root.child(LOCK_NAME), &holder, runtime).await,
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        match &mut self.held {
            Held::Local { path, file } => {
                // Unlink while the flock is still held, then close: a run waiting on the old
                // inode sees it is no longer the lock file and tries again.
                let _ = std::fs::remove_file(&*path);
                drop(file.take());
            }
            Held::Remote { location, runtime } => {
                let (store, path, handle) = (
                    location.store.clone(),
                    location.path.clone(),
                    runtime.clone(),
                );
                // A thread of its own: dropping inside the runtime must not block one of its
                // workers, and `block_on` may not be called from one.
                let deleted = std::thread::spawn(move || handle.block_on(store.delete(&path)));
                if !matches!(deleted.join(), Ok(Ok(()))) {
                    tracing::warn!(
                        "could not remove the lock {}: delete it if no run is using the output",
                        location.uri()
                    );
                }
            }
        }
    }
}

fn acquire_local(path: &PathBuf, holder: &LockHolder) -> Result<OutputLock, WriteError> {
    let shown = path.display().to_string();
    let io_error = |e: std::io::Error| WriteError::Store {
        uri: shown.clone(),
        message: e.to_string(),
    };
    // Twice at most: once more when the lock we waited on was released meanwhile.
    for _ in 0..3 {
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut file) => {
                if !try_flock(&file).map_err(io_error)? {
                    return Err(io_error(std::io::Error::other(
                        "a lock file created just now is locked by another process",
                    )));
                }
                write_holder(&mut file, holder).map_err(io_error)?;
                return Ok(local_lock(path, file));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(e)),
        }
        let mut file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(e)),
        };
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let recorded: Option<LockHolder> = serde_json::from_str(&text).ok();
        let who = recorded
            .as_ref()
            .map_or("an unreadable lock".to_string(), LockHolder::describe);
        if !try_flock(&file).map_err(io_error)? {
            return Err(WriteError::Locked(format!(
                "another run is using this output: {shown} is held by {who}; wait for it to end, \
                 or write to another output"
            )));
        }
        // Nobody holds it. Still the lock file (not one just released and unlinked)?
        let same = std::fs::symlink_metadata(path)
            .ok()
            .zip(file.metadata().ok())
            .is_some_and(|(at_path, open)| at_path.ino() == open.ino());
        if !same {
            continue;
        }
        let ours = host_name();
        match recorded {
            Some(old) if old.host == ours && !process_alive(old.pid) => {
                tracing::warn!(
                    "taking over the stale lock {shown}: it was left by {} (no longer running)",
                    old.describe()
                );
                file.set_len(0).map_err(io_error)?;
                file.rewind().map_err(io_error)?;
                write_holder(&mut file, holder).map_err(io_error)?;
                return Ok(local_lock(path, file));
            }
            _ => {
                return Err(WriteError::Locked(format!(
                    "{shown} is a lock left by {who}, which this host ({ours}) cannot check; \
                     if no run is using this output, delete {shown} and run again"
                )))
            }
        }
    }
    Err(WriteError::Locked(format!(
        "{shown} keeps changing hands: another run is starting on this output"
    )))
}

/// `flock(LOCK_EX | LOCK_NB)` on the open lock file: `false` when another open file holds it.
/// The kernel releases it when the file is closed or the process ends, however it ends.
/// (std's `File::try_lock` does the same from Rust 1.89; the crate supports 1.85.)
fn try_flock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor `file` owns and keeps open for the call; no memory is
    // passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(error),
    }
}

fn local_lock(path: &std::path::Path, file: File) -> OutputLock {
    OutputLock {
        held: Held::Local {
            path: path.to_path_buf(),
            file: Some(file),
        },
    }
}

fn write_holder(file: &mut File, holder: &LockHolder) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(holder).expect("the lock holder serialises");
    file.write_all(&text)?;
    file.sync_all()
}

async fn acquire_remote(
    location: &Location,
    holder: &LockHolder,
    runtime: &tokio::runtime::Handle,
) -> Result<OutputLock, WriteError> {
    let body = body_of(holder);
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match location
        .store
        .put_opts(&location.path, PutPayload::from(body), options)
        .await
    {
        Ok(_) => Ok(OutputLock {
            held: Held::Remote {
                location: location.clone(),
                runtime: runtime.clone(),
            },
        }),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => {
            take_over_remote(location, holder, body_of(holder), runtime).await
        }
        Err(e) => Err(store_error(location, e.to_string())),
    }
}

fn body_of(holder: &LockHolder) -> Vec<u8> {
    serde_json::to_vec_pretty(holder).expect("the lock holder serialises")
}

/// A lock object that exists: taken over when this host wrote it and its process is gone (a
/// conditional overwrite of exactly that object, `If-Match` its etag, so of two runs taking it
/// over only one can), else refused with its holder and what to do.
async fn take_over_remote(
    location: &Location,
    holder: &LockHolder,
    body: Vec<u8>,
    runtime: &tokio::runtime::Handle,
) -> Result<OutputLock, WriteError> {
    let (recorded, meta) = match location.store.get(&location.path).await {
        Ok(object) => {
            let meta = object.meta.clone();
            let bytes = object.bytes().await.ok();
            let recorded = bytes.and_then(|b| serde_json::from_slice::<LockHolder>(&b).ok());
            (recorded, Some(meta))
        }
        Err(_) => (None, None),
    };
    let who = recorded
        .as_ref()
        .map_or("an unreadable lock".to_string(), LockHolder::describe);
    if let (Some(old), Some(meta)) = (&recorded, meta) {
        if old.host == holder.host && old.pid != holder.pid && !process_alive(old.pid) {
            let options = PutOptions {
                mode: PutMode::Update(UpdateVersion {
                    e_tag: meta.e_tag,
                    version: meta.version,
                }),
                ..PutOptions::default()
            };
            let put = location
                .store
                .put_opts(&location.path, PutPayload::from(body), options)
                .await;
            if put.is_ok() {
                tracing::warn!(
                    "taking over the stale lock {}: it was left by {who} (no longer running)",
                    location.uri()
                );
                return Ok(OutputLock {
                    held: Held::Remote {
                        location: location.clone(),
                        runtime: runtime.clone(),
                    },
                });
            }
        }
    }
    Err(WriteError::Locked(format!(
        "{} is held by {who}; if no run is using this output (a run that was killed \
         leaves its lock), delete that object and run again",
        location.uri()
    )))
}

fn store_error(location: &Location, message: String) -> WriteError {
    WriteError::Store {
        uri: location.uri(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(names: &[&str]) -> RootListing {
        RootListing {
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn ours_and_others_are_told_apart() {
        let ours = listing(&[
            "current",
            "current.json",
            "state/",
            "versions/",
            ".staging/",
        ]);
        assert!(ours.has_our_marker());
        assert!(ours.others().is_empty());
        let foreign = listing(&["notes.txt", "shards/"]);
        assert!(!foreign.has_our_marker());
        assert_eq!(foreign.others(), vec!["notes.txt", "shards/"]);
        // A staging folder alone (a run killed before it wrote anything) is not foreign.
        assert!(listing(&[".staging/"]).others().is_empty());
    }

    #[test]
    fn a_local_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_NAME);
        let holder = LockHolder::this_process();
        let lock = acquire_local(&path, &holder).unwrap();
        let recorded: LockHolder = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(recorded.pid, std::process::id());
        let refused = acquire_local(&path, &holder).unwrap_err().to_string();
        assert!(
            refused.contains("another run is using this output"),
            "{refused}"
        );
        assert!(
            refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        drop(lock);
        assert!(!path.exists());
        drop(acquire_local(&path, &holder).unwrap());
    }

    #[test]
    fn a_stale_lock_of_this_host_is_taken_over_and_of_another_host_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_NAME);
        // A pid above the kernel's pid_max is never running.
        let stale = LockHolder {
            pid: 4_194_305,
            host: host_name(),
            started_at: "2026-01-01T00:00:00Z".into(),
            command: "mmcurate run job.toml".into(),
        };
        std::fs::write(&path, serde_json::to_vec(&stale).unwrap()).unwrap();
        let lock = acquire_local(&path, &LockHolder::this_process()).unwrap();
        let recorded: LockHolder = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(recorded.pid, std::process::id());
        drop(lock);
        let elsewhere = LockHolder {
            host: "another-node".into(),
            ..stale
        };
        std::fs::write(&path, serde_json::to_vec(&elsewhere).unwrap()).unwrap();
        let refused = acquire_local(&path, &LockHolder::this_process())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("pid 4194305 on another-node"), "{refused}");
        assert!(
            refused.contains(&format!("delete {}", path.display())),
            "{refused}"
        );
        assert!(path.exists(), "a lock that cannot be checked is left alone");
    }
}
