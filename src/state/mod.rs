//! The state of a run between its phases and across restarts, kept in the output itself
//! (`<output>/state/`; in the object store for S3 output, so any node can read it): each
//! finished work unit's records and staged candidate bytes, under a key made of exactly the
//! settings that can change measuring ([`keys`]), and the objects later phases leave there.
//! It stores and reads; it decides nothing and knows nothing of the phases' own types, which
//! it keeps as CBOR ([`codec`]).

pub mod codec;
pub mod keys;
pub mod model_outputs;
pub mod partitions;
pub mod purge;

use object_store::buffered::BufWriter;
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::BTreeSet;
use std::io::Read;
use tokio::io::AsyncWriteExt;

use crate::record::{Record, StagedPart};
use crate::store::Location;
use futures::TryStreamExt;

/// The extension of a unit's records: written last, so its presence marks the unit finished.
const RECORDS_EXT: &str = "records";
/// The extension of a unit's staged candidate bytes.
const STAGED_EXT: &str = "staged";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state {uri}: {message}")]
    Store { uri: String, message: String },
    #[error("state {uri}: {message}; remove the state folder to start again")]
    Corrupt { uri: String, message: String },
    #[error("reading staged bytes from {path}: {source}")]
    Local {
        path: String,
        source: std::io::Error,
    },
}

/// What a finished unit commits besides its staged bytes: one record per sample (every
/// measurement and the per-sample decision; staged parts point into the unit's staged file)
/// and the input errors met while reading it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnitRecords {
    pub unit_id: String,
    pub records: Vec<Record>,
    pub input_errors: Vec<(usize, String)>,
}

/// Reads back the bytes of staged parts, wherever they are staged.
pub trait StagedBytes: Sync {
    fn read(&self, part: &StagedPart) -> std::io::Result<Vec<u8>>;
}

/// `<output>/state/measure-<key>/`: the units measured under one measure key.
#[derive(Debug, Clone)]
pub struct MeasureState {
    folder: Location,
}

impl MeasureState {
    /// The measure state of `key` in the output `root`.
    pub fn open(root: &Location, measure_key: &str) -> MeasureState {
        MeasureState {
            folder: sub(root, &format!("state/measure-{measure_key}")),
        }
    }

    /// The folder, for messages.
    pub fn uri(&self) -> String {
        self.folder.uri()
    }

    /// A folder for what is decided from this measure state under `decide_key`.
    pub fn decide_folder(&self, decide_key: &str) -> Location {
        sub(&self.folder, &format!("decide-{decide_key}"))
    }

    fn units(&self) -> Location {
        sub(&self.folder, "units")
    }

    /// The ids of the units whose records are committed.
    pub async fn finished_units(&self) -> Result<BTreeSet<String>, StateError> {
        let units = self.units();
        let listed: Vec<_> = match units.store.list(Some(&units.path)).try_collect().await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(store_error(&units, e)),
        };
        Ok(listed
            .iter()
            .filter_map(|o| o.location.filename())
            .filter_map(|name| name.strip_suffix(&format!(".{RECORDS_EXT}")))
            .map(str::to_string)
            .collect())
    }

    /// Commits a unit: its staged bytes (streamed from the local file `staged`), then its
    /// records, last, in one atomic write (rename locally, one PUT on an object store).
    pub async fn commit_unit(
        &self,
        staged: &std::path::Path,
        unit: &UnitRecords,
    ) -> Result<(), StateError> {
        let units = self.units();
        let path = units
            .path
            .clone()
            .join(format!("{}.{STAGED_EXT}", unit.unit_id));
        let mut upload = BufWriter::new(units.store.clone(), path.clone());
        let local = |source| StateError::Local {
            path: staged.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(staged).map_err(local)?;
        let mut buffer = vec![0u8; 8 << 20];
        loop {
            let n = file.read(&mut buffer).map_err(local)?;
            if n == 0 {
                break;
            }
            if let Err(e) = upload.write_all(&buffer[..n]).await {
                let _ = upload.abort().await;
                return Err(store_error(&units.at(path), e));
            }
        }
        upload
            .shutdown()
            .await
            .map_err(|e| store_error(&units.at(path.clone()), e))?;
        let records = codec::encode(unit);
        put(&units, &format!("{}.{RECORDS_EXT}", unit.unit_id), records).await
    }

    /// A committed unit's records.
    pub async fn read_unit(&self, unit_id: &str) -> Result<UnitRecords, StateError> {
        let units = self.units();
        let name = format!("{unit_id}.{RECORDS_EXT}");
        let bytes = get(&units, &name)
            .await?
            .ok_or_else(|| StateError::Corrupt {
                uri: units.uri(),
                message: format!("{name} is missing"),
            })?;
        let unit: UnitRecords = codec::decode(&bytes).map_err(|message| StateError::Corrupt {
            uri: units.uri_of(&units.path.clone().join(name.as_str())),
            message: message.to_string(),
        })?;
        Ok(unit)
    }

    /// A reader of the parts staged by the units `unit_ids` (indexed by unit ordinal).
    pub fn staged_reader(
        &self,
        unit_ids: Vec<String>,
        runtime: tokio::runtime::Handle,
    ) -> UnitStagedReader {
        UnitStagedReader {
            units: self.units(),
            unit_ids,
            runtime,
        }
    }
}

