//! Semantic near-duplicate search at scale: N synthetic 512-d unit embeddings (N from the first
//! argument or `MMCURATE_BENCH_N`, default 1,000,000), about 10% of them near copies of
//! others, searched for all pairs with cosine >= 0.95 through the HNSW index.
//!
//! Prints one JSON line: sizes, pairs found, seconds to generate, build, search and free the
//! index, peak memory (VmHWM), and the recall on the planted (copy, original) pairs whose
//! cosine is above the threshold (the only pairs cheap to know without a brute-force search).
//! Run with `cargo bench --bench semantic_dedup -- 100000`.

use std::time::Instant;

use mmcurate::decide::semantic::SemanticIndex;
use mmcurate::vector::normalise;
use rayon::prelude::*;

const DIM: usize = 512;
const THRESHOLD: f32 = 0.95;

/// splitmix64: a well-mixed hash of the row index, so each row's values come from its own
/// seed and the data is the same whatever the thread count.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Uniform values in [-√3, √3] (mean 0, variance 1) from a per-row xorshift stream: after
/// normalising, directions close enough to uniform on the sphere for this purpose, and much
/// cheaper than Gaussian values.
fn fill_noise(seed: u64, out: &mut [f32]) {
    let mut state = mix(seed) | 1;
    for v in out {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
        *v = (2.0 * unit - 1.0) * 3f32.sqrt();
    }
}

/// Whether row `i` is a near copy (about 1 in 10) and, if so, of which original.
fn copy_source(i: usize, n: usize) -> Option<usize> {
    let h = mix(i as u64 ^ 0xC0FF_EE00);
    if i == 0 || h % 10 != 0 {
        return None;
    }
    // An original, not another copy: walk down from a random row to the nearest original.
    let mut j = (mix(h) % n as u64) as usize;
    while j > 0 && copy_source_is_copy(j) {
        j -= 1;
    }
    Some(j)
}

fn copy_source_is_copy(j: usize) -> bool {
    j != 0 && mix(j as u64 ^ 0xC0FF_EE00) % 10 == 0
}

/// Which synthetic distribution the original embeddings come from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Originals {
    /// Like real image embeddings: a shared mean direction (CLIP embeddings sit in a narrow
    /// cone), 32 latent factors and a little isotropic noise; unrelated pairs have a cosine
    /// of about 0.25 ± 0.1 and nearest neighbours about 0.7, as CLIP ViT-B/32's do.
    EmbeddingLike,
    /// Independent uniform directions in 512-d: no structure at all. The worst case for any
    /// graph index (every point is about equally far from every other, so a search has
    /// nothing to follow); there to show that limit, at smaller N.
    Isotropic,
}

const LATENT: usize = 32;
/// Shares of the squared norm: mean direction, latent factors, isotropic noise.
const MEAN_SHARE: f32 = 0.25;
const LATENT_SHARE: f32 = 0.55;
const NOISE_SHARE: f32 = 0.20;

/// The original embedding of row `i`.
fn original(i: usize, kind: Originals, mean: &[f32], factors: &[f32], row: &mut [f32]) {
    fill_noise(i as u64, row);
    if kind == Originals::Isotropic {
        return;
    }
    let mut latent = [0f32; LATENT];
    fill_noise(i as u64 ^ 0x1A7E_0000_0000, &mut latent);
    let noise_scale = (NOISE_SHARE / DIM as f32).sqrt();
    let latent_scale = (LATENT_SHARE / LATENT as f32).sqrt();
    for (d, v) in row.iter_mut().enumerate() {
        let f = &factors[d * LATENT..(d + 1) * LATENT];
        let projected: f32 = f.iter().zip(&latent).map(|(a, b)| a * b).sum();
        *v = MEAN_SHARE.sqrt() * mean[d] + latent_scale * projected + noise_scale * *v;
    }
}

