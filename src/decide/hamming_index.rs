//! Finding all pairs of 64-bit hashes within a Hamming distance `d` without comparing all
//! pairs. Two exact methods, chosen by a cost estimate from the number of hashes and `d`:
//!
//! - **Sorted combinations** (small `d`: pHash dedup's 4, video frames' 8). The 64 bits are cut
//!   into `m > d` chunks; two hashes within `d` bits agree exactly on at least `m - d` chunks
//!   (pigeonhole), so every such pair shares the key made of some `m - d` chunks. For each of
//!   the C(m, m − d) combinations the hashes are radix-sorted by that key and only runs of equal
//!   keys are compared, reading the sorted hashes in order (the permuted sorted tables of Manku,
//!   Jain & Das Sarma, "Detecting near-duplicates for web crawling", WWW 2007). A pair is
//!   reported by the first combination (lowest chunks) among those it agrees on, so once,
//!   without a global de-duplication. `m` grows with N so that keys stay about log2(N) bits.
//! - **Probing** (large `d`): multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012): `m`
//!   chunk tables, each probed with the values within `d / m` bits of the query's chunk.
//!
//! Memory of the sorted method: the hashes, plus for each thread one (combination, pass) unit of
//! 12 bytes per hash, twice (radix sort buffers); a combination is split into passes over shares
//! of its key space when the units of all threads would exceed [`SORT_BUDGET_BYTES`]. Results are
//! sorted, so the same on any thread count. Written here rather than taken from a crate because
//! none on crates.io offers an all-pairs Hamming join.

use rayon::prelude::*;

/// The sorted method's working memory for all threads together (the radix buffers of the units
/// in flight): 2 GiB. Beyond it a combination is sorted in several passes.
pub const SORT_BUDGET_BYTES: usize = 1 << 31;
/// Bytes per hash in a unit: hash and id, in two buffers (radix source and destination).
const UNIT_BYTES_PER_HASH: usize = 2 * (8 + 4);
/// The sorted method is considered up to this many combinations.
const MAX_COMBINATIONS: f64 = 5000.0;
/// Radix digit width: 2^11 counters stay in the L1 cache.
const RADIX_BITS: u32 = 11;

/// How [`pairs_within`] finds the pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `chunks` chunks, a sort per combination of `chunks - d` of them.
    SortedCombinations { chunks: u32 },
    /// `chunks` probed chunk tables.
    Probing { chunks: u32 },
}

/// One chunk of the hash: `bits` bits starting at bit `shift`.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    shift: u32,
    bits: u32,
}

impl Chunk {
    #[inline]
    fn of(self, hash: u64) -> u32 {
        ((hash >> self.shift) & ((1u64 << self.bits) - 1)) as u32
    }

    /// Whether `diff` (two hashes XORed) is zero on this chunk: the two agree on it.
    #[inline]
    fn agrees(self, diff: u64) -> bool {
        diff >> self.shift & low_bits(self.bits) == 0
    }
}

/// A chunk's table: ids sorted by chunk value, with the offset where each value starts
/// (a counting sort, so a lookup is two array reads).
struct Table {
    offsets: Vec<u32>,
    ids: Vec<u32>,
}

impl Table {
    #[inline]
    fn bucket(&self, value: u32) -> &[u32] {
        let v = value as usize;
        &self.ids[self.offsets[v] as usize..self.offsets[v + 1] as usize]
    }
}

fn binomial(n: u32, k: u32) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

fn chunks_for(m: u32) -> Vec<Chunk> {
    let mut shift = 0;
    (0..m)
        .map(|i| {
            let bits = 64 / m + u32::from(i < 64 % m);
            let chunk = Chunk { shift, bits };
            shift += bits;
            chunk
        })
        .collect()
}

/// The estimated cost of probing with `m` tables (tables of at most 2^22 entries, m >= 3):
/// lookups and candidate checks are random reads (3 units each), plus building the tables.
fn probing_cost(n: f64, max_distance: u32, m: u32) -> f64 {
    let bits = 64u32.div_ceil(m);
    let radius = max_distance / m;
    let variants: f64 = (0..=radius.min(bits)).map(|r| binomial(bits, r)).sum();
    let lookups = m as f64 * variants;
    let candidates = lookups * n / 2f64.powi(bits as i32);
    n * (3.0 * lookups + 3.0 * candidates) + m as f64 * 2f64.powi(bits as i32)
}

