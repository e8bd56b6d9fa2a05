//! WebDataset shards: plain tar files `<series>-000000.tar`, … with every file of a sample under
//! the same key, one series per set of parts the samples carry (`series_name`). Headers are
//! fixed (mode 0644, uid/gid 0, mtime 0) so that the same samples give byte-identical shards.
//! Each shard is streamed into an `object_store` upload that only becomes visible when complete
//! (rename on local disk, multipart completion on S3); an upload that fails, or that a failing
//! run leaves unfinished, is aborted so no part is left behind. What goes into a sample is the
//! caller's.

use object_store::buffered::BufWriter;
use object_store::path::Path as ObjPath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use tokio::io::AsyncWriteExt;

use crate::store::Location;

/// Why a shard could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("writing {shard}: {source}")]
    Write {
        shard: String,
        source: std::io::Error,
    },
    #[error("completing {shard}: {source}")]
    Complete {
        shard: String,
        source: std::io::Error,
    },
}

/// A finished shard, as recorded in the run manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Path relative to the output, e.g. `shards/jpg-000000.tar`.
    pub name: String,
    /// The series: every sample of its shards carries the same parts (`series_name`).
    pub series: String,
    pub samples: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The version whose folder holds the file, when not the version listing it: an
    /// incremental or forget version lists the files of earlier versions it keeps (their name
    /// is then relative to `versions/<version>/`). Absent for the version's own files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// The longest member name a ustar header holds without a `/` to split at.
const USTAR_NAME_LEN: usize = 100;

