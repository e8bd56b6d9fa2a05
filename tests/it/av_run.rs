//! The video and audio lanes end to end, on the real media of tests/media, on the speech clip
//! tests/media/make_speech.sh makes (espeak-ng), and on copies the `ffmpeg` command-line tool
//! makes here (re-encoded, resized, re-containered, trimmed, level shifted, truncated, empty,
//! mislabelled): the ledger read back with pyarrow, the shards with the Python `webdataset`
//! library and GNU tar.

use crate::common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn media(kind: &str, name: &str) -> PathBuf {
    test_media_file(kind, name)
}

/// Runs the ffmpeg command-line tool (installed by scripts/setup.sh).
fn ffmpeg(args: &[&str]) {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn write_caption(dir: &Path, stem: &str, caption: &str) {
    std::fs::write(dir.join(format!("{stem}.txt")), caption).unwrap();
}

/// The corpus: file name → what the run must decide (status, reason, duplicate of).
type Expected = BTreeMap<String, (&'static str, Option<&'static str>, Option<String>)>;

fn make_corpus(dir: &Path) -> Expected {
    let bikes = media("video", "bikes.mp4");
    let bunny = media("video", "bigbuckbunny.mp4");
    let tree = media("video", "opencv_tree.avi");
    let vibe = media("audio", "Kevin_MacLeod_-_Vibe_Ace.ogg");
    let speech = make_speech(dir, "speech.wav");
    let p = |name: &str| dir.join(name);

    std::fs::copy(&bikes, p("bikes.mp4")).unwrap();
    write_caption(dir, "bikes", "cyclists riding along a road");
    // Re-encoded at half the size and a lower quality: the same video.
    ffmpeg(&[
        "-i",
        s(&bikes),
        "-vf",
        "scale=320:-2",
        "-c:v",
        "libx264",
        "-crf",
        "32",
        "-preset",
        "veryfast",
        s(&p("bikes_small.mp4")),
    ]);
    // The same streams in another container.
    ffmpeg(&["-i", s(&bikes), "-c", "copy", s(&p("bikes_remuxed.mkv"))]);
    std::fs::copy(&bunny, p("bigbuckbunny.mp4")).unwrap();
    write_caption(dir, "bigbuckbunny", "a cartoon rabbit in a meadow");
    std::fs::copy(&tree, p("opencv_tree.avi")).unwrap();
    // A still image for 3 s: no motion at all.
    ffmpeg(&[
        "-loop",
        "1",
        "-i",
        s(&media("images", "opencv_baboon.jpg")),
        "-t",
        "3",
        "-r",
        "25",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        s(&p("still.mp4")),
    ]);
    // One second: shorter than min_duration.
    ffmpeg(&[
        "-i",
        s(&bikes),
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        s(&p("bikes_1s.mp4")),
    ]);
    // Cut in half: the index (moov) is at the end of this file, so nothing can be read.
    let whole = read(&bikes);
    std::fs::write(p("bikes_truncated.mp4"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(p("empty.mp4"), b"").unwrap();
    std::fs::write(p("notes.mp4"), b"this is a text file with a video name\n").unwrap();
    // Mislabelled: a video named .wav is a video, named by what its bytes are.
    std::fs::copy(media("video", "carphone_pristine.mp4"), p("carphone.wav")).unwrap();

    std::fs::copy(&vibe, p("vibe.ogg")).unwrap();
    write_caption(dir, "vibe", "an upbeat instrumental track");
    ffmpeg(&[
        "-i",
        s(&vibe),
        "-vn",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "128k",
        s(&p("vibe.mp3")),
    ]);
    ffmpeg(&[
        "-i",
        s(&vibe),
        "-vn",
        "-af",
        "volume=-10dB",
        "-ar",
        "22050",
        s(&p("vibe_quiet.flac")),
    ]);
    // A sine (amplitude 1/8) raised 24 dB, to twice full scale: clipped.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=3",
        "-af",
        "volume=24dB",
        "-c:a",
        "pcm_s16le",
        s(&p("clipped.wav")),
    ]);
    // Three seconds of digital silence.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=16000:cl=mono",
        "-t",
        "3",
        "-c:a",
        "pcm_s16le",
        s(&p("silence.wav")),
    ]);
    std::fs::write(p("empty.wav"), b"").unwrap();
    // Mislabelled the other way: a WAV tone named .mp4 is audio.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=880:duration=3",
        "-c:a",
        "pcm_s16le",
        "-f",
        "wav",
        s(&p("tone.mp4")),
    ]);
    // A WAV whose header declares 29 s, cut after its first tenth.
    let wav = read(&speech);
    std::fs::write(p("speech_truncated.wav"), &wav[..wav.len() / 10]).unwrap();

    let kept = ("kept", None, None);
    let drop = |reason| ("dropped", Some(reason), None);
    let dup = |reason, of: &str| ("dropped", Some(reason), Some(format!("0:{of}")));
    BTreeMap::from([
        ("bikes.mp4".to_string(), kept.clone()),
        (
            "bikes_small.mp4".to_string(),
            dup("video_duplicate", "bikes.mp4"),
        ),
        (
            "bikes_remuxed.mkv".to_string(),
            dup("video_duplicate", "bikes.mp4"),
        ),
        ("bigbuckbunny.mp4".to_string(), kept.clone()),
        ("opencv_tree.avi".to_string(), kept.clone()),
        ("still.mp4".to_string(), drop("static_video")),
        ("bikes_1s.mp4".to_string(), drop("too_short")),
        ("bikes_truncated.mp4".to_string(), drop("unreadable")),
        ("empty.mp4".to_string(), drop("empty_file")),
        ("notes.mp4".to_string(), drop("not_media")),
        ("carphone.wav".to_string(), kept.clone()),
        ("tone.mp4".to_string(), kept.clone()),
        ("vibe.ogg".to_string(), kept.clone()),
        ("vibe.mp3".to_string(), dup("audio_duplicate", "vibe.ogg")),
        (
            "vibe_quiet.flac".to_string(),
            dup("audio_duplicate", "vibe.ogg"),
        ),
        ("speech.wav".to_string(), kept.clone()),
        ("clipped.wav".to_string(), drop("too_clipped")),
        ("silence.wav".to_string(), drop("too_silent")),
        ("empty.wav".to_string(), drop("empty_file")),
        ("speech_truncated.wav".to_string(), drop("unreadable")),
    ])
}

