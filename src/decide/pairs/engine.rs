//! The pair search, pass by pass over a source: a seeded sample, spherical k-means on it,
//! the assignment of every row to its partitions, then batches of partitions that fit the
//! memory budget, each gathered (only the rows it needs) and searched exhaustively, partitions and row
//! blocks in parallel. With a shard, only a range of partitions is searched (the pairs of
//! the whole input are the union of all shards'). Writing files is the caller's job.

use std::ops::Range;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::assign::{Assigner, Memberships, Replication};
use super::kmeans::{
    spherical_kmeans, two_level_kmeans, Centroids, PartitionGroups, SampleInMemory, SampleRows,
};
use super::products::{CpuProducts, PRODUCT_SLACK};
use super::source::EmbeddingSource;
use super::within::{pairs_of_candidates, PartitionVectors};
use super::{mix, CosinePair, PairsError};
use crate::vector::{normalise, PairBlock, PairProducts};

/// Sample rows per partition for k-means (FAISS trains on 39 per list; fewer do at 8
/// iterations, and the partitions only have to be balanced, not optimal).
const SAMPLE_PER_PARTITION: usize = 32;
const KMEANS_ITERATIONS: usize = 8;
/// At most this many sample rows (8 per partition at 2M partitions, 10⁹ rows): k-means on more
/// costs more than it gains, since partitions only have to be balanced.
const MAX_SAMPLE_ROWS: usize = 16_000_000;
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
    /// Number of partitions; `None`: 2·√rows or rows / 500, whichever is more (see
    /// [`PairSearch::partitions_for`]).
    pub partitions: Option<usize>,
    /// Groups of partitions for the two-level assignment; `None`: one level up to 1,024
    /// partitions, then √partitions groups (see [`PairSearch::groups_for`]); `Some(1)`: one level.
    pub groups: Option<usize>,
    /// With groups: how many of the nearest groups each row looks into.
    pub probes: usize,
    /// The replication radius as a share of the worst-case bound √(2 − 2T); 1 finds every
    /// pair (up to float rounding).
    pub margin: f32,
    /// At most this many partitions per row besides its nearest.
    pub max_replicas: usize,
    pub seed: u64,
    /// Bytes the search may hold: the memberships (about 16 bytes per row and 8 per replica),
    /// the gathered partition vectors of one batch, and a reserve for buffers. The pairs found
    /// come on top (24 bytes each).
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
            groups: None,
            probes: DEFAULT_PROBES,
            margin: DEFAULT_MARGIN,
            max_replicas: DEFAULT_MAX_REPLICAS,
            seed: 0x5EED_D0D0,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            normalise: true,
            shard: Shard::WHOLE,
        }
    }

    /// The partition count used for `rows` rows.
    pub fn partitions_for(&self, rows: u64) -> usize {
        match self.partitions {
            Some(k) => k.max(1),
            None if rows < SINGLE_PARTITION_ROWS => 1,
            None => (((rows as f64).sqrt() * PARTITIONS_PER_SQRT_ROWS).round() as usize)
                .max((rows / ROWS_PER_PARTITION) as usize),
        }
    }

    /// The number of partition groups for `partitions` partitions (1: one level).
    pub fn groups_for(&self, partitions: usize) -> usize {
        match self.groups {
            Some(g) => g.clamp(1, partitions.max(1)),
            None if partitions <= ONE_LEVEL_PARTITIONS => 1,
            None => (partitions as f64).sqrt().ceil() as usize,
        }
    }
}

/// Defaults measured on the benchmark's embedding-like data (docs/benchmarks.md).
pub const DEFAULT_MARGIN: f32 = 0.15;
pub const DEFAULT_MAX_REPLICAS: usize = 8;
const PARTITIONS_PER_SQRT_ROWS: f64 = 2.0;
/// Beyond a million rows partitions keep about this many primary rows, so the products grow
/// linearly with the rows (k ∝ √N would make them grow as N^1.5).
const ROWS_PER_PARTITION: u64 = 500;
/// Up to this many partitions every row is scored against every centroid; above, against
/// √k group centres and the partitions of its nearest groups (cost ∝ √k instead of k).
const ONE_LEVEL_PARTITIONS: usize = 1024;
pub const DEFAULT_PROBES: usize = 8;
/// 6 GiB: with the sample, the k-means and the pairs of embedding-like data, a search stays
/// within 8 GiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 6 << 30;
/// Kept out of the gather budget for the tiles, the read window and the allocator.
const RESERVED_BYTES: u64 = 256 << 20;
/// A batch always holds at least one partition, and at least this much when the budget is
/// smaller than what the memberships take.
const MIN_GATHER_BYTES: u64 = 1 << 20;

