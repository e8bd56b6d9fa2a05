//! The GPU measure path as data: for a batch of luminance images, where each plane lives in one
//! byte arena, which resampling passes run in which launch, the coefficient tables they read,
//! and the launch sizes. `cuda` uploads a plan and launches the kernels; [`MeasurePlan::emulate`]
//! runs the same plan with host loops that mirror each kernel's arithmetic, which is how the
//! tests check the plan and the arithmetic against `CpuKernels` on a machine without a GPU.
//!
//! The steps are `CpuKernels::measure`'s, in its order, with its rounding after every pass.

use std::ops::Range;

use crate::measure::quality::shorter_side_size;
use crate::measure::{ImageQuality, ANALYSIS_SHORT_SIDE};
use crate::pixels::resample::{pass_coefficients, Filter, WEIGHT_PRECISION_BITS};
use crate::pixels::LumaImage;

/// Long longs per job in the job table (`JOB_FIELDS` in kernels/resample.cu).
pub const JOB_FIELDS: usize = 12;

/// `measure::HASH_PREREDUCE` (private there): hashes start from an area-averaged copy no larger
/// than this. The emulation test against `CpuKernels` fails if the two ever differ.
const HASH_PREREDUCE: u32 = 128;

/// Threads per block of the pass and analysis kernels (a multiple of the warp size, which the
/// analysis kernel's warp sums need).
pub const BLOCK_THREADS: u32 = 256;

/// Images per launch at most: the kernels index images and jobs by `blockIdx.y` (at most
/// 65535), and a stage holds at most two jobs per image.
pub const MAX_BATCH_IMAGES: usize = 4096;

/// A plane in the arena: `width * height` bytes, row-major, at `offset`. `ready` is the number
/// of pass launches that must run before it holds its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    pub offset: u64,
    pub width: u32,
    pub height: u32,
    pub ready: usize,
}

impl Plane {
    fn len(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

/// One pass over one plane, as `resample_pass` reads it (offsets and strides in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassJob {
    pub src: u64,
    pub dst: u64,
    /// Outputs along the resampled axis.
    pub out_len: u32,
    /// Lines along the other axis.
    pub lines: u32,
    pub src_step: u64,
    pub src_line: u64,
    pub dst_step: u64,
    pub dst_line: u64,
    pub taps: u32,
    /// Index of the axis's first `(start, count)` pair in [`MeasurePlan::bounds`] (an i32 index).
    pub bounds: u32,
    /// Index of the axis's first weight in [`MeasurePlan::weights`].
    pub weights: u32,
}

impl PassJob {
    /// The job as the kernel's table row.
    pub fn fields(&self) -> [i64; JOB_FIELDS] {
        [
            self.src as i64,
            self.dst as i64,
            self.out_len as i64,
            self.lines as i64,
            self.src_step as i64,
            self.src_line as i64,
            self.dst_step as i64,
            self.dst_line as i64,
            self.taps as i64,
            self.bounds as i64,
            self.weights as i64,
            0,
        ]
    }

    fn outputs(&self) -> u64 {
        self.out_len as u64 * self.lines as u64
    }
}

/// Grid and block sizes of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
}

/// Which weights an axis uses: one of Pillow's filters, or a copy (the transpose that the CPU's
/// transposed resize does when that axis keeps its size, or the move of a hash input that is
/// already at the hash size into its slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Weights {
    Filter(Filter),
    Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    Vertical,
    Horizontal,
}

/// Everything the GPU does for one batch, in launch order: the pass stages, then one analysis
/// launch, one pHash launch and one dHash launch.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurePlan {
    /// Bytes of the arena.
    pub arena_len: u64,
    /// The input planes, packed in image order at the arena's start (one upload).
    pub inputs: Vec<Plane>,
    /// Pass launches in order; the jobs of one launch are independent.
    pub stages: Vec<Vec<PassJob>>,
    /// `(start, count)` pairs of every axis table, flattened.
    pub bounds: Vec<i32>,
    pub weights: Vec<i32>,
    /// The plane each image's sharpness, brightness and clipping are measured on.
    pub analysis: Vec<Plane>,
    /// Image `i`'s 32x32 pHash input is at `phash_base + 1024 i`, its 9x8 dHash input at
    /// `dhash_base + 72 i`.
    pub phash_base: u64,
    pub dhash_base: u64,
    /// Axis tables already built.
    tables: BuiltTables,
}

