//! JPEG decoding on the GPU with nvJPEG, loaded at run time: [`GpuJpegDecoder`] decodes the
//! luminance plane (`NVJPEG_OUTPUT_Y`, all that measuring needs) into device memory, on the
//! hardware JPEG engine where the GPU has one (A100, H100/H200) and on nvJPEG's CUDA decoder
//! otherwise. Anything nvJPEG cannot or should not decode goes to [`CpuDecoder`], per sample.
//!
//! No crate binds nvJPEG, so the few entry points used are declared in [`ffi`] from `nvjpeg.h`
//! and resolved once with `libloading` by [`loader`]; all the unsafe code sits there and in
//! [`decoder`]'s handle, state and decode calls, each with its SAFETY note. A machine without
//! libnvjpeg gets an [`NvjpegError`] saying what to install, never a panic. Reading the JPEG
//! header is `decode::jpeg`'s; which JPEGs nvJPEG may decode ([`gpu_route`]) is here.
//!
//! Not here: choosing the device (`gpu::device`), measuring (`gpu::CudaKernels`). The pipeline
//! still downloads the luminance to the host, because `decode::ImageDecoder` returns host
//! memory; [`GpuJpegDecoder::decode_luma_device`] is the start of the zero-copy path.

mod decoder;
pub mod ffi;
mod loader;

pub use decoder::{DeviceLuma, DeviceRgb, GpuJpegDecoder};
pub use loader::{api, load_from, Api, LIBRARY_NAMES};

use super::device::Selected;
use crate::decode::jpeg::JpegHeader;

/// Why nvJPEG cannot be used, or could not decode one image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvjpegError {
    #[error("the nvJPEG library was not found (tried {tried}; last: {message}): install nvJPEG (the CUDA toolkit's libnvjpeg, or the nvidia-nvjpeg wheel for CUDA 13, nvidia-nvjpeg-cu12 for CUDA 12) and put its lib folder on LD_LIBRARY_PATH; JPEGs are decoded on the CPU until then")]
    LibraryMissing { tried: String, message: String },
    #[error("{library} has no symbol {symbol} ({message}): it is not nvJPEG, or too old a release; install nvJPEG from CUDA 12 or 13")]
    SymbolMissing {
        library: String,
        symbol: &'static str,
        message: String,
    },
    #[error("nvJPEG {call} failed: {} ({status})", status_name(*.status))]
    Call { call: &'static str, status: i32 },
    #[error("CUDA {during} failed for nvJPEG: {message}")]
    Driver {
        during: &'static str,
        message: String,
    },
    /// Routed to the CPU before nvJPEG was asked (CMYK, 12-bit, lossless, RGB-coded, …).
    #[error("left to the CPU decoder: {0}")]
    Unsupported(String),
    #[error("nvJPEG's self-check failed: {0}")]
    SelfCheck(String),
}

/// The name of an `nvjpegStatus_t` value (nvjpeg.h, "nvJPEG API Return Codes").
pub fn status_name(status: i32) -> &'static str {
    match status {
        0 => "NVJPEG_STATUS_SUCCESS",
        1 => "NVJPEG_STATUS_NOT_INITIALIZED",
        2 => "NVJPEG_STATUS_INVALID_PARAMETER",
        3 => "NVJPEG_STATUS_BAD_JPEG",
        4 => "NVJPEG_STATUS_JPEG_NOT_SUPPORTED",
        5 => "NVJPEG_STATUS_ALLOCATOR_FAILURE",
        6 => "NVJPEG_STATUS_EXECUTION_FAILED",
        7 => "NVJPEG_STATUS_ARCH_MISMATCH",
        8 => "NVJPEG_STATUS_INTERNAL_ERROR",
        9 => "NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED",
        10 => "NVJPEG_STATUS_INCOMPLETE_BITSTREAM",
        _ => "unknown nvjpegStatus_t",
    }
}

fn check(call: &'static str, status: ffi::NvjpegStatus) -> Result<(), NvjpegError> {
    if status == ffi::NVJPEG_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(NvjpegError::Call { call, status })
    }
}

