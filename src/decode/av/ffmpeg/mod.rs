//! The FFmpeg implementation of the `decode::av` functions (the `av` cargo feature, on by
//! default): opening a container from memory and probing it here; the memory input
//! ([`memory_io`]), video decoding ([`video`]), NVDEC ([`nvdec`]) and audio decoding ([`audio`])
//! in their own files. Which frames to sample is `decode::av::sampler`'s pure logic.

use std::sync::OnceLock;

use ffmpeg::format::stream::Disposition;
use ffmpeg::media::Type as MediaType;
use ffmpeg::Rational;
use ffmpeg_next as ffmpeg;

use super::{AudioStreamInfo, MediaInfo, NvdecDeviceState, VideoStreamInfo};
use crate::decode::DecodeError;

mod audio;
mod memory_io;
mod nvdec;
#[cfg(test)]
mod test_support;
mod video;

pub use audio::decode_audio;
pub use video::sample_video_frames;

use memory_io::{codec_parameters, MemoryInput};

/// A stream that ends before this share of its declared duration (less a little slack for
/// the last frames' own duration) was cut short: the file is truncated.
const MIN_DECODED_SHARE: f64 = 0.9;

/// FFmpeg's global state, set up once. Its log goes quiet: errors reach the caller as values
/// with FFmpeg's message, and library code never prints.
fn init_ffmpeg() -> Result<(), DecodeError> {
    static INIT: OnceLock<Result<(), ffmpeg::Error>> = OnceLock::new();
    INIT.get_or_init(|| {
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Quiet);
        ffmpeg::init()
    })
    .map_err(|e| ffmpeg_error("ffmpeg", e))
}

fn ffmpeg_error(format: &str, message: impl ToString) -> DecodeError {
    DecodeError::Corrupt {
        format: format.to_string(),
        message: message.to_string(),
    }
}

/// Opens the bytes as a container; the error names the demuxer when there is one. The demuxer
/// is the one for the container `decode::sniff_av` recognises in the bytes, never one FFmpeg
/// guesses: bytes we do not recognise are not handed to FFmpeg at all, and the demuxer may
/// open nothing beyond them (see [`MemoryInput::open`]).
fn open_media(bytes: &[u8]) -> Result<MemoryInput<'_>, DecodeError> {
    init_ffmpeg()?;
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let Some(container) = crate::decode::sniff_av(bytes) else {
        return Err(ffmpeg_error(
            "media",
            format!(
                "not a container mmcurate opens ({}); FFmpeg is not asked to guess",
                crate::decode::describe(bytes)
            ),
        ));
    };
    let demuxer = container.demuxer();
    MemoryInput::open(bytes, demuxer).map_err(|e| ffmpeg_error(demuxer, e))
}

/// The next packet of stream `index`, or `None` at the end of the file. A fresh packet each
/// time: av_read_frame overwrites without unreferencing, so reusing one would leak every
/// packet's buffer (the Drop unrefs it).
fn next_packet(
    media: &mut MemoryInput<'_>,
    index: usize,
    container: &str,
) -> Result<Option<ffmpeg::Packet>, DecodeError> {
    loop {
        // The sample's deadline, between packets (`decode::budget`).
        crate::decode::budget::check()?;
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(media.input_mut()) {
            Ok(()) if packet.stream() == index => return Ok(Some(packet)),
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => return Ok(None),
            Err(e) => return Err(ffmpeg_error(container, e)),
        }
    }
}

fn container_name(input: &ffmpeg::format::context::Input) -> String {
    input.format().name().to_string()
}

/// Seconds of a timestamp in `time_base`; `None` for FFmpeg's "no value" and non-positive
/// durations.
fn positive_seconds(value: i64, time_base: Rational) -> Option<f64> {
    if value <= 0 || value == ffmpeg::ffi::AV_NOPTS_VALUE || time_base.denominator() == 0 {
        return None;
    }
    Some(value as f64 * f64::from(time_base))
}

fn rational_value(r: Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r))
}

/// The best video stream that is not cover art. `av_find_best_stream` can pick an attached
/// picture when it is the only video stream, so one is replaced by the first real video stream.
fn video_stream_index(input: &ffmpeg::format::context::Input) -> Option<usize> {
    let is_picture = |s: &ffmpeg::Stream| s.disposition().contains(Disposition::ATTACHED_PIC);
    if let Some(best) = input.streams().best(MediaType::Video) {
        if !is_picture(&best) {
            return Some(best.index());
        }
    }
    input
        .streams()
        .find(|s| s.parameters().medium() == MediaType::Video && !is_picture(s))
        .map(|s| s.index())
}

