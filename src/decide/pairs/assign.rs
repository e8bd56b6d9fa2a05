//! Which partitions each vector goes to: its nearest centroid (its primary partition) and every
//! other partition whose cell a vector within the pair distance of it could lie in.
//!
//! The bound: unit vectors x, y with x·y ≥ T are within δ = √(2 − 2T) of each other. If y's
//! nearest centroid is c_j, y is on c_j's side of the bisecting hyperplane between c_j and x's
//! nearest centroid c_p, so x is within δ of that hyperplane. x's distance to it is
//! `(|x − c_j|² − |x − c_p|²) / (2 |c_p − c_j|)`. Putting x into every partition j where that is
//! at most δ therefore puts x into y's primary partition, and y into x's: every pair meets in
//! at least one partition. The bound is for the worst case, a pair whose whole difference
//! points across the boundary; `margin` < 1 shrinks δ to trade a little recall for far fewer
//! copies (the difference between real near copies spreads over all dimensions), and
//! `max_replicas` caps the copies per vector. This module does not read files or find pairs.

use rayon::prelude::*;

use super::kmeans::{Centroids, PartitionGroups, BLOCK_ROWS};
use super::tile::dot_products;

/// Float error allowed for in the bound (dot products are off by about 1e-6 for unit vectors).
const BOUND_SLACK: f32 = 1e-4;

/// How far partitions are replicated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replication {
    /// δ × margin: a vector goes into every partition whose boundary is within this distance.
    pub radius: f32,
    /// At most this many partitions besides the primary one (the nearest boundaries first).
    pub max_replicas: usize,
}

impl Replication {
    pub fn new(min_cosine: f32, margin: f32, max_replicas: usize) -> Replication {
        let delta = (2.0 - 2.0 * min_cosine.clamp(-1.0, 1.0)).max(0.0).sqrt();
        Replication {
            radius: delta * margin,
            max_replicas,
        }
    }
}

/// The partitions of a set of rows: for the i-th row kept, `rows[i]` is its row number,
/// `partitions[offsets[i]..offsets[i + 1]]` its partitions, ascending, and `primary[i]` the
/// nearest of them. Rows are ascending.
#[derive(Debug, Default, Clone)]
pub(crate) struct Memberships {
    pub rows: Vec<u32>,
    pub offsets: Vec<u64>,
    pub partitions: Vec<u32>,
    pub primary: Vec<u32>,
    /// Every row assigned, kept or not (for the replication statistics).
    pub assigned_rows: u64,
    /// Their memberships, primary included.
    pub assigned_memberships: u64,
}

impl Memberships {
    pub fn new() -> Memberships {
        Memberships {
            offsets: vec![0],
            ..Memberships::default()
        }
    }

    /// The primary partition and the partitions of row `row`, when it was kept.
    pub fn primary_and_list(&self, row: u32) -> Option<(u32, &[u32])> {
        let i = self.rows.binary_search(&row).ok()?;
        Some((self.primary[i], self.list(i)))
    }

    /// Appends a row's partitions (row numbers must come in ascending order).
    pub fn push(&mut self, row: u32, primary: u32, partitions: &[u32]) {
        self.rows.push(row);
        self.primary.push(primary);
        self.partitions.extend_from_slice(partitions);
        self.offsets.push(self.partitions.len() as u64);
    }

