//! Incremental runs (`mmcurate run CONFIG --against PREVIOUS_OUTPUT`): loads the corpus a run
//! is deduplicated against (the current version's persisted index and, with CLIP, its
//! embeddings; never its shards), keys the decisions to it, and at commit lists the corpus's
//! files beside the new ones (when the corpus is this output) with the cumulative index.
//! Orchestration only: the dedup is `decide::against`'s, the files are `write::index`'s.

use std::collections::{BTreeMap, HashMap};

use arrow_array::{Array, FixedSizeListArray, Float32Array, StringArray};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

use super::RunError;
use crate::config::Config;
use crate::decide::against::{Corpus, CorpusEmbeddings};
use crate::record::Record;
use crate::state::keys;
use crate::store::{Location, Stores};
use crate::write::index::{read_index, samples_of, write_index};
use crate::write::manifest::{Incremental, MadeBy, OutputFile, RunManifest};
use crate::write::shards::ShardInfo;
use crate::write::version::{folder_of, read_current, read_manifest, OutputVersion};
use crate::write::WriteError;

/// The corpus a run is deduplicated against, as loaded.
pub struct Against {
    pub root: Location,
    /// Whether it is the run's own output (then the new version lists its files too).
    pub same_output: bool,
    /// The corpus version's manifest.
    pub manifest: serde_json::Value,
    pub corpus: Corpus,
}

/// What the decisions of an incremental run record, for the write and commit phases.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AgainstDecided {
    pub against: String,
    pub against_version: u64,
    pub same_output: bool,
    pub corpus_before: u64,
    pub dropped_as_existing: BTreeMap<String, u64>,
    /// The first number of this version's ledger files (after the corpus's, when listed).
    pub ledger_from: usize,
}

fn refused(uri: &str, message: String) -> RunError {
    RunError::Write(WriteError::Version {
        uri: uri.to_string(),
        message,
    })
}

/// Loads the corpus at `uri` (its current version) for a run writing into `output`. With
/// `[models.clip]`, the corpus's image embeddings are loaded too.
pub fn load(
    stores: &Stores,
    runtime: &tokio::runtime::Handle,
    config: &Config,
    uri: &str,
    output: &Location,
) -> Result<Against, RunError> {
    let root = stores.open(uri)?;
    let pointer = runtime.block_on(read_current(&root))?.ok_or_else(|| {
        refused(
            uri,
            "no version has been committed: nothing to run against".into(),
        )
    })?;
    let samples = runtime
        .block_on(read_index(&root, pointer.version))?
        .ok_or_else(|| {
            refused(
                uri,
                format!(
                    "version {} has no index (it was written before indexes were): run it again \
                     without --against to make one",
                    pointer.version
                ),
            )
        })?;
    let manifest = runtime
        .block_on(read_manifest(&root.child(&pointer.folder)))
        .ok_or_else(|| refused(uri, format!("{} cannot be read", pointer.manifest)))?;
    let mut corpus = Corpus {
        version: pointer.version,
        samples,
        embeddings: None,
    };
    if config.models.clip.is_some() && !pointer.embeddings.is_empty() {
        corpus.embeddings =
            Some(runtime.block_on(read_embeddings(&root, &pointer.embeddings, &corpus))?);
    }
    tracing::info!(
        "against {uri} (version {}): {} sample(s) in its index{}",
        pointer.version,
        corpus.samples.len(),
        corpus
            .embeddings
            .as_ref()
            .map_or(String::new(), |e| format!(
                ", {} embedding(s)",
                e.rows.len()
            ))
    );
    Ok(Against {
        same_output: root.uri() == output.uri(),
        root,
        manifest,
        corpus,
    })
}

/// The decide key of a run against `against`: the decisions depend on the corpus, so they are
/// kept apart from a plain run's.
pub fn decide_key(config: &Config, unit_ids: &[String], against: &Against) -> String {
    let measure_key = keys::measure_key(config);
    let base = keys::decide_key(config, &measure_key, unit_ids);
    let digest = Sha256::digest(format!(
        "{}\n{}",
        against.root.uri(),
        against.corpus.version
    ));
    format!("{base}-against-{}", &hex::encode(digest)[..16])
}

/// The image embeddings of the corpus's samples, from the embeddings files the pointer lists
/// (the version holding each file is in its path).
async fn read_embeddings(
    root: &Location,
    files: &[String],
    corpus: &Corpus,
) -> Result<CorpusEmbeddings, RunError> {
    let by_id: HashMap<(&str, u32), usize> = corpus
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.id.as_str(), s.version), i))
        .collect();
    let mut out = CorpusEmbeddings::default();
    for file in files {
        let version = file
            .split('/')
            .nth(1)
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_default();
        let location = root.child(file);
        let bad = |message: String| refused(&location.uri(), message);
        let bytes = location
            .store
            .get(&location.path)
            .await
            .map_err(|e| bad(e.to_string()))?
            .bytes()
            .await
            .map_err(|e| bad(e.to_string()))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(e.to_string()))?;
        out.weights_sha256 = builder
            .schema()
            .metadata()
            .get("clip_weights_sha256")
            .cloned()
            .unwrap_or_default();
        for batch in builder.build().map_err(|e| bad(e.to_string()))? {
            let batch = batch.map_err(|e| bad(e.to_string()))?;
            let ids = batch
                .column_by_name("id")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| bad("no string column `id`".into()))?;
            let image = batch
                .column_by_name("clip_image_embedding")
                .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>())
                .ok_or_else(|| bad("no column `clip_image_embedding`".into()))?;
            let dim = image.value_length() as usize;
            let values = image
                .values()
                .as_any()
                .downcast_ref::<Float32Array>()
                .ok_or_else(|| bad("`clip_image_embedding` is not float32".into()))?;
            out.dim = dim;
            for row in 0..batch.num_rows() {
                // Only the corpus's kept samples: the file has every embedded sample.
                if let Some(&sample) = by_id.get(&(ids.value(row), version)) {
                    out.rows.push(sample);
                    let start = (image.offset() + row) * dim;
                    out.image
                        .extend_from_slice(&values.values()[start..start + dim]);
                }
            }
        }
    }
    Ok(out)
}

