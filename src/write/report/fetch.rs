//! The bytes behind the report's tiles: a kept sample's media and caption from the shard it
//! was written to, a dropped sample's from where it came from (its file and `.txt` sidecar, or
//! its member of a source `.tar`). Each shard or source tar is streamed once for all the tiles
//! it holds. Captions of samples from manifest rows are not fetched (the manifest would have
//! to be read again); their tiles say so.
//!
//! Fetching is best effort: a sample that cannot be read gets the reason instead of bytes.

use bytes::Bytes;
use object_store::ObjectStoreExt;
use std::collections::{BTreeMap, HashMap};

use super::rows::ReportRow;
use crate::source::webdataset::{self, ShardError};
use crate::store::{split_extension, Location, StoreError, Stores};

/// What was fetched for one sample.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub media: Option<Bytes>,
    pub caption: Option<String>,
    /// Why there is no media.
    pub error: Option<String>,
}

/// Fetches the media and caption of every row, by id. Blocks on `runtime`: call it outside.
pub fn fetch_all(
    rows: &[&ReportRow],
    output: &Location,
    stores: &Stores,
    runtime: &tokio::runtime::Handle,
) -> HashMap<String, Fetched> {
    let mut out: HashMap<String, Fetched> = HashMap::new();
    // Kept samples by shard, dropped samples from source tars by shard URI, the rest one by one.
    let mut by_shard: BTreeMap<&str, Vec<&ReportRow>> = BTreeMap::new();
    let mut by_source_tar: BTreeMap<&str, Vec<&ReportRow>> = BTreeMap::new();
    for row in rows {
        if out.contains_key(&row.id) {
            continue;
        }
        // A sample that could not be fetched (or that its server opted out) is not fetched
        // again for a thumbnail: the ledger's detail says why there is none.
        if matches!(
            row.drop_reason.as_deref(),
            Some("fetch_failed" | "opted_out")
        ) {
            let error = row.drop_detail.clone().unwrap_or_default();
            out.insert(
                row.id.clone(),
                Fetched {
                    error: Some(error),
                    ..Fetched::default()
                },
            );
            continue;
        }
        out.insert(row.id.clone(), Fetched::default());
        match (&row.shard, &row.tar_member) {
            (Some(shard), _) if row.kept => by_shard.entry(shard).or_default().push(row),
            (_, Some(_)) => by_source_tar.entry(&row.source_uri).or_default().push(row),
            _ => {
                let fetched = runtime.block_on(fetch_file(row, stores));
                out.insert(row.id.clone(), fetched);
            }
        }
    }
    for (shard, wanted) in by_shard {
        let location = output.child(shard);
        let found = read_tar(&location, runtime, |sample_name, member| {
            wanted
                .iter()
                .find(|r| r.key == sample_name)
                .filter(|_| member.is_some())
                .map(|r| r.id.clone())
        });
        merge(&mut out, &wanted, found);
    }
    for (uri, wanted) in by_source_tar {
        let found = match stores.open(uri) {
            Ok(location) => read_tar(&location, runtime, |_, member| {
                wanted
                    .iter()
                    .find(|r| member.is_some() && r.tar_member.as_deref() == member)
                    .map(|r| r.id.clone())
            }),
            Err(e) => Err(TarError::Open(e)),
        };
        merge(&mut out, &wanted, found);
    }
    out
}

/// Why a tar gave no samples back.
#[derive(Debug, thiserror::Error)]
enum TarError {
    #[error(transparent)]
    Open(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] ShardError),
}

/// Puts what a tar gave into `out`; samples it did not have get the reason.
fn merge(
    out: &mut HashMap<String, Fetched>,
    wanted: &[&ReportRow],
    found: Result<HashMap<String, Fetched>, TarError>,
) {
    match found {
        Ok(mut found) => {
            for row in wanted {
                let fetched = found.remove(&row.id).unwrap_or_else(|| Fetched {
                    error: Some("not found in its tar file".to_string()),
                    ..Fetched::default()
                });
                out.insert(row.id.clone(), fetched);
            }
        }
        Err(e) => {
            let why = e.to_string();
            for row in wanted {
                out.insert(
                    row.id.clone(),
                    Fetched {
                        error: Some(why.clone()),
                        ..Fetched::default()
                    },
                );
            }
        }
    }
}

/// Streams a tar once; `pick(sample name, media member)` says which row id a sample is.
fn read_tar(
    location: &Location,
    runtime: &tokio::runtime::Handle,
    pick: impl Fn(&str, Option<&str>) -> Option<String>,
) -> Result<HashMap<String, Fetched>, TarError> {
    let mut found = HashMap::new();
    let limits = crate::source::ReadLimits::default();
    let result = webdataset::read_shard(location, "", 0, limits, runtime, |sample| {
        let Some(id) = pick(&sample.name, sample.origin.tar_member.as_deref()) else {
            return;
        };
        let caption = sample
            .part("txt")
            .and_then(|p| std::str::from_utf8(&p.bytes).ok().map(str::to_string))
            .or(sample.caption.clone());
        found.insert(
            id,
            Fetched {
                media: sample.media_bytes().cloned(),
                caption,
                error: sample.fetch_error.clone(),
            },
        );
    });
    // A shard cut short still gave the samples before the cut.
    match result {
        Err(e) if found.is_empty() => Err(TarError::Read(e)),
        _ => Ok(found),
    }
}

/// A file input's sample: the media object and its `.txt` sidecar, if there is one.
async fn fetch_file(row: &ReportRow, stores: &Stores) -> Fetched {
    let get = |uri: String| async move {
        let location = stores.open(&uri).map_err(|e| e.to_string())?;
        let object = location
            .store
            .get(&location.path)
            .await
            .map_err(|e| e.to_string())?;
        object.bytes().await.map_err(|e| e.to_string())
    };
    if row.source_uri.is_empty() {
        return Fetched {
            error: Some("the ledger names no source object".to_string()),
            ..Fetched::default()
        };
    }
    let (media, error) = match get(row.source_uri.clone()).await {
        Ok(bytes) => (Some(bytes), None),
        Err(e) => (None, Some(e)),
    };
    let (stem, ext) = split_extension(&row.source_uri);
    let caption = if row.manifest_uri.is_some() || ext.is_empty() || ext == "txt" {
        None
    } else {
        get(format!("{stem}.txt"))
            .await
            .ok()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
    };
    Fetched {
        media,
        caption,
        error,
    }
}
