//! Running the stages together, in the order of the data flow:
//!
//! ```text
//! set-up (device, backends, model) → plan → work units
//!   measure, per unit: source → decode → measure → per-sample decisions (worker threads,
//!     candidates staged), committed to `state/`
//!   decide: run-wide dedup → CLIP embeddings of the survivors → semantic dedup and alignment
//!     → shard layout, committed to `state/`
//!   write, per planned shard: shards from the staged candidates
//!   commit: ledger, embeddings, manifest, report into the version's folder, then current.json
//! ```
//!
//! Each phase can run alone, on a slice of the work, in its own process ([`phases`]);
//! [`run`] runs them all here. Orchestration only: phases, threads, channels, the I/O runtime,
//! progress and timing. Every rule
//! (what is measured, what is dropped, which copy is kept, what is written) lives in the stage
//! modules. Dedup needs the whole run, so it waits for every sample to be measured; records
//! are then in id order, which makes the output independent of thread count and arrival order.

pub mod backends;
pub mod calibrate;
pub mod deciding;
pub mod embed;
pub mod forget;
pub mod incremental;
pub mod job;
pub mod measuring;
pub mod partitions;
pub mod phases;
pub mod progress;
pub mod reenrich;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::config::Config;
use crate::decode::av::{video_decoder_counts, VideoDecoderCounts};
use crate::models::ModelError;
use crate::plan::PlanError;
use crate::plan::{self, Plan};
use crate::store::{StoreError, Stores};
use crate::write::manifest::{RunFacts, RunManifest};
use crate::write::version::OutputVersion;
use crate::write::{self, WriteError};
use backends::Backends;
use embed::EmbedError;
pub use phases::{Phase, Slice};
use progress::Progress;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("staging folder {path}: {source}")]
    Staging {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(std::io::Error),
    #[error("models.clip: {0}")]
    Model(#[from] ModelError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The device in `run.device` cannot be used: a setup error, like a bad config.
    #[error(transparent)]
    Device(crate::gpu::GpuError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A phase started before the phases it needs had finished.
    #[error("cannot run the {phase} phase yet: {message}")]
    Incomplete { phase: String, message: String },
}

/// The finished run: its manifest, as written to `<output>/versions/NNNNNN/manifest.json`.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub manifest: RunManifest,
    pub seconds: f64,
}

/// Resolves the inputs and returns the plan, without fetching any media (`mmcurate plan`).
pub fn plan_only(config: &Config) -> Result<Plan, RunError> {
    let runtime = io_runtime(config)?;
    let stores = Stores::new().with_object_store_config(&config.run.object_store);
    Ok(runtime.block_on(plan::resolve(config, &stores))?)
}

/// Runs a whole curation job in this process: every phase, through the same code as
/// [`run_phase`].
pub fn run(config: &Config, progress: &Progress) -> Result<RunSummary, RunError> {
    let outcome = run_phase(config, Phase::All, Slice::WHOLE, progress)?;
    outcome.summary.ok_or_else(|| RunError::Incomplete {
        phase: "all".to_string(),
        message: "the run ended without committing".to_string(),
    })
}

/// What one phase did: a line for the log, and the run's summary once it is committed.
#[derive(Debug)]
pub struct PhaseOutcome {
    pub message: String,
    pub summary: Option<RunSummary>,
}

/// Runs one phase of a job (or all of them, `Phase::All`) on the slice given.
pub fn run_phase(
    config: &Config,
    phase: Phase,
    slice: Slice,
    progress: &Progress,
) -> Result<PhaseOutcome, RunError> {
    run_phase_against(config, phase, slice, progress, None)
}

/// [`run_phase`], deduplicating against the corpus at `against` when given
/// (`mmcurate run --against`: see [`incremental`]).
pub fn run_phase_against(
    config: &Config,
    phase: Phase,
    slice: Slice,
    progress: &Progress,
    against: Option<&str>,
) -> Result<PhaseOutcome, RunError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    // Set-up, before any work: the device, what runs on it, the model (only for the phases
    // that measure or embed); then the plan, so a bad path or an unreachable bucket fails
    // before the first fetch.
    let backends = match phase {
        Phase::All | Phase::Measure | Phase::Decide => Some(Backends::set_up(config)?),
        Phase::Write | Phase::Commit => None,
    };
    let resolved = backends.as_ref().map(|b| b.resolve_video_decoding(config));
    let config = resolved.as_ref().unwrap_or(config);
    let mut job = phases::Job::prepare(config)?;
    // The output, before any work: it must be ours. A one-machine run, and the decide phase of
    // a split one (which numbers the version), also take its lock and the next version number;
    // the measure and write phases run on many nodes at once and only check.
    let root = job.stores.open_for_output(&config.run.output)?;
    // A partition task of the decide phase (one of many at once) only checks, like them.
    let partition_task = phase == Phase::Decide && slice.count > 1;
    let opened = match phase {
        Phase::Decide if partition_task => {
            OutputVersion::check_ours(&root, job.runtime.handle())?;
            None
        }
        Phase::All | Phase::Decide => Some(OutputVersion::open(
            root.clone(),
            &config.output,
            job.runtime.handle(),
        )?),
        Phase::Measure | Phase::Write | Phase::Commit => {
            OutputVersion::check_ours(&root, job.runtime.handle())?;
            None
        }
    };
    if let Some(uri) = against {
        let corpus = incremental::load(&job.stores, job.runtime.handle(), config, uri, &root)?;
        if let Some(version) = &opened {
            incremental::check_base(Some(&corpus), version)?;
        }
        let unit_ids: Vec<String> = job.units.iter().map(|u| u.id.clone()).collect();
        let key = incremental::decide_key(config, &unit_ids, &corpus);
        job.decided = job.measure.decide_folder(&key);
        job.against = Some(corpus);
    }
    let mut measured = None;
    if let (Phase::All | Phase::Measure, Some(backends)) = (phase, &backends) {
        let done = phases::measure(&mut job, backends, slice, progress)?;
        if phase == Phase::Measure {
            return Ok(PhaseOutcome {
                message: format!(
                    "measure: {} unit(s) measured, {} reused",
                    done.measured, done.reused
                ),
                summary: None,
            });
        }
        measured = Some(done);
    }
    if let (true, Some(backends)) = (partition_task, &backends) {
        phases::all_units_measured(&job)?;
        let message = partitions::search_partitions(
            &mut job,
            backends,
            progress,
            &root,
            slice.index as u32,
            slice.count as u32,
        )?;
        return Ok(PhaseOutcome {
            message,
            summary: None,
        });
    }
    let decisions = match (phase, &backends) {
        (Phase::All | Phase::Decide, Some(backends)) => {
            let videos = measured
                .as_ref()
                .map(|m| m.video_decoders.clone())
                .unwrap_or_default();
            let opened = opened.as_ref().expect("opened for the decide phase");
            let decisions = phases::decide(&mut job, backends, videos, progress, false, opened)?;
            if phase == Phase::Decide {
                return Ok(PhaseOutcome {
                    message: format!(
                        "decide: {} shard(s) planned for {} kept sample(s)",
                        decisions.shards.len(),
                        decisions.kept()
                    ),
                    summary: None,
                });
            }
            decisions
        }
        _ => phases::committed_decisions(&job, phase.as_str())?,
    };
    // Decisions made over summaries name what changes; the records come from the units.
    let decisions = deciding::with_records(&job, decisions)?;
    // The version the decisions were numbered for (a resumed run's may be older than the one
    // opened above, which is then not used: nothing was written under its number).
    let output = OutputVersion::at(root, decisions.version, decisions.parent_version)
        .keeping(config.output.keep_versions);
    if matches!(phase, Phase::All | Phase::Write) {
        let written = phases::write(&mut job, &decisions, &output.dir, slice, progress)?;
        if phase == Phase::Write {
            return Ok(PhaseOutcome {
                message: format!(
                    "write: {} shard(s) written, {} reused",
                    written.written, written.reused
                ),
                summary: None,
            });
        }
    }

    commit(CommitInputs {
        job: &mut job,
        config,
        phase,
        decisions: &decisions,
        output: &output,
        measured: measured.as_ref(),
        started,
        started_at,
    })
}

