//! The pair search, pass by pass over a source: a seeded sample, spherical k-means on it,
//! the assignment of every row to its partitions, then batches of partitions that fit the
//! memory budget, each gathered in one scan and searched exhaustively, partitions and row
//! blocks in parallel. With a shard, only a range of partitions is searched (the pairs of
//! the whole input are the union of all shards'). Writing files is the caller's job.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::assign::{Assigner, Memberships, Replication};
use super::kmeans::spherical_kmeans;
use super::source::EmbeddingSource;
use super::within::{pairs_from_block, PartitionVectors};
use super::{mix, CosinePair, PairsError};
use crate::vector::normalise;

/// Sample rows per partition for k-means (FAISS trains on 39 per list; fewer do at 8
/// iterations, and the partitions only have to be balanced, not optimal).
const SAMPLE_PER_PARTITION: usize = 32;
const KMEANS_ITERATIONS: usize = 8;
/// Below this many rows a single partition (one exhaustive product) is fastest.
const SINGLE_PARTITION_ROWS: u64 = 4096;

/// Which share of the partitions a process searches: partitions `[k·index/count,
/// k·(index+1)/count)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub count: u32,
    pub index: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { count: 1, index: 0 };
}

/// The search's parameters. [`PairSearch::new`] gives the defaults.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PairSearch {
    /// Pairs with cosine at or above this, in (0, 1].
    pub min_cosine: f32,
    /// Number of partitions; `None`: about 2·√rows (see [`PairSearch::partitions_for`]).
    pub partitions: Option<usize>,
    /// The replication radius as a share of the worst-case bound √(2 − 2T); 1 finds every
    /// pair (up to float rounding).
    pub margin: f32,
    /// At most this many partitions per row besides its nearest.
    pub max_replicas: usize,
    pub seed: u64,
    /// Bytes of gathered partition vectors held at once.
    pub memory_budget: u64,
    /// Normalise rows to unit length as they are read (off for rows already unit).
    pub normalise: bool,
    pub shard: Shard,
}

impl PairSearch {
    pub fn new(min_cosine: f32) -> PairSearch {
        PairSearch {
            min_cosine,
            partitions: None,
            margin: DEFAULT_MARGIN,
            max_replicas: DEFAULT_MAX_REPLICAS,
            seed: 0x5EED_D0D0,
            memory_budget: 4 << 30,
            normalise: true,
            shard: Shard::WHOLE,
        }
    }

    /// The partition count used for `rows` rows.
    pub fn partitions_for(&self, rows: u64) -> usize {
        match self.partitions {
            Some(k) => k.max(1),
            None if rows < SINGLE_PARTITION_ROWS => 1,
            None => ((rows as f64).sqrt() * PARTITIONS_PER_SQRT_ROWS).round() as usize,
        }
    }
}

/// Defaults measured on the benchmark's embedding-like data (docs/benchmarks.md).
pub const DEFAULT_MARGIN: f32 = 0.15;
pub const DEFAULT_MAX_REPLICAS: usize = 8;
const PARTITIONS_PER_SQRT_ROWS: f64 = 2.0;

/// What a search did, for the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PairStats {
    pub rows: u64,
    pub dim: usize,
    pub partitions: usize,
    /// The partitions this process searched: `[first, end)`.
    pub partition_range: (u32, u32),
    pub sample_rows: usize,
    /// Partitions per assigned row, primary included (1 = no replication).
    pub replication: f64,
    pub largest_partition: usize,
    pub batches: usize,
    pub input_scans: usize,
    pub pairs: usize,
    pub seconds_sample: f64,
    pub seconds_kmeans: f64,
    pub seconds_assign: f64,
    pub seconds_gather: f64,
    pub seconds_pairs: f64,
}

/// The pairs found, sorted by (a, b), each once, and what the search did.
pub struct PairSearchReport {
    pub pairs: Vec<CosinePair>,
    pub stats: PairStats,
}

