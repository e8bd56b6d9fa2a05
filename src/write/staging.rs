//! Staging: candidate samples' parts are appended to one local file while they are measured,
//! so the final write reads them back instead of fetching or decoding anything again.
//!
//! The file lives in a folder of its own, created fresh for the run with an unpredictable name
//! and mode 0700 (`tempfile`'s Builder: nobody else can read the samples or plant a link in its
//! place), and removed with everything in it when the staging is dropped: on success, on error
//! and on a panic that unwinds; and on Ctrl-C or SIGTERM (a preempted job), through a handler
//! installed with the first staging folder, which removes the live ones and exits with 130.
//! [`stage_sample`] says in which order a sample's parts go into its shard.

use std::fs::File;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use crate::record::StagedPart;
use crate::source::Sample;

/// The append-only staging file, shared by the measuring threads. A thread reserves its byte
/// range under a lock and writes outside it (positioned writes), so the threads never wait on
/// each other's I/O. Dropped unfinished (a run that failed), it removes its folder.
pub struct Staging {
    folder: LiveFolder,
    path: PathBuf,
    file: File,
    /// The offset of the next byte; `None` once finished.
    next: Mutex<Option<u64>>,
}

impl Staging {
    /// Creates a private folder `dir/mmcurate-staging-XXXXXX` (mode 0700; `dir` is created if
    /// missing) holding the staging file.
    ///
    /// `dir` may vanish between creating it and creating the folder inside it: another task of
    /// the same run (a Slurm array's slices share `<output>/.staging`) removes it when it finishes
    /// and finds it empty. Then it is created again; once the private folder is inside, the
    /// other task's `remove_dir` fails on a folder that is not empty.
    pub fn create(dir: &Path) -> std::io::Result<Staging> {
        const ATTEMPTS: usize = 100;
        let mut attempt = 1;
        let folder = loop {
            let created = std::fs::create_dir_all(dir).and_then(|()| {
                tempfile::Builder::new()
                    .prefix("mmcurate-staging-")
                    .permissions(std::fs::Permissions::from_mode(0o700))
                    .tempdir_in(dir)
            });
            match created {
                // NotFound: `dir` went before the folder inside it was made. AlreadyExists:
                // `create_dir_all` found `dir` (EEXIST) but it was gone when it looked again.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::AlreadyExists
                    ) && attempt < ATTEMPTS =>
                {
                    attempt += 1;
                }
                created => break created?,
            }
        };
        let folder = LiveFolder::new(folder);
        let path = folder.path().join("staging.bin");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Staging {
            folder,
            path,
            file,
            next: Mutex::new(Some(0)),
        })
    }

    /// The private folder holding the staging file.
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// Appends parts and says where each went.
    pub fn put<'a>(
        &self,
        parts: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> std::io::Result<Vec<StagedPart>> {
        let parts: Vec<(&str, &[u8])> = parts.into_iter().collect();
        let total: u64 = parts.iter().map(|(_, bytes)| bytes.len() as u64).sum();
        let mut offset = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let Some(next) = next.as_mut() else {
                return Err(std::io::Error::other(
                    "the staging file is already finished",
                ));
            };
            let start = *next;
            *next += total;
            start
        };
        let mut staged = Vec::with_capacity(parts.len());
        for (ext, bytes) in parts {
            self.file.write_all_at(bytes, offset)?;
            staged.push(StagedPart {
                unit: 0,
                ext: ext.to_string(),
                offset,
                len: bytes.len() as u64,
            });
            offset += bytes.len() as u64;
        }
        Ok(staged)
    }

    /// Closes the file for writing and reopens it for reading. The file is scratch, deleted
    /// after the run: it is not synced to disk.
    pub fn finish(self) -> std::io::Result<StagingReader> {
        self.next.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(StagingReader {
            file: File::open(&self.path)?,
            folder: self.folder,
        })
    }
}

/// Stages the parts in output order: media (named by its detected format, unless another part
/// already has that name), caption `.txt`, the source `.json`, any other parts, then the parts
/// made while measuring (keyframes).
pub fn stage_sample(
    staging: &Staging,
    sample: &Sample,
    media_ext: Option<&str>,
    extra_parts: &[(String, Vec<u8>)],
) -> std::io::Result<Vec<StagedPart>> {
    let media_in = sample.media.as_deref().unwrap_or_default();
    let media_out = match media_ext {
        Some(ext) if ext == media_in || sample.part(ext).is_none() => ext,
        _ => media_in,
    };
    let caption = sample.caption.as_deref().map(str::as_bytes);
    let mut parts: Vec<(&str, &[u8])> = Vec::with_capacity(sample.parts.len() + 1);
    if let Some(media) = sample.media_bytes() {
        parts.push((media_out, media));
    }
    match (sample.part("txt"), caption) {
        (Some(txt), _) => parts.push(("txt", &txt.bytes)),
        (None, Some(caption)) => parts.push(("txt", caption)),
        (None, None) => {}
    }
    if let Some(json) = sample.part("json") {
        parts.push(("json", &json.bytes));
    }
    for part in &sample.parts {
        if part.ext != media_in && part.ext != "txt" && part.ext != "json" {
            parts.push((&part.ext, &part.bytes));
        }
    }
    for (ext, bytes) in extra_parts {
        if sample.part(ext).is_none() {
            parts.push((ext, bytes));
        }
    }
    staging.put(parts)
}

/// Reads staged parts back; the folder is removed when the reader is dropped.
pub struct StagingReader {
    file: File,
    folder: LiveFolder,
}