/// What the commit needs of the run that reached it.
struct CommitInputs<'j, 'a> {
    job: &'j mut phases::Job<'a>,
    config: &'a Config,
    phase: Phase,
    decisions: &'j phases::Decisions,
    output: &'j OutputVersion,
    measured: Option<&'j phases::Measured>,
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
}

/// The commit: ledger, embeddings, manifest and report into the version's folder, then the
/// commit pointer (`current.json`), last.
fn commit(inputs: CommitInputs) -> Result<PhaseOutcome, RunError> {
    let CommitInputs {
        job,
        config,
        phase,
        decisions,
        output,
        measured,
        started,
        started_at,
    } = inputs;
    let committing = Instant::now();
    let shards = phases::gather_shards(job, decisions)?;
    phases::copy_embeddings(job, &decisions.embeddings, &output.dir)?;
    let io = job.runtime.handle();
    let written = write::Written {
        shards,
        ledger: write::write_ledger_from(
            &output.dir,
            &decisions.records,
            decisions.against.as_ref().map_or(0, |a| a.ledger_from),
            io,
        )?,
    };
    job.clock.add("write", committing);
    let mut stage_seconds = decisions.stage_seconds.clone();
    for (stage, seconds) in &job.clock.seconds {
        if phase == Phase::All {
            // The decide phase's own times are in `job.clock` already.
            stage_seconds.insert(stage.clone(), *seconds);
        } else {
            *stage_seconds.entry(stage.clone()).or_default() += seconds;
        }
    }
    let units = measured.map(|m| phases::unit_counts(job, m));
    let mut manifest = RunManifest::assemble(committed_facts(
        CommittedRun {
            config,
            job,
            decisions,
            output,
        },
        written,
        stage_seconds,
        started_at,
        units,
    ));
    incremental::finish_manifest(
        io,
        &decisions.records,
        decisions.against.as_ref(),
        output,
        &mut manifest,
    )?;
    write::finish_run(output, &manifest, &decisions.records, io)?;
    Ok(PhaseOutcome {
        message: format!(
            "commit: {} shard(s), ledger and manifest",
            manifest.shards.len()
        ),
        summary: Some(RunSummary {
            manifest,
            seconds: started.elapsed().as_secs_f64(),
        }),
    })
}

