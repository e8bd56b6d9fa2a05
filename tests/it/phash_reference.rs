//! pHash and dHash against the Python reference (`imagehash` with PIL) on every image in
//! tests/media/images: the pHash must differ by at most 2 bits on at least 95% of them.

use crate::common::*;
use mmcurate::decode::{probe, CpuDecoder, ImageDecoder};
use mmcurate::measure::{CpuKernels, QualityKernels, ANALYSIS_SHORT_SIDE};

#[test]
fn phash_agrees_with_imagehash() {
    let dir = test_images();
    let reference = python_json("phash_reference.py", &[dir.to_str().unwrap()]);
    let reference = reference.as_object().unwrap();
    // Every image of the folder has a reference (the folder holds 42 and captions.tsv).
    let images = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            let path = e.as_ref().unwrap().path();
            path.extension().is_some_and(|x| x == "jpg" || x == "png")
        })
        .count();
    assert!(images >= 40, "only {images} images in {}", dir.display());
    assert_eq!(reference.len(), images, "imagehash skipped some images");

    let (mut within_two, mut dhash_within_two, mut total) = (0, 0, 0);
    let mut report = Vec::new();
    for (file, hashes) in reference {
        let bytes = read(dir.join(file));
        let info = probe(&bytes).unwrap();
        let luma = CpuDecoder
            .decode_luma(&bytes, &info, ANALYSIS_SHORT_SIDE)
            .unwrap();
        let quality = CpuKernels.measure(&luma);
        let parse = |key: &str| u64::from_str_radix(hashes[key].as_str().unwrap(), 16).unwrap();
        let phash_bits = (quality.phash ^ parse("phash")).count_ones();
        let dhash_bits = (quality.dhash ^ parse("dhash")).count_ones();
        total += 1;
        within_two += (phash_bits <= 2) as usize;
        dhash_within_two += (dhash_bits <= 2) as usize;
        report.push(format!(
            "{file}: phash {phash_bits} bits, dhash {dhash_bits} bits"
        ));
    }
    let share = within_two as f64 / total as f64;
    println!("{}", report.join("\n"));
    println!("pHash within 2 bits: {within_two}/{total}; dHash within 2 bits: {dhash_within_two}/{total}");
    assert!(
        share >= 0.95,
        "pHash within 2 bits on {within_two}/{total} images:\n{}",
        report.join("\n")
    );
}
