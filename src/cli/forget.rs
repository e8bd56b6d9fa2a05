//! `mmcurate forget OUTPUT --ids FILE --request-id R [--with-duplicates]`: reads the request
//! (ids, keys or sha256s, one per line; blank lines and `#` comments skipped), runs it
//! (`pipeline::forget`), and prints what it rewrote and which older versions still hold the
//! samples.

use std::process::ExitCode;

use crate::pipeline::forget::{forget as run_forget, ForgetRequest};
use crate::pipeline::RunError;

#[derive(clap::Args)]
pub struct ForgetArgs {
    /// The output: a local path, file:// or s3:// URI.
    pub output: String,
    /// A file of ids, keys or sha256s (hex), one per line.
    #[arg(long, value_name = "FILE")]
    pub ids: std::path::PathBuf,
    /// The request's identifier, recorded with every forgotten sample.
    #[arg(long, value_name = "R")]
    pub request_id: String,
    /// Also forget every sample that dedup grouped with them (their near copies).
    #[arg(long)]
    pub with_duplicates: bool,
}

pub fn forget(args: &ForgetArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&args.ids) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!("--ids {}: {e}", args.ids.display());
            return ExitCode::from(2);
        }
    };
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if names.is_empty() || args.request_id.trim().is_empty() {
        tracing::error!("--ids names no sample, or --request-id is empty: nothing to do");
        return ExitCode::from(2);
    }
    let request = ForgetRequest {
        names,
        request_id: args.request_id.clone(),
        with_duplicates: args.with_duplicates,
    };
    match run_forget(&args.output, &request) {
        Ok(done) => {
            println!(
                "request {}: {} sample(s) forgotten ({} removed from shards) in version {}",
                request.request_id, done.samples, done.removed_from_shards, done.version
            );
            for path in &done.rewritten {
                println!("rewrote {path}");
            }
            for path in &done.dropped {
                println!("no longer listed (nothing left in it): {path}");
            }
            println!(
                "state: {} unit(s) rewritten, {} file(s) removed",
                done.purged.units.len(),
                done.purged.removed.len()
            );
            if !done.calibration_removed.is_empty() {
                println!(
                    "calibration/ removed ({} file(s)): run `mmcurate calibrate` again to remake it",
                    done.calibration_removed.len()
                );
            }
            for name in &done.unmatched {
                println!("matched nothing: {name}");
            }
            if !done.older_versions.is_empty() {
                let list: Vec<String> = done.older_versions.iter().map(u64::to_string).collect();
                println!(
                    "older version(s) {} still hold forgotten samples: run `mmcurate prune {} --keep 1` to complete the request",
                    list.join(", "),
                    args.output
                );
            }
            ExitCode::SUCCESS
        }
        Err(RunError::Write(e)) if e.is_refusal() => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("forget failed: {e}");
            ExitCode::from(1)
        }
    }
}