    /// Bytes held, for the memory budget.
    pub fn bytes(&self) -> u64 {
        (self.rows.capacity() * 4
            + self.primary.capacity() * 4
            + self.offsets.capacity() * 8
            + self.partitions.capacity() * 4) as u64
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn list(&self, i: usize) -> &[u32] {
        &self.partitions[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// One block's assignment: each row's count of partitions, each row's primary, the partitions
/// of all its rows in order, and the memberships counted.
type AssignedBlock = (Vec<u32>, Vec<u32>, Vec<u32>, u64);

/// Assigns rows to partitions with a replication rule.
pub(crate) struct Assigner<'a> {
    centroids: &'a Centroids,
    replication: Replication,
    /// Two levels: each row is scored against the top centroids, then against the partitions
    /// of its `probes` nearest groups only (its primary and replicas are chosen among those).
    groups: Option<(&'a PartitionGroups, usize)>,
    /// `|c_i − c_j|` as the replication rule needs them.
    centroid_distances: CentroidDistances,
}

/// Above this many partitions the centroid distances are not all stored.
const MAX_STORED_DISTANCES: usize = 8192;
/// At most this many bytes of blocks of distances by groups.
const MAX_BLOCK_BYTES: u64 = 1 << 30;

/// The distances between centroids. Every pair, row-major, when k is small enough to hold them
/// (k ≤ 8192: 256 MiB at most). Above that, with groups, one block per pair of groups, made
/// the first time a row needs it: a row's primary and candidates lie in the groups it probes,
/// which are near each other, so only a few blocks per group are ever made (at 10M rows,
/// 20,002 partitions in 142 groups, the whole matrix would be 1.6 GB and computing each
/// distance as it is needed cost most of the assignment). Blocks are kept up to
/// [`MAX_BLOCK_BYTES`] in all (at 10⁹ rows, 1,415 partitions per group, a block is 8 MB and a
/// task could meet thousands); a block beyond is never made and its distances are computed as
/// they are needed. Both compute each distance with the same dot product
/// ([`crate::vector::cosine`]), so which blocks were kept, which depends on the order threads
/// meet them, never changes a distance. Otherwise each distance is computed when it is needed.
enum CentroidDistances {
    Stored(Vec<f32>),
    ByGroups {
        group_of: Vec<u32>,
        members: Vec<std::ops::Range<u32>>,
        /// Block (a, b), a ≤ b, at `a * groups + b`: `|members[a]| × |members[b]|` distances,
        /// or `None` when it would have passed [`MAX_BLOCK_BYTES`].
        blocks: Vec<std::sync::OnceLock<Option<Vec<f32>>>>,
        /// Bytes of the blocks made, and the most there may be.
        held: std::sync::atomic::AtomicU64,
        max_bytes: u64,
    },
    OnDemand,
}

impl CentroidDistances {
    fn new(centroids: &Centroids, groups: Option<&PartitionGroups>) -> CentroidDistances {
        if let Some(stored) = stored_distances(centroids) {
            return CentroidDistances::Stored(stored);
        }
        match groups {
            Some(groups) => CentroidDistances::by_groups(centroids, groups, MAX_BLOCK_BYTES),
            None => CentroidDistances::OnDemand,
        }
    }

    fn by_groups(
        centroids: &Centroids,
        groups: &PartitionGroups,
        max_bytes: u64,
    ) -> CentroidDistances {
        let mut group_of = vec![0u32; centroids.len()];
        for (g, range) in groups.members.iter().enumerate() {
            for p in range.clone() {
                group_of[p as usize] = g as u32;
            }
        }
        let count = groups.members.len();
        CentroidDistances::ByGroups {
            group_of,
            members: groups.members.clone(),
            blocks: (0..count * count)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            held: std::sync::atomic::AtomicU64::new(0),
            max_bytes,
        }
    }

    fn get(&self, centroids: &Centroids, i: usize, j: usize) -> f32 {
        match self {
            CentroidDistances::Stored(d) => d[i * centroids.len() + j],
            CentroidDistances::ByGroups {
                group_of,
                members,
                blocks,
                held,
                max_bytes,
            } => {
                // The lower group's block, read either way round: distances are symmetric.
                let (i, j) = if group_of[i] <= group_of[j] {
                    (i, j)
                } else {
                    (j, i)
                };
                let (a, b) = (group_of[i] as usize, group_of[j] as usize);
                let (rows, cols) = (members[a].clone(), members[b].clone());
                let block = blocks[a * members.len() + b].get_or_init(|| {
                    let bytes = (rows.len() * cols.len() * 4) as u64;
                    let before = held.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
                    (before + bytes <= *max_bytes)
                        .then(|| block_distances(centroids, rows.clone(), cols.clone()))
                });
                match block {
                    Some(block) => {
                        block[(i - rows.start as usize) * cols.len() + (j - cols.start as usize)]
                    }
                    None => distance_between(centroids, i, j),
                }
            }
            CentroidDistances::OnDemand => distance_between(centroids, i, j),
        }
    }
}

/// `|c_i − c_j|` for the partitions `i` of `rows` and `j` of `cols`, row-major, each as
/// [`distance_between`] computes it.
fn block_distances(
    centroids: &Centroids,
    rows: std::ops::Range<u32>,
    cols: std::ops::Range<u32>,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    for i in rows {
        out.extend(
            cols.clone()
                .map(|j| distance_between(centroids, i as usize, j as usize)),
        );
    }
    out
}

/// `|c_i − c_j|` from one dot product.
fn distance_between(centroids: &Centroids, i: usize, j: usize) -> f32 {
    let dot = crate::vector::cosine(centroids.row(i), centroids.row(j));
    distance_from_dot(centroids, i, j, dot)
}

impl<'a> Assigner<'a> {
    pub fn new(centroids: &'a Centroids, replication: Replication) -> Assigner<'a> {
        let centroid_distances = CentroidDistances::new(centroids, None);
        Assigner {
            centroids,
            replication,
            groups: None,
            centroid_distances,
        }
    }

    /// An assigner over partitions in groups (`kmeans::two_level_kmeans`), looking into the
    /// `probes` groups nearest to each row. Partitions of groups not probed are not candidates:
    /// a pair whose rows' nearest partitions lie in groups neither probes is lost (the recall
    /// tests and benchmarks measure how rarely).
    pub fn with_groups(
        centroids: &'a Centroids,
        groups: &'a PartitionGroups,
        probes: usize,
        replication: Replication,
    ) -> Assigner<'a> {
        let centroid_distances = CentroidDistances::new(centroids, Some(groups));
        Assigner {
            centroids,
            replication,
            groups: Some((groups, probes.max(1))),
            centroid_distances,
        }
    }

    fn centroid_distance(&self, i: usize, j: usize) -> f32 {
        self.centroid_distances.get(self.centroids, i, j)
    }

    /// Assigns the rows of `rows` (unit vectors, row-major; `first_row` is the first one's
    /// number) and keeps those with at least one partition in `keep` (a range of partition
    /// ids). Rows holding a non-finite value go nowhere. Runs in fixed blocks in parallel.
    pub fn assign(
        &self,
        first_row: u32,
        rows: &[f32],
        keep: std::ops::Range<u32>,
        out: &mut Memberships,
    ) {
        let dim = self.centroids.dim;
        let k = self.centroids.len();
        // Two levels: the products with the probed groups' partitions over all of `rows` at
        // once, so that each group's product has many rows (per 256-row block, a group is
        // probed by about 256 × probes / groups rows, and packing its partitions for so few
        // rows cost more than the products).
        let probed = self
            .groups
            .map(|(groups, probes)| self.probed_dots(rows, groups, probes));
        let blocks: Vec<AssignedBlock> = rows
            .par_chunks(BLOCK_ROWS * dim)
            .enumerate()
            .map(|(b, block)| {
                let m = block.len() / dim;
                let candidates = match &probed {
                    None => {
                        let mut dots = vec![0f32; m * k];
                        dot_products(block, &self.centroids.vectors, dim, &mut dots);
                        Candidates::Dense(dots)
                    }
                    Some(lists) => Candidates::Sparse(&lists[b * BLOCK_ROWS..b * BLOCK_ROWS + m]),
                };
                let mut lengths = Vec::with_capacity(m);
                let mut primaries = Vec::with_capacity(m);
                let mut partitions = Vec::new();
                let mut near: Vec<(f32, u32)> = Vec::new();
                let mut memberships = 0u64;
                for i in 0..m {
                    let row = &block[i * dim..(i + 1) * dim];
                    let before = partitions.len();
                    let mut primary = 0;
                    if row.iter().all(|v| v.is_finite()) {
                        primary = match &candidates {
                            Candidates::Dense(dots) => self.partitions_of(
                                dots[i * k..(i + 1) * k]
                                    .iter()
                                    .enumerate()
                                    .map(|(j, &d)| (j as u32, d)),
                                &mut near,
                                &mut partitions,
                            ),
                            Candidates::Sparse(lists) => self.partitions_of(
                                lists[i].iter().copied(),
                                &mut near,
                                &mut partitions,
                            ),
                        };
                    }
                    primaries.push(primary);
                    memberships += (partitions.len() - before) as u64;
                    lengths.push((partitions.len() - before) as u32);
                }
                (lengths, primaries, partitions, memberships)
            })
            .collect();
        let mut row = first_row;
        for (lengths, primaries, partitions, memberships) in blocks {
            out.assigned_memberships += memberships;
            let mut at = 0;
            for (len, primary) in lengths.into_iter().zip(primaries) {
                let list = &partitions[at..at + len as usize];
                at += len as usize;
                if list.iter().any(|p| keep.contains(p)) {
                    out.push(row, primary, list);
                }
                if len > 0 {
                    out.assigned_rows += 1;
                }
                row += 1;
            }
        }
    }

    /// For each row of `rows`, its dot products with the partitions of its `probes` nearest
    /// groups, as (partition, dot), in group order: one matrix product per group over the rows
    /// that probe it, groups in parallel.
    fn probed_dots(
        &self,
        rows: &[f32],
        groups: &PartitionGroups,
        probes: usize,
    ) -> Vec<Vec<(u32, f32)>> {
        let dim = self.centroids.dim;
        let m = rows.len() / dim;
        let top = &groups.top;
        let k1 = top.len();
        let take = probes.min(k1);
        // Each row's probed groups, by blocks of rows in parallel.
        let probed: Vec<Vec<u32>> = rows
            .par_chunks(BLOCK_ROWS * dim)
            .flat_map_iter(|block| {
                let n = block.len() / dim;
                let mut top_dots = vec![0f32; n * k1];
                dot_products(block, &top.vectors, dim, &mut top_dots);
                let mut order: Vec<(f32, u32)> = Vec::with_capacity(k1);
                (0..n)
                    .map(|i| {
                        order.clear();
                        order.extend(
                            top_dots[i * k1..(i + 1) * k1]
                                .iter()
                                .enumerate()
                                .map(|(g, &d)| (top.score(g, d), g as u32)),
                        );
                        // Highest score first, the lower group on ties.
                        let by_score = |a: &(f32, u32), b: &(f32, u32)| {
                            b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
                        };
                        if take < k1 {
                            order.select_nth_unstable_by(take - 1, by_score);
                        }
                        order[..take].iter().map(|&(_, g)| g).collect()
                    })
                    .collect::<Vec<Vec<u32>>>()
            })
            .collect();
        let mut probing: Vec<Vec<u32>> = vec![Vec::new(); k1];
        for (i, groups_of_row) in probed.iter().enumerate() {
            for &g in groups_of_row {
                probing[g as usize].push(i as u32);
            }
        }
        let products: Vec<Vec<f32>> = probing
            .par_iter()
            .enumerate()
            .map(|(g, members)| {
                let range = groups.members[g].clone();
                let mut gathered = Vec::with_capacity(members.len() * dim);
                for &i in members {
                    gathered.extend_from_slice(&rows[i as usize * dim..(i as usize + 1) * dim]);
                }
                let mut dots = vec![0f32; members.len() * range.len()];
                let fine =
                    &self.centroids.vectors[range.start as usize * dim..range.end as usize * dim];
                dot_products(&gathered, fine, dim, &mut dots);
                dots
            })
            .collect();
        let mut out: Vec<Vec<(u32, f32)>> = vec![Vec::new(); m];
        for (g, (members, dots)) in probing.iter().zip(&products).enumerate() {
            let range = groups.members[g].clone();
            let width = range.len();
            for (r, &i) in members.iter().enumerate() {
                out[i as usize].extend(
                    dots[r * width..(r + 1) * width]
                        .iter()
                        .enumerate()
                        .map(|(j, &d)| (range.start + j as u32, d)),
                );
            }
        }
        out
    }

    /// Appends the partitions (ascending) of a row with dot products `dots` (partition, dot)
    /// to the candidate centroids, and returns its primary (nearest) partition.
    fn partitions_of(
        &self,
        dots: impl Iterator<Item = (u32, f32)> + Clone,
        near: &mut Vec<(f32, u32)>,
        out: &mut Vec<u32>,
    ) -> u32 {
        let c = self.centroids;
        // The highest score; the lowest partition on ties, whatever the order of `dots`.
        let mut primary = u32::MAX;
        let mut primary_score = f32::NEG_INFINITY;
        for (j, d) in dots.clone() {
            let s = c.score(j as usize, d);
            if primary == u32::MAX || s > primary_score || (s == primary_score && j < primary) {
                primary = j;
                primary_score = s;
            }
        }
        if primary == u32::MAX {
            primary = 0;
        }
        let radius = self.replication.radius + BOUND_SLACK;
        near.clear();
        if self.replication.max_replicas > 0 {
            // |c_p − c_j| ≤ 2.0002 for unit centroids: a cheap test before the exact one.
            let reach = 2.0 * radius * 2.0002;
            for (j, d) in dots {
                let gap = primary_score - c.score(j as usize, d);
                if j == primary || gap > reach {
                    continue;
                }
                let separation = self.centroid_distance(primary as usize, j as usize);
                // Centroids that coincide: ties go to the lower index, so the other has no
                // primary members to meet.
                if separation <= 1e-6 {
                    continue;
                }
                let to_boundary = gap / (2.0 * separation);
                if to_boundary <= radius {
                    near.push((to_boundary, j));
                }
            }
            if near.len() > self.replication.max_replicas {
                near.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                near.truncate(self.replication.max_replicas);
            }
        }
        let start = out.len();
        out.push(primary);
        out.extend(near.iter().map(|&(_, j)| j));
        out[start..].sort_unstable();
        primary
    }
}

/// A block's dot products: with every centroid (row-major), or with each row's probed ones.
enum Candidates<'a> {
    Dense(Vec<f32>),
    Sparse(&'a [Vec<(u32, f32)>]),
}

/// `|c_i − c_j|` for all pairs, row-major, when k is at most [`MAX_STORED_DISTANCES`].
fn stored_distances(centroids: &Centroids) -> Option<Vec<f32>> {
    let k = centroids.len();
    (k <= MAX_STORED_DISTANCES).then(|| {
        let mut dots = vec![0f32; k * k];
        dots.par_chunks_mut(BLOCK_ROWS * k)
            .enumerate()
            .for_each(|(b, out)| {
                let first = b * BLOCK_ROWS;
                let rows = out.len() / k;
                let block =
                    &centroids.vectors[first * centroids.dim..(first + rows) * centroids.dim];
                dot_products(block, &centroids.vectors, centroids.dim, out);
                for i in 0..rows {
                    for j in 0..k {
                        let d = &mut out[i * k + j];
                        *d = distance_from_dot(centroids, first + i, j, *d);
                    }
                }
            });
        dots
    })
}

fn distance_from_dot(c: &Centroids, i: usize, j: usize, dot: f32) -> f32 {
    (c.squared_norms[i] + c.squared_norms[j] - 2.0 * dot)
        .max(0.0)
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_centroids() -> Centroids {
        Centroids::from_vectors(vec![1.0, 0.0, 0.0, 1.0], 2)
    }

    #[test]
    fn distances_made_by_blocks_of_groups_equal_the_stored_ones() {
        let dim = 24;
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let mut rows: Vec<f32> = (0..3000 * dim).map(|_| next()).collect();
        for row in rows.chunks_mut(dim) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.iter_mut().for_each(|v| *v /= norm);
        }
        let sample = super::super::kmeans::SampleInMemory { values: &rows, dim };
        let (centroids, groups) =
            super::super::kmeans::two_level_kmeans(&sample, dim, 60, 7, 3, 1).unwrap();
        let replication = Replication::new(0.8, 1.0, 8);
        let stored = Assigner::with_groups(&centroids, &groups, 3, replication);
        assert!(matches!(
            stored.centroid_distances,
            CentroidDistances::Stored(_)
        ));
        let mut blocks = Assigner::with_groups(&centroids, &groups, 3, replication);
        blocks.centroid_distances = CentroidDistances::by_groups(&centroids, &groups, 1 << 30);
        // No room for any block: every distance computed as it is needed, the same bits.
        let mut none_kept = Assigner::with_groups(&centroids, &groups, 3, replication);
        none_kept.centroid_distances = CentroidDistances::by_groups(&centroids, &groups, 0);
        let k = centroids.len();
        for i in 0..k {
            for j in 0..k {
                // Squared: the square root magnifies rounding near 0 (a centroid and itself).
                let (a, b) = (
                    stored.centroid_distance(i, j),
                    blocks.centroid_distance(i, j),
                );
                assert!((a * a - b * b).abs() < 1e-5, "({i}, {j}): {a} against {b}");
                assert_eq!(b.to_bits(), none_kept.centroid_distance(i, j).to_bits());
            }
        }
        let CentroidDistances::ByGroups { blocks: made, .. } = &none_kept.centroid_distances else {
            unreachable!()
        };
        assert!(made.iter().all(|b| b.get().is_none_or(|b| b.is_none())));
        let (mut one, mut other) = (Memberships::new(), Memberships::new());
        stored.assign(0, &rows, 0..k as u32, &mut one);
        blocks.assign(0, &rows, 0..k as u32, &mut other);
        let mut third = Memberships::new();
        none_kept.assign(0, &rows, 0..k as u32, &mut third);
        assert_eq!(
            (&other.rows, &other.partitions),
            (&third.rows, &third.partitions)
        );
        assert_eq!((one.rows, one.partitions), (other.rows, other.partitions));
        assert!(
            one.assigned_memberships > one.assigned_rows,
            "some rows are replicated"
        );
    }

    #[test]
    fn rows_near_the_boundary_go_to_both_partitions() {
        let c = two_centroids();
        // T = 0.98: δ = 0.2. The boundary is the diagonal; |c0 − c1| = √2.
        let assigner = Assigner::new(&c, Replication::new(0.98, 1.0, 8));
        let angle = |deg: f32| {
            let r = deg.to_radians();
            [r.cos(), r.sin()]
        };
        let mut rows = Vec::new();
        // 0°: far from the boundary; 40°: 0.087 from it; 30°: 0.259 away; 50°: on c1's side.
        for deg in [0.0, 40.0, 30.0, 50.0, 90.0] {
            rows.extend(angle(deg));
        }
        rows.extend([f32::NAN, 0.0]);
        let mut out = Memberships::new();
        assigner.assign(10, &rows, 0..2, &mut out);
        assert_eq!(out.rows, [10, 11, 12, 13, 14]);
        let lists: Vec<Vec<u32>> = (0..out.len()).map(|i| out.list(i).to_vec()).collect();
        assert_eq!(lists, [vec![0], vec![0, 1], vec![0], vec![0, 1], vec![1]]);
        assert_eq!(out.primary, [0, 0, 0, 1, 1]);
        assert_eq!(out.primary_and_list(11), Some((0, &[0u32, 1][..])));
        assert_eq!(out.primary_and_list(13), Some((1, &[0u32, 1][..])));
        assert!(out.primary_and_list(16).is_none());
        assert_eq!((out.assigned_rows, out.assigned_memberships), (5, 7));

        // Only rows touching partition 1 are kept for a shard of partition 1.
        let mut shard = Memberships::new();
        assigner.assign(0, &rows, 1..2, &mut shard);
        assert_eq!(shard.rows, [1, 3, 4]);

        // No replicas allowed: primaries only.
        let primaries_only = Assigner::new(&c, Replication::new(0.98, 1.0, 0));
        let mut out = Memberships::new();
        primaries_only.assign(0, &rows, 0..2, &mut out);
        assert_eq!(out.partitions, [0, 0, 0, 1, 1]);
    }
}