/// Checks that the version being opened follows the corpus when the corpus is this output
/// (another run may have committed since it was read).
pub fn check_base(against: Option<&Against>, version: &OutputVersion) -> Result<(), RunError> {
    match against {
        Some(against) if against.same_output && version.parent != Some(against.corpus.version) => {
            Err(refused(
                &version.root.uri(),
                format!(
                    "the current version changed while the run started ({:?}, against {}): run again",
                    version.parent, against.corpus.version
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// What the decisions keep of the corpus.
pub fn decided(against: &Against, dropped: BTreeMap<String, u64>) -> AgainstDecided {
    AgainstDecided {
        against: against.root.uri(),
        against_version: against.corpus.version,
        same_output: against.same_output,
        corpus_before: against.corpus.samples.len() as u64,
        dropped_as_existing: dropped,
        ledger_from: if against.same_output {
            next_numbers(&against.manifest)
                .get("ledger")
                .copied()
                .unwrap_or(0)
        } else {
            0
        },
    }
}

/// The first free number of each kind of numbered file in the corpus's manifest (`shards` by
/// series, `ledger`, `embeddings`), so that a new version's file names are not those of any
/// file it lists from earlier versions.
pub fn next_numbers(manifest: &serde_json::Value) -> BTreeMap<String, usize> {
    let mut next = BTreeMap::new();
    for list in ["shards", "ledger", "embeddings"] {
        for entry in manifest[list].as_array().into_iter().flatten() {
            let Some(name) = entry["name"].as_str() else {
                continue;
            };
            let stem = name.rsplit('/').next().unwrap_or(name);
            let stem = stem.split('.').next().unwrap_or(stem);
            if let Some((series, number)) = stem.rsplit_once('-') {
                let key = if list == "shards" { series } else { list };
                if let Ok(n) = number.parse::<usize>() {
                    let slot = next.entry(key.to_string()).or_insert(0);
                    *slot = (*slot).max(n + 1);
                }
            }
        }
    }
    next
}

/// Completes the manifest of a run before it is written: the index of this version (the
/// corpus's rows, when it is this output, plus the kept samples of this run) and, for an
/// incremental run over this output, the corpus's files beside the new ones and the counts.
pub fn finish_manifest(
    runtime: &tokio::runtime::Handle,
    records: &[Record],
    against: Option<&AgainstDecided>,
    output: &OutputVersion,
    manifest: &mut RunManifest,
) -> Result<(), RunError> {
    let added = samples_of(records, output.number, &output.folder());
    let mut rows = Vec::new();
    if let Some(against) = against.filter(|a| a.same_output) {
        let root = &output.root;
        let base = against.against_version;
        let previous = runtime
            .block_on(read_index(root, base))?
            .unwrap_or_default();
        let base_manifest = runtime
            .block_on(read_manifest(&root.child(&folder_of(base))))
            .ok_or_else(|| refused(&root.uri(), format!("version {base}'s manifest is missing")))?;
        let inherited = |list: &str| -> Vec<serde_json::Value> {
            base_manifest[list].as_array().cloned().unwrap_or_default()
        };
        let mut shards: Vec<ShardInfo> = Vec::new();
        for entry in inherited("shards") {
            let mut info: ShardInfo = serde_json::from_value(entry)
                .map_err(|e| refused(&root.uri(), format!("version {base}'s manifest: {e}")))?;
            info.version = Some(info.version.unwrap_or(base));
            shards.push(info);
        }
        let files = |list: &str| -> Result<Vec<OutputFile>, RunError> {
            let mut files = Vec::new();
            for entry in inherited(list) {
                let mut file: OutputFile = serde_json::from_value(entry)
                    .map_err(|e| refused(&root.uri(), format!("version {base}'s manifest: {e}")))?;
                file.version = Some(file.version.unwrap_or(base));
                files.push(file);
            }
            Ok(files)
        };
        shards.append(&mut manifest.shards);
        manifest.shards = shards;
        let mut ledger = files("ledger")?;
        ledger.append(&mut manifest.ledger);
        manifest.ledger = ledger;
        let mut embeddings = files("embeddings")?;
        embeddings.append(&mut manifest.embeddings);
        manifest.embeddings = embeddings;
        rows = previous;
    }
    if let Some(against) = against {
        let before = if against.same_output {
            rows.len() as u64
        } else {
            0
        };
        manifest.made_by = MadeBy::Incremental;
        manifest.incremental = Some(Incremental {
            against: against.against.clone(),
            against_version: against.against_version,
            same_output: against.same_output,
            corpus_before: against.corpus_before,
            added: added.len() as u64,
            corpus_after: before + added.len() as u64,
            dropped_as_existing: against.dropped_as_existing.clone(),
        });
    }
    rows.extend(added);
    manifest.index = vec![write_index(&output.dir, &mut rows, runtime)?];
    Ok(())
}