/// Reads staged parts from the units' staged files: directly from the disk for a local output,
/// with one ranged GET per part from an object store.
pub struct UnitStagedReader {
    units: Location,
    unit_ids: Vec<String>,
    runtime: tokio::runtime::Handle,
}

impl StagedBytes for UnitStagedReader {
    fn read(&self, part: &StagedPart) -> std::io::Result<Vec<u8>> {
        let id = self.unit_ids.get(part.unit as usize).ok_or_else(|| {
            std::io::Error::other(format!("no work unit with ordinal {}", part.unit))
        })?;
        if part.len == 0 {
            // An empty part (an empty `.txt`, say): S3 refuses an empty range.
            return Ok(Vec::new());
        }
        let name = format!("{id}.{STAGED_EXT}");
        if let Some(dir) = self.units.local_path() {
            use std::os::unix::fs::FileExt;
            let file = std::fs::File::open(dir.join(&name))?;
            let mut buffer = vec![0u8; part.len as usize];
            file.read_exact_at(&mut buffer, part.offset)?;
            return Ok(buffer);
        }
        let path = self.units.path.clone().join(name.as_str());
        let range = part.offset..part.offset + part.len;
        let bytes = self
            .runtime
            .block_on(self.units.store.get_range(&path, range))
            .map_err(std::io::Error::other)?;
        Ok(bytes.to_vec())
    }
}

/// `base/relative` as a location.
pub fn sub(base: &Location, relative: &str) -> Location {
    let path = relative
        .split('/')
        .fold(base.path.clone(), |path, part| path.join(part));
    base.at(path)
}

/// Writes one object atomically under `folder`.
pub async fn put(folder: &Location, relative: &str, bytes: Vec<u8>) -> Result<(), StateError> {
    let at = sub(folder, relative);
    at.store
        .put(&at.path, PutPayload::from(bytes))
        .await
        .map(|_| ())
        .map_err(|e| store_error(&at, e))
}

/// Reads one object under `folder`; `None` when there is none.
pub async fn get(folder: &Location, relative: &str) -> Result<Option<Vec<u8>>, StateError> {
    let at = sub(folder, relative);
    match at.store.get(&at.path).await {
        Ok(result) => match result.bytes().await {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(e) => Err(store_error(&at, e)),
        },
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error(&at, e)),
    }
}

/// The size of one object under `folder`; `None` when there is none.
pub async fn size_of(folder: &Location, relative: &str) -> Result<Option<u64>, StateError> {
    let at = sub(folder, relative);
    match at.store.head(&at.path).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error(&at, e)),
    }
}

pub(crate) fn store_error(at: &Location, e: impl std::fmt::Display) -> StateError {
    StateError::Store {
        uri: at.uri(),
        message: e.to_string(),
    }
}
