//! The phases of a run, each resumable and each runnable on its own node:
//!
//! - **measure** (a slice of the work units): source → decode → measure → per-sample decisions
//!   per unit, each finished unit committed to `state/` with its staged candidates;
//! - **decide** (one process): every unit's records, run-wide dedup, CLIP embeddings of the
//!   survivors, semantic dedup and alignment, and the shard layout, committed to `state/`
//!   (without CLIP, streamed unit by unit into compact summaries: [`super::deciding`]); its
//!   semantic search may be spread over partition tasks first ([`super::partitions`]), whose
//!   pairs it then merges;
//! - **write** (a slice of the planned shards): the shards, from the staged candidates only;
//! - **commit** (one process): ledger, embeddings, manifest, report, `_SUCCESS`.
//!
//! `Phase::All` runs the four in one process through the same functions. Orchestration only:
//! what is measured, dropped, kept and written is the stages' business.
//!
//! CLIP runs in the decide phase, not while measuring: it embeds only the samples that survive
//! run-wide dedup (which needs every unit), one process batches them in the same order whatever
//! the split (so the floats cannot depend on how units were spread), and a sample its
//! preprocessing cannot decode is dropped after dedup, as in a one-machine run.

use std::collections::BTreeMap;
use std::time::Instant;

use super::backends::Backends;
use super::incremental;
use super::job::DECISIONS;
pub use super::job::{Decisions, Job};
use super::partitions::{self, SharedPart};
use super::progress::Progress;
use super::{measuring, RunError};
use crate::decide::against::corpus_keys;
use crate::decide::run_wide::{drop_semantic_duplicates_and_misaligned, SemanticPairs};
use crate::decide::sweeps::filter_sweeps;
use crate::plan::units::{in_slice, WorkUnit};
use crate::state::{self, UnitRecords};
use crate::store::Location;
use crate::write::layout::{plan_layout_after, write_planned_shard, LayoutStart, PlannedShard};
use crate::write::manifest::{OutputFile, UnitCounts};
use crate::write::shards::{remove_unfinished, ShardInfo};
use crate::write::staging::Staging;
use crate::write::version::OutputVersion;

/// Which part of a run a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    All,
    Measure,
    Decide,
    Write,
    Commit,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::All => "all",
            Phase::Measure => "measure",
            Phase::Decide => "decide",
            Phase::Write => "write",
            Phase::Commit => "commit",
        }
    }
}

/// Slice `index` of `count`: the units (measure) or shards (write) a process takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub count: usize,
    pub index: usize,
}

impl Slice {
    pub const WHOLE: Slice = Slice { count: 1, index: 0 };

    fn takes(&self, ordinal: usize) -> bool {
        ordinal % self.count.max(1) == self.index
    }
}

/// Units measured and reused by a measure phase.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub measured: u64,
    pub reused: u64,
    pub video_decoders: BTreeMap<String, u64>,
}

/// The measure phase over the units of `slice`: each unit not yet committed is measured,
/// staged and committed; committed ones are skipped, and the log says how many of each.
pub fn measure(
    job: &mut Job,
    backends: &Backends,
    slice: Slice,
    progress: &Progress,
) -> Result<Measured, RunError> {
    let started = Instant::now();
    let finished = job.finished_units()?;
    let mine: Vec<&WorkUnit> = job
        .units
        .iter()
        .filter(|u| in_slice(u, slice.count, slice.index))
        .collect();
    let todo: Vec<&WorkUnit> = mine
        .iter()
        .copied()
        .filter(|u| !finished.contains(&u.id))
        .collect();
    let reused = (mine.len() - todo.len()) as u64;
    tracing::info!(
        "measure (slice {} of {}): {} work unit(s), {} already measured in {} (reused), {} to measure",
        slice.index,
        slice.count,
        mine.len(),
        reused,
        job.measure.uri(),
        todo.len()
    );
    let config = job.config;
    let staging_dir = super::staging_dir(config);
    let abort_after = abort_after("measure");
    let videos_before = crate::decode::av::video_decoder_counts();
    let read_bar = progress.stage("read", Some(todo.len() as u64));
    let measure_bar = progress.stage("measure", None);
    let mut measured = 0u64;
    for unit in todo {
        let staging =
            Staging::create(&staging_dir).map_err(|e| super::staging_error(&staging_dir, e))?;
        let (mut records, input_errors) = measuring::measure_unit(
            &job.plan,
            unit,
            config,
            backends.measure(),
            job.runtime.handle(),
            &job.stores,
            &staging,
            (&read_bar, &measure_bar),
        )?;
        for part in records.iter_mut().flat_map(|r| r.staged.iter_mut()) {
            part.unit = unit.ordinal as u32;
        }
        let staged = staging
            .finish()
            .map_err(|e| super::staging_error(&staging_dir, e))?;
        let state = UnitRecords {
            unit_id: unit.id.clone(),
            records,
            input_errors,
        };
        job.runtime
            .block_on(job.measure.commit_unit(&staged.file_path(), &state))?;
        drop(staged);
        measured += 1;
        if abort_after == Some(measured) {
            tracing::error!("MMCURATE_ABORT_AFTER: aborting after {measured} committed unit(s)");
            std::process::abort();
        }
    }
    read_bar.finish();
    measure_bar.finish();
    super::remove_default_staging_dir(config, &staging_dir);
    job.clock.add("measure", started);
    Ok(Measured {
        measured,
        reused,
        video_decoders: super::videos_decoded_since(&videos_before),
    })
}

