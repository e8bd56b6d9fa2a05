//! The decide phase's shared part, and the decide phase spread over partition tasks.
//!
//! The shared part ([`shared_part`]) is what every decide does before semantic dedup: every
//! unit's records in id order, percentile thresholds, run-wide dedup, CLIP embeddings of the
//! survivors. A partition task (`run --phase decide --num-shards N --shard-index I`,
//! [`search_partitions`]) takes the shared part from `state/` (or makes it and leaves it there
//! for the others: the first task run alone embeds once), searches its range of the semantic
//! search's partitions over the embeddings (memory-mapped) and commits its pairs. The unsliced
//! decide phase then takes the shared part from `state/` too and the pairs of all N tasks
//! ([`merged_pairs`]), and decides as one machine would: the pairs are the same, so are the
//! groups and the kept samples. Orchestration only: the search and the keep rule are
//! `decide`'s, the objects' names `state::partitions`'.

use std::collections::BTreeMap;
use std::time::Instant;

use super::backends::Backends;
use super::job::Job;
use super::progress::Progress;
use super::{embed, RunError};
use crate::decide::against::{drop_corpus_duplicates, drop_corpus_semantic_duplicates, still_kept};
use crate::decide::pairs::npy::{decode_f32, encode_f32, NpyFiles};
use crate::decide::pairs::Shard;
use crate::decide::percentiles::{apply_percentile_thresholds, ResolvedThreshold};
use crate::decide::run_wide::{drop_duplicates, searches_semantic_pairs};
use crate::decide::semantic::{pairs_in_partitions, SimilarPair};
use crate::decide::sweeps::{dedup_sweeps, semantic_sweep, Sweeps};
use crate::measure::Embeddings;
use crate::record::Record;
use crate::state::model_outputs::{ModelOutputCache, ModelOutputCounts};
use crate::state::partitions::{self, EMBEDDINGS, SHARED};
use crate::state::{self, StateError};
use crate::store::Location;

/// What the decide phase has before semantic dedup.
pub(super) struct SharedPart {
    /// Every sample's record, in id order, decided up to semantic dedup.
    pub records: Vec<Record>,
    pub input_errors: Vec<(usize, String)>,
    pub thresholds: BTreeMap<String, ResolvedThreshold>,
    /// `mmcurate calibrate`: the dedup sweeps so far.
    pub swept: Option<Sweeps>,
    /// `run --against`: samples dropped as copies of the corpus, by reason.
    pub corpus_drops: BTreeMap<String, u64>,
    /// The embeddings semantic dedup searches (with CLIP).
    pub embeddings: Option<Embeddings>,
    /// `run --against`: every embedding, for the embeddings files, when `embeddings` holds only
    /// the samples still kept after the corpus's semantic copies.
    pub all_embeddings: Option<Embeddings>,
    pub gpu_busy_seconds: BTreeMap<String, f64>,
    pub model_outputs: Option<ModelOutputCounts>,
}

/// [`SharedPart`] as kept in `state/` for the partition tasks and the merge (a run without
/// `--against` or sweeps); the image embeddings are beside it, in `embeddings.npy`.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredShared {
    records: Vec<Record>,
    input_errors: Vec<(usize, String)>,
    thresholds: BTreeMap<String, ResolvedThreshold>,
    gpu_busy_seconds: BTreeMap<String, f64>,
    model_outputs: Option<ModelOutputCounts>,
    dim: usize,
    rows: Vec<usize>,
    text: Vec<f32>,
    has_text: Vec<bool>,
}

/// One partition task's pairs: rows of the shared embeddings, `a < b`, sorted.
#[derive(serde::Serialize, serde::Deserialize)]
struct TaskPairs {
    index: u32,
    count: u32,
    /// Rows searched (every task searches the same embeddings).
    rows: u64,
    pairs: Vec<(u64, u64, f32)>,
}

