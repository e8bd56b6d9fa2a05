//! CLIP features against the reference implementation (transformers.CLIPModel, random weights,
//! tests/fixtures/clip-tiny/reference.json):
//! - image features from the reference's own `pixel_values`, and text features from our
//!   `input_ids` (identical to the reference's, tests/clip_tokenizer.rs), each within 1e-4
//!   relative error (the L2 norm of the difference over the L2 norm of the reference row);
//! - image features from the image files, through our decoding and preprocessing, within a
//!   stated tolerance: there the inputs themselves differ a little (tests/clip_preprocess.rs).
//!
//! Both backends are held to it: the CPU forward a run uses, and candle-transformers' modules.

use crate::common::*;
use candle_core::Device;
use mmcurate::models::clip::{Backend, Clip};
use mmcurate::models::clip_preprocess::{clip_pixel_values, OPENAI_MEAN, OPENAI_STD};
use serde_json::Value;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    root().join("tests/fixtures/clip-tiny")
}

/// The fixture model on each backend, with the reference.
fn load() -> (Vec<(&'static str, Clip)>, Value) {
    let backends = [
        ("cpu", Backend::Cpu),
        ("candle", Backend::Candle(Device::Cpu)),
    ];
    let models = backends
        .into_iter()
        .map(|(name, backend)| {
            let clip = Clip::load_with(
                &fixture(),
                "mmcurate/clip-tiny-random".into(),
                String::new(),
                false,
                backend,
            )
            .unwrap();
            (name, clip)
        })
        .collect();
    let reference = serde_json::from_slice(&read(fixture().join("reference.json"))).unwrap();
    (models, reference)
}

/// A JSON array of arrays as rows, each element converted by `cell`.
fn matrix<T>(value: &Value, cell: impl Fn(&Value) -> T) -> Vec<Vec<T>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(&cell).collect())
        .collect()
}

fn rows(value: &Value) -> Vec<Vec<f32>> {
    matrix(value, |v| v.as_f64().unwrap() as f32)
}

/// ||ours - theirs|| / ||theirs|| for each row.
fn relative_errors(ours: &[f32], theirs: &[Vec<f32>]) -> Vec<f64> {
    let dim = theirs[0].len();
    assert_eq!(ours.len(), theirs.len() * dim);
    theirs
        .iter()
        .zip(ours.chunks_exact(dim))
        .map(|(t, o)| {
            let diff: f64 = t.iter().zip(o).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
            let norm: f64 = t.iter().map(|a| (*a as f64).powi(2)).sum();
            (diff / norm).sqrt()
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64) * (*y as f64))
        .sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn image_features_from_the_reference_pixel_values() {
    let (models, reference) = load();
    let (shape, pixels) = read_npy(&fixture().join("pixel_values.npy"));
    for (backend, clip) in &models {
        let ours = clip.embed_images(&pixels, shape[0]).unwrap();
        let errors = relative_errors(&ours, &rows(&reference["image_features"]));
        println!("{backend}: image features, relative error per image: {errors:?}");
        assert!(errors.iter().all(|&e| e < 1e-4), "{backend}: {errors:?}");
    }
}

#[test]
fn text_features_from_the_reference_texts() {
    let (models, reference) = load();
    for (backend, clip) in &models {
        text_features_match(backend, clip, &reference);
    }
}

fn text_features_match(backend: &str, clip: &Clip, reference: &Value) {
    let ids: Vec<Vec<u32>> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| clip.tokenizer().encode(t.as_str().unwrap()).unwrap().ids)
        .collect();
    let expected = matrix(&reference["input_ids"], |v| v.as_u64().unwrap() as u32);
    assert_eq!(ids, expected);
    let ours = clip.embed_texts(&ids).unwrap();
    let errors = relative_errors(&ours, &rows(&reference["text_features"]));
    println!("{backend}: text features, relative error per text: {errors:?}");
    assert!(errors.iter().all(|&e| e < 1e-4), "{backend}: {errors:?}");
    // Batching must not change a caption's features (the batch is cut to its longest caption).
    for (i, row) in ids.iter().enumerate() {
        let alone = clip.embed_texts(std::slice::from_ref(row)).unwrap();
        let dim = alone.len();
        let in_batch = &ours[i * dim..(i + 1) * dim];
        let worst = alone
            .iter()
            .zip(in_batch)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{backend}: text {i}: {worst}");
    }
}

/// From the files: our decode and Pillow-exact bicubic preprocessing against the reference's
/// processor. Tolerance: cosine similarity at least 0.9999 to the reference features. The
/// inputs are identical for the PNGs and one 8-bit step apart on a few JPEG pixels
/// (tests/clip_preprocess.rs); measured cosines are 0.99999998 or closer to 1.
#[test]
fn image_features_from_the_files() {
    let (models, reference) = load();
    let expected = rows(&reference["image_features"]);
    let mut pixels = Vec::new();
    let images = reference["images"].as_array().unwrap();
    for name in images {
        let bytes = read(fixture().join("images").join(name.as_str().unwrap()));
        pixels.extend(clip_pixel_values(&bytes, 32, OPENAI_MEAN, OPENAI_STD).unwrap());
    }
    for (backend, clip) in &models {
        let ours = clip.embed_images(&pixels, images.len()).unwrap();
        let dim = expected[0].len();
        let cosines: Vec<f64> = expected
            .iter()
            .zip(ours.chunks_exact(dim))
            .map(|(t, o)| cosine(t, o))
            .collect();
        println!("{backend}: image features from files, cosine per image: {cosines:?}");
        assert!(
            cosines.iter().all(|&c| c >= 0.9999),
            "{backend}: {cosines:?}"
        );
    }
}
