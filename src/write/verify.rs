//! `mmcurate verify`: checks an output's current version against what it says of itself.
//! Every file its manifest lists (shards, ledger, embeddings, diff) exists with the recorded
//! size and sha256; every kept ledger row is in exactly one shard, under its key, with the
//! ledger's content sha256, and every shard member is a kept ledger row; and, when the version
//! has `forgotten.parquet`, that no forgotten sha256 (or id, for the embeddings) remains in
//! any shard of any version, the ledger, the embeddings, the indexes or the state (records,
//! staged candidates, decisions, model-output cache). It reads and reports; it repairs nothing.

use arrow_array::{Array, StringArray};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use super::ledger_read::{ledger_rows, read_object, LedgerRow, ReadError};
use super::version::{folder_of, list_versions, path_from_root, read_current, read_manifest};
use super::WriteError;
use crate::state::{codec, UnitRecords};
use crate::store::Location;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

/// `forgotten.parquet` in a version's folder: the samples removed on request.
pub const FORGOTTEN_NAME: &str = "forgotten.parquet";

/// One thing wrong: the file (relative to the output root) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub what: String,
}

/// What `verify` checked and found.
#[derive(Debug, Default)]
pub struct Verification {
    pub version: u64,
    pub files_checked: u64,
    pub kept_checked: u64,
    pub shard_members_checked: u64,
    pub forgotten: u64,
    pub problems: Vec<Problem>,
}

/// A file the manifest lists, relative to the output root.
struct Listed {
    path: String,
    bytes: Option<u64>,
    sha256: Option<String>,
}

/// The members of one shard: key → the sha256 of each of its parts.
type Members = BTreeMap<String, Vec<String>>;

