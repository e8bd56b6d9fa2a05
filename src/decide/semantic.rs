//! Semantic near duplicates: all pairs of samples whose normalised embeddings (CLIP and
//! friends) have a cosine similarity at or above a threshold, found through an HNSW graph
//! (`hnsw_rs`) instead of comparing all pairs, with an exact brute-force reference for tests.
//!
//! This module only finds the pairs; grouping them and choosing which sample to keep is
//! dedup's job. The search is approximate: a pair it reports is always a true pair (its
//! cosine is recomputed exactly), but a small fraction of true pairs can be missed. Which
//! ones depends only on the data: points are inserted in order, one at a time (hnsw_rs draws
//! each point's layer from a generator with a fixed seed, so parallel insertion would make
//! the graph, and the misses, depend on thread timing), and the searches, which only read the
//! graph, run in parallel.

use hnsw_rs::prelude::{Distance, Hnsw};
use rayon::prelude::*;

use super::pairs::{
    find_pairs_on, EmbeddingSource, PairSearch, PairsError, Shard, VectorsInMemory,
};
use crate::vector::{dot_kernel, row, row_count, PairProducts};

/// A pair of samples (indices into the input, a < b) whose embeddings have cosine similarity >= the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimilarPair {
    pub a: usize,
    pub b: usize,
    pub cosine: f32,
}

/// All pairs with cosine >= min_cosine among `n = vectors.len() / dim` unit vectors (row-major),
/// sorted by (a, b), each once: the partitioned search of [`super::pairs`] over every partition
/// ([`pairs_in_partitions`]), its products on `products` (the run's device), which `run` uses
/// (the HNSW index below is kept for its benchmark). A threshold outside (0, 1], which the
/// config never passes, is searched by brute force.
pub fn pairs_above(
    vectors: &[f32],
    dim: usize,
    min_cosine: f32,
    products: &dyn PairProducts,
) -> Vec<SimilarPair> {
    let source = VectorsInMemory { vectors, dim };
    match pairs_in_partitions(&source, min_cosine, Shard::WHOLE, products) {
        Ok(pairs) => pairs,
        Err(_) => pairs_above_exact(vectors, dim, min_cosine),
    }
}

/// The pairs of one share of the partitions (`shard`) of `run`'s semantic search over the
/// unit vectors of `source`, the products on `products`: what a partition task of the decide
/// phase finds. The union of all shares' pairs, sorted, is what [`pairs_above`] finds in one
/// process (each pair is reported by one partition only), so the groups and the kept samples
/// are the same too; so are they on any device (every candidate is checked on the host).
pub fn pairs_in_partitions(
    source: &dyn EmbeddingSource,
    min_cosine: f32,
    shard: Shard,
    products: &dyn PairProducts,
) -> Result<Vec<SimilarPair>, PairsError> {
    let mut params = PairSearch::new(min_cosine);
    // `run`'s embeddings are unit length already.
    params.normalise = false;
    // Scans of memory are cheap: gather in batches rather than copy every replica at once
    // (the pairs do not depend on the budget, only the batches do).
    params.memory_budget = 2 << 30;
    params.shard = shard;
    Ok(find_pairs_on(source, &params, products)?
        .pairs
        .into_iter()
        .map(|p| SimilarPair {
            a: p.a as usize,
            b: p.b as usize,
            cosine: p.cosine,
        })
        .collect())
}

/// The same by exact brute force (the reference for tests; fine up to a few thousand rows).
pub fn pairs_above_exact(vectors: &[f32], dim: usize, min_cosine: f32) -> Vec<SimilarPair> {
    let n = row_count(vectors, dim);
    if n < 2 {
        return Vec::new();
    }
    let dot = dot_kernel();
    (0..n)
        .into_par_iter()
        .flat_map_iter(|a| {
            let row_a = row(vectors, dim, a);
            (a + 1..n).filter_map(move |b| {
                let cosine = dot(row_a, row(vectors, dim, b));
                (cosine >= min_cosine).then_some(SimilarPair { a, b, cosine })
            })
        })
        .collect()
}

