//! The pair search against an exhaustive reference on tens of thousands of vectors: recall,
//! exactness of what it reports, pairs that straddle partitions, the same result on any thread
//! count and from shards merged.

use super::engine::{find_pairs, PairSearch, Shard};
use super::files::{groups_of, write_groups, write_pairs};
use super::npy::NpyFiles;
use super::source::VectorsInMemory;
use super::tile::dot_products;
use super::{mix, CosinePair};
use crate::vector::{cosine, normalise};

const DIM: usize = 128;
const THRESHOLD: f32 = 0.95;

/// Uniform values in [-√3, √3] from a seeded stream (mean 0, variance 1).
fn noise(seed: u64, out: &mut [f32]) {
    let mut state = mix(seed) | 1;
    for v in out {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *v = (2.0 * ((state >> 40) as f32 / (1u64 << 24) as f32) - 1.0) * 3f32.sqrt();
    }
}

/// `base` plus isotropic noise of relative size `size`, unit length: cosine to `base` about
/// 1 / √(1 + size²).
fn near(base: &[f32], seed: u64, size: f32) -> Vec<f32> {
    let mut v = vec![0f32; base.len()];
    noise(seed, &mut v);
    let scale = size / (base.len() as f32).sqrt();
    for (x, b) in v.iter_mut().zip(base) {
        *x = b + scale * *x;
    }
    normalise(&mut v, base.len());
    v
}

/// 24k unit vectors in 40 blobs (so k-means has clear partitions), about a quarter of them
/// with near copies at cosines around the threshold, and 300 small clusters of copies of the
/// midpoints between two blob centres: those sit on a partition boundary, so their pairs
/// straddle partitions.
fn corpus() -> Vec<f32> {
    let blobs: Vec<Vec<f32>> = (0..40)
        .map(|b| {
            let mut c = vec![0f32; DIM];
            noise(1000 + b, &mut c);
            normalise(&mut c, DIM);
            c
        })
        .collect();
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < 24_000 * DIM {
        i += 1;
        let h = mix(i);
        let base = near(&blobs[(h % 40) as usize], i << 8, 1.2);
        out.extend_from_slice(&base);
        if h % 4 == 0 {
            for c in 0..1 + (h >> 8) % 3 {
                // Cosine to the base from about 0.995 down to 0.9.
                let size = 0.1 + 0.4 * ((h >> (16 + 4 * c)) % 16) as f32 / 15.0;
                out.extend(near(&base, (i << 8) + 1 + c, size));
            }
        }
        if i % 80 == 0 {
            let (u, v) = (&blobs[(h % 40) as usize], &blobs[((h >> 20) % 40) as usize]);
            let mut mid: Vec<f32> = u.iter().zip(v).map(|(x, y)| x + y).collect();
            normalise(&mut mid, DIM);
            for c in 0..4 {
                out.extend(near(&mid, (i << 8) + 100 + c, 0.15));
            }
        }
    }
    out
}

/// Every pair ≥ T by exhaustive blocked products, with the same exact cosine.
fn exhaustive(vectors: &[f32]) -> Vec<CosinePair> {
    let n = vectors.len() / DIM;
    let block = 512;
    let mut tile = vec![0f32; block * block];
    let mut pairs = Vec::new();
    for i0 in (0..n).step_by(block) {
        let left = &vectors[i0 * DIM..(i0 + block).min(n) * DIM];
        for j0 in (i0..n).step_by(block) {
            let right = &vectors[j0 * DIM..(j0 + block).min(n) * DIM];
            let cols = right.len() / DIM;
            dot_products(left, right, DIM, &mut tile);
            for i in 0..left.len() / DIM {
                for j in 0..cols {
                    let (a, b) = (i0 + i, j0 + j);
                    if b > a && tile[i * cols + j] >= THRESHOLD - 1e-3 {
                        let c = cosine(
                            &vectors[a * DIM..(a + 1) * DIM],
                            &vectors[b * DIM..(b + 1) * DIM],
                        );
                        if c >= THRESHOLD {
                            pairs.push(CosinePair {
                                a: a as u64,
                                b: b as u64,
                                cosine: c,
                            });
                        }
                    }
                }
            }
        }
    }
    pairs.sort_unstable_by_key(|p| (p.a, p.b));
    pairs
}

fn search(vectors: &[f32], params: &PairSearch, threads: usize) -> Vec<CosinePair> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let source = VectorsInMemory { vectors, dim: DIM };
    pool.install(|| find_pairs(&source, params).unwrap().pairs)
}

