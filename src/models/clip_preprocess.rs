//! CLIP image preprocessing as `CLIPImageProcessor` does it: RGB, the shorter side resized to
//! the model size with bicubic filtering (Pillow's, a = -0.5, widened when shrinking), a centre
//! crop to a square, then (x / 255 - mean) / std per channel, laid out CHW as float32.

use crate::pixels::resample::{resize_plane, Filter};

/// OpenAI CLIP's normalisation.
pub const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
// The published digits, kept as written even where f32 cannot hold them all.
#[allow(clippy::excessive_precision)]
pub const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot decode the image: {0}")]
    Decode(#[from] image::ImageError),
}

/// Preprocesses encoded image bytes into a `3 x size x size` CHW float32 tensor.
pub fn clip_pixel_values(
    bytes: &[u8],
    size: u32,
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<Vec<f32>, PreprocessError> {
    let rgb = image::load_from_memory(bytes)?.to_rgb8();
    let (width, height) = rgb.dimensions();
    Ok(clip_pixel_values_rgb(
        rgb.as_raw(),
        width,
        height,
        size,
        mean,
        std,
    ))
}

/// Preprocesses packed RGB24 pixels (`width x height`, row-major) into a `3 x size x size`
/// CHW float32 tensor, as [`clip_pixel_values`] does after decoding.
pub fn clip_pixel_values_rgb(
    rgb: &[u8],
    width: u32,
    height: u32,
    size: u32,
    mean: [f32; 3],
    std: [f32; 3],
) -> Vec<f32> {
    // transformers' get_resize_output_image_size: the shorter side becomes `size`, the longer
    // one int(size * longer / shorter).
    let (new_w, new_h) = if width <= height {
        (size, (size as u64 * height as u64 / width as u64) as u32)
    } else {
        ((size as u64 * width as u64 / height as u64) as u32, size)
    };
    // Pillow resamples each channel of an RGB image on its own, with the same arithmetic as
    // for one plane.
    let plane_of = |c: usize| -> Vec<u8> {
        let channel: Vec<u8> = rgb.iter().skip(c).step_by(3).copied().collect();
        resize_plane(
            &channel,
            width as usize,
            height as usize,
            new_w as usize,
            new_h as usize,
            Filter::Bicubic,
        )
    };
    let planes = [plane_of(0), plane_of(1), plane_of(2)];
    // Centre crop, as transformers' center_crop rounds it.
    let top = ((new_h - size) as f64 / 2.0) as u32;
    let left = ((new_w - size) as f64 / 2.0) as u32;
    let plane = (size * size) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (c, resized) in planes.iter().enumerate() {
        for y in 0..size {
            for x in 0..size {
                let v = resized[((top + y) * new_w + left + x) as usize];
                out[c * plane + (y * size + x) as usize] = (v as f32 / 255.0 - mean[c]) / std[c];
            }
        }
    }
    out
}
