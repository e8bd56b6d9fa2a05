//! Audio decoding: the best audio stream to interleaved f32 at its own rate, handed to the
//! caller's [`AudioSink`] as it decodes (decode keeps none of it and measures nothing), and a
//! mono downmix resampled by swresample to the analysis rate.

use ffmpeg::codec;
use ffmpeg::format::Sample;
use ffmpeg::software::resampling;
use ffmpeg::util::frame;
use ffmpeg::{ChannelLayout, Rational};
use ffmpeg_next as ffmpeg;

use super::memory_io::codec_parameters;
use super::{
    audio_stream_index, container_name, ffmpeg_error, next_packet, open_media, positive_seconds,
    MIN_DECODED_SHARE,
};
use crate::decode::av::{AudioSink, DecodedAudio};
use crate::decode::DecodeError;

/// The most native-rate frames `decode_audio` reserves for up front (an hour at 48 kHz): a
/// header that declares more grows the buffer as the samples come instead.
const MAX_RESERVED_FRAMES: usize = 48_000 * 3600;

/// Converts the first `frames` sample frames of a decoded frame to interleaved f32 (full scale
/// ±1.0) into `out`, which it resizes (a buffer reused from frame to frame). Done here rather
/// than by swresample: it is a plain per-format conversion, and it sidesteps swresample's
/// channel-layout check, which WAV/PCM frames (empty layout) fail. The planes are checked
/// against the frame's whole sample count, `frames` or not.
/// Why a decoded audio frame's samples cannot be read.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("the decoder produced no sample format")]
    NoSampleFormat,
    #[error("the frame has {planes} planes, not {wanted}")]
    MissingPlane { planes: usize, wanted: usize },
    #[error("the frame is shorter than its sample count")]
    Short,
}

fn convert_interleaved(
    frame: &frame::Audio,
    channels: usize,
    frames: usize,
    out: &mut Vec<f32>,
) -> Result<(), FrameError> {
    let samples = frame.samples();
    let frames = frames.min(samples);
    let format = frame.format();
    let planar = match format {
        Sample::U8(t) | Sample::I16(t) | Sample::I32(t) | Sample::F32(t) => t,
        Sample::I64(t) | Sample::F64(t) => t,
        Sample::None => return Err(FrameError::NoSampleFormat),
    } == ffmpeg::format::sample::Type::Planar;
    out.clear();
    out.resize(frames * channels, 0.0);
    match format {
        Sample::U8(_) => convert_planes(frame, planar, channels, samples, out, |b: [u8; 1]| {
            (b[0] as f32 - 128.0) / 128.0
        }),
        Sample::I16(_) => convert_planes(frame, planar, channels, samples, out, |b| {
            i16::from_ne_bytes(b) as f32 / 32768.0
        }),
        Sample::I32(_) => convert_planes(frame, planar, channels, samples, out, |b| {
            i32::from_ne_bytes(b) as f32 / 2_147_483_648.0
        }),
        Sample::F32(_) => convert_planes(frame, planar, channels, samples, out, f32::from_ne_bytes),
        Sample::I64(_) => convert_planes(frame, planar, channels, samples, out, |b| {
            i64::from_ne_bytes(b) as f32 / 9.223_372e18
        }),
        Sample::F64(_) => convert_planes(frame, planar, channels, samples, out, |b| {
            f64::from_ne_bytes(b) as f32
        }),
        Sample::None => Ok(()),
    }
}