/// A run whose decisions are being committed (by `run`, and by `reenrich`).
pub(crate) struct CommittedRun<'a, 'j> {
    pub config: &'a Config,
    pub job: &'a phases::Job<'j>,
    pub decisions: &'a phases::Decisions,
    pub output: &'a OutputVersion,
}

/// The manifest's facts of a committed run: what its decisions, plan and output say, with
/// what the commit wrote.
pub(crate) fn committed_facts<'a>(
    run: CommittedRun<'a, '_>,
    written: write::Written,
    stage_seconds: BTreeMap<String, f64>,
    started_at: chrono::DateTime<chrono::Utc>,
    units: Option<write::manifest::UnitCounts>,
) -> RunFacts<'a> {
    let CommittedRun {
        config,
        job,
        decisions,
        output,
    } = run;
    RunFacts {
        config,
        plan: &job.plan,
        output: &output.root,
        version: output.number,
        parent_version: output.parent,
        records: &decisions.records,
        input_errors: &decisions.input_errors,
        written,
        embeddings: decisions.embeddings.clone(),
        clip: decisions.clip.as_ref(),
        alignment: decisions.alignment.clone(),
        thresholds: decisions.thresholds.clone(),
        stage_seconds,
        gpu_busy_seconds: decisions.gpu_busy_seconds.clone(),
        started_at,
        device: decisions.device.clone(),
        jpeg_decoder: decisions.jpeg_decoder.clone(),
        video_decoders: decisions.video_decoders.clone(),
        units,
    }
}

/// Seconds per stage, summed when a stage runs more than once (`decide`).
#[derive(Debug, Default)]
pub struct StageClock {
    pub seconds: BTreeMap<String, f64>,
}

impl StageClock {
    pub fn add(&mut self, stage: &str, since: Instant) {
        *self.seconds.entry(stage.to_string()).or_default() += since.elapsed().as_secs_f64();
    }
}

pub(crate) fn io_runtime(config: &Config) -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads().clamp(2, 8))
        .enable_all()
        .build()
        .map_err(RunError::Runtime)
}

pub(crate) fn log_plan(plan: &Plan) {
    tracing::info!(
        "planned {} input(s): {} unit(s) of work, {} sample(s) expected",
        plan.inputs.len(),
        plan.unit_count(),
        plan.expected_samples()
            .map_or("an unknown number of".to_string(), |n| n.to_string())
    );
}

/// Videos decoded since `before`, by decoder (only those that decoded any).
pub(crate) fn videos_decoded_since(before: &VideoDecoderCounts) -> BTreeMap<String, u64> {
    let after = video_decoder_counts();
    [
        ("nvdec", before.nvdec, after.nvdec),
        ("cpu", before.cpu, after.cpu),
    ]
    .into_iter()
    .filter(|(_, before, after)| after > before)
    .map(|(name, before, after)| (name.to_string(), after - before))
    .collect()
}

pub(crate) fn staging_error(dir: &std::path::Path, source: std::io::Error) -> RunError {
    RunError::Staging {
        path: dir.display().to_string(),
        source,
    }
}

/// Whether the output is in an object store (`s3://`, `gs://`, …) rather than a local folder.
fn output_is_remote(config: &Config) -> bool {
    let output = &config.run.output;
    output.contains("://") && !output.starts_with("file://")
}

pub(crate) fn staging_dir(config: &Config) -> PathBuf {
    if let Some(dir) = &config.run.staging_dir {
        return PathBuf::from(dir);
    }
    let output = &config.run.output;
    if output_is_remote(config) {
        // `Staging::create` makes a private folder with an unpredictable name inside it.
        std::env::temp_dir()
    } else {
        PathBuf::from(output.strip_prefix("file://").unwrap_or(output)).join(".staging")
    }
}

/// Removes the default `<output>/.staging` when empty: it is ours (a configured folder is the
/// user's, and so is the system temp folder that holds remote runs' staging).
pub(crate) fn remove_default_staging_dir(config: &Config, staging_dir: &std::path::Path) {
    if config.run.staging_dir.is_none() && !output_is_remote(config) {
        let _ = std::fs::remove_dir(staging_dir);
    }
}
