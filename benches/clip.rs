//! CLIP embedding throughput on the CPU: image features and text features at a batch size, on a
//! model folder in the Hugging Face layout (made by scripts/bench/make_clip_model.py with the
//! real ViT-B/32 dimensions and random weights). scripts/bench/clip_compare.sh runs it beside
//! PyTorch on the same folder.
//!
//!   cargo bench --bench clip -- MODEL_DIR [--batch 32] [--images 128] [--texts 256]
//!       [--captions FILE] [--torch-features FILE.npy --torch-pixels FILE.npy]
//!
//!       [--backend cpu,candle]
//!
//! Prints one JSON line per backend: `cpu` is mmcurate's CPU forward (what a run uses),
//! `candle` candle-transformers' CLIP modules on the CPU. With the PyTorch side's dumped input
//! pixels and features, it also reports how far our features are from PyTorch's on that same
//! input.

use candle_core::Device;
use mmcurate::models::clip::{Backend, Clip};
use std::path::PathBuf;
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn read_npy(path: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'"),
        "{path}: float32 expected"
    );
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape = shape
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let values = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args
        .iter()
        .find(|a| !a.starts_with("--") && std::path::Path::new(a).is_dir())
    else {
        eprintln!("usage: cargo bench --bench clip -- MODEL_DIR [--batch N] [--images N] [--texts N] [--captions FILE]");
        std::process::exit(2);
    };
    let number = |name: &str, default: usize| {
        arg(&args, name).map_or(default, |v| v.parse().expect("a number"))
    };
    let (batch, images, texts) = (
        number("--batch", 32),
        number("--images", 128),
        number("--texts", 256),
    );
    let backends = arg(&args, "--backend").unwrap_or_else(|| "cpu,candle".into());
    for backend in backends.split(',') {
        let (backend, tool) = match backend {
            "cpu" => (Backend::Cpu, "mmcurate (CPU forward)"),
            "candle" => (
                Backend::Candle(Device::Cpu),
                "mmcurate (candle-transformers 0.11 CLIP)",
            ),
            other => panic!("--backend {other}: cpu or candle"),
        };
        let clip = Clip::load_with(
            &PathBuf::from(dir),
            dir.clone(),
            String::new(),
            false,
            backend,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        measure(&clip, tool, &args, batch, images, texts);
    }
}

fn measure(clip: &Clip, tool: &str, args: &[String], batch: usize, images: usize, texts: usize) {
    let size = clip.info.image_size as usize;

    // Images: a fixed pseudo-random input (values in the normalised range).
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let pixels: Vec<f32> = (0..batch * 3 * size * size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    clip.embed_images(&pixels, batch).unwrap(); // warm-up
    let started = Instant::now();
    let mut done = 0;
    while done < images {
        clip.embed_images(&pixels, batch).unwrap();
        done += batch;
    }
    let images_per_sec = done as f64 / started.elapsed().as_secs_f64();

    // Texts: captions from a file (one per line), cycled, tokenised outside the timing.
    let captions: Vec<String> = match arg(args, "--captions") {
        Some(path) => std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        None => vec!["a photo of a cat sitting on a wooden table".to_string()],
    };
    let ids: Vec<Vec<u32>> = (0..batch)
        .map(|i| {
            let caption = &captions[i % captions.len()];
            clip.tokenizer().encode(caption).unwrap().ids
        })
        .collect();
    clip.embed_texts(&ids).unwrap(); // warm-up
    let started = Instant::now();
    let mut done = 0;
    while done < texts {
        clip.embed_texts(&ids).unwrap();
        done += batch;
    }
    let texts_per_sec = done as f64 / started.elapsed().as_secs_f64();

    // Parity with PyTorch on its own dumped input, when given.
    let mut parity = String::new();
    if let (Some(features), Some(input)) =
        (arg(args, "--torch-features"), arg(args, "--torch-pixels"))
    {
        let (shape, input) = read_npy(&input);
        let (_, theirs) = read_npy(&features);
        let ours = clip.embed_images(&input, shape[0]).unwrap();
        let dim = clip.info.dim;
        let worst = theirs
            .chunks_exact(dim)
            .zip(ours.chunks_exact(dim))
            .map(|(t, o)| {
                let diff: f64 = t.iter().zip(o).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
                let norm: f64 = t.iter().map(|a| (*a as f64).powi(2)).sum();
                (diff / norm).sqrt()
            })
            .fold(0f64, f64::max);
        parity = format!(", \"max_relative_error_vs_torch\": {worst:.2e}");
    }
    println!(
        "{{\"tool\": \"{tool}\", \"threads\": {}, \"batch\": {batch}, \"images_per_sec\": {images_per_sec:.2}, \"texts_per_sec\": {texts_per_sec:.2}{parity}}}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
}
