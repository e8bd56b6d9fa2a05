//! Spherical k-means on a sample of unit vectors: the partition centroids of the pair search.
//! Seeded and deterministic (the same centroids on any thread count: assignment runs in fixed
//! blocks, sums are taken in sample order in f64). It does not assign the whole input; that is
//! `assign`'s job, with the replication bound.

use rayon::prelude::*;

use super::tile::dot_products;
use super::{mix, PairsError};

/// Rows per block when scoring against the centroids.
pub(crate) const BLOCK_ROWS: usize = 256;

/// Unit centroids, row-major, and their squared norms (1 up to rounding; kept exact so that
/// "nearest" and the bisector bound use the same numbers).
#[derive(Debug, Clone)]
pub(crate) struct Centroids {
    pub dim: usize,
    pub vectors: Vec<f32>,
    pub squared_norms: Vec<f32>,
}

impl Centroids {
    pub fn from_vectors(vectors: Vec<f32>, dim: usize) -> Centroids {
        let squared_norms = vectors
            .chunks_exact(dim)
            .map(|c| c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() as f32)
            .collect();
        Centroids {
            dim,
            vectors,
            squared_norms,
        }
    }

    pub fn len(&self) -> usize {
        self.squared_norms.len()
    }

    pub fn row(&self, j: usize) -> &[f32] {
        &self.vectors[j * self.dim..(j + 1) * self.dim]
    }

