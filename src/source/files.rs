//! The `files` input: every object under a prefix is a sample, except `.txt` and `.json`
//! objects, which are sidecars of the media object with the same stem (`a.jpg` + `a.txt`).

use futures::FutureExt;
use object_store::{ObjectMeta, ObjectStoreExt};
use std::panic::AssertUnwindSafe;

use crate::contain::panic_message;
use std::collections::BTreeMap;

use super::{
    sanitize_extension, sanitize_key, split_extension, Location, Origin, Part, ReadLimits, Refusal,
    Sample,
};

/// One media object and its sidecars, as found by listing.
#[derive(Debug, Clone)]
pub struct FileUnit {
    pub media: ObjectMeta,
    pub sidecars: Vec<ObjectMeta>,
}

const SIDECAR_EXTENSIONS: &[&str] = &["txt", "json"];

/// Groups a listing into media objects with their sidecars, in path order. Hidden files and
/// object_store's in-progress upload files (`name#N`) are skipped. Returns the units and the
/// sidecars that have no media object beside them.
pub fn group(base: &Location, mut objects: Vec<ObjectMeta>) -> (Vec<FileUnit>, Vec<ObjectMeta>) {
    objects.retain(|o| {
        let name = o.location.filename().unwrap_or_default();
        !name.starts_with('.') && !name.contains('#')
    });
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    let mut sidecars: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    let mut media = Vec::new();
    for object in objects {
        let rel = base.relative(&object.location);
        let (stem, ext) = split_extension(&rel);
        if SIDECAR_EXTENSIONS.contains(&ext.as_str()) {
            sidecars.entry(stem.to_string()).or_default().push(object);
        } else {
            media.push(object);
        }
    }
    let mut used = std::collections::BTreeSet::new();
    let units = media
        .into_iter()
        .map(|media| {
            let rel = base.relative(&media.location);
            let stem = split_extension(&rel).0.to_string();
            let found = sidecars.get(&stem).cloned().unwrap_or_default();
            used.insert(stem);
            FileUnit {
                media,
                sidecars: found,
            }
        })
        .collect();
    let orphans = sidecars
        .into_iter()
        .filter(|(stem, _)| !used.contains(stem))
        .flat_map(|(_, v)| v)
        .collect();
    (units, orphans)
}

/// Fetches a media object and its sidecars into a [`Sample`]. A failed fetch of the media
/// object gives a sample with `fetch_error` set; a failed sidecar only loses that sidecar
/// (and is noted in `fetch_error` too, so it is visible in the ledger). Objects whose listed
/// sizes are over `limits` are not read: the sample is refused ([`Refusal::TooLarge`]).
pub async fn fetch(
    base: &Location,
    input_index: usize,
    unit: &FileUnit,
    limits: ReadLimits,
) -> Sample {
    match AssertUnwindSafe(fetch_unguarded(base, input_index, unit, limits))
        .catch_unwind()
        .await
    {
        Ok(sample) => sample,
        // A panic while fetching is this sample's fetch error: the others go on.
        Err(payload) => {
            let rel = base.relative(&unit.media.location);
            Sample::failed(
                format!("{input_index}:{rel}"),
                rel,
                Origin {
                    uri: base.uri_of(&unit.media.location),
                    ..Origin::default()
                },
                format!(
                    "reading this file panicked: {}",
                    panic_message(payload.as_ref())
                ),
            )
        }
    }
}

async fn fetch_unguarded(
    base: &Location,
    input_index: usize,
    unit: &FileUnit,
    limits: ReadLimits,
) -> Sample {
    let rel = base.relative(&unit.media.location);
    let (stem, ext) = split_extension(&rel);
    let mut sample = Sample {
        id: format!("{input_index}:{rel}"),
        key: sanitize_key(stem),
        name: rel.clone(),
        origin: Origin {
            uri: base.uri_of(&unit.media.location),
            etag: unit.media.e_tag.clone(),
            ..Origin::default()
        },
        parts: Vec::new(),
        media: Some(ext.clone()),
        caption: None,
        fetch_error: None,
        opted_out: false,
        refused: None,
    };
    // From the listing, before anything is read.
    let mut listed = 0u64;
    for object in std::iter::once(&unit.media).chain(&unit.sidecars) {
        let name = base.relative(&object.location);
        if let Some(why) = limits.refuse(&name, object.size, listed) {
            sample.refuse(Refusal::TooLarge, why);
            return sample;
        }
        listed += object.size;
    }
    listed = 0;
    match get_bytes_within(base, &unit.media.location, &|n| limits.refuse(&rel, n, 0)).await {
        Ok(bytes) => {
            listed += bytes.len() as u64;
            // The media part is never dropped for its name: one that cannot be used is `img`.
            let part = Part {
                ext: sanitize_extension(&ext).unwrap_or_else(|| "img".to_string()),
                bytes,
            };
            if part.ext != ext {
                let note = format!("{rel}: written as .{}", part.ext);
                sample.origin.part_changes.push(note);
            }
            sample.media = Some(part.ext.clone());
            sample.parts.push(part);
        }
        Err(GetError::TooLarge(why)) => {
            sample.refuse(Refusal::TooLarge, why);
            return sample;
        }
        Err(e) => {
            sample.fetch_error = Some(e.to_string());
            return sample;
        }
    }
    for sidecar in &unit.sidecars {
        let (_, ext) = split_extension(sidecar.location.as_ref());
        let name = base.relative(&sidecar.location);
        match get_bytes_within(base, &sidecar.location, &|n| {
            limits.refuse(&name, n, listed)
        })
        .await
        {
            Err(GetError::TooLarge(why)) => {
                sample.refuse(Refusal::TooLarge, why);
                return sample;
            }
            Ok(bytes) => {
                listed += bytes.len() as u64;
                if ext == "json" {
                    sample.caption = caption_from_json(&bytes);
                }
                sample.add_part(sidecar.location.as_ref(), Part { ext, bytes });
            }
            Err(e) => sample.fetch_error = Some(format!("sidecar: {e}")),
        }
    }
    sample
}

/// The whole object as bytes, or the store's error.
pub async fn get_bytes(
    base: &Location,
    path: &object_store::path::Path,
) -> Result<bytes::Bytes, object_store::Error> {
    base.store.get(path).await?.bytes().await
}

/// Why an object was not read.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// Its size is over a limit (the message says which); the body was not read.
    #[error("{0}")]
    TooLarge(String),
}

/// The whole object as bytes, unless `refuse` refuses its size: the size the GET answers with
/// (the file's size, or `Content-Length`) is checked before the body is read. That covers an
/// object grown since it was listed: object_store reads a local file to that size only, and
/// an HTTP body cannot run past its `Content-Length`.
pub async fn get_bytes_within(
    base: &Location,
    path: &object_store::path::Path,
    refuse: &dyn Fn(u64) -> Option<String>,
) -> Result<bytes::Bytes, GetError> {
    let result = base.store.get(path).await?;
    if let Some(why) = refuse(result.meta.size) {
        return Err(GetError::TooLarge(why));
    }
    Ok(result.bytes().await?)
}

/// The `caption` string field of a JSON object, if there is one.
pub fn caption_from_json(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get("caption")?.as_str().map(str::to_string)
}