impl MeasurePlan {
    /// Plans the measurement of images of these sizes (width, height), none of them empty.
    pub fn new(sizes: &[(u32, u32)]) -> MeasurePlan {
        let n = sizes.len() as u64;
        let mut plan = MeasurePlan {
            arena_len: 0,
            inputs: Vec::with_capacity(sizes.len()),
            stages: Vec::new(),
            bounds: Vec::new(),
            weights: Vec::new(),
            analysis: Vec::with_capacity(sizes.len()),
            phash_base: 0,
            dhash_base: 0,
            tables: Vec::new(),
        };
        for &(width, height) in sizes {
            let offset = plan.alloc(width as u64 * height as u64);
            plan.inputs.push(Plane {
                offset,
                width,
                height,
                ready: 0,
            });
        }
        plan.phash_base = plan.alloc(1024 * n);
        plan.dhash_base = plan.alloc(72 * n);
        for i in 0..sizes.len() {
            plan.plan_image(i);
        }
        plan.tables.clear();
        plan
    }

    /// `CpuKernels::measure`'s steps for image `i`.
    fn plan_image(&mut self, i: usize) {
        let plane = self.inputs[i];
        let (w, h) = (plane.width, plane.height);
        let side = ANALYSIS_SHORT_SIDE;
        // quality::resize_shorter_side_transposed: the analysis plane comes out transposed.
        let (analysis, transposed) = if w.min(h) == side {
            (plane, false)
        } else {
            let dims = LumaImage {
                width: w,
                height: h,
                pixels: Vec::new(),
            };
            let (out_w, out_h) = shorter_side_size(&dims, side);
            let filter = if out_w < w {
                Filter::Box
            } else {
                Filter::Bicubic
            };
            (self.resize(plane, out_w, out_h, filter, true, None), true)
        };
        self.analysis.push(analysis);
        // The hash source: the image itself when small, else a box-reduced 128x128 copy of the
        // analysis plane, resized transposed again when that plane is transposed, which gives
        // back the image's orientation.
        let hash_source = if w.min(h) <= HASH_PREREDUCE {
            plane
        } else {
            let s = HASH_PREREDUCE;
            self.resize(analysis, s, s, Filter::Box, transposed, None)
        };
        let phash_slot = self.phash_base + 1024 * i as u64;
        let dhash_slot = self.dhash_base + 72 * i as u64;
        self.resize(
            hash_source,
            32,
            32,
            Filter::Lanczos3,
            false,
            Some(phash_slot),
        );
        self.resize(hash_source, 9, 8, Filter::Lanczos3, false, Some(dhash_slot));
    }

    fn alloc(&mut self, len: u64) -> u64 {
        let offset = self.arena_len;
        self.arena_len += len;
        offset
    }

    /// `resample::resize_plane` (`transposed` false: horizontal pass, then vertical, each only
    /// if that side changes) or `resize_plane_transposed` (vertical first, then the horizontal
    /// pass writing the transpose, a copy if the width stays). The result goes to `dst` when
    /// given (a copy if nothing changes).
    fn resize(
        &mut self,
        src: Plane,
        out_w: u32,
        out_h: u32,
        filter: Filter,
        transposed: bool,
        dst: Option<u64>,
    ) -> Plane {
        let (need_h, need_v) = (out_w != src.width, out_h != src.height);
        let f = Weights::Filter(filter);
        if transposed {
            let mut p = src;
            if need_v {
                p = self.pass(p, Axis::Vertical, out_h, f, false, None);
            }
            let weights = if need_h { f } else { Weights::Identity };
            return self.pass(p, Axis::Horizontal, out_w, weights, true, dst);
        }
        if !need_h && !need_v {
            return match dst {
                Some(_) => self.pass(src, Axis::Horizontal, out_w, Weights::Identity, false, dst),
                None => src,
            };
        }
        let mut p = src;
        if need_h {
            p = self.pass(
                p,
                Axis::Horizontal,
                out_w,
                f,
                false,
                dst.filter(|_| !need_v),
            );
        }
        if need_v {
            p = self.pass(p, Axis::Vertical, out_h, f, false, dst);
        }
        p
    }

