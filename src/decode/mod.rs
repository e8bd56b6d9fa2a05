//! Decoding media bytes into pixels for measurement.
//!
//! The format is detected from the bytes (never the file name). [`probe`] reads only the
//! header, so an oversized image can be refused before it is decoded. Measurement needs only
//! luminance, so [`ImageDecoder::decode_luma`] returns one 8-bit channel (for JPEG, the Y plane
//! straight from libjpeg-turbo), and large JPEGs are decoded at a reduced DCT scale (1/2, 1/4,
//! 1/8) when that still leaves the shorter side at least as long as the caller asks for. This
//! module does not measure or judge anything.

use image::ImageFormat;
use std::io::Cursor;

/// Why a media part could not be decoded. The message is the decoder's own where there is one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("not an image: {0}")]
    NotAnImage(String),
    #[error("{format} decoder: {message}")]
    Corrupt { format: String, message: String },
}

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

impl ImageInfo {
    /// The format's usual file extension, used to name the media part in output shards.
    pub fn extension(&self) -> &'static str {
        format_extension(self.format)
    }

    pub fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

/// The usual extension for a format (`jpg`, `png`, `webp`, …).
fn format_extension(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpg",
        ImageFormat::Tiff => "tif",
        other => other.extensions_str().first().copied().unwrap_or("img"),
    }
}

/// An 8-bit luminance image, row-major, `width * height` bytes. It may be smaller than the
/// original when the decoder scaled it down while decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct LumaImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Detects the format from the magic bytes and reads the dimensions from the header.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let format =
        image::guess_format(bytes).map_err(|_| DecodeError::NotAnImage(describe(bytes)))?;
    let reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader.into_dimensions().map_err(|e| corrupt(format, e))?;
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt {
            format: format_name(format),
            message: format!("the header declares a {width}x{height} image"),
        });
    }
    Ok(ImageInfo {
        format,
        width,
        height,
    })
}

/// Decoding behind a trait so that a GPU decoder can stand in for the CPU one.
pub trait ImageDecoder: Send + Sync {
    /// Decodes to luminance (ITU-R 601: 0.299 R + 0.587 G + 0.114 B, as PIL's `convert("L")`).
    /// The result's shorter side is at least `min_side` or the original's, whichever is smaller.
    fn decode_luma(
        &self,
        bytes: &[u8],
        info: &ImageInfo,
        min_side: u32,
    ) -> Result<LumaImage, DecodeError>;
}

/// The CPU reference decoder: libjpeg-turbo (through the `turbojpeg` crate, for its scaled
/// inverse DCT) for JPEG, the `image` crate for everything else.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuDecoder;

impl ImageDecoder for CpuDecoder {
    fn decode_luma(
        &self,
        bytes: &[u8],
        info: &ImageInfo,
        min_side: u32,
    ) -> Result<LumaImage, DecodeError> {
        match info.format {
            ImageFormat::Jpeg => decode_jpeg_luma(bytes, info, min_side),
            format => decode_other_luma(bytes, format),
        }
    }
}

/// PIL's fixed-point RGB → L conversion (`L24` in Pillow's Convert.c), so that luminance, and
/// the pHash built from it, match the Python reference bit for bit on the same RGB input.
#[inline]
pub fn rgb_to_luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

fn rgb_buffer_to_luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| rgb_to_luma(p[0], p[1], p[2]))
        .collect()
}

fn decode_jpeg_luma(
    bytes: &[u8],
    info: &ImageInfo,
    min_side: u32,
) -> Result<LumaImage, DecodeError> {
    check_jpeg_complete(bytes)?;
    let scale = jpeg_scale(info.width.min(info.height), min_side);
    let (width, height) = (
        scale.scale(info.width as usize),
        scale.scale(info.height as usize),
    );
    let mut pixels = vec![0u8; width * height];
    let result = JPEG_DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(turbojpeg::Decompressor::new()?),
        };
        decompressor.set_scaling_factor(scale)?;
        let gray = turbojpeg_image(&mut pixels, width, height, turbojpeg::PixelFormat::GRAY);
        match decompressor.decompress(bytes, gray) {
            // libjpeg cannot produce grayscale from CMYK: go through RGB as PIL does.
            Err(turbojpeg::Error::TurboJpegError(m))
                if m.contains("Unsupported color conversion") =>
            {
                let mut rgb = vec![0u8; width * height * 3];
                let output = turbojpeg_image(&mut rgb, width, height, turbojpeg::PixelFormat::RGB);
                decompressor.decompress(bytes, output)?;
                pixels = rgb_buffer_to_luma(&rgb);
                Ok(())
            }
            other => other,
        }
    });
    match result {
        Ok(()) => {}
        // A warning, not an error: the image decoded completely (cameras write such files and
        // every viewer shows them). Truncation was ruled out above.
        Err(turbojpeg::Error::TurboJpegError(m))
            if m.contains("extraneous bytes before marker") => {}
        Err(e) => {
            return Err(DecodeError::Corrupt {
                format: "JPEG".to_string(),
                message: e
                    .to_string()
                    .trim_start_matches("TurboJPEG error: ")
                    .to_string(),
            })
        }
    }
    Ok(LumaImage {
        width: width as u32,
        height: height as u32,
        pixels,
    })
}

fn turbojpeg_image(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    format: turbojpeg::PixelFormat,
) -> turbojpeg::Image<&mut [u8]> {
    turbojpeg::Image {
        pixels,
        width,
        pitch: width * format.size(),
        height,
        format,
    }
}

