//! Global deduplication over the whole run: exact copies by sha256, then near copies by pHash,
//! then semantic copies by image embedding (pairs found by [`super::semantic`]).
//!
//! Duplicates form groups (connected components of the "is a copy of" pairs, by union-find),
//! and one sample per group is kept by [`keep_order`]: the sharpest, then the one with the most
//! pixels, then the lowest id. Every other member is dropped, naming the kept sample and its
//! distance to it. The result does not depend on the order samples arrived in.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::audio_index::{matching_fingerprint_pairs, AudioMatchRule};
use super::hamming_index::pairs_within;
use super::semantic::{pairs_above, SimilarPair};
use super::{Drop, Reason, Stage};
use crate::measure::audio::{
    compare_fingerprints, Fingerprint, DEFAULT_MIN_OVERLAP_FRAMES, FINGERPRINT_HOP,
    FINGERPRINT_RATE,
};
use crate::measure::video::{compare_signatures, Signature};
use crate::vector::{cosine, PairProducts};

/// What dedup needs to know about a sample that passed the per-sample filters.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub sha256: &'a str,
    pub phash: u64,
    pub sharpness: f64,
    pub pixels: u64,
}

/// The keep rule: `Less` means `a` is the better sample to keep.
pub fn keep_order(a: &Candidate, b: &Candidate) -> Ordering {
    b.sharpness
        .total_cmp(&a.sharpness)
        .then(b.pixels.cmp(&a.pixels))
        .then(a.id.cmp(b.id))
}

/// Disjoint sets with path halving and union by size (also `summary`'s pHash groups).
pub(super) struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    pub(super) fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grandparent = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grandparent;
            x = grandparent;
        }
        x
    }

    pub(super) fn union(&mut self, a: u32, b: u32) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a as usize] < self.size[b as usize] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b as usize] = a;
        self.size[a as usize] += self.size[b as usize];
    }

    /// Groups of more than one member, each sorted by index.
    pub(super) fn groups(mut self) -> Vec<Vec<u32>> {
        let mut by_root: HashMap<u32, Vec<u32>> = HashMap::new();
        for i in 0..self.parent.len() as u32 {
            let root = self.find(i);
            by_root.entry(root).or_default().push(i);
        }
        let mut groups: Vec<Vec<u32>> = by_root.into_values().filter(|g| g.len() > 1).collect();
        groups.sort_unstable();
        groups
    }
}

/// In each group, keeps the best by [`keep_order`] and drops the rest with `describe`'s detail
/// (called with the dropped member's index, the kept one's and the group's size).
fn drop_all_but_best(
    candidates: &[Candidate],
    groups: Vec<Vec<u32>>,
    mut describe: impl FnMut(usize, usize, usize) -> Drop,
) -> Vec<Option<Drop>> {
    let mut drops = vec![None; candidates.len()];
    for group in groups {
        let best = *group
            .iter()
            .min_by(|&&a, &&b| keep_order(&candidates[a as usize], &candidates[b as usize]))
            .expect("groups are not empty");
        for &member in &group {
            if member != best {
                drops[member as usize] =
                    Some(describe(member as usize, best as usize, group.len()));
            }
        }
    }
    drops
}

/// The end of a drop's detail: how it is linked to the kept sample when not directly, or the
/// group's size when it has more than two members.
fn group_note(directly_linked: bool, size: usize) -> String {
    if !directly_linked {
        format!("; linked to it through other members of a group of {size}")
    } else if size > 2 {
        format!("; group of {size}")
    } else {
        String::new()
    }
}

/// Byte-identical copies: for each candidate, `Some(drop)` if another copy is kept instead.
pub fn exact_duplicates(candidates: &[Candidate]) -> Vec<Option<Drop>> {
    let mut by_sha: HashMap<&str, Vec<u32>> = HashMap::new();
    for (i, c) in candidates.iter().enumerate() {
        by_sha.entry(c.sha256).or_default().push(i as u32);
    }
    let mut groups: Vec<Vec<u32>> = by_sha.into_values().filter(|g| g.len() > 1).collect();
    groups.sort_unstable();
    drop_all_but_best(candidates, groups, |_, kept, size| {
        let kept = &candidates[kept];
        Drop {
            stage: Stage::Dedup,
            reason: Reason::ExactDuplicate,
            detail: format!(
                "byte-identical to {} (sha256 {}…; {size} copies, one kept)",
                kept.id,
                &kept.sha256[..12.min(kept.sha256.len())]
            ),
            duplicate_of: Some(kept.id.to_string()),
            duplicate_distance: Some(0.0),
            duplicate_similarity: None,
        }
    })
}

