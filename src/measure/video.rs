//! Video measurements from the sampled frames: each frame is measured as an image is
//! (sharpness, brightness, pHash, through [`QualityKernels`]), then summarised per video, and
//! the frames' pHashes with their timestamps form the signature that video dedup compares
//! ([`compare_signatures`]). Frames come from `decode::av`; nothing here decodes or decides.

use super::{QualityKernels, VideoMeasurements, ANALYSIS_SHORT_SIDE};
use crate::config::Config;
use crate::decode::av::{FrameSampling, VideoFrames};

/// The frames a config asks measuring to sample (`[video]`), at the analysis size; the CLIP
/// stage samples the same frames again (with their RGB). Videos decode with NVDEC on the
/// device `config.video.nvdec_device` names, if any (set by the pipeline for the run's GPU).
pub fn frame_sampling(config: &Config, keep_rgb: bool) -> FrameSampling {
    FrameSampling {
        sample_fps: config.video.sample_fps,
        scene_threshold: config.video.scene_threshold,
        max_frames: config.video.max_frames,
        min_side: ANALYSIS_SHORT_SIDE,
        keep_rgb,
        cuda_device: config.video.nvdec_device,
    }
}

/// Measures every sampled frame and summarises the video.
pub fn measure_video(
    frames: &VideoFrames,
    codec: &str,
    fps: Option<f64>,
    kernels: &dyn QualityKernels,
) -> VideoMeasurements {
    let mut m = VideoMeasurements {
        codec: codec.to_string(),
        fps,
        decoded_frames: frames.decoded_frames,
        ..VideoMeasurements::default()
    };
    for frame in &frames.frames {
        let q = kernels.measure(&frame.luma);
        m.frame_timestamps.push(frame.pts_seconds);
        m.frame_scene_cut.push(frame.scene_cut);
        m.frame_sharpness.push(q.sharpness);
        m.frame_brightness.push(q.brightness);
        m.frame_phashes.push(q.phash);
    }
    let n = m.frame_sharpness.len();
    if n > 0 {
        m.sharpness_min = m.frame_sharpness.iter().copied().reduce(f64::min);
        m.sharpness_mean = Some(m.frame_sharpness.iter().sum::<f64>() / n as f64);
    }
    if frames.decoded_seconds > 0.0 {
        m.scene_cuts_per_minute =
            Some(frames.scene_cuts.len() as f64 * 60.0 / frames.decoded_seconds);
    }
    m.motion_score = frames.mean_frame_difference;
    m
}

/// Mean luminance over the sampled frames.
pub fn mean_brightness(m: &VideoMeasurements) -> Option<f64> {
    let n = m.frame_brightness.len();
    (n > 0).then(|| m.frame_brightness.iter().sum::<f64>() / n as f64)
}

/// A video's signature: its sampled frames' pHashes and their timestamps (seconds).
#[derive(Debug, Clone, Copy)]
pub struct Signature<'a> {
    pub times: &'a [f64],
    pub hashes: &'a [u64],
}

impl<'a> Signature<'a> {
    pub fn of(m: &'a VideoMeasurements) -> Signature<'a> {
        Signature {
            times: &m.frame_timestamps,
            hashes: &m.frame_phashes,
        }
    }
}

/// How two signatures line up at their best alignment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignatureMatch {
    /// Mean pHash Hamming distance (bits) over the aligned frame pairs.
    pub mean_distance: f64,
    /// Frame pairs that lined up in time.
    pub aligned_frames: usize,
    /// `b`'s timeline minus `a`'s: a copy of `a` with its first 3 s cut off is at -3.
    pub offset_seconds: f64,
}

/// Frame pairs this close in pHash suggest an alignment to try.
const OFFSET_HINT_DISTANCE: u32 = 12;
/// At most this many alignments are tried per pair of videos.
const MAX_OFFSETS: usize = 64;