fn audio_stream_index(input: &ffmpeg::format::context::Input) -> Option<usize> {
    input.streams().best(MediaType::Audio).map(|s| s.index())
}

/// Reads the container header (and FFmpeg's short stream probe) without decoding.
pub fn probe_media(bytes: &[u8]) -> Result<MediaInfo, DecodeError> {
    let media = open_media(bytes)?;
    let input = media.input();
    let video = video_stream_index(input)
        .and_then(|i| input.stream(i))
        .map(|s| {
            let p = codec_parameters(&s);
            VideoStreamInfo {
                codec: p.codec_id.name().to_string(),
                width: p.width,
                height: p.height,
                fps: rational_value(s.avg_frame_rate()).or_else(|| rational_value(s.rate())),
                frame_count: u64::try_from(s.frames()).ok().filter(|&n| n > 0),
                duration_seconds: positive_seconds(s.duration(), s.time_base()),
            }
        });
    let audio = audio_stream_index(input)
        .and_then(|i| input.stream(i))
        .map(|s| {
            let p = codec_parameters(&s);
            AudioStreamInfo {
                codec: p.codec_id.name().to_string(),
                sample_rate: p.sample_rate,
                channels: p.channels,
                duration_seconds: positive_seconds(s.duration(), s.time_base()),
            }
        });
    Ok(MediaInfo {
        container: container_name(input),
        duration_seconds: positive_seconds(
            input.duration(),
            Rational::new(1, ffmpeg::ffi::AV_TIME_BASE),
        ),
        bit_rate: u64::try_from(input.bit_rate()).ok().filter(|&b| b > 0),
        video,
        audio,
    })
}

