//! WebDataset shards: plain tar files `shard-000000.tar`, … with every file of a sample under
//! the same key. Headers are fixed (mode 0644, uid/gid 0, mtime 0) so that the same samples
//! give byte-identical shards. Each shard is streamed into an `object_store` upload that only
//! becomes visible when complete (rename on local disk, multipart completion on S3); an upload
//! that fails, or that a failing run leaves unfinished, is aborted so no part is left behind.

use object_store::buffered::BufWriter;
use object_store::path::Path as ObjPath;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::source::Location;

/// A finished shard, as recorded in the run manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardInfo {
    /// Path relative to the output, e.g. `shards/shard-000000.tar`.
    pub name: String,
    pub samples: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Appends one tar member (header, data, padding to 512 bytes) to `out`.
pub fn append_member(out: &mut Vec<u8>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    let padding = (512 - data.len() % 512) % 512;
    out.resize(out.len() + padding, 0);
    Ok(())
}

/// Size of the end-of-archive marker: two zero blocks.
const TAR_END: usize = 1024;

struct OpenShard {
    info: ShardInfo,
    upload: BufWriter,
    hasher: Sha256,
}

/// Writes samples into numbered shards, starting a new one at the configured limits.
pub struct ShardWriter<'a> {
    output: &'a Location,
    runtime: &'a tokio::runtime::Handle,
    max_samples: u64,
    max_bytes: u64,
    open: Option<OpenShard>,
    done: Vec<ShardInfo>,
}

impl<'a> ShardWriter<'a> {
    pub fn new(
        output: &'a Location,
        runtime: &'a tokio::runtime::Handle,
        max_samples: u64,
        max_bytes: u64,
    ) -> Self {
        ShardWriter {
            output,
            runtime,
            max_samples,
            max_bytes,
            open: None,
            done: Vec::new(),
        }
    }

    /// Adds one sample, already serialised as tar members. Returns the shard's name.
    pub fn add(&mut self, members: &[u8]) -> Result<String, String> {
        let full = self.open.as_ref().is_some_and(|s| {
            s.info.samples >= self.max_samples
                || (s.info.samples > 0
                    && s.info.bytes + (members.len() + TAR_END) as u64 > self.max_bytes)
        });
        if full {
            self.close_current()?;
        }
        if self.open.is_none() {
            let name = format!("shards/shard-{:06}.tar", self.done.len());
            let path = relative_path(&self.output.path, &name);
            self.open = Some(OpenShard {
                info: ShardInfo {
                    name,
                    samples: 0,
                    bytes: 0,
                    sha256: String::new(),
                },
                upload: BufWriter::new(self.output.store.clone(), path),
                hasher: Sha256::new(),
            });
        }
        let shard = self.open.as_mut().expect("opened above");
        shard.hasher.update(members);
        if let Err(e) = self.runtime.block_on(shard.upload.write_all(members)) {
            let message = format!("writing {}: {e}", shard.info.name);
            self.abort_current();
            return Err(message);
        }
        shard.info.samples += 1;
        shard.info.bytes += members.len() as u64;
        Ok(shard.info.name.clone())
    }

    fn close_current(&mut self) -> Result<(), String> {
        let Some(mut shard) = self.open.take() else {
            return Ok(());
        };
        let end = [0u8; TAR_END];
        shard.hasher.update(end);
        shard.info.bytes += TAR_END as u64;
        let name = shard.info.name.clone();
        self.runtime
            .block_on(async {
                shard.upload.write_all(&end).await?;
                shard.upload.shutdown().await
            })
            .map_err(|e| format!("completing {name}: {e}"))?;
        shard.info.sha256 = hex::encode(shard.hasher.finalize());
        self.done.push(shard.info);
        Ok(())
    }

    /// Aborts the open shard's upload (a multipart upload on S3 is deleted with its parts; a
    /// local temporary file is removed). Its final name never appears.
    fn abort_current(&mut self) {
        let Some(mut shard) = self.open.take() else {
            return;
        };
        // `block_on` cannot run inside the runtime; the writer is only used outside it.
        if tokio::runtime::Handle::try_current().is_ok() {
            tracing::warn!(
                "{}: an unfinished upload is left to the store's clean-up (dropped inside the runtime)",
                shard.info.name
            );
            return;
        }
        if let Err(e) = self.runtime.block_on(shard.upload.abort()) {
            tracing::warn!(
                "{}: could not abort the unfinished upload: {e}; a bucket lifecycle rule \
                 (AbortIncompleteMultipartUpload) removes such parts",
                shard.info.name
            );
        }
    }

    /// Completes the last shard and returns them all.
    pub fn finish(mut self) -> Result<Vec<ShardInfo>, String> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }
}

impl Drop for ShardWriter<'_> {
    /// A writer dropped with a shard open belongs to a run that failed: abort that upload.
    fn drop(&mut self) {
        self.abort_current();
    }
}

/// `base/relative` as an object path.
pub fn relative_path(base: &ObjPath, relative: &str) -> ObjPath {
    relative
        .split('/')
        .fold(base.clone(), |path, part| path.join(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_padded_ustar_entries() {
        let mut out = Vec::new();
        append_member(&mut out, "key.txt", b"hello").unwrap();
        assert_eq!(out.len(), 1024);
        assert_eq!(&out[..7], b"key.txt");
        assert_eq!(&out[257..263], b"ustar\0");
        assert_eq!(&out[512..517], b"hello");
        let mut archive = tar::Archive::new(std::io::Cursor::new([out, vec![0; 1024]].concat()));
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().clone())
            .collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].size().unwrap(), 5);
        assert_eq!(entries[0].mtime().unwrap(), 0);
    }
}
