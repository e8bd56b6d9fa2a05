//! What a sample's CLIP numbers are, from the model's unit-length features: a video's
//! embedding is the normalised mean of its frames' embeddings, and its CLIP score the mean or
//! the max of its frames' cosines with the caption (`[video] clip_score`); an image is a video
//! of one frame. Pure arithmetic on features: running the model is `models::clip`'s, and
//! deciding on the scores is `decide`'s.

use std::ops::Range;

use crate::config::FrameScore;
use crate::vector::{cosine, normalise};

/// One unit-length row per sample from unit-length frame rows: the sum of each sample's
/// `frames` rows (consecutive in `frame_features`, `dim` wide), normalised. Returns the rows and
/// each sample's range of frame rows.
pub fn sample_embeddings(
    frame_features: &[f32],
    frames: &[usize],
    dim: usize,
) -> (Vec<f32>, Vec<Range<usize>>) {
    let mut rows = vec![0f32; frames.len() * dim];
    let mut ranges = Vec::with_capacity(frames.len());
    let mut first = 0;
    for (j, &count) in frames.iter().enumerate() {
        let out = &mut rows[j * dim..(j + 1) * dim];
        for row in frame_features[first * dim..(first + count) * dim].chunks_exact(dim) {
            out.iter_mut().zip(row).for_each(|(o, x)| *o += x);
        }
        ranges.push(first..first + count);
        first += count;
    }
    normalise(&mut rows, dim);
    (rows, ranges)
}

/// The CLIP score of a sample whose frames are `frames` (rows of `frame_features`) against its
/// caption's unit-length features: each frame's cosine, then their mean or max.
pub fn clip_score(
    frame_features: &[f32],
    frames: Range<usize>,
    caption: &[f32],
    rule: FrameScore,
) -> f32 {
    let dim = caption.len();
    let count = frames.len();
    let scores = frames.map(|f| cosine(&frame_features[f * dim..(f + 1) * dim], caption));
    match rule {
        FrameScore::Mean => scores.sum::<f32>() / count as f32,
        FrameScore::Max => scores.fold(f32::MIN, f32::max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        let dim = v.len();
        normalise(&mut v, dim);
        v
    }

    #[test]
    fn a_video_is_the_normalised_mean_of_its_frames_and_an_image_its_own_row() {
        let image = unit(&[3.0, 4.0]);
        let frames = [unit(&[1.0, 0.0]), unit(&[0.0, 1.0])].concat();
        let features = [image.clone(), frames].concat();
        let (rows, ranges) = sample_embeddings(&features, &[1, 2], 2);
        assert_eq!(ranges, vec![0..1, 1..3]);
        assert_eq!(&rows[..2], &image[..]);
        let half = std::f32::consts::FRAC_1_SQRT_2;
        assert!((rows[2] - half).abs() < 1e-6 && (rows[3] - half).abs() < 1e-6);
    }

    #[test]
    fn the_score_is_the_mean_or_the_max_of_the_frames_cosines() {
        let features = [unit(&[1.0, 0.0]), unit(&[0.0, 1.0]), unit(&[1.0, 1.0])].concat();
        let caption = unit(&[1.0, 0.0]);
        let mean = clip_score(&features, 0..3, &caption, FrameScore::Mean);
        let max = clip_score(&features, 0..3, &caption, FrameScore::Max);
        let expected_mean = (1.0 + 0.0 + std::f32::consts::FRAC_1_SQRT_2) / 3.0;
        assert!((mean - expected_mean).abs() < 1e-6, "{mean}");
        assert!((max - 1.0).abs() < 1e-6, "{max}");
        // One frame (an image): both rules give its cosine.
        let one = clip_score(&features, 2..3, &caption, FrameScore::Mean);
        assert_eq!(one, clip_score(&features, 2..3, &caption, FrameScore::Max));
    }
}