/// Appends one tar member (header, data, padding to 512 bytes) to `out`. A name over ustar's
/// 100 bytes (a sanitised key made unique again, with a long extension) is carried by a POSIX
/// pax `path` record before the header, as GNU tar, Python's `tarfile` and `webdataset` read
/// it; the header then holds the name cut to 100 bytes.
pub fn append_member(out: &mut Vec<u8>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    if name.len() > USTAR_NAME_LEN {
        append_pax_path(out, name)?;
        let mut cut = USTAR_NAME_LEN;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        header.set_path(&name[..cut])?;
    } else {
        header.set_path(name)?;
    }
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

/// A pax extended header (`x`) whose one record is `path=<name>`. Written by hand because
/// `tar::Builder` owns its output and writes mtimes we set ourselves; the record format is
/// POSIX's: `<length> path=<name>\n`, the length counting its own digits.
fn append_pax_path(out: &mut Vec<u8>, name: &str) -> std::io::Result<()> {
    let body_len = " path=".len() + name.len() + 1;
    let mut len = body_len + 1;
    while len != body_len + len.to_string().len() {
        len = body_len + len.to_string().len();
    }
    let record = format!("{len} path={name}\n");
    let mut header = tar::Header::new_ustar();
    header.set_path("././@PaxHeader")?;
    header.set_size(record.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(record.as_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
    Ok(())
}

/// Size of the end-of-archive marker: two zero blocks.
pub const TAR_END: usize = 1024;

struct OpenShard {
    info: ShardInfo,
    upload: BufWriter,
    hasher: Sha256,
}

/// The shard series of samples that carry the parts `exts` (a sample's staged parts, media
/// first, without `.txt` and `.json`, which every sample of a series carries).
///
/// Why series: Hugging Face `datasets` (its `webdataset` builder) takes the columns of a whole
/// dataset from the first five samples of the first shard: they must carry the same parts, and
/// a part a later sample adds is silently dropped. Samples are therefore written in series of
/// shards whose samples carry exactly the same parts, named by them: `jpg`, `png`, `mp4`,
/// `mp4_8frames` (eight `NNN.jpg` keyframes), `jpg_cls` (a WebDataset input's other parts).
/// The media keep their detected extension and original bytes: a series per format, rather than
/// one media part name for every format (as img2dataset does when it does not re-encode).
pub fn series_name(exts: &[&str]) -> String {
    let is_keyframe = |e: &str| {
        e.len() == 7 && e.ends_with(".jpg") && e.as_bytes()[..3].iter().all(u8::is_ascii_digit)
    };
    let keyframes = exts.iter().skip(1).filter(|e| is_keyframe(e)).count();
    let others: BTreeSet<String> = exts
        .iter()
        .skip(1)
        .filter(|e| !is_keyframe(e))
        .map(|e| e.replace('.', "_"))
        .collect();
    let mut name = exts.first().map_or("parts", |e| e).replace('.', "_");
    for other in others {
        name = format!("{name}_{other}");
    }
    if keyframes > 0 {
        name = format!("{name}_{keyframes}frames");
    }
    name
}

/// Groups samples (indexes, in write order) by their part set, each group named by
/// `series_name`; part sets whose names collide get 8 hex of their sha256 appended. Returned in
/// name order, each group keeping the write order.
pub fn group_into_series(parts: &[(usize, Vec<&str>)]) -> Vec<(String, Vec<usize>)> {
    let mut by_parts: BTreeMap<Vec<&str>, Vec<usize>> = BTreeMap::new();
    for (index, exts) in parts {
        by_parts.entry(exts.clone()).or_default().push(*index);
    }
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for exts in by_parts.keys() {
        *names.entry(series_name(exts)).or_default() += 1;
    }
    let mut series: Vec<(String, Vec<usize>)> = by_parts
        .into_iter()
        .map(|(exts, members)| {
            let mut name = series_name(&exts);
            if names[&name] > 1 {
                let digest = hex::encode(Sha256::digest(exts.join("/").as_bytes()));
                name = format!("{name}_{}", &digest[..8]);
            }
            (name, members)
        })
        .collect();
    series.sort();
    series
}

/// Writes one series of samples into numbered shards, starting a new one at the configured
/// limits.
pub struct ShardWriter<'a> {
    output: &'a Location,
    runtime: &'a tokio::runtime::Handle,
    series: String,
    max_samples: u64,
    max_bytes: u64,
    open: Option<OpenShard>,
    done: Vec<ShardInfo>,
    /// The number of the first shard it writes (a planned shard of a layout: `write::layout`).
    first_number: usize,
}

impl<'a> ShardWriter<'a> {
    pub fn new(
        output: &'a Location,
        runtime: &'a tokio::runtime::Handle,
        series: &str,
        max_samples: u64,
        max_bytes: u64,
    ) -> Self {
        ShardWriter {
            output,
            runtime,
            series: series.to_string(),
            max_samples,
            max_bytes,
            open: None,
            done: Vec::new(),
            first_number: 0,
        }
    }

    /// Numbers its shards from `first` instead of 0.
    pub fn numbered_from(mut self, first: usize) -> Self {
        self.first_number = first;
        self
    }

    /// Adds one sample, already serialised as tar members. Returns the shard's name.
    pub fn add(&mut self, members: &[u8]) -> Result<String, ShardError> {
        let full = self.open.as_ref().is_some_and(|s| {
            s.info.samples >= self.max_samples
                || (s.info.samples > 0
                    && s.info.bytes + (members.len() + TAR_END) as u64 > self.max_bytes)
        });
        if full {
            self.close_current()?;
        }
        if self.open.is_none() {
            let number = self.first_number + self.done.len();
            let name = shard_name(&self.series, number);
            let path = relative_path(&self.output.path, &name);
            self.open = Some(OpenShard {
                info: ShardInfo {
                    name,
                    series: self.series.clone(),
                    samples: 0,
                    bytes: 0,
                    sha256: String::new(),
                    version: None,
                },
                upload: BufWriter::new(self.output.store.clone(), path),
                hasher: Sha256::new(),
            });
        }
        let shard = self.open.as_mut().expect("opened above");
        shard.hasher.update(members);
        if let Err(source) = self.runtime.block_on(shard.upload.write_all(members)) {
            let shard = shard.info.name.clone();
            self.abort_current();
            return Err(ShardError::Write { shard, source });
        }
        shard.info.samples += 1;
        shard.info.bytes += members.len() as u64;
        Ok(shard.info.name.clone())
    }

    fn close_current(&mut self) -> Result<(), ShardError> {
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
            .map_err(|source| ShardError::Complete {
                shard: name,
                source,
            })?;
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
    pub fn finish(mut self) -> Result<Vec<ShardInfo>, ShardError> {
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

/// The name of shard `number` of a series, relative to the output.
pub fn shard_name(series: &str, number: usize) -> String {
    format!("shards/{series}-{number:06}.tar")
}

/// Bytes [`append_member`] writes for a member `name` of `len` data bytes: its header (built
/// here, so a header with extension blocks is counted right) and the data padded to 512.
pub fn member_bytes(name: &str, len: u64) -> std::io::Result<u64> {
    let mut header = Vec::new();
    append_member(&mut header, name, &[])?;
    Ok(header.len() as u64 + len.div_ceil(512) * 512)
}

/// `base/relative` as an object path.
pub fn relative_path(base: &ObjPath, relative: &str) -> ObjPath {
    relative
        .split('/')
        .fold(base.clone(), |path, part| path.join(part))
}

/// Removes what a writer killed mid-shard left in the local version folder `dir`: a local
/// upload goes to a temporary `shards/<name>#N` (object_store's `LocalFileSystem`, which lists
/// no such file) that a kill leaves behind; readers never take it, as no manifest lists it.
/// Only such leftovers of the shards `names` are removed (regular files, never through a
/// symlink), so a restarted write leaves the folder as an uninterrupted one would. An object
/// store keeps an unfinished multipart upload out of sight (aborted, or by a lifecycle rule):
/// nothing to do there. Returns what was removed, relative to `dir`.
pub fn remove_unfinished(
    dir: &Location,
    names: &BTreeSet<&str>,
) -> Result<Vec<String>, super::WriteError> {
    let Some(folder) = dir.child("shards").local_path() else {
        return Ok(Vec::new());
    };
    let io_error = |e: std::io::Error| super::WriteError::Store {
        uri: folder.display().to_string(),
        message: e.to_string(),
    };
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error)?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let unfinished = file.rsplit_once('#').is_some_and(|(base, n)| {
            names.contains(format!("shards/{base}").as_str())
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        });
        if unfinished && entry.file_type().map_err(io_error)?.is_file() {
            std::fs::remove_file(entry.path()).map_err(io_error)?;
            removed.push(format!("shards/{file}"));
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_unfinished_uploads_of_the_shards_named_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let shards = dir.path().join("shards");
        std::fs::create_dir(&shards).unwrap();
        for name in [
            "jpg-000000.tar#1",
            "jpg-000000.tar",
            "jpg-000001.tar#2",
            "notes#1",
        ] {
            std::fs::write(shards.join(name), b"x").unwrap();
        }
        let location = crate::store::Stores::new()
            .open(dir.path().to_str().unwrap())
            .unwrap();
        let names = BTreeSet::from(["shards/jpg-000000.tar", "shards/notes"]);
        let mut removed = remove_unfinished(&location, &names).unwrap();
        removed.sort();
        assert_eq!(removed, ["shards/jpg-000000.tar#1", "shards/notes#1"]);
        let mut left: Vec<String> = std::fs::read_dir(&shards)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["jpg-000000.tar", "jpg-000001.tar#2"]);
    }

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

    #[test]
    fn a_name_over_100_bytes_is_carried_by_a_pax_record() {
        // A key cut to 80 bytes, made unique again (`_` + 8 hex), and a 19-byte extension.
        let name = format!("{}_0123abcd.{}", "k".repeat(80), "e".repeat(19));
        let mut out = Vec::new();
        append_member(&mut out, &name, b"data").unwrap();
        append_member(&mut out, "short.txt", b"").unwrap();
        out.extend_from_slice(&[0; 1024]);
        let mut archive = tar::Archive::new(std::io::Cursor::new(out));
        let names: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect();
        assert_eq!(names, [(name, 4), ("short.txt".to_string(), 0)]);
    }

    #[test]
    fn series_are_named_by_the_parts_their_samples_carry() {
        assert_eq!(series_name(&["jpg"]), "jpg");
        assert_eq!(series_name(&["png", "cls", "npy"]), "png_cls_npy");
        assert_eq!(series_name(&["jpg", "npy", "cls"]), "jpg_cls_npy");
        let frames = ["mp4", "000.jpg", "001.jpg", "002.jpg"];
        assert_eq!(series_name(&frames), "mp4_3frames");
        assert_eq!(series_name(&["mp4", "seg.json"]), "mp4_seg_json");
        assert_eq!(series_name(&[]), "parts");
    }

    #[test]
    fn samples_are_grouped_by_their_exact_part_sets() {
        let parts = vec![
            (0, vec!["jpg"]),
            (1, vec!["png"]),
            (2, vec!["jpg"]),
            (3, vec!["jpg", "a_b"]),
            (4, vec!["jpg", "a.b"]),
            (5, vec!["mp4", "000.jpg"]),
            (6, vec!["mp4", "000.jpg", "001.jpg"]),
        ];
        let series = group_into_series(&parts);
        let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
        // Two part sets with the same name get their own hashes.
        assert_eq!(names.len(), 6);
        assert_eq!(names[0], "jpg");
        assert!(names[1].starts_with("jpg_a_b_") && names[2].starts_with("jpg_a_b_"));
        assert_ne!(names[1], names[2]);
        assert_eq!(&names[3..], ["mp4_1frames", "mp4_2frames", "png"]);
        assert_eq!(series[0].1, [0, 2]);
        assert_eq!(series[5].1, [1]);
    }
}
