//! Which decoded video frames to sample, as pure logic: regular targets at `k / sample_fps`
//! (spread over the whole video when it is longer than `max_frames / sample_fps`), scene cuts
//! from the difference of consecutive thumbnails, the motion score, and when decoding may stop.
//!
//! It sees only each frame's time and its thumbnail's bytes, so it is tested without FFmpeg;
//! decoding, scaling and the thumbnails themselves are `ffmpeg::video`'s.

use super::FrameSampling;

/// The side of the square luma thumbnails compared for scene cuts and the motion score.
pub(super) const THUMBNAIL_SIDE: u32 = 64;

/// The regular sample times `k * interval`, `k < count` (computed from `k`, not accumulated,
/// so the times do not drift).
pub(super) struct RegularTargets {
    interval: f64,
    /// How many targets there are; `None` when the duration is unknown (then `max_frames`
    /// bounds the samples).
    count: Option<usize>,
    next: usize,
}

impl RegularTargets {
    pub(super) fn new(sampling: &FrameSampling, duration: Option<f64>) -> Self {
        if !(sampling.sample_fps.is_finite() && sampling.sample_fps > 0.0)
            || sampling.max_frames == 0
        {
            return RegularTargets {
                interval: 0.0,
                count: Some(0),
                next: 0,
            };
        }
        let max = sampling.max_frames;
        let mut interval = 1.0 / sampling.sample_fps;
        let count = duration.map(|d| {
            if d * sampling.sample_fps > max as f64 {
                // Longer than max_frames / sample_fps: spread the samples over the whole
                // video rather than stopping early and ignoring its end.
                interval = d / max as f64;
                max
            } else {
                // Targets strictly before the end; at least the first frame.
                ((d / interval).ceil() as usize).clamp(1, max)
            }
        });
        RegularTargets {
            interval,
            count,
            next: 0,
        }
    }

    pub(super) fn current(&self) -> Option<f64> {
        match self.count {
            Some(n) if self.next >= n => None,
            _ => Some(self.next as f64 * self.interval),
        }
    }

    /// Consumes every target at or before `t`; true when there was one (the frame at `t` is
    /// the first whose time reaches them).
    pub(super) fn take_reached(&mut self, t: f64) -> bool {
        let mut reached = false;
        // A tolerance far below any frame interval absorbs rounding in `pts * time_base`.
        while self.current().is_some_and(|target| t >= target - 1e-9) {
            self.next += 1;
            reached = true;
        }
        reached
    }

    /// Targets not yet reached, when known.
    pub(super) fn remaining(&self) -> Option<usize> {
        self.count.map(|n| n.saturating_sub(self.next))
    }

    pub(super) fn exhausted(&self) -> bool {
        self.current().is_none()
    }
}

/// What to do with one decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameChoice {
    /// It starts a new scene (its thumbnail differs from the previous one by at least the
    /// threshold).
    pub scene_cut: bool,
    /// Sample it: it reaches a regular target, or it is a cut and a slot is free.
    pub take: bool,
}

/// What the selector saw over the whole stream.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SelectionSummary {
    pub decoded_frames: u64,
    pub scene_cuts: Vec<f64>,
    pub mean_frame_difference: Option<f64>,
    pub decoded_seconds: f64,
}

/// The per-frame choices of [`super::sample_video_frames`]: fed every decoded frame in order,
/// it says which to sample and when nothing more is needed.
pub(super) struct FrameSelector {
    scene_threshold: f64,
    max_frames: usize,
    targets: RegularTargets,
    previous_thumbnail: Option<Vec<u8>>,
    difference_sum: f64,
    differences: u64,
    first_seconds: Option<f64>,
    last_seconds: f64,
    decoded_frames: u64,
    scene_cuts: Vec<f64>,
    /// Frames chosen so far.
    taken: usize,
}

impl FrameSelector {
    /// A selector for a stream of `duration` seconds (`None`: unknown).
    pub(super) fn new(sampling: &FrameSampling, duration: Option<f64>) -> Self {
        FrameSelector {
            scene_threshold: sampling.scene_threshold,
            max_frames: sampling.max_frames,
            targets: RegularTargets::new(sampling, duration),
            previous_thumbnail: None,
            difference_sum: 0.0,
            differences: 0,
            first_seconds: None,
            last_seconds: 0.0,
            decoded_frames: 0,
            scene_cuts: Vec::new(),
            taken: 0,
        }
    }