/// Near copies: pHashes within `max_distance` bits are linked, linked samples form groups.
pub fn near_duplicates(candidates: &[Candidate], max_distance: u32) -> Vec<Option<Drop>> {
    let hashes: Vec<u64> = candidates.iter().map(|c| c.phash).collect();
    let pairs = pairs_within(&hashes, max_distance);
    let mut sets = UnionFind::new(candidates.len());
    for &(i, j, _) in &pairs {
        sets.union(i, j);
    }
    drop_all_but_best(candidates, sets.groups(), |dropped, kept, size| {
        let (dropped, kept) = (&candidates[dropped], &candidates[kept]);
        let distance = (dropped.phash ^ kept.phash).count_ones();
        let via = group_note(distance <= max_distance, size);
        Drop {
            stage: Stage::Dedup,
            reason: Reason::NearDuplicate,
            detail: format!(
                "near duplicate of {}: pHash Hamming distance {distance} (phash_max_distance {max_distance}){via}",
                kept.id
            ),
            duplicate_of: Some(kept.id.to_string()),
            duplicate_distance: Some(distance as f64),
            duplicate_similarity: None,
        }
    })
}

/// Semantic copies: candidate `i`'s image embedding is row `i` of `embeddings` (unit vectors,
/// `dim` wide). Pairs with cosine >= `min_cosine` are linked, linked samples form groups. The
/// search's products run on `products` (the same pairs on any device).
pub fn semantic_duplicates(
    candidates: &[Candidate],
    embeddings: &[f32],
    dim: usize,
    min_cosine: f32,
    products: &dyn PairProducts,
) -> Vec<Option<Drop>> {
    debug_assert_eq!(embeddings.len(), candidates.len() * dim);
    let pairs = pairs_above(embeddings, dim, min_cosine, products);
    semantic_duplicates_of_pairs(candidates, embeddings, dim, min_cosine, &pairs)
}

/// [`semantic_duplicates`] over pairs already found (the merged pairs of partition tasks that
/// searched in other processes): the same groups and the same keep rule.
pub fn semantic_duplicates_of_pairs(
    candidates: &[Candidate],
    embeddings: &[f32],
    dim: usize,
    min_cosine: f32,
    pairs: &[SimilarPair],
) -> Vec<Option<Drop>> {
    let mut sets = UnionFind::new(candidates.len());
    for pair in pairs {
        sets.union(pair.a as u32, pair.b as u32);
    }
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    drop_all_but_best(candidates, sets.groups(), |dropped, kept, size| {
        let cosine = cosine(row(dropped), row(kept));
        let via = group_note(cosine >= min_cosine, size);
        Drop {
            stage: Stage::Dedup,
            reason: Reason::SemanticDuplicate,
            detail: format!(
                "semantic duplicate of {}: image embedding cosine {cosine:.4} (embedding_min_cosine {min_cosine}){via}",
                candidates[kept].id
            ),
            duplicate_of: Some(candidates[kept].id.to_string()),
            duplicate_distance: None,
            duplicate_similarity: Some(f64::from(cosine)),
        }
    })
}