/// The JPEG decoder a run uses on `selected`: nvJPEG when the device is a GPU and nvJPEG loads
/// and passes its check (logged), else `None` (the CPU decoder; the reason is logged).
pub fn decoder_for(selected: &Selected) -> Option<GpuJpegDecoder> {
    let gpu = selected.cuda.as_ref()?;
    match GpuJpegDecoder::new(gpu) {
        Ok(decoder) => {
            tracing::info!("decoding JPEGs with {}", decoder.description());
            Some(decoder)
        }
        Err(e) => {
            tracing::warn!("{e}; decoding JPEGs on the CPU");
            None
        }
    }
}

/// Mean luminance difference the self-check accepts on its test JPEG: IDCT rounding gives a
/// few hundredths; a wrong plane or layout gives tens.
pub const SELF_CHECK_TOLERANCE: f64 = 1.0;

/// Mean absolute difference of two planes of the same length (`f64::INFINITY` otherwise).
pub fn mean_absolute_difference(a: &[u8], b: &[u8]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return f64::INFINITY;
    }
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as i32 - y as i32).unsigned_abs() as u64)
        .sum();
    sum as f64 / a.len() as f64
}

/// Why a JPEG is left to the CPU decoder: nvJPEG's luminance would not be the CPU's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeftToCpu {
    #[error("{0}-bit samples")]
    Precision(u8),
    #[error("lossless JPEG")]
    Lossless,
    #[error("frame type 0x{0:02X} (arithmetic-coded or hierarchical)")]
    FrameType(u8),
    #[error("an RGB-coded JPEG")]
    RgbCoded,
    #[error("a CMYK or YCCK JPEG")]
    CmykOrYcck,
    #[error("a {0}-component JPEG")]
    Components(u8),
}

/// Whether nvJPEG's luminance is the luminance the CPU decoder would give: `Ok(true)` for
/// baseline (the hardware engine's), `Ok(false)` for the other DCT Huffman JPEGs nvJPEG
/// decodes on CUDA, `Err(why)` for those left to the CPU.
pub fn gpu_route(header: &JpegHeader) -> Result<bool, LeftToCpu> {
    if header.precision != 8 {
        return Err(LeftToCpu::Precision(header.precision));
    }
    match header.sof {
        0xC0..=0xC2 => {}
        0xC3 => return Err(LeftToCpu::Lossless),
        other => return Err(LeftToCpu::FrameType(other)),
    }
    match header.components {
        1 => {}
        3 => {
            // Component 0 is R, not Y, in an RGB-coded JPEG: libjpeg-turbo computes luminance
            // from RGB there, nvJPEG's Y output would be the red plane.
            if header.adobe_transform == Some(0) || header.component_ids == b"RGB" {
                return Err(LeftToCpu::RgbCoded);
            }
        }
        4 => return Err(LeftToCpu::CmykOrYcck),
        n => return Err(LeftToCpu::Components(n)),
    }
    Ok(header.sof == 0xC0)
}

#[cfg(test)]
mod tests {
    use super::decoder::self_check_jpeg;
    use super::*;
    use crate::decode::jpeg::{has_end_marker, parse_jpeg_header};
    use image::ImageFormat;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let rgb = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        rgb.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn status_codes_have_their_header_names() {
        assert_eq!(status_name(0), "NVJPEG_STATUS_SUCCESS");
        assert_eq!(status_name(4), "NVJPEG_STATUS_JPEG_NOT_SUPPORTED");
        assert_eq!(status_name(10), "NVJPEG_STATUS_INCOMPLETE_BITSTREAM");
        let e = NvjpegError::Call {
            call: "nvjpegDecode",
            status: 3,
        };
        assert_eq!(
            e.to_string(),
            "nvJPEG nvjpegDecode failed: NVJPEG_STATUS_BAD_JPEG (3)"
        );
    }

