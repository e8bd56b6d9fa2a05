//! `mmcurate dedup`: all pairs of embeddings at or above a cosine threshold in .npy or Parquet
//! files a user already has, their groups and a JSON summary; or one shard of that search
//! (`--num-shards N --shard-index I`), or the merge of all shards' pairs (`--merge`); or one
//! step of a search split into tasks (`--step partitions|assign|search`, see
//! `decide::pairs::plan`). The search is `decide::pairs`'; this file reads arguments, picks the
//! reader and writes the output folder.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::decide::pairs::engine::{
    assign_rows, learn_partitions, search_partitions, DEFAULT_MARGIN, DEFAULT_MAX_REPLICAS,
    DEFAULT_MEMORY_BUDGET, DEFAULT_PROBES,
};
use crate::decide::pairs::files::{
    groups_of, merge_shards, rows_in_pairs, shard_pairs_path, write_groups_with_ids, write_pairs,
    write_pairs_with_ids, GroupRow, RowIds,
};
use crate::decide::pairs::npy::NpyFiles;
use crate::decide::pairs::parquet_input::ParquetEmbeddings;
use crate::decide::pairs::plan::{
    plan_dir, read_memberships, read_plan, read_plan_info, row_range, write_memberships, write_plan,
};
use crate::decide::pairs::recall::{estimate_recall, RecallEstimate};
use crate::decide::pairs::{
    find_pairs_on, CpuProducts, EmbeddingSource, PairSearch, PairSearchReport, PairStats, Shard,
};
use crate::gpu::pair_products::{select_pair_products, SelectedProducts};
use crate::gpu::{DeviceRequest, GpuError};

#[derive(clap::Args, Debug)]
pub struct DedupArgs {
    /// A .npy file (float32 or float16, rows × dim), a folder of .npy files (name order), or a
    /// Parquet file or folder with a list-of-float column.
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// Pairs with cosine similarity at or above this, in (0, 1].
    #[arg(long)]
    min_cosine: Option<f32>,
    /// Folder for pairs.parquet, groups.parquet and summary.json (shards/ for shard files).
    #[arg(long)]
    output: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where the within-partition products run: `auto` (a GPU when one answers, else the CPU),
    /// `cpu`, `cuda` or `cuda:N`. The pairs are the same on either.
    #[arg(long, default_value = "auto")]
    device: String,
    /// The Parquet column holding the embeddings.
    #[arg(long, default_value = "embedding")]
    column: String,
    /// A Parquet column of row ids (strings or integers), written beside the row numbers:
    /// `a_id`, `b_id` in pairs.parquet, `id`, `group_id` in groups.parquet. With --merge,
    /// --embeddings must name the same input.
    #[arg(long)]
    id_column: Option<String>,
    /// Number of partitions (default 2·√rows or rows / 500, whichever is more).
    #[arg(long)]
    partitions: Option<usize>,
    /// Groups of partitions for the two-level assignment (default: one level up to 1,024
    /// partitions, then √partitions groups; 1: one level).
    #[arg(long)]
    groups: Option<usize>,
    /// With groups: how many of its nearest groups each row looks into.
    #[arg(long, default_value_t = DEFAULT_PROBES)]
    probes: usize,
    /// Replication radius as a share of the worst-case bound; 1 finds every pair.
    #[arg(long, default_value_t = DEFAULT_MARGIN)]
    margin: f32,
    /// At most this many partitions per vector besides its nearest.
    #[arg(long, default_value_t = DEFAULT_MAX_REPLICAS)]
    max_replicas: usize,
    /// Memory the search may hold, in GiB: the memberships (about 16 bytes per row and 8 per
    /// replica) and one batch of gathered partition vectors; the pairs found come on top (24
    /// bytes each).
    #[arg(long, default_value_t = DEFAULT_MEMORY_BUDGET as f64 / f64::from(1u32 << 30))]
    memory_budget_gib: f64,
    /// Seed of the k-means sample.
    #[arg(long, default_value_t = 0x5EED_D0D0)]
    seed: u64,
    /// Rows searched exhaustively to estimate recall (0: no estimate).
    #[arg(long, default_value_t = 0)]
    estimate_recall: usize,
    /// Split the partitions into this many shards, each run as its own process.
    #[arg(long, default_value_t = 1)]
    num_shards: u32,
    /// The shard this process searches, 0-based.
    #[arg(long, default_value_t = 0)]
    shard_index: u32,
    /// Merge the pair files of all --num-shards shards under --output into pairs.parquet and
    /// groups.parquet.
    #[arg(long)]
    merge: bool,
    /// Which part of the search this process runs: `all` (default; with --num-shards, every
    /// shard repeats the sample, k-means and assignment), or a search split into tasks:
    /// `partitions` once (sample and k-means, written under OUTPUT/state/partitions/), then
    /// `assign` on each row range I of N, then `search` on each partition range I of N (the
    /// same N), then --merge.
    #[arg(long, value_enum, default_value_t = Step::All)]
    step: Step,
}

