//! `[limits]`: how much one sample may make the run read, allocate and spend, checked from
//! sizes and headers before anything is read or decoded. Enforcing them is the readers'
//! (`source`: bytes per part and per sample), `decide::judge`'s (pixels, durations, frames,
//! channels, captions) and the decoders' (allocation, frames, the deadline); this file only
//! types and checks the values.

use serde::{Deserialize, Serialize};

use super::check::invalid;
use super::{ByteSize, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The most bytes an image may decode to: width × height × bytes per pixel of its colour
    /// type (16-bit and float formats count 2 and 4 bytes a channel), from the header; a
    /// larger image is dropped (`too_many_pixels`) without being decoded. Also the image
    /// decoders' own allocation limit, which covers frames larger than the header says (a GIF
    /// frame bigger than its screen).
    #[serde(default = "default_max_decode_bytes")]
    pub max_decode_bytes: ByteSize,
    /// The longest caption, in bytes (`caption_too_long` above it).
    #[serde(default = "default_max_caption_bytes")]
    pub max_caption_bytes: ByteSize,
    /// The most audio channels a stream may declare (`too_many_channels` above it): decoding
    /// allocates per channel.
    #[serde(default = "default_max_audio_channels")]
    pub max_audio_channels: u32,
    /// The most bytes one part (a file, a tar member, a manifest row's object or URL) may
    /// have, from its listed size, tar header or `Content-Length` before it is read, and
    /// counted while a stream is read; a sample with a larger part is dropped (`too_large`).
    #[serde(default = "default_max_part_bytes")]
    pub max_part_bytes: ByteSize,
    /// The most bytes all parts of one sample may have together (`too_large` above it).
    #[serde(default = "default_max_sample_bytes")]
    pub max_sample_bytes: ByteSize,
    /// The longest video a container may declare, in seconds (`too_long`; not decoded).
    #[serde(default = "default_max_video_seconds")]
    pub max_video_seconds: f64,
    /// The most frames a video may declare (`nb_frames`, else duration × frame rate), and
    /// decode (`too_many_frames`).
    #[serde(default = "default_max_video_frames")]
    pub max_video_frames: u64,
    /// The most pixels one video frame may have (`too_many_pixels`; not decoded).
    #[serde(default = "default_max_video_pixels")]
    pub max_video_pixels: u64,
    /// The longest audio stream a container may declare, in seconds (`too_long`; not decoded).
    #[serde(default = "default_max_audio_seconds")]
    pub max_audio_seconds: f64,
    /// How long decoding and measuring one sample may take, in seconds (`decode_timeout`):
    /// FFmpeg is interrupted (its interrupt callback, and a check before every packet); an
    /// image is checked before and after its decode.
    #[serde(default = "default_max_decode_seconds")]
    pub max_decode_seconds: f64,
}

fn default_max_decode_bytes() -> ByteSize {
    ByteSize(512 << 20)
}
fn default_max_caption_bytes() -> ByteSize {
    ByteSize(64 << 10)
}
fn default_max_audio_channels() -> u32 {
    16
}
fn default_max_part_bytes() -> ByteSize {
    ByteSize(1 << 30)
}
fn default_max_sample_bytes() -> ByteSize {
    ByteSize(1 << 30)
}
fn default_max_video_seconds() -> f64 {
    4.0 * 3600.0
}
fn default_max_video_frames() -> u64 {
    // Four hours at 60 frames a second.
    864_000
}
fn default_max_video_pixels() -> u64 {
    // 8K UHD, 7680 × 4320.
    33_177_600
}
fn default_max_audio_seconds() -> f64 {
    4.0 * 3600.0
}
fn default_max_decode_seconds() -> f64 {
    300.0
}

/// Longest a duration limit may be: a week.
const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_decode_bytes: default_max_decode_bytes(),
            max_caption_bytes: default_max_caption_bytes(),
            max_audio_channels: default_max_audio_channels(),
            max_part_bytes: default_max_part_bytes(),
            max_sample_bytes: default_max_sample_bytes(),
            max_video_seconds: default_max_video_seconds(),
            max_video_frames: default_max_video_frames(),
            max_video_pixels: default_max_video_pixels(),
            max_audio_seconds: default_max_audio_seconds(),
            max_decode_seconds: default_max_decode_seconds(),
        }
    }
}

