//! The pixel types every stage and backend shares, and Pillow-exact resampling of 8-bit planes.
//!
//! Low level: decode produces these images, measure, models and gpu read them, and this module
//! uses no stage. It holds no decoding and no measuring, only the types and the arithmetic on
//! planes that more than one of them needs.

pub mod resample;

/// An 8-bit luminance image, row-major, `width * height` bytes. It may be smaller than the
/// original when the decoder scaled it down while decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct LumaImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// A packed RGB24 image, row-major, no padding (`width * height * 3` bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}