/// HNSW settings, chosen on 512-d data at threshold 0.95 (measured with the tests' corpus
/// of independent random vectors plus near copies, and with the benchmark's embedding-like
/// corpus; see `benches/semantic_dedup.rs`). Independent random vectors are the hard case:
/// a graph search has no structure to follow there, so misses show up first on them.
#[derive(Debug, Clone, Copy)]
struct HnswParams {
    /// Links kept per point on the upper layers (hnsw_rs keeps twice as many on layer 0).
    /// 16 (32 on layer 0) is the usual default. 12 missed 0.2–0.3% of the pairs among 10k
    /// random vectors and 0.08% of the planted pairs among 100k embedding-like ones; 24
    /// found 2 more of 21,905 pairs among 30k random vectors for about 30% more build time
    /// and half as many links again (every link is a separate allocation in hnsw_rs).
    max_nb_connection: usize,
    /// Candidates explored while inserting a point: the quality of the graph, which matters
    /// more than the search's. Among 30k random vectors, 64 missed 0.2% of the pairs
    /// whatever the search's ef, 100 missed 0.01%; every step costs insertion time about
    /// proportionally.
    ef_construction: usize,
    /// Layers of the graph. 16 is hnsw_rs' maximum and what its `file_dump` requires.
    max_layer: usize,
    /// Neighbours asked for per point on the first search. Duplicate clusters are usually
    /// small; a point whose k neighbours are all above the threshold is searched again with
    /// 4k, so larger clusters are not cut off.
    neighbours: usize,
    /// Candidates explored per search: 3k. 64 found 2 more pairs of 21,905 among 30k random
    /// vectors for a third more search time.
    ef_search: usize,
}

impl HnswParams {
    const DEFAULT: HnswParams = HnswParams {
        max_nb_connection: 16,
        ef_construction: 100,
        max_layer: 16,
        neighbours: 16,
        ef_search: 48,
    };
}

/// An HNSW graph over the rows of a matrix of unit vectors, searched for pairs above a cosine
/// threshold. Building and searching are separate so that their costs can be measured apart.
pub struct SemanticIndex<'a> {
    vectors: &'a [f32],
    dim: usize,
    params: HnswParams,
    /// `None` when there are fewer than two rows to index.
    graph: Option<Hnsw<'static, i8, UnitCosineDistance>>,
    quantiser: Quantiser,
}

