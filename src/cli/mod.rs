//! The `mmcurate` command line: `run`, `plan`, `inspect`, `report`, `prune`, `verify`,
//! `forget`, `reenrich`, `calibrate` and `dedup`. This is the binary's edge: it sets up
//! logging and progress, prints results, and turns errors into exit codes (0 success, 1 the
//! run failed, 2 bad usage or config).

mod calibrate;
mod dedup;
mod forget;
mod history;
mod inspect;
mod prune;
mod reenrich;
mod report;
mod run;
mod verify;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::pipeline::{self, progress::Progress, RunSummary};

#[derive(Parser)]
#[command(
    name = "mmcurate",
    version,
    about = "Curate multimodal training corpora into WebDataset shards with a provenance ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Only warnings and errors; no progress bars.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a curation job.
    Run {
        /// The job's TOML config.
        config: PathBuf,
        /// Override a config key, e.g. --set run.threads=4 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Run one phase only (each resumes from the state in `<output>/state/`).
        #[arg(long, value_enum, default_value = "all")]
        phase: run::PhaseArg,
        /// Slices of the measure, decide (partition tasks) or write phase (default:
        /// SLURM_ARRAY_TASK_COUNT, else 1).
        #[arg(long, value_name = "N")]
        num_shards: Option<usize>,
        /// Which slice this process runs, from 0 (default: SLURM_ARRAY_TASK_ID less
        /// SLURM_ARRAY_TASK_MIN, else JOB_COMPLETION_INDEX, else 0).
        #[arg(long, value_name = "I")]
        shard_index: Option<usize>,
        /// Dedup the new inputs against the curated corpus of this output (usually the run's
        /// own, then the new version lists its files too), through its persisted index.
        #[arg(long, value_name = "PREVIOUS_OUTPUT")]
        against: Option<String>,
    },
    /// Validate the config and list the inputs it resolves to; writes nothing.
    Plan {
        config: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Summarise an output (its current version), a version folder, a shard (.tar) or a
    /// ledger (.parquet).
    Inspect {
        /// A local path, file:// or s3:// URI.
        path: String,
        /// List the output's versions: what made each, its parent, counts, config hash and
        /// model digests.
        #[arg(long)]
        history: bool,
        /// With --history: the samples that entered or left the kept set from version A to B.
        #[arg(long, num_args = 2, value_names = ["A", "B"], requires = "history")]
        diff: Option<Vec<u64>>,
    },
    /// Rebuild report.html and report.json of the current version from its ledger and shards.
    Report {
        /// The run's output: a local path, file:// or s3:// URI.
        output: String,
    },
    /// Remove old versions of an output, keeping the newest N committed ones.
    Prune {
        /// The output: a local path, file:// or s3:// URI.
        output: String,
        /// How many committed versions to keep (at least 1: the current one).
        #[arg(long)]
        keep: usize,
    },
    /// All pairs of embeddings (.npy or Parquet) at or above a cosine threshold, and their groups.
    Dedup(dedup::DedupArgs),
    /// Measure a sample of the inputs and write the report with threshold sweeps, no shards.
    Calibrate(calibrate::CalibrateArgs),
    /// Make a new version of an output with other model settings (e.g. a new CLIP
    /// checkpoint): reuses every measurement and staged copy in `state/`, recomputes the
    /// embeddings, CLIP scores, semantic dedup and alignment, and writes diff.parquet.
    Reenrich {
        /// The output: a local path, file:// or s3:// URI.
        output: String,
        /// A model setting to change, e.g. --set models.clip.path=NEW (repeatable; only
        /// `models.*`, `run.threads` and `run.device`).
        #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
        set: Vec<String>,
    },
    /// Check the current version: every listed file's size and sha256, the ledger against the
    /// shards, and that nothing forgotten remains anywhere in the output. Exit 1 on a problem.
    Verify {
        /// The output: a local path, file:// or s3:// URI.
        output: String,
    },
    /// Remove samples on request from the current version (a new version without them).
    Forget(forget::ForgetArgs),
}

/// Runs the command line; the exit code is the process's.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let progress = if cli.quiet {
        Progress::hidden()
    } else {
        Progress::for_terminal()
    };
    init_logging(cli.quiet, &progress);
    match cli.command {
        Command::Run {
            config,
            set,
            phase,
            num_shards,
            shard_index,
            against,
        } => {
            let phase = phase.phase();
            let slice = match run::resolve_slice(phase, num_shards, shard_index, |name| {
                std::env::var(name).ok()
            }) {
                Ok(slice) => slice,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::from(2);
                }
            };
            if phase == pipeline::Phase::Decide && slice.count > 1 && against.is_some() {
                tracing::error!("--against: the decide phase of an incremental run takes the whole run; run it without --num-shards");
                return ExitCode::from(2);
            }
            let Some(config) = load_config(&config, &set) else {
                return ExitCode::from(2);
            };
            match pipeline::run_phase_against(&config, phase, slice, &progress, against.as_deref())
            {
                Ok(outcome) => {
                    match &outcome.summary {
                        Some(summary) => print_summary(summary),
                        None => println!("{}", outcome.message),
                    }
                    ExitCode::SUCCESS
                }
                // A phase started before its inputs are complete: say so, and exit 3 so a
                // scheduler can tell it from a failure.
                Err(e @ pipeline::RunError::Incomplete { .. }) => {
                    tracing::error!("{e}");
                    ExitCode::from(3)
                }
                // A device that cannot be used is a setup error, found before any work.
                Err(e @ pipeline::RunError::Device(_)) => {
                    tracing::error!("{e}");
                    ExitCode::from(2)
                }
                // An output that is not ours, or locked: refused before any work.
                Err(pipeline::RunError::Write(e)) if e.is_refusal() => {
                    tracing::error!("{e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    tracing::error!("the run failed: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Plan { config, set } => {
            let Some(config) = load_config(&config, &set) else {
                return ExitCode::from(2);
            };
            match pipeline::plan_only(&config) {
                Ok(plan) => {
                    print_plan(&config, &plan);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Report { output } => report::report(&output),
        Command::Calibrate(args) => calibrate::calibrate(&args, &progress),
        Command::Prune { output, keep } => prune::prune(&output, keep),
        Command::Reenrich { output, set } => reenrich::reenrich(&output, &set, &progress),
        Command::Verify { output } => verify::verify(&output),
        Command::Forget(args) => forget::forget(&args),
        Command::Dedup(args) => match dedup::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::from(1)
            }
        },
        Command::Inspect {
            path,
            history,
            diff,
        } => match if history {
            history::history(&path, diff.map(|d| (d[0], d[1])))
        } else {
            inspect::inspect(&path)
        } {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::from(1)
            }
        },
    }
}

/// The I/O runtime and the opened output folder or prefix that `prune` and `verify` work on;
/// on failure the error is logged and the exit code returned (1 no runtime, 2 a bad location).
fn open_output(
    output: &str,
) -> Result<(tokio::runtime::Runtime, crate::store::Location), ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::error!("cannot start the I/O runtime: {e}");
            ExitCode::from(1)
        })?;
    let root = crate::store::Stores::new().open(output).map_err(|e| {
        tracing::error!("{e}");
        ExitCode::from(2)
    })?;
    Ok((runtime, root))
}