/// The decide phase: reads every unit's records (all must be committed), decides over the
/// whole run, plans the shards and commits the decisions. Decisions already committed under
/// the same keys are reused. With `sweeps` (`mmcurate calibrate`), the threshold sweeps are
/// made on the way and kept with the decisions.
pub fn decide(
    job: &mut Job,
    backends: &Backends,
    video_decoders: BTreeMap<String, u64>,
    progress: &Progress,
    sweeps: bool,
    version: &OutputVersion,
) -> Result<Decisions, RunError> {
    if let Some(mut decisions) = read_decisions(job)? {
        // Every run that ends in a commit makes a new version: decisions already committed (or
        // numbered for a version another run has since passed) are written again as the version
        // opened now, so no committed folder is written into. Decisions of a run stopped
        // before its commit, over the same current version, keep their number, and that run's
        // shards are reused.
        let current = job
            .runtime
            .block_on(crate::write::version::read_current(&version.root))?;
        // (Decisions made over another base, such as an output of the layout before versions
        // that has become version 0 since, are renumbered too.)
        let committed = current.is_some_and(|c| decisions.version <= c.version);
        if committed || decisions.parent_version != version.parent {
            tracing::info!(
                "decide: reusing the decisions in {}, as version {} (they were version {})",
                job.decided.uri(),
                version.number,
                decisions.version
            );
            decisions.version = version.number;
            decisions.parent_version = version.parent;
            let bytes = state::codec::encode(&decisions);
            job.runtime
                .block_on(state::put(&job.decided, DECISIONS, bytes))?;
        } else {
            tracing::info!(
                "decide: reusing the decisions in {} (version {})",
                job.decided.uri(),
                decisions.version
            );
        }
        return Ok(decisions);
    }
    all_units_measured(job)?;
    if !sweeps && backends.clip.is_none() && job.against.is_none() {
        // Nothing needs every record at once: decide over compact summaries, streaming. (CLIP,
        // the sweeps of `calibrate` and the dedup against a corpus of `run --against` still
        // take every record.)
        return super::deciding::decide_over_summaries(job, backends, video_decoders, version);
    }
    // With CLIP, the shared part may have been made by the partition tasks, whose pairs are
    // then merged here ([`partitions`]); otherwise it is made here.
    let shareable = partitions::can_share(job, sweeps);
    let shared = if shareable {
        partitions::read_shared(job)?
    } else {
        None
    };
    let shared = match shared {
        Some(shared) => shared,
        None => partitions::shared_part(job, backends, progress, sweeps, &version.root)?,
    };
    let SharedPart {
        mut records,
        input_errors,
        mut thresholds,
        mut swept,
        corpus_drops,
        embeddings,
        all_embeddings,
        gpu_busy_seconds,
        model_outputs,
    } = shared;
    let mut alignment = None;
    let mut embeddings_files = Vec::new();
    if let (Some(clip), Some(embeddings)) = (&backends.clip, embeddings) {
        let deciding = Instant::now();
        let found = if shareable {
            partitions::merged_pairs(job, embeddings.rows.len())?
        } else {
            None
        };
        let pairs = match &found {
            Some(found) => SemanticPairs::Found(found),
            None => SemanticPairs::Search(backends.pair_products()),
        };
        alignment =
            drop_semantic_duplicates_and_misaligned(&mut records, &embeddings, job.config, pairs);
        let embeddings = all_embeddings.unwrap_or(embeddings);
        if let Some(clip) = alignment
            .as_mut()
            .and_then(|a| a.resolved_min_clip_score.take())
        {
            thresholds.insert("filters.alignment.min_clip_score".to_string(), clip);
        }
        job.clock.add("decide", deciding);
        embeddings_files = crate::write::embeddings::write_embeddings_from(
            &job.decided,
            &records,
            &embeddings,
            &clip.info,
            next_number(job, "embeddings"),
            job.runtime.handle(),
        )?;
    }
    if let Some(swept) = &mut swept {
        swept.filters = filter_sweeps(&records, job.config, &|key| {
            thresholds.get(key).and_then(|t| t.value)
        });
    }
    let planning = Instant::now();
    let start = match job.against.as_ref().filter(|a| a.same_output) {
        Some(against) => LayoutStart {
            used_keys: corpus_keys(&against.corpus),
            next_number: incremental::next_numbers(&against.manifest),
        },
        None => LayoutStart::default(),
    };
    let staged = job
        .measure
        .staged_reader(job.unit_ids(), job.runtime.handle().clone());
    let shards = plan_layout_after(&mut records, &staged, &job.config.output, start)?;
    job.clock.add("decide", planning);
    let decisions = Decisions {
        version: version.number,
        parent_version: version.parent,
        records,
        decided: None,
        shards,
        embeddings: embeddings_files,
        alignment,
        thresholds,
        sweeps: swept,
        input_errors,
        clip: backends.clip.as_ref().map(|c| c.info.clone()),
        device: backends.device.label(),
        jpeg_decoder: backends.jpeg_decoder_description(),
        video_decoders,
        gpu_busy_seconds,
        stage_seconds: job.clock.seconds.clone(),
        model_outputs,
        against: job
            .against
            .as_ref()
            .map(|a| incremental::decided(a, corpus_drops)),
    };
    let bytes = state::codec::encode(&decisions);
    job.runtime
        .block_on(state::put(&job.decided, DECISIONS, bytes))?;
    tracing::info!(
        "decide: {} sample(s), {} kept, {} shard(s) planned; committed to {}",
        decisions.records.len(),
        decisions.kept(),
        decisions.shards.len(),
        job.decided.uri()
    );
    Ok(decisions)
}