/// Verifies the current version of the output at `root`; `Err` only when there is no
/// committed version to verify.
pub async fn verify(root: &Location) -> Result<Verification, WriteError> {
    let pointer = read_current(root)
        .await?
        .ok_or_else(|| WriteError::Version {
            uri: root.uri(),
            message: "no committed version (no current.json): nothing to verify".to_string(),
        })?;
    let mut out = Verification {
        version: pointer.version,
        ..Verification::default()
    };
    let folder = pointer.folder.clone();
    let number = pointer.version;
    let resolve = |entry: &serde_json::Value| entry_path(number, entry);
    let Some(manifest) = read_manifest(&root.child(&folder)).await else {
        out.problem(&pointer.manifest, "missing, or not JSON");
        return Ok(out);
    };
    let listed = listed_files(&manifest, &resolve);
    let known: BTreeSet<&str> = listed.iter().map(|f| f.path.as_str()).collect();
    for path in pointer
        .shards
        .iter()
        .chain(&pointer.ledger)
        .chain(&pointer.embeddings)
    {
        if !known.contains(path.as_str()) {
            out.problem(
                path,
                "listed in current.json but not in the version's manifest",
            );
        }
    }

    // Every listed file: there, with its size and sha256; the shards' members read on the way.
    let mut shards: BTreeMap<String, Members> = BTreeMap::new();
    // Shard names are unique over the files a version lists (an incremental version numbers
    // its shards after the corpus's), so a ledger row's `shard` is found by name, whichever
    // version's folder holds the shard now (a forget version rewrites some).
    let shard_by_name: BTreeMap<String, String> = entries(&manifest["shards"])
        .filter_map(|s| Some((s["name"].as_str()?.to_string(), resolve(s)?)))
        .collect();
    let shard_paths: BTreeSet<String> = shard_by_name.values().cloned().collect();
    for file in &listed {
        out.files_checked += 1;
        let Some(bytes) = out.read(root, &file.path).await else {
            continue;
        };
        if let Some(expected) = file.bytes.filter(|b| *b != bytes.len() as u64) {
            out.problem(
                &file.path,
                &format!("{} bytes, the manifest says {expected}", bytes.len()),
            );
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = file.sha256.as_ref().filter(|s| **s != sha256) {
            out.problem(
                &file.path,
                &format!("sha256 {sha256}, the manifest says {expected}"),
            );
        }
        if shard_paths.contains(&file.path) {
            match shard_members(&bytes) {
                Ok(members) => {
                    shards.insert(file.path.clone(), members);
                }
                Err(e) => out.problem(&file.path, &format!("not a readable tar file: {e}")),
            }
        }
    }

    // The ledger against the shards.
    let mut ledger = Vec::new();
    for path in entries(&manifest["ledger"]).filter_map(resolve) {
        if let Some(bytes) = out.read(root, &path).await {
            match ledger_rows(bytes) {
                Ok(rows) => ledger.extend(rows),
                Err(e) => out.problem(&path, &e.to_string()),
            }
        }
    }
    out.check_membership(&ledger, &shards, &shard_by_name);

    // Forgotten samples, when the version has any.
    let forgotten_path =
        resolve(&manifest["forgotten"]).unwrap_or_else(|| format!("{folder}/{FORGOTTEN_NAME}"));
    if let Ok(bytes) = read_object(&root.child(&forgotten_path)).await {
        match forgotten(bytes) {
            Ok((sha256s, ids)) => {
                out.forgotten = sha256s.len() as u64;
                out.check_forgotten(root, &manifest, &ledger, &shards, &sha256s, &ids)
                    .await;
            }
            Err(e) => out.problem(&forgotten_path, &e.to_string()),
        }
    }
    Ok(out)
}

impl Verification {
    fn problem(&mut self, file: &str, what: &str) {
        self.problems.push(Problem {
            file: file.to_string(),
            what: what.to_string(),
        });
    }

    async fn read(&mut self, root: &Location, path: &str) -> Option<bytes::Bytes> {
        match read_object(&root.child(path)).await {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.problem(path, &e.to_string());
                None
            }
        }
    }

    /// Every kept row in exactly one shard (the one its `shard` column names), with its content;
    /// every shard member a kept row.
    fn check_membership(
        &mut self,
        ledger: &[LedgerRow],
        shards: &BTreeMap<String, Members>,
        shard_by_name: &BTreeMap<String, String>,
    ) {
        let mut found: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (shard, members) in shards {
            for key in members.keys() {
                found.entry(key.as_str()).or_default().push(shard.as_str());
            }
        }
        let mut kept_keys = BTreeSet::new();
        for row in ledger.iter().filter(|r| r.is_kept()) {
            self.kept_checked += 1;
            let key = row.key.as_deref().unwrap_or_default();
            kept_keys.insert(key);
            let named = row
                .shard
                .as_deref()
                .map(|name| shard_by_name.get(name).cloned().unwrap_or(name.to_string()))
                .unwrap_or_default();
            let holders = found.get(key).cloned().unwrap_or_default();
            match holders.as_slice() {
                [] => self.problem(
                    &named,
                    &format!("kept sample {} (key {key}) is in no shard", row.id),
                ),
                [one] if *one != named => self.problem(
                    one,
                    &format!(
                        "kept sample {} (key {key}) is here, the ledger says {named}",
                        row.id
                    ),
                ),
                [one] => {
                    let hashes = &shards[*one][key];
                    if let Some(sha256) = row.sha256.as_ref().filter(|s| !hashes.contains(*s)) {
                        self.problem(
                            one,
                            &format!(
                                "sample {} (key {key}): no part has the ledger's sha256 {sha256}",
                                row.id
                            ),
                        );
                    }
                }
                many => self.problem(
                    &named,
                    &format!(
                        "kept sample {} (key {key}) is in {} shards: {}",
                        row.id,
                        many.len(),
                        many.join(", ")
                    ),
                ),
            }
        }
        for (shard, members) in shards {
            for key in members.keys() {
                self.shard_members_checked += 1;
                if !kept_keys.contains(key.as_str()) {
                    self.problem(
                        shard,
                        &format!("member {key} is not a kept sample of the ledger"),
                    );
                }
            }
        }
    }

    /// No forgotten content anywhere: shards of every version, the ledger, the embeddings,
    /// the indexes, the state.
    #[allow(clippy::too_many_arguments)]
    async fn check_forgotten(
        &mut self,
        root: &Location,
        manifest: &serde_json::Value,
        ledger: &[LedgerRow],
        shards: &BTreeMap<String, Members>,
        sha256s: &BTreeSet<String>,
        ids: &BTreeSet<String>,
    ) {
        let number = manifest["version"].as_u64().unwrap_or_default();
        let mut report = |file: &str, what: String| {
            self.problems.push(Problem {
                file: file.to_string(),
                what,
            })
        };
        for (shard, members) in shards {
            for (key, hashes) in members {
                for sha256 in hashes.iter().filter(|h| sha256s.contains(*h)) {
                    report(
                        shard,
                        format!("member {key} holds forgotten content {sha256}"),
                    );
                }
            }
        }
        // A forgotten row keeps its id and sha256 (what verification looks for); any other row
        // with a forgotten sha256 is content left behind.
        for row in ledger.iter().filter(|r| r.status != "forgotten") {
            if let Some(sha256) = row.sha256.as_ref().filter(|s| sha256s.contains(*s)) {
                report(
                    &format!("{}/ledger", folder_of(number)),
                    format!(
                        "row {} ({}) still has forgotten sha256 {sha256}",
                        row.id, row.status
                    ),
                );
            }
        }
        for path in entries(&manifest["embeddings"]).filter_map(|e| entry_path(number, e)) {
            if let Ok(bytes) = read_object(&root.child(&path)).await {
                for id in string_column(bytes, "id").unwrap_or_default() {
                    if ids.contains(&id) {
                        report(
                            &path,
                            format!("still holds the embedding of forgotten {id}"),
                        );
                    }
                }
            }
        }
        // Earlier versions still kept (their folders) must not hold it either.
        let current = manifest["version"].as_u64();
        for number in list_versions(root).await.unwrap_or_default() {
            if Some(number) == current {
                continue;
            }
            let folder = folder_of(number);
            let Some(old) = read_manifest(&root.child(&folder)).await else {
                continue;
            };
            for path in entries(&old["shards"]).filter_map(|e| entry_path(number, e)) {
                if shards.contains_key(&path) {
                    continue;
                }
                let Ok(bytes) = read_object(&root.child(&path)).await else {
                    continue;
                };
                for (key, hashes) in shard_members(&bytes).unwrap_or_default() {
                    for sha256 in hashes.iter().filter(|h| sha256s.contains(*h)) {
                        report(
                            &path,
                            format!(
                                "version {number} still holds forgotten content {sha256} \
                                 (member {key}); remove that version (`mmcurate prune`)"
                            ),
                        );
                    }
                }
            }
        }
        // Indexes and the state: every object under `index/` folders and `state/`.
        for (path, bytes) in objects_to_search(root).await {
            let found = if path.ends_with(".parquet") {
                string_column(bytes.clone(), "sha256").unwrap_or_default()
            } else {
                cbor_strings(&bytes)
            };
            for sha256 in found.iter().filter(|s| sha256s.contains(*s)) {
                report(&path, format!("still holds forgotten sha256 {sha256}"));
            }
            if let Some(staged) = path.strip_suffix(".records") {
                let staged = format!("{staged}.staged");
                for sha256 in staged_media_sha256s(root, &staged, &bytes).await {
                    if sha256s.contains(&sha256) {
                        report(&staged, format!("still stages forgotten content {sha256}"));
                    }
                }
            }
        }
    }
}

