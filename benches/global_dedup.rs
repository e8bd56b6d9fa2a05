//! The run-wide dedups other than the semantic one, at corpus scale: N synthetic pHashes,
//! video signatures or audio fingerprints, about 10% of them near copies of others, through
//! `decide::dedup`'s `near_duplicates` (multi-index hashing over 64-bit pHashes),
//! `video_duplicates` (8 frames a video) and `audio_duplicates` (fingerprints of 10 s), with
//! the config's default thresholds.
//!
//! Prints one JSON line: kind, N, seconds to generate and to deduplicate, the planted copies and
//! how many were dropped as duplicates, all drops, peak memory (VmHWM), and for pHash and video
//! the Hamming join's method (`hamming_index::choose_strategy`). One kind and size
//! per process, so the peak is that search's:
//! `cargo bench --profile test --bench global_dedup -- phash 1000000`.

use std::time::Instant;

use mmcurate::config::DEFAULT_MAX_BIT_ERROR_RATE;
use mmcurate::decide::dedup::{audio_duplicates, near_duplicates, video_duplicates, Candidate};
use mmcurate::decide::hamming_index::choose_strategy;
use mmcurate::measure::video::Signature;

/// splitmix64, for values that depend only on the row.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The original row `i` copies (about 1 in 10 rows), or `None` for an original.
fn copy_of(i: usize) -> Option<usize> {
    let h = mix(i as u64 ^ 0xC0FF_EE00);
    (i > 0 && h % 10 == 0).then(|| {
        // Walk down to an original, so copies are of originals.
        let mut j = (mix(h) % i as u64) as usize;
        while j > 0 && mix(j as u64 ^ 0xC0FF_EE00) % 10 == 0 {
            j -= 1;
        }
        j
    })
}

/// `value` with `flips` distinct bits (of `bits`) flipped, chosen by `seed`.
fn flip_bits(value: u64, bits: u32, flips: u32, seed: u64) -> u64 {
    let mut out = value;
    let mut flipped = 0;
    let mut s = seed;
    while flipped < flips {
        s = mix(s);
        let bit = 1u64 << (s % u64::from(bits));
        if (out ^ value) & bit == 0 {
            out ^= bit;
            flipped += 1;
        }
    }
    out
}

/// Frames per row: 1 pHash; 8 video frames (one a second); 81 audio sub-fingerprints (10 s).
fn frames(kind: &str) -> usize {
    match kind {
        "phash" => 1,
        "video" => 8,
        "audio" => 81,
        other => panic!("{other}: the kinds are phash, video, audio"),
    }
}

/// Row `i`'s hashes: an original's are random; a copy's are its original's with 0–3 bits of
/// each flipped (pHash, video) or 2 bits of each sub-fingerprint flipped (audio: a bit error
/// rate of 0.06).
fn row_hashes(kind: &str, i: usize, out: &mut Vec<u64>) {
    let f = frames(kind);
    let base = copy_of(i).unwrap_or(i);
    for k in 0..f {
        let mut h = mix((base * f + k) as u64 ^ 0xF00D);
        if kind == "audio" {
            h &= 0xFFFF_FFFF;
        }
        if base != i {
            let seed = (i * f + k) as u64;
            h = match kind {
                "audio" => flip_bits(h, 32, 2, seed),
                _ => flip_bits(h, 64, (mix(seed) % 4) as u32, seed),
            };
        }
        out.push(h);
    }
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let kind = args.first().map_or("phash", String::as_str).to_string();
    let n: usize = args
        .get(1)
        .map(|s| {
            s.replace('_', "")
                .parse()
                .expect("N must be a whole number")
        })
        .unwrap_or(100_000);

    let clock = Instant::now();
    let f = frames(&kind);
    // Audio fingerprints are kept as u32 from the start (half the memory at 10M rows).
    let mut hashes = Vec::with_capacity(if kind == "audio" { n } else { n * f });
    let mut prints32: Vec<u32> = Vec::new();
    let mut row = Vec::with_capacity(f);
    for i in 0..n {
        if kind == "audio" {
            row.clear();
            row_hashes(&kind, i, &mut row);
            prints32.extend(row.iter().map(|&h| h as u32));
            hashes.push(row[0]);
        } else {
            row_hashes(&kind, i, &mut hashes);
        }
    }
    let first_hash = |i: usize| {
        if kind == "audio" {
            hashes[i]
        } else {
            hashes[i * f]
        }
    };
    let ids: Vec<String> = (0..n).map(|i| format!("{i:010}")).collect();
    let candidates: Vec<Candidate> = (0..n)
        .map(|i| Candidate {
            id: &ids[i],
            sha256: "",
            phash: first_hash(i),
            sharpness: 1.0,
            pixels: 1,
        })
        .collect();
    let planted = (0..n).filter(|&i| copy_of(i).is_some()).count();
    let generate_seconds = clock.elapsed().as_secs_f64();

    let clock = Instant::now();
    let drops = match kind.as_str() {
        "phash" => near_duplicates(&candidates, 4),
        "video" => {
            let times: Vec<f64> = (0..f).map(|t| t as f64).collect();
            let signatures: Vec<Signature> = hashes
                .chunks_exact(f)
                .map(|h| Signature {
                    times: &times,
                    hashes: h,
                })
                .collect();
            video_duplicates(&candidates, &signatures, 8.0, 0.5)
        }
        _ => {
            let prints: Vec<&[u32]> = prints32.chunks_exact(f).collect();
            audio_duplicates(&candidates, &prints, DEFAULT_MAX_BIT_ERROR_RATE)
        }
    };
    let dedup_seconds = clock.elapsed().as_secs_f64();
    // A planted copy is found when it, or its original, is dropped (the keep rule keeps the
    // lowest id of equally sharp samples: the original).
    let copies_found = (0..n)
        .filter(|&i| copy_of(i).is_some() && drops[i].is_some())
        .count();
    let dropped = drops.iter().filter(|d| d.is_some()).count();
    let method = match kind.as_str() {
        "phash" => format!("{:?}", choose_strategy(n, 4)),
        "video" => format!("{:?}", choose_strategy(n * f, 8)),
        _ => "key index".to_string(),
    };
    println!(
        "{}",
        serde_json::json!({
            "bench": "global_dedup",
            "kind": kind,
            "n": n,
            "frames_per_row": f,
            "threads": rayon::current_num_threads(),
            "generate_seconds": (generate_seconds * 1000.0).round() / 1000.0,
            "dedup_seconds": (dedup_seconds * 1000.0).round() / 1000.0,
            "planted_copies": planted,
            "copies_found": copies_found,
            "dropped": dropped,
            "peak_rss_mib": peak_rss_mib(),
            "method": method,
        })
    );
}
