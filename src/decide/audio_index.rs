//! The pairs of audio fingerprints that match at some time offset, without aligning every pair
//! of files: an inverted index of keys that a re-encoded copy keeps and that stay rare however
//! many files there are. It finds and verifies pairs; grouping them and choosing which file to
//! keep is `dedup`'s job.
//!
//! Keys: two consecutive 32-bit sub-fingerprints are cut into four 16-bit quarters (the high and
//! low half of each), and every pair of one quarter of frame t and one of frame t + 1 is a
//! 32-bit key (four keys per frame). A copy whose bit errors leave one half of each of two
//! consecutive frames intact shares a key with the original at that time offset (the
//! pigeonhole argument of multi-index hashing, Norouzi et al., CVPR 2012). A key of 16 bits
//! would not do: with N files of F frames each of the 2¹⁶ values is shared by about N·F/2¹⁵
//! files (120 at N = 100,000, F = 81), so its posting lists grow with N and comparing within
//! them grows as N². With 32-bit keys random sharing stays rare up to billions of frames.
//!
//! Each pair of entries sharing a key names an offset; the pair is accepted when the bit error
//! rate at that one offset, over the overlap, is within the threshold (the same measure as
//! `compare_fingerprints` at its best offset, so the best alignment is accepted too). Keys
//! shared by many entries (tones, one clip copied many times) compare neighbours in (file,
//! frame) order only, so their cost stays linear; silent frames (all-zero quarters) give no
//! key. The entries are built and sorted in passes over a share of the key space each, as many
//! as keep one pass within [`PASS_BUDGET_BYTES`] (one pass up to about 400,000 files of 10 s,
//! 24 at ten million): memory is the fingerprints plus one pass, whatever N. One scan counts
//! the keys of every pass per task of files, so that each pass's entries are allocated once at
//! their exact size; each pass then re-reads the fingerprints to build its keys. Pairs accepted by earlier passes are not verified
//! again. Written here because no crate offers an all-pairs fingerprint join.

use std::collections::HashSet;

use rayon::prelude::*;

/// A key run with more entries than this compares neighbours only (linear instead of quadratic).
const MAX_RUN_FOR_ALL_PAIRS: usize = 64;
/// The entries (16 bytes each) of one pass at most: 2 GiB, sorted in place.
pub const PASS_BUDGET_BYTES: u64 = 1 << 31;
/// Files per task when building entries.
const FILES_PER_TASK: usize = 4096;
/// Quarters paired into keys: (half of frame t, half of frame t + 1), 0 = low, 1 = high.
const QUARTER_PAIRS: [(u32, u32); 4] = [(0, 0), (1, 1), (0, 1), (1, 0)];

/// One key occurrence: the key (its quarter pair in bits 32–33), the file and the frame t.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    key: u64,
    file: u32,
    frame: u32,
}

/// What makes two fingerprints a match at one offset.
#[derive(Debug, Clone, Copy)]
pub struct AudioMatchRule {
    /// The largest share of differing bits over the counted overlap.
    pub max_bit_error_rate: f64,
    /// Counted (not both silent) overlapping frames needed, or all of the shorter file.
    pub min_overlap_frames: usize,
}

/// Pairs `(a, b)`, `a < b`, of `fingerprints` (one sub-fingerprint per frame, the same rate and
/// hop for all) that match under `rule` at an offset where they share a key. Sorted, each once;
/// the same on any thread count.
pub fn matching_fingerprint_pairs(
    fingerprints: &[&[u32]],
    rule: AudioMatchRule,
) -> Vec<(u32, u32)> {
    matching_pairs_in_passes(fingerprints, rule, PASS_BUDGET_BYTES)
}

/// [`matching_fingerprint_pairs`] with passes of at most `budget_bytes` of entries.
fn matching_pairs_in_passes(
    fingerprints: &[&[u32]],
    rule: AudioMatchRule,
    budget_bytes: u64,
) -> Vec<(u32, u32)> {
    let total: u64 = fingerprints
        .iter()
        .map(|f| 4 * f.len().saturating_sub(1) as u64)
        .sum();
    let entry_bytes = std::mem::size_of::<Entry>() as u64;
    let passes = (total * entry_bytes).div_ceil(budget_bytes.max(1)).max(1);
    let counts = key_counts(fingerprints, passes);
    let mut accepted: Vec<(u32, u32)> = Vec::new();
    for pass in 0..passes {
        let mut entries = entries_of_pass(fingerprints, pass, passes, &counts);
        entries.par_sort_unstable();
        let runs = runs_of(&entries);
        let earlier = &accepted;
        let found: Vec<Vec<(u32, u32)>> = runs
            .par_chunks(1024)
            .map(|chunk| {
                let mut new = HashSet::new();
                for run in chunk {
                    pairs_in_run(&entries[run.clone()], fingerprints, rule, earlier, &mut new);
                }
                new.into_iter().collect()
            })
            .collect();
        drop(entries);
        accepted.extend(found.into_iter().flatten());
        accepted.par_sort_unstable();
        accepted.dedup();
    }
    accepted
}