fn load_config(path: &std::path::Path, set: &[String]) -> Option<Config> {
    match Config::load(path, set) {
        Ok(config) => Some(config),
        Err(e) => {
            tracing::error!("{e}");
            None
        }
    }
}

/// Log lines go to stderr through the progress bars' `suspend`, so bars are redrawn below them.
fn init_logging(quiet: bool, progress: &Progress) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let multi = progress.multi().clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(move || SuspendingWriter {
            multi: multi.clone(),
            buffer: Vec::new(),
        })
        .try_init();
}

struct SuspendingWriter {
    multi: indicatif::MultiProgress,
    buffer: Vec<u8>,
}

impl Write for SuspendingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SuspendingWriter {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        self.multi.suspend(|| {
            let _ = std::io::stderr().write_all(&buffer);
        });
    }
}

fn print_plan(config: &Config, plan: &crate::plan::Plan) {
    println!(
        "config ok: run {:?} → {}",
        config.run.name, config.run.output
    );
    for input in &plan.inputs {
        let samples = input
            .expected_samples()
            .map_or("samples counted while reading".to_string(), |n| {
                format!("{n} samples")
            });
        println!(
            "input {}: {} ({}): {} objects, {}, {}",
            input.index,
            input.config.uri,
            input.config.format.as_str(),
            input.objects.len(),
            human_bytes(input.total_bytes()),
            samples
        );
    }
    let units = crate::plan::units::work_units(plan, config.run.unit_size);
    println!(
        "{} work unit(s) (one per shard, else {} files or rows each)",
        units.len(),
        config.run.unit_size
    );
}

fn print_summary(summary: &RunSummary) {
    let m = &summary.manifest;
    let c = &m.counts;
    let mut out = String::new();
    out.push_str(&format!(
        "\nmmcurate run {:?} finished in {:.1} s → {} (version {})\n",
        m.run.name, summary.seconds, m.run.output, m.version
    ));
    let row = |out: &mut String, label: &str, value: String| {
        out.push_str(&format!("  {label:<34} {value:>10}\n"));
    };
    row(&mut out, "inputs", m.inputs.len().to_string());
    row(&mut out, "samples", c.samples.to_string());
    if c.by_media_kind.len() > 1 {
        for (kind, n) in &c.by_media_kind {
            row(
                &mut out,
                &format!("  {kind}"),
                format!("{} ({} kept)", n.samples, n.kept),
            );
        }
    }
    row(&mut out, "kept", c.kept.to_string());
    row(&mut out, "dropped", c.dropped.to_string());
    for (reason, n) in &c.dropped_by_reason {
        row(&mut out, &format!("  {reason}"), n.to_string());
    }
    let bytes: u64 = m.shards.iter().map(|s| s.bytes).sum();
    row(
        &mut out,
        "shards",
        format!("{} ({})", m.shards.len(), human_bytes(bytes)),
    );
    if let Some(clip) = &m.models.clip {
        let scored = m
            .alignment
            .as_ref()
            .map_or(String::new(), |a| format!(", {} scored", a.scored));
        let rows: u64 = m.embeddings.iter().map(|e| e.rows).sum();
        row(
            &mut out,
            "embedded",
            format!("{rows} with {}{scored}", clip.id),
        );
    }
    row(
        &mut out,
        "throughput (samples/s)",
        format!("{:.1}", c.samples as f64 / summary.seconds.max(1e-9)),
    );
    let stages: Vec<String> = ["plan", "measure", "embed", "decide", "write"]
        .iter()
        .filter_map(|s| m.stage_seconds.get(*s).map(|t| format!("{s} {t:.2}s")))
        .collect();
    out.push_str(&format!("  stage time: {}\n", stages.join(" · ")));
    if !m.gpu_busy_seconds.is_empty() {
        let busy: Vec<String> = m
            .gpu_busy_seconds
            .iter()
            .map(|(step, t)| format!("{step} {t:.2}s"))
            .collect();
        out.push_str(&format!("  GPU busy: {}\n", busy.join(" · ")));
    }
    print!("{out}");
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().si().to_string()
}
