//! Quality metrics on luminance: resizing to the analysis size, Laplacian-variance sharpness,
//! mean brightness and the clipped fraction.

use crate::pixels::resample::{resize_plane, resize_plane_transposed, Filter};
use crate::pixels::LumaImage;

/// Resizes with one of Pillow's filters, byte for byte as Pillow does (the filter support grows
/// with the reduction factor), which is what makes our pHash agree with `imagehash`'s.
pub fn resize(luma: &LumaImage, width: u32, height: u32, filter: Filter) -> LumaImage {
    let pixels = resize_plane(
        &luma.pixels,
        luma.width as usize,
        luma.height as usize,
        width as usize,
        height as usize,
        filter,
    );
    LumaImage {
        width,
        height,
        pixels,
    }
}

/// The size that makes the shorter side `side` pixels, keeping the aspect ratio.
pub fn shorter_side_size(luma: &LumaImage, side: u32) -> (u32, u32) {
    let scale = side as f64 / luma.width.min(luma.height) as f64;
    if luma.width <= luma.height {
        (side, ((luma.height as f64 * scale).round() as u32).max(1))
    } else {
        (((luma.width as f64 * scale).round() as u32).max(1), side)
    }
}

/// Resizes so the shorter side is `side` pixels, keeping the aspect ratio: an area (box)
/// filter when shrinking, bicubic (Catmull-Rom) when enlarging. The result is transposed
/// (`resample::resize_plane_transposed`), which [`analyse`] does not see and which saves a
/// transpose. `None` when the image already has that shorter side.
pub fn resize_shorter_side_transposed(luma: &LumaImage, side: u32) -> Option<LumaImage> {
    if luma.width.min(luma.height) == side {
        return None;
    }
    let (width, height) = shorter_side_size(luma, side);
    let filter = if width < luma.width {
        Filter::Box
    } else {
        Filter::Bicubic
    };
    let pixels = resize_plane_transposed(
        &luma.pixels,
        luma.width as usize,
        luma.height as usize,
        width as usize,
        height as usize,
        filter,
    );
    Some(LumaImage {
        width: height,
        height: width,
        pixels,
    })
}

/// What one pass over the analysis image gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalysisStats {
    /// Variance of the 3x3 Laplacian.
    pub sharpness: f64,
    /// Mean luminance, 0–255.
    pub brightness: f64,
    /// Fraction of pixels at 0 or 255.
    pub clipped_fraction: f64,
}

/// Pixels per inner block: with |Laplacian| <= 1020, 2048 squares still fit in a u32, so the
/// inner loop can use 32-bit lanes (which is what lets it vectorise) and stay exact.
const BLOCK: usize = 2048;

/// Sharpness, brightness and clipping in one pass; the same on the image and its transpose. Sharpness is the variance of the 3x3
/// Laplacian (`[0 1 0; 1 -4 1; 0 1 0]`, OpenCV's `ksize=1`) with reflect-101 borders, as
/// `cv2.Laplacian(img, cv2.CV_64F).var()` computes it. All sums are exact integers, so the
/// result does not depend on summation order (threads or devices).
pub fn analyse(luma: &LumaImage) -> AnalysisStats {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, as checked just above.
        return unsafe { analyse_avx2(luma) };
    }
    analyse_body(luma)
}

/// The same code compiled for AVX2, which the portable x86-64 target does not assume: the
/// inner loops then run on 8 or 16 lanes instead of 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn analyse_avx2(luma: &LumaImage) -> AnalysisStats {
    analyse_body(luma)
}

