//! Decoding media bytes into pixels for measurement: images here, videos and audio through
//! FFmpeg in [`av`] (containers are recognised from their bytes by [`sniff_av`] first).
//!
//! The format is detected from the bytes (never the file name). [`probe`] reads only the
//! header, so an oversized image can be refused before it is decoded. Measurement needs only
//! luminance, so [`ImageDecoder::decode_luma`] returns one 8-bit channel (for JPEG, the Y plane
//! straight from libjpeg-turbo), and large JPEGs are decoded at a reduced DCT scale (1/2, 1/4,
//! 1/8) when that still leaves the shorter side at least as long as the caller asks for. This
//! module does not measure or judge anything.

pub mod av;
pub mod budget;
pub mod jpeg;

use image::ImageFormat;
use std::io::Cursor;

use crate::pixels::LumaImage;
use jpeg::check_jpeg_complete;

/// Why a media part could not be decoded. The message is the decoder's own where there is one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("not an image: {0}")]
    NotAnImage(String),
    #[error("{format} decoder: {message}")]
    Corrupt { format: String, message: String },
    /// The sample's decode budget ran out ([`budget`]).
    #[error("decoding took longer than limits.max_decode_seconds ({seconds} s); stopped")]
    TimedOut { seconds: f64 },
    /// The video decoded more frames than its budget allows ([`budget`]).
    #[error("more than limits.max_video_frames ({max}) frames decoded; stopped")]
    TooManyFrames { max: u64 },
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

/// The image decoders' allocation limit (`limits.max_decode_bytes`), for what headers cannot
/// tell beforehand (a GIF frame larger than its screen, an APNG or TIFF page larger than the
/// first). A process-wide value because the decoders are called through the measure backends;
/// every run of a process sets the same one from its config ([`set_max_decode_bytes`]).
static MAX_DECODE_BYTES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(512 << 20);

/// Sets the decoders' allocation limit (see `MAX_DECODE_BYTES`).
pub fn set_max_decode_bytes(bytes: u64) {
    MAX_DECODE_BYTES.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// The `image` crate's limits for decoding: allocation at most `limits.max_decode_bytes`.
pub fn image_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES.load(std::sync::atomic::Ordering::Relaxed));
    limits
}

/// What an image decodes to, from its header alone: width × height × bytes per pixel of its
/// colour type (a 16-bit RGB pixel is 6 bytes, a 32-bit float RGBA one 16), and the colour
/// type's name.
pub fn decoded_bytes(bytes: &[u8], info: &ImageInfo) -> Result<(u64, String), DecodeError> {
    use image::ImageDecoder as _;
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), info.format);
    reader.no_limits();
    let decoder = reader.into_decoder().map_err(|e| corrupt(info.format, e))?;
    Ok((decoder.total_bytes(), format!("{:?}", decoder.color_type())))
}

fn decode_other_luma(bytes: &[u8], format: ImageFormat) -> Result<LumaImage, DecodeError> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(image_limits());
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

/// A video or audio container recognised from its first bytes, before FFmpeg is asked to open
/// it. FFmpeg's own probing accepts almost anything (text can pass as an "ANSI art" video), so
/// only these signatures go to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvContainer {
    /// ISO base media (`ftyp`): MP4, MOV, M4A, 3GP.
    IsoMedia,
    /// EBML: Matroska or WebM (`webm` is true when the doctype says so).
    Matroska {
        webm: bool,
    },
    Avi,
    Wav,
    Aiff,
    Flac,
    Ogg,
    /// MPEG audio (an ID3 tag or a frame header).
    Mp3,
    /// AAC in ADTS frames.
    Aac,
    Flv,
    MpegTs,
    MpegPs,
}

impl AvContainer {
    /// The usual file extension; `has_video` picks between the video and audio names of ISO
    /// media and Ogg.
    pub fn extension(self, has_video: bool) -> &'static str {
        match self {
            AvContainer::IsoMedia if has_video => "mp4",
            AvContainer::IsoMedia => "m4a",
            AvContainer::Matroska { webm: true } => "webm",
            AvContainer::Matroska { webm: false } => "mkv",
            AvContainer::Avi => "avi",
            AvContainer::Wav => "wav",
            AvContainer::Aiff => "aiff",
            AvContainer::Flac => "flac",
            AvContainer::Ogg if has_video => "ogv",
            AvContainer::Ogg => "ogg",
            AvContainer::Mp3 => "mp3",
            AvContainer::Aac => "aac",
            AvContainer::Flv => "flv",
            AvContainer::MpegTs => "ts",
            AvContainer::MpegPs => "mpg",
        }
    }

    /// The FFmpeg demuxer for this container, by its short name. FFmpeg is opened with this
    /// demuxer only, never by probing: a playlist, concat list or image sequence inside a
    /// sample can never be taken for what it says it is.
    pub fn demuxer(self) -> &'static str {
        match self {
            AvContainer::IsoMedia => "mov",
            AvContainer::Matroska { .. } => "matroska",
            AvContainer::Avi => "avi",
            AvContainer::Wav => "wav",
            AvContainer::Aiff => "aiff",
            AvContainer::Flac => "flac",
            AvContainer::Ogg => "ogg",
            AvContainer::Mp3 => "mp3",
            AvContainer::Aac => "aac",
            AvContainer::Flv => "flv",
            AvContainer::MpegTs => "mpegts",
            AvContainer::MpegPs => "mpeg",
        }
    }
}