/// [`convert_interleaved`] for one sample format of `N` bytes, `to_f32` inlined into the loop.
fn convert_planes<const N: usize>(
    frame: &frame::Audio,
    planar: bool,
    channels: usize,
    samples: usize,
    out: &mut [f32],
    to_f32: impl Fn([u8; N]) -> f32,
) -> Result<(), FrameError> {
    let plane = |i: usize, len: usize| -> Result<&[u8], FrameError> {
        if i >= frame.planes() {
            return Err(FrameError::MissingPlane {
                planes: frame.planes(),
                wanted: i + 1,
            });
        }
        frame.data(i).get(..len).ok_or(FrameError::Short)
    };
    let sample = |b: &[u8]| to_f32(b.try_into().unwrap_or([0; N]));
    if planar {
        for c in 0..channels {
            let data = plane(c, samples * N)?;
            let dst = out.iter_mut().skip(c).step_by(channels);
            for (dst, b) in dst.zip(data.chunks_exact(N)) {
                *dst = sample(b);
            }
        }
    } else {
        let data = plane(0, samples * channels * N)?;
        for (dst, b) in out.iter_mut().zip(data.chunks_exact(N)) {
            *dst = sample(b);
        }
    }
    Ok(())
}

/// Native-rate mono samples go to swresample in chunks of this many. One call over the whole
/// signal made it allocate (and zero) buffers the size of the input, and the page faults cost
/// more than the filtering; its output does not depend on how the input is cut (tested).
const RESAMPLE_CHUNK: usize = 16_384;

/// Mono f32 resampled by swresample (its default filter; deterministic) as it arrives, or
/// kept as it is when the rates are equal.
struct MonoResampler {
    /// The resampler with its reused input frame (`filled` of its [`RESAMPLE_CHUNK`] samples
    /// written) and output frame (`out_capacity` samples); `None` at equal rates.
    swr: Option<(resampling::Context, frame::Audio, frame::Audio)>,
    filled: usize,
    out_capacity: usize,
    out: Vec<f32>,
}

impl MonoResampler {
    /// `expected_input`: the native-rate samples to reserve the output for.
    fn new(from_rate: u32, to_rate: u32, expected_input: usize) -> Result<Self, DecodeError> {
        let expected = (expected_input as u64 * to_rate as u64 / from_rate.max(1) as u64) as usize;
        let out = Vec::with_capacity(expected.saturating_add(64));
        if from_rate == to_rate {
            return Ok(MonoResampler {
                swr: None,
                filled: 0,
                out_capacity: 0,
                out,
            });
        }
        let err = |e: ffmpeg::Error| ffmpeg_error("swresample", e);
        let format = Sample::F32(ffmpeg::format::sample::Type::Packed);
        let context = resampling::Context::get(
            format,
            ChannelLayout::MONO,
            from_rate,
            format,
            ChannelLayout::MONO,
            to_rate,
        )
        .map_err(err)?;
        // Room for a chunk's output and the filter's delay; swresample keeps any excess for
        // the next call, so a bound that is too small (absurd rates) costs calls, not samples.
        let out_capacity = (RESAMPLE_CHUNK as u64 * to_rate as u64 / from_rate as u64 + 1024)
            .min(1 << 22) as usize;
        let mut input = frame::Audio::new(format, RESAMPLE_CHUNK, ChannelLayout::MONO);
        input.set_rate(from_rate);
        let output = frame::Audio::new(format, out_capacity, ChannelLayout::MONO);
        if input.planes() == 0 || output.planes() == 0 {
            return Err(ffmpeg_error("swresample", "could not allocate the frames"));
        }
        Ok(MonoResampler {
            swr: Some((context, input, output)),
            filled: 0,
            out_capacity,
            out,
        })
    }

    fn push(&mut self, mut mono: &[f32]) -> Result<(), DecodeError> {
        if self.swr.is_none() {
            self.out.extend_from_slice(mono);
            return Ok(());
        }
        while !mono.is_empty() {
            let take = (RESAMPLE_CHUNK - self.filled).min(mono.len());
            if let Some((_, input, _)) = &mut self.swr {
                input.plane_mut::<f32>(0)[self.filled..self.filled + take]
                    .copy_from_slice(&mono[..take]);
            }
            self.filled += take;
            mono = &mono[take..];
            if self.filled == RESAMPLE_CHUNK {
                self.convert()?;
            }
        }
        Ok(())
    }