/// What a search did, for the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PairStats {
    /// Where the within-partition products ran: `cpu` or `cuda:N`.
    pub device: String,
    pub rows: u64,
    pub dim: usize,
    pub partitions: usize,
    /// Groups of partitions (1: one level, every row scored against every centroid).
    pub groups: usize,
    pub probes: usize,
    /// The partitions this process searched: `[first, end)`.
    pub partition_range: (u32, u32),
    pub sample_rows: usize,
    /// Whether the sample was held in memory (at most half the budget) or read back from the
    /// input in batches of groups.
    pub sample_held: bool,
    /// Partitions per assigned row, primary included (1 = no replication).
    pub replication: f64,
    pub largest_partition: usize,
    pub batches: usize,
    /// Bytes of gathered vectors a batch may hold: the budget less what the search holds
    /// besides (memberships, member lists, a reserve for tiles and buffers).
    pub gather_budget_bytes: u64,
    /// Sequential passes over the input (the sample, the assignment).
    pub input_scans: usize,
    /// Batches gathered (one read of the rows each batch needs).
    pub gathers: usize,
    pub pairs: usize,
    pub seconds_sample: f64,
    pub seconds_kmeans: f64,
    pub seconds_assign: f64,
    pub seconds_gather: f64,
    /// Of `seconds_pairs`, the products that nominate candidates (on `device`).
    pub seconds_products: f64,
    pub seconds_pairs: f64,
}

/// The pairs found, sorted by (a, b), each once, and what the search did.
pub struct PairSearchReport {
    pub pairs: Vec<CosinePair>,
    pub stats: PairStats,
}

/// Finds the pairs of rows of `source` with cosine ≥ `params.min_cosine` (module comment),
/// the products on the CPU.
pub fn find_pairs(
    source: &dyn EmbeddingSource,
    params: &PairSearch,
) -> Result<PairSearchReport, PairsError> {
    find_pairs_on(source, params, &CpuProducts)
}

/// [`find_pairs`] with the within-partition products on `products` (a GPU's, say): the same
/// pairs, since every backend's candidates are checked by the same host code.
pub fn find_pairs_on(
    source: &dyn EmbeddingSource,
    params: &PairSearch,
    products: &dyn PairProducts,
) -> Result<PairSearchReport, PairsError> {
    validate(source, params)?;
    let mut stats = PairStats {
        rows: source.rows(),
        dim: source.dim(),
        device: products.device(),
        ..PairStats::default()
    };
    if stats.rows < 2 || stats.dim == 0 {
        return Ok(PairSearchReport {
            pairs: Vec::new(),
            stats,
        });
    }
    let partitions = learn_partitions(source, params, &mut stats)?;
    let range = partitions.range_of(params.shard);
    let memberships = assign_rows(
        source,
        params,
        &partitions,
        0..source.rows(),
        range.clone(),
        &mut stats,
    )?;
    drop(partitions);
    let pairs = search_partitions(source, params, &memberships, range, products, &mut stats)?;
    Ok(PairSearchReport { pairs, stats })
}

/// The partitions learnt on the sample: their centroids and, with two levels, their groups.
/// Steps 1 and 2 of the search; what the assignment needs.
pub(crate) struct Partitions {
    pub centroids: Centroids,
    pub groups: Option<PartitionGroups>,
}

impl Partitions {
    pub fn len(&self) -> usize {
        self.centroids.len()
    }

    /// The partitions `shard` searches.
    pub fn range_of(&self, shard: Shard) -> Range<u32> {
        partition_range(self.len(), shard)
    }
}

/// The partitions of `k` that `shard` searches: `[k·index/count, k·(index+1)/count)`.
pub(crate) fn partition_range(k: usize, shard: Shard) -> Range<u32> {
    let k = k as u64;
    (k * u64::from(shard.index) / u64::from(shard.count)) as u32
        ..(k * u64::from(shard.index + 1) / u64::from(shard.count)) as u32
}

