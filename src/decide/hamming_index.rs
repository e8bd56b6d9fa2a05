//! Finding all pairs of 64-bit hashes within a Hamming distance without comparing all pairs:
//! multi-index hashing (Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with
//! Multi-Index Hashing", CVPR 2012).
//!
//! The 64 bits are cut into `m` chunks. If two hashes differ in at most `d` bits, some chunk
//! differs in at most `d / m` bits (pigeonhole), so it is enough to look up, in each chunk's
//! table, the values within `d / m` bits of the query's chunk. `m` is chosen from the number
//! of hashes and `d` to balance table lookups against candidates to verify. Written here
//! rather than taken from a crate because none on crates.io offers an all-pairs MIH join.

use rayon::prelude::*;

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

/// Chooses the number of chunks: tables of at most 2^22 entries, and the lowest estimated
/// cost of lookups, candidate checks and table building.
fn choose_chunks(n: usize, max_distance: u32) -> u32 {
    let n = n.max(1) as f64;
    (3..=16u32)
        .min_by(|&a, &b| {
            let cost = |m: u32| {
                let bits = 64u32.div_ceil(m);
                let radius = max_distance / m;
                let variants: f64 = (0..=radius.min(bits)).map(|r| binomial(bits, r)).sum();
                let lookups = m as f64 * variants;
                let candidates = lookups * n / 2f64.powi(bits as i32);
                n * (lookups + 4.0 * candidates) + m as f64 * 2f64.powi(bits as i32)
            };
            cost(a).total_cmp(&cost(b))
        })
        .unwrap_or(4)
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

/// Every pair `(i, j, distance)` with `i < j` and `hamming(hashes[i], hashes[j]) <= max_distance`,
/// sorted by `(i, j)`.
pub fn pairs_within(hashes: &[u64], max_distance: u32) -> Vec<(u32, u32, u32)> {
    if hashes.len() < 2 {
        return Vec::new();
    }
    let m = choose_chunks(hashes.len(), max_distance);
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