/// The estimated cost of sorted combinations with `m` chunks: per combination and hash a scan,
/// the radix passes (sequential, 1.5 units each) and the comparisons within its key's run.
fn sorted_cost(n: f64, max_distance: u32, m: u32) -> f64 {
    let exact = m - max_distance;
    let combinations = binomial(m, exact);
    let key_bits = 64.0 * f64::from(exact) / f64::from(m);
    let radix_passes = (key_bits / f64::from(RADIX_BITS)).ceil();
    let run_pairs = n / 2f64.powf(key_bits) / 2.0;
    combinations * n * (1.0 + 1.5 * radix_passes + run_pairs)
}

/// The cheaper method by the estimates, for `n` hashes within `max_distance` bits.
pub fn choose_strategy(n: usize, max_distance: u32) -> Strategy {
    let n = n.max(2) as f64;
    let sorted = (max_distance + 1..=64)
        .filter(|&m| binomial(m, m - max_distance) <= MAX_COMBINATIONS)
        .map(|m| {
            (
                sorted_cost(n, max_distance, m),
                Strategy::SortedCombinations { chunks: m },
            )
        });
    let probing = (3..=16u32).map(|m| {
        (
            probing_cost(n, max_distance, m),
            Strategy::Probing { chunks: m },
        )
    });
    sorted
        .chain(probing)
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(Strategy::Probing { chunks: 4 }, |(_, s)| s)
}

/// Every pair `(i, j, distance)` with `i < j` and `hamming(hashes[i], hashes[j]) <= max_distance`,
/// sorted by `(i, j)`.
pub fn pairs_within(hashes: &[u64], max_distance: u32) -> Vec<(u32, u32, u32)> {
    pairs_within_by(
        hashes,
        max_distance,
        choose_strategy(hashes.len(), max_distance),
    )
}

/// [`pairs_within`] by a given method (the same pairs by either).
pub fn pairs_within_by(
    hashes: &[u64],
    max_distance: u32,
    strategy: Strategy,
) -> Vec<(u32, u32, u32)> {
    if hashes.len() < 2 {
        return Vec::new();
    }
    match strategy {
        Strategy::SortedCombinations { chunks } => {
            pairs_by_sorted_combinations(hashes, max_distance, chunks, SORT_BUDGET_BYTES)
        }
        Strategy::Probing { chunks } => pairs_by_probing(hashes, max_distance, chunks),
    }
}

/// Calls `f` with every value within `radius` bits of `value` (in a `bits`-bit space).
fn for_each_within(value: u32, bits: u32, radius: u32, f: &mut impl FnMut(u32)) {
    fn recurse(value: u32, from: u32, bits: u32, left: u32, f: &mut impl FnMut(u32)) {
        f(value);
        if left == 0 {
            return;
        }
        for bit in from..bits {
            recurse(value ^ (1 << bit), bit + 1, bits, left - 1, f);
        }
    }
    recurse(value, 0, bits, radius, f);
}

/// Multi-index hashing with `m` probed tables: every pair within `max_distance`, sorted.
fn pairs_by_probing(hashes: &[u64], max_distance: u32, m: u32) -> Vec<(u32, u32, u32)> {
    let chunks = chunks_for(m);
    let radius = max_distance / m;
    let tables: Vec<Table> = chunks
        .iter()
        .map(|&chunk| {
            let size = 1usize << chunk.bits;
            let mut offsets = vec![0u32; size + 1];
            for &h in hashes {
                offsets[chunk.of(h) as usize + 1] += 1;
            }
            for v in 0..size {
                offsets[v + 1] += offsets[v];
            }
            let mut next = offsets.clone();
            let mut ids = vec![0u32; hashes.len()];
            for (id, &h) in hashes.iter().enumerate() {
                let slot = &mut next[chunk.of(h) as usize];
                ids[*slot as usize] = id as u32;
                *slot += 1;
            }
            Table { offsets, ids }
        })
        .collect();

    (0..hashes.len())
        .into_par_iter()
        .flat_map_iter(|i| {
            let query = hashes[i];
            let mut found = Vec::new();
            for (c, (&chunk, table)) in chunks.iter().zip(&tables).enumerate() {
                for_each_within(chunk.of(query), chunk.bits, radius, &mut |value| {
                    for &j in table.bucket(value) {
                        if j as usize <= i {
                            continue;
                        }
                        let other = hashes[j as usize];
                        // Report each pair once: from the first chunk within the radius.
                        let seen_earlier = chunks[..c]
                            .iter()
                            .any(|&e| (e.of(query) ^ e.of(other)).count_ones() <= radius);
                        if seen_earlier {
                            continue;
                        }
                        let distance = (query ^ other).count_ones();
                        if distance <= max_distance {
                            found.push((i as u32, j, distance));
                        }
                    }
                });
            }
            found.sort_unstable();
            found
        })
        .collect()
}