/// Steps 1 and 2: a seeded sample of valid rows, and spherical k-means on it (two levels above
/// [`ONE_LEVEL_PARTITIONS`]). The sample is held in memory while it fits half the memory
/// budget; beyond, only its row numbers are kept and its rows are read again from the input in
/// batches (the same centroids either way).
pub(crate) fn learn_partitions(
    source: &dyn EmbeddingSource,
    params: &PairSearch,
    stats: &mut PairStats,
) -> Result<Partitions, PairsError> {
    let (rows, dim) = (source.rows(), source.dim());
    let mut scratch = Vec::new();
    let clock = Instant::now();
    let k_wanted = params.partitions_for(rows);
    let sample_size = (SAMPLE_PER_PARTITION * k_wanted).min(MAX_SAMPLE_ROWS) as u64;
    let chance = (sample_size as f64 / rows.max(1) as f64).min(1.0);
    let limit = (chance * u64::MAX as f64) as u64;
    let held_values = (params.memory_budget / 2 / 4) as usize;
    let mut sample = Vec::new();
    let mut sample_rows: Vec<u32> = Vec::new();
    stats.input_scans += 1;
    source.scan(&mut |first, values| {
        let values = prepared(values, dim, params.normalise, &mut scratch);
        for (i, row) in values.chunks_exact(dim).enumerate() {
            let chosen = chance >= 1.0 || mix(params.seed ^ (first + i as u64)) <= limit;
            if chosen && row.iter().all(|v| v.is_finite()) && row.iter().any(|&v| v != 0.0) {
                sample_rows.push((first + i as u64) as u32);
                if sample_rows.len() * dim <= held_values {
                    sample.extend_from_slice(row);
                } else if !sample.is_empty() {
                    sample = Vec::new();
                }
            }
        }
        Ok(())
    })?;
    let in_memory = sample_rows.len() * dim <= held_values;
    stats.sample_rows = sample_rows.len();
    stats.sample_held = in_memory;
    stats.seconds_sample = clock.elapsed().as_secs_f64();
    tracing::info!(
        "pairs: {} sample rows of {rows} in {:.1} s{}",
        stats.sample_rows,
        stats.seconds_sample,
        if in_memory {
            ""
        } else {
            " (more than half the memory budget: read again in batches)"
        }
    );

    let clock = Instant::now();
    let k = k_wanted.min(stats.sample_rows).max(1);
    let groups_wanted = params.groups_for(k);
    let from_input = SampleFromInput {
        source,
        rows: &sample_rows,
        normalise: params.normalise,
        batch_values: held_values,
    };
    let (centroids, groups) = if groups_wanted > 1 {
        let (centroids, groups) = if in_memory {
            let sample = SampleInMemory {
                values: &sample,
                dim,
            };
            two_level_kmeans(
                &sample,
                dim,
                k,
                groups_wanted,
                KMEANS_ITERATIONS,
                params.seed,
            )?
        } else {
            two_level_kmeans(
                &from_input,
                dim,
                k,
                groups_wanted,
                KMEANS_ITERATIONS,
                params.seed,
            )?
        };
        (centroids, Some(groups))
    } else {
        // One level has at most 32 sample rows per partition of at most
        // ONE_LEVEL_PARTITIONS by default: read back whole when it was not held.
        if !in_memory {
            let all: Vec<u32> = (0..sample_rows.len() as u32).collect();
            from_input.fetch(&all, &mut sample)?;
        }
        let centroids = spherical_kmeans(&sample, dim, k, KMEANS_ITERATIONS, params.seed);
        (centroids, None)
    };
    drop(sample);
    stats.partitions = centroids.len();
    stats.groups = groups.as_ref().map_or(1, |g| g.top.len());
    stats.probes = if groups.is_some() {
        params.probes.max(1)
    } else {
        0
    };
    stats.seconds_kmeans = clock.elapsed().as_secs_f64();
    tracing::info!(
        "pairs: {} partitions in {} groups by k-means in {:.1} s",
        stats.partitions,
        stats.groups,
        stats.seconds_kmeans
    );
    Ok(Partitions { centroids, groups })
}

/// Sample rows read again from the input by row number (normalised as the scan does).
struct SampleFromInput<'a> {
    source: &'a dyn EmbeddingSource,
    rows: &'a [u32],
    normalise: bool,
    batch_values: usize,
}

impl SampleRows for SampleFromInput<'_> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn fetch(&self, indices: &[u32], out: &mut Vec<f32>) -> Result<(), PairsError> {
        let rows: Vec<u32> = indices.iter().map(|&i| self.rows[i as usize]).collect();
        let dim = self.source.dim();
        out.reserve(rows.len() * dim);
        self.source.gather(&rows, &mut |_, values| {
            let at = out.len();
            out.extend_from_slice(values);
            if self.normalise {
                normalise(&mut out[at..], dim);
            }
            Ok(())
        })
    }

    fn batch_values(&self) -> usize {
        self.batch_values
    }
}