    #[test]
    fn the_image_struct_has_the_c_layout() {
        // 4 pointers then 4 size_t: 64 bytes on 64-bit targets, pitch at offset 32.
        assert_eq!(
            std::mem::size_of::<ffi::NvjpegImage>(),
            8 * std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::offset_of!(ffi::NvjpegImage, pitch),
            4 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn headers_of_baseline_jpegs_are_read_and_routed_to_the_hardware() {
        let bytes = jpeg(67, 45);
        let header = parse_jpeg_header(&bytes).unwrap();
        assert_eq!(
            (
                header.sof,
                header.precision,
                header.width,
                header.height,
                header.components
            ),
            (0xC0, 8, 67, 45, 3)
        );
        assert_eq!(gpu_route(&header), Ok(true));
        assert!(has_end_marker(&bytes));
        assert!(!has_end_marker(&bytes[..bytes.len() / 2]));
        assert!(self_check_jpeg().is_ok_and(|j| parse_jpeg_header(&j).is_ok()));
    }

    #[test]
    fn jpegs_whose_y_plane_is_not_luminance_stay_on_the_cpu() {
        let base = JpegHeader {
            sof: 0xC0,
            precision: 8,
            width: 8,
            height: 8,
            components: 3,
            component_ids: vec![1, 2, 3],
            adobe_transform: None,
        };
        let routed = |edit: &dyn Fn(&mut JpegHeader)| {
            let mut h = base.clone();
            edit(&mut h);
            gpu_route(&h)
        };
        assert_eq!(routed(&|_| {}), Ok(true));
        assert_eq!(
            routed(&|h| h.sof = 0xC2),
            Ok(false),
            "progressive: CUDA decoder"
        );
        assert_eq!(
            routed(&|h| {
                h.components = 1;
                h.component_ids = vec![1];
            }),
            Ok(true)
        );
        for (edit, why) in [
            (
                &(|h: &mut JpegHeader| {
                    h.components = 4;
                    h.component_ids = vec![1, 2, 3, 4];
                    h.adobe_transform = Some(2);
                }) as &dyn Fn(&mut JpegHeader),
                "CMYK",
            ),
            (
                &|h: &mut JpegHeader| h.adobe_transform = Some(0),
                "RGB-coded",
            ),
            (
                &|h: &mut JpegHeader| h.component_ids = b"RGB".to_vec(),
                "RGB-coded",
            ),
            (&|h: &mut JpegHeader| h.precision = 12, "12-bit"),
            (&|h: &mut JpegHeader| h.sof = 0xC3, "lossless"),
            (&|h: &mut JpegHeader| h.sof = 0xC9, "arithmetic"),
        ] {
            let e = routed(edit).unwrap_err().to_string();
            assert!(e.contains(why), "{e} should say {why}");
        }
    }

    #[test]
    fn the_adobe_marker_and_broken_headers_are_seen() {
        let bytes = jpeg(16, 16);
        // An Adobe APP14 segment (transform 0) right after SOI.
        let mut adobe = vec![0xFF, 0xD8, 0xFF, 0xEE, 0x00, 0x0E];
        adobe.extend_from_slice(b"Adobe\x00\x64\x00\x00\x00\x00\x00");
        adobe.extend_from_slice(&bytes[2..]);
        let header = parse_jpeg_header(&adobe).unwrap();
        assert_eq!(header.adobe_transform, Some(0));
        assert!(gpu_route(&header)
            .unwrap_err()
            .to_string()
            .contains("RGB-coded"));

        assert!(parse_jpeg_header(b"\x89PNG\r\n").is_err());
        assert!(parse_jpeg_header(&bytes[..20]).is_err());
        assert!(parse_jpeg_header(&[0xFF, 0xD8, 0xFF, 0xD9]).is_err());
    }

    #[test]
    fn mean_absolute_difference_is_per_pixel() {
        assert_eq!(
            mean_absolute_difference(&[0, 10, 20, 30], &[1, 8, 20, 30]),
            0.75
        );
        assert!(mean_absolute_difference(&[0], &[0, 1]).is_infinite());
    }

    #[test]
    fn the_decoder_is_shareable_across_measure_workers() {
        fn shareable<T: Send + Sync>() {}
        shareable::<GpuJpegDecoder>();
    }
}
