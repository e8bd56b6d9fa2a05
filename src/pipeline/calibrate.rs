//! `mmcurate calibrate`: the run's stages up to its decisions, on a deterministic sample of the
//! inputs (or all of them), then the threshold sweeps and the report, without writing shards:
//!
//! ```text
//! set-up → plan (sampled) → source → decode → measure → per-sample decisions
//!   → percentile thresholds → [sweeps of pHash, video, audio dedup] → dedup
//!   → CLIP embeddings → [sweep of semantic dedup] → semantic dedup and alignment
//!   → [filter sweeps] → write (ledger, manifest with the sweeps, report)
//! ```
//!
//! Orchestration only, as [`super::run`]: the sweeps are `decide::sweeps`, the files `write`.

use std::time::Instant;

use super::phases::{self, Job, Slice};
use super::{backends::Backends, progress::Progress, RunError};
use crate::config::Config;
use crate::write::manifest::{Calibration, RunFacts, RunManifest};
use crate::write::version::OutputVersion;
use crate::write::{self, Written};

/// A finished calibration: its manifest (with the sweeps) and where the report is.
#[derive(Debug)]
pub struct CalibrationSummary {
    pub manifest: RunManifest,
    pub calibration: Calibration,
    pub report_uri: String,
    pub seconds: f64,
}

/// The folder a calibration writes to when `--output` is not given: `calibration/` inside the
/// run's output.
pub fn default_output(config: &Config) -> String {
    format!(
        "{}/{}",
        config.run.output.trim_end_matches('/'),
        crate::write::ownership::CALIBRATION_DIR
    )
}

/// Measures `sample` units of work (all without it) and decides as a run would, through the
/// run's own phases with `output_uri` as their output (so its `state/` makes a second
/// calibration of the same sample quick), then writes the ledger, a manifest with the
/// threshold sweeps and the report there.
pub fn calibrate(
    config: &Config,
    sample: Option<u64>,
    output_uri: &str,
    progress: &Progress,
) -> Result<CalibrationSummary, RunError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let mut config = config.clone();
    config.run.output = output_uri.to_string();
    let backends = Backends::set_up(&config)?;
    let config = backends.resolve_video_decoding(&config);
    let mut job = Job::prepare_sampled(&config, sample)?;
    // The calibration's folder is an output of its own: ours (or empty), locked, numbered;
    // nothing is committed there, so the number only names its decisions.
    let root = job.stores.open_for_output(&config.run.output)?;
    let opened = OutputVersion::open(root, &config.output, job.runtime.handle())?;
    tracing::info!(
        "calibrating on {} of {} unit(s) of work",
        job.plan.unit_count(),
        job.planned_units
    );
    let measured = phases::measure(&mut job, &backends, Slice::WHOLE, progress)?;
    let mut decisions = phases::decide(
        &mut job,
        &backends,
        measured.video_decoders.clone(),
        progress,
        true,
        &opened,
    )?;
    // No shards are written: the ledger names none.
    for record in &mut decisions.records {
        record.shard = None;
    }

    let writing = Instant::now();
    let output = job.stores.open_for_output(&config.run.output)?;
    let io = job.runtime.handle();
    let ledger = write::write_ledger(&output, &decisions.records, io)?;
    job.clock.add("write", writing);
    let manifest = RunManifest::assemble(RunFacts {
        config: &config,
        plan: &job.plan,
        output: &output,
        version: 0,
        parent_version: None,
        records: &decisions.records,
        input_errors: &decisions.input_errors,
        written: Written {
            shards: Vec::new(),
            ledger,
        },
        embeddings: Vec::new(),
        clip: decisions.clip.as_ref(),
        alignment: decisions.alignment.clone(),
        thresholds: decisions.thresholds.clone(),
        stage_seconds: job.clock.seconds.clone(),
        gpu_busy_seconds: decisions.gpu_busy_seconds.clone(),
        started_at,
        device: decisions.device.clone(),
        jpeg_decoder: decisions.jpeg_decoder.clone(),
        video_decoders: decisions.video_decoders.clone(),
        units: Some(phases::unit_counts(&job, &measured)),
    });
    let calibration = Calibration {
        sample,
        units_planned: job.planned_units,
        units_measured: job.plan.unit_count(),
        sweeps: decisions.sweeps.take().unwrap_or_default(),
    };
    write::finish_calibration(&output, &manifest, &calibration, &decisions.records, io)?;
    Ok(CalibrationSummary {
        manifest,
        calibration,
        report_uri: output.child("report.html").uri(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
