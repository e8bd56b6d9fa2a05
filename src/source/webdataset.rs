//! The `webdataset` input: existing `.tar` shards, streamed from the store (never downloaded
//! whole to disk). Members are grouped into samples by key as the WebDataset library does it:
//! the key is the member path up to the first dot of its file name, the rest is the extension.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::files::caption_from_json;
use super::{choose_media, sanitize_key, Origin, Part, ReadLimits, Refusal, Sample};
use crate::contain::contain_panic;
use crate::store::Location;

/// Splits a member path into WebDataset key and extension: `d/a.seg.JPG` → (`d/a`, `seg.jpg`).
/// Members whose file name has no dot (or starts with one) belong to no sample; `k1.` is key
/// `k1` with an empty extension (a part [`Sample::add_part`] drops, saying so).
pub fn key_and_extension(member: &str) -> Option<(&str, String)> {
    let file_start = member.rfind('/').map_or(0, |i| i + 1);
    let file = &member[file_start..];
    let dot = file.find('.')?;
    if dot == 0 {
        return None;
    }
    Some((
        &member[..file_start + dot],
        file[dot + 1..].to_ascii_lowercase(),
    ))
}

/// Why a shard could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("cannot open {uri}: {message}")]
    Open { uri: String, message: String },
    #[error("{uri} is not a readable tar file: {message}")]
    NotTar { uri: String, message: String },
    #[error("{uri}: tar stream broken after {count} samples: {message}")]
    Broken {
        uri: String,
        count: u64,
        message: String,
    },
    #[error("{uri}: member {member} is truncated ({why})")]
    TruncatedMember {
        uri: String,
        member: String,
        why: String,
    },
    #[error("{uri}: reading stopped after {count} rows: the reader panicked: {message}")]
    Panicked {
        uri: String,
        count: u64,
        message: String,
    },
    #[error("{uri}: no end-of-archive marker after {count} samples: the shard was cut short between two members")]
    NoEndMarker { uri: String, count: u64 },
}

/// Streams one shard and hands each sample to `emit`, in tar order. `relative` names the shard
/// relative to its input (it goes into sample ids). Returns the number of samples read, or why
/// the shard could not be read to its end; the samples read before the
/// error have been emitted, and what could not be read is emitted too, with `fetch_error` set:
/// the sample cut short by the error, or (when the error falls between samples, or the shard
/// cannot be opened at all) a row for the shard itself, so the ledger says what was lost.
///
/// A member larger than `limits` allow (by its header's size) is not read: its sample is a
/// refused row ([`Refusal::TooLarge`]) and the shard goes on past the member's data.
///
/// This blocks: call it from a blocking thread, with a handle to the runtime for the I/O.
pub fn read_shard(
    shard: &Location,
    relative: &str,
    input_index: usize,
    limits: ReadLimits,
    runtime: &tokio::runtime::Handle,
    mut emit: impl FnMut(Sample),
) -> Result<u64, ShardError> {
    let uri = shard.uri();
    let result = match runtime.block_on(shard.store.get(&shard.path)) {
        Ok(result) => result,
        Err(e) => {
            let error = ShardError::Open {
                uri: uri.clone(),
                message: e.to_string(),
            };
            emit(shard_row(&uri, relative, input_index, error.to_string()));
            return Err(error);
        }
    };
    let stream = result.into_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new_with_handle(StreamReader::new(stream), runtime.clone());
    read_tar(reader, &uri, relative, input_index, limits, emit)
}

