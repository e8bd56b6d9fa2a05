//! Fetching a `files` input's units (grouped by `plan::files`: a media object and the `.txt`
//! and `.json` sidecars with its stem) into samples.

use futures::FutureExt;
use std::panic::AssertUnwindSafe;

use crate::contain::panic_message;
use crate::plan::files::FileUnit;
use crate::store::{get_bytes_within, split_extension, GetError, Location};

use super::{sanitize_extension, sanitize_key, Origin, Part, ReadLimits, Refusal, Sample};

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

/// The `caption` string field of a JSON object, if there is one.
pub fn caption_from_json(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get("caption")?.as_str().map(str::to_string)
}
