//! Running the stages together, in the order of the data flow:
//!
//! ```text
//! set-up (device, backends, model) → plan → source → decode → measure → per-sample decisions
//!   (worker threads, candidates staged)  → run-wide dedup → CLIP embeddings of the survivors
//!   → semantic dedup and alignment → write (a new version: shards, ledger, embeddings,
//!   manifest, report) → commit (`current.json`)
//! ```
//!
//! Orchestration only: threads, channels, the I/O runtime, progress and timing. Every rule
//! (what is measured, what is dropped, which copy is kept, what is written) lives in the stage
//! modules. Dedup needs the whole run, so it waits for every sample to be measured; records
//! are then in id order, which makes the output independent of thread count and arrival order.

pub mod backends;
pub mod embed;
pub mod measuring;
pub mod progress;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::config::Config;
use crate::decide::run_wide::{drop_duplicates, drop_semantic_duplicates_and_misaligned};
use crate::decode::av::{video_decoder_counts, VideoDecoderCounts};
use crate::models::ModelError;
use crate::plan::{self, Plan};
use crate::source::{SourceError, Stores};
use crate::write::manifest::{RunFacts, RunManifest};
use crate::write::staging::Staging;
use crate::write::version::OutputVersion;
use crate::write::{self, WriteError};
use backends::Backends;
use embed::EmbedError;
use progress::Progress;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Source(#[from] SourceError),
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

/// Runs a whole curation job.
pub fn run(config: &Config, progress: &Progress) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let runtime = io_runtime(config)?;
    let io = runtime.handle();
    let stores =
        Stores::with_http(config.http.clone()).with_object_store_config(&config.run.object_store);
    let mut clock = StageClock::default();

    // Set-up, before any work: the device, what runs on it, the model; then the plan and the
    // output, so a bad path or an unreachable bucket fails before the first fetch.
    let backends = Backends::set_up(config)?;
    let config = &backends.resolve_video_decoding(config);
    let plan = runtime.block_on(plan::resolve(config, &stores))?;
    let output = open_output(config, &stores, &runtime)?;
    clock.add("plan", started);
    log_plan(&plan);

    // source → decode → measure → per-sample decisions, on worker threads; the parts of the
    // samples that may be kept are staged.
    let measuring = Instant::now();
    let staging_dir = staging_dir(config);
    let staging = Staging::create(&staging_dir).map_err(|e| staging_error(&staging_dir, e))?;
    let videos_before = video_decoder_counts();
    let (mut records, input_errors) = measuring::measure_plan(
        &plan,
        config,
        backends.measure(),
        io,
        &stores,
        &staging,
        progress,
    )?;
    let video_decoders = videos_decoded_since(&videos_before);
    let mut gpu_busy_seconds = backends.measure_busy_seconds();
    clock.add("measure", measuring);

    // decide: dedup over the whole run.
    let deciding = Instant::now();
    drop_duplicates(&mut records, config);
    clock.add("decide", deciding);
    let staged = staging
        .finish()
        .map_err(|e| staging_error(&staging_dir, e))?;

    // With a model: CLIP embeddings of the survivors (measure), then semantic dedup and the
    // alignment thresholds (decide), then the embeddings files (write).
    let mut alignment = None;
    let mut embeddings_files = Vec::new();
    if let Some(clip) = &backends.clip {
        let embedding = Instant::now();
        let embeddings = embed::embed_kept_records(
            &mut records,
            &staged,
            config,
            &backends,
            &mut gpu_busy_seconds,
            progress,
        )?;
        clock.add("embed", embedding);
        let deciding = Instant::now();
        alignment = drop_semantic_duplicates_and_misaligned(&mut records, &embeddings, config);
        clock.add("decide", deciding);
        embeddings_files = write::embeddings::write_embeddings(
            &output.dir,
            &records,
            &embeddings,
            &clip.info,
            io,
        )?;
    }

    // write: shards and ledger from staging into the new version, then the manifest and report,
    // then the commit.
    let writing = Instant::now();
    let kept = records.iter().filter(|r| r.decision.is_keep()).count() as u64;
    let bar = progress.stage("write", Some(kept));
    let written = write::write_shards_and_ledger(
        &output.dir,
        &mut records,
        &staged,
        &config.output,
        io,
        || bar.inc(),
    )?;
    bar.finish();
    drop(staged);
    if config.run.staging_dir.is_none() && !output_is_remote(config) {
        // The default `<output>/.staging` is ours: remove it when empty (a configured folder is
        // the user's, and so is the system temp folder that holds remote runs' staging).
        let _ = std::fs::remove_dir(&staging_dir);
    }
    clock.add("write", writing);
    let manifest = RunManifest::assemble(RunFacts {
        config,
        plan: &plan,
        output: &output.root,
        version: output.number,
        parent_version: output.parent,
        records: &records,
        input_errors: &input_errors,
        written,
        embeddings: embeddings_files,
        clip: backends.clip.as_ref().map(|c| &c.info),
        alignment,
        stage_seconds: clock.seconds,
        gpu_busy_seconds,
        started_at,
        device: backends.device.label(),
        jpeg_decoder: backends.jpeg_decoder_description(),
        video_decoders,
    });
    write::finish_run(&output, &manifest, &records, io)?;
    Ok(RunSummary {
        manifest,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Seconds per stage, summed when a stage runs more than once (`decide`).
#[derive(Debug, Default)]
struct StageClock {
    seconds: BTreeMap<String, f64>,
}

impl StageClock {
    fn add(&mut self, stage: &str, since: Instant) {
        *self.seconds.entry(stage.to_string()).or_default() += since.elapsed().as_secs_f64();
    }
}

fn io_runtime(config: &Config) -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads().clamp(2, 8))
        .enable_all()
        .build()
        .map_err(RunError::Runtime)
}

fn log_plan(plan: &Plan) {
    tracing::info!(
        "planned {} input(s): {} unit(s) of work, {} sample(s) expected",
        plan.inputs.len(),
        plan.unit_count(),
        plan.expected_samples()
            .map_or("an unknown number of".to_string(), |n| n.to_string())
    );
}

/// Opens a new version of the output before any work: it must be reachable and ours, and
/// its lock free (`write::version::OutputVersion::open`).
fn open_output(
    config: &Config,
    stores: &Stores,
    runtime: &tokio::runtime::Runtime,
) -> Result<OutputVersion, RunError> {
    let root = stores.open_for_output(&config.run.output)?;
    Ok(OutputVersion::open(root, &config.output, runtime.handle())?)
}

/// Videos decoded since `before`, by decoder (only those that decoded any).
fn videos_decoded_since(before: &VideoDecoderCounts) -> BTreeMap<String, u64> {
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

fn staging_error(dir: &std::path::Path, source: std::io::Error) -> RunError {
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

fn staging_dir(config: &Config) -> PathBuf {
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
