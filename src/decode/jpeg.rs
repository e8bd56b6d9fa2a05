//! Reading a JPEG's structure without decoding it: the frame header and markers before the
//! first scan ([`parse_jpeg_header`]), and whether the file ends with its end-of-image marker
//! ([`has_end_marker`], [`check_jpeg_complete`]). Used by the CPU decoder here and by nvJPEG's
//! routing in `gpu`; nothing here decodes pixels.

use super::DecodeError;

/// Why a JPEG's header could not be read: a reason to leave the file to the CPU decoder (which
/// then reports what is wrong with it, if anything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JpegHeaderError {
    #[error("no JPEG start-of-image marker")]
    NoStartOfImage,
    #[error("no marker at byte {at}")]
    NoMarker { at: usize },
    #[error("end of image before any scan")]
    EndBeforeScan,
    #[error("cut inside a marker")]
    CutInsideMarker,
    #[error("marker 0x{marker:02X} runs past the end")]
    MarkerPastEnd { marker: u8 },
    #[error("a scan before any frame header")]
    ScanBeforeFrame,
    #[error("short frame header")]
    ShortFrameHeader,
}

/// What the frame header and the markers before the first scan say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JpegHeader {
    /// The start-of-frame marker: 0xC0 baseline, 0xC1 extended, 0xC2 progressive, ….
    pub sof: u8,
    pub precision: u8,
    pub width: u16,
    pub height: u16,
    pub components: u8,
    pub component_ids: Vec<u8>,
    /// The Adobe APP14 colour transform: 0 RGB or CMYK, 1 YCbCr, 2 YCCK.
    pub adobe_transform: Option<u8>,
}

/// Reads the markers up to the first scan. An error is a reason to leave the file to the CPU
/// decoder (which then reports what is wrong with it, if anything).
pub fn parse_jpeg_header(bytes: &[u8]) -> Result<JpegHeader, JpegHeaderError> {
    if bytes.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err(JpegHeaderError::NoStartOfImage);
    }
    let mut at = 2;
    let mut adobe_transform = None;
    let mut frame: Option<JpegHeader> = None;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return Err(JpegHeaderError::NoMarker { at });
        };
        at += 2;
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            continue; // no length
        }
        if marker == 0xD9 {
            return Err(JpegHeaderError::EndBeforeScan);
        }
        let length = match bytes.get(at..at + 2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
            None => return Err(JpegHeaderError::CutInsideMarker),
        };
        let Some(segment) = bytes.get(at + 2..at + length.max(2)) else {
            return Err(JpegHeaderError::MarkerPastEnd { marker });
        };
        match marker {
            0xDA => {
                let mut header = frame.ok_or(JpegHeaderError::ScanBeforeFrame)?;
                header.adobe_transform = adobe_transform;
                return Ok(header);
            }
            0xEE if segment.len() >= 12 && segment.starts_with(b"Adobe") => {
                adobe_transform = Some(segment[11]);
            }
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if segment.len() < 6 {
                    return Err(JpegHeaderError::ShortFrameHeader);
                }
                let components = segment[5];
                let ids: Vec<u8> = segment[6..]
                    .chunks_exact(3)
                    .take(components as usize)
                    .map(|c| c[0])
                    .collect();
                if ids.len() != components as usize {
                    return Err(JpegHeaderError::ShortFrameHeader);
                }
                frame = Some(JpegHeader {
                    sof: marker,
                    precision: segment[0],
                    height: u16::from_be_bytes([segment[1], segment[2]]),
                    width: u16::from_be_bytes([segment[3], segment[4]]),
                    components,
                    component_ids: ids,
                    adobe_transform: None,
                });
            }
            _ => {}
        }
        at += length;
    }
}

/// Whether the end-of-image marker is near the end, as the CPU decoder requires.
pub fn has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// A JPEG that ends before its end-of-image marker is truncated. Decoders fill the missing
/// part with grey and carry on; a curation tool must not keep such a file. The marker may be
/// followed by padding or trailer bytes, so look for it near the end.
pub fn check_jpeg_complete(bytes: &[u8]) -> Result<(), DecodeError> {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    if has_end_marker(bytes) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let gray =
            image::GrayImage::from_fn(width, height, |x, y| image::Luma([(x * y % 256) as u8]));
        let mut out = std::io::Cursor::new(Vec::new());
        gray.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn the_frame_header_is_read_and_broken_ones_say_why() {
        let bytes = jpeg(40, 24);
        let header = parse_jpeg_header(&bytes).unwrap();
        assert_eq!(
            (
                header.sof,
                header.precision,
                header.width,
                header.height,
                header.components
            ),
            (0xC0, 8, 40, 24, 1)
        );
        assert_eq!(header.adobe_transform, None);
        assert_eq!(
            parse_jpeg_header(b"\x89PNG\r\n"),
            Err(JpegHeaderError::NoStartOfImage)
        );
        assert_eq!(
            parse_jpeg_header(&[0xFF, 0xD8, 0xFF, 0xD9])
                .unwrap_err()
                .to_string(),
            "end of image before any scan"
        );
        assert_eq!(
            parse_jpeg_header(&[0xFF, 0xD8, 0x00])
                .unwrap_err()
                .to_string(),
            "no marker at byte 2"
        );
        assert_eq!(
            parse_jpeg_header(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x40, 0x01]),
            Err(JpegHeaderError::MarkerPastEnd { marker: 0xE0 })
        );
    }

    #[test]
    fn a_jpeg_without_its_end_marker_is_truncated() {
        let bytes = jpeg(40, 24);
        assert!(has_end_marker(&bytes));
        assert_eq!(check_jpeg_complete(&bytes), Ok(()));
        let cut = &bytes[..bytes.len() - 10];
        assert!(!has_end_marker(cut));
        assert!(check_jpeg_complete(cut)
            .unwrap_err()
            .to_string()
            .contains("truncated: no end-of-image marker (FFD9)"));
    }
}
