//! The layout of the within-partition products on a GPU (`pair_products`), computed on the host
//! so that tests check it without one: which product jobs a batch of partitions becomes, how
//! jobs are grouped into launches that fit the device memory limits, where each partition's
//! vectors and each job's scores lie in device memory, the cuBLAS arguments of each job, and how
//! the compaction kernel's output (kernels/pairs.cu) maps back to candidate pairs.
//!
//! It launches nothing. A job is a block of a partition's primary rows against every later row
//! of the partition: its scores are `rows × cols` float32, row-major, element `(i, j)` the dot
//! product of rows `first + i` and `first + j`; the pairs wanted are those with `j > i`.

use std::ops::Range;

use crate::vector::Candidate;

/// What one launch may hold, and how jobs are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairLimits {
    /// Primary rows per job at most.
    pub job_rows: usize,
    /// Score values (float32) of one launch's jobs at most (one job with a single row may
    /// exceed it: a row is never split).
    pub score_floats: u64,
    /// Vector values (float32) uploaded for one launch at most (one partition may exceed it:
    /// a partition is uploaded whole).
    pub vector_floats: u64,
    /// Jobs per launch at most: the compaction kernel's grid has one row of blocks per job,
    /// and CUDA allows 65,535.
    pub jobs_per_launch: usize,
    /// Room for candidates before the first compaction (more are made room for when found).
    pub candidate_capacity: usize,
}

impl PairLimits {
    /// 1 GiB of scores and 2 GiB of vectors per launch: a few GiB of device memory in all,
    /// and launches large enough that the GPU is busy between them.
    pub const DEFAULT: PairLimits = PairLimits {
        job_rows: 2048,
        score_floats: 1 << 28,
        vector_floats: 1 << 29,
        jobs_per_launch: 65_535,
        candidate_capacity: 1 << 20,
    };
}

/// A partition's shape: its rows, the first `primaries` of them primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartShape {
    pub primaries: usize,
    pub rows: usize,
}

impl PartShape {
    /// The shapes of `parts`, rows of `dim` values.
    pub fn of(parts: &[crate::vector::PairBlock], dim: usize) -> Vec<PartShape> {
        parts
            .iter()
            .map(|p| PartShape {
                primaries: p.primaries,
                rows: p.vectors.len() / dim,
            })
            .collect()
    }
}

/// Primary rows `[first, first + rows)` of partition `part` (its index in the batch) against
/// its rows `[first, first + cols)`, `first + cols` being the partition's row count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductJob {
    pub part: usize,
    pub first: u32,
    pub rows: u32,
    pub cols: u32,
}

impl ProductJob {
    pub fn score_floats(&self) -> u64 {
        u64::from(self.rows) * u64::from(self.cols)
    }
}

/// One launch: jobs `jobs` of the plan, the partitions they read uploaded one after another
/// (`parts[k]` at float offset `part_offsets[k]`), their scores one after another (job
/// `jobs.start + k` at float offset `score_offsets[k]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub jobs: Range<usize>,
    pub parts: Vec<usize>,
    pub part_offsets: Vec<u64>,
    pub vector_floats: u64,
    pub score_offsets: Vec<u64>,
    pub score_floats: u64,
}

/// The cuBLAS column-major SGEMM of one job: `C = op(A) · op(B)` with `op(A) = Aᵀ`
/// (`CUBLAS_OP_T`) and `op(B) = B` (`CUBLAS_OP_N`), offsets in floats into the launch's vector
/// arena (A, B) and score buffer (C).
///
/// Why these: the rows `[first, n)` of a partition, row-major with stride `dim`, read in
/// column-major with leading dimension `dim` are the `dim × cols` matrix A whose column `r` is
/// row `first + r`; so `Aᵀ` is `cols × dim` and B (the first `rows` of those columns) is
/// `dim × rows`, and `C = Aᵀ B` is `cols × rows` column-major with leading dimension `cols`:
/// `C[r + c·cols] = row(first + r) · row(first + c)`, which is the row-major `rows × cols` score
/// matrix with element `(i = c, j = r)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmArgs {
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub a_offset: u64,
    pub lda: i32,
    pub b_offset: u64,
    pub ldb: i32,
    pub c_offset: u64,
    pub ldc: i32,
}

impl GemmArgs {
    /// Floats of A that cuBLAS reads from `a_offset` (`op(A) = Aᵀ`: A is `k × m`, leading
    /// dimension `lda`); B (`k × n`, `n ≤ m`) lies within them.
    pub fn a_len(&self) -> u64 {
        self.lda as u64 * (self.m as u64 - 1) + self.k as u64
    }

