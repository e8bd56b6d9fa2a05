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
//!   Combinations sharing their lowest chunks are done together: the hashes are scattered into
//!   buckets by those chunks once (the one pass through memory), then each combination sorts
//!   and searches bucket by bucket in the L2 cache. Only distinct hash values go through the
//!   sorts; pairs of values are expanded to pairs of ids at the end.
//! - **Probing** (where the estimate favours it: far radii over many hashes): multi-index
//!   hashing (Norouzi, Punjani & Fleet, CVPR 2012): `m` chunk tables, each probed with the
//!   values within `d / m` bits of the query's chunk.
//!
//! Memory of the sorted method: the hashes; the distinct values with the ids of each (16 bytes
//! per hash while they are sorted, 8 per distinct value and 4 per id after); for each thread the
//! bucketed values of one group (8 bytes each) and one bucket's records. A group is done in
//! passes over ranges of its buckets when the threads together would exceed
//! [`SORT_BUDGET_BYTES`]; the pairs found come on top. Results are sorted, so the same on any
//! thread count. Written here rather than taken from a crate because none on crates.io offers
//! an all-pairs Hamming join.

use std::sync::Mutex;

use rayon::prelude::*;

/// The sorted method's working memory for all threads together (the bucketed values of the
/// groups in flight): 2 GiB. Beyond it a group is done in several passes.
pub const SORT_BUDGET_BYTES: usize = 1 << 31;
/// Bytes per distinct hash of a group in flight.
const UNIT_BYTES_PER_HASH: usize = 8;
/// The sorted method is considered up to this many combinations.
const MAX_COMBINATIONS: f64 = 5000.0;
/// A group of combinations scatters its values into at most 2^12 buckets by the chunks they
/// share (one pass through memory); each bucket is then sorted in cache, once per combination.
const TOP_DIGIT_BITS: u32 = 12;
/// Values per bucket wanted: with its records and their sort's spare, 768 KiB, within a core's
/// L2 cache.
const BUCKET_VALUES: usize = 32 * 1024;
/// Radix digit width within a bucket: 2^11 counters stay in the L1 cache.
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

