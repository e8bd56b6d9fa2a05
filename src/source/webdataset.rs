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
use super::{choose_media, sanitize_key, Location, Origin, Part, Sample};

/// Splits a member path into WebDataset key and extension: `d/a.seg.JPG` → (`d/a`, `seg.jpg`).
/// Members whose file name has no dot (or starts with one) belong to no sample.
pub fn key_and_extension(member: &str) -> Option<(&str, String)> {
    let file_start = member.rfind('/').map_or(0, |i| i + 1);
    let file = &member[file_start..];
    let dot = file.find('.')?;
    if dot == 0 || dot + 1 == file.len() {
        return None;
    }
    Some((
        &member[..file_start + dot],
        file[dot + 1..].to_ascii_lowercase(),
    ))
}

/// Streams one shard and hands each sample to `emit`, in tar order. `relative` names the shard
/// relative to its input (it goes into sample ids). Returns the number of samples read, or an
/// error message when the shard could not be read to its end; the samples read before the
/// error have been emitted, and a sample cut short by it is emitted with `fetch_error` set.
///
/// This blocks: call it from a blocking thread, with a handle to the runtime for the I/O.
pub fn read_shard(
    shard: &Location,
    relative: &str,
    input_index: usize,
    runtime: &tokio::runtime::Handle,
    mut emit: impl FnMut(Sample),
) -> Result<u64, String> {
    let uri = shard.uri();
    let result = runtime
        .block_on(shard.store.get(&shard.path))
        .map_err(|e| format!("cannot open {uri}: {e}"))?;
    let stream = result.into_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new_with_handle(StreamReader::new(stream), runtime.clone());
    let ran_dry = Arc::new(AtomicBool::new(false));
    let reader = EofWatch {
        inner: reader,
        ran_dry: ran_dry.clone(),
    };
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, reader));

    let mut group = Group::default();
    let mut count = 0u64;
    let mut finish = |group: &mut Group, error: Option<String>, count: &mut u64| {
        if let Some(sample) = group.take(&uri, relative, input_index, error) {
            *count += 1;
            emit(sample);
        }
    };
    let entries = archive
        .entries()
        .map_err(|e| format!("{uri} is not a readable tar file: {e}"))?;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let message = format!("{uri}: tar stream broken after {count} samples: {e}");
                finish(&mut group, Some(message.clone()), &mut count);
                return Err(message);
            }
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = entry.path().map(|p| p.to_string_lossy().into_owned());
        let Ok(member) = member else { continue };
        let Some((key, ext)) = key_and_extension(&member) else {
            continue;
        };
        let key = key.to_string();
        if group.key.as_deref() != Some(key.as_str()) {
            finish(&mut group, None, &mut count);
            group.key = Some(key);
        }
        let size = entry.size();
        let mut bytes = Vec::with_capacity(size as usize);
        // A tar cut short reads as a short member, not as an error: compare with the header.
        let read = entry.read_to_end(&mut bytes);
        if read.is_err() || bytes.len() as u64 != size {
            let why = match read {
                Err(e) => e.to_string(),
                Ok(n) => format!("{n} of {size} bytes"),
            };
            let message = format!("{uri}: member {member} is truncated ({why})");
            group.members.push((
                member,
                Part {
                    ext,
                    bytes: bytes.into(),
                },
            ));
            finish(&mut group, Some(message.clone()), &mut count);
            return Err(message);
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
        return Err(format!(
            "{uri}: no end-of-archive marker after {count} samples: the shard was cut short between two members"
        ));
    }
    Ok(count)
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
        let members = std::mem::take(&mut self.members);
        let parts: Vec<Part> = members.iter().map(|(_, p)| p.clone()).collect();
        let media = choose_media(&parts);
        let tar_member = media
            .as_ref()
            .and_then(|ext| members.iter().find(|(_, p)| &p.ext == ext))
            .or(members.first())
            .map(|(name, _)| name.clone());
        let caption = parts
            .iter()
            .find(|p| p.ext == "json")
            .and_then(|p| caption_from_json(&p.bytes));
        Some(Sample {
            id: format!("{input_index}:{relative}/{key}"),
            key: sanitize_key(&key),
            name: key,
            origin: Origin {
                uri: shard_uri.to_string(),
                tar_member,
                ..Origin::default()
            },
            parts,
            media,
            caption,
            fetch_error: error,
            opted_out: false,
        })
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
        assert_eq!(key_and_extension("README"), None);
        assert_eq!(key_and_extension("d/.hidden"), None);
    }
}
