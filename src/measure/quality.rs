//! Quality metrics on luminance: resizing to the analysis size, Laplacian-variance sharpness,
//! mean brightness and the clipped fraction.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use std::cell::RefCell;

use crate::decode::LumaImage;

thread_local! {
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Resizes with the given filter; `fast_image_resize` follows Pillow's convolution resampling
/// (the filter support grows with the reduction factor), which is what makes our pHash agree
/// with `imagehash`'s.
pub fn resize(luma: &LumaImage, width: u32, height: u32, filter: FilterType) -> LumaImage {
    let src = ImageRef::new(luma.width, luma.height, &luma.pixels, PixelType::U8)
        .expect("a LumaImage holds width * height bytes");
    let mut dst = Image::new(width, height, PixelType::U8);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    RESIZER.with(|r| {
        r.borrow_mut()
            .resize(&src, &mut dst, &options)
            .expect("source and destination are both U8")
    });
    LumaImage {
        width,
        height,
        pixels: dst.into_vec(),
    }
}

/// Resizes so the shorter side is `side` pixels, keeping the aspect ratio: an area (box)
/// filter when shrinking, Catmull-Rom when enlarging. `None` when it is already that size.
pub fn resize_shorter_side(luma: &LumaImage, side: u32) -> Option<LumaImage> {
    let shorter = luma.width.min(luma.height);
    if shorter == side {
        return None;
    }
    let scale = side as f64 / shorter as f64;
    let (width, height) = if luma.width <= luma.height {
        (side, ((luma.height as f64 * scale).round() as u32).max(1))
    } else {
        (((luma.width as f64 * scale).round() as u32).max(1), side)
    };
    let filter = if scale < 1.0 {
        FilterType::Box
    } else {
        FilterType::CatmullRom
    };
    Some(resize(luma, width, height, filter))
}

/// Variance of the 3x3 Laplacian (`[0 1 0; 1 -4 1; 0 1 0]`, OpenCV's `ksize=1`) with
/// reflect-101 borders, as `cv2.Laplacian(img, cv2.CV_64F).var()` computes it. Sums are exact
/// integers, so the result does not depend on summation order (threads or devices).
pub fn laplacian_variance(luma: &LumaImage) -> f64 {
    let (w, h) = (luma.width as usize, luma.height as usize);
    if w < 2 || h < 2 {
        return 0.0;
    }
    let p = &luma.pixels;
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
    let mut sum_sq: i64 = 0;
    for y in 0..h {
        let up = &p[reflect(y as isize - 1, h) * w..][..w];
        let row = &p[y * w..][..w];
        let down = &p[reflect(y as isize + 1, h) * w..][..w];
        let mut row_sum: i64 = 0;
        let mut row_sq: i64 = 0;
        // Border columns with reflection, the interior without branches.
        let edge = |x: usize| -> i32 {
            let l = row[reflect(x as isize - 1, w)] as i32;
            let r = row[reflect(x as isize + 1, w)] as i32;
            up[x] as i32 + down[x] as i32 + l + r - 4 * row[x] as i32
        };
        for x in [0, w - 1] {
            let v = edge(x) as i64;
            row_sum += v;
            row_sq += v * v;
        }
        for x in 1..w - 1 {
            let v = up[x] as i32 + down[x] as i32 + row[x - 1] as i32 + row[x + 1] as i32
                - 4 * row[x] as i32;
            row_sum += v as i64;
            row_sq += (v * v) as i64;
        }
        sum += row_sum;
        sum_sq += row_sq;
    }
    let n = (w * h) as i128;
    let numerator = sum_sq as i128 * n - (sum as i128) * (sum as i128);
    numerator as f64 / (n * n) as f64
}

/// Mean luminance (0–255) and the fraction of pixels at 0 or 255.
pub fn brightness_and_clipping(luma: &LumaImage) -> (f64, f64) {
    let n = luma.pixels.len().max(1) as f64;
    let mut histogram = [0u64; 256];
    for &v in &luma.pixels {
        histogram[v as usize] += 1;
    }
    let total: u64 = histogram
        .iter()
        .enumerate()
        .map(|(v, c)| v as u64 * c)
        .sum();
    (total as f64 / n, (histogram[0] + histogram[255]) as f64 / n)
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
        assert_eq!(laplacian_variance(&image(8, 8, |_, _| 77)), 0.0);
        // A linear ramp has zero Laplacian inside; reflect-101 keeps it zero at the borders
        // only for the constant direction, so compare with a direct computation.
        let checker = image(4, 4, |x, y| if (x + y) % 2 == 0 { 0 } else { 100 });
        // Every pixel: 4 neighbours of the other colour. Laplacian = 400 on 0-pixels and
        // -400 on 100-pixels (reflect-101 mirrors keep the pattern): variance 160000.
        assert_eq!(laplacian_variance(&checker), 160_000.0);
    }

    #[test]
    fn brightness_and_clipped_fraction() {
        let img = image(4, 1, |x, _| [0, 255, 100, 101][x as usize]);
        assert_eq!(brightness_and_clipping(&img), (114.0, 0.5));
    }

    #[test]
    fn shorter_side_resize_keeps_aspect() {
        let img = image(1024, 2048, |x, y| ((x ^ y) & 0xff) as u8);
        let r = resize_shorter_side(&img, 512).unwrap();
        assert_eq!((r.width, r.height), (512, 1024));
        let small = image(256, 100, |_, _| 9);
        let r = resize_shorter_side(&small, 512).unwrap();
        assert_eq!((r.width, r.height), (1311, 512));
        assert!(r.pixels.iter().all(|&v| v == 9));
        assert!(resize_shorter_side(&image(512, 600, |_, _| 0), 512).is_none());
    }
}
