//! What the FFmpeg lane's tests share: the test media, the ffmpeg CLI, a sampling, and
//! `decode_audio` run with measure's level meter as its sink, as the pipeline runs it.

use std::path::Path;
use std::process::Command;

use crate::decode::av::{DecodedAudio, FrameSampling};
use crate::decode::DecodeError;
use crate::measure::audio::AudioLevels;

/// A file of the repository's test media, tests/media (MMCURATE_MEDIA overrides the folder:
/// on a GPU machine the test binary runs away from the checkout it was built in).
pub fn media_path(name: &str) -> String {
    let dir = std::env::var("MMCURATE_MEDIA")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/media").to_string());
    format!("{dir}/{name}")
}

pub fn media(name: &str) -> Vec<u8> {
    let path = media_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("test media {path}: {e}"))
}

/// The speech clip tests/media/make_speech.sh makes with espeak-ng and the ffmpeg CLI:
/// 29.435 s (470,960 samples) of 16 kHz mono 16-bit PCM in a 44-byte-header WAV, about
/// 24 s of speech with pauses, then silence.
pub fn speech() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("speech.wav");
    let status = Command::new("bash")
        .arg(media_path("make_speech.sh"))
        .arg(&path)
        .status()
        .expect("bash runs");
    assert!(status.success(), "tests/media/make_speech.sh failed");
    std::fs::read(&path).expect("the speech clip")
}

/// Runs the ffmpeg CLI with `args` and returns the bytes of `output` (in `dir`).
pub fn ffmpeg_cli(dir: &Path, args: &[&str], output: &str) -> Vec<u8> {
    let path = dir.join(output);
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .arg(&path)
        .status()
        .expect("the ffmpeg CLI (scripts/setup.sh installs it)");
    assert!(status.success(), "ffmpeg {args:?} failed");
    std::fs::read(&path).expect("ffmpeg's output")
}

pub fn sampling(sample_fps: f64, scene_threshold: f64, max_frames: usize) -> FrameSampling {
    FrameSampling {
        sample_fps,
        scene_threshold,
        max_frames,
        min_side: 512,
        keep_rgb: false,
        cuda_device: None,
    }
}

pub fn corrupt_message(result: Result<impl std::fmt::Debug, DecodeError>) -> String {
    match result {
        Err(DecodeError::Corrupt { format, message }) => format!("{format}: {message}"),
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

/// Decoded audio with the levels its sink measured.
#[derive(Debug, PartialEq)]
pub struct AudioWithLevels {
    pub audio: DecodedAudio,
    pub levels: AudioLevels,
}

impl std::ops::Deref for AudioWithLevels {
    type Target = DecodedAudio;
    fn deref(&self) -> &DecodedAudio {
        &self.audio
    }
}

/// [`super::decode_audio`] with `measure`'s level meter as its sink (as the pipeline runs it,
/// through `measure::audio::decode_audio_levels`), the levels beside the decoded audio.
pub fn decode_audio(
    bytes: &[u8],
    analysis_rate: u32,
    max_seconds: f64,
    silence_threshold_dbfs: f64,
) -> Result<AudioWithLevels, DecodeError> {
    crate::measure::audio::decode_audio_levels(
        bytes,
        analysis_rate,
        max_seconds,
        silence_threshold_dbfs,
    )
    .map(|(audio, levels)| AudioWithLevels { audio, levels })
}
