//! Planning: resolve every configured input into units of work before anything is fetched.
//!
//! A folder or prefix is listed, a single object is looked up, manifests are read and parsed.
//! Anything wrong here (a missing path, an unreachable bucket, a manifest without its URL
//! column) stops the run before any work starts. Planning reads no media bytes.

pub mod files;
pub mod manifest;
mod parquet_footer;
mod parquet_pages;
pub mod units;

use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, InputConfig, InputFormat};
use crate::store::{get_bytes, split_extension, Location, StoreError, Stores};
use files::FileUnit;
use manifest::ManifestRow;

/// Why the inputs cannot be planned; the run stops before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{uri}: {what}; check the path and the input's `format`")]
    Empty { uri: String, what: String },
    #[error("{uri}: {message}")]
    Manifest { uri: String, message: String },
}

/// Every input, resolved.
#[derive(Debug)]
pub struct Plan {
    pub inputs: Vec<PlannedInput>,
}

/// One `[[inputs]]` entry, resolved into units of work.
#[derive(Debug)]
pub struct PlannedInput {
    pub index: usize,
    pub config: InputConfig,
    /// The folder or prefix that sample ids and names are relative to.
    pub base: Location,
    pub units: Units,
    /// Every object the input holds (files, shards or manifests), for the run manifest.
    pub objects: Vec<InputObject>,
}

/// An object that makes up an input, as recorded in the run manifest.
#[derive(Debug, Clone, Serialize)]
pub struct InputObject {
    pub uri: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// The units of work of one input.
#[derive(Debug)]
pub enum Units {
    /// One unit per media object, with its sidecars.
    Files(Vec<FileUnit>),
    /// One unit per `.tar` shard.
    Shards(Vec<ObjectMeta>),
    /// One unit per manifest row, grouped by manifest file.
    Manifests(Vec<ManifestUnit>),
}

/// A parsed manifest file.
#[derive(Debug)]
pub struct ManifestUnit {
    pub location: Location,
    /// The manifest's path relative to the input (used in sample ids).
    pub relative: String,
    pub rows: Vec<ManifestRow>,
}

impl PlannedInput {
    /// Units of work: media objects, shards or manifest rows.
    pub fn unit_count(&self) -> u64 {
        match &self.units {
            Units::Files(units) => units.len() as u64,
            Units::Shards(shards) => shards.len() as u64,
            Units::Manifests(m) => m.iter().map(|m| m.rows.len() as u64).sum(),
        }
    }

    /// Samples this input will yield, when that is known before reading (not for shards).
    pub fn expected_samples(&self) -> Option<u64> {
        match &self.units {
            Units::Shards(_) => None,
            _ => Some(self.unit_count()),
        }
    }

    /// Total bytes of the objects that make up the input.
    pub fn total_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }

    /// sha256 over the sorted (uri, size, etag) listing: a fingerprint of the input's state.
    pub fn listing_sha256(&self) -> String {
        let mut hasher = Sha256::new();
        for o in &self.objects {
            hasher.update(format!(
                "{}\t{}\t{}\n",
                o.uri,
                o.size,
                o.etag.as_deref().unwrap_or("")
            ));
        }
        hex::encode(hasher.finalize())
    }
}

impl Plan {
    /// Samples all inputs will yield, when known for every input.
    pub fn expected_samples(&self) -> Option<u64> {
        self.inputs.iter().map(|i| i.expected_samples()).sum()
    }

    pub fn unit_count(&self) -> u64 {
        self.inputs.iter().map(|i| i.unit_count()).sum()
    }

    /// Keeps `n` units of work chosen deterministically: those whose names hash lowest (sha256
    /// of the input's index and the unit's path, and the row number for manifest rows), a
    /// pseudo-random sample that is the same on every run over the same inputs. Units are
    /// media files, manifest rows or whole `.tar` shards. Order within each input is kept.
    pub fn sample(&mut self, n: u64) {
        if self.unit_count() <= n {
            return;
        }
        let digest = |input: usize, name: &str, row: Option<u64>| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(format!(
                "{input}\t{name}\t{}",
                row.map_or(String::new(), |r| r.to_string())
            ));
            h.finalize().into()
        };
        let mut all: Vec<[u8; 32]> = Vec::new();
        for input in &self.inputs {
            let i = input.index;
            match &input.units {
                Units::Files(units) => all.extend(
                    units
                        .iter()
                        .map(|u| digest(i, u.media.location.as_ref(), None)),
                ),
                Units::Shards(shards) => {
                    all.extend(shards.iter().map(|s| digest(i, s.location.as_ref(), None)))
                }
                Units::Manifests(manifests) => all.extend(
                    manifests
                        .iter()
                        .flat_map(|m| m.rows.iter().map(|r| digest(i, &m.relative, Some(r.row)))),
                ),
            }
        }
        all.sort_unstable();
        let cut = all[n as usize - 1];
        let keep = |d: [u8; 32]| d <= cut;
        for input in &mut self.inputs {
            let i = input.index;
            match &mut input.units {
                Units::Files(units) => {
                    units.retain(|u| keep(digest(i, u.media.location.as_ref(), None)))
                }
                Units::Shards(shards) => {
                    shards.retain(|s| keep(digest(i, s.location.as_ref(), None)))
                }
                Units::Manifests(manifests) => {
                    for m in manifests.iter_mut() {
                        let relative = m.relative.clone();
                        m.rows.retain(|r| keep(digest(i, &relative, Some(r.row))));
                    }
                }
            }
        }
    }
}