/// The key of one combination: its chunks' bits, concatenated (adjacent chunks as one range).
struct CombinationKey {
    /// `(shift, bits)` of each contiguous range, high to low in the key.
    ranges: Vec<(u32, u32)>,
    bits: u32,
    /// The chunks it is made of, one bit per chunk index.
    chunk_set: u64,
    /// The hash bits it is made of: two hashes have equal keys iff `(a ^ b) & hash_mask == 0`.
    hash_mask: u64,
}

#[inline]
fn low_bits(bits: u32) -> u64 {
    u64::MAX.checked_shr(64 - bits).unwrap_or(0)
}

impl CombinationKey {
    fn new(chunks: &[Chunk], chunk_set: u64) -> CombinationKey {
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for (c, chunk) in chunks.iter().enumerate() {
            if chunk_set >> c & 1 == 0 {
                continue;
            }
            match ranges.last_mut() {
                Some((shift, bits)) if *shift + *bits == chunk.shift => *bits += chunk.bits,
                _ => ranges.push((chunk.shift, chunk.bits)),
            }
        }
        let bits = ranges.iter().map(|r| r.1).sum();
        let hash_mask = ranges.iter().fold(0, |m, &(s, b)| m | low_bits(b) << s);
        CombinationKey {
            ranges,
            bits,
            chunk_set,
            hash_mask,
        }
    }

    #[inline]
    fn of(&self, hash: u64) -> u64 {
        self.ranges.iter().fold(0u64, |key, &(shift, bits)| {
            key.checked_shl(bits).unwrap_or(0) | (hash >> shift & low_bits(bits))
        })
    }
}

/// Every `k`-element subset of `0..m`, as bit sets, in increasing order of their lowest members
/// (lexicographic), which is the order "first combination" refers to.
fn combinations(m: u32, k: u32) -> Vec<u64> {
    fn recurse(from: u32, m: u32, left: u32, set: u64, out: &mut Vec<u64>) {
        if left == 0 {
            out.push(set);
            return;
        }
        for c in from..=m - left {
            recurse(c + 1, m, left - 1, set | 1 << c, out);
        }
    }
    let mut out = Vec::new();
    recurse(0, m, k, 0, &mut out);
    out
}

/// The lowest `k` members of the bit set `set` (all of it when it has fewer).
#[inline]
fn lowest_members(mut set: u64, k: u32) -> u64 {
    let mut out = 0;
    for _ in 0..k {
        let lowest = set & set.wrapping_neg();
        out |= lowest;
        set ^= lowest;
    }
    out
}

/// Sorted combinations: every pair within `max_distance`, sorted. Works in units of one
/// combination and one pass (a share of its key space), in parallel, each unit's pairs sorted.
fn pairs_by_sorted_combinations(
    hashes: &[u64],
    max_distance: u32,
    m: u32,
    budget_bytes: usize,
) -> Vec<(u32, u32, u32)> {
    let chunks = chunks_for(m);
    let exact = m - max_distance;
    let keys: Vec<CombinationKey> = combinations(m, exact)
        .into_iter()
        .map(|set| CombinationKey::new(&chunks, set))
        .collect();
    let in_flight = rayon::current_num_threads().max(1);
    let unit_bytes = hashes.len() * UNIT_BYTES_PER_HASH;
    let passes = (in_flight * unit_bytes)
        .div_ceil(budget_bytes.max(1))
        .max(1) as u64;
    let units: Vec<(usize, u64)> = (0..keys.len())
        .flat_map(|k| (0..passes).map(move |p| (k, p)))
        .collect();
    let found: Vec<Vec<(u32, u32, u32)>> = units
        .into_par_iter()
        .map(|(k, pass)| unit_pairs(hashes, &chunks, &keys[k], exact, max_distance, pass, passes))
        .collect();
    let mut pairs: Vec<(u32, u32, u32)> = Vec::with_capacity(found.iter().map(Vec::len).sum());
    for unit in found {
        pairs.extend(unit);
    }
    pairs.par_sort_unstable();
    pairs
}

/// The pass (of `passes`) that sorts key `key`: a share of the key space by a mix of the key.
#[inline]
fn pass_of(key: u64, passes: u64) -> u64 {
    let mixed = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (key >> 29);
    ((mixed.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 32) * passes) >> 32
}