/// A key's share of the key space: the pass that indexes it.
#[inline]
fn pass_of(key: u64, passes: u64) -> u64 {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % passes
}

/// Calls `f` with each key of `frames` (a file's fingerprint) that falls in `pass`, and its frame.
#[inline]
fn for_each_key(frames: &[u32], pass: u64, passes: u64, mut f: impl FnMut(u64, u32)) {
    for (t, window) in frames.windows(2).enumerate() {
        for (q, &(first, second)) in QUARTER_PAIRS.iter().enumerate() {
            let a = (window[0] >> (16 * first)) & 0xFFFF;
            let b = (window[1] >> (16 * second)) & 0xFFFF;
            if a == 0 && b == 0 {
                continue;
            }
            let key = (q as u64) << 32 | u64::from(a << 16 | b);
            if passes == 1 || pass_of(key, passes) == pass {
                f(key, t as u32);
            }
        }
    }
}

/// For each task of [`FILES_PER_TASK`] files, how many of its keys fall in each pass.
fn key_counts(fingerprints: &[&[u32]], passes: u64) -> Vec<Vec<usize>> {
    fingerprints
        .par_chunks(FILES_PER_TASK)
        .map(|files| {
            let mut counts = vec![0; passes as usize];
            for frames in files {
                for_each_key(frames, 0, 1, |key, _| {
                    counts[if passes == 1 {
                        0
                    } else {
                        pass_of(key, passes) as usize
                    }] += 1
                });
            }
            counts
        })
        .collect()
}

/// The entries whose key falls in pass `pass` of `passes`, in no particular order, written into
/// one allocation of the size `counts` ([`key_counts`]) gives.
fn entries_of_pass(
    fingerprints: &[&[u32]],
    pass: u64,
    passes: u64,
    counts: &[Vec<usize>],
) -> Vec<Entry> {
    let counts: Vec<usize> = counts.iter().map(|c| c[pass as usize]).collect();
    let mut entries = vec![Entry::default(); counts.iter().sum()];
    let mut slices = Vec::with_capacity(counts.len());
    let mut rest: &mut [Entry] = &mut entries;
    for &count in &counts {
        let (slice, tail) = rest.split_at_mut(count);
        slices.push(slice);
        rest = tail;
    }
    fingerprints
        .par_chunks(FILES_PER_TASK)
        .zip(slices)
        .enumerate()
        .for_each(|(task, (files, out))| {
            let mut next = 0;
            for (i, frames) in files.iter().enumerate() {
                let file = (task * FILES_PER_TASK + i) as u32;
                for_each_key(frames, pass, passes, |key, frame| {
                    out[next] = Entry { key, file, frame };
                    next += 1;
                });
            }
        });
    entries
}

/// The ranges of sorted `entries` sharing a key that hold more than one file.
fn runs_of(entries: &[Entry]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=entries.len() {
        if i == entries.len() || entries[i].key != entries[start].key {
            if entries[start].file != entries[i - 1].file {
                runs.push(start..i);
            }
            start = i;
        }
    }
    runs
}

/// Verifies the entry pairs of one key run (sorted by file, frame) and adds the accepted file
/// pairs to `accepted` (those in `earlier`, sorted, were accepted by an earlier pass): all pairs
/// of a short run, neighbours of a long one.
fn pairs_in_run(
    run: &[Entry],
    fingerprints: &[&[u32]],
    rule: AudioMatchRule,
    earlier: &[(u32, u32)],
    accepted: &mut HashSet<(u32, u32)>,
) {
    let mut check = |x: &Entry, y: &Entry| {
        // Sorted by file: x.file < y.file.
        let pair = (x.file, y.file);
        if x.file == y.file || accepted.contains(&pair) || earlier.binary_search(&pair).is_ok() {
            return;
        }
        let offset = i64::from(x.frame) - i64::from(y.frame);
        let (a, b) = (fingerprints[x.file as usize], fingerprints[y.file as usize]);
        if matches_at(a, b, offset, rule) {
            accepted.insert((x.file, y.file));
        }
    };
    if run.len() <= MAX_RUN_FOR_ALL_PAIRS {
        for (i, x) in run.iter().enumerate() {
            for y in &run[i + 1..] {
                check(x, y);
            }
        }
    } else {
        for w in run.windows(2) {
            check(&w[0], &w[1]);
        }
    }
}

