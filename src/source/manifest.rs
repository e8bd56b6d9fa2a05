//! Fetching what a `manifest` input's rows name (the rows are read by `plan::manifest`):
//! `http(s)://` URLs are downloaded by `store::http`, everything else is read through the
//! object stores. This reads no media bytes besides the object each row names, and decides
//! nothing about them.

use crate::contain::panic_message;
use crate::plan::manifest::{is_http_url, resolve_url, ManifestRow};
use crate::store::{get_bytes_within, split_extension, GetError, Location, Stores};
use futures::FutureExt;
use object_store::ObjectStoreExt;
use std::panic::AssertUnwindSafe;

use super::{sanitize_extension, sanitize_key, Origin, Part, ReadLimits, Refusal, Sample};

/// What the rows of one manifest input may read: objects inside `input` (the input's own
/// folder or prefix) unless `allow_outside`, each within `limits`.
#[derive(Debug, Clone, Copy)]
pub struct RowRules<'a> {
    pub input: &'a Location,
    pub allow_outside: bool,
    pub limits: ReadLimits,
}

/// Whether `location` is `input` or under it: the same store root (scheme and bucket) and a
/// path under the input's. Local paths were made canonical when opened (`..` and symbolic
/// links resolved), so a path climbing out with `..` and a link out of the folder are outside.
pub fn is_inside(location: &Location, input: &Location) -> bool {
    location.scheme_root == input.scheme_root && location.path.prefix_matches(&input.path)
}

/// The file name a URI ends with: the last path segment, without a URL's query or fragment.
fn file_name_of(url: &str) -> String {
    if is_http_url(url) {
        if let Ok(parsed) = reqwest::Url::parse(url) {
            return parsed
                .path_segments()
                .and_then(|mut segments| segments.next_back())
                .unwrap_or_default()
                .to_string();
        }
    }
    url.rsplit('/').next().unwrap_or(url).to_string()
}

/// sample with `fetch_error` set. An object outside the input (unless `rules.allow_outside`)
/// or over `rules.limits` is refused before it is read: the sample says why
/// ([`Refusal::OutsideInput`], [`Refusal::TooLarge`]).
pub async fn fetch_row(
    stores: &Stores,
    manifest: &Location,
    manifest_relative: &str,
    input_index: usize,
    row: &ManifestRow,
    rules: RowRules<'_>,
) -> Sample {
    let fetch = fetch_row_unguarded(stores, manifest, manifest_relative, input_index, row, rules);
    match AssertUnwindSafe(fetch).catch_unwind().await {
        Ok(sample) => sample,
        // A panic while fetching (in a store client, or in our own code on odd input) is
        // this row's fetch error: the other rows go on.
        Err(payload) => Sample::failed(
            format!("{input_index}:{manifest_relative}#{:09}", row.row),
            row.url.clone().unwrap_or_default(),
            Origin {
                uri: row.url.clone().unwrap_or_default(),
                manifest_uri: Some(manifest.uri()),
                manifest_row: Some(row.row),
                ..Origin::default()
            },
            format!(
                "reading this row panicked: {}",
                panic_message(payload.as_ref())
            ),
        ),
    }
}