/// [`read_shard`] on any reader of tar bytes: the WebDataset grouping, every error reported as
/// a sample with `fetch_error` and returned. `uri` is the shard's URI as samples record it.
/// A panic while reading (in the tar reader, or in the stream under it) ends the shard like a
/// broken stream: a row for the shard saying so, and an error; the run goes on.
pub fn read_tar(
    reader: impl Read,
    uri: &str,
    relative: &str,
    input_index: usize,
    limits: ReadLimits,
    mut emit: impl FnMut(Sample),
) -> Result<u64, ShardError> {
    let mut emitted = 0u64;
    let read = contain_panic(|| {
        read_tar_unguarded(reader, uri, relative, input_index, limits, |sample| {
            emitted += 1;
            emit(sample)
        })
    });
    read.unwrap_or_else(|message| {
        let error = ShardError::Panicked {
            uri: uri.to_string(),
            count: emitted,
            message: message.to_string(),
        };
        emit(shard_row(uri, relative, input_index, error.to_string()));
        Err(error)
    })
}

fn read_tar_unguarded(
    reader: impl Read,
    uri: &str,
    relative: &str,
    input_index: usize,
    limits: ReadLimits,
    mut emit: impl FnMut(Sample),
) -> Result<u64, ShardError> {
    let ran_dry = Arc::new(AtomicBool::new(false));
    let reader = EofWatch {
        inner: reader,
        ran_dry: ran_dry.clone(),
    };
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, reader));

    let mut group = Group::default();
    let mut count = 0u64;
    // Hands the sample being read to `emit`, with `error` when it is cut short by one; an error
    // between samples makes a row for the shard itself, so each error is on exactly one row.
    // The rows of members that are not regular files, met while this sample was read, go
    // first.
    let mut finish = |group: &mut Group, error: Option<String>, count: &mut u64| {
        for row in group.not_files.drain(..) {
            emit(row);
        }
        match group.take(uri, relative, input_index, error.clone()) {
            Some(sample) => {
                *count += 1;
                emit(sample);
            }
            None => {
                if let Some(message) = error {
                    emit(shard_row(uri, relative, input_index, message));
                }
            }
        }
    };
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => {
            let error = ShardError::NotTar {
                uri: uri.to_string(),
                message: e.to_string(),
            };
            finish(&mut group, Some(error.to_string()), &mut count);
            return Err(error);
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let error = ShardError::Broken {
                    uri: uri.to_string(),
                    count,
                    message: e.to_string(),
                };
                finish(&mut group, Some(error.to_string()), &mut count);
                return Err(error);
            }
        };
        let kind = entry.header().entry_type();
        // Folders and pax global headers are the archive's structure, not samples.
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        let member = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if !(kind.is_file() || kind.is_contiguous()) {
            let row = not_a_file_row(uri, relative, input_index, &member, &entry);
            group.not_files.push(row);
            continue;
        }
        let Some((key, ext)) = key_and_extension(&member) else {
            continue;
        };
        let key = key.to_string();
        if group.key.as_deref() != Some(key.as_str()) {
            finish(&mut group, None, &mut count);
            group.key = Some(key);
        }
        let size = entry.size();
        // Checked before a byte of the member is read: a member over the limits is skipped
        // (tar reads past its data in 1 MiB buffers) and its sample refused.
        if group.refused.is_some() {
            continue;
        }
        let before = group
            .members
            .iter()
            .map(|(_, p)| p.bytes.len() as u64)
            .sum();
        if let Some(why) = limits.refuse(&member, size, before) {
            group.members.clear();
            group.refused = Some((member, why));
            continue;
        }
        // The header's size is only a claim (a hostile or cut shard may declare 2^40 bytes):
        // reserve at most a small amount up front and let the vector grow with what arrives.
        let mut bytes = Vec::with_capacity(size.min(INITIAL_PART_CAPACITY) as usize);
        // A tar cut short reads as a short member, not as an error: compare with the header.
        let read = entry.read_to_end(&mut bytes);
        if read.is_err() || bytes.len() as u64 != size {
            let why = match read {
                Err(e) => e.to_string(),
                Ok(n) => format!("{n} of {size} bytes"),
            };
            let error = ShardError::TruncatedMember {
                uri: uri.to_string(),
                member: member.clone(),
                why,
            };
            group.members.push((
                member,
                Part {
                    ext,
                    bytes: bytes.into(),
                },
            ));
            finish(&mut group, Some(error.to_string()), &mut count);
            return Err(error);
        }
        group.members.push((
            member,
            Part {
                ext,
                bytes: bytes.into(),
            },
        ));
    }
    finish(&mut group, None, &mut count);
    // tar stops at the first zero block of the end-of-archive marker, before the end of the
    // stream; a shard cut between two members instead ends where a header should be, which
    // tar takes for a normal end. Only the stream running dry tells them apart.
    if ran_dry.load(Ordering::Relaxed) {
        let error = ShardError::NoEndMarker {
            uri: uri.to_string(),
            count,
        };
        emit(shard_row(uri, relative, input_index, error.to_string()));
        return Err(error);
    }
    Ok(count)
}