    /// Floats of C that cuBLAS writes from `c_offset` (`m × n`, leading dimension `ldc`).
    pub fn c_len(&self) -> u64 {
        self.ldc as u64 * (self.n as u64 - 1) + self.m as u64
    }
}

/// Threads per block of the compaction kernel, and blocks per job at most (each thread then
/// strides over the job's scores).
pub const COMPACT_THREADS: u32 = 256;
pub const COMPACT_BLOCKS_PER_JOB: u64 = 128;

/// The jobs and launches of one batch of partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairPlan {
    pub dim: usize,
    pub jobs: Vec<ProductJob>,
    pub launches: Vec<Launch>,
}

impl PairPlan {
    /// The plan for partitions of these shapes. Fails when a size does not fit cuBLAS's 32-bit
    /// arguments (the caller then uses the CPU).
    pub fn new(shapes: &[PartShape], dim: usize, limits: &PairLimits) -> Result<PairPlan, String> {
        let fits = |what: &str, value: usize| {
            if value > i32::MAX as usize {
                Err(format!("{what} {value} exceeds cuBLAS's 32-bit sizes"))
            } else {
                Ok(())
            }
        };
        fits("dimension", dim)?;
        let mut jobs = Vec::new();
        for (part, shape) in shapes.iter().enumerate() {
            fits("partition rows", shape.rows)?;
            let primaries = shape.primaries.min(shape.rows);
            let mut first = 0;
            while first < primaries {
                let cols = shape.rows - first;
                if cols < 2 {
                    break; // the last row has no later row to pair with
                }
                let by_scores = (limits.score_floats / cols as u64).max(1) as usize;
                let rows = limits.job_rows.max(1).min(primaries - first).min(by_scores);
                jobs.push(ProductJob {
                    part,
                    first: first as u32,
                    rows: rows as u32,
                    cols: cols as u32,
                });
                first += rows;
            }
        }
        let launches = group_launches(&jobs, shapes, dim, limits);
        Ok(PairPlan {
            dim,
            jobs,
            launches,
        })
    }

    /// The SGEMM of job `jobs.start + k` of `launch`.
    pub fn gemm(&self, launch: &Launch, k: usize) -> GemmArgs {
        let job = self.jobs[launch.jobs.start + k];
        let slot = launch
            .parts
            .binary_search(&job.part)
            .expect("a launch uploads every partition its jobs read");
        let a = launch.part_offsets[slot] + u64::from(job.first) * self.dim as u64;
        GemmArgs {
            m: job.cols as i32,
            n: job.rows as i32,
            k: self.dim as i32,
            a_offset: a,
            lda: self.dim as i32,
            b_offset: a,
            ldb: self.dim as i32,
            c_offset: launch.score_offsets[k],
            ldc: job.cols as i32,
        }
    }

    /// The compaction kernel's tables for `launch`: each job's score offset, rows and columns.
    pub fn compact_tables(&self, launch: &Launch) -> (Vec<u64>, Vec<u32>, Vec<u32>) {
        let jobs = &self.jobs[launch.jobs.clone()];
        (
            launch.score_offsets.clone(),
            jobs.iter().map(|j| j.rows).collect(),
            jobs.iter().map(|j| j.cols).collect(),
        )
    }

    /// The compaction kernel's grid for `launch`: `(x, y, 1)` blocks, y one per job.
    pub fn compact_grid(&self, launch: &Launch) -> (u32, u32, u32) {
        let largest = self.jobs[launch.jobs.clone()]
            .iter()
            .map(ProductJob::score_floats)
            .max()
            .unwrap_or(0);
        let x = largest
            .div_ceil(u64::from(COMPACT_THREADS))
            .clamp(1, COMPACT_BLOCKS_PER_JOB);
        (x as u32, launch.jobs.len() as u32, 1)
    }

    /// Adds the candidates the compaction kernel wrote for `launch` (`(job, i, j)` triples, `job`
    /// counted from the launch's first) to `out`, indexed by partition. A triple no job of the
    /// launch could have written is an error (the GPU result is then not used).
    pub fn add_candidates(
        &self,
        launch: &Launch,
        triples: &[u32],
        out: &mut [Vec<Candidate>],
    ) -> Result<(), String> {
        if triples.len() % 3 != 0 {
            return Err(format!("{} values are not whole triples", triples.len()));
        }
        for t in triples.chunks_exact(3) {
            let (k, i, j) = (t[0] as usize, t[1], t[2]);
            let job = launch
                .jobs
                .clone()
                .nth(k)
                .map(|at| self.jobs[at])
                .ok_or_else(|| format!("candidate of job {k}, beyond the launch's"))?;
            if i >= job.rows || j >= job.cols || j <= i {
                return Err(format!(
                    "candidate ({i}, {j}) outside job {k}'s {} × {} upper triangle",
                    job.rows, job.cols
                ));
            }
            let slot = out
                .get_mut(job.part)
                .ok_or_else(|| format!("partition {} beyond the batch", job.part))?;
            slot.push(Candidate {
                x: job.first + i,
                y: job.first + j,
            });
        }
        Ok(())
    }
}