/// One unit: the hashes whose key falls in `pass`, radix-sorted by key, and the pairs within
/// `max_distance` in each run of equal keys that this combination is the first to share.
fn unit_pairs(
    hashes: &[u64],
    chunks: &[Chunk],
    key: &CombinationKey,
    exact: u32,
    max_distance: u32,
    pass: u64,
    passes: u64,
) -> Vec<(u32, u32, u32)> {
    let mut values = Vec::new();
    let mut ids = Vec::new();
    if passes == 1 {
        values.extend_from_slice(hashes);
        ids.extend(0..hashes.len() as u32);
    } else {
        for (id, &h) in hashes.iter().enumerate() {
            if pass_of(key.of(h), passes) == pass {
                values.push(h);
                ids.push(id as u32);
            }
        }
    }
    radix_sort_by_key(&mut values, &mut ids, key);
    let mut out = Vec::new();
    let mut start = 0;
    for end in 1..=values.len() {
        if end < values.len() && (values[end] ^ values[start]) & key.hash_mask == 0 {
            continue;
        }
        for x in start..end {
            for y in x + 1..end {
                let diff = values[x] ^ values[y];
                let distance = diff.count_ones();
                if distance > max_distance {
                    continue;
                }
                let agreeing = chunks
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.agrees(diff))
                    .fold(0u64, |set, (i, _)| set | 1 << i);
                if lowest_members(agreeing, exact) == key.chunk_set {
                    let (a, b) = (ids[x].min(ids[y]), ids[x].max(ids[y]));
                    out.push((a, b, distance));
                }
            }
        }
        start = end;
    }
    out.sort_unstable();
    out
}