/// Compares two signatures at the best time alignment: offset 0 (a re-encoded, resized or
/// re-containered copy keeps its timestamps) and the offsets of frame pairs whose pHashes are
/// close (a trimmed copy). Frames pair up when their times, after the offset, are within
/// `tolerance_seconds`; an alignment counts only when at least half of the shorter signature
/// (and at least `min(3, shorter)` frames) pairs up. `None` when no alignment does.
pub fn compare_signatures(
    a: Signature,
    b: Signature,
    tolerance_seconds: f64,
) -> Option<SignatureMatch> {
    let shorter = a.hashes.len().min(b.hashes.len());
    if shorter == 0 {
        return None;
    }
    let needed = shorter.div_ceil(2).max(shorter.min(3));
    let mut offsets = vec![0.0];
    for (i, &ha) in a.hashes.iter().enumerate() {
        for (j, &hb) in b.hashes.iter().enumerate() {
            if (ha ^ hb).count_ones() <= OFFSET_HINT_DISTANCE {
                offsets.push(b.times[j] - a.times[i]);
            }
        }
    }
    // Round so that near-equal offsets are tried once; smallest shifts first.
    let mut offsets: Vec<f64> = offsets
        .into_iter()
        .map(|o| (o * 1000.0).round() / 1000.0)
        .collect();
    offsets.sort_by(|x, y| x.abs().total_cmp(&y.abs()).then(x.total_cmp(y)));
    offsets.dedup();
    offsets.truncate(MAX_OFFSETS);

    let mut best: Option<SignatureMatch> = None;
    for offset in offsets {
        let mut total = 0u64;
        let mut aligned = 0usize;
        for (i, &ta) in a.times.iter().enumerate() {
            let target = ta + offset;
            // b's times are sorted: the nearest one is next to the insertion point.
            let k = b.times.partition_point(|&t| t < target);
            let nearest = [k.checked_sub(1), Some(k)]
                .into_iter()
                .flatten()
                .filter(|&k| k < b.times.len())
                .min_by(|&x, &y| {
                    (b.times[x] - target)
                        .abs()
                        .total_cmp(&(b.times[y] - target).abs())
                });
            if let Some(j) = nearest.filter(|&j| (b.times[j] - target).abs() <= tolerance_seconds) {
                total += u64::from((a.hashes[i] ^ b.hashes[j]).count_ones());
                aligned += 1;
            }
        }
        if aligned < needed {
            continue;
        }
        let candidate = SignatureMatch {
            mean_distance: total as f64 / aligned as f64,
            aligned_frames: aligned,
            offset_seconds: offset,
        };
        // Offsets come smallest first, so a tie keeps the smaller shift.
        if best.is_none_or(|b| candidate.mean_distance < b.mean_distance) {
            best = Some(candidate);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig<'a>(times: &'a [f64], hashes: &'a [u64]) -> Signature<'a> {
        Signature { times, hashes }
    }

    #[test]
    fn a_copy_with_the_same_timestamps_matches_at_offset_zero() {
        let times = [0.0, 1.0, 2.0, 3.0];
        let a = [
            0x0123_4567_89ab_cdef,
            0xffff_0000_ffff_0000,
            0x1111_2222_3333_4444,
            0,
        ];
        // Each frame two bits off, as a re-encode leaves them.
        let b: Vec<u64> = a.iter().map(|h| h ^ 0b101).collect();
        let m = compare_signatures(sig(&times, &a), sig(&times, &b), 0.5).unwrap();
        assert_eq!(m.mean_distance, 2.0);
        assert_eq!(m.aligned_frames, 4);
        assert_eq!(m.offset_seconds, 0.0);
    }

    #[test]
    fn a_trimmed_copy_is_found_at_its_offset() {
        let times: Vec<f64> = (0..8).map(f64::from).collect();
        let a: Vec<u64> = (0..8u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        // The copy starts 3 s in: its frame at 0 s is the original's at 3 s.
        let b = &a[3..];
        let m = compare_signatures(sig(&times, &a), sig(&times[..5], b), 0.5).unwrap();
        assert_eq!(m.mean_distance, 0.0);
        assert_eq!(m.offset_seconds, -3.0);
        assert_eq!(m.aligned_frames, 5);
    }

    #[test]
    fn different_videos_are_far_apart_and_too_little_overlap_is_no_match() {
        let times = [0.0, 1.0, 2.0, 3.0];
        let a = [0u64, 0, 0, 0];
        let b = [u64::MAX, u64::MAX, u64::MAX, u64::MAX];
        let m = compare_signatures(sig(&times, &a), sig(&times, &b), 0.5).unwrap();
        assert_eq!(m.mean_distance, 64.0);
        // Times that never line up within the tolerance: no alignment at all.
        let later = [10.0, 11.0, 12.0, 13.0];
        assert!(compare_signatures(sig(&times, &a), sig(&later, &b), 0.5).is_none());
        assert!(compare_signatures(sig(&[], &[]), sig(&times, &b), 0.5).is_none());
    }
}