fn config(dir: &Path, input: &Path, output: &Path, extra: &str) -> PathBuf {
    let path = dir.join("job.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[run]
output = "{}"
threads = 2
[[inputs]]
uri = "{}"
[filters.video]
min_duration = 2.0
min_motion = 0.5
[filters.audio]
max_clipped_fraction = 0.01
max_silence_fraction = 0.9
{extra}
"#,
            output.display(),
            input.display()
        ),
    )
    .unwrap();
    path
}

fn by_name(rows: &[Value]) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

#[test]
fn videos_and_audio_are_measured_deduplicated_and_written() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("media");
    std::fs::create_dir(&input).unwrap();
    let expected = make_corpus(&input);
    let output = tmp.path().join("out");
    let job = config(tmp.path(), &input, &output, "");
    let stdout = ok(&mmcurate(&["run", s(&job)]));
    assert!(stdout.contains("kept"), "{stdout}");

    let rows = by_name(&ledger_rows(&output));
    assert_eq!(rows.len(), expected.len(), "one ledger row per input");
    for (name, (status, reason, duplicate_of)) in &expected {
        let row = &rows[name];
        let got = (
            row["status"].as_str().unwrap(),
            row["drop_reason"].as_str(),
            row["duplicate_of"].as_str().map(str::to_string),
        );
        assert_eq!(
            got,
            (*status, *reason, duplicate_of.clone()),
            "{name}: {}",
            row["drop_detail"]
        );
    }

    // What the container says, and what the frames measured.
    let bikes = &rows["bikes.mp4"];
    assert_eq!(bikes["media_kind"], "video");
    assert_eq!(bikes["format"], "mp4");
    assert_eq!(bikes["video_codec"], "h264");
    assert_eq!(
        (bikes["width"].as_u64(), bikes["height"].as_u64()),
        (Some(640), Some(272))
    );
    assert_eq!(bikes["fps"].as_f64(), Some(25.0));
    assert!((bikes["duration_seconds"].as_f64().unwrap() - 10.0).abs() < 0.05);
    let times: Vec<f64> = bikes["frame_timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    // Ten regular samples at 0, 1, … 9 s (scene-cut frames may come between them).
    for second in 0..10 {
        assert!(
            times.iter().any(|t| (t - second as f64).abs() < 0.05),
            "no frame sampled at {second} s: {times:?}"
        );
    }
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert_eq!(
        bikes["frame_phashes"].as_array().unwrap().len(),
        times.len()
    );
    assert!(bikes["motion_score"].as_f64().unwrap() > 0.5);
    assert!(bikes["sharpness"].as_f64().unwrap() > 0.0);
    let still = &rows["still.mp4"];
    assert!(still["motion_score"].as_f64().unwrap() < 0.5, "{still}");
    // The re-encoded copy's frames line up with the original's within a few bits.
    let small = &rows["bikes_small.mp4"];
    assert!(
        small["duplicate_distance"].as_f64().unwrap() <= 8.0,
        "{small}"
    );
    let remuxed = &rows["bikes_remuxed.mkv"];
    assert_eq!(remuxed["format"], "mkv");
    assert!(
        remuxed["duplicate_distance"].as_f64().unwrap() <= 1.0,
        "{remuxed}"
    );
    // Big Buck Bunny's 6-channel AAC track is measured too.
    let bunny = &rows["bigbuckbunny.mp4"];
    assert_eq!(bunny["audio_codec"], "aac");
    assert_eq!(bunny["audio_channels"].as_u64(), Some(6));
    assert_eq!(bunny["audio_sample_rate"].as_u64(), Some(48000));

    assert_eq!(
        (
            rows["carphone.wav"]["media_kind"].as_str(),
            rows["carphone.wav"]["format"].as_str()
        ),
        (Some("video"), Some("mp4"))
    );
    assert_eq!(
        (
            rows["tone.mp4"]["media_kind"].as_str(),
            rows["tone.mp4"]["format"].as_str()
        ),
        (Some("audio"), Some("wav"))
    );
    let vibe = &rows["vibe.ogg"];
    assert_eq!(
        vibe["media_kind"], "audio",
        "cover art is not a video stream"
    );
    assert_eq!(vibe["format"], "ogg");
    assert_eq!(vibe["audio_codec"], "vorbis");
    assert_eq!(vibe["audio_sample_rate"].as_u64(), Some(44100));
    assert_eq!(vibe["audio_channels"].as_u64(), Some(2));
    assert!((vibe["duration_seconds"].as_f64().unwrap() - 61.46).abs() < 0.1);
    let peak = vibe["audio_peak_dbfs"].as_f64().unwrap();
    let rms = vibe["audio_rms_dbfs"].as_f64().unwrap();
    assert!(
        peak <= 0.0 && rms < peak && rms > -40.0,
        "peak {peak}, rms {rms}"
    );
    assert!(!vibe["audio_fingerprint"].as_array().unwrap().is_empty());
    for copy in ["vibe.mp3", "vibe_quiet.flac"] {
        let ber = rows[copy]["duplicate_distance"].as_f64().unwrap();
        assert!(ber < 0.25, "{copy}: bit error rate {ber}");
    }
    let quiet = &rows["vibe_quiet.flac"];
    let level_shift = quiet["audio_rms_dbfs"].as_f64().unwrap() - rms;
    assert!(
        (level_shift + 10.0).abs() < 0.5,
        "-10 dB copy measured {level_shift} dB"
    );
    let clipped = rows["clipped.wav"]["audio_clipped_fraction"]
        .as_f64()
        .unwrap();
    assert!(clipped > 0.3, "{clipped}");
    assert_eq!(
        rows["silence.wav"]["audio_silence_fraction"].as_f64(),
        Some(1.0)
    );
    assert!(rows["speech_truncated.wav"]["drop_detail"]
        .as_str()
        .unwrap()
        .contains("truncated"));

    // The shards hold the kept files' original bytes under their detected extension, with the
    // caption; read with the webdataset library.
    let shards = python_json("read_shards.py", &[s(&output)]);
    let samples = shards["samples"].as_array().unwrap();
    let kept: Vec<&String> = expected
        .iter()
        .filter(|(_, e)| e.0 == "kept")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(samples.len(), kept.len());
    for name in kept {
        let key = rows[name]["key"].as_str().unwrap();
        let sample = samples.iter().find(|x| x["key"] == key).unwrap();
        let ext = rows[name]["format"].as_str().unwrap();
        let original = hex::encode(Sha256::digest(read(input.join(name))));
        assert_eq!(sample["parts"][ext]["sha256"], original.as_str(), "{name}");
        let json = &sample["json"]["mmcurate"]["measurements"];
        assert_eq!(json["media_kind"], rows[name]["media_kind"], "{name}");
    }
    let bikes_sample = samples
        .iter()
        .find(|x| x["key"] == rows["bikes.mp4"]["key"])
        .unwrap();
    assert_eq!(bikes_sample["txt"], "cyclists riding along a road");

    // Hugging Face `datasets` reads every series of shards, sample for sample as the ledger.
    let report = crate::hf_datasets::assert_datasets_reads_every_kept_sample(&output);
    let rows_of = |series: &str| report["series"][series]["rows"].as_u64();
    assert_eq!(
        report["series"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["avi", "mp4", "ogg", "wav"]
    );
    // bikes, bigbuckbunny and carphone.wav (an MP4 under a .wav name); tone.mp4 (a WAV) and
    // speech.
    assert_eq!(
        [
            rows_of("avi"),
            rows_of("mp4"),
            rows_of("ogg"),
            rows_of("wav")
        ],
        [Some(1), Some(3), Some(1), Some(2)]
    );
    let column = |series: &str, col: &str| {
        report["series"][series]["columns"][col]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(column("mp4", "mp4").starts_with("Video("), "{report}");
    assert!(column("avi", "avi").starts_with("Video("), "{report}");
    for audio in ["ogg", "wav"] {
        let typed = column(audio, audio);
        assert!(
            typed.starts_with("Audio(") || typed.contains("binary"),
            "{audio}: {typed}"
        );
    }
    // The uncaptioned videos of the captioned mp4 series have an empty caption.
    let carphone = report["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["key"] == "carphone")
        .unwrap();
    assert_eq!(carphone["txt"], "");

    let manifest: Value =
        serde_json::from_slice(&read(current_version(&output).join("manifest.json"))).unwrap();
    assert_eq!(
        manifest["counts"]["samples"].as_u64(),
        Some(expected.len() as u64)
    );
    assert_eq!(
        manifest["counts"]["dropped_by_reason"]["audio_duplicate"].as_u64(),
        Some(2)
    );
    let kinds = &manifest["counts"]["by_media_kind"];
    let kind = |k: &str| (kinds[k]["samples"].as_u64(), kinds[k]["kept"].as_u64());
    // bikes (×3), bigbuckbunny, opencv_tree, still, bikes_1s, carphone.wav; the truncated
    // WAV is known as audio from its header; the half MP4 (no index), empty files and text
    // are not recognised.
    assert_eq!(kind("video"), (Some(8), Some(4)));
    assert_eq!(kind("audio"), (Some(8), Some(3)));
    assert_eq!(kind("unknown"), (Some(4), Some(0)));
    assert_eq!(rows["speech_truncated.wav"]["media_kind"], "audio");
    // No GPU here: every video whose frames were sampled was decoded on the CPU, the kept four
    // among them.
    let decoders = &manifest["run"]["video_decoders"];
    assert!(decoders["nvdec"].is_null(), "{decoders}");
    let cpu = decoders["cpu"].as_u64().unwrap_or(0);
    assert!((4..=8).contains(&cpu), "{decoders}");
}

#[test]
fn keyframes_are_written_as_jpeg_parts_of_the_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("media");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(
        media("video", "carphone_pristine.mp4"),
        input.join("carphone.mp4"),
    )
    .unwrap();
    let output = tmp.path().join("out");
    let job = config(
        tmp.path(),
        &input,
        &output,
        "[video]\nwrite_keyframes = true\nsample_fps = 2.0\nscene_threshold = 0.0",
    );
    ok(&mmcurate(&["run", s(&job)]));
    let rows = ledger_rows(&output);
    let times = rows[0]["frame_timestamps"].as_array().unwrap().len();
    // 4.0 s at 2 samples per second, no scene detection.
    assert_eq!(times, 8);
    let tar = Command::new("tar")
        .arg("-tf")
        .arg(current_version(&output).join("shards/mp4_8frames-000000.tar"))
        .output()
        .unwrap();
    let members = String::from_utf8(tar.stdout).unwrap();
    let mut names: Vec<&str> = members.lines().collect();
    names.sort();
    let mut want = vec!["carphone.json".to_string(), "carphone.mp4".to_string()];
    want.extend((0..times).map(|n| format!("carphone.{n:03}.jpg")));
    want.sort();
    assert_eq!(names, want);
    // Each keyframe is a JPEG of the frame's size.
    let shards = python_json("read_shards.py", &[s(&output)]);
    let parts = &shards["samples"][0]["parts"];
    assert!(
        parts["000.jpg"]["bytes"].as_u64().unwrap() > 1000,
        "{parts}"
    );
}

/// With a CLIP model, a video is embedded through its sampled frames: its embedding is the
/// normalised mean of theirs and its score the mean (or max) of their scores, computed here
/// again from the library's own frame sampler and model; audio files are not embedded.
#[test]
fn clip_embeds_videos_through_their_frames_and_skips_audio() {
    use mmcurate::decode::av::{sample_video_frames, FrameSampling};
    use mmcurate::models::clip::Clip;
    use mmcurate::models::clip_preprocess::{clip_pixel_values_rgb, OPENAI_MEAN, OPENAI_STD};

    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("media");
    std::fs::create_dir(&input).unwrap();
    let bikes = media("video", "bikes.mp4");
    std::fs::copy(&bikes, input.join("bikes.mp4")).unwrap();
    write_caption(&input, "bikes", "cyclists riding along a road");
    std::fs::copy(
        media("video", "carphone_pristine.mp4"),
        input.join("carphone.mp4"),
    )
    .unwrap();
    std::fs::copy(
        media("audio", "Kevin_MacLeod_-_Vibe_Ace.ogg"),
        input.join("vibe.ogg"),
    )
    .unwrap();
    write_caption(&input, "vibe", "an upbeat instrumental track");
    let model = root().join("tests/fixtures/clip-tiny");
    let clip_table = format!(
        "[models.clip]\npath = \"{}\"\nbatch_size = 4\n",
        model.display()
    );

    let mut scores = Vec::new();
    for score in ["mean", "max"] {
        let output = tmp.path().join(format!("out-{score}"));
        let extra = format!("{clip_table}[video]\nclip_score = \"{score}\"\n");
        let job = config(tmp.path(), &input, &output, &extra);
        ok(&mmcurate(&["run", s(&job)]));
        let rows = by_name(&ledger_rows(&output));
        assert_eq!(rows["vibe.ogg"]["status"], "kept");
        assert!(
            rows["vibe.ogg"]["clip_model"].is_null(),
            "audio is not embedded"
        );
        assert_eq!(rows["carphone.mp4"]["clip_note"], "not scored: no caption");
        scores.push(rows["bikes.mp4"]["clip_score"].as_f64().unwrap());
        if score == "max" {
            continue;
        }
        let embeddings = python_json("read_embeddings.py", &[s(&output)]);
        let embedded: Vec<&str> = embeddings["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(embedded, ["0:bikes.mp4", "0:carphone.mp4"]);
        let stored: Vec<f64> = embeddings["rows"][0]["image"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();

        // The same frames, the same model, here.
        let sampling = FrameSampling {
            sample_fps: 1.0,
            scene_threshold: 30.0,
            max_frames: 16,
            min_side: 512,
            keep_rgb: true,
            cuda_device: None,
        };
        let frames = sample_video_frames(&read(&bikes), &sampling)
            .unwrap()
            .frames;
        let clip = Clip::load(
            &model,
            "fixture".into(),
            String::new(),
            false,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let size = clip.info.image_size;
        let pixels: Vec<f32> = frames
            .iter()
            .flat_map(|f| {
                let rgb = f.rgb.as_ref().unwrap();
                clip_pixel_values_rgb(
                    &rgb.pixels,
                    rgb.width,
                    rgb.height,
                    size,
                    OPENAI_MEAN,
                    OPENAI_STD,
                )
            })
            .collect();
        let dim = clip.info.dim;
        let unit = |v: &[f32]| -> Vec<f64> {
            let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            v.iter().map(|x| f64::from(*x) / norm).collect()
        };
        let features = clip.embed_images(&pixels, frames.len()).unwrap();
        let frame_units: Vec<Vec<f64>> = features.chunks(dim).map(unit).collect();
        let mut mean = vec![0f64; dim];
        for f in &frame_units {
            mean.iter_mut().zip(f).for_each(|(m, x)| *m += x);
        }
        let norm = mean.iter().map(|x| x * x).sum::<f64>().sqrt();
        let cosine: f64 = mean.iter().zip(&stored).map(|(m, s)| m / norm * s).sum();
        assert!(
            cosine > 0.99999,
            "stored video embedding vs frame mean: cosine {cosine}"
        );
        let ids = clip
            .tokenizer()
            .encode("cyclists riding along a road")
            .unwrap()
            .ids;
        let text = unit(&clip.embed_texts(&[ids]).unwrap());
        let frame_scores: Vec<f64> = frame_units
            .iter()
            .map(|f| f.iter().zip(&text).map(|(a, b)| a * b).sum())
            .collect();
        let expected_mean = frame_scores.iter().sum::<f64>() / frame_scores.len() as f64;
        let expected_max = frame_scores.iter().copied().fold(f64::MIN, f64::max);
        assert!(
            (scores[0] - expected_mean).abs() < 1e-5,
            "{} vs {expected_mean}",
            scores[0]
        );
        scores.push(expected_max);
    }
    assert!(
        (scores[1] - scores[2]).abs() < 1e-5,
        "max score {} vs {}",
        scores[1],
        scores[2]
    );
    assert!(scores[1] >= scores[0]);
}

/// The shipped `configs/video.toml` and `configs/audio.toml` run as they are, on real media
/// (only the input and output are set on the command line).
#[test]
fn video_and_audio_example_configs_run() {
    let tmp = tempfile::tempdir().unwrap();
    let videos = tmp.path().join("videos");
    let audio = tmp.path().join("audio");
    std::fs::create_dir_all(&videos).unwrap();
    std::fs::create_dir_all(&audio).unwrap();
    for name in ["bikes.mp4", "bigbuckbunny.mp4"] {
        std::fs::copy(media("video", name), videos.join(name)).unwrap();
        let stem = name.trim_end_matches(".mp4");
        write_caption(&videos, stem, "a short video clip");
    }
    std::fs::copy(
        media("video", "carphone_pristine.mp4"),
        videos.join("uncaptioned.mp4"),
    )
    .unwrap();
    std::fs::copy(
        media("audio", "Kevin_MacLeod_-_Vibe_Ace.ogg"),
        audio.join("vibe.ogg"),
    )
    .unwrap();
    make_speech(&audio, "speech.wav");
    for (config, input, kept) in [("video", &videos, 2), ("audio", &audio, 2)] {
        let output = tmp.path().join(format!("out-{config}"));
        ok(&mmcurate(&[
            "run",
            &format!("configs/{config}.toml"),
            "--set",
            &format!("inputs.0.uri={}", input.display()),
            "--set",
            &format!("run.output={}", output.display()),
        ]));
        let rows = by_name(&ledger_rows(&output));
        let kept_names: Vec<&String> = rows
            .iter()
            .filter(|(_, r)| r["status"] == "kept")
            .map(|(n, _)| n)
            .collect();
        assert_eq!(kept_names.len(), kept, "{config}: {rows:?}");
        if config == "video" {
            // The caption is required by the example.
            assert_eq!(rows["uncaptioned.mp4"]["drop_reason"], "no_caption");
        }
    }
}

/// Videos and audio inside WebDataset shards: the media part is the sample's video or audio
/// member, its caption travels with it, and the bytes come out unchanged.
#[test]
fn webdataset_shards_with_video_and_audio_members() {
    let tmp = tempfile::tempdir().unwrap();
    let members = tmp.path().join("members");
    std::fs::create_dir(&members).unwrap();
    std::fs::copy(media("video", "bikes.mp4"), members.join("clip01.mp4")).unwrap();
    write_caption(&members, "clip01", "cyclists on a road");
    ffmpeg(&[
        "-i",
        s(&media("audio", "Kevin_MacLeod_-_Vibe_Ace.ogg")),
        "-vn",
        "-t",
        "20",
        "-c:a",
        "flac",
        s(&members.join("clip02.flac")),
    ]);
    write_caption(&members, "clip02", "a piece of music");
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let tar = Command::new("tar")
        .current_dir(&members)
        .args(["--format=ustar", "-cf"])
        .arg(shards.join("part-000000.tar"))
        .args(["clip01.mp4", "clip01.txt", "clip02.flac", "clip02.txt"])
        .status()
        .unwrap();
    assert!(tar.success());
    let output = tmp.path().join("out");
    let job = config(tmp.path(), &shards, &output, "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "[[inputs]]\nuri",
        "[[inputs]]\nformat = \"webdataset\"\nuri",
    );
    std::fs::write(&job, text).unwrap();
    ok(&mmcurate(&["run", s(&job)]));
    let rows = ledger_rows(&output);
    let kinds: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap(),
                r["media_kind"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("clip01", "video", "kept"), ("clip02", "audio", "kept")]
    );
    let out = python_json("read_shards.py", &[s(&output)]);
    let samples = out["samples"].as_array().unwrap();
    let sample = |key: &str| samples.iter().find(|s| s["key"] == key).unwrap();
    let video = hex::encode(Sha256::digest(read(members.join("clip01.mp4"))));
    assert_eq!(sample("clip01")["parts"]["mp4"]["sha256"], video.as_str());
    assert_eq!(sample("clip02")["txt"], "a piece of music");
    assert!(sample("clip02")["parts"]["flac"]["bytes"].as_u64().unwrap() > 0);
}

/// Videos and audio keep the output contract: the same inputs give byte-identical shards and
/// ledger with 1 and 3 worker threads.
#[test]
fn video_and_audio_outputs_do_not_depend_on_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("media");
    std::fs::create_dir(&input).unwrap();
    let bikes = media("video", "bikes.mp4");
    std::fs::copy(&bikes, input.join("bikes.mp4")).unwrap();
    ffmpeg(&[
        "-i",
        s(&bikes),
        "-vf",
        "scale=320:-2",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        s(&input.join("bikes_small.mp4")),
    ]);
    std::fs::copy(
        media("video", "carphone_pristine.mp4"),
        input.join("carphone.mp4"),
    )
    .unwrap();
    let vibe = media("audio", "Kevin_MacLeod_-_Vibe_Ace.ogg");
    std::fs::copy(&vibe, input.join("vibe.ogg")).unwrap();
    ffmpeg(&[
        "-i",
        s(&vibe),
        "-vn",
        "-t",
        "30",
        "-c:a",
        "libmp3lame",
        s(&input.join("vibe.mp3")),
    ]);
    let mut outputs = Vec::new();
    for threads in [1, 3] {
        let output = tmp.path().join(format!("out-{threads}"));
        let job = config(tmp.path(), &input, &output, "");
        ok(&mmcurate(&[
            "run",
            s(&job),
            "--set",
            &format!("run.threads={threads}"),
        ]));
        let files: Vec<(String, Vec<u8>)> = tree(&current_version(&output))
            .into_iter()
            .filter(|(name, _)| name.starts_with("shards/") || name.starts_with("ledger/"))
            .collect();
        outputs.push(files);
    }
    assert!(
        outputs[0].len() >= 2,
        "{:?}",
        outputs[0].iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(
        outputs[0] == outputs[1],
        "shards or ledger differ between 1 and 3 threads"
    );
    let rows = by_name(&ledger_rows(&tmp.path().join("out-1")));
    assert_eq!(rows["bikes_small.mp4"]["drop_reason"], "video_duplicate");
    assert_eq!(rows["vibe.mp3"]["drop_reason"], "audio_duplicate");
}