/// Video copies: videos whose signatures (sampled frames' pHashes, aligned by time) are within
/// `max_distance` bits on average. Only pairs [`video_candidates`] nominates are compared (the
/// best-aligned frame pair of a match is within `max_distance`, so a match always shares a
/// frame value within it).
pub fn video_duplicates(
    candidates: &[Candidate],
    signatures: &[Signature],
    max_distance: f64,
    tolerance_seconds: f64,
) -> Vec<Option<Drop>> {
    let pairs = video_candidates(signatures, max_distance.floor() as u32);
    let mut sets = UnionFind::new(candidates.len());
    for (a, b) in pairs {
        let found = compare_signatures(
            signatures[a as usize],
            signatures[b as usize],
            tolerance_seconds,
        );
        if found.is_some_and(|m| m.mean_distance <= max_distance) {
            sets.union(a, b);
        }
    }
    drop_all_but_best(candidates, sets.groups(), |dropped, kept, size| {
        // The dropped video against the kept one: the offset is the dropped one's timeline
        // relative to the kept one's.
        let direct = compare_signatures(signatures[kept], signatures[dropped], tolerance_seconds);
        let (detail, distance) = match direct {
            Some(m) => (
                format!(
                    "video duplicate of {}: mean pHash distance {:.2} over {} time-aligned frames at offset {:+.2} s (video_max_distance {max_distance}){}",
                    candidates[kept].id,
                    m.mean_distance,
                    m.aligned_frames,
                    m.offset_seconds,
                    group_note(m.mean_distance <= max_distance, size)
                ),
                Some(m.mean_distance),
            ),
            None => (
                format!(
                    "video duplicate of {}{}",
                    candidates[kept].id,
                    group_note(false, size)
                ),
                None,
            ),
        };
        Drop {
            stage: Stage::Dedup,
            reason: Reason::VideoDuplicate,
            detail,
            duplicate_of: Some(candidates[kept].id.to_string()),
            duplicate_distance: distance,
            duplicate_similarity: None,
        }
    })
}

/// A frame value carried by more videos than this is common (a black or flat frame, whose
/// pHash is the same in every video, or a logo card): it nominates each of its videos against
/// [`ANCHOR_VIDEOS`] of them only, not every pair of them.
const COMMON_FRAME_VIDEOS: usize = 64;
/// The carriers of a common frame value every other carrier is compared with: those with the
/// most frames of that value, then the first in the run.
const ANCHOR_VIDEOS: usize = 8;

