//! The pair search's products on a GPU (issue 14 item 7): `mmcurate dedup --device` chooses
//! where they run and falls back to the CPU saying why (runs everywhere); on a GPU, the cuBLAS
//! products find the CPU's candidates and the whole search the CPU's pairs and groups on
//! 20,000 planted 512-d vectors, clusters on partition boundaries included (runs where a GPU
//! answers, else says it is skipped; `scripts/gpu/check.sh` runs it on the GPU machine).

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::{mmcurate, ok, read};
use std::sync::Arc;

use mmcurate::decide::pairs::files::groups_of;
use mmcurate::decide::pairs::{
    find_pairs, find_pairs_on, CosinePair, CpuProducts, PairSearch, VectorsInMemory,
};
use mmcurate::gpu::pair_plan::PairLimits;
use mmcurate::gpu::pair_products::GpuPairProducts;
use mmcurate::vector::{Candidate, PairBlock, PairProducts};

/// splitmix64, for seeded test data.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Uniform values in [-√3, √3] (mean 0, variance 1) from a seed.
fn noise(seed: u64, out: &mut [f32]) {
    let mut state = mix(seed) | 1;
    for v in out {
        state = mix(state);
        *v = (2.0 * ((state >> 40) as f32 / (1u64 << 24) as f32) - 1.0) * 3f32.sqrt();
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// `base` plus isotropic noise of relative size `size`, unit length (cosine to `base` about
/// 1 / √(1 + size²)).
fn near(base: &[f32], seed: u64, size: f32) -> Vec<f32> {
    let mut v = vec![0f32; base.len()];
    noise(seed, &mut v);
    let scale = size / (base.len() as f32).sqrt();
    unit(v.iter().zip(base).map(|(x, b)| b + scale * x).collect())
}

/// `rows` unit vectors of `dim` in 40 blobs (clear partitions for k-means), a quarter of them
/// with near copies at cosines around 0.95, and small clusters at the midpoints between two
/// blob centres, which sit on a partition boundary so that their pairs straddle partitions.
fn planted(rows: usize, dim: usize) -> Vec<f32> {
    let blobs: Vec<Vec<f32>> = (0..40)
        .map(|b| {
            let mut c = vec![0f32; dim];
            noise(1000 + b, &mut c);
            unit(c)
        })
        .collect();
    let mut out = Vec::with_capacity(rows * dim);
    let mut i = 0u64;
    while out.len() < rows * dim {
        i += 1;
        let h = mix(i);
        if h % 16 == 0 {
            let (p, q) = ((h >> 8) % 40, (h >> 16) % 40);
            let middle: Vec<f32> = blobs[p as usize]
                .iter()
                .zip(&blobs[q as usize])
                .map(|(a, b)| a + b)
                .collect();
            let middle = near(&unit(middle), i << 8, 0.9);
            for c in 0..4 {
                // Two such copies have cosine about 1 / (1 + 0.15²) ≈ 0.978.
                out.extend_from_slice(&near(&middle, (i << 8) + 1 + c, 0.15));
            }
        } else {
            let base = near(&blobs[(h % 40) as usize], i << 8, 1.2);
            out.extend_from_slice(&base);
            if h % 4 == 1 {
                let size = 0.15 + 0.25 * ((h >> 32) % 100) as f32 / 100.0;
                out.extend_from_slice(&near(&base, (i << 8) + 1, size));
            }
        }
    }
    out.truncate(rows * dim);
    out
}

/// The GPU the test runs on, or `None` after saying why it is skipped.
fn gpu_or_skip(test: &str) -> Option<mmcurate::gpu::device::CudaDevice> {
    let selected =
        mmcurate::gpu::select(mmcurate::gpu::DeviceRequest::Auto).unwrap_or_else(|e| panic!("{e}"));
    if selected.cuda.is_none() {
        println!("{test}: skipped, no CUDA device ({})", selected.reason);
    }
    selected.cuda
}

/// Issue 14's parity: the same pairs, except pairs whose CPU cosine lies within 1e-5 of the
/// threshold (summation orders differ), with the same cosines. Returns how many pairs were
/// bit-identical (all of them, by construction: every candidate's cosine is recomputed on the
/// host by the same code).
fn assert_same_pairs(cpu: &[CosinePair], gpu: &[CosinePair], threshold: f32, what: &str) -> usize {
    let near_threshold = |p: &CosinePair| (p.cosine - threshold).abs() < 1e-5;
    let key = |p: &CosinePair| (p.a, p.b);
    let cpu_set: BTreeSet<_> = cpu.iter().filter(|p| !near_threshold(p)).map(key).collect();
    let gpu_set: BTreeSet<_> = gpu.iter().filter(|p| !near_threshold(p)).map(key).collect();
    let missing: Vec<_> = cpu_set.difference(&gpu_set).take(5).collect();
    let extra: Vec<_> = gpu_set.difference(&cpu_set).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: pairs only on the CPU {missing:?}, only on the GPU {extra:?}"
    );
    for p in gpu {
        if let Ok(at) = cpu.binary_search_by_key(&key(p), key) {
            assert!(
                (cpu[at].cosine - p.cosine).abs() <= 1e-6,
                "{what}: {p:?} vs {:?}",
                cpu[at]
            );
        }
    }
    cpu.iter()
        .zip(gpu)
        .filter(|(c, g)| key(c) == key(g) && c.cosine.to_bits() == g.cosine.to_bits())
        .count()
}

#[test]
fn gpu_pair_search_finds_the_cpu_pairs_and_groups() {
    let Some(device) = gpu_or_skip("gpu pair parity") else {
        return;
    };
    let (rows, dim, threshold) = (20_000, 512, 0.95);
    let vectors = planted(rows, dim);
    let source = VectorsInMemory {
        vectors: &vectors,
        dim,
    };
    let mut params = PairSearch::new(threshold);
    params.normalise = false;
    params.partitions = Some(40);
    // A budget that leaves about 32 MiB for gathering (the engine keeps 256 MiB in reserve):
    // several batches of several partitions, so the products run batch after batch.
    params.memory_budget = (256 + 32) << 20;
    let cpu = find_pairs(&source, &params).unwrap_or_else(|e| panic!("{e}"));
    assert!(cpu.pairs.len() > 2_000, "{} pairs", cpu.pairs.len());
    assert!(
        cpu.stats.batches > 1 && cpu.stats.replication > 1.0,
        "{} batches, {} partitions per row",
        cpu.stats.batches,
        cpu.stats.replication
    );
    let small = PairLimits {
        job_rows: 100,
        score_floats: 1 << 20,
        vector_floats: 1 << 21,
        jobs_per_launch: 16,
        // Far fewer than a launch finds: the compaction runs again with room for all.
        candidate_capacity: 8,
    };
    for (name, limits) in [("default", PairLimits::DEFAULT), ("small", small)] {
        let gpu_products = GpuPairProducts::with_limits(&device, limits, Arc::new(CpuProducts))
            .unwrap_or_else(|e| panic!("{e}"));
        let gpu = find_pairs_on(&source, &params, &gpu_products).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gpu_products.fallbacks(), 0, "the GPU must have computed");
        assert_eq!(gpu.stats.device, format!("cuda:{}", device.ordinal));
        let what = format!("{name} limits");
        let identical = assert_same_pairs(&cpu.pairs, &gpu.pairs, threshold, &what);
        assert_eq!(
            groups_of(&gpu.pairs),
            groups_of(&cpu.pairs),
            "{what}: groups"
        );
        println!(
            "gpu pair parity on {} ({what}): {rows} x {dim}, {} partitions, {:.2} per row, {} batches; {} pairs on the CPU, {} on the GPU, {identical} bit-identical; products {:.3} s CPU, {:.3} s GPU",
            device.name,
            cpu.stats.partitions,
            cpu.stats.replication,
            cpu.stats.batches,
            cpu.pairs.len(),
            gpu.pairs.len(),
            cpu.stats.seconds_products,
            gpu.stats.seconds_products
        );
    }
}