/// Consecutive jobs grouped into launches under the limits (each launch at least one job).
fn group_launches(
    jobs: &[ProductJob],
    shapes: &[PartShape],
    dim: usize,
    limits: &PairLimits,
) -> Vec<Launch> {
    let empty = |start: usize| Launch {
        jobs: start..start,
        parts: Vec::new(),
        part_offsets: Vec::new(),
        vector_floats: 0,
        score_offsets: Vec::new(),
        score_floats: 0,
    };
    let mut launches = Vec::new();
    let mut current = empty(0);
    for (index, job) in jobs.iter().enumerate() {
        let new_part = current.parts.last() != Some(&job.part);
        let part_floats = if new_part {
            (shapes[job.part].rows * dim) as u64
        } else {
            0
        };
        let full = !current.jobs.is_empty()
            && (current.jobs.len() >= limits.jobs_per_launch.max(1)
                || current.score_floats + job.score_floats() > limits.score_floats
                || current.vector_floats + part_floats > limits.vector_floats);
        if full {
            launches.push(std::mem::replace(&mut current, empty(index)));
        }
        if current.parts.last() != Some(&job.part) {
            current.parts.push(job.part);
            current.part_offsets.push(current.vector_floats);
            current.vector_floats += (shapes[job.part].rows * dim) as u64;
        }
        current.score_offsets.push(current.score_floats);
        current.score_floats += job.score_floats();
        current.jobs.end = index + 1;
    }
    if !current.jobs.is_empty() {
        launches.push(current);
    }
    launches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::pairs::CpuProducts;
    use crate::vector::{PairBlock, PairProducts};
    use std::collections::BTreeSet;

    const SMALL: PairLimits = PairLimits {
        job_rows: 3,
        score_floats: 40,
        vector_floats: 200,
        jobs_per_launch: 4,
        candidate_capacity: 8,
    };

    fn shapes() -> Vec<PartShape> {
        [(0, 5), (1, 1), (4, 4), (7, 12), (1, 2), (2, 30), (5, 9)]
            .iter()
            .map(|&(primaries, rows)| PartShape { primaries, rows })
            .collect()
    }

    #[test]
    fn jobs_cover_every_pair_with_a_primary_once() {
        for limits in [SMALL, PairLimits::DEFAULT] {
            let shapes = shapes();
            let plan = PairPlan::new(&shapes, 3, &limits).unwrap();
            let mut seen = Vec::new();
            for job in &plan.jobs {
                assert!(job.rows >= 1 && job.cols >= 2, "{job:?}");
                assert!(
                    job.rows as usize <= limits.job_rows
                        && (job.score_floats() <= limits.score_floats || job.rows == 1),
                    "{job:?}"
                );
                let shape = shapes[job.part];
                assert_eq!((job.first + job.cols) as usize, shape.rows);
                for i in 0..job.rows {
                    for j in i + 1..job.cols {
                        seen.push((job.part, job.first + i, job.first + j));
                    }
                }
            }
            let mut want = Vec::new();
            for (part, shape) in shapes.iter().enumerate() {
                for x in 0..shape.primaries.min(shape.rows) as u32 {
                    for y in x + 1..shape.rows as u32 {
                        want.push((part, x, y));
                    }
                }
            }
            let unique: BTreeSet<_> = seen.iter().copied().collect();
            assert_eq!(unique.len(), seen.len(), "a pair in two jobs");
            assert_eq!(unique, want.into_iter().collect::<BTreeSet<_>>());
        }
    }

    #[test]
    fn launches_take_consecutive_jobs_within_the_limits() {
        let shapes = shapes();
        let dim = 3;
        let plan = PairPlan::new(&shapes, dim, &SMALL).unwrap();
        assert!(plan.launches.len() > 3, "{}", plan.launches.len());
        let mut next = 0;
        for launch in &plan.launches {
            assert_eq!(launch.jobs.start, next);
            assert!(!launch.jobs.is_empty() && launch.jobs.len() <= SMALL.jobs_per_launch);
            next = launch.jobs.end;
            let jobs = &plan.jobs[launch.jobs.clone()];
            assert!(launch.score_floats <= SMALL.score_floats || jobs.len() == 1);
            assert!(launch.vector_floats <= SMALL.vector_floats || launch.parts.len() == 1);
            // Parts: those the jobs read, ascending, packed one after another.
            let read: Vec<usize> = jobs
                .iter()
                .map(|j| j.part)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            assert_eq!(launch.parts, read);
            let mut at = 0;
            for (k, &part) in launch.parts.iter().enumerate() {
                assert_eq!(launch.part_offsets[k], at);
                at += (shapes[part].rows * dim) as u64;
            }
            assert_eq!(launch.vector_floats, at);
            let mut at = 0;
            for (k, job) in jobs.iter().enumerate() {
                assert_eq!(launch.score_offsets[k], at);
                at += job.score_floats();
            }
            assert_eq!(launch.score_floats, at);
            assert_eq!(plan.compact_grid(launch).1 as usize, jobs.len());
        }
        assert_eq!(next, plan.jobs.len());
    }

    #[test]
    fn sizes_beyond_cublas_arguments_are_refused() {
        let shapes = [PartShape {
            primaries: 1,
            rows: 3,
        }];
        let e = PairPlan::new(&shapes, i32::MAX as usize + 1, &SMALL).unwrap_err();
        assert!(e.contains("dimension"), "{e}");
        let big = [PartShape {
            primaries: 1,
            rows: 1 << 31,
        }];
        let e = PairPlan::new(&big, 512, &SMALL).unwrap_err();
        assert!(e.contains("partition rows 2147483648"), "{e}");
    }

    #[test]
    fn the_compaction_grid_covers_the_largest_job_up_to_a_cap() {
        let shapes = [
            PartShape {
                primaries: 2,
                rows: 100,
            },
            PartShape {
                primaries: 2048,
                rows: 4000,
            },
        ];
        let plan = PairPlan::new(&shapes, 8, &PairLimits::DEFAULT).unwrap();
        assert_eq!(plan.launches.len(), 1);
        let launch = &plan.launches[0];
        assert_eq!(plan.compact_grid(launch), (128, 2, 1));
        let small = PairPlan::new(&shapes[..1], 8, &PairLimits::DEFAULT).unwrap();
        // 2 × 100 scores: one block of 256 threads.
        assert_eq!(small.compact_grid(&small.launches[0]), (1, 1, 1));
        let (offsets, rows, cols) = plan.compact_tables(launch);
        assert_eq!(offsets, vec![0, 200]);
        assert_eq!(rows, vec![2, 2048]);
        assert_eq!(cols, vec![100, 4000]);
    }

    #[test]
    fn candidates_no_job_could_have_written_are_refused() {
        let plan = PairPlan::new(&shapes(), 3, &SMALL).unwrap();
        let launch = &plan.launches[1];
        let job = plan.jobs[launch.jobs.start];
        let mut out = vec![Vec::new(); shapes().len()];
        plan.add_candidates(launch, &[0, 0, 1], &mut out).unwrap();
        assert_eq!(
            out[job.part],
            [Candidate {
                x: job.first,
                y: job.first + 1
            }]
        );
        for bad in [
            vec![0, 1, 1],                        // on the diagonal
            vec![0, 2, 1],                        // below it
            vec![0, job.rows, job.rows + 1],      // beyond the job's rows
            vec![0, 0, job.cols],                 // beyond its columns
            vec![launch.jobs.len() as u32, 0, 1], // beyond the launch's jobs
            vec![0, 0],                           // not a triple
        ] {
            assert!(
                plan.add_candidates(launch, &bad, &mut out).is_err(),
                "{bad:?}"
            );
        }
    }

    /// BLAS's column-major SGEMM by its definition (f64 sums), for `transa = T`, `transb = N`
    /// as the plan asks: `C(r, c) = Σ_l A(l, r) · B(l, c)`.
    fn sgemm_t_n(g: &GemmArgs, a: &[f32], b: &[f32], c: &mut [f32]) {
        let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
        let (lda, ldb, ldc) = (g.lda as usize, g.ldb as usize, g.ldc as usize);
        assert!(
            lda >= k && ldb >= k && ldc >= m,
            "leading dimensions too small"
        );
        for col in 0..n {
            for r in 0..m {
                let sum: f64 = (0..k)
                    .map(|l| f64::from(a[l + r * lda]) * f64::from(b[l + col * ldb]))
                    .sum();
                c[r + col * ldc] = sum as f32;
            }
        }
    }

    /// kernels/pairs.cu's `pairs_above_floor` on the host: the same index arithmetic.
    fn compact(scores: &[f32], plan: &PairPlan, launch: &Launch, floor: f32) -> Vec<u32> {
        let (offsets, rows, cols) = plan.compact_tables(launch);
        let mut out = Vec::new();
        for job in 0..offsets.len() {
            let total = u64::from(rows[job]) * u64::from(cols[job]);
            let c = u64::from(cols[job]);
            for e in 0..total {
                let v = scores[(offsets[job] + e) as usize];
                if v >= floor {
                    let i = (e / c) as u32;
                    let j = (e - u64::from(i) * c) as u32;
                    if j > i {
                        out.extend([job as u32, i, j]);
                    }
                }
            }
        }
        out
    }

    /// Blocks (primaries, vectors) of shapes that cross the CPU's 256-row blocks and the plan's
    /// small jobs.
    fn partitions(dim: usize) -> Vec<(usize, Vec<f32>)> {
        let mut state = 0x1234_5678_u64;
        let mut next = move || {
            state = crate::decide::pairs::mix(state);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        [(300, 410), (3, 3), (0, 4), (40, 41), (1, 90)]
            .iter()
            .map(|&(primaries, rows)| {
                let mut vectors: Vec<f32> = (0..rows * dim).map(|_| next()).collect();
                // A few near copies so that high products occur too.
                for r in (1..rows).step_by(7) {
                    let (head, tail) = vectors.split_at_mut(r * dim);
                    tail[..dim].copy_from_slice(&head[(r - 1) * dim..r * dim]);
                    tail[0] += 0.05;
                }
                crate::vector::normalise(&mut vectors, dim);
                (primaries, vectors)
            })
            .collect()
    }

    #[test]
    fn the_emulated_launches_find_the_cpu_candidates() {
        let dim = 37;
        let owned = partitions(dim);
        let parts: Vec<PairBlock> = owned
            .iter()
            .map(|(primaries, vectors)| PairBlock {
                vectors,
                primaries: *primaries,
            })
            .collect();
        let shapes = PartShape::of(&parts, dim);
        let floor = 0.3;
        let mut want = CpuProducts.candidates(&parts, dim, floor);
        want.iter_mut().for_each(|c| c.sort_unstable());
        assert!(want[0].len() > 100, "{}", want[0].len());
        let limits = PairLimits {
            job_rows: 64,
            score_floats: 20_000,
            vector_floats: 10_000,
            ..PairLimits::DEFAULT
        };
        for limits in [limits, PairLimits::DEFAULT] {
            let plan = PairPlan::new(&shapes, dim, &limits).unwrap();
            let mut got = vec![Vec::new(); parts.len()];
            for launch in &plan.launches {
                let mut arena = vec![f32::NAN; launch.vector_floats as usize];
                for (k, &part) in launch.parts.iter().enumerate() {
                    let at = launch.part_offsets[k] as usize;
                    arena[at..at + parts[part].vectors.len()].copy_from_slice(parts[part].vectors);
                }
                // Poisoned: a score no SGEMM wrote would not compare as a candidate.
                let mut scores = vec![f32::NAN; launch.score_floats as usize];
                for k in 0..launch.jobs.len() {
                    let g = plan.gemm(launch, k);
                    // A lies in its partition's upload, C in its job's scores.
                    let job = plan.jobs[launch.jobs.start + k];
                    let slot = launch.parts.binary_search(&job.part).unwrap();
                    let part_end =
                        launch.part_offsets[slot] + (parts[job.part].vectors.len()) as u64;
                    assert!(
                        g.a_offset + g.a_len() <= part_end
                            && g.b_offset >= launch.part_offsets[slot]
                    );
                    assert_eq!(g.c_len(), job.score_floats());
                    assert_eq!(
                        g.c_offset + g.c_len(),
                        launch
                            .score_offsets
                            .get(k + 1)
                            .copied()
                            .unwrap_or(launch.score_floats)
                    );
                    assert!((g.n as u64 - 1) * g.ldb as u64 + g.k as u64 <= g.a_len());
                    sgemm_t_n(
                        &g,
                        &arena[g.a_offset as usize..],
                        &arena[g.b_offset as usize..],
                        &mut scores[g.c_offset as usize..],
                    );
                }
                assert!(scores.iter().all(|s| !s.is_nan()), "every score written");
                let triples = compact(&scores, &plan, launch, floor);
                plan.add_candidates(launch, &triples, &mut got).unwrap();
            }
            got.iter_mut().for_each(|c| c.sort_unstable());
            assert_eq!(got, want, "{limits:?}");
        }
    }
}