/// The embeddings, and the planted (original, copy) pairs.
fn embeddings(n: usize, kind: Originals) -> (Vec<f32>, Vec<(usize, usize)>) {
    let mut mean = vec![0f32; DIM];
    fill_noise(0x3EA2, &mut mean);
    normalise(&mut mean, DIM);
    // Each factor is a column of unit length, on average.
    let mut factors = vec![0f32; DIM * LATENT];
    fill_noise(0xFAC7, &mut factors);
    factors.iter_mut().for_each(|f| *f /= (DIM as f32).sqrt());

    let mut vectors = vec![0f32; n * DIM];
    vectors
        .par_chunks_exact_mut(DIM)
        .enumerate()
        .for_each(|(i, row)| {
            if copy_source(i, n).is_none() {
                original(i, kind, &mean, &factors, row);
            }
        });
    normalise(&mut vectors, DIM);
    let planted: Vec<(usize, usize)> = (0..n)
        .filter_map(|i| copy_source(i, n).map(|j| (j, i)))
        .collect();
    // Original + isotropic noise of relative size 0.05–0.5: cosine to the original from
    // about 0.999 down to 0.89, so some copies fall below the threshold.
    let copies: Vec<Vec<f32>> = planted
        .par_iter()
        .map(|&(j, i)| {
            let mut noise = vec![0f32; DIM];
            fill_noise(i as u64 ^ 0xABCD_EF01, &mut noise);
            let level = 0.05 + 0.45 * (mix(i as u64 ^ 0x1234) % 1000) as f32 / 1000.0;
            let scale = level / (DIM as f32).sqrt();
            let original = &vectors[j * DIM..(j + 1) * DIM];
            original
                .iter()
                .zip(&noise)
                .map(|(o, e)| o + scale * e)
                .collect()
        })
        .collect();
    for (&(_, i), copy) in planted.iter().zip(&copies) {
        vectors[i * DIM..(i + 1) * DIM].copy_from_slice(copy);
    }
    normalise(&mut vectors, DIM);
    (vectors, planted)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Peak resident memory of this process, in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; the first other argument is N.
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("MMCURATE_BENCH_N").ok())
        .map(|s| {
            s.replace('_', "")
                .parse()
                .expect("N must be a whole number")
        })
        .unwrap_or(1_000_000);

    let kind = match std::env::var("MMCURATE_BENCH_DATA").as_deref() {
        Ok("isotropic") => Originals::Isotropic,
        Ok("embedding-like") | Err(_) => Originals::EmbeddingLike,
        Ok(other) => panic!("MMCURATE_BENCH_DATA={other}: use embedding-like or isotropic"),
    };

    let start = Instant::now();
    let (vectors, planted) = embeddings(n, kind);
    let generate_seconds = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let index = SemanticIndex::build(&vectors, DIM);
    let build_seconds = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let pairs = index.pairs_above(THRESHOLD);
    let search_seconds = start.elapsed().as_secs_f64();

    let start = Instant::now();
    drop(index);
    let free_seconds = start.elapsed().as_secs_f64();

    let planted_above: Vec<(usize, usize)> = planted
        .into_iter()
        .filter(|&(j, i)| {
            dot(
                &vectors[j * DIM..(j + 1) * DIM],
                &vectors[i * DIM..(i + 1) * DIM],
            ) >= THRESHOLD
        })
        .map(|(j, i)| (j.min(i), j.max(i)))
        .collect();
    let planted_found = planted_above
        .iter()
        .filter(|&&key| pairs.binary_search_by_key(&key, |p| (p.a, p.b)).is_ok())
        .count();

    let line = serde_json::json!({
        "bench": "semantic_dedup",
        "data": match kind {
            Originals::EmbeddingLike => "embedding-like",
            Originals::Isotropic => "isotropic",
        },
        "n": n,
        "dim": DIM,
        "threshold": round3(f64::from(THRESHOLD)),
        "threads": rayon::current_num_threads(),
        "pairs": pairs.len(),
        "generate_seconds": round3(generate_seconds),
        "build_seconds": round3(build_seconds),
        "search_seconds": round3(search_seconds),
        "free_seconds": round3(free_seconds),
        "peak_rss_mib": peak_rss_mib().map(|m| m.round()),
        "planted_pairs_above_threshold": planted_above.len(),
        "planted_recall": (planted_found as f64 / planted_above.len().max(1) as f64 * 1e5).round() / 1e5,
    });
    println!("{line}");
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