fn recall(found: &[CosinePair], exact: &[CosinePair]) -> f64 {
    for p in found {
        let i = exact
            .binary_search_by_key(&(p.a, p.b), |e| (e.a, e.b))
            .unwrap_or_else(|_| panic!("{p:?} is not a pair above the threshold"));
        assert_eq!(exact[i].cosine.to_bits(), p.cosine.to_bits(), "{p:?}");
    }
    assert!(found
        .windows(2)
        .all(|w| (w[0].a, w[0].b) < (w[1].a, w[1].b)));
    found.len() as f64 / exact.len() as f64
}

#[test]
fn finds_the_pairs_of_an_exhaustive_search_across_partitions() {
    let vectors = corpus();
    let exact = exhaustive(&vectors);
    assert!(exact.len() > 5000, "{} pairs", exact.len());
    let mut params = PairSearch::new(THRESHOLD);
    params.partitions = Some(40);

    // No replication: the pairs that straddle a boundary are lost, so the corpus has many.
    params.max_replicas = 0;
    let primaries_only = recall(&search(&vectors, &params, 2), &exact);
    assert!(
        primaries_only < 0.97,
        "recall without replicas {primaries_only}"
    );

    // The worst-case bound finds every pair.
    params.max_replicas = 40;
    params.margin = 1.0;
    assert_eq!(recall(&search(&vectors, &params, 2), &exact), 1.0);

    // The defaults find at least 99%.
    let mut defaults = PairSearch::new(THRESHOLD);
    defaults.partitions = Some(40);
    let found = search(&vectors, &defaults, 2);
    let r = recall(&found, &exact);
    assert!(r >= 0.99, "recall {r} with the default margin");
}

#[test]
fn the_same_pairs_and_files_on_any_thread_count_and_from_shards() {
    let vectors = corpus();
    let mut params = PairSearch::new(THRESHOLD);
    params.partitions = Some(64);
    // Small batches, so the gathering in several passes is exercised too.
    params.memory_budget = 2 << 20;
    let one = search(&vectors, &params, 1);
    let three = search(&vectors, &params, 3);
    assert!(one.len() > 5000);
    let bits = |p: &[CosinePair]| -> Vec<(u64, u64, u32)> {
        p.iter().map(|p| (p.a, p.b, p.cosine.to_bits())).collect()
    };
    assert_eq!(bits(&one), bits(&three));
    let dir = tempfile::tempdir().unwrap();
    let files = |tag: &str, pairs: &[CosinePair]| {
        let (p, g) = (
            dir.path().join(format!("p{tag}.parquet")),
            dir.path().join(format!("g{tag}.parquet")),
        );
        write_pairs(&p, pairs).unwrap();
        write_groups(&g, &groups_of(pairs)).unwrap();
        (std::fs::read(p).unwrap(), std::fs::read(g).unwrap())
    };
    assert_eq!(files("1", &one), files("3", &three));

    let mut merged = Vec::new();
    for index in 0..3 {
        let mut shard = params;
        shard.shard = Shard { count: 3, index };
        let part = search(&vectors, &shard, 2);
        assert!(!part.is_empty() && part.len() < one.len());
        merged.extend(part);
    }
    merged.sort_unstable_by_key(|p| (p.a, p.b));
    assert_eq!(bits(&merged), bits(&one));
}

#[test]
fn normalises_rows_and_skips_bad_ones() {
    // Scaled copies are the same direction; a NaN row and a zero row pair with nothing.
    let vectors = [
        2.0,
        0.0,
        0.5,
        0.0,
        f32::NAN,
        1.0,
        0.0,
        0.0,
        0.0,
        3.0,
        3.0,
        0.0,
    ];
    let source = VectorsInMemory {
        vectors: &vectors,
        dim: 2,
    };
    let report = find_pairs(&source, &PairSearch::new(0.9)).unwrap();
    let keys: Vec<(u64, u64)> = report.pairs.iter().map(|p| (p.a, p.b)).collect();
    assert_eq!(keys, [(0, 1), (0, 5), (1, 5)]);
    assert!(report.pairs.iter().all(|p| p.cosine == 1.0));
    let mut bad = PairSearch::new(1.5);
    let e = find_pairs(&source, &bad).err().unwrap().to_string();
    assert!(e.contains("min_cosine = 1.5"), "{e}");
    bad = PairSearch::new(0.9);
    bad.shard = Shard { count: 2, index: 2 };
    assert!(find_pairs(&source, &bad).is_err());
}

