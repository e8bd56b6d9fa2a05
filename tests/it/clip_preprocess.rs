//! CLIP image preprocessing from the image files against the reference implementation's
//! `pixel_values` (CLIPImageProcessor in transformers) at the fixture's size (32 px) and at the
//! real CLIP size (224 px). Our bicubic resize is Pillow's, byte for byte
//! (tests/resample_reference.rs), as the reference's is, so the PNGs match exactly (measured
//! max difference 0.0000). The JPEGs differ by at most one 8-bit step of one pixel value
//! (1/255/std ≈ 0.0152 after normalising; measured 0.0150): the reference decodes with
//! libjpeg through Pillow, we with the `image` crate, whose IDCT rounds a few pixels the other
//! way. Mean absolute difference measured: 0.00004 (32 px), 0.00005 (224 px).

use crate::common::read_npy;
use mmcurate::models::clip_preprocess::{clip_pixel_values, OPENAI_MEAN, OPENAI_STD};
use serde_json::Value;
use std::path::PathBuf;

fn max_abs_difference(size: u32, reference_file: &str) -> (f32, f32) {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny");
    let reference: Value =
        serde_json::from_slice(&std::fs::read(fixture.join("reference.json")).unwrap()).unwrap();
    let (shape, expected) = read_npy(&fixture.join(reference_file));
    assert_eq!(shape, [5, 3, size as usize, size as usize]);
    let per_image = 3 * (size * size) as usize;
    let (mut worst, mut total) = (0f32, 0f64);
    for (i, name) in reference["images"].as_array().unwrap().iter().enumerate() {
        let bytes = std::fs::read(fixture.join("images").join(name.as_str().unwrap())).unwrap();
        let ours = clip_pixel_values(&bytes, size, OPENAI_MEAN, OPENAI_STD).unwrap();
        let theirs = &expected[i * per_image..(i + 1) * per_image];
        let image_worst = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!(
            "  {size}px {}: max abs difference {image_worst:.4}",
            name.as_str().unwrap()
        );
        for (a, b) in ours.iter().zip(theirs) {
            worst = worst.max((a - b).abs());
            total += (a - b).abs() as f64;
        }
    }
    (worst, (total / expected.len() as f64) as f32)
}

#[test]
fn pixel_values_match_the_reference_within_tolerance() {
    for (size, file) in [(32, "pixel_values.npy"), (224, "pixel_values_224.npy")] {
        let (worst, mean) = max_abs_difference(size, file);
        println!("{size}px: max abs difference {worst:.4}, mean {mean:.5}");
        // One 8-bit step at most (see the module comment), and rarely.
        let step = 1.0 / 255.0 / OPENAI_STD.iter().copied().fold(f32::MAX, f32::min);
        assert!(
            worst <= step * 1.001,
            "{size}px: max abs difference {worst}"
        );
        assert!(mean < 0.0005, "{size}px: mean abs difference {mean}");
    }
}