    /// Takes one decoded frame, at `seconds`, with its [`THUMBNAIL_SIDE`]² luma thumbnail. A
    /// frame chosen with `take` counts as sampled: the caller samples it (or gives up).
    pub(super) fn choose(&mut self, seconds: f64, thumbnail: Vec<u8>) -> FrameChoice {
        self.decoded_frames += 1;
        self.first_seconds.get_or_insert(seconds);
        self.last_seconds = self.last_seconds.max(seconds);

        let mut scene_cut = false;
        if let Some(previous) = &self.previous_thumbnail {
            let difference = mean_abs_difference(previous, &thumbnail);
            self.difference_sum += difference;
            self.differences += 1;
            scene_cut = self.scene_threshold > 0.0 && difference >= self.scene_threshold;
        }
        self.previous_thumbnail = Some(thumbnail);
        if scene_cut {
            self.scene_cuts.push(seconds);
        }

        let regular = self.targets.take_reached(seconds);
        let take = if regular {
            self.taken < self.max_frames
        } else {
            // A cut must not take a slot that a later regular target needs, so the regular
            // samples keep covering the whole video.
            scene_cut && self.taken + self.targets.remaining().unwrap_or(0) < self.max_frames
        };
        if take {
            self.taken += 1;
        }
        FrameChoice { scene_cut, take }
    }

    /// Whether more frames are wanted. Scene detection reports every cut, so it reads the
    /// whole stream; otherwise decoding stops as soon as the targets are passed.
    pub(super) fn wants_more(&self) -> bool {
        let done_sampling = self.targets.exhausted() || self.taken >= self.max_frames;
        !(done_sampling && self.scene_threshold <= 0.0)
    }

    /// The next regular target not reached yet (where a seek may go).
    pub(super) fn next_target(&self) -> Option<f64> {
        self.targets.current()
    }

    /// The decoder jumped: the next frame is not consecutive with the last one.
    pub(super) fn seeked(&mut self) {
        self.previous_thumbnail = None;
    }

    pub(super) fn decoded_frames(&self) -> u64 {
        self.decoded_frames
    }

    /// The latest frame time seen.
    pub(super) fn last_seconds(&self) -> f64 {
        self.last_seconds
    }

    pub(super) fn finish(self) -> SelectionSummary {
        SelectionSummary {
            decoded_frames: self.decoded_frames,
            scene_cuts: self.scene_cuts,
            mean_frame_difference: (self.differences > 0)
                .then(|| self.difference_sum / self.differences as f64),
            decoded_seconds: self.last_seconds - self.first_seconds.unwrap_or(0.0),
        }
    }
}

/// The size whose shorter side is `min(min_side, shorter)`, aspect kept.
pub(super) fn scaled_size(width: u32, height: u32, min_side: u32) -> (u32, u32) {
    let shorter = width.min(height);
    if min_side == 0 || min_side >= shorter {
        return (width, height);
    }
    let scale =
        |side: u32| ((side as f64 * min_side as f64 / shorter as f64).round() as u32).max(1);
    if width <= height {
        (min_side, scale(height))
    } else {
        (scale(width), min_side)
    }
}