impl<'a> SemanticIndex<'a> {
    /// Indexes the `vectors.len() / dim` rows of `vectors` (unit vectors, row-major), inserting
    /// them in order. Rows holding a non-finite value are left out: they pair with nothing.
    pub fn build(vectors: &'a [f32], dim: usize) -> SemanticIndex<'a> {
        SemanticIndex::build_with(vectors, dim, HnswParams::DEFAULT)
    }

    fn build_with(vectors: &'a [f32], dim: usize, params: HnswParams) -> SemanticIndex<'a> {
        let n = row_count(vectors, dim);
        let quantiser = Quantiser::for_vectors(vectors);
        let mut index = SemanticIndex {
            vectors,
            dim,
            params,
            graph: None,
            quantiser,
        };
        if n < 2 {
            return index;
        }
        let mut graph = Hnsw::new(
            params.max_nb_connection,
            n,
            params.max_layer,
            params.ef_construction,
            UnitCosineDistance::new(quantiser),
        );
        // In order, on one thread: the same graph on every run and machine (see the module
        // comment; the integer distances are exact, so no CPU feature changes them either).
        let mut quantised = Vec::with_capacity(dim);
        for i in 0..n {
            let v = row(vectors, dim, i);
            if v.iter().all(|x| x.is_finite()) {
                quantiser.quantise(v, &mut quantised);
                graph.insert_slice((&quantised, i));
            }
        }
        graph.set_searching_mode(true);
        index.graph = Some(graph);
        index
    }

    /// Number of rows (indexed or not).
    pub fn len(&self) -> usize {
        row_count(self.vectors, self.dim)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All pairs with cosine >= `min_cosine`, sorted by (a, b), each once; see [`pairs_above`].
    pub fn pairs_above(&self, min_cosine: f32) -> Vec<SimilarPair> {
        let Some(graph) = &self.graph else {
            return Vec::new();
        };
        let n = self.len();
        let dot = dot_kernel();
        let mut pairs: Vec<SimilarPair> = (0..n)
            .into_par_iter()
            .flat_map_iter(|i| {
                let query = row(self.vectors, self.dim, i);
                let mut found = Vec::new();
                if !query.iter().all(|x| x.is_finite()) {
                    return found;
                }
                let mut quantised = Vec::with_capacity(self.dim);
                self.quantiser.quantise(query, &mut quantised);
                let mut k = self.params.neighbours.min(n - 1);
                loop {
                    found.clear();
                    // k + 1: the point itself is in the graph and comes back too.
                    let ef = self.params.ef_search.max(2 * (k + 1));
                    let neighbours = graph.search(&quantised, k + 1, ef);
                    let asked_for_all = neighbours.len() == k + 1;
                    let mut all_above = true;
                    for neighbour in &neighbours {
                        let j = neighbour.d_id;
                        if j == i {
                            continue;
                        }
                        let (a, b) = (i.min(j), i.max(j));
                        // The exact cosine, not the graph's distance: the same value whichever
                        // end of the pair found it, and the same as pairs_above_exact's.
                        let cosine = dot(
                            row(self.vectors, self.dim, a),
                            row(self.vectors, self.dim, b),
                        );
                        if cosine >= min_cosine {
                            found.push(SimilarPair { a, b, cosine });
                        } else {
                            all_above = false;
                        }
                    }
                    // Every neighbour asked for is a pair: there may be more beyond them (a
                    // dense cluster of copies), so look further.
                    if asked_for_all && all_above && k < n - 1 {
                        k = (4 * k).min(n - 1);
                        continue;
                    }
                    break;
                }
                found
            })
            .collect();
        pairs.sort_unstable_by_key(|p| (p.a, p.b));
        pairs.dedup_by_key(|p| (p.a, p.b));
        pairs
    }
}

/// Unit vectors as 8-bit integers for the graph: `round(v * scale)`, one scale for the whole
/// matrix, chosen so that its largest component becomes 127. The graph only has to rank
/// neighbours; every pair it proposes is checked with the f32 vectors. With 8 bits the graph
/// holds a quarter of the bytes and a distance reads a quarter of the memory, which is what
/// an HNSW build over a million vectors waits on. The cosine it sees is off by about 0.003 on
/// 512-d embeddings, far below the gap between copies and other neighbours.
#[derive(Clone, Copy, Debug)]
struct Quantiser {
    scale: f32,
}

impl Quantiser {
    fn for_vectors(vectors: &[f32]) -> Quantiser {
        let largest = vectors
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f32, |m, v| m.max(v.abs()));
        Quantiser {
            scale: if largest > 0.0 { 127.0 / largest } else { 1.0 },
        }
    }

    fn quantise(&self, v: &[f32], out: &mut Vec<i8>) {
        out.clear();
        out.extend(
            v.iter()
                .map(|x| (x * self.scale).round().clamp(-127.0, 127.0) as i8),
        );
    }
}

/// Cosine distance for unit vectors quantised by [`Quantiser`], `1 - a·b`, clamped to
/// `[0, 2]`.
///
/// Ours rather than hnsw_rs' `DistCosine` or `DistDot` because:
/// - `DistCosine` recomputes both norms in a scalar f64 loop on every call; a dot product
///   alone, in lanes that vectorise, is all unit vectors need;
/// - `DistDot` (`1 - a·b`) asserts the result is not negative, which rounding breaks: the dot
///   product of a unit vector with itself or a near copy can come out above 1.
///
/// hnsw_rs also asserts on negative distances inside its search, hence the clamp.
#[derive(Clone, Copy)]
struct UnitCosineDistance {
    dot: fn(&[i8], &[i8]) -> i32,
    /// 1 / scale²: turns the integer dot product back into a cosine.
    unit: f32,
}

impl UnitCosineDistance {
    fn new(quantiser: Quantiser) -> Self {
        UnitCosineDistance {
            dot: dot_i8_kernel(),
            unit: 1.0 / (quantiser.scale * quantiser.scale),
        }
    }
}

impl Distance<i8> for UnitCosineDistance {
    fn eval(&self, va: &[i8], vb: &[i8]) -> f32 {
        (1.0 - (self.dot)(va, vb) as f32 * self.unit).clamp(0.0, 2.0)
    }
}

/// The integer dot product for this CPU (exact, so every version gives the same result).
fn dot_i8_kernel() -> fn(&[i8], &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        return dot_i8_avx2;
    }
    dot_i8_body
}

#[cfg(target_arch = "x86_64")]
fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    /// The same code compiled for AVX2 (widening multiply-adds, `vpmaddwd`).
    #[target_feature(enable = "avx2")]
    unsafe fn inner(a: &[i8], b: &[i8]) -> i32 {
        dot_i8_body(a, b)
    }
    // SAFETY: dot_i8_kernel hands out this function only when the CPU supports AVX2.
    unsafe { inner(a, b) }
}

