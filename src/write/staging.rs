//! Staging: candidate samples' parts are appended to one local file while they are measured,
//! so the final write reads them back instead of fetching or decoding anything again.
//! [`stage_sample`] says in which order a sample's parts go into its shard.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use crate::record::StagedPart;
use crate::source::Sample;

/// The append-only staging file, shared by the measuring threads. A thread reserves its byte
/// range under a lock and writes outside it (positioned writes), so the threads never wait on
/// each other's I/O. Dropped unfinished (a run that failed), it removes its file.
pub struct Staging {
    path: PathBuf,
    file: File,
    /// The offset of the next byte; `None` once finished.
    next: Mutex<Option<u64>>,
}

impl Staging {
    /// Creates `dir/staging-<pid>.bin` (and `dir`).
    pub fn create(dir: &Path) -> std::io::Result<Staging> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("staging-{}.bin", std::process::id()));
        let file = File::create(&path)?;
        Ok(Staging {
            path,
            file,
            next: Mutex::new(Some(0)),
        })
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
            path: self.path.clone(),
        })
    }
}

impl std::ops::Drop for Staging {
    fn drop(&mut self) {
        let unfinished = self.next.get_mut().map(|n| n.is_some()).unwrap_or(true);
        if unfinished {
            let _ = std::fs::remove_file(&self.path);
        }
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

/// Reads staged parts back; the file is removed when the reader is dropped.
pub struct StagingReader {
    file: File,
    path: PathBuf,
}

impl StagingReader {
    pub fn read(&self, part: &StagedPart) -> std::io::Result<Vec<u8>> {
        let mut buffer = vec![0u8; part.len as usize];
        self.file.read_exact_at(&mut buffer, part.offset)?;
        Ok(buffer)
    }
}

impl std::ops::Drop for StagingReader {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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
        let path = reader.path.clone();
        drop(reader);
        assert!(!path.exists());
    }

    #[test]
    fn an_unfinished_staging_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::create(dir.path()).unwrap();
        staging.put([("jpg", &b"x"[..])]).unwrap();
        let path = staging.path.clone();
        assert!(path.exists());
        drop(staging);
        assert!(!path.exists());
    }
}