/// Whether `b` aligned so that `b[i]` meets `a[i + offset]` is within the rule: bit errors over
/// all bits of the frames where either side is not silent, over at least the minimum overlap.
pub fn matches_at(a: &[u32], b: &[u32], offset: i64, rule: AudioMatchRule) -> bool {
    let a_start = offset.max(0) as usize;
    let b_start = (-offset).max(0) as usize;
    if a_start >= a.len() || b_start >= b.len() {
        return false;
    }
    let span = (a.len() - a_start).min(b.len() - b_start);
    // The overlap is at most the span, so more errors than the rule allows over all of it (with
    // a margin over rounding) rejects the pair early (unrelated audio, near half its bits, does so a third of the way).
    let most_errors = (rule.max_bit_error_rate * 32.0 * span as f64 + 1e-6).floor() as u64;
    let (mut errors, mut overlap) = (0u64, 0usize);
    for (&x, &y) in a[a_start..a_start + span]
        .iter()
        .zip(&b[b_start..b_start + span])
    {
        errors += u64::from((x ^ y).count_ones());
        overlap += usize::from((x | y) != 0);
        if errors > most_errors {
            return false;
        }
    }
    let min_overlap = rule.min_overlap_frames.min(a.len().min(b.len())).max(1);
    overlap >= min_overlap && errors as f64 / (32.0 * overlap as f64) <= rule.max_bit_error_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 words, for fingerprints that depend only on the seed.
    fn words(seed: u64, n: usize) -> Vec<u32> {
        (0..n as u64)
            .map(|i| crate::decide::pairs::mix(seed.wrapping_mul(1_000_003) ^ i) as u32)
            .collect()
    }

    const RULE: AudioMatchRule = AudioMatchRule {
        max_bit_error_rate: 0.2,
        min_overlap_frames: 40,
    };

    #[test]
    fn a_trimmed_noisy_copy_is_found_at_its_offset_and_strangers_are_not() {
        let original = words(1, 120);
        // Cut 17 frames in; 2 bits of every frame flipped (BER 1/16), at positions that leave
        // a half of each frame intact most of the time.
        let copy: Vec<u32> = original[17..]
            .iter()
            .enumerate()
            .map(|(i, &f)| f ^ (0b11 << ((i * 7) % 30)))
            .collect();
        let (other, short) = (words(2, 120), words(3, 90));
        let prints: Vec<&[u32]> = vec![&original, &other, &copy, &short];
        assert_eq!(matching_fingerprint_pairs(&prints, RULE), [(0, 2)]);
        assert!(matches_at(&original, &copy, 17, RULE));
        assert!(!matches_at(&original, &copy, 16, RULE));
        // A rule stricter than the copy's error rate finds nothing.
        let strict = AudioMatchRule {
            max_bit_error_rate: 0.05,
            ..RULE
        };
        assert!(matching_fingerprint_pairs(&prints, strict).is_empty());
    }

    /// 300 files, every fifth a noisy copy of an earlier one cut a few frames in: the same pairs
    /// in one pass as in many (a budget of a few thousand entries), on one thread as on three.
    #[test]
    fn passes_and_threads_do_not_change_the_pairs() {
        let files: Vec<Vec<u32>> = (0..300u64)
            .map(|f| {
                if f % 5 == 4 {
                    let original = words(f - 3, 100);
                    let cut = (f % 7) as usize;
                    original[cut..]
                        .iter()
                        .enumerate()
                        .map(|(i, &w)| w ^ (1 << ((i * 5 + f as usize) % 32)))
                        .collect()
                } else {
                    words(f, 100)
                }
            })
            .collect();
        let prints: Vec<&[u32]> = files.iter().map(Vec::as_slice).collect();
        let one_pass = matching_fingerprint_pairs(&prints, RULE);
        let expected: Vec<(u32, u32)> = (0..60u32).map(|k| (5 * k + 1, 5 * k + 4)).collect();
        assert_eq!(one_pass, expected);
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool")
                .install(|| matching_pairs_in_passes(&prints, RULE, 16 * 5000))
        };
        assert_eq!(on(1), one_pass);
        assert_eq!(on(3), one_pass);
    }

    #[test]
    fn silence_alone_links_nothing_and_a_clip_copied_many_times_is_one_chain() {
        // 100 copies of one clip, each with one bit flipped in one frame (so the key runs hold
        // about 100 entries: neighbours only), and two files of silence.
        let clip = words(7, 60);
        let mut files: Vec<Vec<u32>> = (0..100)
            .map(|c| {
                let mut copy = clip.clone();
                copy[c % 60] ^= 1 << (c % 32);
                copy
            })
            .collect();
        files.push(vec![0; 60]);
        files.push(vec![0; 60]);
        let prints: Vec<&[u32]> = files.iter().map(Vec::as_slice).collect();
        let pairs = matching_fingerprint_pairs(&prints, RULE);
        // Every copy is linked to the next one (a chain through all 100), silence to nothing.
        for c in 0..99u32 {
            assert!(
                pairs.contains(&(c, c + 1)),
                "copy {c} not linked to {}",
                c + 1
            );
        }
        assert!(pairs.iter().all(|&(a, b)| a < 100 && b < 100 && a < b));
    }
}
