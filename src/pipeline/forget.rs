//! Deletion on request (`mmcurate forget OUTPUT --ids FILE --request-id R`): finds the samples
//! the request names (ids, keys or sha256s; with `--with-duplicates` also every sample dedup
//! grouped with them, from the ledger's `duplicate_of`), then writes a new version that lists
//! the current version's files except those holding them, which it rewrites without them
//! (shards, ledger rows, embeddings), a new index and the cumulative `forgotten.parquet`;
//! purges them from `state/`; and commits it like any version. Earlier versions are not
//! rewritten (a version's files never change): it names those still holding the samples, for
//! `mmcurate prune`. Orchestration only: the rewrites are `write::forget`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};

use super::RunError;
use crate::config::OutputConfig;
use crate::state::purge::{purge_samples, Purged};
use crate::store::{Location, Stores};
use crate::write::forget::{
    embeddings_without, forgotten_from_parquet, forgotten_to_parquet, ledger_rows,
    ledger_with_forgotten, shard_without, ForgottenSample, FORGOTTEN, FORGOTTEN_FILE,
};
use crate::write::index::{read_index, write_index};
use crate::write::manifest::{MadeBy, OutputFile, ToolInfo};
use crate::write::prune::{listed_files, remove_calibration};
use crate::write::shards::ShardInfo;
use crate::write::version::{
    committed_versions, path_from_root, read_current, read_manifest, OutputVersion,
};
use crate::write::{put, WriteError};

/// A deletion request.
#[derive(Debug, Clone)]
pub struct ForgetRequest {
    /// Ids, keys or sha256s (hex), one per entry.
    pub names: Vec<String>,
    pub request_id: String,
    /// Also forget every sample dedup grouped with them.
    pub with_duplicates: bool,
}

/// What a deletion did.
#[derive(Debug, Clone, Default)]
pub struct Forgotten {
    pub version: u64,
    /// Samples forgotten by this request (ledger rows), and how many of them were in shards.
    pub samples: u64,
    pub removed_from_shards: u64,
    /// Entries of the request that matched nothing.
    pub unmatched: Vec<String>,
    /// Files rewritten into the new version, and files no longer listed (left empty).
    pub rewritten: Vec<String>,
    pub dropped: Vec<String>,
    /// Committed versions that still hold forgotten samples (to prune).
    pub older_versions: Vec<u64>,
    pub purged: Purged,
    /// Files of `calibration/` removed (what `mmcurate calibrate` wrote may hold the samples).
    pub calibration_removed: Vec<String>,
}

fn failed(uri: &str, message: impl std::fmt::Display) -> RunError {
    RunError::Write(WriteError::Version {
        uri: uri.to_string(),
        message: message.to_string(),
    })
}

async fn read(root: &Location, path: &str) -> Result<Vec<u8>, RunError> {
    let at = root.child(path);
    let bytes = match at.store.get(&at.path).await {
        Ok(object) => object.bytes().await,
        Err(e) => Err(e),
    };
    bytes.map(|b| b.to_vec()).map_err(|e| failed(&at.uri(), e))
}

/// Disjoint sets of ids, for the dedup groups of `--with-duplicates`.
#[derive(Default)]
struct Groups {
    parent: HashMap<String, String>,
}

impl Groups {
    fn find(&mut self, id: &str) -> String {
        let mut at = id.to_string();
        while let Some(up) = self.parent.get(&at).filter(|p| **p != at) {
            at = up.clone();
        }
        at
    }

    fn union(&mut self, a: &str, b: &str) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.parent.insert(a, b);
        }
    }
}