/// Finds the pairs of rows of `source` with cosine ≥ `params.min_cosine` (module comment).
pub fn find_pairs(
    source: &dyn EmbeddingSource,
    params: &PairSearch,
) -> Result<PairSearchReport, PairsError> {
    validate(source, params)?;
    let (rows, dim) = (source.rows(), source.dim());
    let mut stats = PairStats {
        rows,
        dim,
        ..PairStats::default()
    };
    if rows < 2 || dim == 0 {
        return Ok(PairSearchReport {
            pairs: Vec::new(),
            stats,
        });
    }
    let mut scratch = Vec::new();
    let mut scans = 0;

    // 1. A seeded sample of valid rows.
    let clock = Instant::now();
    let k_wanted = params.partitions_for(rows);
    let sample_size = (SAMPLE_PER_PARTITION * k_wanted) as u64;
    let chance = (sample_size as f64 / rows as f64).min(1.0);
    let limit = (chance * u64::MAX as f64) as u64;
    let mut sample = Vec::new();
    scans += 1;
    source.scan(&mut |first, values| {
        let values = prepared(values, dim, params.normalise, &mut scratch);
        for (i, row) in values.chunks_exact(dim).enumerate() {
            let chosen = chance >= 1.0 || mix(params.seed ^ (first + i as u64)) <= limit;
            if chosen && row.iter().all(|v| v.is_finite()) && row.iter().any(|&v| v != 0.0) {
                sample.extend_from_slice(row);
            }
        }
        Ok(())
    })?;
    stats.sample_rows = sample.len() / dim;
    stats.seconds_sample = clock.elapsed().as_secs_f64();

    // 2. Partitions.
    let clock = Instant::now();
    let k = k_wanted.min(stats.sample_rows).max(1);
    let centroids = spherical_kmeans(&sample, dim, k, KMEANS_ITERATIONS, params.seed);
    drop(sample);
    stats.partitions = k;
    stats.seconds_kmeans = clock.elapsed().as_secs_f64();
    let shard = params.shard;
    let range = (k as u64 * u64::from(shard.index) / u64::from(shard.count)) as u32
        ..(k as u64 * u64::from(shard.index + 1) / u64::from(shard.count)) as u32;
    stats.partition_range = (range.start, range.end);

    // 3. Every row's partitions; only rows touching this shard's range are kept.
    let clock = Instant::now();
    let replication = Replication::new(params.min_cosine, params.margin, params.max_replicas);
    let assigner = Assigner::new(&centroids, replication);
    let mut memberships = Memberships::new();
    scans += 1;
    source.scan(&mut |first, values| {
        let values = prepared(values, dim, params.normalise, &mut scratch);
        assigner.assign(first as u32, values, range.clone(), &mut memberships);
        Ok(())
    })?;
    drop(assigner);
    stats.replication =
        memberships.assigned_memberships as f64 / memberships.assigned_rows.max(1) as f64;
    stats.seconds_assign = clock.elapsed().as_secs_f64();

    // 4. Members of each partition in range, ascending by row.
    let width = (range.end - range.start) as usize;
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); width];
    for i in 0..memberships.len() {
        for &p in memberships.list(i) {
            if range.contains(&p) {
                members[(p - range.start) as usize].push(memberships.rows[i]);
            }
        }
    }
    stats.largest_partition = members.iter().map(Vec::len).max().unwrap_or(0);

    // 5. Batches of consecutive partitions within the memory budget.
    let row_bytes = (dim * 4) as u64;
    let mut batches: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (p, m) in members.iter().enumerate() {
        let b = m.len() as u64 * row_bytes;
        if p > start && bytes + b > params.memory_budget {
            batches.push(start..p);
            start = p;
            bytes = 0;
        }
        bytes += b;
    }
    if start < width {
        batches.push(start..width);
    }
    stats.batches = batches.len();

    let mut pairs = Vec::new();
    for batch in batches {
        let clock = Instant::now();
        let mut parts: Vec<PartitionVectors> = batch
            .clone()
            .map(|p| {
                let rows = std::mem::take(&mut members[p]);
                let vectors = vec![0f32; rows.len() * dim];
                PartitionVectors {
                    partition: range.start + p as u32,
                    rows,
                    vectors,
                }
            })
            .collect();
        let mut filled = vec![0usize; parts.len()];
        let batch_first = range.start + batch.start as u32;
        let batch_end = range.start + batch.end as u32;
        let mut next = 0usize;
        scans += 1;
        source.scan(&mut |first, values| {
            let values = prepared(values, dim, params.normalise, &mut scratch);
            let end = first + (values.len() / dim) as u64;
            while next < memberships.len() && u64::from(memberships.rows[next]) < end {
                let row = u64::from(memberships.rows[next]);
                let local = (row - first) as usize;
                let vector = &values[local * dim..(local + 1) * dim];
                for &p in memberships.list(next) {
                    if p >= batch_first && p < batch_end {
                        let slot = (p - batch_first) as usize;
                        let at = filled[slot];
                        parts[slot].vectors[at * dim..(at + 1) * dim].copy_from_slice(vector);
                        filled[slot] += 1;
                    }
                }
                next += 1;
            }
            Ok(())
        })?;
        stats.seconds_gather += clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        let tasks: Vec<(usize, usize)> = parts
            .iter()
            .enumerate()
            .flat_map(|(i, part)| (0..part.blocks()).map(move |b| (i, b)))
            .collect();
        let found: Vec<Vec<CosinePair>> = tasks
            .into_par_iter()
            .map(|(i, block)| {
                let mut out = Vec::new();
                pairs_from_block(
                    &parts[i],
                    block,
                    dim,
                    params.min_cosine,
                    &memberships,
                    &mut out,
                );
                out
            })
            .collect();
        pairs.extend(found.into_iter().flatten());
        stats.seconds_pairs += clock.elapsed().as_secs_f64();
    }
    pairs.sort_unstable_by_key(|p| (p.a, p.b));
    stats.pairs = pairs.len();
    stats.input_scans = scans;
    Ok(PairSearchReport { pairs, stats })
}

/// The chunk as the search uses it: normalised into `scratch` when asked.
fn prepared<'a>(
    values: &'a [f32],
    dim: usize,
    normalise_rows: bool,
    scratch: &'a mut Vec<f32>,
) -> &'a [f32] {
    if !normalise_rows {
        return values;
    }
    scratch.clear();
    scratch.extend_from_slice(values);
    normalise(scratch, dim);
    scratch
}

fn validate(source: &dyn EmbeddingSource, params: &PairSearch) -> Result<(), PairsError> {
    let bad = |name: &'static str, value: String, allowed: &'static str| {
        Err(PairsError::Parameter {
            name,
            value,
            allowed,
        })
    };
    if !(params.min_cosine > 0.0 && params.min_cosine <= 1.0) {
        return bad(
            "min_cosine",
            params.min_cosine.to_string(),
            "a cosine in (0, 1]",
        );
    }
    if !(params.margin > 0.0 && params.margin <= 1.0) {
        return bad("margin", params.margin.to_string(), "a share in (0, 1]");
    }
    if params.shard.count == 0 || params.shard.index >= params.shard.count {
        return bad(
            "shard",
            format!("{} of {}", params.shard.index, params.shard.count),
            "an index below a count of at least 1",
        );
    }
    if source.rows() >= u64::from(u32::MAX) {
        return bad(
            "rows",
            source.rows().to_string(),
            "fewer than 2^32 - 1 rows per search (split the input and merge)",
        );
    }
    Ok(())
}
