//! `[limits]`: how much one sample may make the run allocate, checked from headers before
//! anything is decoded. Enforcing them is `decide::judge`'s (and the image decoders', which get
//! the byte limit too); this file only types and checks the values.

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

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_decode_bytes: default_max_decode_bytes(),
            max_caption_bytes: default_max_caption_bytes(),
            max_audio_channels: default_max_audio_channels(),
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
        ];
        for (limits, key, allowed) in cases {
            let error = limits.validate().unwrap_err().to_string();
            assert!(error.contains(key) && error.contains(allowed), "{error}");
        }
    }
}
