//! Pillow's convolution resampling (`Image.resize` with `BOX`, `BICUBIC` or `LANCZOS`), byte for
//! byte, on one 8-bit plane.
//!
//! Written here rather than taken from a crate: `fast_image_resize` follows Pillow's filters but
//! not its fixed-point arithmetic, and its one-channel horizontal pass was the hottest function
//! of the measure stage (a fifth of the CPU time). Here both passes run as vertical passes over
//! whole rows, which the compiler vectorises, with SIMD transposes between them. The result is
//! Pillow's exactly (tests/it/resample_reference.rs), which is what lets pHash follow `imagehash`
//! and CLIP preprocessing follow `CLIPImageProcessor`.

use std::cell::RefCell;
use std::f64::consts::PI;
use std::rc::Rc;

/// Pillow's resampling filters that we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Area average (`Image.BOX`).
    Box,
    /// Cubic convolution with a = -0.5 (`Image.BICUBIC`, Catmull-Rom).
    Bicubic,
    /// Windowed sinc over 3 lobes (`Image.LANCZOS`).
    Lanczos3,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bicubic => 2.0,
            Filter::Lanczos3 => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos3 => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * PI;
        x.sin() / x
    }
}

/// Fixed-point precision of the weights, as Pillow's `PRECISION_BITS` for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The weights of one axis: output `i` is the weighted sum of inputs `start[i]..` with
/// `weights[i * taps..][..taps]` (trailing zeros where fewer inputs contribute).
struct Coefficients {
    start: Vec<usize>,
    taps: usize,
    weights: Vec<i32>,
}

impl Coefficients {
    /// Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` for the whole input range.
    fn new(in_size: usize, out_size: usize, filter: Filter) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let taps = support.ceil() as usize * 2 + 1;
        let mut start = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * taps];
        let mut k = vec![0f64; taps];
        for (xx, row) in weights.chunks_exact_mut(taps).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            // `as` truncates toward zero, as C's `(int)` does.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
            let mut ww = 0.0;
            for (x, kx) in k[..xmax].iter_mut().enumerate() {
                *kx = filter.weight((x as f64 + xmin as f64 - center + 0.5) / filterscale);
                ww += *kx;
            }
            for (w, &kx) in row.iter_mut().zip(&k[..xmax]) {
                let kx = if ww != 0.0 { kx / ww } else { kx };
                let scaled = kx * (1u32 << PRECISION_BITS) as f64;
                *w = if kx < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                };
            }
            start.push(xmin);
        }
        Coefficients {
            start,
            taps,
            weights,
        }
    }

    fn len(&self) -> usize {
        self.start.len()
    }

    /// The first input row any output needs, and one past the last.
    fn span(&self) -> (usize, usize) {
        let last = self.len() - 1;
        let used = self.weights[last * self.taps..]
            .iter()
            .rposition(|&w| w != 0)
            .map_or(0, |i| i + 1);
        (self.start[0], self.start[last] + used)
    }
}

/// Fixed-point precision of [`PassCoefficients::weights`]: a pass adds `1 << (bits - 1)` to
/// the i32 sum of `pixel * weight`, then keeps bits `bits..bits + 8`, saturating (Pillow's
/// `clip8`).
pub const WEIGHT_PRECISION_BITS: u32 = PRECISION_BITS;

/// The weights of one resampling pass exactly as the CPU applies them, for other backends (the
/// GPU's `kernels/resample.cu`) to reproduce its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassCoefficients {
    /// Weights per output: the stride of `weights`.
    pub taps: usize,
    /// Per output: the first input it reads and how many (never past the input's end).
    pub bounds: Vec<(u32, u32)>,
    /// `bounds.len() * taps` fixed-point weights; those past an output's count are zero.
    pub weights: Vec<i32>,
}

/// The weights that [`resize_plane`] and [`resize_plane_transposed`] use along an axis that
/// changes from `in_size` to `out_size` pixels. The count of each output stops at its last
/// non-zero weight, as the CPU loop does; leading zero weights add nothing to the integer sum.
pub fn pass_coefficients(in_size: usize, out_size: usize, filter: Filter) -> PassCoefficients {
    let c = Coefficients::new(in_size, out_size, filter);
    let bounds = c
        .weights
        .chunks_exact(c.taps)
        .zip(&c.start)
        .map(|(row, &start)| {
            let count = row.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1);
            (start as u32, count as u32)
        })
        .collect();
    PassCoefficients {
        taps: c.taps,
        bounds,
        weights: c.weights,
    }
}