/// Resolves every input of the config.
pub async fn resolve(config: &Config, stores: &Stores) -> Result<Plan, PlanError> {
    let mut inputs = Vec::with_capacity(config.inputs.len());
    for (index, input) in config.inputs.iter().enumerate() {
        inputs.push(resolve_input(index, input, stores).await?);
    }
    Ok(Plan { inputs })
}

async fn resolve_input(
    index: usize,
    input: &InputConfig,
    stores: &Stores,
) -> Result<PlannedInput, PlanError> {
    let location = stores.open(&input.uri)?;
    let (base, listing) = list(&location).await?;
    let keep_ext = |exts: &[&str]| {
        let exts: Vec<String> = exts.iter().map(|e| e.to_string()).collect();
        move |o: &ObjectMeta| exts.contains(&split_extension(o.location.as_ref()).1)
    };
    let (units, objects) = match input.format {
        InputFormat::Files => {
            let (units, orphans) = files::group(&base, listing.clone());
            if !orphans.is_empty() {
                tracing::warn!(
                    input = %input.uri,
                    "{} caption sidecar(s) have no media file beside them, e.g. {}",
                    orphans.len(),
                    base.uri_of(&orphans[0].location)
                );
            }
            if units.is_empty() {
                return Err(PlanError::Empty {
                    uri: input.uri.to_string(),
                    what: "it holds no media files, only sidecars".to_string(),
                });
            }
            (Units::Files(units), listing)
        }
        InputFormat::Webdataset => {
            let shards: Vec<ObjectMeta> = listing.into_iter().filter(keep_ext(&["tar"])).collect();
            if shards.is_empty() {
                return Err(PlanError::Empty {
                    uri: input.uri.to_string(),
                    what: "no .tar shards there".to_string(),
                });
            }
            (Units::Shards(shards.clone()), shards)
        }
        InputFormat::Manifest => {
            let found: Vec<ObjectMeta> = listing
                .into_iter()
                .filter(keep_ext(manifest::EXTENSIONS))
                .collect();
            if found.is_empty() {
                return Err(PlanError::Empty {
                    uri: input.uri.to_string(),
                    what: "no .jsonl, .json, .parquet, .csv or .tsv manifest there".to_string(),
                });
            }
            let mut manifests = Vec::new();
            for object in &found {
                let location = base.at(object.location.clone());
                // A manifest that cannot be fetched is one unreadable row (a dropped sample and
                // an input error), as an unreadable shard is: the other inputs still run.
                let rows = match get_bytes(&location, &location.path).await {
                    Ok(bytes) => manifest::parse(
                        &location.uri(),
                        bytes,
                        &input.url_column,
                        &input.caption_column,
                    )?,
                    Err(error) => vec![manifest::ManifestRow::unreadable(
                        0,
                        format!("cannot read {}: {error}", location.uri()),
                    )],
                };
                manifests.push(ManifestUnit {
                    relative: base.relative(&object.location),
                    location,
                    rows,
                });
            }
            (Units::Manifests(manifests), found)
        }
    };
    let objects = objects
        .iter()
        .map(|o| InputObject {
            uri: base.uri_of(&o.location),
            size: o.size,
            etag: o.e_tag.clone(),
        })
        .collect();
    Ok(PlannedInput {
        index,
        config: input.clone(),
        base,
        units,
        objects,
    })
}

/// Lists a location: a single object (its folder becomes the base) or everything under a
/// prefix, sorted by path. An empty prefix is an error: a mistyped path should not silently
/// produce an empty run.
async fn list(location: &Location) -> Result<(Location, Vec<ObjectMeta>), PlanError> {
    if !location.path.as_ref().is_empty() {
        match location.store.head(&location.path).await {
            Ok(meta) => {
                let parent: Vec<_> = location.path.parts().collect();
                let parent = object_store::path::Path::from_iter(
                    parent[..parent.len().saturating_sub(1)].iter().cloned(),
                );
                return Ok((location.at(parent), vec![meta]));
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) if location.local_path().is_none() => {
                return Err(StoreError::Unreachable {
                    uri: location.uri(),
                    message: e.to_string(),
                }
                .into())
            }
            // A local folder answers `head` with an error of its own: list it below.
            Err(_) => {}
        }
    }
    let mut objects: Vec<ObjectMeta> = location
        .store
        .list(Some(&location.path))
        .try_collect()
        .await
        .map_err(|e| StoreError::Unreachable {
            uri: location.uri(),
            message: e.to_string(),
        })?;
    if objects.is_empty() {
        return Err(PlanError::Empty {
            uri: location.uri().to_string(),
            what: "nothing there".to_string(),
        });
    }
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    Ok((location.clone(), objects))
}