/// Partitions as the engine gathers them (primaries, vectors), of the sizes a large search
/// makes (500 primaries and a few times as many replicas) and odd ones, from the planted
/// vectors.
fn partitions(vectors: &[f32], dim: usize) -> Vec<(usize, Vec<f32>)> {
    let shapes = [
        (500, 2300),
        (1, 2),
        (7, 7),
        (0, 30),
        (2500, 2600),
        (300, 301),
    ];
    shapes
        .iter()
        .enumerate()
        .map(|(p, &(primaries, rows))| {
            // Consecutive rows, so that planted copies (next to their originals) come along.
            let total = vectors.len() / dim;
            let picked: Vec<usize> = (0..rows).map(|r| (p * 1999 + r) % total).collect();
            let values = picked
                .iter()
                .flat_map(|&r| vectors[r * dim..(r + 1) * dim].iter().copied())
                .collect();
            (primaries, values)
        })
        .collect()
}

#[test]
fn gpu_candidates_are_the_cpu_candidates() {
    let Some(device) = gpu_or_skip("gpu pair candidates") else {
        return;
    };
    let dim = 512;
    let vectors = planted(12_000, dim);
    let owned = partitions(&vectors, dim);
    let parts: Vec<PairBlock> = owned
        .iter()
        .map(|(primaries, vectors)| PairBlock {
            vectors,
            primaries: *primaries,
        })
        .collect();
    let products =
        GpuPairProducts::new(&device, Arc::new(CpuProducts)).unwrap_or_else(|e| panic!("{e}"));
    for floor in [0.9, 0.45] {
        let cpu = CpuProducts.candidates(&parts, dim, floor);
        let gpu = products
            .try_candidates(&parts, dim, floor)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gpu.len(), parts.len());
        let (mut total, mut borderline) = (0, 0);
        for (p, part) in parts.iter().enumerate() {
            let dot = |c: &Candidate| {
                let row = |i: u32| &part.vectors[i as usize * dim..(i as usize + 1) * dim];
                row(c.x)
                    .iter()
                    .zip(row(c.y))
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum::<f64>()
            };
            let unique: BTreeSet<Candidate> = gpu[p].iter().copied().collect();
            assert_eq!(
                unique.len(),
                gpu[p].len(),
                "partition {p}: a candidate twice"
            );
            let cpu_set: BTreeSet<Candidate> = cpu[p].iter().copied().collect();
            for c in unique.symmetric_difference(&cpu_set) {
                // Only products within float rounding of the floor may differ.
                let d = dot(c);
                assert!(
                    (d - f64::from(floor)).abs() < 1e-5,
                    "partition {p}, floor {floor}: {c:?} (product {d}) on one side only"
                );
                borderline += 1;
            }
            total += cpu_set.len();
        }
        assert!(total > 200, "floor {floor}: only {total} candidates");
        println!(
            "gpu pair candidates on {} at floor {floor}: {total} on the CPU, {borderline} within rounding of the floor on one side only",
            device.name
        );
    }
    assert_eq!(products.fallbacks(), 0);
}