/// Step 3: the partitions of the rows `rows` (a range starting at a multiple of
/// [`CHUNK_ROWS`](super::source::CHUNK_ROWS), so that every row is assigned in the same blocks as in a whole scan), keeping
/// those with a partition in `keep`.
pub(crate) fn assign_rows(
    source: &dyn EmbeddingSource,
    params: &PairSearch,
    partitions: &Partitions,
    rows: Range<u64>,
    keep: Range<u32>,
    stats: &mut PairStats,
) -> Result<Memberships, PairsError> {
    let dim = source.dim();
    let clock = Instant::now();
    let replication = Replication::new(params.min_cosine, params.margin, params.max_replicas);
    let assigner = match &partitions.groups {
        Some(groups) => {
            Assigner::with_groups(&partitions.centroids, groups, params.probes, replication)
        }
        None => Assigner::new(&partitions.centroids, replication),
    };
    let mut memberships = Memberships::new();
    let mut scratch = Vec::new();
    stats.input_scans += 1;
    // Progress every tenth of the rows (the assignment is a long pass at 10M rows).
    let total = rows.end - rows.start;
    let mut next_report = total / 10;
    source.scan_rows(rows.clone(), &mut |first, values| {
        let values = prepared(values, dim, params.normalise, &mut scratch);
        assigner.assign(first as u32, values, keep.clone(), &mut memberships);
        let done = first + (values.len() / dim.max(1)) as u64 - rows.start;
        if done >= next_report.max(1) && done < total {
            tracing::info!(
                "pairs: {done} of {total} rows assigned in {:.1} s",
                clock.elapsed().as_secs_f64()
            );
            next_report = done + total / 10;
        }
        Ok(())
    })?;
    stats.replication =
        memberships.assigned_memberships as f64 / memberships.assigned_rows.max(1) as f64;
    stats.seconds_assign = clock.elapsed().as_secs_f64();
    tracing::info!(
        "pairs: rows assigned in {:.1} s, {:.2} partitions per row",
        stats.seconds_assign,
        stats.replication
    );
    Ok(memberships)
}

