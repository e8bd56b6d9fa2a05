//! The decode-and-measure backend of an image: from the bytes (and the header `decode::probe`
//! read) to [`ImageQuality`]. The CPU backend here is the reference; the CUDA one
//! (`gpu::backend`) implements the same trait and falls back to the CPU inside itself. Callers
//! (`decide::judge`) never ask which device they run on. This module measures; it decides
//! nothing.

use super::{CpuKernels, ImageQuality, QualityKernels, ANALYSIS_SHORT_SIDE};
use crate::decode::{CpuDecoder, DecodeError, ImageDecoder, ImageInfo};

/// Decodes and measures images, and measures frames decoded elsewhere (video).
pub trait MeasureBackend: Send + Sync {
    /// Decodes the image to luminance at the analysis size and measures it. An error is the
    /// decoder's: the sample is unreadable.
    fn measure_image(&self, media: &[u8], info: &ImageInfo) -> Result<ImageQuality, DecodeError>;

    /// The pixel kernels, for frames another decoder produced (a video's sampled frames).
    fn kernels(&self) -> &dyn QualityKernels;
}

/// The CPU reference: libjpeg-turbo / `image` decoding, [`CpuKernels`].
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

impl MeasureBackend for CpuBackend {
    fn measure_image(&self, media: &[u8], info: &ImageInfo) -> Result<ImageQuality, DecodeError> {
        measure_with(&CpuDecoder, &CpuKernels, media, info)
    }

    fn kernels(&self) -> &dyn QualityKernels {
        &CpuKernels
    }
}

/// Decodes with `decoder` at the analysis size and measures with `kernels`: the path every
/// backend takes for what it does not do on its own device.
pub fn measure_with(
    decoder: &dyn ImageDecoder,
    kernels: &dyn QualityKernels,
    media: &[u8],
    info: &ImageInfo,
) -> Result<ImageQuality, DecodeError> {
    let luma = decoder.decode_luma(media, info, ANALYSIS_SHORT_SIDE)?;
    Ok(kernels.measure_owned(luma))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_backend_measures_what_the_decoder_and_kernels_give() {
        let mut png = Vec::new();
        let image =
            image::GrayImage::from_fn(96, 64, |x, y| image::Luma([((x * 7 + y * 3) % 256) as u8]));
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let info = crate::decode::probe(&png).unwrap();
        let quality = CpuBackend.measure_image(&png, &info).unwrap();
        let luma = CpuDecoder
            .decode_luma(&png, &info, ANALYSIS_SHORT_SIDE)
            .unwrap();
        assert_eq!(quality, CpuKernels.measure(&luma));
        assert!(quality.sharpness > 0.0);
        let truncated = &png[..png.len() / 2];
        assert!(CpuBackend.measure_image(truncated, &info).is_err());
    }
}