/// The estimated cost of sorted combinations with `m` chunks, per combination and hash: reading
/// its key into its bucket's records and sorting them (2 units, and 0.3 more per radix pass
/// beyond the first: in cache) and the comparisons within its key's run (0.3 units each). Fitted
/// to 8M hashes within 8 bits: 10, 11, 12 and 13 chunks took 249, 48, 36 and 89 s on 2 threads
/// (3.7 to 4.2 s per 10⁹ units).
fn sorted_cost(n: f64, max_distance: u32, m: u32) -> f64 {
    let exact = m - max_distance;
    let combinations = binomial(m, exact);
    let key_bits = 64.0 * f64::from(exact) / f64::from(m);
    let rest_bits = (key_bits - f64::from(TOP_DIGIT_BITS)).max(0.0);
    let extra_passes = ((rest_bits / f64::from(RADIX_BITS)).ceil() - 1.0).max(0.0);
    let run_pairs = n / 2f64.powf(key_bits) / 2.0;
    combinations * n * (2.0 + 0.3 * extra_passes + 0.3 * run_pairs)
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

/// Bits of a hash gathered into one number: the bits under each mask rotated left by its
/// amount (never wrapping for them), ORed, then shifted down. How a combination's key, or a part
/// of it, is read from a hash.
#[derive(Debug, Clone)]
struct Extract {
    rotations: Vec<(u64, u32)>,
    shift: u32,
}

impl Extract {
    #[inline]
    fn of(&self, hash: u64) -> u64 {
        self.rotations
            .iter()
            .fold(0u64, |out, &(mask, r)| out | (hash & mask).rotate_left(r))
            >> self.shift
    }
}

/// One combination's key: its chunks side by side, lowest chunk first (highest in the key), so
/// that combinations sharing their lowest chunks share the key's leading bits.
struct CombinationKey {
    /// `(mask, r)`: the hash bits under `mask` go to the key's place (at the top of 64 bits) by a
    /// left rotation of `r`; chunks that move by the same amount share one entry.
    rotations: Vec<(u64, u32)>,
    /// Key bits: the combination's chunks together.
    bits: u32,
    /// The chunks it is made of, one bit per chunk index.
    chunk_set: u64,
}

#[inline]
fn low_bits(bits: u32) -> u64 {
    u64::MAX.checked_shr(64 - bits).unwrap_or(0)
}

impl CombinationKey {
    fn new(chunks: &[Chunk], chunk_set: u64) -> CombinationKey {
        let mut rotations: Vec<(u64, u32)> = Vec::new();
        let mut top = 64;
        for (c, chunk) in chunks.iter().enumerate() {
            if chunk_set >> c & 1 == 0 {
                continue;
            }
            top -= chunk.bits;
            let mask = low_bits(chunk.bits) << chunk.shift;
            let r = (top + 64 - chunk.shift) % 64;
            match rotations.iter_mut().find(|(_, by)| *by == r) {
                Some((masks, _)) => *masks |= mask,
                None => rotations.push((mask, r)),
            }
        }
        CombinationKey {
            rotations,
            bits: 64 - top,
            chunk_set,
        }
    }

    /// Reads `bits` bits of the key, after its first `skip` bits.
    fn part(&self, skip: u32, bits: u32) -> Extract {
        let shift = 64 - skip - bits;
        let window = low_bits(bits) << shift;
        let rotations = self
            .rotations
            .iter()
            .filter_map(|&(mask, r)| {
                let placed = mask.rotate_left(r) & window;
                (placed != 0).then(|| (placed.rotate_right(r), r))
            })
            .collect();
        Extract { rotations, shift }
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

/// The distinct hashes, ascending, and the ids holding each: the sorted method searches the
/// distinct values (8 bytes each, no ids carried through the sorts) and expands each pair of
/// values to the pairs of their ids at the end; ids sharing a value are pairs at distance 0.
struct Distinct {
    values: Vec<u64>,
    /// The ids of `values[v]` are `ids[starts[v]..starts[v + 1]]`, ascending.
    starts: Vec<u32>,
    ids: Vec<u32>,
}

impl Distinct {
    fn new(hashes: &[u64]) -> Distinct {
        let mut by_hash: Vec<(u64, u32)> = hashes
            .iter()
            .enumerate()
            .map(|(id, &h)| (h, id as u32))
            .collect();
        by_hash.par_sort_unstable();
        let mut values = Vec::new();
        let mut starts = Vec::new();
        let ids = by_hash.iter().map(|&(_, id)| id).collect();
        for (at, &(h, _)) in by_hash.iter().enumerate() {
            if values.last() != Some(&h) {
                values.push(h);
                starts.push(at as u32);
            }
        }
        starts.push(by_hash.len() as u32);
        Distinct {
            values,
            starts,
            ids,
        }
    }

    fn ids_of(&self, value: u64) -> &[u32] {
        match self.values.binary_search(&value) {
            Ok(v) => &self.ids[self.starts[v] as usize..self.starts[v + 1] as usize],
            Err(_) => &[],
        }
    }

    /// Every pair of ids that share a value.
    fn equal_pairs(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.starts.windows(2).flat_map(move |w| {
            let ids = &self.ids[w[0] as usize..w[1] as usize];
            (0..ids.len()).flat_map(move |x| (x + 1..ids.len()).map(move |y| (ids[x], ids[y], 0)))
        })
    }
}

/// A worker's arrays for one group of combinations, kept for the next group: allocating them
/// afresh each time spent as much time in page faults as in sorting.
#[derive(Default)]
struct Buffers {
    /// A pass's values, bucket after bucket.
    values: Vec<u64>,
    /// One bucket's records for one combination (sort key above, index in the bucket below),
    /// and their radix sort destination.
    records: Vec<u64>,
    spare: Vec<u64>,
    /// Values per top-digit bucket, and where each bucket of the pass fills next.
    sizes: Vec<usize>,
    next: Vec<usize>,
    /// Digit counters of a bucket's sort.
    counts: Vec<usize>,
}

/// The number of lowest chunks that groups combinations: enough that a group's buckets hold
/// about [`BUCKET_VALUES`] values each (`n` values in all), at most the combinations' size.
fn prefix_chunks(n: usize, m: u32, exact: u32) -> u32 {
    let wanted_bits = (n.max(2) as f64 / BUCKET_VALUES as f64).log2().max(1.0);
    let chunk_bits = 64.0 / f64::from(m);
    ((wanted_bits / chunk_bits).ceil() as u32).clamp(1, exact)
}

/// Sorted combinations: every pair within `max_distance`, sorted. Combinations sharing their
/// lowest chunks form a group, one unit of work (in parallel): its values are scattered into
/// buckets by those chunks once, and each combination of the group is sorted and searched
/// bucket by bucket in cache. A unit holds at most its share of `budget_bytes` at once, in
/// passes over ranges of buckets when all of them would not fit.
fn pairs_by_sorted_combinations(
    hashes: &[u64],
    max_distance: u32,
    m: u32,
    budget_bytes: usize,
) -> Vec<(u32, u32, u32)> {
    let distinct = Distinct::new(hashes);
    let chunks = chunks_for(m);
    let exact = m - max_distance;
    let prefix = prefix_chunks(distinct.values.len(), m, exact);
    // In lexicographic order the combinations sharing their lowest chunks come together.
    let mut groups: Vec<Vec<CombinationKey>> = Vec::new();
    for set in combinations(m, exact) {
        let key = CombinationKey::new(&chunks, set);
        match groups.last_mut() {
            Some(group)
                if lowest_members(group[0].chunk_set, prefix) == lowest_members(set, prefix) =>
            {
                group.push(key)
            }
            _ => groups.push(vec![key]),
        }
    }
    let threads = rayon::current_num_threads().max(1);
    let search = GroupSearch {
        chunks: &chunks,
        prefix,
        exact,
        max_distance,
        capacity: (budget_bytes / threads / UNIT_BYTES_PER_HASH).max(1),
    };
    let pool: Mutex<Vec<Buffers>> = Mutex::new(Vec::new());
    let found: Vec<Vec<(u64, u64, u32)>> = groups
        .par_iter()
        .map(|group| {
            let taken = pool.lock().ok().and_then(|mut p| p.pop());
            let mut buffers = taken.unwrap_or_default();
            let pairs = search.group_pairs(&distinct.values, group, &mut buffers);
            if let Ok(mut p) = pool.lock() {
                p.push(buffers);
            }
            pairs
        })
        .collect();
    drop(pool);
    let mut pairs: Vec<(u32, u32, u32)> = found
        .par_iter()
        .flatten()
        .flat_map_iter(|&(a, b, distance)| {
            let (ids_a, ids_b) = (distinct.ids_of(a), distinct.ids_of(b));
            ids_a
                .iter()
                .flat_map(move |&x| ids_b.iter().map(move |&y| (x.min(y), x.max(y), distance)))
        })
        .collect();
    pairs.extend(distinct.equal_pairs());
    pairs.par_sort_unstable();
    pairs
}

/// What every group's search shares.
struct GroupSearch<'a> {
    chunks: &'a [Chunk],
    /// Combinations are grouped by this many lowest chunks.
    prefix: u32,
    /// Chunks per combination (`m - max_distance`).
    exact: u32,
    max_distance: u32,
    /// Values one pass of a group may hold.
    capacity: usize,
}

impl GroupSearch<'_> {
    /// One group of combinations sharing their lowest `prefix` chunks, which lead each of their
    /// keys: the values bucketed by the first bits of that (one scatter through memory, at most
    /// `capacity` values a pass), then for each bucket and combination the bucket sorted by the
    /// rest of the key in cache, and the pairs of values within `max_distance` in each run of equal
    /// keys that the combination is the first to share.
    fn group_pairs(
        &self,
        values: &[u64],
        group: &[CombinationKey],
        buffers: &mut Buffers,
    ) -> Vec<(u64, u64, u32)> {
        let GroupSearch {
            chunks,
            prefix,
            exact,
            max_distance,
            capacity,
        } = *self;
        let Buffers {
            values: pass,
            records,
            spare,
            sizes,
            next,
            counts,
        } = buffers;
        let prefix_set = lowest_members(group[0].chunk_set, prefix);
        let prefix_bits: u32 = (0..chunks.len())
            .filter(|&c| prefix_set >> c & 1 == 1)
            .map(|c| chunks[c].bits)
            .sum();
        let top_bits = prefix_bits.min(TOP_DIGIT_BITS);
        let top = group[0].part(0, top_bits);
        // Below the top digit, at most 32 bits of each key sort a bucket (beside a 32-bit index); a
        // longer key's runs may then hold pairs that differ further down, which the first-
        // combination check rejects.
        let rests: Vec<Extract> = group
            .iter()
            .map(|key| key.part(top_bits, (key.bits - top_bits).min(32)))
            .collect();
        let buckets = 1usize << top_bits;
        sizes.clear();
        sizes.resize(buckets, 0);
        for &h in values {
            sizes[top.of(h) as usize] += 1;
        }
        let mut out = Vec::new();
        let mut first = 0;
        while first < buckets {
            let mut last = first + 1;
            let mut total = sizes[first];
            while last < buckets && total + sizes[last] <= capacity {
                total += sizes[last];
                last += 1;
            }
            next.clear();
            let mut at = 0;
            for &size in &sizes[first..last] {
                next.push(at);
                at += size;
            }
            pass.resize(total, 0);
            for &h in values {
                let b = top.of(h) as usize;
                if let Some(slot) = b.checked_sub(first).and_then(|b| next.get_mut(b)) {
                    pass[*slot] = h;
                    *slot += 1;
                }
            }
            let mut start = 0;
            for &size in &sizes[first..last] {
                let bucket = &pass[start..start + size];
                start += size;
                if size < 2 {
                    continue;
                }
                for (key, rest) in group.iter().zip(&rests) {
                    records.clear();
                    records.extend(
                        bucket
                            .iter()
                            .enumerate()
                            .map(|(i, &h)| rest.of(h) << 32 | i as u64),
                    );
                    let sort_bits = 64 - rest.shift - top_bits;
                    sort_records(records, sort_bits, spare, counts);
                    runs_pairs(records, bucket, chunks, key, exact, max_distance, &mut out);
                }
            }
            first = last;
        }
        out
    }
}

/// Sorts records by their bits from 32 up, `bits` of them (the rest of a key): insertion sort
/// for a few, else a least-significant-digit radix sort in digits of at most [`RADIX_BITS`]
/// bits. By hand because no crate in the tree has a radix sort on a range of bits; it is a few
/// counting passes.
fn sort_records(records: &mut [u64], bits: u32, spare: &mut Vec<u64>, counts: &mut Vec<usize>) {
    let n = records.len();
    if n < 2 || bits == 0 {
        return;
    }
    if n <= 32 {
        for i in 1..n {
            let v = records[i];
            let mut j = i;
            while j > 0 && records[j - 1] >> 32 > v >> 32 {
                records[j] = records[j - 1];
                j -= 1;
            }
            records[j] = v;
        }
        return;
    }
    let digits = bits.div_ceil(RADIX_BITS);
    let width = bits.div_ceil(digits);
    spare.resize(n, 0);
    counts.clear();
    counts.resize(1 << width, 0);
    let (mut src, mut dst) = (&mut records[..], &mut spare[..n]);
    for digit in 0..digits {
        let shift = 32 + digit * width;
        let bucket = |v: u64| (v >> shift & low_bits(width)) as usize;
        counts.fill(0);
        for &v in src.iter() {
            counts[bucket(v)] += 1;
        }
        let mut sum = 0;
        for c in counts.iter_mut() {
            let here = *c;
            *c = sum;
            sum += here;
        }
        for &v in src.iter() {
            let slot = &mut counts[bucket(v)];
            dst[*slot] = v;
            *slot += 1;
        }
        std::mem::swap(&mut src, &mut dst);
    }
    if digits % 2 == 1 {
        // The sorted records are in the spare array.
        records.copy_from_slice(&spare[..n]);
    }
}

/// The pairs within `max_distance` in each run of equal sort keys of a bucket's sorted
/// records, those that `key` is the first combination to share (the lowest `exact` of their
/// agreeing chunks), as the values, smaller first.
fn runs_pairs(
    records: &[u64],
    bucket: &[u64],
    chunks: &[Chunk],
    key: &CombinationKey,
    exact: u32,
    max_distance: u32,
    out: &mut Vec<(u64, u64, u32)>,
) {
    let mut start = 0;
    for end in 1..=records.len() {
        if end < records.len() && records[end] >> 32 == records[start] >> 32 {
            continue;
        }
        for x in start..end {
            let a = bucket[(records[x] & u64::from(u32::MAX)) as usize];
            for y in x + 1..end {
                let b = bucket[(records[y] & u64::from(u32::MAX)) as usize];
                let diff = a ^ b;
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
                    out.push((a.min(b), a.max(b), distance));
                }
            }
        }
        start = end;
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
                // A budget of a quarter of the hashes: passes over ranges of the top digit.
                let budget = rayon::current_num_threads() * UNIT_BYTES_PER_HASH * n / 4;
                let passes = pairs_by_sorted_combinations(&hashes, d, chunks, budget);
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
        // At 12 bits over 100,000 hashes sorting (16 chunks) took 1.7 s, probing (4 tables)
        // 4.5 s.
        assert!(matches!(
            choose_strategy(100_000, 12),
            Strategy::SortedCombinations { .. }
        ));
    }

    #[test]
    fn keys_and_their_parts_are_read_from_the_chunks() {
        let hashes = corpus(400, 11);
        for m in [5, 6, 13] {
            let chunks = chunks_for(m);
            let sets = combinations(m, m - 4);
            for &set in &sets {
                let key = CombinationKey::new(&chunks, set);
                let whole = key.part(0, key.bits);
                let lowest = lowest_members(set, 2);
                let lowest_bits: u32 = (0..m as usize)
                    .filter(|&c| lowest >> c & 1 == 1)
                    .map(|c| chunks[c].bits)
                    .sum();
                let (head, tail) = (
                    key.part(0, lowest_bits),
                    key.part(lowest_bits, key.bits - lowest_bits),
                );
                for pair in hashes.windows(2) {
                    let (a, b) = (pair[0], pair[1]);
                    // The key is the set's chunks side by side, the lowest first.
                    let expected =
                        (0..m as usize)
                            .filter(|&c| set >> c & 1 == 1)
                            .fold(0u64, |k, c| {
                                k.checked_shl(chunks[c].bits).unwrap_or(0)
                                    | u64::from(chunks[c].of(a))
                            });
                    assert_eq!(whole.of(a), expected, "m={m}");
                    assert_eq!(
                        head.of(a) << (key.bits - lowest_bits) | tail.of(a),
                        whole.of(a)
                    );
                    let agree_on_set = chunks
                        .iter()
                        .enumerate()
                        .filter(|(c, _)| set >> c & 1 == 1)
                        .all(|(_, chunk)| chunk.agrees(a ^ b));
                    assert_eq!(whole.of(a) == whole.of(b), agree_on_set, "m={m}");
                    // Combinations sharing their two lowest chunks read them alike.
                    for &other in sets
                        .iter()
                        .filter(|&&o| lowest_members(o, 2) == lowest)
                        .take(3)
                    {
                        let other = CombinationKey::new(&chunks, other);
                        assert_eq!(other.part(0, lowest_bits).of(a), head.of(a));
                    }
                }
            }
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