async fn fetch_row_unguarded(
    stores: &Stores,
    manifest: &Location,
    manifest_relative: &str,
    input_index: usize,
    row: &ManifestRow,
    rules: RowRules<'_>,
) -> Sample {
    let url = row.url.as_deref().map(|u| resolve_url(manifest, u));
    let file_name = url.as_deref().map(file_name_of).unwrap_or_default();
    let (stem, ext) = split_extension(&file_name);
    let media_ext = sanitize_extension(&ext).unwrap_or_else(|| "img".to_string());
    let mut parts = Vec::new();
    if !row.columns.is_empty() {
        let json = serde_json::to_vec(&row.columns).expect("a JSON map serialises");
        parts.push(Part {
            ext: "json".to_string(),
            bytes: json.into(),
        });
    }
    let mut sample = Sample {
        id: format!("{input_index}:{manifest_relative}#{:09}", row.row),
        key: sanitize_key(if stem.is_empty() { "row" } else { stem }),
        name: row.url.clone().unwrap_or_default(),
        origin: Origin {
            uri: url.clone().unwrap_or_default(),
            manifest_uri: Some(manifest.uri()),
            manifest_row: Some(row.row),
            ..Origin::default()
        },
        parts,
        media: Some(media_ext.clone()),
        caption: row.caption.clone(),
        fetch_error: None,
        opted_out: false,
        refused: None,
    };
    if let Some(error) = &row.error {
        sample.fetch_error = Some(error.clone());
        return sample;
    }
    let Some(url) = url else {
        sample.fetch_error = Some("the row has no URL".to_string());
        return sample;
    };
    if is_http_url(&url) {
        // The download itself is bounded by `http.max_bytes` (Content-Length before the body,
        // the body counted as it streams); the part limit is checked on what arrived.
        download_into(stores, &url, &mut sample, media_ext).await;
        let size = sample.parts.first().map_or(0, |p| p.bytes.len() as u64);
        if sample.fetch_error.is_none() {
            if let Some(why) = rules.limits.refuse(&url, size, 0) {
                sample.refuse(Refusal::TooLarge, why);
            }
        }
        return sample;
    }
    let location = match stores.open(&url) {
        Ok(location) => location,
        Err(e) => {
            sample.fetch_error = Some(e.to_string());
            return sample;
        }
    };
    if !rules.allow_outside && !is_inside(&location, rules.input) {
        sample.refuse(
            Refusal::OutsideInput,
            format!(
                "{} is outside the input's location {}; not read (set allow_outside = true on \
                 the input to let its manifests name other folders or buckets)",
                location.uri(),
                rules.input.uri()
            ),
        );
        return sample;
    }
    let fetched = match location.store.head(&location.path).await {
        Ok(meta) => {
            sample.origin.etag = meta.e_tag;
            match rules.limits.refuse(&url, meta.size, 0) {
                Some(why) => Err(GetError::TooLarge(why)),
                None => {
                    let refuse = |n| rules.limits.refuse(&url, n, 0);
                    get_bytes_within(&location, &location.path, &refuse).await
                }
            }
        }
        Err(e) => Err(GetError::Store(e)),
    };
    match fetched {
        Ok(bytes) => sample.parts.insert(
            0,
            Part {
                ext: media_ext,
                bytes,
            },
        ),
        Err(GetError::TooLarge(why)) => sample.refuse(Refusal::TooLarge, why),
        Err(e) => sample.fetch_error = Some(e.to_string()),
    }
    sample
}

/// Downloads a URL row's object into `sample`: its bytes, or why there are none.
async fn download_into(stores: &Stores, url: &str, sample: &mut Sample, media_ext: String) {
    let downloader = match stores.http() {
        Ok(downloader) => downloader,
        Err(e) => {
            sample.fetch_error = Some(e.to_string());
            return;
        }
    };
    match downloader.download(url).await {
        Ok(downloaded) => {
            sample.origin.final_uri = Some(downloaded.final_url);
            sample.origin.http_status = Some(downloaded.status);
            sample.origin.etag = downloaded.etag;
            sample.parts.insert(
                0,
                Part {
                    ext: media_ext,
                    bytes: downloaded.bytes,
                },
            );
        }
        Err(failure) => {
            sample.origin.final_uri = failure.final_url;
            sample.origin.http_status = failure.status;
            sample.opted_out = failure.opted_out;
            sample.fetch_error = Some(failure.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_file_names_drop_the_query() {
        assert_eq!(file_name_of("https://h/x/cat.jpg?w=200#top"), "cat.jpg");
        assert_eq!(file_name_of("HTTP://h/"), "");
        assert_eq!(file_name_of("s3://b/x/dog.png"), "dog.png");
        assert!(is_http_url("HTTPS://h/a") && !is_http_url("s3://b/a"));
    }
}