#[inline(always)]
fn dot_i8_body(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::pairs::CpuProducts;
    use crate::vector::normalise;

    use crate::vector::test_rng::Rng;

    fn random_unit(rng: &mut Rng, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|_| rng.normal() as f32).collect();
        normalise(&mut v, dim);
        v
    }

    /// `base` plus isotropic noise of relative size `noise`, normalised: its cosine to `base`
    /// is about `1 / sqrt(1 + noise²)` (0.95 at noise 0.33).
    fn near_copy(rng: &mut Rng, base: &[f32], noise: f64) -> Vec<f32> {
        let scale = noise / (base.len() as f64).sqrt();
        let mut v: Vec<f32> = base
            .iter()
            .map(|&x| (f64::from(x) + scale * rng.normal()) as f32)
            .collect();
        normalise(&mut v, base.len());
        v
    }

    fn keys(pairs: &[SimilarPair]) -> Vec<(usize, usize)> {
        pairs.iter().map(|p| (p.a, p.b)).collect()
    }

    #[test]
    fn quantised_distance_is_close_and_clamped() {
        let vectors = [0.6f32, 0.8, 1.0, 0.0, 0.0, 1.0, -1.0, 0.0];
        let quantiser = Quantiser::for_vectors(&vectors);
        let d = UnitCosineDistance::new(quantiser);
        let q = |i: usize| {
            let mut out = Vec::new();
            quantiser.quantise(row(&vectors, 2, i), &mut out);
            out
        };
        assert_eq!(q(0), [76, 102]);
        assert!(
            d.eval(&q(0), &q(0)).abs() < 1e-3,
            "{}",
            d.eval(&q(0), &q(0))
        );
        assert_eq!(d.eval(&q(1), &q(2)), 1.0);
        assert_eq!(d.eval(&q(1), &q(3)), 2.0);
        assert!((d.eval(&q(0), &q(1)) - 0.4).abs() < 5e-3);
        // 76² + 102² > 127²: a cosine above 1 is clamped to distance 0.
        assert_eq!(d.eval(&[127, 127], &[127, 127]), 0.0);
        let mut rng = Rng(5);
        let mut a = vec![0f32; 512 * 2];
        for v in a.iter_mut() {
            *v = rng.normal() as f32;
        }
        normalise(&mut a, 512);
        let quantiser = Quantiser::for_vectors(&a);
        let (mut qa, mut qb) = (Vec::new(), Vec::new());
        quantiser.quantise(row(&a, 512, 0), &mut qa);
        quantiser.quantise(row(&a, 512, 1), &mut qb);
        let exact = 1.0 - dot_kernel()(row(&a, 512, 0), row(&a, 512, 1));
        let quantised = UnitCosineDistance::new(quantiser).eval(&qa, &qb);
        assert!((exact - quantised).abs() < 0.01, "{exact} vs {quantised}");
        assert_eq!(dot_i8_kernel()(&qa, &qb), dot_i8_body(&qa, &qb));
    }

    #[test]
    fn exact_pairs_on_a_hand_made_set() {
        let s = std::f32::consts::FRAC_1_SQRT_2;
        #[rustfmt::skip]
        let vectors = [
            1.0, 0.0, 0.0,   // 0
            0.0, 1.0, 0.0,   // 1
            s,   s,   0.0,   // 2: 0.7071 to 0 and to 1
            1.0, 0.0, 0.0,   // 3: a copy of 0
            0.0, 0.0, 0.0,   // 4: zero row, pairs with nothing
            0.0, 0.0, -1.0,  // 5
            0.6, 0.8, 0.0,   // 6: 0.6 to 0, 0.8 to 1, 0.98995 to 2
        ];
        let pairs = pairs_above_exact(&vectors, 3, 0.7);
        let expect = [
            (0, 2, s),
            (0, 3, 1.0),
            (1, 2, s),
            (1, 6, 0.8),
            (2, 3, s),
            (2, 6, 0.6 * s + 0.8 * s),
        ];
        assert_eq!(
            keys(&pairs),
            expect.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>()
        );
        for (p, e) in pairs.iter().zip(expect) {
            assert!((p.cosine - e.2).abs() < 1e-6, "{p:?} vs {e:?}");
        }
        assert_eq!(keys(&pairs_above_exact(&vectors, 3, 0.99)), [(0, 3)]);
        // The graph finds the same on so small a set.
        assert_eq!(pairs_above(&vectors, 3, 0.7, &CpuProducts), pairs);
        assert_eq!(
            keys(&pairs_above(&vectors, 3, 0.99, &CpuProducts)),
            [(0, 3)]
        );
    }

    #[test]
    fn small_inputs_give_no_pairs() {
        assert!(pairs_above(&[], 4, 0.5, &CpuProducts).is_empty());
        assert!(pairs_above(&[1.0, 0.0], 2, 0.5, &CpuProducts).is_empty());
        assert!(pairs_above(&[1.0, 0.0, 1.0], 2, 0.5, &CpuProducts).is_empty());
        assert!(pairs_above(&[1.0, 0.0, 1.0, 0.0], 0, 0.5, &CpuProducts).is_empty());
        assert!(pairs_above_exact(&[1.0, 0.0], 2, 0.5).is_empty());
        assert!(pairs_above_exact(&[1.0, 0.0, 1.0, 0.0], 0, 0.5).is_empty());
        // Two rows: the smallest input that can pair.
        let two = pairs_above(&[1.0, 0.0, 1.0, 0.0], 2, 0.5, &CpuProducts);
        assert_eq!(
            two,
            [SimilarPair {
                a: 0,
                b: 1,
                cosine: 1.0
            }]
        );
    }

    #[test]
    fn rows_with_nan_are_never_paired() {
        let vectors = [1.0, 0.0, f32::NAN, 0.0, 1.0, 0.0, 0.0, 1.0];
        assert_eq!(keys(&pairs_above(&vectors, 2, 0.5, &CpuProducts)), [(0, 2)]);
        assert_eq!(keys(&pairs_above_exact(&vectors, 2, 0.5)), [(0, 2)]);
    }

    /// ~3,000 512-d unit vectors: random bases, plus clusters of 1 to 8 near copies of some of
    /// them at noise levels spread around the threshold, so some pairs sit just above 0.95
    /// and others just below.
    fn recall_corpus(seed: u64, total: usize) -> Vec<f32> {
        const DIM: usize = 512;
        let mut rng = Rng(seed);
        let mut vectors = Vec::new();
        let mut rows = 0;
        while rows < total {
            let base = random_unit(&mut rng, DIM);
            vectors.extend_from_slice(&base);
            rows += 1;
            if rng.next_u64() % 3 == 0 {
                let copies = 1 + rng.next_u64() % 8;
                for _ in 0..copies {
                    // Cosine to the base from about 0.999 (noise 0.05) down to 0.89 (0.5).
                    let noise = 0.05 + 0.45 * rng.uniform();
                    vectors.extend(near_copy(&mut rng, &base, noise));
                    rows += 1;
                }
            }
        }
        vectors
    }

    #[test]
    fn graph_finds_at_least_99_percent_of_the_exact_pairs() {
        const DIM: usize = 512;
        const THRESHOLD: f32 = 0.95;
        let vectors = recall_corpus(0x5EED_F00D_5E4A_471C, 3000);
        let exact = pairs_above_exact(&vectors, DIM, THRESHOLD);
        // The corpus must make the test meaningful: many pairs, and many near misses.
        let near_misses = pairs_above_exact(&vectors, DIM, 0.9).len() - exact.len();
        assert!(exact.len() > 1000, "{} exact pairs", exact.len());
        assert!(near_misses > 300, "{near_misses} pairs in [0.9, 0.95)");

        let found = pairs_above(&vectors, DIM, THRESHOLD, &CpuProducts);
        assert!(found
            .windows(2)
            .all(|w| (w[0].a, w[0].b) < (w[1].a, w[1].b)));
        // Every reported pair is a true pair, with the exact cosine.
        for p in &found {
            assert!(p.a < p.b && p.cosine >= THRESHOLD, "{p:?}");
            let i = exact
                .binary_search_by_key(&(p.a, p.b), |e| (e.a, e.b))
                .unwrap_or_else(|_| panic!("{p:?} is not an exact pair"));
            assert_eq!(exact[i].cosine.to_bits(), p.cosine.to_bits(), "{p:?}");
        }
        let recall = found.len() as f64 / exact.len() as f64;
        assert!(
            recall >= 0.99,
            "recall {recall}: {} of {}",
            found.len(),
            exact.len()
        );
    }

    #[test]
    fn dense_clusters_larger_than_k_are_found_whole() {
        const DIM: usize = 64;
        let mut rng = Rng(99);
        let mut vectors = Vec::new();
        for _ in 0..400 {
            vectors.extend(random_unit(&mut rng, DIM));
        }
        // 40 near copies of one vector and 30 exact copies of another: 780 + 435 pairs, far
        // more per point than the 16 neighbours the first search asks for.
        let near = random_unit(&mut rng, DIM);
        for _ in 0..40 {
            vectors.extend(near_copy(&mut rng, &near, 0.05));
        }
        let same = random_unit(&mut rng, DIM);
        for _ in 0..30 {
            vectors.extend_from_slice(&same);
        }
        let exact = pairs_above_exact(&vectors, DIM, 0.95);
        assert_eq!(exact.len(), 780 + 435);
        assert_eq!(
            keys(&pairs_above(&vectors, DIM, 0.95, &CpuProducts)),
            keys(&exact)
        );
    }

    #[test]
    fn partition_tasks_find_together_the_pairs_of_one_search() {
        // 5,000 rows: above the single-partition size, so run's search cuts them into
        // 2·√5000 = 141 partitions and the tasks' ranges hold different ones.
        const DIM: usize = 64;
        let mut rng = Rng(7);
        let mut vectors = Vec::new();
        while vectors.len() < 5000 * DIM {
            let base = random_unit(&mut rng, DIM);
            vectors.extend_from_slice(&base);
            if rng.next_u64() % 2 == 0 {
                vectors.extend(near_copy(&mut rng, &base, 0.1));
            }
        }
        vectors.truncate(5000 * DIM);
        let whole = pairs_above(&vectors, DIM, 0.95, &CpuProducts);
        assert!(whole.len() > 1000, "{} pairs", whole.len());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("embeddings.npy");
        std::fs::write(&path, crate::decide::pairs::npy::encode_f32(&vectors, DIM)).unwrap();
        let mapped = crate::decide::pairs::npy::NpyFiles::open(&path).unwrap();
        let memory = VectorsInMemory {
            vectors: &vectors,
            dim: DIM,
        };
        let bits = |p: &[SimilarPair]| -> Vec<(usize, usize, u32)> {
            p.iter().map(|p| (p.a, p.b, p.cosine.to_bits())).collect()
        };
        for source in [&memory as &dyn EmbeddingSource, &mapped] {
            let mut merged = Vec::new();
            for index in 0..4 {
                let shard = Shard { count: 4, index };
                let part = pairs_in_partitions(source, 0.95, shard, &CpuProducts).unwrap();
                assert!(!part.is_empty() && part.len() < whole.len(), "task {index}");
                merged.extend(part);
            }
            merged.sort_unstable_by_key(|p| (p.a, p.b));
            assert_eq!(bits(&merged), bits(&whole));
        }
    }
}