/// A part of the search (`--step`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Step {
    All,
    Partitions,
    Assign,
    Search,
}

impl Step {
    /// The name `--step` takes (clap's).
    fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

#[derive(Serialize)]
struct Summary {
    command: &'static str,
    step: Step,
    input: Option<String>,
    min_cosine: Option<f32>,
    id_column: Option<String>,
    threads: usize,
    /// Where the products ran and why, e.g. `cpu (no CUDA driver library libcuda.so found)`.
    device: Option<String>,
    parameters: Option<PairSearch>,
    search: Option<PairStats>,
    recall_estimate: Option<RecallEstimate>,
    pairs: usize,
    groups: usize,
    rows_in_groups: usize,
    rows_dropped: usize,
    files: Vec<String>,
    seconds_write: f64,
    seconds_total: f64,
}

/// Runs the command; what it prints goes to stdout.
pub fn run(args: &DedupArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("--threads 0: must be at least 1");
    }
    let Some(device_request) = DeviceRequest::parse(&args.device) else {
        bail!("--device {}: {}", args.device, crate::config::DEVICE_VALUES);
    };
    if args.num_shards == 0 || args.shard_index >= args.num_shards {
        bail!(
            "--shard-index {} of --num-shards {}: the index must be below the count, which must be at least 1",
            args.shard_index,
            args.num_shards
        );
    }
    // The input (and its id column) is checked before any work.
    let input = match &args.embeddings {
        Some(path) => Some(Input::open(path, &args.column)?),
        None => None,
    };
    if let Some(column) = &args.id_column {
        match &input {
            Some(Input::Parquet(p)) => p.check_id_column(column)?,
            Some(Input::Npy(_)) => bail!(
                "--id-column {column}: ids are read from Parquet input; .npy rows are named by their row numbers"
            ),
            None => bail!("--id-column {column} with --merge: give --embeddings too, to read the ids from"),
        }
    }
    if args.merge && args.step != Step::All {
        bail!(
            "--merge with --step {}: the merge is a step of its own; run it without --step after every search task",
            args.step.name()
        );
    }
    // The device is chosen before anything is written: a GPU asked for and missing stops here.
    let selected = if args.merge || matches!(args.step, Step::Partitions | Step::Assign) {
        None
    } else {
        Some(products_for(&args.device, device_request)?)
    };
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    if args.merge {
        let pairs = merge_shards(&args.output, args.num_shards)?;
        let ids = read_ids(args, input.as_ref(), &pairs)?;
        return finish(args, threads, started, None, None, None, pairs, ids, None);
    }
    let (Some(path), Some(input)) = (&args.embeddings, &input) else {
        bail!("--embeddings is required (unless --merge)");
    };
    let Some(min_cosine) = args.min_cosine else {
        bail!("--min-cosine is required (unless --merge)");
    };
    if args.step != Step::All && args.estimate_recall > 0 {
        bail!(
            "--estimate-recall {} with --step {}: estimate recall with the whole search (--step all)",
            args.estimate_recall,
            args.step.name()
        );
    }
    let source = input.source();
    let mut params = PairSearch::new(min_cosine);
    params.partitions = args.partitions;
    params.groups = args.groups;
    params.probes = args.probes;
    params.margin = args.margin;
    params.max_replicas = args.max_replicas;
    params.seed = args.seed;
    params.memory_budget = (args.memory_budget_gib * f64::from(1u32 << 30)) as u64;
    params.shard = Shard {
        count: args.num_shards,
        index: args.shard_index,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the worker threads")?;
    if matches!(args.step, Step::Partitions | Step::Assign) {
        return pool.install(|| run_step(args, threads, started, path, source, &params));
    }
    let Some(SelectedProducts {
        products,
        description: device,
    }) = selected
    else {
        bail!("no device was chosen for the search");
    };
    tracing::info!("pairs: products on {device}");
    let report = pool.install(|| {
        if args.step == Step::Search {
            search_step(source, &params, &args.output, products.as_ref())
        } else {
            Ok(find_pairs_on(source, &params, products.as_ref())?)
        }
    })?;
    let recall = if args.estimate_recall > 0 {
        Some(pool.install(|| {
            estimate_recall(
                source,
                true,
                min_cosine,
                &report.pairs,
                args.estimate_recall,
                args.seed,
            )
        })?)
    } else {
        None
    };
    // A shard's pairs carry no ids: the merge reads them once for all shards.
    let ids = if args.num_shards > 1 {
        None
    } else {
        read_ids(args, Some(input), &report.pairs)?
    };
    finish(
        args,
        threads,
        started,
        Some((path, params)),
        Some(report.stats),
        recall,
        report.pairs,
        ids,
        Some(device),
    )
}

/// `--step search`: the memberships of this shard's partitions from every row range's file,
/// then the search of its partitions.
fn search_step(
    source: &dyn EmbeddingSource,
    params: &PairSearch,
    output: &Path,
    products: &dyn crate::vector::PairProducts,
) -> anyhow::Result<PairSearchReport> {
    let (rows, dim) = (source.rows(), source.dim());
    let dir = plan_dir(output);
    let plan = read_plan_info(&dir, params, rows, dim)?;
    let range = plan.range_of(params.shard);
    let memberships = read_memberships(&dir, &plan, params.shard, rows)?;
    let mut stats = PairStats {
        rows,
        dim,
        device: products.device(),
        partitions: plan.partitions,
        groups: plan.groups,
        sample_rows: plan.sample_rows,
        sample_held: plan.sample_held,
        replication: memberships.assigned_memberships as f64
            / memberships.assigned_rows.max(1) as f64,
        ..PairStats::default()
    };
    let pairs = search_partitions(source, params, &memberships, range, products, &mut stats)?;
    Ok(PairSearchReport { pairs, stats })
}

/// `--step partitions` and `--step assign`: their files under OUTPUT/state/partitions/ and a
/// summary beside them.
fn run_step(
    args: &DedupArgs,
    threads: usize,
    started: Instant,
    input: &Path,
    source: &dyn EmbeddingSource,
    params: &PairSearch,
) -> anyhow::Result<()> {
    let (rows, dim) = (source.rows(), source.dim());
    let dir = plan_dir(&args.output);
    let mut stats = PairStats {
        rows,
        dim,
        ..PairStats::default()
    };
    let (file, summary_path) = if args.step == Step::Partitions {
        if rows < 2 || dim == 0 {
            bail!(
                "{}: {rows} rows of {dim} values: nothing to partition",
                input.display()
            );
        }
        let partitions = learn_partitions(source, params, &mut stats)?;
        write_plan(&dir, params, rows, dim, &partitions, &stats)?;
        (dir.join("plan.json"), dir.join("plan-summary.json"))
    } else {
        let plan = read_plan(&dir, params, rows, dim)?;
        stats.partitions = plan.info.partitions;
        stats.groups = plan.info.groups;
        stats.sample_rows = plan.info.sample_rows;
        stats.sample_held = plan.info.sample_held;
        let range = row_range(rows, params.shard);
        let all = 0..plan.partitions.len() as u32;
        let memberships = assign_rows(
            source,
            params,
            &plan.partitions,
            range.clone(),
            all,
            &mut stats,
        )?;
        let path = write_memberships(&dir, &plan.info, params.shard, range, &memberships)?;
        let summary = path.with_extension("json");
        (path, summary)
    };
    let summary = Summary {
        command: "dedup",
        step: args.step,
        input: Some(input.display().to_string()),
        min_cosine: Some(params.min_cosine),
        id_column: None,
        threads,
        device: None,
        parameters: Some(*params),
        search: Some(stats),
        recall_estimate: None,
        pairs: 0,
        groups: 0,
        rows_in_groups: 0,
        rows_dropped: 0,
        files: vec![file.display().to_string()],
        seconds_write: 0.0,
        seconds_total: started.elapsed().as_secs_f64(),
    };
    write_summary(&summary_path, &summary)
}

/// The products `--device` asks for; a GPU that cannot be used is an error saying what to do
/// (in this command's terms: `select` speaks of `run.device`).
fn products_for(value: &str, request: DeviceRequest) -> anyhow::Result<SelectedProducts> {
    match select_pair_products(request, std::sync::Arc::new(CpuProducts)) {
        Ok(selected) => Ok(selected),
        Err(GpuError::DeviceUnavailable { problem, .. }) => bail!(
            "--device {value}: {problem}: use a machine with a usable GPU, or --device cpu (or auto, which uses a GPU only when one answers)"
        ),
        Err(e) => bail!("--device {value}: {e}"),
    }
}

/// The ids of the rows in `pairs`, when --id-column asks for them.
fn read_ids(
    args: &DedupArgs,
    input: Option<&Input>,
    pairs: &[crate::decide::pairs::CosinePair],
) -> anyhow::Result<Option<RowIds>> {
    match (&args.id_column, input) {
        (Some(column), Some(Input::Parquet(p))) => {
            Ok(Some(p.read_ids(column, &rows_in_pairs(pairs))?))
        }
        _ => Ok(None),
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    args: &DedupArgs,
    threads: usize,
    started: Instant,
    input: Option<(&PathBuf, PairSearch)>,
    stats: Option<PairStats>,
    recall: Option<RecallEstimate>,
    pairs: Vec<crate::decide::pairs::CosinePair>,
    ids: Option<RowIds>,
    device: Option<String>,
) -> anyhow::Result<()> {
    let clock = Instant::now();
    let sharded = args.num_shards > 1 && !args.merge;
    let mut files = Vec::new();
    let mut groups: Vec<GroupRow> = Vec::new();
    let summary_path;
    if sharded {
        let path = shard_pairs_path(&args.output, args.shard_index, args.num_shards);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_pairs(&path, &pairs)?;
        files.push(path.display().to_string());
        summary_path = path.with_extension("json");
    } else {
        let path = args.output.join("pairs.parquet");
        write_pairs_with_ids(&path, &pairs, ids.as_ref())?;
        files.push(path.display().to_string());
        groups = groups_of(&pairs);
        let path = args.output.join("groups.parquet");
        write_groups_with_ids(&path, &groups, ids.as_ref())?;
        files.push(path.display().to_string());
        summary_path = args.output.join("summary.json");
    }
    let group_count = groups.iter().filter(|g| g.kept).count();
    let summary = Summary {
        command: if args.merge { "dedup --merge" } else { "dedup" },
        step: args.step,
        input: input.map(|(p, _)| p.display().to_string()),
        min_cosine: input.map(|(_, p)| p.min_cosine),
        id_column: ids.as_ref().and(args.id_column.clone()),
        threads,
        device,
        parameters: input.map(|(_, p)| p),
        search: stats,
        recall_estimate: recall,
        pairs: pairs.len(),
        groups: group_count,
        rows_in_groups: groups.len(),
        rows_dropped: groups.len() - group_count,
        files,
        seconds_write: clock.elapsed().as_secs_f64(),
        seconds_total: started.elapsed().as_secs_f64(),
    };
    write_summary(&summary_path, &summary)
}

/// Writes `summary` to `path` and prints it.
fn write_summary(path: &Path, summary: &Summary) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(summary)?;
    std::fs::write(path, format!("{json}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{json}");
    Ok(())
}

/// The input files.
enum Input {
    Npy(NpyFiles),
    Parquet(ParquetEmbeddings),
}

impl Input {
    /// A reader for `path`: .npy files or Parquet, by extension (a folder by what it holds).
    fn open(path: &Path, column: &str) -> anyhow::Result<Input> {
        let has = |ext: &str| -> bool {
            std::fs::read_dir(path).is_ok_and(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.path().extension().is_some_and(|x| x == ext))
            })
        };
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let npy = if path.is_dir() {
            if has("npy") {
                true
            } else if has("parquet") {
                false
            } else {
                bail!(
                    "{}: no .npy or .parquet files in this folder",
                    path.display()
                );
            }
        } else {
            match extension {
                "npy" => true,
                "parquet" => false,
                _ => bail!(
                    "{}: embeddings must be a .npy or .parquet file or a folder of them",
                    path.display()
                ),
            }
        };
        Ok(if npy {
            Input::Npy(NpyFiles::open(path)?)
        } else {
            Input::Parquet(ParquetEmbeddings::open(path, column)?)
        })
    }

    fn source(&self) -> &dyn EmbeddingSource {
        match self {
            Input::Npy(n) => n,
            Input::Parquet(p) => p,
        }
    }
}