/// The most bytes reserved for a member before its data arrives.
const INITIAL_PART_CAPACITY: u64 = 8 << 20;

/// The ledger row for a shard that could not be read (at all, or past some point between
/// samples): id `<input>:<shard>`, before the ids of its samples.
fn shard_row(uri: &str, relative: &str, input_index: usize, message: String) -> Sample {
    Sample {
        id: format!("{input_index}:{relative}"),
        key: sanitize_key(relative),
        name: relative.to_string(),
        origin: Origin {
            uri: uri.to_string(),
            ..Origin::default()
        },
        parts: Vec::new(),
        media: None,
        caption: None,
        fetch_error: Some(message),
        opted_out: false,
        refused: None,
    }
}

/// The dropped row for a member that is not a regular file (a link, a device, a FIFO, a GNU
/// sparse file, a type tar does not define): it is not read, and its row names it and its
/// type. Its id is the member's path under the shard's; a key never has a dot in its file name,
/// so a member whose file name has none gets its type after `#`, and no id is a sample's too.
fn not_a_file_row<R: Read>(
    uri: &str,
    relative: &str,
    input_index: usize,
    member: &str,
    entry: &tar::Entry<R>,
) -> Sample {
    let kind = entry.header().entry_type();
    let target = || match entry.link_name_bytes() {
        Some(target) => format!(
            " to `{}`",
            super::printable_name(&String::from_utf8_lossy(&target))
        ),
        None => String::new(),
    };
    let (what, short) = if kind.is_symlink() {
        (format!("a symbolic link{}", target()), "symlink")
    } else if kind.is_hard_link() {
        (format!("a hard link{}", target()), "hardlink")
    } else if kind.is_character_special() {
        ("a character device".to_string(), "chardev")
    } else if kind.is_block_special() {
        ("a block device".to_string(), "blockdev")
    } else if kind.is_fifo() {
        ("a FIFO".to_string(), "fifo")
    } else if kind.is_gnu_sparse() {
        ("a GNU sparse file".to_string(), "sparse")
    } else {
        let byte = kind.as_byte();
        let shown = if byte.is_ascii_graphic() {
            format!("`{}`", byte as char)
        } else {
            format!("byte {byte}")
        };
        (format!("a member of tar type {shown}"), "other")
    };
    let file_name = member.rsplit('/').next().unwrap_or(member);
    let id = if file_name.contains('.') {
        format!("{input_index}:{relative}/{member}")
    } else {
        format!("{input_index}:{relative}/{member}#{short}")
    };
    let printable = super::printable_name(member);
    Sample {
        id,
        key: sanitize_key(member),
        name: member.to_string(),
        origin: Origin {
            uri: uri.to_string(),
            tar_member: Some(member.to_string()),
            ..Origin::default()
        },
        parts: Vec::new(),
        media: None,
        caption: None,
        fetch_error: Some(format!(
            "{uri}: member {printable} is {what}, not a regular file: not read"
        )),
        opted_out: false,
        refused: None,
    }
}

/// A reader that notes when its source has no more bytes to give.
struct EofWatch<R> {
    inner: R,
    ran_dry: Arc<AtomicBool>,
}