/// Every unit must be measured before the decide phase (or a partition task of it) starts;
/// otherwise an [`RunError::Incomplete`] names the missing ones.
pub(crate) fn all_units_measured(job: &Job) -> Result<(), RunError> {
    let finished = job.finished_units()?;
    let missing: Vec<&str> = job
        .units
        .iter()
        .filter(|u| !finished.contains(&u.id))
        .map(|u| u.id.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(incomplete(
            "decide",
            format!(
                "{} of {} work unit(s) are not measured yet: {}; run `--phase measure` for them first",
                missing.len(),
                job.units.len(),
                list(&missing)
            ),
        ));
    }
    Ok(())
}

/// The first free number of the ledger or embeddings files of an incremental run over its own
/// output (0 otherwise).
pub fn next_number(job: &Job, kind: &str) -> usize {
    job.against
        .as_ref()
        .filter(|a| a.same_output)
        .and_then(|a| incremental::next_numbers(&a.manifest).get(kind).copied())
        .unwrap_or(0)
}

/// The committed decisions, when the decide phase has run under the same keys.
fn read_decisions(job: &Job) -> Result<Option<Decisions>, RunError> {
    let Some(bytes) = job.runtime.block_on(state::get(&job.decided, DECISIONS))? else {
        return Ok(None);
    };
    let decisions = state::codec::decode(&bytes).map_err(|message| {
        RunError::State(state::StateError::Corrupt {
            uri: format!("{}/{DECISIONS}", job.decided.uri()),
            message: message.to_string(),
        })
    })?;
    Ok(Some(decisions))
}

/// The decisions, which the write and commit phases need.
pub fn committed_decisions(job: &Job, phase: &str) -> Result<Decisions, RunError> {
    read_decisions(job)?.ok_or_else(|| {
        incomplete(
            phase,
            format!(
                "no decisions in {} yet; run `--phase decide` first",
                job.decided.uri()
            ),
        )
    })
}

/// Shards written and reused by a write phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrittenShards {
    pub written: u64,
    pub reused: u64,
}