    /// One pass along `axis` to `out_size`; `transposed` writes the output transposed (only
    /// for horizontal passes).
    fn pass(
        &mut self,
        src: Plane,
        axis: Axis,
        out_size: u32,
        weights: Weights,
        transposed: bool,
        dst: Option<u64>,
    ) -> Plane {
        let (w, h) = (src.width as u64, src.height as u64);
        let in_size = match axis {
            Axis::Vertical => src.height,
            Axis::Horizontal => src.width,
        };
        let (bounds, weights_at, taps) = self.table(in_size as usize, out_size as usize, weights);
        let o = out_size as u64;
        // (lines, src_step, src_line, out plane width, height, dst_step, dst_line)
        let (lines, src_step, src_line, out_w, out_h, dst_step, dst_line) = match axis {
            Axis::Vertical => (src.width, w, 1, src.width, out_size, w, 1),
            Axis::Horizontal if transposed => (src.height, 1, w, src.height, out_size, h, 1),
            Axis::Horizontal => (src.height, 1, w, out_size, src.height, 1, o),
        };
        let len = out_w as u64 * out_h as u64;
        let dst = dst.unwrap_or_else(|| self.alloc(len));
        let job = PassJob {
            src: src.offset,
            dst,
            out_len: out_size,
            lines,
            src_step,
            src_line,
            dst_step,
            dst_line,
            taps,
            bounds,
            weights: weights_at,
        };
        if self.stages.len() <= src.ready {
            self.stages.resize(src.ready + 1, Vec::new());
        }
        self.stages[src.ready].push(job);
        Plane {
            offset: dst,
            width: out_w,
            height: out_h,
            ready: src.ready + 1,
        }
    }

    /// The table of an axis, built once per batch: (bounds index, weights index, taps).
    fn table(&mut self, in_size: usize, out_size: usize, weights: Weights) -> (u32, u32, u32) {
        axis_table(
            &mut self.bounds,
            &mut self.weights,
            &mut self.tables,
            in_size,
            out_size,
            weights,
        )
    }

    /// The bytes of the input region (`inputs`, packed), which is uploaded at offset 0.
    /// `None` when an image is not the size it was planned at.
    pub fn pack_inputs(&self, images: &[LumaImage]) -> Option<Vec<u8>> {
        if images.len() != self.inputs.len() {
            return None;
        }
        let mut packed = Vec::with_capacity(self.phash_base as usize);
        for (image, plane) in images.iter().zip(&self.inputs) {
            if (image.width, image.height) != (plane.width, plane.height)
                || image.pixels.len() as u64 != plane.len()
            {
                return None;
            }
            packed.extend_from_slice(&image.pixels);
        }
        Some(packed)
    }

    /// The analysis planes as the `analyse` kernel takes them: offsets, widths, heights.
    pub fn analysis_tables(&self) -> (Vec<u64>, Vec<i32>, Vec<i32>) {
        (
            self.analysis.iter().map(|p| p.offset).collect(),
            self.analysis.iter().map(|p| p.width as i32).collect(),
            self.analysis.iter().map(|p| p.height as i32).collect(),
        )
    }

    /// The job table of one pass launch.
    pub fn job_table(jobs: &[PassJob]) -> Vec<i64> {
        jobs.iter().flat_map(|j| j.fields()).collect()
    }