/// Whether NVDEC on CUDA device `ordinal` was tried in this process, and what came of it
/// (`None`: not tried yet). Opening is tried once per device and process.
pub fn nvdec_device_state(ordinal: usize) -> Option<NvdecDeviceState> {
    nvdec::state(ordinal)
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    // The wrapper with the level meter, not the bare function.
    use super::test_support::decode_audio;

    #[test]
    fn probe_reads_the_video_containers() {
        let info = probe_media(&media("video/bigbuckbunny.mp4")).unwrap();
        assert_eq!(info.container, "mov,mp4,m4a,3gp,3g2,mj2");
        assert!(
            (info.duration_seconds.unwrap() - 5.312).abs() < 1e-3,
            "{info:?}"
        );
        assert_eq!(info.bit_rate, Some(1_589_963));
        let video = info.video.as_ref().unwrap();
        assert_eq!(
            (video.codec.as_str(), video.width, video.height),
            ("h264", 1280, 720)
        );
        assert_eq!(video.fps, Some(25.0));
        assert_eq!(video.frame_count, Some(132));
        assert!((video.duration_seconds.unwrap() - 5.28).abs() < 1e-3);
        let audio = info.audio.as_ref().unwrap();
        assert_eq!(
            (audio.codec.as_str(), audio.sample_rate, audio.channels),
            ("aac", 48_000, 6)
        );

        let info = probe_media(&media("video/carphone_pristine.mp4")).unwrap();
        let video = info.video.unwrap();
        assert_eq!(
            (video.width, video.height, video.frame_count),
            (176, 144, Some(120))
        );
        assert!((video.fps.unwrap() - 30_000.0 / 1001.0).abs() < 1e-9);
        assert_eq!(info.audio, None);

        let info = probe_media(&media("video/opencv_tree.avi")).unwrap();
        assert_eq!(info.container, "avi");
        let video = info.video.unwrap();
        assert_eq!(
            (video.codec.as_str(), video.width, video.height),
            ("cinepak", 320, 240)
        );
        assert_eq!(video.frame_count, Some(444));
        assert!((video.fps.unwrap() - 1_000_000.0 / 66_667.0).abs() < 1e-9);
        assert!((info.duration_seconds.unwrap() - 29.600148).abs() < 1e-3);
    }

    #[test]
    fn probe_reads_the_audio_containers_and_ignores_cover_art() {
        let info = probe_media(&media("audio/Kevin_MacLeod_-_Vibe_Ace.ogg")).unwrap();
        assert_eq!(info.container, "ogg");
        // The file embeds a 720x720 MJPEG cover: an attached picture, not a video.
        assert_eq!(info.video, None);
        let audio = info.audio.unwrap();
        assert_eq!(
            (audio.codec.as_str(), audio.sample_rate, audio.channels),
            ("vorbis", 44_100, 2)
        );
        assert!((info.duration_seconds.unwrap() - 61.458866).abs() < 1e-3);

        let info = probe_media(&speech()).unwrap();
        assert_eq!(info.container, "wav");
        assert_eq!(info.video, None);
        let audio = info.audio.unwrap();
        assert_eq!(
            (audio.codec.as_str(), audio.sample_rate, audio.channels),
            ("pcm_s16le", 16_000, 1)
        );
        assert!((info.duration_seconds.unwrap() - 29.435).abs() < 1e-3);

        let err = sample_video_frames(
            &media("audio/Kevin_MacLeod_-_Vibe_Ace.ogg"),
            &sampling(1.0, 0.0, 4),
        );
        assert!(corrupt_message(err).contains("no video stream"));
        let err = decode_audio(&media("video/carphone_pristine.mp4"), 16_000, 10.0, -60.0);
        assert!(corrupt_message(err).contains("no audio stream"));
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let mp4 = media("video/bigbuckbunny.mp4");
        let avi = media("video/opencv_tree.avi");
        let wav = speech();
        let text =
            b"This is a caption, not a video. It has words and no frames at all.\n".repeat(40);
        let zero = ffmpeg_cli(
            dir.path(),
            &["-f", "lavfi", "-i", "anullsrc", "-t", "0", "-f", "wav"],
            "zero.wav",
        );
        // With the index (moov) first, half a file opens and then runs out of samples.
        let faststart = ffmpeg_cli(
            dir.path(),
            &[
                "-i",
                &media_path("video/bikes.mp4"),
                "-c",
                "copy",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
            ],
            "faststart.mp4",
        );

        assert_eq!(probe_media(&[]), Err(DecodeError::Empty));
        assert_eq!(
            sample_video_frames(&[], &sampling(1.0, 0.0, 4)),
            Err(DecodeError::Empty)
        );
        assert_eq!(
            decode_audio(&[], 16_000, 10.0, -60.0),
            Err(DecodeError::Empty)
        );

        let cases: [(&str, &[u8]); 7] = [
            (
                "faststart mp4 cut in half",
                &faststart[..faststart.len() / 2],
            ),
            ("text", &text),
            ("mp4 cut in half", &mp4[..mp4.len() / 2]),
            ("mp4 header only", &mp4[..64]),
            ("avi cut in half", &avi[..avi.len() / 2]),
            ("wav header without data", &wav[..44]),
            ("wav with zero samples", &zero),
        ];
        for (name, bytes) in cases {
            let video = sample_video_frames(bytes, &sampling(1.0, 20.0, 8));
            assert!(
                matches!(video, Err(DecodeError::Corrupt { .. })),
                "{name}: {video:?}"
            );
            let audio = decode_audio(bytes, 16_000, 10.0, -60.0);
            assert!(
                matches!(audio, Err(DecodeError::Corrupt { .. })),
                "{name}: {audio:?}"
            );
        }
        // Bytes no container signature matches never reach FFmpeg.
        assert_eq!(
            corrupt_message(probe_media(&text)),
            "media: not a container mmcurate opens (the bytes are text); \
             FFmpeg is not asked to guess"
        );
        assert!(corrupt_message(sample_video_frames(
            &avi[..avi.len() / 2],
            &sampling(1.0, 0.0, 100)
        ))
        .contains("truncated"));
        assert!(
            corrupt_message(decode_audio(&wav[..44], 16_000, 10.0, -60.0))
                .contains("no audio samples")
        );
    }

    /// A listener on 127.0.0.1 that records whether anything connected to it.
    fn listener() -> (std::net::TcpListener, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        (listener, address)
    }

    fn nobody_connected(listener: &std::net::TcpListener) -> bool {
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    #[test]
    fn demuxers_that_open_other_resources_open_nothing() {
        // Even when the demuxer is one that follows what the bytes name (forced here, and
        // concat made unsafe; a run never chooses these: `demuxer_for_the_sniffed_container_only`),
        // it opens nothing. Without `refuse_nested_open` and the whitelists, concat connects to
        // the listener (and waits there for an answer: this test then hangs).
        let (listener, at) = listener();
        let cases = [
            (
                "hls",
                format!(
                    "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nhttp://{at}/seg0.ts\n\
                     #EXTINF:4,\ndata:video/mp2t;base64,R0dHR0dH\n#EXT-X-ENDLIST\n"
                ),
            ),
            (
                "concat",
                format!("ffconcat version 1.0\nfile 'http://{at}/a.mp4'\nfile '/etc/passwd'\n"),
            ),
            (
                "concat",
                "ffconcat version 1.0\nfile 'data:video/mp4;base64,AAAA'\n".to_string(),
            ),
        ];
        init_ffmpeg().unwrap();
        for (demuxer, text) in cases {
            // `safe = 0`: concat would otherwise refuse URLs and absolute paths itself.
            let opened = MemoryInput::open_with(text.as_bytes(), demuxer, &[(c"safe", c"0")]);
            let streams = opened.as_ref().map(|m| m.input().streams().count());
            assert!(
                matches!(streams, Err(_) | Ok(0)),
                "{demuxer} opened streams: {streams:?}"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(nobody_connected(&listener), "a demuxer connected to {at}");
    }

    #[test]
    fn demuxer_for_the_sniffed_container_only() {
        // Playlists and concat lists, also behind a video signature, are not opened as what
        // they say they are: the listener they name hears nothing, and each is an error.
        let (listener, at) = listener();
        let playlist = format!("#EXTM3U\n#EXTINF:4,\nhttp://{at}/seg0.ts\n#EXT-X-ENDLIST\n");
        let mut in_mp4 = b"\0\0\0\x14ftypisom\0\0\0\0isom".to_vec();
        in_mp4.extend_from_slice(playlist.as_bytes());
        let mut in_ts = playlist.clone().into_bytes();
        in_ts.resize(400, b'\n');
        for at in [0, 188, 376] {
            in_ts[at] = 0x47;
        }
        let concat = format!("ffconcat version 1.0\nfile 'http://{at}/a.mp4'\n");
        let cases: [(&str, &[u8]); 4] = [
            ("playlist", playlist.as_bytes()),
            ("playlist in mp4", &in_mp4),
            ("playlist in ts", &in_ts),
            ("concat", concat.as_bytes()),
        ];
        for (name, bytes) in cases {
            assert!(
                matches!(probe_media(bytes), Err(DecodeError::Corrupt { .. })),
                "{name}"
            );
            let frames = sample_video_frames(bytes, &sampling(1.0, 0.0, 4));
            assert!(matches!(frames, Err(DecodeError::Corrupt { .. })), "{name}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(nobody_connected(&listener), "something connected to {at}");
    }

    /// Every path frees what FFmpeg allocated: 200 more rounds of each call must not grow the
    /// resident set (reusing one `Packet` across `av_read_frame` calls once leaked every
    /// packet here). Ignored because other tests running beside it move the RSS; run it alone:
    /// `cargo test --lib decode::av::tests::no_leaks -- --ignored --test-threads 1`.
    #[test]
    #[ignore]
    fn no_leaks() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        let mp4 = media("video/carphone_pristine.mp4");
        let wav = speech();
        let text = b"hello hello hello".repeat(100);
        type Op<'a> = Box<dyn Fn() + 'a>;
        let ops: Vec<(&str, Op)> = vec![
            ("probe", Box::new(|| drop(probe_media(&mp4)))),
            ("probe text", Box::new(|| drop(probe_media(&text)))),
            (
                "probe half",
                Box::new(|| drop(probe_media(&mp4[..mp4.len() / 2]))),
            ),
            (
                "sample",
                Box::new(|| drop(sample_video_frames(&mp4, &sampling(2.0, 20.0, 4)))),
            ),
            (
                "sample with nvdec asked",
                Box::new(|| {
                    let mut s = sampling(2.0, 20.0, 4);
                    s.cuda_device = Some(0);
                    drop(sample_video_frames(&mp4, &s))
                }),
            ),
            (
                "audio",
                Box::new(|| drop(decode_audio(&wav, 16_000, 10.0, -60.0))),
            ),
            (
                "audio header",
                Box::new(|| drop(decode_audio(&wav[..44], 16_000, 10.0, -60.0))),
            ),
        ];
        for (name, op) in &ops {
            for _ in 0..20 {
                op();
            }
            let before = rss_kib();
            for _ in 0..200 {
                op();
            }
            let after = rss_kib();
            assert!(after < before + 4096, "{name}: RSS {before} -> {after} KiB");
        }
    }

    /// Decode speed, for the record (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn decode_speed() {
        let bytes = media("video/bigbuckbunny.mp4");
        for threshold in [0.0, 30.0] {
            let start = std::time::Instant::now();
            let out = sample_video_frames(&bytes, &sampling(1.0, threshold, 1000)).unwrap();
            let seconds = start.elapsed().as_secs_f64();
            eprintln!(
                "bigbuckbunny 1280x720, scene threshold {threshold}: {} frames in {seconds:.3} s = {:.0} frames/s",
                out.decoded_frames,
                out.decoded_frames as f64 / seconds
            );
        }
    }
}