/// Steps 4 and 5: every pair within the partitions `range`, from the memberships of the rows
/// that touch them, sorted by (a, b).
pub(crate) fn search_partitions(
    source: &dyn EmbeddingSource,
    params: &PairSearch,
    memberships: &Memberships,
    range: Range<u32>,
    products: &dyn PairProducts,
    stats: &mut PairStats,
) -> Result<Vec<CosinePair>, PairsError> {
    let dim = source.dim();
    stats.partition_range = (range.start, range.end);

    // 4. Members of each partition in range: its primary rows, then its replicas, each
    // ascending by row.
    let width = (range.end - range.start) as usize;
    let mut primaries: Vec<Vec<u32>> = vec![Vec::new(); width];
    let mut replicas: Vec<Vec<u32>> = vec![Vec::new(); width];
    for i in 0..memberships.len() {
        let primary = memberships.primary[i];
        for &p in memberships.list(i) {
            if range.contains(&p) {
                let slot = (p - range.start) as usize;
                if p == primary {
                    primaries[slot].push(memberships.rows[i]);
                } else {
                    replicas[slot].push(memberships.rows[i]);
                }
            }
        }
    }
    let sizes: Vec<usize> = (0..width)
        .map(|p| primaries[p].len() + replicas[p].len())
        .collect();
    stats.largest_partition = sizes.iter().copied().max().unwrap_or(0);

    // 5. Batches of consecutive partitions whose gathered vectors fit in what the budget
    // leaves after the memberships and member lists.
    let row_bytes = (dim * 4) as u64;
    let held = memberships.bytes() + 4 * sizes.iter().sum::<usize>() as u64;
    let gather_budget = params
        .memory_budget
        .saturating_sub(held + RESERVED_BYTES)
        .max(MIN_GATHER_BYTES);
    stats.gather_budget_bytes = gather_budget;
    let mut batches: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (p, &size) in sizes.iter().enumerate() {
        let b = size as u64 * row_bytes;
        if p > start && bytes + b > gather_budget {
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
    let mut gathers = 0;
    let mut row_scratch = vec![0f32; dim];
    // One buffer for the gathered vectors of every batch, as large as the largest batch,
    // allocated once. With one allocation per partition and batch (about 900 of 3–10 MB a
    // batch at 10M rows) glibc's heap could not always reuse the last batch's memory: three
    // identical 10M searches peaked at 6.5, 9.9 and 11.2 GiB for a 6 GiB budget; with this
    // buffer, 6.5 GiB (docs/benchmarks.md). Allocated zeroed, so untouched pages cost nothing;
    // each batch writes the rows it uses before reading them.
    let largest_batch = batches
        .iter()
        .map(|b| sizes[b.clone()].iter().sum::<usize>())
        .max()
        .unwrap_or(0);
    let mut gathered = vec![0f32; largest_batch * dim];
    let batch_count = batches.len();
    for (batch_index, batch) in batches.into_iter().enumerate() {
        let clock = Instant::now();
        // Where each partition's rows start in `gathered`, in rows.
        let mut starts = Vec::with_capacity(batch.len() + 1);
        let mut at = 0;
        for p in batch.clone() {
            starts.push(at);
            at += sizes[p];
        }
        starts.push(at);
        let batch_rows = at;
        let members: Vec<(Vec<u32>, usize)> = batch
            .clone()
            .map(|p| {
                let mut rows = std::mem::take(&mut primaries[p]);
                let primary_count = rows.len();
                rows.append(&mut std::mem::take(&mut replicas[p]));
                (rows, primary_count)
            })
            .collect();
        let batch_first = range.start + batch.start as u32;
        let batch_end = range.start + batch.end as u32;
        let in_batch = |p: u32| p >= batch_first && p < batch_end;
        // The rows this batch needs (ascending), and their index in `memberships`.
        let needed: Vec<u32> = (0..memberships.len() as u32)
            .filter(|&i| memberships.list(i as usize).iter().any(|&p| in_batch(p)))
            .collect();
        let needed_rows: Vec<u32> = needed
            .iter()
            .map(|&i| memberships.rows[i as usize])
            .collect();
        // Where the next row goes in each partition: primaries from its start, replicas
        // after them.
        let mut next_primary: Vec<usize> = starts[..members.len()].to_vec();
        let mut next_replica: Vec<usize> = members
            .iter()
            .zip(&starts)
            .map(|((_, primaries), start)| start + primaries)
            .collect();
        let buffer = &mut gathered[..batch_rows * dim];
        source.gather(&needed_rows, &mut |j, values| {
            row_scratch.copy_from_slice(values);
            if params.normalise {
                normalise(&mut row_scratch, dim);
            }
            let i = needed[j] as usize;
            let primary = memberships.primary[i];
            for &p in memberships.list(i) {
                if in_batch(p) {
                    let slot = (p - batch_first) as usize;
                    let next = if p == primary {
                        &mut next_primary[slot]
                    } else {
                        &mut next_replica[slot]
                    };
                    let at = *next;
                    buffer[at * dim..(at + 1) * dim].copy_from_slice(&row_scratch);
                    *next += 1;
                }
            }
            Ok(())
        })?;
        let buffer = &gathered[..batch_rows * dim];
        let parts: Vec<PartitionVectors> = members
            .into_iter()
            .enumerate()
            .map(|(slot, (rows, primaries))| PartitionVectors {
                partition: batch_first + slot as u32,
                rows,
                primaries,
                vectors: &buffer[starts[slot] * dim..starts[slot + 1] * dim],
            })
            .collect();
        gathers += 1;
        stats.seconds_gather += clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        let blocks: Vec<PairBlock> = parts.iter().map(PartitionVectors::block).collect();
        let candidates = products.candidates(&blocks, dim, params.min_cosine - PRODUCT_SLACK);
        stats.seconds_products += clock.elapsed().as_secs_f64();
        let found: Vec<Vec<CosinePair>> = parts
            .par_iter()
            .zip(candidates.par_iter())
            .map(|(part, candidates)| {
                let mut out = Vec::new();
                pairs_of_candidates(
                    part,
                    candidates,
                    dim,
                    params.min_cosine,
                    memberships,
                    &mut out,
                );
                out
            })
            .collect();
        pairs.extend(found.into_iter().flatten());
        stats.seconds_pairs += clock.elapsed().as_secs_f64();
        tracing::info!(
            "pairs: batch {}/{batch_count} ({} partitions, {} rows gathered): {} pairs so far; {:.1} s gathering, {:.1} s products in all",
            batch_index + 1,
            batch.len(),
            needed_rows.len(),
            pairs.len(),
            stats.seconds_gather,
            stats.seconds_pairs
        );
    }
    pairs.sort_unstable_by_key(|p| (p.a, p.b));
    stats.pairs = pairs.len();
    stats.gathers = gathers;
    // Again at the end: a GPU backend says here if a batch fell back to the CPU.
    stats.device = products.device();
    Ok(pairs)
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
    if params.probes == 0 {
        return bad("probes", "0".into(), "at least 1 group");
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