/// Sorts `values` (and `ids` alongside) by `key.of(value)`, stably: a least-significant-digit
/// radix sort in digits of at most [`RADIX_BITS`] bits. By hand because no crate in the tree
/// sorts two parallel arrays by a derived key; it is a few counting passes.
fn radix_sort_by_key(values: &mut Vec<u64>, ids: &mut Vec<u32>, key: &CombinationKey) {
    let n = values.len();
    if n < 2 {
        return;
    }
    let digits = key.bits.div_ceil(RADIX_BITS).max(1);
    let width = key.bits.div_ceil(digits);
    let mut spare_values = vec![0u64; n];
    let mut spare_ids = vec![0u32; n];
    let mut counts = vec![0usize; 1 << width];
    for digit in 0..digits {
        let shift = digit * width;
        let bucket = |v: u64| (key.of(v) >> shift & low_bits(width)) as usize;
        counts.fill(0);
        for &v in values.iter() {
            counts[bucket(v)] += 1;
        }
        let mut sum = 0;
        for c in counts.iter_mut() {
            let here = *c;
            *c = sum;
            sum += here;
        }
        for (&v, &id) in values.iter().zip(ids.iter()) {
            let slot = &mut counts[bucket(v)];
            spare_values[*slot] = v;
            spare_ids[*slot] = id;
            *slot += 1;
        }
        std::mem::swap(values, &mut spare_values);
        std::mem::swap(ids, &mut spare_ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force(hashes: &[u64], d: u32) -> Vec<(u32, u32, u32)> {
        let mut pairs = Vec::new();
        for i in 0..hashes.len() {
            for j in i + 1..hashes.len() {
                let dist = (hashes[i] ^ hashes[j]).count_ones();
                if dist <= d {
                    pairs.push((i as u32, j as u32, dist));
                }
            }
        }
        pairs
    }

    /// Random hashes plus near copies with a few flipped bits, so there are pairs to find at
    /// every distance.
    fn corpus(n: usize, seed: u64) -> Vec<u64> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut hashes = Vec::with_capacity(n);
        while hashes.len() < n {
            let base = next();
            hashes.push(base);
            let flips = (next() % 12) as u32;
            let mut copy = base;
            for _ in 0..flips {
                copy ^= 1 << (next() % 64);
            }
            hashes.push(copy);
        }
        hashes.truncate(n);
        hashes
    }

    #[test]
    fn finds_exactly_the_brute_force_pairs() {
        for (n, d) in [
            (2, 0),
            (50, 0),
            (500, 1),
            (3000, 4),
            (3000, 8),
            (800, 12),
            (300, 30),
        ] {
            let hashes = corpus(n, 0x9E37_79B9_7F4A_7C15 ^ n as u64);
            assert_eq!(
                pairs_within(&hashes, d),
                brute_force(&hashes, d),
                "n={n} d={d}"
            );
        }
    }

    #[test]
    fn both_methods_find_exactly_the_brute_force_pairs_at_every_chunking() {
        for (n, d, sorted_chunks, probed_chunks) in [
            (400, 0, vec![1, 2, 4], vec![3]),
            (1500, 4, vec![5, 6, 7, 8], vec![3, 4, 5]),
            (1500, 8, vec![9, 11, 12, 13], vec![3, 5]),
            (600, 3, vec![4, 6], vec![3, 16]),
        ] {
            let hashes = corpus(n, 0xD1B5_4A32_D192_ED03 ^ (n * 31 + d as usize) as u64);
            let expected = brute_force(&hashes, d);
            for chunks in sorted_chunks {
                let found = pairs_within_by(&hashes, d, Strategy::SortedCombinations { chunks });
                assert_eq!(found, expected, "n={n} d={d} sorted, {chunks} chunks");
                // A budget of one hash's unit: one pass per share of the key space.
                let passes = pairs_by_sorted_combinations(&hashes, d, chunks, 64 * 1024);
                assert_eq!(
                    passes, expected,
                    "n={n} d={d} sorted in passes, {chunks} chunks"
                );
            }
            for chunks in probed_chunks {
                let found = pairs_within_by(&hashes, d, Strategy::Probing { chunks });
                assert_eq!(found, expected, "n={n} d={d} probing, {chunks} chunks");
            }
        }
    }

    /// 20,000 random hashes with planted copies at every distance 0–5: within 4 bits, every
    /// planted pair and no more than brute force finds; the pairs at 5 bits are not reported.
    #[test]
    fn planted_pairs_within_four_bits_are_all_found_and_those_at_five_are_not() {
        let mut hashes = corpus(20_000, 77);
        let originals = hashes.len();
        let mut planted = Vec::new();
        for k in 0..600u64 {
            let i = (crate::decide::pairs::mix(k) % originals as u64) as usize;
            let distance = (k % 6) as u32;
            let mut copy = hashes[i];
            let mut bit = crate::decide::pairs::mix(k ^ 0xABCD);
            while (copy ^ hashes[i]).count_ones() < distance {
                copy ^= 1 << (bit % 64);
                bit = crate::decide::pairs::mix(bit);
            }
            planted.push((i as u32, hashes.len() as u32, distance));
            hashes.push(copy);
        }
        let strategy = choose_strategy(hashes.len(), 4);
        assert!(matches!(strategy, Strategy::SortedCombinations { .. }));
        let found = pairs_within(&hashes, 4);
        assert_eq!(found, brute_force(&hashes, 4));
        for &(i, j, distance) in &planted {
            let reported = found.binary_search(&(i, j, distance)).is_ok();
            assert_eq!(
                reported,
                distance <= 4,
                "planted pair at distance {distance}"
            );
        }
    }

    #[test]
    fn the_pairs_are_the_same_on_any_thread_count() {
        let hashes = corpus(6000, 5);
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool")
                .install(|| pairs_by_sorted_combinations(&hashes, 4, 6, 200_000))
        };
        let one = on(1);
        assert!(one.len() > 1000, "{} pairs", one.len());
        assert_eq!(on(3), one);
        assert_eq!(one, brute_force(&hashes, 4));
    }

    #[test]
    fn keys_grow_with_the_number_of_hashes() {
        // About log2(N) bits of key: 5 chunks (13 bits) for thousands, more at ten million.
        let key_bits = |n: usize, d: u32| match choose_strategy(n, d) {
            Strategy::SortedCombinations { chunks } => 64 * (chunks - d) / chunks,
            Strategy::Probing { .. } => 0,
        };
        assert!(
            key_bits(10_000_000, 4) >= 21,
            "{:?}",
            choose_strategy(10_000_000, 4)
        );
        assert!(key_bits(1000, 4) < key_bits(10_000_000, 4));
        assert!(
            key_bits(80_000_000, 8) >= 21,
            "{:?}",
            choose_strategy(80_000_000, 8)
        );
        // Far radii probe: too many combinations to sort.
        assert!(matches!(
            choose_strategy(100_000, 20),
            Strategy::Probing { .. }
        ));
    }

    #[test]
    fn neighbours_within_radius_are_enumerated_once() {
        let mut seen = Vec::new();
        for_each_within(0b1010, 6, 2, &mut |v| seen.push(v));
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(seen.len(), unique.len());
        assert_eq!(seen.len(), 1 + 6 + 15);
        assert!(seen.iter().all(|v| (v ^ 0b1010u32).count_ones() <= 2));
    }
}
