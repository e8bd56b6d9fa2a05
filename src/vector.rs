//! Vector maths on f32 embeddings: unit-length normalisation, and one dot product (the cosine
//! of unit vectors) that gives the same bits on every CPU.
//!
//! Low level: used by the stages (semantic dedup, alignment scores) and the pipeline alike; it
//! uses no stage. Searching for similar pairs is `decide::pairs`'; only the interface of its
//! products ([`PairProducts`]), which the CPU and the GPU implement, is here.

use rayon::prelude::*;

/// Normalises rows in place to unit L2 length (rows of zero length stay zero).
///
/// Rows holding a non-finite value are left as they are; [`pairs_above`] never pairs them.
/// A trailing partial row (when `vectors.len()` is not a multiple of `dim`) is ignored.
pub fn normalise(vectors: &mut [f32], dim: usize) {
    if dim == 0 {
        return;
    }
    vectors.par_chunks_exact_mut(dim).for_each(|row| {
        // f64 so that the norm of a row of tiny or huge values neither underflows nor
        // overflows, and the result is unit length to the last bit f32 can give.
        let norm = row
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        if norm > 0.0 && norm.is_finite() {
            for v in row.iter_mut() {
                *v = (f64::from(*v) / norm) as f32;
            }
        }
    });
}

/// The cosine of two unit vectors, exactly as every reported pair's is computed.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot_kernel()(a, b)
}

/// Accumulators of the dot product: 32 independent lanes, so the loop vectorises into 8 SSE
/// or 4 AVX registers and the additions do not wait on each other.
const LANES: usize = 32;

/// The dot product for this CPU. Both versions do the same additions in the same order
/// (separate multiply and add, no FMA), so they give bit-identical results.
pub fn dot_kernel() -> fn(&[f32], &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        return dot_avx2;
    }
    dot_body
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    /// The same code compiled for AVX2, which the portable x86-64 target does not assume.
    #[target_feature(enable = "avx2")]
    unsafe fn inner(a: &[f32], b: &[f32]) -> f32 {
        dot_body(a, b)
    }
    // SAFETY: dot_kernel hands out this function only when the CPU supports AVX2.
    unsafe { inner(a, b) }
}

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0f32; LANES];
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..LANES {
            acc[lane] += x[lane] * y[lane];
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for lane in 0..width {
            acc[lane] += acc[lane + width];
        }
    }
    acc[0] + tail
}

/// Whole rows of `dim` values in `vectors` (0 when `dim` is 0).
pub fn row_count(vectors: &[f32], dim: usize) -> usize {
    vectors.len().checked_div(dim).unwrap_or(0)
}

/// Row `i` of a row-major matrix of `dim` columns.
#[inline]
pub fn row(vectors: &[f32], dim: usize, i: usize) -> &[f32] {
    &vectors[i * dim..(i + 1) * dim]
}

/// A block of unit vectors searched for close pairs, as `decide::pairs` gathers a partition:
/// `vectors.len() / dim` rows, row-major, the first `primaries` of them the rows every pair
/// asked for includes.
#[derive(Debug, Clone, Copy)]
pub struct PairBlock<'a> {
    pub vectors: &'a [f32],
    pub primaries: usize,
}

/// A candidate pair of a [`PairBlock`]: rows `x < y`, `x` a primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Candidate {
    pub x: u32,
    pub y: u32,
}

/// Where the dot products of a pair search run: the CPU's blocked products
/// (`decide::pairs::CpuProducts`, the reference) or a GPU's (`gpu::pair_products`). Defined
/// here, below both, so that the GPU backend implements it without depending on `decide`.
pub trait PairProducts: Sync {
    /// `cpu` or `cuda:N`, for the log and the summary.
    fn device(&self) -> String;

    /// For each block (in order), every pair `x < y` of its rows with `x` a primary whose dot
    /// product is at least `floor`, each once, in any order. Never fails: a backend that
    /// cannot compute falls back to the CPU inside itself.
    fn candidates(&self, blocks: &[PairBlock], dim: usize, floor: f32) -> Vec<Vec<Candidate>>;
}

/// Deterministic test data without a rand crate, for the tests of vector code here and in
/// `decide`.
#[cfg(test)]
pub(crate) mod test_rng {
    /// xorshift64*, and standard normal values from it by Box–Muller.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform in (0, 1].
        pub fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
        }

        pub fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_rng::Rng;

    #[test]
    fn normalise_gives_unit_rows_and_keeps_zero_rows() {
        let mut v = vec![
            3.0,
            4.0,
            0.0,
            0.0,
            0.0,
            0.0,
            -1e-30,
            0.0,
            1e-30,
            1.0,
            f32::NAN,
            2.0,
        ];
        normalise(&mut v, 3);
        assert_eq!(&v[..3], &[0.6, 0.8, 0.0]);
        assert_eq!(&v[3..6], &[0.0, 0.0, 0.0]);
        // Tiny values neither underflow to zero nor come out off unit length.
        assert_eq!(
            &v[6..9],
            &[
                -std::f32::consts::FRAC_1_SQRT_2,
                0.0,
                std::f32::consts::FRAC_1_SQRT_2
            ]
        );
        // A row with a NaN is left alone.
        assert_eq!(v[9], 1.0);
        assert!(v[10].is_nan());
        assert_eq!(v[11], 2.0);

        let mut rng = Rng(7);
        let mut w: Vec<f32> = (0..5 * 512).map(|_| (rng.normal() * 10.0) as f32).collect();
        normalise(&mut w, 512);
        for r in w.chunks_exact(512) {
            let norm: f64 = r.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            assert!((norm - 1.0).abs() < 1e-6, "{norm}");
        }
        // No-ops rather than panics.
        normalise(&mut [], 4);
        normalise(&mut [1.0, 2.0], 0);
    }

    #[test]
    fn dot_matches_a_plain_f64_sum_at_every_length() {
        let mut rng = Rng(11);
        for len in [0, 1, 5, 31, 32, 33, 64, 100, 512, 768] {
            let a: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
            let b: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
            let exact: f64 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum();
            let fast = dot_kernel()(&a, &b);
            assert!(
                (f64::from(fast) - exact).abs() < 1e-4,
                "len {len}: {fast} vs {exact}"
            );
            assert_eq!(fast.to_bits(), dot_body(&a, &b).to_bits(), "len {len}");
        }
    }
}
