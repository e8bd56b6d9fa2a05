//! What the FFmpeg lane's tests share: the test media, the ffmpeg CLI, a sampling, and
//! `decode_audio` run with measure's level meter as its sink, as the pipeline runs it.

use std::path::Path;
use std::process::Command;

use crate::decode::av::{DecodedAudio, FrameSampling};
use crate::decode::DecodeError;
use crate::measure::audio::AudioLevels;

pub const MEDIA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/media/");

pub fn media(name: &str) -> Vec<u8> {
    std::fs::read(format!("{MEDIA}{name}")).expect("test media in ../shared/media")
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