    /// Runs the plan on the host, each step by a loop that does what its kernel does, in the
    /// kernel's arithmetic. `None` when the images are not the planned sizes.
    pub fn emulate(&self, images: &[LumaImage]) -> Option<Vec<ImageQuality>> {
        let packed = self.pack_inputs(images)?;
        let mut arena = vec![0u8; self.arena_len as usize];
        arena[..packed.len()].copy_from_slice(&packed);
        for stage in &self.stages {
            for job in stage {
                pass_on_host(&mut arena, job, &self.bounds, &self.weights);
            }
        }
        let basis = dct_basis();
        let qualities = self
            .analysis
            .iter()
            .enumerate()
            .map(|(i, plane)| {
                let stats = analyse_on_host(&arena, plane);
                let phash_at = (self.phash_base + 1024 * i as u64) as usize;
                let dhash_at = (self.dhash_base + 72 * i as u64) as usize;
                let phash = phash_on_host(&arena[phash_at..phash_at + 1024], &basis);
                let dhash = dhash_on_host(&arena[dhash_at..dhash_at + 72]);
                image_quality(stats, plane.width, plane.height, phash, dhash)
            })
            .collect();
        Some(qualities)
    }
}

/// Axis tables already built for a batch: input size, output size, weights, and where the
/// table is in the batch's bounds and weights.
pub(super) type BuiltTables = Vec<(usize, usize, Weights, u32, u32, u32)>;

/// The table of an axis from `in_size` to `out_size` pixels, appended to `bounds` and
/// `weights` unless `built` says it is there already: (bounds index, weights index, taps).
pub(super) fn axis_table(
    bounds: &mut Vec<i32>,
    weights: &mut Vec<i32>,
    built: &mut BuiltTables,
    in_size: usize,
    out_size: usize,
    kind: Weights,
) -> (u32, u32, u32) {
    if let Some(t) = built
        .iter()
        .find(|t| (t.0, t.1, t.2) == (in_size, out_size, kind))
    {
        return (t.3, t.4, t.5);
    }
    let (pairs, table, taps) = match kind {
        Weights::Filter(filter) => {
            let c = pass_coefficients(in_size, out_size, filter);
            (c.bounds, c.weights, c.taps)
        }
        Weights::Identity => (
            (0..out_size as u32).map(|i| (i, 1)).collect(),
            vec![1i32 << WEIGHT_PRECISION_BITS; out_size],
            1,
        ),
    };
    let at = (bounds.len() as u32, weights.len() as u32, taps as u32);
    bounds.extend(pairs.iter().flat_map(|&(s, c)| [s as i32, c as i32]));
    weights.extend(table);
    built.push((in_size, out_size, kind, at.0, at.1, at.2));
    at
}

/// Launch size of one pass stage: one block row per job, enough blocks across for the largest.
pub fn pass_launch(jobs: &[PassJob]) -> Launch {
    let most = jobs.iter().map(PassJob::outputs).max().unwrap_or(0);
    let blocks = most.div_ceil(BLOCK_THREADS as u64).clamp(1, 4096) as u32;
    Launch {
        grid: (blocks, jobs.len() as u32, 1),
        block: (BLOCK_THREADS, 1, 1),
    }
}

/// Launch size of the analysis: one block row per image; the blocks stride over its pixels.
pub fn analyse_launch(planes: &[Plane]) -> Launch {
    let most = planes.iter().map(Plane::len).max().unwrap_or(0);
    let blocks = most.div_ceil(BLOCK_THREADS as u64 * 4).clamp(1, 1024) as u32;
    Launch {
        grid: (blocks, planes.len() as u32, 1),
        block: (BLOCK_THREADS, 1, 1),
    }
}

/// Launch size of `phash32`: one block of 64 threads (one per coefficient) per image.
pub fn phash_launch(images: usize) -> Launch {
    Launch {
        grid: (1, images as u32, 1),
        block: (64, 1, 1),
    }
}