#[inline(always)]
fn analyse_body(luma: &LumaImage) -> AnalysisStats {
    let (w, h) = (luma.width as usize, luma.height as usize);
    let p = &luma.pixels;
    let n = (w * h).max(1) as f64;
    let luma_sum: u64 = p.iter().map(|&v| v as u64).sum();
    let clipped = p.iter().filter(|&&v| v == 0 || v == 255).count();
    let brightness = luma_sum as f64 / n;
    let clipped_fraction = clipped as f64 / n;
    if w < 2 || h < 2 {
        return AnalysisStats {
            sharpness: 0.0,
            brightness,
            clipped_fraction,
        };
    }
    let reflect = |i: isize, n: usize| -> usize {
        if i < 0 {
            (-i) as usize
        } else if i as usize >= n {
            2 * n - 2 - i as usize
        } else {
            i as usize
        }
    };
    let mut sum: i64 = 0;
    let mut sum_sq: u64 = 0;
    for y in 0..h {
        let up = &p[reflect(y as isize - 1, h) * w..][..w];
        let row = &p[y * w..][..w];
        let down = &p[reflect(y as isize + 1, h) * w..][..w];
        for x in [0, w - 1] {
            let l = row[reflect(x as isize - 1, w)] as i64;
            let r = row[reflect(x as isize + 1, w)] as i64;
            let v = up[x] as i64 + down[x] as i64 + l + r - 4 * row[x] as i64;
            sum += v;
            sum_sq += (v * v) as u64;
        }
        // The interior as equal-length slices: no bounds checks, so the loop vectorises.
        let inner = w - 2;
        let mut start = 0;
        while start < inner {
            let end = (start + BLOCK).min(inner);
            let (left, centre, right) = (
                &row[start..end],
                &row[start + 1..end + 1],
                &row[start + 2..end + 2],
            );
            let (u, d) = (&up[start + 1..end + 1], &down[start + 1..end + 1]);
            let mut block_sum: i32 = 0;
            let mut block_sq: u32 = 0;
            for i in 0..end - start {
                let v = u[i] as i32 + d[i] as i32 + left[i] as i32 + right[i] as i32
                    - 4 * centre[i] as i32;
                block_sum += v;
                block_sq += (v * v) as u32;
            }
            sum += block_sum as i64;
            sum_sq += block_sq as u64;
            start = end;
        }
    }
    let count = (w * h) as i128;
    let numerator = sum_sq as i128 * count - (sum as i128) * (sum as i128);
    AnalysisStats {
        sharpness: numerator as f64 / (count * count) as f64,
        brightness,
        clipped_fraction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: u32, height: u32, f: impl Fn(u32, u32) -> u8) -> LumaImage {
        let pixels = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        LumaImage {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn laplacian_variance_of_known_patterns() {
        let sharpness = |img: &LumaImage| analyse(img).sharpness;
        assert_eq!(sharpness(&image(8, 8, |_, _| 77)), 0.0);
        let checker = image(4, 4, |x, y| if (x + y) % 2 == 0 { 0 } else { 100 });
        // Every pixel: 4 neighbours of the other colour. Laplacian = 400 on 0-pixels and
        // -400 on 100-pixels (reflect-101 mirrors keep the pattern): variance 160000.
        assert_eq!(sharpness(&checker), 160_000.0);
        // Wider than one block, with a known answer: a vertical stripe pattern.
        let stripes = image(5000, 3, |x, _| if x % 2 == 0 { 10 } else { 20 });
        // Interior: +-20 alternating; borders reflect to the same pattern: variance 400.
        assert_eq!(sharpness(&stripes), 400.0);
    }

    #[test]
    fn brightness_and_clipped_fraction() {
        let img = image(4, 1, |x, _| [0, 255, 100, 101][x as usize]);
        let stats = analyse(&img);
        assert_eq!((stats.brightness, stats.clipped_fraction), (114.0, 0.5));
    }

    #[test]
    fn shorter_side_resize_keeps_aspect() {
        let img = image(1024, 2048, |x, y| ((x ^ y) & 0xff) as u8);
        assert_eq!(shorter_side_size(&img, 512), (512, 1024));
        let r = resize_shorter_side_transposed(&img, 512).unwrap();
        assert_eq!((r.width, r.height), (1024, 512));
        let small = image(256, 100, |_, _| 9);
        let r = resize_shorter_side_transposed(&small, 512).unwrap();
        assert_eq!((r.width, r.height), (512, 1311));
        assert!(r.pixels.iter().all(|&v| v == 9));
        assert!(resize_shorter_side_transposed(&image(512, 600, |_, _| 0), 512).is_none());
    }

    #[test]
    fn analysis_ignores_transposition() {
        let img = image(37, 23, |x, y| ((x * 31 + y * y * 7) % 256) as u8);
        let t = image(23, 37, |x, y| img.pixels[(x * 37 + y) as usize]);
        assert_eq!(analyse(&img), analyse(&t));
        // The transposed resize is the plain one up to rounding order.
        let r = resize_shorter_side_transposed(&img, 12).unwrap();
        assert_eq!((r.width, r.height), (12, 19));
        let plain = resize(&img, 19, 12, Filter::Box);
        for y in 0..12 {
            for x in 0..19 {
                let (a, b) = (plain.pixels[y * 19 + x], r.pixels[x * 12 + y]);
                assert!(a.abs_diff(b) <= 1, "({x}, {y}): {a} vs {b}");
            }
        }
    }
}