/// Runs a deletion request on the output at `uri`.
pub fn forget(uri: &str, request: &ForgetRequest) -> Result<Forgotten, RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let io = runtime.handle();
    let root = Stores::new().open(uri)?;
    let version = OutputVersion::open(root.clone(), &OutputConfig::default(), io)?;
    let pointer = io
        .block_on(read_current(&root))?
        .ok_or_else(|| failed(uri, "no version has been committed: nothing to forget"))?;
    let base = pointer.version;
    let manifest = io
        .block_on(read_manifest(&root.child(&pointer.folder)))
        .ok_or_else(|| failed(uri, format!("{} cannot be read", pointer.manifest)))?;
    let index = io.block_on(read_index(&root, base))?.ok_or_else(|| {
        failed(
            uri,
            format!(
                "version {base} has no index (written before indexes were): run it again first"
            ),
        )
    })?;
    let mut ledgers = Vec::new();
    for path in &pointer.ledger {
        let rows =
            ledger_rows(path, io.block_on(read(&root, path))?).map_err(|e| failed(uri, e))?;
        ledgers.push(rows);
    }

    // What the request names, then (with duplicates) their dedup groups, then every sample
    // with the same bytes: no forgotten sha256 may remain.
    let wanted: HashSet<&str> = request.names.iter().map(String::as_str).collect();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    let mut matched: HashSet<&str> = HashSet::new();
    let mut consider = |id: &str, key: &str, sha: Option<&str>, ids: &mut BTreeSet<String>| {
        for name in [Some(id), Some(key), sha].into_iter().flatten() {
            if let Some(w) = wanted.get(name) {
                matched.insert(w);
                ids.insert(id.to_string());
            }
        }
    };
    for s in &index {
        consider(&s.id, &s.key, Some(&s.sha256), &mut ids);
    }
    for l in &ledgers {
        for i in 0..l.ids.len() {
            if l.status[i] != FORGOTTEN {
                consider(&l.ids[i], &l.keys[i], l.sha256[i].as_deref(), &mut ids);
            }
        }
    }
    let unmatched: Vec<String> = request
        .names
        .iter()
        .filter(|n| !matched.contains(n.as_str()))
        .cloned()
        .collect();
    if request.with_duplicates {
        let mut groups = Groups::default();
        for l in &ledgers {
            for (id, of) in l.ids.iter().zip(&l.duplicate_of) {
                if let Some(of) = of {
                    groups.union(id, of);
                }
            }
        }
        let roots: HashSet<String> = ids.iter().map(|id| groups.find(id)).collect();
        for l in &ledgers {
            for id in &l.ids {
                if roots.contains(&groups.find(id)) {
                    ids.insert(id.clone());
                }
            }
        }
    }
    let mut shas: HashSet<String> = HashSet::new();
    for s in index.iter().filter(|s| ids.contains(&s.id)) {
        shas.insert(s.sha256.clone());
    }
    for l in &ledgers {
        for (id, sha) in l.ids.iter().zip(&l.sha256) {
            if let Some(sha) = sha.as_ref().filter(|_| ids.contains(id)) {
                shas.insert(sha.clone());
            }
        }
    }
    shas.remove("");
    let is_forgotten =
        |id: &str, sha: Option<&str>| ids.contains(id) || sha.is_some_and(|s| shas.contains(s));
    if ids.is_empty() {
        return Err(failed(
            uri,
            format!(
                "nothing in version {base} matches the request ({} entr(ies), none an id, key or sha256 of a sample)",
                request.names.len()
            ),
        ));
    }
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let detail = format!("forgotten at request {} ({at})", request.request_id);
    let mut outcome = Forgotten {
        version: version.number,
        unmatched,
        ..Forgotten::default()
    };

    // Shards: those holding a forgotten sample are rewritten without it.
    let mut keys_by_shard: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for s in index
        .iter()
        .filter(|s| is_forgotten(&s.id, Some(&s.sha256)))
    {
        keys_by_shard.entry(&s.shard).or_default().insert(&s.key);
        outcome.removed_from_shards += 1;
    }
    let folder = version.folder();
    let mut moved: HashMap<String, Option<String>> = HashMap::new();
    let mut shards = Vec::new();
    for entry in manifest["shards"].as_array().into_iter().flatten() {
        let mut info: ShardInfo =
            serde_json::from_value(entry.clone()).map_err(|e| failed(uri, e))?;
        let path = path_from_root(base, &info.name, info.version);
        let Some(keys) = keys_by_shard.get(path.as_str()) else {
            info.version = Some(info.version.unwrap_or(base));
            shards.push(info);
            continue;
        };
        let bytes = io.block_on(read(&root, &path))?;
        let (rewritten, left) = shard_without(&path, &bytes, keys).map_err(|e| failed(uri, e))?;
        if left == 0 {
            moved.insert(path.clone(), None);
            outcome.dropped.push(path);
            continue;
        }
        info.samples = left;
        info.bytes = rewritten.len() as u64;
        info.sha256 = hex::encode(Sha256::digest(&rewritten));
        info.version = None;
        io.block_on(put(&version.dir, &info.name, rewritten))?;
        moved.insert(path, Some(format!("{folder}/{}", info.name)));
        outcome.rewritten.push(format!("{folder}/{}", info.name));
        shards.push(info);
    }

    // Ledger files: forgotten rows keep their id and sha256 only.
    let mut replaced: HashSet<String> = HashSet::new();
    let mut ledger = Vec::new();
    let mut forgotten_now = Vec::new();
    let entries = |list: &str| -> Result<Vec<OutputFile>, RunError> {
        manifest[list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| serde_json::from_value(e.clone()).map_err(|e| failed(uri, e)))
            .collect()
    };
    for (mut file, rows) in entries("ledger")?.into_iter().zip(&ledgers) {
        let path = path_from_root(base, &file.name, file.version);
        let hits: HashSet<usize> = (0..rows.ids.len())
            .filter(|&i| rows.status[i] != FORGOTTEN)
            .filter(|&i| is_forgotten(&rows.ids[i], rows.sha256[i].as_deref()))
            .collect();
        if hits.is_empty() {
            file.version = Some(file.version.unwrap_or(base));
            ledger.push(file);
            continue;
        }
        for &i in &hits {
            if let Some(sha) = rows.sha256[i].as_ref().filter(|s| !s.is_empty()) {
                forgotten_now.push(ForgottenSample {
                    sha256: sha.clone(),
                    id: rows.ids[i].clone(),
                    request_id: request.request_id.clone(),
                    forgotten_at: at.clone(),
                });
            }
        }
        outcome.samples += hits.len() as u64;
        let bytes = io.block_on(read(&root, &path))?;
        let rewritten =
            ledger_with_forgotten(&path, bytes, &hits, &detail).map_err(|e| failed(uri, e))?;
        replaced.insert(path);
        file.bytes = rewritten.len() as u64;
        file.sha256 = hex::encode(Sha256::digest(&rewritten));
        file.version = None;
        io.block_on(put(&version.dir, &file.name, rewritten))?;
        outcome.rewritten.push(format!("{folder}/{}", file.name));
        ledger.push(file);
    }

    // Embeddings: their rows go.
    let forgotten_ids: HashSet<&str> = forgotten_now
        .iter()
        .map(|f| f.id.as_str())
        .chain(ids.iter().map(String::as_str))
        .collect();
    let mut embeddings = Vec::new();
    for mut file in entries("embeddings")? {
        let path = path_from_root(base, &file.name, file.version);
        let bytes = io.block_on(read(&root, &path))?;
        let filtered =
            embeddings_without(&path, bytes, &forgotten_ids).map_err(|e| failed(uri, e))?;
        match filtered.file {
            _ if filtered.removed == 0 => {
                file.version = Some(file.version.unwrap_or(base));
                embeddings.push(file);
            }
            None => {
                replaced.insert(path.clone());
                outcome.dropped.push(path);
            }
            Some((bytes, rows)) => {
                replaced.insert(path);
                file.rows = rows;
                file.bytes = bytes.len() as u64;
                file.sha256 = hex::encode(Sha256::digest(&bytes));
                file.version = None;
                io.block_on(put(&version.dir, &file.name, bytes))?;
                outcome.rewritten.push(format!("{folder}/{}", file.name));
                embeddings.push(file);
            }
        }
    }

    // The index, without them and with the rewritten shards' new paths.
    let mut rows: Vec<_> = index
        .iter()
        .filter(|s| !is_forgotten(&s.id, Some(&s.sha256)))
        .cloned()
        .collect();
    for row in &mut rows {
        if let Some(Some(new)) = moved.get(&row.shard) {
            row.shard = new.clone();
        }
    }
    let index_file = write_index(&version.dir, &mut rows, io)?;

    // forgotten.parquet: every request so far.
    let mut all = match manifest.get("forgotten").and_then(|f| f["name"].as_str()) {
        Some(name) => {
            let holder = manifest["forgotten"]["version"].as_u64();
            let bytes = io.block_on(read(&root, &path_from_root(base, name, holder)))?;
            forgotten_from_parquet(bytes).map_err(|e| failed(uri, e))?
        }
        None => Vec::new(),
    };
    all.extend(forgotten_now);
    let bytes = forgotten_to_parquet(&all).map_err(|e| failed(uri, e))?;
    let forgotten_file = OutputFile::of(FORGOTTEN_FILE, all.len() as u64, &bytes);
    io.block_on(put(&version.dir, FORGOTTEN_FILE, bytes))?;

    // The state: records, staged bytes, decisions and content-keyed caches.
    outcome.purged = io.block_on(purge_samples(&root, &shas))?;
    let calibration = io.block_on(remove_calibration(&root))?;
    if !calibration.left.is_empty() {
        return Err(failed(
            uri,
            format!(
                "calibration/ may hold forgotten samples and could not be removed: {}",
                calibration.left.join(", ")
            ),
        ));
    }
    outcome.calibration_removed = calibration.removed_files;

    // Committed versions (the current one included) that still hold any of them.
    replaced.extend(moved.keys().cloned());
    for number in io.block_on(committed_versions(&root, &pointer)) {
        if number == 0 {
            continue;
        }
        let folder = crate::write::version::folder_of(number);
        let Some(old) = io.block_on(read_manifest(&root.child(&folder))) else {
            continue;
        };
        let lists_replaced = listed_files(&old, number)
            .iter()
            .any(|(path, _)| replaced.contains(path));
        let indexed = io
            .block_on(read_index(&root, number))?
            .is_some_and(|rows| rows.iter().any(|s| shas.contains(&s.sha256)));
        if lists_replaced || indexed {
            outcome.older_versions.push(number);
        }
    }
    outcome.older_versions.sort_unstable();

    let mut new_manifest = manifest.clone();
    let object = new_manifest
        .as_object_mut()
        .ok_or_else(|| failed(uri, "the current manifest is not a JSON object"))?;
    object.remove("incremental");
    object.remove("reenrich");
    object.remove("diff");
    object.insert("made_by".into(), serde_json::json!(MadeBy::Forget));
    object.insert("tool".into(), serde_json::json!(ToolInfo::current()));
    object.insert("version".into(), serde_json::json!(version.number));
    object.insert("parent_version".into(), serde_json::json!(base));
    object.insert("shards".into(), serde_json::json!(shards));
    object.insert("ledger".into(), serde_json::json!(ledger));
    object.insert("embeddings".into(), serde_json::json!(embeddings));
    object.insert("index".into(), serde_json::json!([index_file]));
    object.insert("forgotten".into(), serde_json::json!(forgotten_file));
    object.insert(
        "forget".into(),
        serde_json::json!({
            "request_id": request.request_id,
            "forgotten_at": at,
            "with_duplicates": request.with_duplicates,
            "requested": request.names.len(),
            "unmatched": outcome.unmatched,
            "samples": outcome.samples,
            "removed_from_shards": outcome.removed_from_shards,
            "corpus_after": rows.len(),
            "rewritten": outcome.rewritten,
            "no_longer_listed": outcome.dropped,
            "state_units_rewritten": outcome.purged.units.len(),
            "state_files_removed": outcome.purged.removed.len(),
            "calibration_files_removed": outcome.calibration_removed.len(),
            "versions_to_prune": outcome.older_versions,
        }),
    );
    let bytes = serde_json::to_vec_pretty(&new_manifest).expect("a JSON value serialises");
    io.block_on(put(&version.dir, "manifest.json", bytes))?;
    let n = version.number;
    let paths = |files: &[OutputFile]| -> Vec<String> {
        files
            .iter()
            .map(|f| path_from_root(n, &f.name, f.version))
            .collect()
    };
    let pointer = version.pointer_of(
        rows.len() as u64,
        shards
            .iter()
            .map(|s| path_from_root(n, &s.name, s.version))
            .collect(),
        paths(&ledger),
        paths(&embeddings),
        paths(std::slice::from_ref(&index_file)),
    );
    version.commit_pointer(pointer, io)?;
    Ok(outcome)
}
