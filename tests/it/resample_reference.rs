//! Our resampler against Pillow's `Image.resize` on the same 8-bit planes: every output byte
//! must be equal, for each filter, shrinking and enlarging, on real and synthetic images.

use crate::common::*;
use mmcurate::decode::{probe, CpuDecoder, ImageDecoder};
use mmcurate::pixels::resample::{resize_plane, Filter};
use serde_json::json;

struct Plane {
    name: String,
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

fn planes() -> Vec<Plane> {
    let mut planes = Vec::new();
    // Noise (a fixed xorshift), the hardest case for rounding.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise = (0..301 * 177)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    planes.push(Plane {
        name: "noise".into(),
        width: 301,
        height: 177,
        pixels: noise,
    });
    // Hard edges that make the bicubic and Lanczos lobes overshoot and clip.
    planes.push(Plane {
        name: "bars".into(),
        width: 64,
        height: 40,
        pixels: (0..64 * 40)
            .map(|i| if (i % 64) / 5 % 2 == 0 { 0 } else { 255 })
            .collect(),
    });
    // Real photographs, as the decoder gives them to the measure stage.
    let dir = test_images();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .collect();
    files.sort();
    for path in files.into_iter().take(4) {
        let bytes = read(&path);
        let info = probe(&bytes).unwrap();
        let luma = CpuDecoder.decode_luma(&bytes, &info, 512).unwrap();
        planes.push(Plane {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            width: luma.width as usize,
            height: luma.height as usize,
            pixels: luma.pixels,
        });
    }
    planes
}

#[test]
fn resize_is_byte_identical_to_pillow() {
    let dir = tempfile::tempdir().unwrap();
    let filters = [
        (Filter::Box, "box"),
        (Filter::Bicubic, "bicubic"),
        (Filter::Lanczos3, "lanczos"),
    ];
    let mut jobs = Vec::new();
    let mut ours = Vec::new();
    for (p, plane) in planes().iter().enumerate() {
        let input = dir.path().join(format!("{p}.raw"));
        std::fs::write(&input, &plane.pixels).unwrap();
        let (w, h) = (plane.width, plane.height);
        // Shrinking by a little and a lot, enlarging, one side only, and the hash sizes.
        let sizes = [
            (w * 9 / 10, h * 9 / 10),
            (w / 3 + 1, h / 5 + 1),
            (w * 2 + 3, h * 3 / 2),
            (w, h / 2),
            (w / 2, h),
            (32, 32),
            (9, 8),
        ];
        for (f, (filter, filter_name)) in filters.iter().enumerate() {
            for (s, &(ow, oh)) in sizes.iter().enumerate() {
                let output = dir.path().join(format!("{p}-{f}-{s}.out"));
                jobs.push(json!({
                    "input": input, "width": w, "height": h, "out_width": ow,
                    "out_height": oh, "filter": filter_name, "output": output,
                }));
                let label = format!("{} {w}x{h} -> {ow}x{oh} {filter_name}", plane.name);
                ours.push((
                    label,
                    output,
                    resize_plane(&plane.pixels, w, h, ow, oh, *filter),
                ));
            }
        }
    }
    let jobs_file = dir.path().join("jobs.json");
    std::fs::write(&jobs_file, serde_json::to_vec(&jobs).unwrap()).unwrap();
    let done = python_json("resample_reference.py", &[jobs_file.to_str().unwrap()]);
    assert_eq!(done["done"], jobs.len());
    for (label, output, pixels) in ours {
        let reference = read(&output);
        assert_eq!(reference.len(), pixels.len(), "{label}: size");
        let differing = reference
            .iter()
            .zip(&pixels)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "{label}: {differing} bytes differ from Pillow"
        );
    }
}