/// Launch size of `dhash9x8`: one thread per image.
pub fn dhash_launch(images: usize) -> Launch {
    Launch {
        grid: ((images as u32).div_ceil(128).max(1), 1, 1),
        block: (128, 1, 1),
    }
}

/// Splits a batch into runs whose arenas stay under `max_arena_bytes` (an image larger than
/// that runs alone) and whose image count fits a launch.
pub fn batches(sizes: &[(u32, u32)], max_arena_bytes: u64) -> Vec<Range<usize>> {
    let needs: Vec<u64> = sizes
        .iter()
        .map(|&size| MeasurePlan::new(&[size]).arena_len)
        .collect();
    split_runs(&needs, MAX_BATCH_IMAGES, max_arena_bytes)
}

/// Consecutive runs of at most `max_items` items whose costs add up to at most `max_total`
/// (an item costing more than that runs alone).
pub fn split_runs(costs: &[u64], max_items: usize, max_total: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut total) = (0, 0u64);
    for (i, &cost) in costs.iter().enumerate() {
        if i > start && (i - start >= max_items || total.saturating_add(cost) > max_total) {
            out.push(start..i);
            (start, total) = (i, 0);
        }
        total = total.saturating_add(cost);
    }
    if start < costs.len() {
        out.push(start..costs.len());
    }
    out
}

/// The DCT-II basis `cos(pi * k * (2n + 1) / 64)`, 8 x 32, computed by the same expression as
/// `measure::hash`'s, so the GPU multiplies by the CPU's very numbers.
pub fn dct_basis() -> Vec<f64> {
    const SIDE: usize = 32;
    let mut basis = Vec::with_capacity(8 * SIDE);
    for k in 0..8 {
        for n in 0..SIDE {
            basis.push(
                (std::f64::consts::PI * k as f64 * (2 * n + 1) as f64 / (2 * SIDE) as f64).cos(),
            );
        }
    }
    basis
}

/// Sharpness, brightness and clipping from the `analyse` kernel's four sums, as
/// `quality::analyse` finishes them, and the hashes.
pub fn image_quality(
    stats: [u64; 4],
    width: u32,
    height: u32,
    phash: u64,
    dhash: u64,
) -> ImageQuality {
    let (w, h) = (width as usize, height as usize);
    let n = (w * h).max(1) as f64;
    let sharpness = if w < 2 || h < 2 {
        0.0
    } else {
        let count = (w * h) as i128;
        // The kernel sums the signed Laplacian in a u64, two's complement.
        let sum = stats[0] as i64 as i128;
        let numerator = stats[1] as i128 * count - sum * sum;
        numerator as f64 / (count * count) as f64
    };
    ImageQuality {
        sharpness,
        brightness: stats[2] as f64 / n,
        clipped_fraction: stats[3] as f64 / n,
        phash,
        dhash,
    }
}

/// `resample_pass` for one job, thread by thread.
pub fn pass_on_host(arena: &mut [u8], job: &PassJob, bounds: &[i32], weights: &[i32]) {
    let lines = job.lines as u64;
    let axis_bounds = &bounds[job.bounds as usize..];
    let axis_weights = &weights[job.weights as usize..];
    for t in 0..job.outputs() {
        let (i, line) = (t / lines, t % lines);
        let start = axis_bounds[2 * i as usize] as u64;
        let count = axis_bounds[2 * i as usize + 1] as u64;
        let w = &axis_weights[(i * job.taps as u64) as usize..];
        let s = job.src + line * job.src_line + start * job.src_step;
        let mut acc: i32 = 1 << (WEIGHT_PRECISION_BITS - 1);
        for k in 0..count {
            acc += arena[(s + k * job.src_step) as usize] as i32 * w[k as usize];
        }
        let byte = (acc.max(0) >> WEIGHT_PRECISION_BITS).min(255) as u8;
        arena[(job.dst + i * job.dst_step + line * job.dst_line) as usize] = byte;
    }
}

