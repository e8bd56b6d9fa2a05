//! Measuring an audio stream, a file's or a video's track: decodes up to
//! `[audio] max_analysis_seconds` (at the fingerprint's rate, through `decode::av`), then
//! measures its levels and its fingerprint. A stream that decodes to nothing or to much less
//! than its container declares is an error, which the caller turns into a dropped sample.

use super::audio::{fingerprint, FINGERPRINT_RATE};
use super::AudioMeasurements;
use crate::config::AudioConfig;
use crate::decode::av::MediaInfo;
use crate::decode::DecodeError;

/// A stream that decodes to less than this share of the duration its container declares was
/// cut short (a decoder's own end-of-stream rounding is far smaller).
const TRUNCATED_SHARE: f64 = 0.9;

/// Why an audio stream could not be measured; the message goes to the ledger's `drop_detail`.
#[derive(Debug, thiserror::Error)]
pub enum AudioTrackError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the audio stream decoded to no samples")]
    Empty,
    #[error("truncated: {decoded:.2} s of audio decoded, the container declares {declared:.2} s")]
    Truncated { decoded: f64, declared: f64 },
}

/// Decodes up to `max_analysis_seconds` of the audio stream of `media` (probed as `info`) and
/// measures it.
pub fn measure_audio_track(
    media: &[u8],
    info: &MediaInfo,
    config: &AudioConfig,
) -> Result<AudioMeasurements, AudioTrackError> {
    let (decoded, levels) = crate::measure::audio::decode_audio_levels(
        media,
        FINGERPRINT_RATE,
        config.max_analysis_seconds,
        config.silence_threshold_dbfs,
    )?;
    if decoded.frames == 0 {
        return Err(AudioTrackError::Empty);
    }
    // A file cut short still decodes up to the cut: compare with what the container declares.
    if let Some(declared) = info.duration_seconds {
        if !decoded.truncated && decoded.decoded_seconds < declared * TRUNCATED_SHARE {
            return Err(AudioTrackError::Truncated {
                decoded: decoded.decoded_seconds,
                declared,
            });
        }
    }
    let levels = &levels;
    let print = fingerprint(&decoded.mono, decoded.analysis_rate);
    Ok(AudioMeasurements {
        codec: info
            .audio
            .as_ref()
            .map(|a| a.codec.clone())
            .unwrap_or_default(),
        sample_rate: decoded.sample_rate,
        channels: decoded.channels,
        analysed_seconds: decoded.decoded_seconds,
        peak_dbfs: levels.peak_dbfs,
        rms_dbfs: levels.rms_dbfs,
        clipped_fraction: levels.clipped_fraction,
        silence_fraction: levels.silence_fraction,
        snr_db: levels.snr_db,
        fingerprint: print.frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_the_ledger_says() {
        assert_eq!(
            AudioTrackError::Empty.to_string(),
            "the audio stream decoded to no samples"
        );
        assert_eq!(
            AudioTrackError::Truncated {
                decoded: 2.904,
                declared: 29.0
            }
            .to_string(),
            "truncated: 2.90 s of audio decoded, the container declares 29.00 s"
        );
    }
}