/// The mean absolute difference of two equally long planes (0–255).
pub(super) fn mean_abs_difference(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y) as u64).sum();
    sum as f64 / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(sample_fps: f64, scene_threshold: f64, max_frames: usize) -> FrameSampling {
        FrameSampling {
            sample_fps,
            scene_threshold,
            max_frames,
            min_side: 0,
            keep_rgb: false,
            cuda_device: None,
        }
    }

    /// A flat thumbnail of one grey level.
    fn flat(level: u8) -> Vec<u8> {
        vec![level; (THUMBNAIL_SIDE * THUMBNAIL_SIDE) as usize]
    }

    /// Feeds frames at `fps` (thumbnail level from `level(i)`) until the selector has enough;
    /// returns the times chosen, the cut times seen and the frames fed.
    fn run(
        selector: &mut FrameSelector,
        fps: f64,
        frames: usize,
        level: impl Fn(usize) -> u8,
    ) -> (Vec<f64>, usize) {
        let mut taken = Vec::new();
        for i in 0..frames {
            let t = i as f64 / fps;
            if selector.choose(t, flat(level(i))).take {
                taken.push(t);
            }
            if !selector.wants_more() {
                return (taken, i + 1);
            }
        }
        (taken, frames)
    }

    #[test]
    fn regular_targets_are_the_first_frames_at_each_interval_and_decoding_stops_after() {
        let mut s = FrameSelector::new(&sampling(1.0, 0.0, 16), Some(4.0));
        // 25 fps for 4 s: targets at 0, 1, 2 and 3 s.
        let (taken, fed) = run(&mut s, 25.0, 100, |_| 50);
        assert_eq!(taken, [0.0, 1.0, 2.0, 3.0]);
        // Stopped at the frame that reached the last target.
        assert_eq!(fed, 76);
        let summary = s.finish();
        assert_eq!(summary.decoded_frames, 76);
        assert_eq!(summary.scene_cuts, Vec::<f64>::new());
        assert_eq!(summary.mean_frame_difference, Some(0.0));
        assert_eq!(summary.decoded_seconds, 3.0);
    }

    #[test]
    fn a_long_video_spreads_its_targets_and_an_unknown_one_stops_at_max_frames() {
        // 100 s at 1 fps with at most 4 frames: every 25 s, not the first 4 seconds.
        let mut s = FrameSelector::new(&sampling(1.0, 0.0, 4), Some(100.0));
        let (taken, _) = run(&mut s, 10.0, 1000, |_| 0);
        assert_eq!(taken, [0.0, 25.0, 50.0, 75.0]);
        // Unknown duration: 1 fps until max_frames.
        let mut s = FrameSelector::new(&sampling(1.0, 0.0, 3), None);
        let (taken, fed) = run(&mut s, 10.0, 1000, |_| 0);
        assert_eq!(taken, [0.0, 1.0, 2.0]);
        assert_eq!(fed, 21);
        // A rate of 0 takes no regular samples at all.
        let mut s = FrameSelector::new(&sampling(0.0, 0.0, 3), Some(10.0));
        assert_eq!(s.next_target(), None);
        assert!(!s.wants_more());
        assert!(!s.choose(0.0, flat(0)).take);
    }

    #[test]
    fn cuts_are_found_and_take_only_slots_the_regular_targets_leave_free() {
        // 10 s at 10 fps, a cut (grey 0 → 200) at 2.5 s and another (200 → 0) at 6.3 s;
        // 1 fps with room for 12 frames: 10 regular targets, so both cuts are sampled too.
        let level = |i: usize| if (25..63).contains(&i) { 200 } else { 0 };
        let mut s = FrameSelector::new(&sampling(1.0, 30.0, 12), Some(10.0));
        let (taken, fed) = run(&mut s, 10.0, 100, level);
        // With scene detection on the whole stream is read.
        assert_eq!(fed, 100);
        let expected: Vec<f64> =
            [0.0, 1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 6.3, 7.0, 8.0, 9.0].to_vec();
        assert_eq!(taken.len(), expected.len());
        for (t, e) in taken.iter().zip(&expected) {
            assert!((t - e).abs() < 1e-9, "{taken:?}");
        }
        let summary = s.finish();
        assert_eq!(summary.scene_cuts.len(), 2);
        // Two differences of 200 over 99 pairs.
        let motion = summary.mean_frame_difference.unwrap();
        assert!((motion - 400.0 / 99.0).abs() < 1e-9, "{motion}");

        // Room for 10 frames only: the 10 regular targets keep theirs, the cuts are reported
        // but not sampled.
        let mut s = FrameSelector::new(&sampling(1.0, 30.0, 10), Some(10.0));
        let (taken, _) = run(&mut s, 10.0, 100, level);
        assert_eq!(taken.len(), 10);
        assert!(
            taken.iter().all(|t| (t - t.round()).abs() < 1e-9),
            "{taken:?}"
        );
        assert_eq!(s.finish().scene_cuts.len(), 2);
    }

    #[test]
    fn a_seek_breaks_the_chain_of_differences() {
        let mut s = FrameSelector::new(&sampling(1.0, 30.0, 8), Some(10.0));
        s.choose(0.0, flat(0));
        s.seeked();
        // Not compared with the frame before the seek: no cut, no difference.
        let choice = s.choose(5.0, flat(255));
        assert!(!choice.scene_cut);
        assert_eq!(s.finish().mean_frame_difference, None);
    }

    #[test]
    fn scaled_size_keeps_the_aspect_and_never_enlarges() {
        assert_eq!(scaled_size(1280, 720, 512), (910, 512));
        assert_eq!(scaled_size(720, 1280, 512), (512, 910));
        assert_eq!(scaled_size(320, 240, 512), (320, 240));
        assert_eq!(scaled_size(320, 240, 0), (320, 240));
        assert_eq!(scaled_size(10_000, 1, 1), (10_000, 1));
        assert_eq!(mean_abs_difference(&[0, 10, 20], &[10, 10, 0]), 10.0);
        assert_eq!(mean_abs_difference(&[], &[]), 0.0);
    }
}