/// Every file the manifest lists with a checksum, relative to the output root.
fn listed_files(
    manifest: &serde_json::Value,
    resolve: &dyn Fn(&serde_json::Value) -> Option<String>,
) -> Vec<Listed> {
    let mut files = Vec::new();
    for list in ["shards", "ledger", "embeddings", "index"] {
        files.extend(entries(&manifest[list]).filter_map(|f| listed(f, resolve)));
    }
    for single in ["diff", "forgotten"] {
        files.extend(listed(&manifest[single], resolve));
    }
    files
}

fn listed(
    file: &serde_json::Value,
    resolve: &dyn Fn(&serde_json::Value) -> Option<String>,
) -> Option<Listed> {
    Some(Listed {
        path: resolve(file)?,
        bytes: file["bytes"].as_u64(),
        sha256: file["sha256"].as_str().map(str::to_string),
    })
}

/// The entries of a manifest's file list.
fn entries(list: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    list.as_array().into_iter().flatten()
}

/// A file entry of version `number`'s manifest, as a path from the output root: in the
/// version's own folder, or in the folder of the earlier version its `version` names (a file
/// an incremental or forget version keeps); version 0 is the layout before versions, whose
/// files sit at the root.
fn entry_path(number: u64, entry: &serde_json::Value) -> Option<String> {
    let name = entry["name"].as_str()?;
    match entry["version"].as_u64().unwrap_or(number) {
        0 => Some(name.to_string()),
        holder => Some(path_from_root(holder, name, None)),
    }
}

