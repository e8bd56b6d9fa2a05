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

use super::{
    backends::Backends, check_output, embed, io_runtime, measuring, progress::Progress, RunError,
    StageClock,
};
use crate::config::Config;
use crate::decide::percentiles::apply_percentile_thresholds;
use crate::decide::run_wide::{drop_duplicates, drop_semantic_duplicates_and_misaligned};
use crate::decide::sweeps::{dedup_sweeps, filter_sweeps, semantic_sweep, Sweeps};
use crate::plan;
use crate::source::Stores;
use crate::write::manifest::{Calibration, RunFacts, RunManifest};
use crate::write::staging::Staging;
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
    format!("{}/calibration", config.run.output.trim_end_matches('/'))
}

/// Measures `sample` units of work (all without it), decides as a run would, and writes the
/// ledger, a manifest with the threshold sweeps and the report to `output_uri`.
pub fn calibrate(
    config: &Config,
    sample: Option<u64>,
    output_uri: &str,
    progress: &Progress,
) -> Result<CalibrationSummary, RunError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let runtime = io_runtime(config)?;
    let io = runtime.handle();
    let stores =
        Stores::with_http(config.http.clone()).with_object_store_config(&config.run.object_store);
    let mut clock = StageClock::default();

    let backends = Backends::set_up(config)?;
    let config = &backends.resolve_video_decoding(config);
    let mut plan = runtime.block_on(plan::resolve(config, &stores))?;
    let units_planned = plan.unit_count();
    if let Some(n) = sample {
        plan.sample(n);
    }
    let output = stores.open_for_output(output_uri)?;
    runtime.block_on(check_output(&output))?;
    clock.add("plan", started);
    tracing::info!(
        "calibrating on {} of {units_planned} unit(s) of work",
        plan.unit_count()
    );

    let measuring = Instant::now();
    // Staged parts feed the CLIP embeddings; a private folder in the system temp folder keeps
    // them off the output.
    let staging_dir = std::env::temp_dir();
    let staging =
        Staging::create(&staging_dir).map_err(|e| super::staging_error(&staging_dir, e))?;
    let (mut records, input_errors) = measuring::measure_plan(
        &plan,
        config,
        backends.measure(),
        io,
        &stores,
        &staging,
        progress,
    )?;
    let mut gpu_busy_seconds = backends.measure_busy_seconds();
    clock.add("measure", measuring);

    let deciding = Instant::now();
    let thresholds = apply_percentile_thresholds(&mut records, config);
    let mut sweeps = Sweeps {
        filters: Vec::new(),
        dedups: dedup_sweeps(&records, config),
    };
    drop_duplicates(&mut records, config);
    clock.add("decide", deciding);
    let staged = staging
        .finish()
        .map_err(|e| super::staging_error(&staging_dir, e))?;

    let mut alignment = None;
    if backends.clip.is_some() {
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
        sweeps
            .dedups
            .extend(semantic_sweep(&records, &embeddings, config));
        alignment = drop_semantic_duplicates_and_misaligned(&mut records, &embeddings, config);
        clock.add("decide", deciding);
    }
    drop(staged);
    let resolved_clip = alignment.as_ref().and_then(|a| a.min_clip_score);
    sweeps.filters = filter_sweeps(&records, config, &|key| match key {
        "filters.alignment.min_clip_score" => resolved_clip,
        _ => thresholds.get(key).and_then(|t| t.value),
    });

    let writing = Instant::now();
    let ledger = write::write_ledger(&output, &records, io)?;
    clock.add("write", writing);
    let manifest = RunManifest::assemble(RunFacts {
        config,
        plan: &plan,
        output: &output,
        records: &records,
        input_errors: &input_errors,
        written: Written {
            shards: Vec::new(),
            ledger,
        },
        embeddings: Vec::new(),
        clip: backends.clip.as_ref().map(|c| &c.info),
        alignment,
        thresholds,
        stage_seconds: clock.seconds,
        gpu_busy_seconds,
        started_at,
        device: backends.device.label(),
        jpeg_decoder: backends.jpeg_decoder_description(),
        video_decoders: Default::default(),
    });
    let calibration = Calibration {
        sample,
        units_planned,
        units_measured: plan.unit_count(),
        sweeps,
    };
    write::finish_calibration(&output, &manifest, &calibration, &records, io)?;
    Ok(CalibrationSummary {
        manifest,
        calibration,
        report_uri: output.child("report.html").uri(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