/// The write phase over the shards of `slice`: each planned shard not yet written is written
/// from the staged candidates and its info committed to `state/`.
pub fn write(
    job: &mut Job,
    decisions: &Decisions,
    output: &Location,
    slice: Slice,
    progress: &Progress,
) -> Result<WrittenShards, RunError> {
    let started = Instant::now();
    let staged = job
        .measure
        .staged_reader(job.unit_ids(), job.runtime.handle().clone());
    let mine: Vec<(usize, &PlannedShard)> = decisions
        .shards
        .iter()
        .enumerate()
        .filter(|(k, _)| slice.takes(*k))
        .collect();
    let samples: usize = mine.iter().map(|(_, s)| s.records.len()).sum();
    // A process killed while writing one of these shards left its unfinished upload behind.
    let names = mine.iter().map(|(_, s)| s.name.as_str()).collect();
    for left in remove_unfinished(output, &names)? {
        tracing::info!("write: removed {left}, left unfinished by an interrupted write");
    }
    let bar = progress.stage("write", Some(samples as u64));
    let abort_after = abort_after("write");
    let mut outcome = WrittenShards::default();
    for (k, shard) in mine {
        let info_name = shard_info_name(k);
        if let Some(info) = shard_info(job, &info_name)? {
            let size = job.runtime.block_on(state::size_of(output, &info.name))?;
            if size == Some(info.bytes) {
                outcome.reused += 1;
                continue;
            }
        }
        let info = write_planned_shard(
            output,
            shard,
            &decisions.records,
            &staged,
            job.runtime.handle(),
            || bar.inc(),
        )?;
        let json = serde_json::to_vec(&info).expect("a shard info serialises");
        job.runtime
            .block_on(state::put(&job.decided, &info_name, json))?;
        outcome.written += 1;
        if abort_after == Some(outcome.written) {
            tracing::error!(
                "MMCURATE_ABORT_AFTER: aborting after {} shard(s)",
                outcome.written
            );
            std::process::abort();
        }
    }
    bar.finish();
    tracing::info!(
        "write (slice {} of {}): {} shard(s) written, {} already written (reused)",
        slice.index,
        slice.count,
        outcome.written,
        outcome.reused
    );
    job.clock.add("write", started);
    Ok(outcome)
}

fn shard_info_name(k: usize) -> String {
    format!("shards/{k:06}.json")
}

fn shard_info(job: &Job, name: &str) -> Result<Option<ShardInfo>, RunError> {
    let Some(bytes) = job.runtime.block_on(state::get(&job.decided, name))? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&bytes).ok())
}

/// Every planned shard's info, or which are missing.
pub fn gather_shards(job: &Job, decisions: &Decisions) -> Result<Vec<ShardInfo>, RunError> {
    let mut infos = Vec::with_capacity(decisions.shards.len());
    let mut missing = Vec::new();
    for (k, shard) in decisions.shards.iter().enumerate() {
        match shard_info(job, &shard_info_name(k))? {
            Some(info) if info.name == shard.name => infos.push(info),
            _ => missing.push(shard.name.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(incomplete(
            "commit",
            format!(
                "{} of {} shard(s) are not written yet: {}; run `--phase write` for them first",
                missing.len(),
                decisions.shards.len(),
                list(&missing)
            ),
        ));
    }
    Ok(infos)
}

/// Copies the embeddings files from the decide state into the output.
pub fn copy_embeddings(job: &Job, files: &[OutputFile], output: &Location) -> Result<(), RunError> {
    for file in files {
        let bytes = job
            .runtime
            .block_on(state::get(&job.decided, &file.name))?
            .ok_or_else(|| {
                incomplete(
                    "commit",
                    format!("{} is missing from {}", file.name, job.decided.uri()),
                )
            })?;
        job.runtime
            .block_on(crate::write::put(output, &file.name, bytes))?;
    }
    Ok(())
}

/// Unit counts for the manifest of a run that measured in this process.
pub fn unit_counts(job: &Job, measured: &Measured) -> UnitCounts {
    UnitCounts {
        total: job.units.len() as u64,
        measured: measured.measured,
        reused: measured.reused,
    }
}

fn incomplete(phase: &str, message: String) -> RunError {
    RunError::Incomplete {
        phase: phase.to_string(),
        message,
    }
}

/// The first few names, and how many more.
fn list(names: &[&str]) -> String {
    const SHOWN: usize = 10;
    let mut text = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// `MMCURATE_ABORT_AFTER=<phase>:<K>`: abort the process (as `kill -9` would stop it) after
/// K units committed (`measure`) or K shards written (`write`), for the resume tests.
fn abort_after(phase: &str) -> Option<u64> {
    let value = std::env::var("MMCURATE_ABORT_AFTER").ok()?;
    let (at, count) = value.split_once(':')?;
    (at == phase).then(|| count.parse().ok()).flatten()
}