/// The pairs of videos (a < b, ascending) worth comparing: videos that share a frame value, or
/// carry two values within `max_distance` bits ([`pairs_within`] over the distinct values).
///
/// Frame values carried by more than [`COMMON_FRAME_VIDEOS`] videos would make this quadratic
/// (a million videos with a black frame are 5·10¹¹ pairs), so such a value nominates each of its
/// videos against its [`ANCHOR_VIDEOS`] anchors only (its carriers with the most frames of that
/// value, then the first), and only the anchors against the videos of nearby values: the
/// candidates grow with the number of such frames, not its square. Copies are still found
/// through them: copies of one video all carry its values, so a common one's anchors are
/// mostly copies too (all-black videos, say, are the carriers of the black frame with the most
/// black frames), and union-find joins the rest to them; copies of unrelated videos share their
/// other frames too.
pub fn video_candidates(signatures: &[Signature], max_distance: u32) -> Vec<(u32, u32)> {
    // Every (value, video) once, by value then video, with the video's frames of that value.
    let mut frames: Vec<(u64, u32)> = signatures
        .iter()
        .enumerate()
        .flat_map(|(video, s)| s.hashes.iter().map(move |&h| (h, video as u32)))
        .collect();
    frames.sort_unstable();
    let mut counts: Vec<u32> = Vec::new();
    let mut kept = 0;
    for i in 0..frames.len() {
        if kept > 0 && frames[kept - 1] == frames[i] {
            counts[kept - 1] += 1;
        } else {
            frames[kept] = frames[i];
            counts.push(1);
            kept += 1;
        }
    }
    frames.truncate(kept);
    // The distinct values, where each one's videos start, and the videos (u32 offsets: at most
    // 2³² frames, as `pairs_within` takes).
    let mut values = Vec::new();
    let mut starts: Vec<u32> = Vec::new();
    for (i, &(value, _)) in frames.iter().enumerate() {
        if values.last() != Some(&value) {
            values.push(value);
            starts.push(i as u32);
        }
    }
    starts.push(frames.len() as u32);
    let mut carriers: Vec<u32> = frames.iter().map(|&(_, video)| video).collect();
    drop(frames);
    // A common value's anchors first: its videos with the most frames of it, then the first.
    for w in starts.windows(2) {
        let (start, end) = (w[0] as usize, w[1] as usize);
        if end - start > COMMON_FRAME_VIDEOS {
            let mut order: Vec<(std::cmp::Reverse<u32>, u32)> = (start..end)
                .map(|i| (std::cmp::Reverse(counts[i]), carriers[i]))
                .collect();
            order.sort_unstable();
            for (slot, (_, video)) in carriers[start..end].iter_mut().zip(order) {
                *slot = video;
            }
        }
    }
    drop(counts);
    let videos_of = |i: usize| &carriers[starts[i] as usize..starts[i + 1] as usize];
    let nominees = |videos: &'_ [u32]| -> usize {
        if videos.len() > COMMON_FRAME_VIDEOS {
            ANCHOR_VIDEOS
        } else {
            videos.len()
        }
    };
    let mut pairs = Vec::new();
    for i in 0..values.len() {
        let videos = videos_of(i);
        for (at, &a) in videos[..nominees(videos)].iter().enumerate() {
            pairs.extend(videos[at + 1..].iter().map(|&b| (a.min(b), a.max(b))));
        }
    }
    for (i, j, _) in pairs_within(&values, max_distance) {
        let (u, w) = (videos_of(i as usize), videos_of(j as usize));
        for &a in &u[..nominees(u)] {
            for &b in &w[..nominees(w)] {
                if a != b {
                    pairs.push((a.min(b), a.max(b)));
                }
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// Audio copies must overlap for at least this many sub-fingerprints (5 s), or all of the
/// shorter file: with less, the best of all offsets of unrelated audio drifts from its usual
/// bit error rate of about 0.45 towards the threshold.
const AUDIO_MIN_OVERLAP_FRAMES: usize = DEFAULT_MIN_OVERLAP_FRAMES;

/// Audio copies: files whose fingerprints, at their best alignment, differ in at most
/// `max_bit_error_rate` of their bits. Candidate pairs come from the inverted index of
/// [`super::audio_index`] (keys of two consecutive sub-fingerprints' halves, which a re-encoded
/// copy keeps at a consistent offset and which stay rare as the run grows), verified at the
/// offset the shared key names, so that not every pair of files is aligned.
pub fn audio_duplicates(
    candidates: &[Candidate],
    fingerprints: &[&[u32]],
    max_bit_error_rate: f64,
) -> Vec<Option<Drop>> {
    let rule = AudioMatchRule {
        max_bit_error_rate,
        min_overlap_frames: AUDIO_MIN_OVERLAP_FRAMES,
    };
    let pairs = matching_fingerprint_pairs(fingerprints, rule);
    // Only the files of a group are compared again (for the drop's detail): no copy of them all.
    let print = |i: usize| Fingerprint {
        rate: FINGERPRINT_RATE,
        hop: FINGERPRINT_HOP,
        frames: fingerprints[i].to_vec(),
    };
    let hop_seconds = FINGERPRINT_HOP as f64 / FINGERPRINT_RATE as f64;
    let min_overlap = |a: &Fingerprint, b: &Fingerprint| {
        AUDIO_MIN_OVERLAP_FRAMES.min(a.frames.len().min(b.frames.len()))
    };
    let compare = |a: usize, b: usize| {
        let (a, b) = (print(a), print(b));
        compare_fingerprints(&a, &b, min_overlap(&a, &b))
    };
    // A pair the index accepted matches at one offset, so at its best one too.
    let mut sets = UnionFind::new(candidates.len());
    for (a, b) in pairs {
        sets.union(a, b);
    }
    drop_all_but_best(candidates, sets.groups(), |dropped, kept, size| {
        let (detail, distance) = match compare(kept, dropped) {
            Some(m) => (
                format!(
                    "audio duplicate of {}: fingerprint bit error rate {:.3} over {:.1} s at offset {:+.2} s (audio_max_bit_error_rate {max_bit_error_rate}){}",
                    candidates[kept].id,
                    m.bit_error_rate,
                    m.overlap_frames as f64 * hop_seconds,
                    m.offset_frames as f64 * hop_seconds,
                    group_note(m.bit_error_rate <= max_bit_error_rate, size)
                ),
                Some(m.bit_error_rate),
            ),
            None => (
                format!("audio duplicate of {}{}", candidates[kept].id, group_note(false, size)),
                None,
            ),
        };
        Drop {
            stage: Stage::Dedup,
            reason: Reason::AudioDuplicate,
            detail,
            duplicate_of: Some(candidates[kept].id.to_string()),
            duplicate_distance: distance,
            duplicate_similarity: None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate<'a>(
        id: &'a str,
        sha: &'a str,
        phash: u64,
        sharpness: f64,
        pixels: u64,
    ) -> Candidate<'a> {
        Candidate {
            id,
            sha256: sha,
            phash,
            sharpness,
            pixels,
        }
    }

    #[test]
    fn exact_copies_keep_one_by_the_rule() {
        let c = vec![
            candidate("0:b.jpg", "aaaa", 1, 10.0, 100),
            candidate("0:a.jpg", "aaaa", 1, 10.0, 100),
            candidate("0:c.jpg", "bbbb", 1, 10.0, 100),
        ];
        let drops = exact_duplicates(&c);
        assert!(drops[1].is_none() && drops[2].is_none());
        let d = drops[0].as_ref().unwrap();
        assert_eq!(d.reason, Reason::ExactDuplicate);
        assert_eq!(d.duplicate_of.as_deref(), Some("0:a.jpg"));
        assert_eq!(d.duplicate_distance, Some(0.0));
    }

    #[test]
    fn near_copies_keep_the_sharpest_then_largest() {
        let c = vec![
            candidate("0:small", "1", 0b0000, 50.0, 100),
            candidate("0:large", "2", 0b0011, 50.0, 400),
            candidate("0:sharp", "3", 0b0001, 80.0, 100),
            candidate("0:other", "4", u64::MAX, 10.0, 100),
        ];
        let drops = near_duplicates(&c, 2);
        assert!(drops[2].is_none() && drops[3].is_none());
        let small = drops[0].as_ref().unwrap();
        assert_eq!(small.duplicate_of.as_deref(), Some("0:sharp"));
        assert_eq!(small.duplicate_distance, Some(1.0));
        assert_eq!(
            drops[1].as_ref().unwrap().detail,
            "near duplicate of 0:sharp: pHash Hamming distance 1 (phash_max_distance 2); group of 3"
        );
    }

    #[test]
    fn semantic_copies_link_by_cosine_and_keep_by_the_rule() {
        // Four unit vectors in 3-d: 0 and 1 at cosine 0.98, 2 close to 1 (0.97) but not to 0,
        // 3 far from all.
        let v = |x: f32, y: f32| {
            let n = (x * x + y * y).sqrt();
            [x / n, y / n, 0.0]
        };
        let rows = [v(1.0, 0.0), v(0.98, 0.199), v(0.9, 0.436), [0.0, 0.0, 1.0]];
        let embeddings: Vec<f32> = rows.iter().flatten().copied().collect();
        let c = vec![
            candidate("0:a", "1", 0, 10.0, 100),
            candidate("0:b", "2", 0, 90.0, 100),
            candidate("0:c", "3", 0, 10.0, 100),
            candidate("0:d", "4", 0, 10.0, 100),
        ];
        let drops =
            semantic_duplicates(&c, &embeddings, 3, 0.96, &crate::decide::pairs::CpuProducts);
        assert!(
            drops[1].is_none() && drops[3].is_none(),
            "b is the sharpest; d is alone"
        );
        let a = drops[0].as_ref().unwrap();
        assert_eq!(a.reason, Reason::SemanticDuplicate);
        assert_eq!(a.duplicate_of.as_deref(), Some("0:b"));
        let expected = cosine(&rows[0], &rows[1]);
        assert_eq!(a.duplicate_similarity, Some(f64::from(expected)));
        assert!(a
            .detail
            .starts_with("semantic duplicate of 0:b: image embedding cosine 0.98"));
        assert_eq!(
            drops[2].as_ref().unwrap().duplicate_of.as_deref(),
            Some("0:b")
        );
    }

    #[test]
    fn decisions_do_not_depend_on_input_order() {
        let ids: Vec<String> = (0..200).map(|i| format!("0:{i:04}")).collect();
        let make = |order: &[usize]| -> Vec<(String, Option<String>)> {
            let c: Vec<Candidate> = order
                .iter()
                .map(|&i| {
                    candidate(
                        &ids[i],
                        "x",
                        (i as u64 / 3) * 0x0101_0101,
                        (i % 7) as f64,
                        10,
                    )
                })
                .collect();
            let mut out: Vec<(String, Option<String>)> = near_duplicates(&c, 3)
                .into_iter()
                .zip(&c)
                .map(|(d, c)| (c.id.to_string(), d.and_then(|d| d.duplicate_of)))
                .collect();
            out.sort();
            out
        };
        let forward: Vec<usize> = (0..200).collect();
        let backward: Vec<usize> = (0..200).rev().collect();
        assert_eq!(make(&forward), make(&backward));
    }

    /// A deterministic stream of pseudo-random words (splitmix64).
    fn words(seed: u64, n: usize) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            })
            .collect()
    }

    #[test]
    fn video_copies_are_grouped_by_their_aligned_signatures() {
        let times: Vec<f64> = (0..10).map(f64::from).collect();
        let original = words(1, 10);
        // A re-encode: every frame 3 bits off. A trimmed copy: starts 4 s in, 1 bit off.
        let reencoded: Vec<u64> = original.iter().map(|h| h ^ 0b111).collect();
        let trimmed: Vec<u64> = original[4..].iter().map(|h| h ^ 1).collect();
        let other = words(2, 10);
        let signatures = [
            Signature {
                times: &times,
                hashes: &original,
            },
            Signature {
                times: &times,
                hashes: &reencoded,
            },
            Signature {
                times: &times[..6],
                hashes: &trimmed,
            },
            Signature {
                times: &times,
                hashes: &other,
            },
        ];
        let c = vec![
            candidate("0:a.mp4", "1", 0, 50.0, 100),
            candidate("0:b.mp4", "2", 0, 40.0, 100),
            candidate("0:c.mp4", "3", 0, 60.0, 50),
            candidate("0:d.mp4", "4", 0, 10.0, 100),
        ];
        let drops = video_duplicates(&c, &signatures, 8.0, 0.5);
        // The trimmed copy is the sharpest: it is kept, the others point to it.
        assert!(drops[2].is_none() && drops[3].is_none());
        let a = drops[0].as_ref().unwrap();
        assert_eq!(a.reason, Reason::VideoDuplicate);
        assert_eq!(a.duplicate_of.as_deref(), Some("0:c.mp4"));
        assert_eq!(a.duplicate_distance, Some(1.0));
        assert!(a.detail.contains("offset +4.00 s"), "{}", a.detail);
        let b = drops[1].as_ref().unwrap();
        assert_eq!(b.duplicate_of.as_deref(), Some("0:c.mp4"));
        // Nothing links the unrelated video, and a limit below the re-encode's distance keeps
        // the re-encode apart.
        assert_eq!(video_duplicates(&c, &signatures, 1.5, 0.5)[1], None);
    }

    #[test]
    fn common_frames_nominate_linearly_and_copies_are_still_found() {
        // 3,000 unrelated videos of 8 frames, each with one black frame (pHash 0); 150 copies
        // of one more video; 100 all-black videos.
        let times: Vec<f64> = (0..8).map(f64::from).collect();
        let mut hashes: Vec<Vec<u64>> = (0..3000)
            .map(|v| {
                let mut h = words(1000 + v, 8);
                h[(v % 8) as usize] = 0;
                h
            })
            .collect();
        // 100 re-uploads of one video (the same hashes), 50 re-encodes of it (1 bit off).
        let viral = words(7, 8);
        hashes.extend((0..150u64).map(|c| {
            let flip = if c < 100 { 0 } else { 1 << (c % 64) };
            viral.iter().map(|h| h ^ flip).collect()
        }));
        hashes.extend((0..100).map(|_| vec![0u64; 8]));
        let signatures: Vec<Signature> = hashes
            .iter()
            .map(|h| Signature {
                times: &times,
                hashes: h,
            })
            .collect();
        let pairs = video_candidates(&signatures, 8);
        // Every pair of the 3,100 videos with a black frame would be 4.8M; each is nominated
        // against 8 anchors instead (the all-black videos). The re-uploads' values, each
        // carried by 100 videos, likewise.
        assert!(pairs.len() < 60_000, "{} pairs", pairs.len());
        assert!(pairs.windows(2).all(|w| w[0] < w[1]));
        let ids: Vec<String> = (0..signatures.len()).map(|i| format!("0:{i:05}")).collect();
        let c: Vec<Candidate> = ids
            .iter()
            .map(|id| candidate(id, "v", 0, 10.0, 100))
            .collect();
        let drops = video_duplicates(&c, &signatures, 8.0, 0.5);
        let dropped = |range: std::ops::Range<usize>| drops[range].iter().flatten().count();
        assert_eq!(dropped(0..3000), 0, "one black frame makes no copy");
        assert_eq!(dropped(3000..3150), 149, "the copies, all but one");
        assert_eq!(
            dropped(3150..3250),
            99,
            "all-black videos are copies of each other"
        );
        let kept_copy = c[3000].id.to_string();
        assert!(drops[3001..3150]
            .iter()
            .all(|d| d.as_ref().unwrap().duplicate_of.as_deref() == Some(kept_copy.as_str())));
    }

    #[test]
    fn audio_copies_are_found_through_the_index_at_their_offset() {
        let print = |w: &[u64]| -> Vec<u32> { w.iter().map(|&x| x as u32).collect() };
        let original = print(&words(3, 400));
        // A lossy copy cut 25 frames in: one bit flipped in every frame, in the low half of
        // even frames and the high half of odd ones, so each frame keeps one half intact.
        let copy: Vec<u32> = original[25..]
            .iter()
            .zip(words(4, 375))
            .enumerate()
            .map(|(i, (&f, noise))| f ^ (1 << (noise % 16 + 16 * (i as u64 % 2))))
            .collect();
        let other = print(&words(5, 400));
        let prints: Vec<&[u32]> = vec![&original, &copy, &other];
        let c = vec![
            candidate("0:a.flac", "1", 0, 88200.0, 1000),
            candidate("0:b.mp3", "2", 0, 88200.0, 200),
            candidate("0:c.ogg", "3", 0, 88200.0, 300),
        ];
        let drops = audio_duplicates(&c, &prints, 0.2);
        assert!(drops[0].is_none() && drops[2].is_none());
        let b = drops[1].as_ref().unwrap();
        assert_eq!(b.reason, Reason::AudioDuplicate);
        assert_eq!(b.duplicate_of.as_deref(), Some("0:a.flac"));
        // One bit of 32 per frame.
        assert_eq!(b.duplicate_distance, Some(1.0 / 32.0));
        assert!(b.detail.contains("offset +3.10 s"), "{}", b.detail);
    }

    /// Issue 14's defect: the index keyed 16-bit halves and skipped those shared by more than
    /// 64 files; at 100,000 files every half is (N·F/2¹⁵ files each), so no copy was found.
    /// Halves drawn from a small alphabet (as low-entropy chroma gives) crowd the same way
    /// with 150 files: each half value is shared by all of them.
    #[test]
    fn audio_copies_are_found_when_every_half_is_shared_by_many_files() {
        let alphabet: Vec<u32> = words(11, 48).iter().map(|&w| (w as u32) & 0xFFFF).collect();
        let pick = |w: u64| alphabet[(w % 48) as usize];
        let mut files: Vec<Vec<u32>> = (0..150)
            .map(|f| {
                words(100 + f, 200)
                    .chunks_exact(2)
                    .map(|w| pick(w[0]) << 16 | pick(w[1]))
                    .collect()
            })
            .collect();
        // File 150: file 0 from frame 10 on, one bit flipped in every frame (the low half of
        // even frames, the high half of odd ones).
        let copy: Vec<u32> = files[0][10..]
            .iter()
            .enumerate()
            .map(|(i, &f)| f ^ (1 << (3 + 16 * (i % 2))))
            .collect();
        files.push(copy);
        let prints: Vec<&[u32]> = files.iter().map(Vec::as_slice).collect();
        let ids: Vec<String> = (0..files.len()).map(|i| format!("0:{i:03}.ogg")).collect();
        let c: Vec<Candidate> = ids
            .iter()
            .map(|id| candidate(id, id, 0, 1.0, 100))
            .collect();
        let drops = audio_duplicates(&c, &prints, 0.2);
        let dropped: Vec<usize> = (0..drops.len()).filter(|&i| drops[i].is_some()).collect();
        assert_eq!(dropped, [150]);
        let d = drops[150].as_ref().unwrap();
        assert_eq!(d.duplicate_of.as_deref(), Some("0:000.ogg"));
        assert_eq!(d.duplicate_distance, Some(1.0 / 32.0));
    }
}