/// A container whose declared sizes its bytes do not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    #[error("truncated: {what} declares {declared} bytes, the file ends after {len}")]
    Truncated {
        what: String,
        declared: u64,
        len: usize,
    },
    #[error("corrupt: a box at byte {at} declares {size} bytes")]
    BadBoxSize { at: u64, size: u64 },
}

/// Whether a container that declares its own size holds all of it: a WAV (RIFF) or ISO media
/// file cut short still opens and decodes up to the cut, so the cut is found here, from the
/// sizes its chunks or boxes declare. Other containers are left to the decoder.
pub fn check_container_complete(
    container: AvContainer,
    bytes: &[u8],
) -> Result<(), ContainerError> {
    let u32_le = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u32_be = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let truncated = |what: &str, declared: u64| {
        Err(ContainerError::Truncated {
            what: what.to_string(),
            declared,
            len: bytes.len(),
        })
    };
    match container {
        AvContainer::Wav => {
            // Chunks after the 12-byte RIFF header; 0 and 0xFFFFFFFF mean "size unknown"
            // (streamed WAVs).
            let mut at = 12usize;
            while let (Some(id), Some(size)) = (bytes.get(at..at + 4), u32_le(at + 4)) {
                let end = at as u64 + 8 + size as u64;
                if id == b"data" {
                    if size != 0 && size != u32::MAX && end > bytes.len() as u64 {
                        return truncated("the data chunk", size as u64);
                    }
                    break;
                }
                at = (end + (size as u64 & 1)) as usize;
            }
            Ok(())
        }
        AvContainer::IsoMedia => {
            // Top-level boxes: 32-bit size, or 1 and a 64-bit size after the type; 0 means
            // "to the end of the file".
            let mut at = 0u64;
            while let Some(size) = u32_be(at as usize) {
                let size = match size {
                    0 => break,
                    1 => match bytes.get(at as usize + 8..at as usize + 16) {
                        Some(b) => u64::from_be_bytes(b.try_into().unwrap_or([0; 8])),
                        None => break,
                    },
                    n => n as u64,
                };
                if size < 8 {
                    return Err(ContainerError::BadBoxSize { at, size });
                }
                // A hostile 64-bit size must neither overflow nor wrap `at` back to an earlier
                // box (which looped forever in a release build).
                if at
                    .checked_add(size)
                    .is_none_or(|end| end > bytes.len() as u64)
                {
                    let kind = bytes
                        .get(at as usize + 4..at as usize + 8)
                        .map(|t| String::from_utf8_lossy(t).into_owned())
                        .unwrap_or_default();
                    return truncated(&format!("the `{kind}` box at byte {at}"), size);
                }
                at += size;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Recognises a video or audio container from its magic bytes.
pub fn sniff_av(bytes: &[u8]) -> Option<AvContainer> {
    let at = |offset: usize, magic: &[u8]| bytes.get(offset..offset + magic.len()) == Some(magic);
    if at(4, b"ftyp") {
        return Some(AvContainer::IsoMedia);
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        let head = &bytes[..bytes.len().min(64)];
        let webm = head.windows(4).any(|w| w == b"webm");
        return Some(AvContainer::Matroska { webm });
    }
    if at(0, b"RIFF") && at(8, b"AVI ") {
        return Some(AvContainer::Avi);
    }
    if (at(0, b"RIFF") || at(0, b"RF64")) && at(8, b"WAVE") {
        return Some(AvContainer::Wav);
    }
    if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        return Some(AvContainer::Aiff);
    }
    if at(0, b"fLaC") {
        return Some(AvContainer::Flac);
    }
    if at(0, b"OggS") {
        return Some(AvContainer::Ogg);
    }
    if at(0, b"ID3") {
        return Some(AvContainer::Mp3);
    }
    if at(0, b"FLV") {
        return Some(AvContainer::Flv);
    }
    if bytes.len() > 376 && bytes[0] == 0x47 && bytes[188] == 0x47 && bytes[376] == 0x47 {
        return Some(AvContainer::MpegTs);
    }
    if at(0, &[0, 0, 1, 0xBA]) {
        return Some(AvContainer::MpegPs);
    }
    if let [0xFF, second, ..] = *bytes {
        // ADTS: 12 sync bits, layer 00. MPEG audio: 11 sync bits, a layer that is not 00.
        if second & 0xF6 == 0xF0 {
            return Some(AvContainer::Aac);
        }
        if second & 0xE0 == 0xE0 && second & 0x06 != 0 && second & 0x18 != 0x08 {
            return Some(AvContainer::Mp3);
        }
    }
    None
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
pub(crate) fn describe(bytes: &[u8]) -> String {
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
    fn video_and_audio_containers_are_recognised_from_their_magic() {
        let mut mp4 = vec![0, 0, 0, 0x20];
        mp4.extend_from_slice(b"ftypisom");
        assert_eq!(sniff_av(&mp4), Some(AvContainer::IsoMedia));
        assert_eq!(sniff_av(b"RIFF\x10\0\0\0WAVEfmt "), Some(AvContainer::Wav));
        assert_eq!(sniff_av(b"RIFF\x10\0\0\0AVI LIST"), Some(AvContainer::Avi));
        assert_eq!(sniff_av(b"OggS\0\x02"), Some(AvContainer::Ogg));
        assert_eq!(sniff_av(b"fLaC\0\0\0\x22"), Some(AvContainer::Flac));
        assert_eq!(sniff_av(b"ID3\x04\0"), Some(AvContainer::Mp3));
        assert_eq!(sniff_av(&[0xFF, 0xFB, 0x90, 0x64]), Some(AvContainer::Mp3));
        assert_eq!(sniff_av(&[0xFF, 0xF1, 0x50, 0x80]), Some(AvContainer::Aac));
        let mut webm = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x84];
        webm.extend_from_slice(b"webm");
        assert_eq!(sniff_av(&webm), Some(AvContainer::Matroska { webm: true }));
        assert_eq!(AvContainer::Matroska { webm: true }.extension(true), "webm");
        assert_eq!(AvContainer::IsoMedia.extension(false), "m4a");
        // A JPEG's marker is not an MPEG frame header; text is nothing.
        assert_eq!(sniff_av(&[0xFF, 0xD8, 0xFF, 0xE0]), None);
        assert_eq!(sniff_av(b"hello, I am text"), None);
    }

    #[test]
    fn wav_and_iso_media_cut_short_are_found_from_their_declared_sizes() {
        let mut wav = b"RIFF\x24\x08\0\0WAVEfmt \x10\0\0\0".to_vec();
        wav.extend_from_slice(&[0; 16]);
        wav.extend_from_slice(b"data\x00\x08\0\0");
        wav.extend_from_slice(&[0; 2048]);
        assert_eq!(check_container_complete(AvContainer::Wav, &wav), Ok(()));
        let err = check_container_complete(AvContainer::Wav, &wav[..1000])
            .unwrap_err()
            .to_string();
        assert!(err.contains("data chunk declares 2048 bytes"), "{err}");

        let mut mp4 = vec![0, 0, 0, 16];
        mp4.extend_from_slice(b"ftypisom\0\0\0\0");
        mp4.extend_from_slice(&[0, 0, 0x10, 0]);
        mp4.extend_from_slice(b"mdat");
        mp4.extend_from_slice(&[0; 4096 - 8]);
        assert_eq!(
            check_container_complete(AvContainer::IsoMedia, &mp4),
            Ok(())
        );
        let err = check_container_complete(AvContainer::IsoMedia, &mp4[..2000])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`mdat` box at byte 16 declares 4096"), "{err}");
    }

    #[test]
    fn an_iso_box_declaring_nearly_2_pow_64_bytes_is_truncation_not_a_loop() {
        // A 16-byte `ftyp`, then an `mdat` with a 64-bit size that makes `at + size` wrap to 0.
        let mut mp4 = vec![0, 0, 0, 16];
        mp4.extend_from_slice(b"ftypisom\0\0\0\0");
        mp4.extend_from_slice(&[0, 0, 0, 1]);
        mp4.extend_from_slice(b"mdat");
        mp4.extend_from_slice(&(u64::MAX - 15).to_be_bytes());
        let err = check_container_complete(AvContainer::IsoMedia, &mp4).unwrap_err();
        assert!(
            err.to_string()
                .contains("`mdat` box at byte 16 declares 18446744073709551600"),
            "{err}"
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