impl LimitsConfig {
    /// Checks `[limits]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1 << 20..=64 << 30).contains(&self.max_decode_bytes.0) {
            return Err(invalid(
                "limits.max_decode_bytes",
                self.max_decode_bytes,
                "must be 1MiB to 64GiB",
            ));
        }
        if !(1..=16 << 20).contains(&self.max_caption_bytes.0) {
            return Err(invalid(
                "limits.max_caption_bytes",
                self.max_caption_bytes,
                "must be 1 byte to 16MiB",
            ));
        }
        if !(1..=255).contains(&self.max_audio_channels) {
            return Err(invalid(
                "limits.max_audio_channels",
                self.max_audio_channels,
                "must be 1 to 255",
            ));
        }
        if !(1..=1 << 40).contains(&self.max_part_bytes.0) {
            return Err(invalid(
                "limits.max_part_bytes",
                self.max_part_bytes,
                "must be 1 byte to 1TiB",
            ));
        }
        if !(self.max_part_bytes.0..=1 << 40).contains(&self.max_sample_bytes.0) {
            return Err(invalid(
                "limits.max_sample_bytes",
                self.max_sample_bytes,
                &format!(
                    "must be at least limits.max_part_bytes ({}) and at most 1TiB",
                    self.max_part_bytes
                ),
            ));
        }
        for (key, value) in [
            ("limits.max_video_seconds", self.max_video_seconds),
            ("limits.max_audio_seconds", self.max_audio_seconds),
            ("limits.max_decode_seconds", self.max_decode_seconds),
        ] {
            if !(value > 0.0 && value <= MAX_SECONDS) {
                return Err(invalid(
                    key,
                    value,
                    "must be a number of seconds above 0 and at most 604800 (a week)",
                ));
            }
        }
        if !(1..=1 << 32).contains(&self.max_video_frames) {
            return Err(invalid(
                "limits.max_video_frames",
                self.max_video_frames,
                "must be 1 to 4294967296",
            ));
        }
        if !(1..=1 << 32).contains(&self.max_video_pixels) {
            return Err(invalid(
                "limits.max_video_pixels",
                self.max_video_pixels,
                "must be 1 to 4294967296 (65536 x 65536)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_key_value_and_range() {
        assert_eq!(
            LimitsConfig::default()
                .validate()
                .map_err(|e| e.to_string()),
            Ok(())
        );
        let cases = [
            (
                LimitsConfig {
                    max_decode_bytes: ByteSize(1000),
                    ..LimitsConfig::default()
                },
                "limits.max_decode_bytes",
                "must be 1MiB to 64GiB",
            ),
            (
                LimitsConfig {
                    max_caption_bytes: ByteSize(0),
                    ..LimitsConfig::default()
                },
                "limits.max_caption_bytes",
                "must be 1 byte to 16MiB",
            ),
            (
                LimitsConfig {
                    max_audio_channels: 0,
                    ..LimitsConfig::default()
                },
                "limits.max_audio_channels",
                "must be 1 to 255",
            ),
            (
                LimitsConfig {
                    max_part_bytes: ByteSize(0),
                    ..LimitsConfig::default()
                },
                "limits.max_part_bytes",
                "must be 1 byte to 1TiB",
            ),
            (
                LimitsConfig {
                    max_sample_bytes: ByteSize(1000),
                    ..LimitsConfig::default()
                },
                "limits.max_sample_bytes",
                "must be at least limits.max_part_bytes (1073741824)",
            ),
            (
                LimitsConfig {
                    max_video_seconds: f64::NAN,
                    ..LimitsConfig::default()
                },
                "limits.max_video_seconds",
                "above 0 and at most 604800",
            ),
            (
                LimitsConfig {
                    max_decode_seconds: 0.0,
                    ..LimitsConfig::default()
                },
                "limits.max_decode_seconds",
                "above 0 and at most 604800",
            ),
            (
                LimitsConfig {
                    max_audio_seconds: -1.0,
                    ..LimitsConfig::default()
                },
                "limits.max_audio_seconds",
                "above 0 and at most 604800",
            ),
            (
                LimitsConfig {
                    max_video_frames: 0,
                    ..LimitsConfig::default()
                },
                "limits.max_video_frames",
                "must be 1 to 4294967296",
            ),
            (
                LimitsConfig {
                    max_video_pixels: 0,
                    ..LimitsConfig::default()
                },
                "limits.max_video_pixels",
                "must be 1 to 4294967296",
            ),
        ];
        for (limits, key, allowed) in cases {
            let error = limits.validate().unwrap_err().to_string();
            assert!(error.contains(key) && error.contains(allowed), "{error}");
        }
    }
}