/// Resizes a `width` x `height` plane to `out_width` x `out_height` as Pillow's `Image.resize`
/// does for mode `L`: a horizontal pass, then a vertical one, each skipped when that side keeps
/// its size.
pub fn resize_plane(
    pixels: &[u8],
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
    filter: Filter,
) -> Vec<u8> {
    run(pixels, width, height, out_width, out_height, filter, false)
}

/// The same resize with the passes in the other order, returned transposed: the plane is
/// `out_height` pixels wide and `out_width` tall. It saves the transposes that Pillow's pass
/// order costs here, for callers that do not need Pillow's exact rounding and either do not
/// mind the orientation (the Laplacian, the mean and the clipped count are the same on a
/// transposed plane) or transpose back by resizing again.
pub fn resize_plane_transposed(
    pixels: &[u8],
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
    filter: Filter,
) -> Vec<u8> {
    run(pixels, width, height, out_width, out_height, filter, true)
}

fn run(
    pixels: &[u8],
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
    filter: Filter,
    transposed: bool,
) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height, "plane size");
    assert!(out_width > 0 && out_height > 0, "empty output");
    let vertical = (out_height != height).then(|| coefficients(height, out_height, filter));
    let horizontal = (out_width != width).then(|| coefficients(width, out_width, filter));
    let job = Job {
        pixels,
        width,
        height,
        out_width,
        out_height,
        horizontal: horizontal.as_deref(),
        vertical: vertical.as_deref(),
        transposed,
    };
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, as checked just above.
            return unsafe { resize_avx2(&job, scratch) };
        }
        resize_body(&job, scratch)
    })
}

/// One resize: the input plane, the output size and the weights of the axes that change.
struct Job<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
    out_width: usize,
    out_height: usize,
    horizontal: Option<&'a Coefficients>,
    vertical: Option<&'a Coefficients>,
    /// Vertical pass first, and the result left transposed.
    transposed: bool,
}

/// The same code compiled for AVX2: the multiply-adds run on 8 lanes instead of 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn resize_avx2(job: &Job, scratch: &mut Scratch) -> Vec<u8> {
    resize_body(job, scratch)
}

/// Buffers reused across calls on a thread, so a resize allocates only its output.
#[derive(Default)]
struct Scratch {
    columns: Vec<u8>,
    resized: Vec<u8>,
    rows: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
    /// The last few coefficient sets: the hash sizes and common image sizes repeat.
    static COEFFICIENTS: RefCell<Vec<CachedCoefficients>> = const { RefCell::new(Vec::new()) };
}

/// Input size, output size, filter and the weights they give.
type CachedCoefficients = (usize, usize, Filter, Rc<Coefficients>);

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Rc<Coefficients> {
    COEFFICIENTS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(hit) = cache
            .iter()
            .find(|(i, o, f, _)| (*i, *o, *f) == (in_size, out_size, filter))
        {
            return hit.3.clone();
        }
        let c = Rc::new(Coefficients::new(in_size, out_size, filter));
        if cache.len() >= 16 {
            cache.remove(0);
        }
        cache.push((in_size, out_size, filter, c.clone()));
        c
    })
}

/// Grows a scratch buffer to at least `len` and hands out exactly `len`.
fn sized<T: Copy + Default>(buffer: &mut Vec<T>, len: usize) -> &mut [T] {
    if buffer.len() < len {
        buffer.resize(len, T::default());
    }
    &mut buffer[..len]
}