    /// Resamples the `filled` samples of the input frame (with none, drains the filter).
    fn convert(&mut self) -> Result<usize, DecodeError> {
        let Some((context, input, output)) = &mut self.swr else {
            return Ok(0);
        };
        let err = |e: ffmpeg::Error| ffmpeg_error("swresample", e);
        output.set_samples(self.out_capacity);
        if self.filled > 0 {
            input.set_samples(self.filled);
            let result = context.run(input, output);
            input.set_samples(RESAMPLE_CHUNK);
            self.filled = 0;
            result.map_err(err)?;
        } else {
            context.flush(output).map_err(err)?;
        }
        let produced = output.plane::<f32>(0);
        self.out.extend_from_slice(produced);
        Ok(produced.len())
    }

    /// Everything resampled, the filter's delay line drained.
    fn finish(mut self) -> Result<Vec<f32>, DecodeError> {
        if self.swr.is_some() {
            if self.filled > 0 {
                self.convert()?;
            }
            while self.convert()? > 0 {}
        }
        Ok(self.out)
    }
}

/// Decodes the best audio stream, handing its interleaved f32 samples at the native rate and
/// channel count (full scale ±1.0) to `sink` as they come (after [`AudioSink::start`] with the
/// stream's format), and keeps a mono downmix (the mean of the channels) resampled to
/// `analysis_rate` (0 keeps the native rate). Stops after `max_seconds` (not finite or ≤ 0: no
/// limit) and says so in `truncated`. A stream that ends well before its declared duration, or
/// decodes to no samples, is an error.
pub fn decode_audio(
    bytes: &[u8],
    analysis_rate: u32,
    max_seconds: f64,
    sink: &mut dyn AudioSink,
) -> Result<DecodedAudio, DecodeError> {
    let mut media = open_media(bytes)?;
    let container = container_name(media.input());
    let Some(index) = audio_stream_index(media.input()) else {
        return Err(ffmpeg_error(&container, "the file has no audio stream"));
    };
    let Some(stream) = media.input().stream(index) else {
        return Err(ffmpeg_error(&container, "the audio stream vanished"));
    };
    let declared = positive_seconds(stream.duration(), stream.time_base()).or_else(|| {
        positive_seconds(
            media.input().duration(),
            Rational::new(1, ffmpeg::ffi::AV_TIME_BASE),
        )
    });
    let codec_name = codec_parameters(&stream).codec_id.name().to_string();
    let mut context = codec::Context::from_parameters(stream.parameters())
        .map_err(|e| ffmpeg_error(&codec_name, e))?;
    context.set_threading(codec::threading::Config::count(1));
    let mut decoder = context
        .decoder()
        .audio()
        .map_err(|e| ffmpeg_error(&codec_name, e))?;
    let sample_rate = decoder.rate();
    let channels = decoder.channels() as usize;
    if sample_rate == 0 || channels == 0 {
        return Err(ffmpeg_error(
            &codec_name,
            format!("{channels} channels at {sample_rate} Hz"),
        ));
    }
    let limit = if max_seconds.is_finite() && max_seconds > 0.0 {
        (max_seconds * sample_rate as f64).ceil() as usize
    } else {
        usize::MAX
    };

    sink.start(channels as u32, sample_rate);
    // Nothing of the native-rate samples is kept: each frame is converted into one reused
    // buffer, measured, downmixed (another reused buffer) and fed to the resampler, whose output
    // is reserved once from the declared duration (at most `max_seconds`; the slack covers a
    // stream a little longer than its header says).
    let expected_frames = declared
        .map(|d| (d * sample_rate as f64).ceil())
        .filter(|f| f.is_finite())
        .map_or(0, |f| (f as usize).saturating_add(8192).min(limit));
    let analysis_rate = if analysis_rate == 0 {
        sample_rate
    } else {
        analysis_rate
    };
    let mut mono = MonoResampler::new(
        sample_rate,
        analysis_rate,
        expected_frames.min(MAX_RESERVED_FRAMES),
    )?;
    let mut samples = Vec::new();
    let mut mono_frame = Vec::new();
    // Every frame the decoder produced, those past the limit included.
    let mut decoded_frames = 0usize;
    let mut decoded = frame::Audio::empty();
    let mut first_error: Option<String> = None;
    // Frames handed to the sink.
    let mut frames = 0usize;
    let mut receive = |decoder: &mut ffmpeg::decoder::Audio,
                       decoded_frames: &mut usize,
                       frames: &mut usize,
                       mono: &mut MonoResampler|
     -> Result<(), DecodeError> {
        while decoder.receive_frame(&mut decoded).is_ok() {
            let frame_channels = decoded.channels() as usize;
            if frame_channels != channels && frame_channels != 0 {
                return Err(ffmpeg_error(
                    &codec_name,
                    format!("the channel count changed from {channels} to {frame_channels}"),
                ));
            }
            let wanted = limit.saturating_sub(*decoded_frames);
            convert_interleaved(&decoded, channels, wanted, &mut samples)
                .map_err(|m| ffmpeg_error(&codec_name, m))?;
            *decoded_frames = decoded_frames.saturating_add(decoded.samples());
            if samples.is_empty() {
                continue;
            }
            sink.push(&samples);
            *frames += samples.len() / channels;
            mono_frame.clear();
            mono_frame.extend(
                samples
                    .chunks_exact(channels)
                    .map(|c| c.iter().sum::<f32>() / channels as f32),
            );
            mono.push(&mono_frame)?;
        }
        Ok(())
    };
    let mut reached_end = false;
    while decoded_frames < limit {
        let Some(packet) = next_packet(&mut media, index, &container)? else {
            reached_end = true;
            break;
        };
        if let Err(e) = decoder.send_packet(&packet) {
            first_error.get_or_insert_with(|| e.to_string());
            continue;
        }
        receive(&mut decoder, &mut decoded_frames, &mut frames, &mut mono)?;
    }
    if reached_end && decoder.send_eof().is_ok() {
        receive(&mut decoder, &mut decoded_frames, &mut frames, &mut mono)?;
    }
    let truncated = !reached_end || decoded_frames > limit;
    if frames == 0 {
        let message = first_error.unwrap_or_else(|| "no audio samples decoded".to_string());
        return Err(ffmpeg_error(&codec_name, message));
    }
    let decoded_seconds = frames as f64 / sample_rate as f64;
    if !truncated {
        if let Some(declared) = declared {
            if decoded_seconds < declared * MIN_DECODED_SHARE - 0.1 {
                return Err(ffmpeg_error(
                    &container,
                    format!("truncated: the audio stream ends at {decoded_seconds:.2} s of the {declared:.2} s it declares"),
                ));
            }
        }
    }
    let mono = mono.finish()?;
    Ok(DecodedAudio {
        sample_rate,
        channels: channels as u32,
        frames,
        analysis_rate,
        mono,
        decoded_seconds,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    // The wrapper with the level meter, not the bare function.
    use super::super::test_support::decode_audio;

    /// The one-call resampling from before [`MonoResampler`], kept as the reference it must
    /// reproduce bit for bit.
    fn resample_mono(mono: &[f32], from_rate: u32, to_rate: u32) -> Result<Vec<f32>, DecodeError> {
        if mono.is_empty() || from_rate == to_rate {
            return Ok(mono.to_vec());
        }
        let err = |e: ffmpeg::Error| ffmpeg_error("swresample", e);
        let format = Sample::F32(ffmpeg::format::sample::Type::Packed);
        let mut resampler = resampling::Context::get(
            format,
            ChannelLayout::MONO,
            from_rate,
            format,
            ChannelLayout::MONO,
            to_rate,
        )
        .map_err(err)?;
        let mut input = frame::Audio::new(format, mono.len(), ChannelLayout::MONO);
        input.set_rate(from_rate);
        if input.planes() == 0 {
            return Err(ffmpeg_error(
                "swresample",
                "could not allocate the input frame",
            ));
        }
        for (dst, s) in input.data_mut(0).chunks_exact_mut(4).zip(mono) {
            dst.copy_from_slice(&s.to_ne_bytes());
        }
        let expected = (mono.len() as u64 * to_rate as u64 / from_rate as u64) as usize;
        let mut out = Vec::with_capacity(expected + 64);
        let take = |frame: &frame::Audio, out: &mut Vec<f32>| {
            if frame.planes() > 0 {
                let bytes = frame.data(0);
                let n = (frame.samples() * 4).min(bytes.len());
                out.extend(
                    bytes[..n]
                        .chunks_exact(4)
                        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
        };
        let mut output = frame::Audio::new(format, expected + 256, ChannelLayout::MONO);
        resampler.run(&input, &mut output).map_err(err)?;
        take(&output, &mut out);
        // The filter's delay line still holds the last samples.
        loop {
            let mut tail = frame::Audio::new(format, 4096, ChannelLayout::MONO);
            resampler.flush(&mut tail).map_err(err)?;
            if tail.samples() == 0 {
                break;
            }
            take(&tail, &mut out);
        }
        Ok(out)
    }

    /// Resampling in pieces gives the very samples of one call over all of them, whatever the
    /// rates and wherever the pieces are cut (chunks of RESAMPLE_CHUNK and the pieces pushed
    /// do not line up).
    #[test]
    fn resampling_in_pieces_is_bit_identical() {
        let dir = tempfile::tempdir().unwrap();
        let raw = ffmpeg_cli(
            dir.path(),
            &[
                "-i",
                &media_path("audio/Kevin_MacLeod_-_Vibe_Ace.ogg"),
                "-t",
                "7",
                "-ac",
                "1",
                "-f",
                "f32le",
            ],
            "music.f32",
        );
        let mono: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(mono.len(), 7 * 44_100);
        for (from, to) in [
            (44_100, 11_025),
            (48_000, 11_025),
            (8_000, 11_025),
            (44_100, 16_000),
        ] {
            let whole = resample_mono(&mono, from, to).unwrap();
            for piece in [1152, 4096, 1000, RESAMPLE_CHUNK + 1] {
                let mut resampler = MonoResampler::new(from, to, mono.len()).unwrap();
                for part in mono.chunks(piece) {
                    resampler.push(part).unwrap();
                }
                let pieces = resampler.finish().unwrap();
                assert_eq!(
                    pieces.len(),
                    whole.len(),
                    "{from} -> {to}, pieces of {piece}"
                );
                assert!(
                    pieces
                        .iter()
                        .zip(&whole)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{from} -> {to}, pieces of {piece}"
                );
            }
        }
        let mut same = MonoResampler::new(16_000, 16_000, 10).unwrap();
        same.push(&mono[..1000]).unwrap();
        same.push(&mono[1000..3000]).unwrap();
        assert_eq!(same.finish().unwrap(), mono[..3000]);
    }

    #[test]
    fn a_sine_at_minus_6_dbfs_peaks_at_one_half() {
        let dir = tempfile::tempdir().unwrap();
        // lavfi's sine is at 1/8 of full scale: times 4 is 0.5, -6 dBFS.
        let args = [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000:duration=2",
            "-af",
            "volume=4,pan=stereo|c0=c0|c1=c0",
        ];
        let wav = ffmpeg_cli(
            dir.path(),
            &[&args[..], &["-c:a", "pcm_s16le", "-f", "wav"]].concat(),
            "sine.wav",
        );
        let audio = decode_audio(&wav, 16_000, 60.0, -60.0).unwrap();
        assert_eq!(
            (audio.sample_rate, audio.channels, audio.analysis_rate),
            (48_000, 2, 16_000)
        );
        assert_eq!(audio.frames, 96_000);
        assert!(!audio.truncated);
        assert!((audio.decoded_seconds - 2.0).abs() < 1e-9);
        assert_eq!(audio.levels.duration_s, audio.decoded_seconds);
        // A peak of 0.5 ± 0.005, and the RMS of a 0.5 sine, 0.5/sqrt(2) (-9.03 dBFS).
        let peak = 10f64.powf(audio.levels.peak_dbfs / 20.0);
        assert!((peak - 0.5).abs() < 0.005, "{peak}");
        let rms = 10f64.powf(audio.levels.rms_dbfs / 20.0);
        assert!((rms - 0.5 / 2f64.sqrt()).abs() < 0.005, "{rms}");
        assert_eq!(audio.levels.window_count, 40);
        assert_eq!(audio.levels.silence_fraction, 0.0);
        assert!(
            (audio.mono.len() as i64 - 32_000).abs() <= 32,
            "{}",
            audio.mono.len()
        );
        let mono_peak = audio.mono.iter().fold(0f32, |m, &v| m.max(v.abs()));
        assert!((mono_peak - 0.5).abs() < 0.02, "{mono_peak}");
        // 1 kHz: two zero crossings per period, 4000 in 2 s.
        let crossings = audio
            .mono
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        assert!((crossings as i64 - 4000).abs() <= 4, "{crossings}");

        // The same through AAC (planar float frames): same level, same length within a frame.
        let m4a = ffmpeg_cli(
            dir.path(),
            &[&args[..], &["-c:a", "aac", "-b:a", "192k", "-f", "mp4"]].concat(),
            "sine.m4a",
        );
        let aac = decode_audio(&m4a, 16_000, 60.0, -60.0).unwrap();
        assert_eq!((aac.sample_rate, aac.channels), (48_000, 2));
        assert!(
            (aac.decoded_seconds - 2.0).abs() < 0.05,
            "{}",
            aac.decoded_seconds
        );
        // The encoder's onset ringing overshoots the peak; the RMS of a 0.5 sine is 0.5/sqrt(2).
        let rms = 10f64.powf(aac.levels.rms_dbfs / 20.0);
        assert!((rms - 0.5 / 2f64.sqrt()).abs() < 0.01, "{rms}");
    }

    #[test]
    fn real_audio_decodes_to_its_declared_length() {
        let speech = decode_audio(&speech(), 16_000, 600.0, -50.0).unwrap();
        assert_eq!((speech.sample_rate, speech.channels), (16_000, 1));
        assert_eq!(speech.frames, 470_960); // 29.435 s x 16 kHz
        assert!(!speech.truncated);
        // Mono at the analysis rate: `mono` is the native samples, and the levels measured
        // while decoding are theirs, bit for bit.
        assert_eq!(speech.mono.len(), speech.frames);
        let levels = crate::measure::audio::audio_levels(&speech.mono, 1, 16_000, -50.0);
        assert_eq!(format!("{:?}", speech.levels), format!("{levels:?}"));
        assert!(speech.levels.silence_fraction > 0.0 && speech.levels.silence_fraction < 1.0);

        let music = decode_audio(
            &media("audio/Kevin_MacLeod_-_Vibe_Ace.ogg"),
            22_050,
            10.0,
            -60.0,
        )
        .unwrap();
        assert_eq!((music.sample_rate, music.channels), (44_100, 2));
        assert!(music.truncated);
        assert_eq!(music.frames, 441_000);
        assert_eq!(music.levels.duration_s, 10.0);
        assert_eq!(music.levels.window_count, 200);
        assert!((music.decoded_seconds - 10.0).abs() < 1e-9);
        assert!(
            (music.mono.len() as i64 - 220_500).abs() <= 64,
            "{}",
            music.mono.len()
        );
        let rms = 10f64.powf(music.levels.rms_dbfs / 20.0);
        assert!(rms > 0.01 && rms < 0.7, "{rms}");

        // The AAC 5.1 track of the video file.
        let surround =
            decode_audio(&media("video/bigbuckbunny.mp4"), 16_000, 600.0, -60.0).unwrap();
        assert_eq!((surround.sample_rate, surround.channels), (48_000, 6));
        assert!(
            (surround.decoded_seconds - 5.312).abs() < 0.05,
            "{}",
            surround.decoded_seconds
        );
    }
}