/// The corpus as two .npy files in a folder (rows split at 10,000), float32 or float16.
fn npy_folder(vectors: &[f32], descr: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let split = 10_000 * DIM;
    for (name, part) in [("a.npy", &vectors[..split]), ("b.npy", &vectors[split..])] {
        let bytes: Vec<u8> = match descr {
            "<f2" => part
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
                .collect(),
            _ => part.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        super::npy::tests::write_npy(&dir.path().join(name), descr, part.len() / DIM, DIM, &bytes);
    }
    dir
}

#[test]
fn files_read_in_small_batches_and_windows_give_the_pairs_of_the_matrix_in_memory() {
    let vectors = corpus();
    let mut params = PairSearch::new(THRESHOLD);
    params.partitions = Some(48);
    let in_memory = search(&vectors, &params, 2);
    assert!(in_memory.len() > 5000);
    let bits = |p: &[CosinePair]| -> Vec<(u64, u64, u32)> {
        p.iter().map(|p| (p.a, p.b, p.cosine.to_bits())).collect()
    };
    // A budget smaller than the memberships: a few partitions per batch, each batch's
    // rows read through 16 KiB windows of the files (128 float32 rows).
    let mut tiny = params;
    tiny.memory_budget = 1;
    let from_files = |descr: &str| {
        let dir = npy_folder(&vectors, descr);
        let source = NpyFiles::open(dir.path())
            .unwrap()
            .with_window_bytes(16 << 10);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| find_pairs(&source, &tiny).unwrap())
    };
    let report = from_files("<f4");
    assert!(
        report.stats.batches > 10,
        "{} batches",
        report.stats.batches
    );
    assert_eq!(report.stats.gathers, report.stats.batches);
    assert_eq!(bits(&report.pairs), bits(&in_memory));

    // float16 files: the pairs of the float16 values, converted row by row as gathered.
    let rounded: Vec<f32> = vectors
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect();
    let expected = search(&rounded, &params, 2);
    let report = from_files("<f2");
    assert!(report.stats.batches > 10);
    assert_eq!(bits(&report.pairs), bits(&expected));
}

#[test]
fn two_levels_keep_the_recall_and_the_same_pairs_on_any_thread_count_and_from_shards() {
    let vectors = corpus();
    let exact = exhaustive(&vectors);
    // 120 partitions in 11 groups, each row looking into its nearest groups (the default count).
    let mut params = PairSearch::new(THRESHOLD);
    params.partitions = Some(120);
    params.groups = Some(11);
    params.memory_budget = 2 << 20;
    let one = search(&vectors, &params, 1);
    let r = recall(&one, &exact);
    assert!(r >= 0.99, "recall {r} with two levels");
    // Looking into one group only loses the pairs across groups' boundaries.
    let mut one_probe = params;
    one_probe.probes = 1;
    let narrow = recall(&search(&vectors, &one_probe, 2), &exact);
    assert!(narrow < r, "one probe {narrow}, four {r}");

    let bits = |p: &[CosinePair]| -> Vec<(u64, u64, u32)> {
        p.iter().map(|p| (p.a, p.b, p.cosine.to_bits())).collect()
    };
    assert_eq!(bits(&search(&vectors, &params, 3)), bits(&one));
    let mut merged = Vec::new();
    for index in 0..3 {
        let mut shard = params;
        shard.shard = Shard { count: 3, index };
        merged.extend(search(&vectors, &shard, 2));
    }
    merged.sort_unstable_by_key(|p| (p.a, p.b));
    assert_eq!(bits(&merged), bits(&one));
}