thread_local! {
    /// One libjpeg-turbo decompressor per worker thread, reused across images.
    static JPEG_DECOMPRESSOR: std::cell::RefCell<Option<turbojpeg::Decompressor>> =
        const { std::cell::RefCell::new(None) };
}

/// The smallest DCT scaling (1/8, 1/4, 1/2 or 1) that keeps the shorter side at least
/// `min_side`: the inverse DCT then produces 4 to 64 times fewer pixels, which is most of the
/// decoding work for large images. (Other multiples of 1/8 would leave less to resize, but
/// libjpeg-turbo has SIMD inverse DCTs only for these; measured, it comes out even.)
fn jpeg_scale(shorter: u32, min_side: u32) -> turbojpeg::ScalingFactor {
    [1, 2, 4]
        .into_iter()
        .map(|m| turbojpeg::ScalingFactor::new(m, 8))
        .find(|f| f.scale(shorter as usize) >= min_side as usize)
        .unwrap_or(turbojpeg::ScalingFactor::ONE)
}

/// A JPEG that ends before its end-of-image marker is truncated. Decoders fill the missing
/// part with grey and carry on; a curation tool must not keep such a file. The marker may be
/// followed by padding or trailer bytes, so look for it near the end.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), DecodeError> {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    if tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(DecodeError::Corrupt {
            format: "JPEG".to_string(),
            message: format!(
                "truncated: no end-of-image marker (FFD9) in the last {} bytes",
                tail.len()
            ),
        })
    }
}

fn decode_other_luma(bytes: &[u8], format: ImageFormat) -> Result<LumaImage, DecodeError> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    reader.no_limits();
    let image = reader.decode().map_err(|e| corrupt(format, e))?;
    let (width, height) = (image.width(), image.height());
    let pixels = match image {
        image::DynamicImage::ImageLuma8(gray) => gray.into_raw(),
        image::DynamicImage::ImageLumaA8(gray) => gray.pixels().map(|p| p.0[0]).collect(),
        other => rgb_buffer_to_luma(other.to_rgb8().as_raw()),
    };
    Ok(LumaImage {
        width,
        height,
        pixels,
    })
}

fn format_name(format: ImageFormat) -> String {
    format!("{format:?}").to_uppercase()
}

fn corrupt(format: ImageFormat, e: image::ImageError) -> DecodeError {
    DecodeError::Corrupt {
        format: format_name(format),
        message: e.to_string(),
    }
}

/// A short description of bytes that are not an image, for the ledger.
fn describe(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(512)];
    let texty = head
        .iter()
        .all(|&b| b == b'\n' || b == b'\r' || b == b'\t' || (0x20..0x7F).contains(&b) || b >= 0x80);
    if texty && std::str::from_utf8(head).is_ok() {
        "the bytes are text".to_string()
    } else {
        let magic: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("unrecognised format (first bytes {})", magic.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x + y) % 256) as u8,
            ])
        });
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn probe_reads_format_and_size_from_the_bytes() {
        let png = encode(ImageFormat::Png, 40, 30);
        assert_eq!(
            probe(&png).unwrap(),
            ImageInfo {
                format: ImageFormat::Png,
                width: 40,
                height: 30
            }
        );
        assert_eq!(probe(&[]), Err(DecodeError::Empty));
        assert_eq!(
            probe(b"hello, I am text"),
            Err(DecodeError::NotAnImage("the bytes are text".into()))
        );
    }

    #[test]
    fn luminance_matches_pil_on_png() {
        let png = encode(ImageFormat::Png, 16, 8);
        let info = probe(&png).unwrap();
        let luma = CpuDecoder.decode_luma(&png, &info, 512).unwrap();
        assert_eq!((luma.width, luma.height), (16, 8));
        // Pixel (3, 2): r = 21, g = 10, b = 5 → PIL L = (21*19595 + 10*38470 + 5*7471 + 32768) >> 16
        // = 866318 >> 16 = 13.
        assert_eq!(luma.pixels[2 * 16 + 3], 13);
    }

    #[test]
    fn large_jpegs_decode_at_a_reduced_scale_and_small_ones_in_full() {
        let big = encode(ImageFormat::Jpeg, 2100, 1100);
        let info = probe(&big).unwrap();
        let luma = CpuDecoder.decode_luma(&big, &info, 512).unwrap();
        // 1100 / 2 = 550 >= 512, 1100 / 4 < 512: scale 1/2.
        assert_eq!((luma.width, luma.height), (1050, 550));
        assert_eq!(jpeg_scale(4096, 512).num(), 1);
        assert_eq!(jpeg_scale(4096, 512).denom(), 8);
        assert_eq!(jpeg_scale(511, 512).denom(), 1);

        let small = encode(ImageFormat::Jpeg, 300, 200);
        let info = probe(&small).unwrap();
        let luma = CpuDecoder.decode_luma(&small, &info, 512).unwrap();
        assert_eq!((luma.width, luma.height), (300, 200));
    }

    #[test]
    fn truncated_jpegs_are_refused_with_the_reason() {
        let jpeg = encode(ImageFormat::Jpeg, 300, 200);
        let cut = &jpeg[..jpeg.len() / 2];
        let info = probe(cut).unwrap();
        let err = CpuDecoder.decode_luma(cut, &info, 512).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