impl<R: Read> Read for EofWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ran_dry.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// The members of the sample being read.
#[derive(Default)]
struct Group {
    key: Option<String>,
    members: Vec<(String, Part)>,
    /// The member that brought the sample over `[limits]`, and why (its members are then not
    /// read).
    refused: Option<(String, String)>,
    /// Rows for the members that are not regular files met since the last sample was emitted.
    not_files: Vec<Sample>,
}

impl Group {
    fn take(
        &mut self,
        shard_uri: &str,
        relative: &str,
        input_index: usize,
        error: Option<String>,
    ) -> Option<Sample> {
        let key = self.key.take()?;
        let refused = self.refused.take();
        let mut sample = Sample {
            id: format!("{input_index}:{relative}/{key}"),
            key: sanitize_key(&key),
            name: key,
            origin: Origin {
                uri: shard_uri.to_string(),
                ..Origin::default()
            },
            parts: Vec::new(),
            media: None,
            caption: None,
            fetch_error: error,
            opted_out: false,
            refused: None,
        };
        // The member each part came from, by the extension it was added under.
        let mut member_of = Vec::new();
        for (member, part) in std::mem::take(&mut self.members) {
            if let Some(ext) = sample.add_part(&member, part) {
                member_of.push((ext, member));
            }
        }
        sample.media = choose_media(&sample.parts);
        sample.origin.tar_member = sample
            .media
            .as_ref()
            .and_then(|ext| member_of.iter().find(|(e, _)| e == ext))
            .or(member_of.first())
            .map(|(_, member)| member.clone());
        sample.caption = sample
            .part("json")
            .and_then(|p| caption_from_json(&p.bytes));
        // An error that cut the shard short is the row's fetch error; the refusal is kept in
        // the part changes then, so each error stays on exactly one row.
        if let Some((member, why)) = refused {
            sample.origin.tar_member.get_or_insert(member);
            match sample.fetch_error {
                None => sample.refuse(Refusal::TooLarge, why),
                Some(_) => sample.origin.part_changes.push(why),
            }
        }
        Some(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_webdataset_convention() {
        assert_eq!(
            key_and_extension("d/a.seg.JPG"),
            Some(("d/a", "seg.jpg".to_string()))
        );
        assert_eq!(
            key_and_extension("000123.jpg"),
            Some(("000123", "jpg".to_string()))
        );
        assert_eq!(
            key_and_extension("d.x/a.txt"),
            Some(("d.x/a", "txt".to_string()))
        );
        assert_eq!(key_and_extension("k1."), Some(("k1", String::new())));
        assert_eq!(key_and_extension("README"), None);
        assert_eq!(key_and_extension("d/.hidden"), None);
    }

    fn read_all(bytes: &[u8]) -> (Result<u64, String>, Vec<Sample>) {
        let mut samples = Vec::new();
        let result = read_tar(
            bytes,
            "file:///s.tar",
            "s.tar",
            0,
            ReadLimits::default(),
            |s| samples.push(s),
        );
        (result.map_err(|e| e.to_string()), samples)
    }

    #[test]
    fn a_member_declaring_2_pow_40_bytes_over_data_cut_short_is_one_failed_row() {
        // Before: `Vec::with_capacity(2^40)` aborted the process on these exact bytes.
        let mut header = tar::Header::new_gnu();
        header.set_path("liar.jpg").unwrap();
        header.set_size(1 << 40);
        header.set_cksum();
        let mut shard = header.as_bytes().to_vec();
        shard.extend_from_slice(&[0xAB; 1000]);
        // With limits that let it be read, it is read as far as it goes: truncated.
        let terabyte = ReadLimits {
            max_part_bytes: 1 << 40,
            max_sample_bytes: 1 << 40,
        };
        let mut samples = Vec::new();
        let result = read_tar(&shard[..], "file:///s.tar", "s.tar", 0, terabyte, |s| {
            samples.push(s)
        });
        let error = result.unwrap_err().to_string();
        assert!(
            error.contains("member liar.jpg is truncated (1000 of 1099511627776 bytes)"),
            "{error}"
        );
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].id, "0:s.tar/liar");
        assert_eq!(samples[0].fetch_error.as_deref(), Some(error.as_str()));
        // With the default limits it is not read at all: skipping its data finds the shard
        // cut short, which is the row's error, and the refusal is noted beside it.
        let (result, samples) = read_all(&shard);
        let error = result.unwrap_err();
        assert!(
            error.contains("tar stream broken after 0 samples"),
            "{error}"
        );
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].fetch_error.as_deref(), Some(error.as_str()));
        assert_eq!(samples[0].refused, None);
        assert_eq!(
            samples[0].origin.part_changes,
            ["liar.jpg: 1099511627776 bytes > limits.max_part_bytes 1073741824; not read"]
        );
    }

    #[test]
    fn members_over_the_byte_limits_are_not_read_and_their_sample_is_refused() {
        let big = vec![7u8; 3000];
        let shard = tar_of(&[
            (b"a.jpg", b"first"),
            (b"big.jpg", &big),
            (b"big.txt", b"caption"),
            (b"sum.jpg", &big[..900]),
            (b"sum.txt", &big[..900]),
            (b"c.jpg", b"third"),
        ]);
        let limits = ReadLimits {
            max_part_bytes: 1000,
            max_sample_bytes: 1500,
        };
        let mut samples = Vec::new();
        let result = read_tar(&shard[..], "file:///s.tar", "s.tar", 0, limits, |s| {
            samples.push(s)
        });
        assert_eq!(result, Ok(4));
        let ids: Vec<&str> = samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            ["0:s.tar/a", "0:s.tar/big", "0:s.tar/sum", "0:s.tar/c"]
        );
        assert_eq!(samples[0].refused, None);
        assert_eq!(samples[3].parts[0].bytes.as_ref(), b"third");
        for (sample, why) in [
            (
                &samples[1],
                "big.jpg: 3000 bytes > limits.max_part_bytes 1000; not read",
            ),
            (
                &samples[2],
                "sum.txt: the sample's parts reach 1800 bytes > limits.max_sample_bytes 1500; not read",
            ),
        ] {
            assert_eq!(sample.refused, Some(Refusal::TooLarge));
            assert_eq!(sample.fetch_error.as_deref(), Some(why));
            assert!(sample.parts.is_empty());
        }
    }

    /// A tar of `(member name, data)` regular files, with an end-of-archive marker.
    fn tar_of(members: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in members {
            let mut header = tar::Header::new_gnu();
            header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
            header.set_size(data.len() as u64);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0; 1024]);
        out
    }

    #[test]
    fn parts_with_unwritable_names_are_renamed_or_dropped_and_noted() {
        let long = format!("k1.{}", "a".repeat(96));
        let shard = tar_of(&[
            (b"k1.jpg", b"jpeg"),
            (long.as_bytes(), b"long"),
            (b"k1.", b"empty"),
            (b"k1.x\xff\xfey", b"not utf-8"),
            (b"k1.a\\b", b"backslash"),
        ]);
        let (result, samples) = read_all(&shard);
        assert_eq!(result, Ok(1));
        let sample = &samples[0];
        let exts: Vec<&str> = sample.parts.iter().map(|p| p.ext.as_str()).collect();
        let cut = crate::source::sanitize_extension(&"a".repeat(96)).unwrap();
        assert_eq!(exts, ["jpg", cut.as_str(), "x__y", "a_b"]);
        assert_eq!(sample.media.as_deref(), Some("jpg"));
        assert_eq!(sample.origin.tar_member.as_deref(), Some("k1.jpg"));
        assert_eq!(
            sample.origin.part_changes,
            [
                format!("{long}: written as .{cut}"),
                "k1.: dropped, no usable extension".to_string(),
                "k1.x\u{fffd}\u{fffd}y: written as .x__y".to_string(),
                "k1.a\\b: written as .a_b".to_string(),
            ]
        );
    }

    /// Tar bytes read 512 at a time that panic at byte `panic_at`, as a bug in a stream under
    /// the reader (or in the reader itself) would.
    struct PanickingReader {
        bytes: Vec<u8>,
        at: usize,
        panic_at: usize,
    }

    impl Read for PanickingReader {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            assert!(self.at < self.panic_at, "stream bug at byte {}", self.at);
            let n = buf.len().min(512).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn a_panic_while_reading_a_shard_is_a_row_for_the_shard() {
        let shard = tar_of(&[
            (b"a.jpg", b"first"),
            (b"a.txt", b"caption"),
            (b"b.jpg", b"second"),
            (b"c.jpg", b"third"),
        ]);
        // Panics on the read after b.jpg's header: `a` is complete and emitted, `b` is not.
        let reader = PanickingReader {
            bytes: shard,
            at: 0,
            panic_at: 5 * 512,
        };
        let mut samples = Vec::new();
        let limits = ReadLimits::default();
        let result = read_tar(reader, "file:///s.tar", "s.tar", 0, limits, |s| {
            samples.push(s)
        });
        let error = result.unwrap_err().to_string();
        assert_eq!(
            error,
            "file:///s.tar: reading stopped after 1 rows: the reader panicked: stream bug at byte 2560"
        );
        let ids: Vec<&str> = samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["0:s.tar/a", "0:s.tar"]);
        assert_eq!(samples[0].fetch_error, None);
        assert_eq!(samples[1].fetch_error.as_deref(), Some(error.as_str()));
    }

    #[test]
    fn a_shard_that_is_not_a_tar_or_is_empty_is_a_row_for_the_shard() {
        for bytes in [&b"<html>not a shard</html>".repeat(40)[..], &[][..]] {
            let (result, samples) = read_all(bytes);
            let error = result.unwrap_err();
            assert_eq!(samples.len(), 1, "{error}");
            assert_eq!(samples[0].id, "0:s.tar");
            assert_eq!(samples[0].name, "s.tar");
            assert_eq!(samples[0].fetch_error.as_deref(), Some(error.as_str()));
        }
    }

    #[test]
    fn members_that_are_not_regular_files_are_rows_naming_their_type() {
        // Devices and a type tar does not define, as the tar crate writes them, between the
        // two members of one sample; a dotless name gets its type in its id.
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, name, data).unwrap();
        };
        add("k.jpg", tar::EntryType::Regular, b"jpeg");
        add("tty", tar::EntryType::Char, b"");
        add("disk.img", tar::EntryType::Block, b"");
        add("odd.bin", tar::EntryType::new(b'Z'), b"zz");
        add("dir", tar::EntryType::Directory, b"");
        add("k.txt", tar::EntryType::Continuous, b"caption");
        let shard = builder.into_inner().unwrap();
        let (result, samples) = read_all(&shard);
        assert_eq!(result, Ok(1));
        let rows: Vec<(&str, Option<&str>)> = samples
            .iter()
            .map(|s| (s.id.as_str(), s.fetch_error.as_deref()))
            .collect();
        let error = |what: &str| {
            Some(format!(
                "file:///s.tar: member {what}, not a regular file: not read"
            ))
        };
        assert_eq!(
            rows,
            [
                (
                    "0:s.tar/tty#chardev",
                    error("tty is a character device").as_deref()
                ),
                (
                    "0:s.tar/disk.img",
                    error("disk.img is a block device").as_deref()
                ),
                (
                    "0:s.tar/odd.bin",
                    error("odd.bin is a member of tar type `Z`").as_deref()
                ),
                ("0:s.tar/k", None),
            ]
        );
        assert_eq!(samples[3].parts.len(), 2);
        assert_eq!(samples[1].origin.tar_member.as_deref(), Some("disk.img"));
    }
}
