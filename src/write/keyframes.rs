//! Keyframes: with `[video] write_keyframes`, a kept video's sampled frames go into its shard as
//! JPEG parts `KEY.000.jpg`, `KEY.001.jpg`, … in time order. Encoding only: which frames are
//! sampled is `decode::av`'s business, and whether the video is kept is `decide`'s.

use crate::pixels::RgbImage;

/// Quality of the JPEG keyframes written with `write_keyframes`.
const KEYFRAME_QUALITY: i32 = 90;

/// The keyframe parts of a sample, `(ext, JPEG bytes)`: frame `n` (its RGB pixels, `None` when
/// the decoder kept none) becomes `NNN.jpg`. A frame that does not encode is left out and
/// logged with the sample's `id`.
pub fn keyframe_parts(id: &str, frames: &[Option<RgbImage>]) -> Vec<(String, Vec<u8>)> {
    let mut parts = Vec::new();
    for (n, frame) in frames.iter().enumerate() {
        let Some(rgb) = frame else { continue };
        let image = turbojpeg::Image {
            pixels: rgb.pixels.as_slice(),
            width: rgb.width as usize,
            pitch: rgb.width as usize * 3,
            height: rgb.height as usize,
            format: turbojpeg::PixelFormat::RGB,
        };
        match turbojpeg::compress(image, KEYFRAME_QUALITY, turbojpeg::Subsamp::Sub2x2) {
            Ok(jpeg) => parts.push((format!("{n:03}.jpg"), jpeg.to_vec())),
            Err(e) => tracing::warn!("{id}: keyframe {n} not written: {e}"),
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_become_numbered_jpegs_of_their_size() {
        let frame = |shade: u8| RgbImage {
            width: 32,
            height: 16,
            pixels: vec![shade; 32 * 16 * 3],
        };
        let parts = keyframe_parts("0:a.mp4", &[Some(frame(10)), None, Some(frame(200))]);
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["000.jpg", "002.jpg"]);
        let decoded = image::load_from_memory(&parts[1].1).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (32, 16));
        let shade = decoded.get_pixel(5, 5)[0];
        assert!((195..=205).contains(&shade), "{shade}");
    }
}