/// The `analyse` kernel's four sums for one plane: Laplacian sum (two's complement), sum of
/// squares, luminance sum, clipped pixels.
pub fn analyse_on_host(arena: &[u8], plane: &Plane) -> [u64; 4] {
    let (w, h) = (plane.width as i64, plane.height as i64);
    let p = &arena[plane.offset as usize..][..plane.len() as usize];
    let reflect = |i: i64, n: i64| {
        if i < 0 {
            -i
        } else if i >= n {
            2 * n - 2 - i
        } else {
            i
        }
    };
    let laplacian = w >= 2 && h >= 2;
    let mut stats = [0u64; 4];
    for y in 0..h {
        for x in 0..w {
            let c = p[(y * w + x) as usize] as i32;
            stats[2] += c as u64;
            stats[3] += (c == 0 || c == 255) as u64;
            if laplacian {
                let at = |y: i64, x: i64| p[(y * w + x) as usize] as i32;
                let v = at(reflect(y - 1, h), x)
                    + at(reflect(y + 1, h), x)
                    + at(y, reflect(x - 1, w))
                    + at(y, reflect(x + 1, w))
                    - 4 * c;
                stats[0] = stats[0].wrapping_add(v as i64 as u64);
                stats[1] += (v * v) as u64;
            }
        }
    }
    stats
}

/// `phash32` for one 32x32 image: thread `t`'s coefficient in the kernel's order of operations,
/// then the rank-based median.
pub fn phash_on_host(pixels: &[u8], basis: &[f64]) -> u64 {
    let mut coefficient = [0f64; 64];
    for (t, c) in coefficient.iter_mut().enumerate() {
        let (cos_k, cos_l) = (&basis[(t / 8) * 32..][..32], &basis[(t % 8) * 32..][..32]);
        let mut sum = -0.0f64;
        for x in 0..32 {
            let mut column = 0.0f64;
            for y in 0..32 {
                column += pixels[y * 32 + x] as f64 * cos_k[y];
            }
            sum += column * cos_l[x];
        }
        *c = sum;
    }
    let mut order = [0f64; 2];
    for (t, &sum) in coefficient.iter().enumerate() {
        let rank = coefficient
            .iter()
            .enumerate()
            .filter(|&(j, &other)| other < sum || (other == sum && j < t))
            .count();
        if rank == 31 {
            order[0] = sum;
        }
        if rank == 32 {
            order[1] = sum;
        }
    }
    let median = (order[0] + order[1]) / 2.0;
    coefficient
        .iter()
        .fold(0u64, |hash, &v| (hash << 1) | (v > median) as u64)
}

/// `dhash9x8` for one 9x8 image.
pub fn dhash_on_host(pixels: &[u8]) -> u64 {
    let mut hash = 0u64;
    for row in pixels.chunks_exact(9) {
        for x in 0..8 {
            hash = (hash << 1) | (row[x + 1] > row[x]) as u64;
        }
    }
    hash
}

