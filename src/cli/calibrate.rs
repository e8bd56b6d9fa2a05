//! `mmcurate calibrate CONFIG [--sample N] [--output DIR]`: measures a deterministic sample of
//! the inputs, decides as a run would, and writes the report with threshold sweeps (no shards),
//! so thresholds can be chosen by looking before the real run (`pipeline::calibrate` does it).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::pipeline::{self, progress::Progress};

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// The job's TOML config.
    pub config: PathBuf,
    /// Measure this many units of work (media files, manifest rows or whole .tar shards),
    /// chosen by a hash of their names: the same sample on every run. Default: all.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub sample: Option<u64>,
    /// Where the ledger, manifest and report go. Default: `<run.output>/calibration`.
    #[arg(long, value_name = "DIR")]
    pub output: Option<String>,
    /// Override a config key, e.g. --set filters.image.min_sharpness=p10 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

pub fn calibrate(args: &CalibrateArgs, progress: &Progress) -> ExitCode {
    let Some(config) = super::load_config(&args.config, &args.set) else {
        return ExitCode::from(2);
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| pipeline::calibrate::default_output(&config));
    match pipeline::calibrate::calibrate(&config, args.sample, &output, progress) {
        Ok(summary) => {
            let c = &summary.manifest.counts;
            println!(
                "calibrated on {} of {} unit(s) of work in {:.1} s: {} samples, {} would be kept",
                summary.calibration.units_measured,
                summary.calibration.units_planned,
                summary.seconds,
                c.samples,
                c.kept
            );
            for s in &summary.calibration.sweeps.filters {
                println!(
                    "  {:<36} {} samples, kept share from {:.0}% to {:.0}%",
                    s.key,
                    s.samples,
                    s.points.first().map_or(0.0, |p| p.kept_share * 100.0),
                    s.points.last().map_or(0.0, |p| p.kept_share * 100.0)
                );
            }
            for d in &summary.calibration.sweeps.dedups {
                let at = d
                    .points
                    .iter()
                    .find(|p| (p.threshold - d.configured).abs() < 1e-9);
                println!(
                    "  {:<36} {} candidates; at the configured {}: {}",
                    d.key,
                    d.candidates,
                    d.configured,
                    at.map_or("(outside the sweep)".to_string(), |p| format!(
                        "{} groups, {} dropped",
                        p.groups, p.dropped
                    ))
                );
            }
            println!("report: {}", summary.report_uri);
            ExitCode::SUCCESS
        }
        Err(e @ pipeline::RunError::Device(_)) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("the calibration failed: {e}");
            ExitCode::from(1)
        }
    }
}