    /// The nearest centroid (Euclidean; the lowest index on ties) of each row of `rows`.
    pub fn nearest(&self, rows: &[f32]) -> Vec<u32> {
        let k = self.len();
        rows.par_chunks(BLOCK_ROWS * self.dim)
            .flat_map_iter(|block| {
                let m = block.len() / self.dim;
                let mut dots = vec![0f32; m * k];
                dot_products(block, &self.vectors, self.dim, &mut dots);
                (0..m)
                    .map(|i| self.nearest_of(&dots[i * k..(i + 1) * k]))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Score of centroid j for a row with dot product `dot`: `2 x·c − |c|²`, which orders the
    /// centroids as `−|x − c|²` does.
    #[inline]
    pub fn score(&self, j: usize, dot: f32) -> f32 {
        2.0 * dot - self.squared_norms[j]
    }

    /// The index of the highest score among a row's dot products (the lowest index on ties).
    pub fn nearest_of(&self, dots: &[f32]) -> u32 {
        let mut best = 0;
        let mut best_score = f32::NEG_INFINITY;
        for (j, &d) in dots.iter().enumerate() {
            let s = self.score(j, d);
            if s > best_score {
                best = j;
                best_score = s;
            }
        }
        best as u32
    }
}

/// `k` centroids learnt from `sample` (unit rows, row-major) in `iterations` rounds of
/// spherical k-means, starting from `k` sample rows chosen by `seed`. A centroid that loses all
/// its rows keeps its place.
pub(crate) fn spherical_kmeans(
    sample: &[f32],
    dim: usize,
    k: usize,
    iterations: usize,
    seed: u64,
) -> Centroids {
    let n = sample.len() / dim;
    let k = k.clamp(1, n.max(1));
    if n == 0 {
        return Centroids::from_vectors(vec![0.0; dim], dim);
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by_key(|&i| (mix(seed ^ i as u64), i));
    let mut vectors = Vec::with_capacity(k * dim);
    for &i in &order[..k] {
        vectors.extend_from_slice(&sample[i * dim..(i + 1) * dim]);
    }
    let mut centroids = Centroids::from_vectors(vectors, dim);
    for _ in 0..iterations {
        let nearest = centroids.nearest(sample);
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &c) in nearest.iter().enumerate() {
            let c = c as usize;
            counts[c] += 1;
            for (s, &v) in sums[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(&sample[i * dim..(i + 1) * dim])
            {
                *s += f64::from(v);
            }
        }
        let mut next = centroids.vectors.clone();
        for c in 0..k {
            let sum = &sums[c * dim..(c + 1) * dim];
            let norm = sum.iter().map(|v| v * v).sum::<f64>().sqrt();
            if counts[c] > 0 && norm > 0.0 {
                for (out, s) in next[c * dim..(c + 1) * dim].iter_mut().zip(sum) {
                    *out = (s / norm) as f32;
                }
            }
        }
        centroids = Centroids::from_vectors(next, dim);
    }
    centroids
}

/// The partitions of a two-level search: `top` centroids, each the centre of a group of
/// partitions, and the partition ids of each group (consecutive, in group order).
#[derive(Debug, Clone)]
pub(crate) struct PartitionGroups {
    pub top: Centroids,
    pub members: Vec<std::ops::Range<u32>>,
}

/// Rows per top-level centroid the top level is trained on (a stride over the sample).
const TOP_SAMPLE_PER_GROUP: usize = 64;

/// Where two-level k-means reads its sample rows from: memory, or the input (rows gathered
/// again by number, when the sample would not fit the memory budget).
pub(crate) trait SampleRows {
    fn len(&self) -> usize;
    /// Appends the sample rows `indices` (ascending positions in the sample) to `out`.
    fn fetch(&self, indices: &[u32], out: &mut Vec<f32>) -> Result<(), PairsError>;
    /// Sample values held at once while splitting the groups: the groups are trained in
    /// batches of at most this many values (at least one group each).
    fn batch_values(&self) -> usize;
}

/// A sample in memory, row-major: groups are copied out one at a time.
pub(crate) struct SampleInMemory<'a> {
    pub values: &'a [f32],
    pub dim: usize,
}

impl SampleRows for SampleInMemory<'_> {
    fn len(&self) -> usize {
        self.values.len() / self.dim.max(1)
    }

    fn fetch(&self, indices: &[u32], out: &mut Vec<f32>) -> Result<(), PairsError> {
        let dim = self.dim;
        for &i in indices {
            out.extend_from_slice(&self.values[i as usize * dim..(i as usize + 1) * dim]);
        }
        Ok(())
    }

    fn batch_values(&self) -> usize {
        0
    }
}

/// About `k` partition centroids in `groups` groups: `groups` top centroids learnt on a share
/// of the sample, then, in each group, spherical k-means on the sample rows nearest to it with
/// a number of partitions proportional to them (so partitions stay about the same size). Costs
/// sample × (groups + k / groups) products per iteration instead of sample × k, and assigning a
/// row needs only the top centroids and the partitions of a few groups. Deterministic as
/// [`spherical_kmeans`] is, and the same centroids whether the sample is in memory or read
/// back in batches (every row's nearest group is found in the same 256-row blocks).
pub(crate) fn two_level_kmeans(
    sample: &dyn SampleRows,
    dim: usize,
    k: usize,
    groups: usize,
    iterations: usize,
    seed: u64,
) -> Result<(Centroids, PartitionGroups), PairsError> {
    let n = sample.len();
    let groups = groups.clamp(1, n.max(1));
    let stride = (n / (TOP_SAMPLE_PER_GROUP * groups)).max(1);
    let top_indices: Vec<u32> = (0..n as u32).step_by(stride).collect();
    let mut top_sample = Vec::with_capacity(top_indices.len() * dim);
    sample.fetch(&top_indices, &mut top_sample)?;
    let top = spherical_kmeans(&top_sample, dim, groups, iterations, seed);
    drop(top_sample);
    // Each sample row's group, read in whole blocks of `nearest`, as many rows at once as a
    // batch may hold (each read of a Parquet input reads its row groups again).
    let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); top.len()];
    let step = ((sample.batch_values() / dim.max(1)) / BLOCK_ROWS).max(64) * BLOCK_ROWS;
    let step = step.min(u32::MAX as usize) as u32;
    let mut values = Vec::new();
    for start in (0..n as u32).step_by(step as usize) {
        let indices: Vec<u32> = (start..start.saturating_add(step).min(n as u32)).collect();
        values.clear();
        sample.fetch(&indices, &mut values)?;
        for (i, g) in indices.into_iter().zip(top.nearest(&values)) {
            rows_of[g as usize].push(i);
        }
    }
    drop(values);
    // The groups in batches of consecutive groups whose rows fit `batch_values`.
    let mut vectors = Vec::new();
    let mut members = Vec::with_capacity(top.len());
    let mut g = 0;
    while g < rows_of.len() {
        let mut end = g + 1;
        let mut held = rows_of[g].len() * dim;
        while end < rows_of.len() && held + rows_of[end].len() * dim <= sample.batch_values() {
            held += rows_of[end].len() * dim;
            end += 1;
        }
        // The batch's rows in ascending order (one pass over the input), then each group's.
        let mut batch: Vec<u32> = rows_of[g..end].iter().flatten().copied().collect();
        batch.sort_unstable();
        let mut batch_values = Vec::with_capacity(batch.len() * dim);
        sample.fetch(&batch, &mut batch_values)?;
        for (group, rows) in rows_of.iter().enumerate().take(end).skip(g) {
            let first = (vectors.len() / dim) as u32;
            if rows.is_empty() {
                // No sample row is nearest to it: one partition at the group's centre.
                vectors.extend_from_slice(top.row(group));
            } else {
                let share = (rows.len() as f64 * k as f64 / n.max(1) as f64).round() as usize;
                let mut group_sample = Vec::with_capacity(rows.len() * dim);
                for i in rows {
                    let at = batch.binary_search(i).expect("a row of the batch");
                    group_sample.extend_from_slice(&batch_values[at * dim..(at + 1) * dim]);
                }
                let fine = spherical_kmeans(
                    &group_sample,
                    dim,
                    share.max(1),
                    iterations,
                    mix(seed ^ (group as u64 + 1)),
                );
                vectors.extend_from_slice(&fine.vectors);
            }
            members.push(first..(vectors.len() / dim) as u32);
        }
        g = end;
    }
    Ok((
        Centroids::from_vectors(vectors, dim),
        PartitionGroups { top, members },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn in_memory(values: &[f32], dim: usize) -> SampleInMemory<'_> {
        SampleInMemory { values, dim }
    }

    #[test]
    fn two_obvious_clusters_are_found_and_are_unit() {
        // Rows near +x and near +y.
        let mut sample = Vec::new();
        for i in 0..20 {
            let e = 0.01 * (i % 5) as f32;
            if i % 2 == 0 {
                sample.extend([1.0, e, 0.0]);
            } else {
                sample.extend([e, 1.0, 0.0]);
            }
        }
        let c = spherical_kmeans(&sample, 3, 2, 5, 1);
        assert_eq!(c.len(), 2);
        let mut firsts: Vec<usize> = (0..2)
            .map(|j| if c.row(j)[0] > c.row(j)[1] { 0 } else { 1 })
            .collect();
        firsts.sort();
        assert_eq!(firsts, [0, 1]);
        for j in 0..2 {
            assert!((c.squared_norms[j] - 1.0).abs() < 1e-5);
        }
        let nearest = c.nearest(&sample);
        for (i, &p) in nearest.iter().enumerate() {
            assert_eq!(nearest[i % 2], p, "row {i}");
        }
        assert_ne!(nearest[0], nearest[1]);
        // The same seed gives the same centroids, bit for bit.
        assert_eq!(spherical_kmeans(&sample, 3, 2, 5, 1).vectors, c.vectors);
    }

    #[test]
    fn two_levels_split_each_group_in_proportion_to_its_rows() {
        // 300 rows near +x, 100 near +y: 2 groups, 8 partitions share 6 to 2.
        let mut sample = Vec::new();
        for i in 0..400 {
            let e = 0.01 * (i % 7) as f32;
            let f = 0.01 * (i % 5) as f32;
            let row = if i % 4 == 3 { [e, 1.0, f] } else { [1.0, e, f] };
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            sample.extend(row.map(|v| v / norm));
        }
        let (fine, groups) = two_level_kmeans(&in_memory(&sample, 3), 3, 8, 2, 5, 3).unwrap();
        assert_eq!(groups.top.len(), 2);
        let sizes: Vec<usize> = groups.members.iter().map(|r| r.len()).collect();
        let mut sorted = sizes.clone();
        sorted.sort();
        assert_eq!(sorted, [2, 6]);
        assert_eq!(fine.len(), 8);
        assert_eq!(groups.members[0].start, 0);
        assert_eq!(groups.members[0].end, groups.members[1].start);
        // Every fine centroid lies on its group's side.
        for (g, range) in groups.members.iter().enumerate() {
            for j in range.clone() {
                let c = fine.row(j as usize);
                let dots: Vec<f32> = (0..2)
                    .map(|t| groups.top.row(t).iter().zip(c).map(|(a, b)| a * b).sum())
                    .collect();
                assert_eq!(groups.top.nearest_of(&dots) as usize, g);
            }
        }
        let again = two_level_kmeans(&in_memory(&sample, 3), 3, 8, 2, 5, 3)
            .unwrap()
            .0;
        assert_eq!(again.vectors, fine.vectors);
    }
}
