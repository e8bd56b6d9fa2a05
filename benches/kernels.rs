//! Per-kernel timings on real images from ../shared/media/images: JPEG decoding to luminance
//! (full and reduced DCT scale), the quality kernels, pHash, and the all-pairs pHash search.
//! Run with `cargo bench --bench kernels`; end-to-end numbers are in docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mmcurate::decide::hamming_index::pairs_within;
use mmcurate::decode::{probe, CpuDecoder, ImageDecoder};
use mmcurate::measure::{hash, quality, CpuKernels, QualityKernels, ANALYSIS_SHORT_SIDE};
use std::path::PathBuf;

fn media(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/media/images")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_luma");
    // 1282x1110: decoded at 1/2 scale; 512x512 and 600x512 PNG: in full.
    for name in [
        "opencv_aloeL.jpg",
        "opencv_baboon.jpg",
        "matplotlib_grace_hopper.jpg",
        "skimage_coffee.png",
    ] {
        let bytes = media(name);
        let info = probe(&bytes).unwrap();
        group.throughput(Throughput::Elements(info.pixels()));
        group.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| {
                CpuDecoder
                    .decode_luma(bytes, &info, ANALYSIS_SHORT_SIDE)
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn kernels(c: &mut Criterion) {
    let bytes = media("opencv_aloeL.jpg");
    let info = probe(&bytes).unwrap();
    let luma = CpuDecoder
        .decode_luma(&bytes, &info, ANALYSIS_SHORT_SIDE)
        .unwrap();
    let analysis =
        quality::resize_shorter_side_transposed(&luma, ANALYSIS_SHORT_SIDE).unwrap_or(luma.clone());
    c.bench_function("measure/all_kernels_641x555", |b| {
        b.iter(|| CpuKernels.measure(&luma))
    });
    c.bench_function("measure/resize_to_512", |b| {
        b.iter(|| quality::resize_shorter_side_transposed(&luma, ANALYSIS_SHORT_SIDE))
    });
    // The typical corpus case: a JPEG whose shorter side lies between 512 and 1024 after the
    // DCT scaling, shrunk to 512.
    let large = quality::resize(
        &luma,
        1000,
        866,
        mmcurate::pixels::resample::Filter::Bicubic,
    );
    c.bench_function("measure/resize_1000x866_to_512", |b| {
        b.iter(|| quality::resize_shorter_side_transposed(&large, ANALYSIS_SHORT_SIDE))
    });
    c.bench_function("measure/analyse_512", |b| {
        b.iter(|| quality::analyse(&analysis))
    });
    c.bench_function("measure/phash_512", |b| b.iter(|| hash::phash(&analysis)));
    c.bench_function("measure/dhash_512", |b| b.iter(|| hash::dhash(&analysis)));
}

/// Random 64-bit hashes, every other one a near copy of the one before it (0–7 bits flipped),
/// so there are pairs to find at every small distance.
fn hashes(n: usize) -> Vec<u64> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let base = next();
        out.push(base);
        let mut copy = base;
        for _ in 0..next() % 8 {
            copy ^= 1 << (next() % 64);
        }
        out.push(copy);
    }
    out.truncate(n);
    out
}

fn dedup(c: &mut Criterion) {
    let mut group = c.benchmark_group("phash_pairs");
    group.sample_size(10);
    let small = hashes(100_000);
    for d in [4u32, 8] {
        group.bench_with_input(BenchmarkId::new("100k", d), &d, |b, &d| {
            b.iter(|| pairs_within(&small, d))
        });
    }
    let million = hashes(1_000_000);
    group.bench_with_input(BenchmarkId::new("1M", 4), &4u32, |b, &d| {
        b.iter(|| pairs_within(&million, d))
    });
    group.finish();
}

criterion_group!(benches, decode, kernels, dedup);
criterion_main!(benches);