impl StagingReader {
    pub fn read(&self, part: &StagedPart) -> std::io::Result<Vec<u8>> {
        let mut buffer = vec![0u8; part.len as usize];
        self.file.read_exact_at(&mut buffer, part.offset)?;
        Ok(buffer)
    }
}

impl StagingReader {
    /// The private folder holding the staging file.
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// The staging file, for committing it to a work unit's state.
    pub fn file_path(&self) -> PathBuf {
        self.folder.path().join("staging.bin")
    }
}

impl crate::state::StagedBytes for StagingReader {
    fn read(&self, part: &StagedPart) -> std::io::Result<Vec<u8>> {
        StagingReader::read(self, part)
    }
}

/// The staging folders of this process that a termination signal must remove.
static LIVE_FOLDERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A staging folder, removed on drop and, while it lives, on Ctrl-C or SIGTERM.
struct LiveFolder(tempfile::TempDir);

impl LiveFolder {
    fn new(folder: tempfile::TempDir) -> LiveFolder {
        static HANDLER: std::sync::Once = std::sync::Once::new();
        HANDLER.call_once(|| {
            // ctrlc runs this on a thread of its own, not inside the signal handler, so it may
            // use the file system; without it a killed run would leave its staged samples.
            let installed = ctrlc::set_handler(|| {
                let folders =
                    std::mem::take(&mut *LIVE_FOLDERS.lock().unwrap_or_else(|p| p.into_inner()));
                for folder in folders {
                    let _ = std::fs::remove_dir_all(folder);
                }
                std::process::exit(130);
            });
            if let Err(e) = installed {
                tracing::warn!(
                    "cannot install the Ctrl-C/SIGTERM handler that removes the staging folder: {e}"
                );
            }
        });
        LIVE_FOLDERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(folder.path().to_path_buf());
        LiveFolder(folder)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for LiveFolder {
    fn drop(&mut self) {
        LIVE_FOLDERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|f| f != self.0.path());
        // The TempDir field is dropped next, removing the folder.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::create(dir.path()).unwrap();
        let a = staging
            .put([("jpg", &b"JPEGDATA"[..]), ("txt", &b"a cat"[..])])
            .unwrap();
        let b = staging.put([("png", &b"PNG"[..])]).unwrap();
        let reader = staging.finish().unwrap();
        assert_eq!(reader.read(&a[1]).unwrap(), b"a cat");
        assert_eq!(reader.read(&b[0]).unwrap(), b"PNG");
        assert_eq!(b[0].offset, 13);
        let folder = reader.folder().to_path_buf();
        let path = folder.join("staging.bin");
        assert!(path.exists());
        drop(reader);
        assert!(!path.exists());
        assert!(!folder.exists(), "the private folder goes with the file");
        assert!(
            dir.path().exists(),
            "the parent folder is not ours to remove"
        );
    }

    #[test]
    fn an_unfinished_staging_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::create(dir.path()).unwrap();
        staging.put([("jpg", &b"x"[..])]).unwrap();
        let path = staging.path.clone();
        let folder = staging.folder().to_path_buf();
        assert!(path.exists());
        drop(staging);
        assert!(!path.exists());
        assert!(!folder.exists());
    }

    #[test]
    fn slices_sharing_a_parent_that_each_remove_it_when_done_all_stage() {
        // A Slurm array's slices share `<output>/.staging`, and each removes it when it is done
        // and finds it empty (`remove_default_staging_dir`). Before the retry in `create`, a
        // slice whose neighbour removed it in that gap failed with "No such file or directory".
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(".staging");
        let failures: Vec<String> = std::thread::scope(|scope| {
            let slices: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut failures = Vec::new();
                        for _ in 0..500 {
                            match Staging::create(&dir) {
                                Ok(staging) => {
                                    staging.put([("jpg", &b"x"[..])]).unwrap();
                                    drop(staging);
                                }
                                Err(e) => failures.push(e.to_string()),
                            }
                            let _ = std::fs::remove_dir(&dir);
                        }
                        failures
                    })
                })
                .collect();
            slices.into_iter().flat_map(|s| s.join().unwrap()).collect()
        });
        assert!(
            failures.is_empty(),
            "{} of 2,000 failed, first: {:?}",
            failures.len(),
            failures.first()
        );
    }

    #[test]
    fn the_staging_folder_is_fresh_private_and_unpredictable() {
        let dir = tempfile::tempdir().unwrap();
        let a = Staging::create(dir.path()).unwrap();
        let b = Staging::create(dir.path()).unwrap();
        assert_ne!(
            a.folder(),
            b.folder(),
            "two runs never share a staging folder"
        );
        for staging in [&a, &b] {
            let name = staging.folder().file_name().unwrap().to_str().unwrap();
            assert!(name.starts_with("mmcurate-staging-"), "{name}");
            assert!(
                !name.contains(&std::process::id().to_string()),
                "the name is not derived from the process id: {name}"
            );
            let mode = std::fs::metadata(staging.folder())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        }
    }

    #[test]
    fn a_panic_while_staging_removes_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = std::panic::catch_unwind(|| {
            let staging = Staging::create(dir.path()).unwrap();
            staging.put([("jpg", &b"x"[..])]).unwrap();
            let folder = staging.folder().to_path_buf();
            if folder.exists() {
                std::panic::panic_any(folder);
            }
            unreachable!("the folder was just created");
        })
        .unwrap_err()
        .downcast::<PathBuf>()
        .unwrap();
        assert!(!folder.exists(), "{}", folder.display());
    }
}
