//! Perceptual hashes built exactly as the Python `imagehash` package builds them, so hashes
//! from mmcurate and from Python tools can be compared:
//! - pHash: Lanczos resize to 32x32, 2-D DCT-II, the 8x8 lowest frequencies compared with
//!   their median (`imagehash.phash`, `hash_size=8, highfreq_factor=4`);
//! - dHash: Lanczos resize to 9x8, each pixel compared with its left neighbour
//!   (`imagehash.dhash`).
//!
//! Bits are packed row-major, first bit most significant, so `format!("{:016x}")` prints the
//! same hex string as `str(imagehash.phash(...))`.

use std::sync::OnceLock;

use super::quality::resize;
use crate::pixels::resample::Filter;
use crate::pixels::LumaImage;

const SIDE: usize = 32;
const LOW: usize = 8;

/// `cos(pi * k * (2n + 1) / 64)` for the 8 lowest frequencies k: DCT-II basis of length 32.
fn dct_basis() -> &'static [[f64; SIDE]; LOW] {
    static BASIS: OnceLock<[[f64; SIDE]; LOW]> = OnceLock::new();
    BASIS.get_or_init(|| {
        let mut basis = [[0.0; SIDE]; LOW];
        for (k, row) in basis.iter_mut().enumerate() {
            for (n, v) in row.iter_mut().enumerate() {
                *v = (std::f64::consts::PI * k as f64 * (2 * n + 1) as f64 / (2 * SIDE) as f64)
                    .cos();
            }
        }
        basis
    })
}

/// The 64-bit pHash of a luminance image.
pub fn phash(luma: &LumaImage) -> u64 {
    let small = resize(luma, SIDE as u32, SIDE as u32, Filter::Lanczos3);
    phash_from_32x32(&small.pixels)
}

/// pHash of an already resized 32x32 image (row-major bytes).
pub fn phash_from_32x32(pixels: &[u8]) -> u64 {
    let basis = dct_basis();
    // DCT along columns (axis 0) for the low frequencies, then along rows (axis 1). scipy's
    // unnormalised DCT-II has a factor 2 per axis; it scales every coefficient alike and so
    // does not change any comparison with the median.
    let mut columns = [[0.0f64; SIDE]; LOW];
    for (k, out) in columns.iter_mut().enumerate() {
        for (y, &b) in basis[k].iter().enumerate() {
            let row = &pixels[y * SIDE..][..SIDE];
            for (x, o) in out.iter_mut().enumerate() {
                *o += row[x] as f64 * b;
            }
        }
    }
    let mut low = [0.0f64; LOW * LOW];
    for k in 0..LOW {
        for l in 0..LOW {
            low[k * LOW + l] = columns[k].iter().zip(&basis[l]).map(|(a, b)| a * b).sum();
        }
    }
    let mut sorted = low;
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    low.iter()
        .fold(0u64, |hash, &v| (hash << 1) | (v > median) as u64)
}

/// The 64-bit dHash of a luminance image.
pub fn dhash(luma: &LumaImage) -> u64 {
    let small = resize(luma, 9, 8, Filter::Lanczos3);
    let mut hash = 0u64;
    for row in small.pixels.chunks_exact(9) {
        for x in 0..8 {
            hash = (hash << 1) | (row[x + 1] > row[x]) as u64;
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scipy.fftpack.dct(dct(x, axis=0), axis=1) written out from the definition, over the
    /// full 32x32 block, as an independent check of the separable low-frequency version.
    fn reference_phash(pixels: &[u8]) -> u64 {
        let n = SIDE as f64;
        let mut low = Vec::new();
        for k in 0..LOW {
            for l in 0..LOW {
                let mut v = 0.0;
                for y in 0..SIDE {
                    for x in 0..SIDE {
                        v += 4.0
                            * pixels[y * SIDE + x] as f64
                            * (std::f64::consts::PI * k as f64 * (2 * y + 1) as f64 / (2.0 * n))
                                .cos()
                            * (std::f64::consts::PI * l as f64 * (2 * x + 1) as f64 / (2.0 * n))
                                .cos();
                    }
                }
                low.push(v);
            }
        }
        let mut sorted = low.clone();
        sorted.sort_by(f64::total_cmp);
        let median = (sorted[31] + sorted[32]) / 2.0;
        low.iter().fold(0, |h, &v| (h << 1) | (v > median) as u64)
    }

    #[test]
    fn phash_matches_the_dct_definition() {
        let mut state = 12345u32;
        for _ in 0..5 {
            let pixels: Vec<u8> = (0..SIDE * SIDE)
                .map(|i| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    // Smooth structure plus noise, like a photo.
                    (((i % 32) * 3 + (i / 32) * 2) as u32 + (state >> 27)) as u8
                })
                .collect();
            assert_eq!(phash_from_32x32(&pixels), reference_phash(&pixels));
        }
    }

    #[test]
    fn dhash_of_a_gradient() {
        let rising = LumaImage {
            width: 90,
            height: 80,
            pixels: (0..90 * 80).map(|i| ((i % 90) * 2) as u8).collect(),
        };
        assert_eq!(dhash(&rising), u64::MAX);
        let falling = LumaImage {
            width: 90,
            height: 80,
            pixels: (0..90 * 80).map(|i| 200 - ((i % 90) * 2) as u8).collect(),
        };
        assert_eq!(dhash(&falling), 0);
    }
}