#[test]
fn a_search_split_into_steps_gives_the_pairs_of_one_process() {
    use super::engine::{assign_rows, learn_partitions, search_partitions, PairStats};
    use super::plan::{
        memberships_path, plan_dir, read_memberships, read_plan, read_plan_info, row_range,
        write_memberships, write_plan,
    };
    use super::CpuProducts;

    let vectors = corpus();
    let mut params = PairSearch::new(THRESHOLD);
    params.partitions = Some(120);
    params.groups = Some(11);
    let bits = |p: &[CosinePair]| -> Vec<(u64, u64, u32)> {
        p.iter().map(|p| (p.a, p.b, p.cosine.to_bits())).collect()
    };
    let source = VectorsInMemory {
        vectors: &vectors,
        dim: DIM,
    };
    let whole = find_pairs(&source, &params).unwrap();
    assert!(whole.stats.sample_held);
    // A budget under twice the sample's bytes: the sample is read back in batches of groups,
    // and the partitions, hence the pairs, are the same.
    let mut small = params;
    small.memory_budget = 2 << 20;
    let batched = find_pairs(&source, &small).unwrap();
    assert!(!batched.stats.sample_held);
    assert_eq!(batched.stats.sample_rows, whole.stats.sample_rows);
    assert_eq!(bits(&batched.pairs), bits(&whole.pairs));

    // Partitions once, three row ranges assigned, three partition ranges searched, from
    // .npy files read through small windows.
    let files = npy_folder(&vectors, "<f4");
    let source = NpyFiles::open(files.path())
        .unwrap()
        .with_window_bytes(64 << 10);
    let rows = (vectors.len() / DIM) as u64;
    let out = tempfile::tempdir().unwrap();
    let dir = plan_dir(out.path());
    let mut stats = PairStats::default();
    let partitions = learn_partitions(&source, &small, &mut stats).unwrap();
    write_plan(&dir, &small, rows, DIM, &partitions, &stats).unwrap();
    let shard = |index| Shard { count: 3, index };
    for index in 0..3 {
        let plan = read_plan(&dir, &small, rows, DIM).unwrap();
        let range = row_range(rows, shard(index));
        assert!(!range.is_empty() && range.start % 8192 == 0, "{range:?}");
        let all = 0..plan.partitions.len() as u32;
        let memberships = assign_rows(
            &source,
            &small,
            &plan.partitions,
            range.clone(),
            all,
            &mut stats,
        )
        .unwrap();
        assert_eq!(memberships.assigned_rows, range.end - range.start);
        write_memberships(&dir, &plan.info, shard(index), range, &memberships).unwrap();
    }
    let mut merged = Vec::new();
    for index in 0..3 {
        let plan = read_plan_info(&dir, &small, rows, DIM).unwrap();
        assert_eq!(plan.groups, 11);
        let memberships = read_memberships(&dir, &plan, shard(index), rows).unwrap();
        assert_eq!(memberships.assigned_rows, rows);
        let range = plan.range_of(shard(index));
        let part = search_partitions(
            &source,
            &small,
            &memberships,
            range,
            &CpuProducts,
            &mut stats,
        )
        .unwrap();
        assert!(!part.is_empty() && part.len() < whole.pairs.len());
        merged.extend(part);
    }
    merged.sort_unstable_by_key(|p| (p.a, p.b));
    assert_eq!(bits(&merged), bits(&whole.pairs));

    // What a step refuses, and what it says to do.
    let message = |e: super::PairsError| e.to_string();
    let mut other = small;
    other.min_cosine = 0.9;
    let e = message(read_plan(&dir, &other, rows, DIM).err().unwrap());
    assert!(
        e.contains("made with --min-cosine 0.95, this step has 0.9"),
        "{e}"
    );
    let e = message(read_plan(&dir, &small, rows + 1, DIM).err().unwrap());
    assert!(e.contains("rows of the input"), "{e}");
    let plan = read_plan_info(&dir, &small, rows, DIM).unwrap();
    let first = memberships_path(&dir, shard(0));
    let bytes = std::fs::read(&first).unwrap();
    std::fs::write(&first, &bytes[..bytes.len() - 5]).unwrap();
    let e = message(read_memberships(&dir, &plan, shard(1), rows).err().unwrap());
    assert!(
        e.contains("run --step assign --num-shards 3 --shard-index 0 again"),
        "{e}"
    );
    std::fs::write(&first, &bytes).unwrap();
    std::fs::remove_file(memberships_path(&dir, shard(2))).unwrap();
    let e = message(read_memberships(&dir, &plan, shard(0), rows).err().unwrap());
    assert!(
        e.contains("row range 2 of 3 has not been assigned: run --step assign --num-shards 3 --shard-index 2 first"),
        "{e}"
    );
    // A plan made again with another seed: the old memberships are refused.
    let mut reseeded = small;
    reseeded.seed ^= 1;
    let partitions = learn_partitions(&source, &reseeded, &mut stats).unwrap();
    write_plan(&dir, &reseeded, rows, DIM, &partitions, &stats).unwrap();
    let plan = read_plan_info(&dir, &reseeded, rows, DIM).unwrap();
    let e = message(read_memberships(&dir, &plan, shard(0), rows).err().unwrap());
    assert!(e.contains("written for another plan"), "{e}");
    // Centroids changed after the plan was written.
    let centroids = dir.join("centroids.npy");
    let mut bytes = std::fs::read(&centroids).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&centroids, bytes).unwrap();
    let e = message(read_plan(&dir, &reseeded, rows, DIM).err().unwrap());
    assert!(
        e.contains("is not the one this plan was written with"),
        "{e}"
    );
    std::fs::remove_file(dir.join("plan.json")).unwrap();
    let e = message(read_plan(&dir, &reseeded, rows, DIM).err().unwrap());
    assert!(
        e.contains("no plan: run this command with --step partitions first"),
        "{e}"
    );
}