/// Resizes one plane with the pass jobs the GPU would run, applied by [`pass_on_host`]: the
/// same bytes as `resample::resize_plane` (or `resize_plane_transposed`), which the tests check.
pub fn resize_with_passes(
    luma: &LumaImage,
    out_w: u32,
    out_h: u32,
    filter: Filter,
    transposed: bool,
) -> Vec<u8> {
    let mut plan = MeasurePlan {
        arena_len: 0,
        inputs: Vec::new(),
        stages: Vec::new(),
        bounds: Vec::new(),
        weights: Vec::new(),
        analysis: Vec::new(),
        phash_base: 0,
        dhash_base: 0,
        tables: Vec::new(),
    };
    let offset = plan.alloc(luma.pixels.len() as u64);
    let input = Plane {
        offset,
        width: luma.width,
        height: luma.height,
        ready: 0,
    };
    let out = plan.resize(input, out_w, out_h, filter, transposed, None);
    let mut arena = vec![0u8; plan.arena_len as usize];
    arena[..luma.pixels.len()].copy_from_slice(&luma.pixels);
    for job in plan.stages.iter().flatten() {
        pass_on_host(&mut arena, job, &plan.bounds, &plan.weights);
    }
    arena[out.offset as usize..][..out.len() as usize].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{CpuKernels, QualityKernels};
    use crate::pixels::resample::{resize_plane, resize_plane_transposed};

    /// A photo-like plane: smooth gradients, edges and noise, so every filter lobe matters.
    fn image(width: u32, height: u32, seed: u32) -> LumaImage {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let pixels = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let edge = if (x / 7 + y / 5) % 3 == 0 { 90 } else { 0 };
                ((x * 3 + y * 2) % 160 + edge + (state >> 28)) as u8
            })
            .collect();
        LumaImage {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn passes_reproduce_the_cpu_resize_byte_for_byte() {
        let shapes = [
            (37, 23, 12, 19),
            (23, 37, 100, 7),
            (640, 480, 512, 384),
            (300, 200, 512, 341),
            (512, 700, 128, 128),
            (128, 128, 32, 32),
            (100, 80, 9, 8),
            (32, 50, 32, 32),
            (9, 8, 9, 8),
            (1, 5, 3, 2),
        ];
        for filter in [Filter::Box, Filter::Bicubic, Filter::Lanczos3] {
            for (i, &(w, h, ow, oh)) in shapes.iter().enumerate() {
                let img = image(w, h, i as u32);
                let (wu, hu, owu, ohu) = (w as usize, h as usize, ow as usize, oh as usize);
                let cpu = resize_plane(&img.pixels, wu, hu, owu, ohu, filter);
                let gpu = resize_with_passes(&img, ow, oh, filter, false);
                assert_eq!(gpu, cpu, "{filter:?} {w}x{h} -> {ow}x{oh}");
                let cpu = resize_plane_transposed(&img.pixels, wu, hu, owu, ohu, filter);
                let gpu = resize_with_passes(&img, ow, oh, filter, true);
                assert_eq!(gpu, cpu, "{filter:?} {w}x{h} -> {ow}x{oh} transposed");
            }
        }
    }

    #[test]
    fn the_emulated_plan_measures_what_the_cpu_measures() {
        // Below the hash pre-reduction, at the analysis size, above it, enlarged, extreme
        // aspect ratios, and a hash input already at the hash size.
        let sizes = [
            (64, 64),
            (100, 300),
            (512, 512),
            (512, 900),
            (777, 512),
            (1024, 768),
            (600, 2000),
            (200, 150),
            (129, 400),
            (32, 32),
            (3000, 90),
        ];
        let images: Vec<LumaImage> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(w, h))| image(w, h, 100 + i as u32))
            .collect();
        let plan = MeasurePlan::new(&sizes);
        let gpu = plan.emulate(&images).unwrap();
        for (image, gpu) in images.iter().zip(gpu) {
            let cpu = CpuKernels.measure(image);
            assert_eq!(gpu, cpu, "{}x{}", image.width, image.height);
        }
    }

    #[test]
    fn phash_kernel_order_matches_the_cpu_dct() {
        let basis = dct_basis();
        for seed in 0..20 {
            let pixels = image(32, 32, seed).pixels;
            assert_eq!(
                phash_on_host(&pixels, &basis),
                crate::measure::hash::phash_from_32x32(&pixels)
            );
        }
        // Flat images: every coefficient but the DC one is zero, ties everywhere.
        let flat = vec![77u8; 1024];
        assert_eq!(
            phash_on_host(&flat, &basis),
            crate::measure::hash::phash_from_32x32(&flat)
        );
    }

    #[test]
    fn arena_regions_do_not_overlap_and_stages_follow_dependencies() {
        let sizes = [(1024, 768), (64, 80), (512, 512), (300, 200)];
        let plan = MeasurePlan::new(&sizes);
        let mut regions: Vec<(u64, u64)> = plan
            .inputs
            .iter()
            .map(|p| (p.offset, p.offset + p.len()))
            .collect();
        regions.push((plan.phash_base, plan.phash_base + 1024 * 4));
        regions.push((plan.dhash_base, plan.dhash_base + 72 * 4));
        let job_outputs: Vec<(u64, u64)> = plan
            .stages
            .iter()
            .flatten()
            .filter(|j| j.dst < plan.phash_base || j.dst >= plan.dhash_base + 72 * 4)
            .map(|j| (j.dst, j.dst + j.outputs()))
            .collect();
        regions.extend(job_outputs);
        regions.sort();
        for pair in regions.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{pair:?} overlap");
        }
        assert!(regions.last().unwrap().1 <= plan.arena_len);
        // 1024x768: analysis (2 passes), pre-reduction (2), hashes (2 each) = 6 launches.
        assert_eq!(plan.stages.len(), 6);
        // Every job reads what an earlier stage (or the upload) wrote.
        let mut written: Vec<(u64, u64)> = plan
            .inputs
            .iter()
            .map(|p| (p.offset, p.offset + p.len()))
            .collect();
        for stage in &plan.stages {
            for job in stage {
                assert!(
                    written.iter().any(|&(a, b)| a <= job.src && job.src < b),
                    "{job:?} reads unwritten memory"
                );
            }
            written.extend(stage.iter().map(|j| (j.dst, j.dst + j.outputs())));
        }
        assert_eq!(
            plan.pack_inputs(&[image(1024, 768, 0)]),
            None,
            "wrong count"
        );
    }

    #[test]
    fn launch_sizes_cover_every_output() {
        let plan = MeasurePlan::new(&[(4000, 3000), (64, 64)]);
        for stage in &plan.stages {
            let launch = pass_launch(stage);
            assert_eq!(launch.grid.1 as usize, stage.len());
            assert_eq!(launch.block, (BLOCK_THREADS, 1, 1));
            assert!(launch.grid.0 >= 1 && launch.grid.0 <= 4096);
        }
        let launch = analyse_launch(&plan.analysis);
        assert_eq!(launch.grid.1, 2);
        assert_eq!(launch.block.0 % 32, 0, "the warp sums need whole warps");
        assert_eq!(phash_launch(5).grid, (1, 5, 1));
        assert_eq!(dhash_launch(129).grid, (2, 1, 1));
        assert_eq!(dhash_launch(0).grid, (1, 1, 1));
        let job = plan.stages[0][0];
        assert_eq!(job.fields()[0], job.src as i64);
        assert_eq!(
            MeasurePlan::job_table(&plan.stages[0]).len(),
            JOB_FIELDS * plan.stages[0].len()
        );
    }

    #[test]
    fn runs_are_split_by_count_and_by_cost() {
        assert_eq!(split_runs(&[1; 7], 3, u64::MAX), vec![0..3, 3..6, 6..7]);
        assert_eq!(split_runs(&[], 3, u64::MAX), Vec::<Range<usize>>::new());
        // 4 + 4 fit 10, the third does not; an item costing more than the budget runs alone.
        assert_eq!(
            split_runs(&[4, 4, 4, 20, 1, 1], 8, 10),
            vec![0..2, 2..3, 3..4, 4..6]
        );
    }

    #[test]
    fn batches_respect_the_arena_budget() {
        let sizes = vec![(1000, 1000); 10];
        let one = MeasurePlan::new(&sizes[..1]).arena_len;
        let runs = batches(&sizes, one * 3);
        assert_eq!(runs, vec![0..3, 3..6, 6..9, 9..10]);
        assert_eq!(
            batches(&sizes, 1),
            (0..10).map(|i| i..i + 1).collect::<Vec<_>>()
        );
        assert!(batches(&[], 1).is_empty());
    }
}
