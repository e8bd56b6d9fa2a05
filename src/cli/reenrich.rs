//! `mmcurate reenrich OUTPUT --set models.clip.path=NEW`: a new version of the output with the
//! model outputs made again (`pipeline::reenrich` does the work); prints the run summary and
//! what was reused, computed and changed.

use std::process::ExitCode;

use crate::pipeline::progress::Progress;
use crate::pipeline::reenrich::{plan_reenrich, reenrich as make_version, ReenrichError};
use crate::pipeline::RunError;

pub fn reenrich(output: &str, set: &[String], progress: &Progress) -> ExitCode {
    let plan = match plan_reenrich(output, set) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    for (key, change) in &plan.changed {
        tracing::info!(
            "reenrich version {}: {key} {} → {}",
            plan.parent_version,
            change.old,
            change.new
        );
    }
    match make_version(&plan, progress) {
        Ok(summary) => {
            super::print_summary(&summary);
            if let Some(r) = &summary.manifest.reenrich {
                println!(
                    "  reenrich of version {}: {} sample(s) decoded, {} measurement(s) reused, \
                     {} embedding(s) computed, {} from the cache; {} entered, {} left \
                     (diff.parquet)",
                    plan.parent_version,
                    r.samples_decoded,
                    r.measurements_reused,
                    r.embeddings_computed,
                    r.embeddings_from_cache,
                    r.entered,
                    r.left
                );
            }
            ExitCode::SUCCESS
        }
        Err(e @ (ReenrichError::Usage(_) | ReenrichError::Config(_))) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
        Err(ReenrichError::Run(e @ (RunError::Device(_) | RunError::Model(_)))) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
        Err(ReenrichError::Run(RunError::Write(e))) if e.is_refusal() => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("reenrich failed: {e}");
            ExitCode::from(1)
        }
    }
}