#[inline(always)]
fn resize_body(job: &Job, scratch: &mut Scratch) -> Vec<u8> {
    let (width, height, out_width) = (job.width, job.height, job.out_width);
    let mut out = vec![0u8; out_width * job.out_height];
    if job.transposed {
        // Rows first, on the plane as it is; then its columns, as rows of the transpose.
        let rows: &[u8] = match job.vertical {
            Some(v) => {
                let rows = sized(&mut scratch.rows, width * job.out_height);
                vertical_pass(job.pixels, width, v, 0, rows);
                rows
            }
            None => job.pixels,
        };
        match job.horizontal {
            Some(h) => {
                let columns = sized(&mut scratch.columns, rows.len());
                transpose(rows, width, job.out_height, columns);
                vertical_pass(columns, job.out_height, h, 0, &mut out);
            }
            None => transpose(rows, width, job.out_height, &mut out),
        }
        return out;
    }
    let Some(horizontal) = job.horizontal else {
        match job.vertical {
            Some(v) => vertical_pass(job.pixels, width, v, 0, &mut out),
            None => out.copy_from_slice(job.pixels),
        }
        return out;
    };
    // Only the rows the vertical pass reads, as Pillow does.
    let rows = job.vertical.map_or((0, height), |v| v.span());
    let band = &job.pixels[rows.0 * width..rows.1 * width];
    let band_height = rows.1 - rows.0;
    // Columns become rows, so the horizontal pass is a vertical one.
    let columns = sized(&mut scratch.columns, band.len());
    transpose(band, width, band_height, columns);
    let resized = sized(&mut scratch.resized, out_width * band_height);
    vertical_pass(columns, band_height, horizontal, 0, resized);
    match job.vertical {
        Some(v) => {
            let back = sized(&mut scratch.rows, resized.len());
            transpose(resized, band_height, out_width, back);
            vertical_pass(back, out_width, v, rows.0, &mut out);
        }
        None => transpose(resized, band_height, out_width, &mut out),
    }
    out
}

/// Columns per register block of the vertical pass: 32 lanes of i32 are four AVX2 registers
/// (measured: 64 spills and runs 1.6x slower; a row-long accumulator in memory 1.2x slower).
const LANES: usize = 32;

/// One output row per coefficient set: the weighted sum of input rows, in Pillow's fixed
/// point. `first_row` is the input row that `src` starts at.
#[inline(always)]
fn vertical_pass(src: &[u8], width: usize, c: &Coefficients, first_row: usize, out: &mut [u8]) {
    for (yy, out_row) in out.chunks_exact_mut(width).enumerate() {
        let start = c.start[yy] - first_row;
        let weights = &c.weights[yy * c.taps..][..c.taps];
        let first = weights.iter().position(|&w| w != 0).unwrap_or(0);
        let last = weights.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1);
        let taps = &weights[first..last];
        let rows = &src[(start + first) * width..];
        // Blocks of columns whose sums stay in registers across the taps.
        let full = width / LANES * LANES;
        for x in (0..full).step_by(LANES) {
            let mut acc = [1i32 << (PRECISION_BITS - 1); LANES];
            for (k, &weight) in taps.iter().enumerate() {
                let row: &[u8; LANES] = rows[k * width + x..][..LANES].try_into().unwrap();
                for i in 0..LANES {
                    acc[i] += row[i] as i32 * weight;
                }
            }
            let out: &mut [u8; LANES] = (&mut out_row[x..x + LANES]).try_into().unwrap();
            for i in 0..LANES {
                out[i] = clip8(acc[i]);
            }
        }
        for x in full..width {
            let mut acc = 1i32 << (PRECISION_BITS - 1);
            for (k, &weight) in taps.iter().enumerate() {
                acc += rows[k * width + x] as i32 * weight;
            }
            out_row[x] = clip8(acc);
        }
    }
}

/// Pillow's `clip8`: back from fixed point to a byte, saturating.
#[inline(always)]
fn clip8(a: i32) -> u8 {
    (a.max(0) >> PRECISION_BITS).min(255) as u8
}