/// The shared part, made here: records read, thresholds, run-wide dedup, CLIP (through the
/// model-output cache under `root`).
pub(super) fn shared_part(
    job: &mut Job,
    backends: &Backends,
    progress: &Progress,
    sweeps: bool,
    root: &Location,
) -> Result<SharedPart, RunError> {
    let started = Instant::now();
    let mut records = Vec::new();
    let mut input_errors = Vec::new();
    for unit in &job.units {
        let mut state = job.runtime.block_on(job.measure.read_unit(&unit.id))?;
        records.append(&mut state.records);
        input_errors.append(&mut state.input_errors);
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    input_errors.sort();
    let thresholds = apply_percentile_thresholds(&mut records, job.config);
    let mut swept = sweeps.then(|| Sweeps {
        filters: Vec::new(),
        dedups: dedup_sweeps(&records, job.config),
    });
    // `run --against`: copies of corpus samples first, so that a group holding one keeps it.
    let mut corpus_drops = BTreeMap::new();
    if let Some(against) = &job.against {
        corpus_drops = drop_corpus_duplicates(&mut records, &against.corpus, job.config);
    }
    drop_duplicates(&mut records, job.config);
    job.clock.add("decide", started);

    let mut gpu_busy_seconds = backends.measure_busy_seconds();
    let (mut embeddings, mut all_embeddings, mut model_outputs) = (None, None, None);
    if let Some(clip) = &backends.clip {
        let embedding = Instant::now();
        let staged = job
            .measure
            .staged_reader(job.unit_ids(), job.runtime.handle().clone());
        let cache = ModelOutputCache::open(
            root,
            &clip.info.weights_sha256,
            &embed::model_output_settings(job.config, clip),
            job.runtime.handle(),
        )?;
        let mut embedded = embed::embed_kept_records(
            &mut records,
            &staged,
            job.config,
            backends,
            &mut gpu_busy_seconds,
            progress,
            Some(&cache),
        )?;
        model_outputs = Some(cache.counts());
        job.clock.add("embed", embedding);
        let deciding = Instant::now();
        if let Some(swept) = &mut swept {
            swept.dedups.extend(semantic_sweep(
                &records,
                &embedded,
                job.config,
                backends.pair_products(),
            ));
        }
        if let Some(against) = &job.against {
            let dropped = drop_corpus_semantic_duplicates(
                &mut records,
                &embedded,
                &against.corpus,
                &clip.info.weights_sha256,
                job.config,
                backends.pair_products(),
            );
            for (reason, n) in dropped {
                *corpus_drops.entry(reason).or_default() += n;
            }
            let kept = still_kept(&embedded, &records);
            all_embeddings = Some(std::mem::replace(&mut embedded, kept));
        }
        embeddings = Some(embedded);
        job.clock.add("decide", deciding);
    }
    Ok(SharedPart {
        records,
        input_errors,
        thresholds,
        swept,
        corpus_drops,
        embeddings,
        all_embeddings,
        gpu_busy_seconds,
        model_outputs,
    })
}

/// Whether the shared part can be kept in, and taken from, `state/`: not for `run --against`
/// (its corpus is loaded per run) nor for `calibrate`'s sweeps.
pub(super) fn can_share(job: &Job, sweeps: bool) -> bool {
    job.against.is_none() && !sweeps
}

/// The shared part a partition task left in `state/`, if any.
pub(super) fn read_shared(job: &Job) -> Result<Option<SharedPart>, RunError> {
    let Some(bytes) = job.runtime.block_on(state::get(&job.decided, SHARED))? else {
        return Ok(None);
    };
    let corrupt = |message: String| {
        RunError::State(StateError::Corrupt {
            uri: format!("{}/{SHARED}", job.decided.uri()),
            message,
        })
    };
    let stored: StoredShared = state::codec::decode(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let image = match job.runtime.block_on(state::get(&job.decided, EMBEDDINGS))? {
        Some(bytes) => decode_f32(&bytes, stored.dim, stored.rows.len())
            .ok_or_else(|| corrupt(format!("{EMBEDDINGS} is not the embeddings it names")))?,
        None => return Err(corrupt(format!("{EMBEDDINGS} is missing beside it"))),
    };
    tracing::info!(
        "decide: the shared part (run-wide dedup, {} embeddings) from {}",
        stored.rows.len(),
        job.decided.uri()
    );
    Ok(Some(SharedPart {
        records: stored.records,
        input_errors: stored.input_errors,
        thresholds: stored.thresholds,
        swept: None,
        corpus_drops: BTreeMap::new(),
        embeddings: Some(Embeddings {
            dim: stored.dim,
            rows: stored.rows,
            image,
            text: stored.text,
            has_text: stored.has_text,
        }),
        all_embeddings: None,
        gpu_busy_seconds: stored.gpu_busy_seconds,
        model_outputs: stored.model_outputs,
    }))
}

/// Keeps the shared part in `state/`: the embeddings first, then `shared.cbor`, whose
/// presence says both are there.
fn write_shared(job: &Job, shared: &SharedPart) -> Result<(), RunError> {
    let empty = Embeddings::default();
    let embeddings = shared.embeddings.as_ref().unwrap_or(&empty);
    let npy = encode_f32(&embeddings.image, embeddings.dim);
    job.runtime
        .block_on(state::put(&job.decided, EMBEDDINGS, npy))?;
    let stored = StoredShared {
        records: shared.records.clone(),
        input_errors: shared.input_errors.clone(),
        thresholds: shared.thresholds.clone(),
        gpu_busy_seconds: shared.gpu_busy_seconds.clone(),
        model_outputs: shared.model_outputs,
        dim: embeddings.dim,
        rows: embeddings.rows.clone(),
        text: embeddings.text.clone(),
        has_text: embeddings.has_text.clone(),
    };
    let bytes = state::codec::encode(&stored);
    job.runtime
        .block_on(state::put(&job.decided, SHARED, bytes))?;
    Ok(())
}

/// A partition task: task `index` of `count` searches its range of the partitions and commits
/// its pairs; a task whose pairs are committed already does nothing. Returns what it did.
pub(super) fn search_partitions(
    job: &mut Job,
    backends: &Backends,
    progress: &Progress,
    root: &Location,
    index: u32,
    count: u32,
) -> Result<String, RunError> {
    if job.against.is_some() {
        return Err(RunError::Incomplete {
            phase: "decide".into(),
            message: "the decide phase of `run --against` takes the whole run: run it without --num-shards".into(),
        });
    }
    let name = partitions::pairs_name(index, count);
    if job
        .runtime
        .block_on(state::size_of(&job.decided, &name))?
        .is_some()
    {
        return Ok(format!(
            "decide (partitions {index} of {count}): pairs committed already in {}/{name} (reused)",
            job.decided.uri()
        ));
    }
    let min_cosine = job.config.dedup.embedding_min_cosine as f32;
    if backends.clip.is_none() || min_cosine <= 0.0 {
        return Ok(format!(
            "decide (partitions {index} of {count}): nothing to search (no semantic dedup: no CLIP model, or dedup.embedding_min_cosine = 0); the unsliced decide phase does the rest"
        ));
    }
    let shared = match read_shared(job)? {
        Some(shared) => shared,
        None => {
            let shared = shared_part(job, backends, progress, false, root)?;
            write_shared(job, &shared)?;
            tracing::info!(
                "decide: the shared part (run-wide dedup, CLIP) committed to {} for the other partition tasks",
                job.decided.uri()
            );
            shared
        }
    };
    let started = Instant::now();
    let embeddings = shared.embeddings.as_ref().expect("made or read with CLIP");
    let rows = embeddings.rows.len() as u64;
    let mut pairs = Vec::new();
    if searches_semantic_pairs(embeddings, job.config) {
        drop(shared);
        // The embeddings memory-mapped (a local copy for an object-store output), so that the
        // task holds one batch of partitions, not the matrix.
        let scratch = super::staging_dir(job.config);
        let (path, _copy) = job
            .runtime
            .block_on(partitions::local_file(&job.decided, EMBEDDINGS, &scratch))?
            .ok_or_else(|| RunError::Incomplete {
                phase: "decide".into(),
                message: format!("{EMBEDDINGS} is missing from {}", job.decided.uri()),
            })?;
        let corrupt = |message: String| {
            RunError::State(StateError::Corrupt {
                uri: format!("{}/{EMBEDDINGS}", job.decided.uri()),
                message,
            })
        };
        let source = NpyFiles::open(&path).map_err(|e| corrupt(e.to_string()))?;
        let shard = Shard { count, index };
        pairs = pairs_in_partitions(&source, min_cosine, shard, backends.pair_products())
            .map_err(|e| corrupt(e.to_string()))?
            .into_iter()
            .map(|p| (p.a as u64, p.b as u64, p.cosine))
            .collect();
    }
    let found = pairs.len();
    let task = TaskPairs {
        index,
        count,
        rows,
        pairs,
    };
    job.runtime
        .block_on(state::put(&job.decided, &name, state::codec::encode(&task)))?;
    job.clock.add("decide", started);
    Ok(format!(
        "decide (partitions {index} of {count}): {found} pair(s) among {rows} embeddings in {:.1} s, committed to {}/{name}",
        started.elapsed().as_secs_f64(),
        job.decided.uri()
    ))
}

/// The pairs of every partition task of one split, merged (sorted by rows, each once: every
/// pair is reported by one partition only), when tasks have committed pairs: `None` when none
/// has; an error naming the missing tasks when no split is complete. A complete split is taken
/// whatever its count (every count finds the same pairs).
pub(super) fn merged_pairs(job: &Job, rows: usize) -> Result<Option<Vec<SimilarPair>>, RunError> {
    let files = job.runtime.block_on(partitions::pair_files(&job.decided))?;
    if files.is_empty() {
        return Ok(None);
    }
    let mut counts: Vec<u32> = files.iter().map(|&(_, n)| n).collect();
    counts.sort_unstable();
    counts.dedup();
    let complete = counts
        .iter()
        .copied()
        .find(|&n| files.iter().filter(|&&(_, c)| c == n).count() == n as usize);
    let Some(count) = complete else {
        let mut missing: Vec<String> = Vec::new();
        for &n in &counts {
            for i in (0..n).filter(|i| !files.contains(&(*i, n))) {
                missing.push(format!("--shard-index {i} of --num-shards {n}"));
            }
        }
        return Err(RunError::Incomplete {
            phase: "decide".into(),
            message: format!(
                "{} partition task(s) have not committed their pairs yet: {}; run `--phase decide --num-shards N --shard-index I` for them first",
                missing.len(),
                match missing.len() {
                    0..=10 => missing.join(", "),
                    n => format!("{} and {} more", missing[..10].join(", "), n - 10),
                }
            ),
        });
    };
    let mut pairs = Vec::new();
    for index in 0..count {
        let name = partitions::pairs_name(index, count);
        let corrupt = |message: String| {
            RunError::State(StateError::Corrupt {
                uri: format!("{}/{name}", job.decided.uri()),
                message,
            })
        };
        let bytes = job
            .runtime
            .block_on(state::get(&job.decided, &name))?
            .ok_or_else(|| corrupt("listed, but not there".into()))?;
        let task: TaskPairs = state::codec::decode(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if task.rows != rows as u64 || (task.index, task.count) != (index, count) {
            return Err(corrupt(format!(
                "task {} of {} over {} rows, not task {index} of {count} over these {rows} embeddings",
                task.index, task.count, task.rows
            )));
        }
        pairs.extend(task.pairs.into_iter().map(|(a, b, cosine)| SimilarPair {
            a: a as usize,
            b: b as usize,
            cosine,
        }));
    }
    pairs.sort_unstable_by_key(|p| (p.a, p.b));
    tracing::info!(
        "decide: {} semantic pair(s) from {count} partition task(s)",
        pairs.len()
    );
    Ok(Some(pairs))
}
