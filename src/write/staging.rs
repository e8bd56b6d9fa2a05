//! Staging: candidate samples' parts are appended to one local file while they are measured,
//! so the final write reads them back instead of fetching or decoding anything again.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A part stored in the staging file.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedPart {
    pub ext: String,
    pub offset: u64,
    pub len: u64,
}

/// The append-only staging file, shared by the measuring threads. Dropped unfinished (a run
/// that failed), it removes its file.
pub struct Staging {
    path: PathBuf,
    /// The writer and the offset of the next byte; `None` once finished.
    writer: Mutex<Option<(BufWriter<File>, u64)>>,
}

impl Staging {
    /// Creates `dir/staging-<pid>.bin` (and `dir`).
    pub fn create(dir: &Path) -> std::io::Result<Staging> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("staging-{}.bin", std::process::id()));
        let file = File::create(&path)?;
        Ok(Staging {
            path,
            writer: Mutex::new(Some((BufWriter::with_capacity(4 << 20, file), 0))),
        })
    }

    /// Appends parts and says where each went.
    pub fn put<'a>(
        &self,
        parts: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> std::io::Result<Vec<StagedPart>> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some((writer, offset)) = guard.as_mut() else {
            return Err(std::io::Error::other(
                "the staging file is already finished",
            ));
        };
        let mut staged = Vec::new();
        for (ext, bytes) in parts {
            writer.write_all(bytes)?;
            staged.push(StagedPart {
                ext: ext.to_string(),
                offset: *offset,
                len: bytes.len() as u64,
            });
            *offset += bytes.len() as u64;
        }
        Ok(staged)
    }

    /// Flushes and reopens the file for reading.
    pub fn finish(self) -> std::io::Result<StagingReader> {
        let taken = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((writer, _)) = taken {
            writer
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_data()?;
        }
        Ok(StagingReader {
            file: File::open(&self.path)?,
            path: self.path.clone(),
        })
    }
}

impl std::ops::Drop for Staging {
    fn drop(&mut self) {
        let unfinished = self.writer.get_mut().map(|w| w.is_some()).unwrap_or(true);
        if unfinished {
            let _ = std::fs::remove_file(&self.path);
        }
    }
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