/// `out[x * height + y] = src[y * width + x]`.
fn transpose(src: &[u8], width: usize, height: usize, out: &mut [u8]) {
    debug_assert_eq!(src.len(), width * height);
    debug_assert_eq!(out.len(), width * height);
    let (w8, h8) = (width / 8 * 8, height / 8 * 8);
    // 64x64 tiles keep the rows being read and written in the L1 cache.
    #[cfg(target_arch = "x86_64")]
    for y0 in (0..h8).step_by(64) {
        for x0 in (0..w8).step_by(64) {
            for y in (y0..h8.min(y0 + 64)).step_by(8) {
                for x in (x0..w8.min(x0 + 64)).step_by(8) {
                    // SAFETY: the 8x8 block at (x, y) lies inside both planes, whose strides
                    // are `width` and `height`; SSE2 is part of the x86-64 baseline.
                    unsafe {
                        transpose8x8(
                            src.as_ptr().add(y * width + x),
                            width,
                            out.as_mut_ptr().add(x * height + y),
                            height,
                        )
                    }
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let (w8, h8) = (0, height);
    for y in 0..height {
        let from = if y < h8 { w8 } else { 0 };
        for x in from..width {
            out[x * height + y] = src[y * width + x];
        }
    }
}

/// Transposes one 8x8 block of bytes with three rounds of interleaves.
#[cfg(target_arch = "x86_64")]
unsafe fn transpose8x8(src: *const u8, src_stride: usize, dst: *mut u8, dst_stride: usize) {
    use std::arch::x86_64::*;
    let row = |i: usize| _mm_loadl_epi64(src.add(i * src_stride) as *const __m128i);
    let (a0, a1) = (
        _mm_unpacklo_epi8(row(0), row(1)),
        _mm_unpacklo_epi8(row(2), row(3)),
    );
    let (a2, a3) = (
        _mm_unpacklo_epi8(row(4), row(5)),
        _mm_unpacklo_epi8(row(6), row(7)),
    );
    let (b0, b1) = (_mm_unpacklo_epi16(a0, a1), _mm_unpackhi_epi16(a0, a1));
    let (b2, b3) = (_mm_unpacklo_epi16(a2, a3), _mm_unpackhi_epi16(a2, a3));
    let columns = [
        _mm_unpacklo_epi32(b0, b2),
        _mm_unpackhi_epi32(b0, b2),
        _mm_unpacklo_epi32(b1, b3),
        _mm_unpackhi_epi32(b1, b3),
    ];
    for (i, c) in columns.into_iter().enumerate() {
        _mm_storel_epi64(dst.add(2 * i * dst_stride) as *mut __m128i, c);
        _mm_storel_epi64(
            dst.add((2 * i + 1) * dst_stride) as *mut __m128i,
            _mm_srli_si128(c, 8),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_every_shape() {
        for (w, h) in [(1, 1), (8, 8), (9, 17), (33, 8), (5, 40), (64, 31)] {
            let src: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
            let mut out = vec![0; w * h];
            transpose(&src, w, h, &mut out);
            for y in 0..h {
                for x in 0..w {
                    assert_eq!(out[x * h + y], src[y * w + x], "{w}x{h} at ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn weights_sum_to_one_and_constant_planes_stay_constant() {
        for filter in [Filter::Box, Filter::Bicubic, Filter::Lanczos3] {
            for (from, to) in [(100, 37), (37, 100), (1000, 512), (9, 8), (128, 32)] {
                let c = Coefficients::new(from, to, filter);
                for row in c.weights.chunks_exact(c.taps) {
                    let sum: i32 = row.iter().sum();
                    assert!(
                        (sum - (1 << PRECISION_BITS)).abs() <= c.taps as i32,
                        "{sum}"
                    );
                }
                let plane = resize_plane(&vec![200u8; from * 3], from, 3, to, 5, filter);
                assert!(plane.iter().all(|&p| p == 200), "{filter:?} {from}->{to}");
            }
        }
    }

    #[test]
    fn exported_coefficients_stay_inside_the_input() {
        for filter in [Filter::Box, Filter::Bicubic, Filter::Lanczos3] {
            for (from, to) in [(100, 37), (37, 100), (4032, 512), (9, 8), (128, 32), (1, 5)] {
                let c = pass_coefficients(from, to, filter);
                assert_eq!((c.bounds.len(), c.weights.len()), (to, to * c.taps));
                for (i, &(start, count)) in c.bounds.iter().enumerate() {
                    assert!(start + count <= from as u32 && count as usize <= c.taps);
                    assert!(
                        c.weights[i * c.taps + count as usize..][..c.taps - count as usize]
                            .iter()
                            .all(|&w| w == 0)
                    );
                }
            }
        }
    }

    #[test]
    fn box_halving_averages_pairs() {
        // Box from 4 to 2: each output is the rounded mean of two inputs.
        let plane = resize_plane(&[10, 20, 30, 41], 4, 1, 2, 1, Filter::Box);
        assert_eq!(plane, vec![15, 36]);
    }
}