/// A float32 .npy of `rows` rows of `dim`.
fn write_npy(path: &Path, values: &[f32], dim: usize) {
    let rows = values.len() / dim;
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

fn dedup(input: &Path, output: &Path, device: &str) -> std::process::Output {
    mmcurate(&[
        "dedup",
        "--embeddings",
        input.to_str().unwrap(),
        "--min-cosine",
        "0.95",
        "--output",
        output.to_str().unwrap(),
        "--partitions",
        "8",
        "--threads",
        "2",
        "--device",
        device,
    ])
}

#[test]
fn dedup_device_chooses_where_the_products_run_and_falls_back_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("emb.npy");
    write_npy(&input, &planted(3_000, 64), 64);
    let summary = |out: &Path| -> serde_json::Value {
        serde_json::from_slice(&read(out.join("summary.json"))).unwrap()
    };
    let cpu_out = dir.path().join("cpu");
    ok(&dedup(&input, &cpu_out, "cpu"));
    let cpu = summary(&cpu_out);
    assert_eq!(cpu["device"], "cpu (asked for)");
    assert_eq!(cpu["search"]["device"], "cpu");
    assert!(cpu["pairs"].as_u64().unwrap() > 100, "{}", cpu["pairs"]);

    // auto: the GPU when one answers, else the CPU with the reason; the same files either way.
    let auto_out = dir.path().join("auto");
    ok(&dedup(&input, &auto_out, "auto"));
    let auto = summary(&auto_out);
    let device = auto["device"].as_str().unwrap();
    if mmcurate::gpu::device::driver_available() {
        assert!(
            device.starts_with("cuda:") || device.starts_with("cpu ("),
            "{device}"
        );
    } else {
        assert_eq!(device, "cpu (no CUDA driver library libcuda.so found)");
    }
    for file in ["pairs.parquet", "groups.parquet"] {
        assert!(
            read(cpu_out.join(file)) == read(auto_out.join(file)),
            "{file} differs between --device cpu and auto ({device})"
        );
    }

    let bad = dedup(&input, &dir.path().join("bad"), "gpu");
    assert!(!bad.status.success());
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(
        message.contains("--device gpu: must be \"auto\"") && message.contains("\"cuda:N\""),
        "{message}"
    );
    assert!(!dir.path().join("bad").exists(), "nothing may be written");

    if !mmcurate::gpu::device::driver_available() {
        let out = dir.path().join("cuda");
        let cuda = dedup(&input, &out, "cuda");
        assert!(!cuda.status.success());
        let message = String::from_utf8_lossy(&cuda.stderr);
        assert!(
            message.contains("--device cuda: no CUDA driver library libcuda.so found")
                && message.contains("or --device cpu"),
            "{message}"
        );
        assert!(!message.contains("panicked"), "{message}");
        assert!(!out.exists(), "nothing may be written");
    }
}