/// A shard's members by key, with the sha256 of each part.
fn shard_members(bytes: &[u8]) -> Result<Members, std::io::Error> {
    let mut members = Members::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| std::io::Error::new(e.kind(), format!("member {name}: {e}")))?;
        let key = crate::source::webdataset::key_and_extension(&name)
            .map_or(name.clone(), |(k, _)| k.to_string());
        members
            .entry(key)
            .or_default()
            .push(hex::encode(Sha256::digest(&data)));
    }
    Ok(members)
}

/// The `sha256` and `id` columns of `forgotten.parquet`.
fn forgotten(bytes: bytes::Bytes) -> Result<(BTreeSet<String>, BTreeSet<String>), ReadError> {
    let sha256s = string_column(bytes.clone(), "sha256")?
        .into_iter()
        .collect();
    let ids = string_column(bytes, "id")?.into_iter().collect();
    Ok((sha256s, ids))
}

/// The non-null values of a string column of a Parquet file (empty without the column).
fn string_column(bytes: bytes::Bytes, name: &str) -> Result<Vec<String>, ReadError> {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let mut values = Vec::new();
    for batch in builder.build()? {
        let batch = batch?;
        let Some(array) = batch.column_by_name(name) else {
            return Ok(values);
        };
        let array = array
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| ReadError::WrongType {
                column: name.to_string(),
                expected: "string",
            })?;
        values.extend(
            (0..array.len())
                .filter(|&i| !array.is_null(i))
                .map(|i| array.value(i).to_string()),
        );
    }
    Ok(values)
}

/// Every text value in a CBOR object (state records, decisions, cache segments).
fn cbor_strings(bytes: &[u8]) -> Vec<String> {
    let Ok(value) = codec::decode::<ciborium::Value>(bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            ciborium::Value::Text(text) => out.push(text),
            ciborium::Value::Array(items) => stack.extend(items),
            ciborium::Value::Map(entries) => {
                stack.extend(entries.into_iter().flat_map(|(k, v)| [k, v]))
            }
            ciborium::Value::Tag(_, inner) => stack.push(*inner),
            _ => {}
        }
    }
    out
}

/// The sha256 of the staged media of every record of a unit (its first staged part).
async fn staged_media_sha256s(root: &Location, staged: &str, records: &[u8]) -> Vec<String> {
    let Ok(unit) = codec::decode::<UnitRecords>(records) else {
        return Vec::new();
    };
    let at = root.child(staged);
    let mut out = Vec::new();
    for part in unit.records.iter().filter_map(|r| r.staged.first()) {
        if part.len == 0 {
            continue;
        }
        let range = part.offset..part.offset + part.len;
        if let Ok(bytes) = at.store.get_range(&at.path, range).await {
            out.push(hex::encode(Sha256::digest(&bytes)));
        }
    }
    out
}

/// The objects that may hold sample content besides shards: everything under `state/`
/// (records, decisions, the model-output cache) and every version's `index/` Parquet files.
async fn objects_to_search(root: &Location) -> Vec<(String, bytes::Bytes)> {
    let listed: Vec<_> = root
        .store
        .list(Some(&root.path))
        .try_collect()
        .await
        .unwrap_or_default();
    let mut out = Vec::new();
    for object in listed {
        let relative = root.relative(&object.location);
        let in_state = relative.starts_with("state/")
            && (relative.ends_with(".records") || relative.ends_with(".cbor"));
        let in_index = (relative.starts_with("index/") || relative.contains("/index/"))
            && relative.ends_with(".parquet");
        if !(in_state || in_index) {
            continue;
        }
        if let Ok(bytes) = read_object(&root.child(&relative)).await {
            out.push((relative, bytes));
        }
    }
    out
}
