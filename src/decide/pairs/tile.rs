//! Dot products of every row of one block of vectors with every row of another: the one
//! matrix product that k-means, partition assignment and the pair search all run, through the
//! `gemm` crate (as models::clip_cpu does). It runs on the calling thread only: callers split
//! the work into fixed blocks and parallelise over them, so no result depends on the thread
//! count.

/// `out[i * n + j] = left_i · right_j` for the `m = left.len() / dim` rows of `left` and the
/// `n = right.len() / dim` rows of `right` (both row-major); `out` must hold `m * n` values.
pub(crate) fn dot_products(left: &[f32], right: &[f32], dim: usize, out: &mut [f32]) {
    if dim == 0 {
        out.fill(0.0);
        return;
    }
    let (m, n) = (left.len() / dim, right.len() / dim);
    assert!(out.len() >= m * n, "dot_products: output too small");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: `left` holds m rows of `dim` values (row stride dim, column stride 1), `right`
    // read as the dim × n matrix rightᵀ (row stride 1, column stride dim) holds n rows of
    // `dim`, and `out` holds at least m × n values (row stride n); nothing else aliases them.
    unsafe {
        gemm::gemm(
            m,
            n,
            dim,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            left.as_ptr(),
            1,
            dim as isize,
            right.as_ptr(),
            dim as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_a_plain_loop_on_odd_shapes() {
        let dim = 37;
        let left: Vec<f32> = (0..5 * dim).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let right: Vec<f32> = (0..3 * dim).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
        let mut out = vec![0f32; 15];
        dot_products(&left, &right, dim, &mut out);
        for i in 0..5 {
            for j in 0..3 {
                let expect: f32 = (0..dim)
                    .map(|d| left[i * dim + d] * right[j * dim + d])
                    .sum();
                assert_eq!(out[i * 3 + j], expect, "({i}, {j})");
            }
        }
        let mut none = vec![1f32; 4];
        dot_products(&[], &right, dim, &mut none);
        assert_eq!(none, [1.0; 4]);
    }
}
