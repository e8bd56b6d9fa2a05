//! The run report in a real browser: the quickstart run and a run with video, audio and CLIP
//! write `report.html` and `report.json`; `mmcurate report OUTPUT` rebuilds the same files
//! from the ledger and shards; headless Chromium (Debian's `chromium`, installed by
//! scripts/test.sh) opens the page over the DevTools protocol (tests/python/browser_check.py)
//! and every section must be there, every image must load, no request may leave the file and
//! the console must stay clean. The quickstart's screenshot goes to docs/report-quickstart.png.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SECTIONS: [&str; 7] = [
    "funnel",
    "histograms",
    "dropped",
    "duplicates",
    "clip",
    "timing",
    "sweeps",
];

/// The Chromium binary: MMCURATE_CHROMIUM, else `chromium` on the PATH.
fn chromium() -> String {
    let name = std::env::var("MMCURATE_CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is not installed: run the tests with `bash scripts/test.sh`, which installs Debian's chromium"
    );
    name
}

/// Opens the page in headless Chromium; returns what the page showed and did.
fn open_in_browser(page: &Path, screenshot: Option<&Path>) -> Value {
    let mut args = vec![chromium(), page.display().to_string()];
    if let Some(path) = screenshot {
        args.push(path.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python_json("browser_check.py", &args)
}

/// What must hold of any report page in a browser.
fn assert_page_is_whole_and_offline(facts: &Value, page: &Path) {
    let sections: Vec<&str> = facts["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(sections, SECTIONS, "{facts}");
    let images = facts["images"].as_array().unwrap();
    assert!(!images.is_empty(), "{facts}");
    for image in images {
        assert_eq!(image["complete"], true, "{image}");
        assert!(image["naturalWidth"].as_u64().unwrap() > 0, "{image}");
        assert!(image["src"]
            .as_str()
            .unwrap()
            .starts_with("data:image/jpeg;base64,"));
    }
    let own = format!("file://{}", page.display());
    for url in facts["requests"].as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(
            url == own || url.starts_with("data:"),
            "the page requested {url}"
        );
    }
    assert_eq!(facts["errors"], Value::Array(vec![]), "{facts}");
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&read(path)).unwrap()
}

/// The histogram with this id.
fn histogram<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["histograms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id)
        .unwrap_or_else(|| panic!("no {id} histogram"))
}

/// The threshold drawn on a histogram, by config key.
fn threshold<'a>(h: &'a Value, key: &str) -> &'a Value {
    h["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == key)
        .unwrap_or_else(|| panic!("no {key} on {}", h["id"]))
}

fn reasons_shown(report: &Value) -> Vec<String> {
    report["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["reason"].as_str().unwrap().to_string())
        .collect()
}

/// The rebuilt report is the run's own, byte for byte.
fn assert_rebuild_is_identical(output: &Path) {
    // The current version's report, rebuilt from the output root (through current.json).
    let version = current_version(output);
    let html = read(version.join("report.html"));
    let json = read(version.join("report.json"));
    std::fs::remove_file(version.join("report.html")).unwrap();
    let text = ok(&mmcurate(&["report", output.to_str().unwrap()]));
    assert!(text.starts_with("report written: file://"), "{text}");
    assert!(
        read(version.join("report.json")) == json,
        "report.json differs"
    );
    assert!(
        read(version.join("report.html")) == html,
        "report.html differs"
    );
}

#[test]
fn quickstart_report_shows_every_section_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    let set = format!("run.output={}", output.display());
    ok(&mmcurate(&[
        "run",
        "configs/quickstart.toml",
        "--set",
        &set,
    ]));
    let manifest = json_file(&current_version(&output).join("manifest.json"));
    let report = json_file(&current_version(&output).join("report.json"));

    let funnel = &report["funnel"];
    assert_eq!(funnel["samples"], manifest["counts"]["samples"]);
    assert_eq!(funnel["kept"], manifest["counts"]["kept"]);
    for stage in funnel["stages"].as_array().unwrap() {
        let name = stage["stage"].as_str().unwrap();
        let expected = manifest["counts"]["dropped_by_stage"][name]
            .as_u64()
            .unwrap_or(0);
        assert_eq!(stage["dropped"], expected, "{name}");
    }
    assert_eq!(funnel["inputs"][0]["format"], "files");

    // Every sample below min_sharpness (30) and outside the brightness range is dropped.
    let sharpness = histogram(&report, "image_sharpness");
    let min_sharpness = threshold(sharpness, "filters.image.min_sharpness");
    assert_eq!(min_sharpness["value"], 30.0);
    assert!(min_sharpness["below"]["dropped"].as_u64().unwrap() >= 1);
    assert_eq!(min_sharpness["below"]["kept"], 0);
    let brightness = histogram(&report, "image_brightness");
    assert_eq!(
        threshold(brightness, "filters.image.min_brightness")["below"]["kept"],
        0
    );
    assert_eq!(
        threshold(brightness, "filters.image.max_brightness")["below"]["samples"],
        brightness["samples"].as_u64().unwrap()
            - threshold(brightness, "filters.image.max_brightness")["above"]["samples"]
                .as_u64()
                .unwrap()
    );
    let bins: u64 = sharpness["bins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["kept"].as_u64().unwrap() + b["dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(bins, sharpness["samples"].as_u64().unwrap());

    let reasons = reasons_shown(&report);
    for reason in [
        "too_blurry",
        "too_dark",
        "too_bright",
        "empty_file",
        "not_an_image",
    ] {
        assert!(reasons.contains(&reason.to_string()), "{reasons:?}");
    }
    let near = report["duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["reason"] == "near_duplicate")
        .unwrap();
    assert_eq!(near["threshold"], 6.0);
    let distances: Vec<f64> = near["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["distance"].as_f64().unwrap())
        .collect();
    assert!(distances.windows(2).all(|w| w[0] >= w[1]), "{distances:?}");
    let pair = &near["pairs"][0];
    assert_eq!(pair["kept"]["kept"], true);
    assert!(pair["kept"]["caption"].is_string(), "{pair}");
    assert_eq!(report["clip"]["scored"], 0);

    assert_rebuild_is_identical(&output);

    let page = current_version(&output).join("report.html");
    let screenshot = root().join("docs/report-quickstart.png");
    let facts = open_in_browser(&page, Some(&screenshot));
    assert_page_is_whole_and_offline(&facts, &page);
    assert!(facts["thresholds"].as_u64().unwrap() >= 4, "{facts}");
    let png = read(&screenshot);
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 1280);
}

#[cfg(feature = "av")]
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

/// Images with captions from the quickstart, videos and audio made by ffmpeg here.
#[cfg(feature = "av")]
fn media_corpus(dir: &Path) -> PathBuf {
    let images = root().join("examples/quickstart/images");
    let p = |name: &str| dir.join(name).display().to_string();
    std::fs::create_dir_all(dir).unwrap();
    for (name, caption) in [
        ("opencv_baboon.jpg", "a baboon with a colourful face"),
        ("opencv_butterfly.jpg", "a butterfly on a flower"),
        ("skimage_camera.png", "a man with a camera on a tripod"),
        ("opencv_aero1.jpg", "aeroplane"),
        ("skimage_rocket.jpg", "a rocket on its launch pad"),
    ] {
        std::fs::copy(images.join(name), dir.join(name)).unwrap();
        let stem = name.rsplit_once('.').unwrap().0;
        std::fs::write(dir.join(format!("{stem}.txt")), caption).unwrap();
    }
    // A moving test pattern (kept), a still picture (static), a one-second clip (too short).
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=4:size=320x240:rate=25",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        &p("pattern.mp4"),
    ]);
    std::fs::write(dir.join("pattern.txt"), "a colourful moving test pattern").unwrap();
    let baboon = images.join("opencv_baboon.jpg").display().to_string();
    ffmpeg(&[
        "-loop",
        "1",
        "-i",
        &baboon,
        "-t",
        "3",
        "-r",
        "10",
        "-vf",
        "scale=256:256",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        &p("still.mp4"),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=duration=1:size=160x120:rate=25",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        &p("short.mp4"),
    ]);
    // A tone (kept), the same tone as FLAC (a duplicate), silence (too silent).
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=3",
        "-c:a",
        "pcm_s16le",
        &p("tone.wav"),
    ]);
    ffmpeg(&["-i", &p("tone.wav"), "-c:a", "flac", &p("tone_copy.flac")]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=16000:cl=mono",
        "-t",
        "3",
        "-c:a",
        "pcm_s16le",
        &p("silence.wav"),
    ]);
    std::fs::write(dir.join("notes.mp4"), b"not a video at all\n").unwrap();
    dir.to_path_buf()
}

#[cfg(feature = "av")]
#[test]
fn video_audio_and_clip_report_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = media_corpus(&tmp.path().join("corpus"));
    let output = tmp.path().join("out");
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[run]
name = "av-clip"
output = "{}"
threads = 2

[[inputs]]
uri = "{}"

[filters.video]
min_duration = 2.0
min_motion = 0.5

[filters.audio]
max_silence_fraction = 0.5

[filters.alignment]
keep_top_fraction = 0.5

[models.clip]
path = "{}"
batch_size = 4
"#,
            output.display(),
            corpus.display(),
            root().join("tests/fixtures/clip-tiny").display()
        ),
    )
    .unwrap();
    ok(&mmcurate(&["run", config.to_str().unwrap()]));
    let report = json_file(&current_version(&output).join("report.json"));
    let reasons = reasons_shown(&report);
    for reason in [
        "static_video",
        "too_short",
        "too_silent",
        "not_media",
        "low_clip_score",
    ] {
        assert!(reasons.contains(&reason.to_string()), "{reasons:?}");
    }
    let duration = histogram(&report, "video_duration");
    let min_duration = threshold(duration, "filters.video.min_duration");
    assert_eq!(min_duration["value"], 2.0);
    assert_eq!(min_duration["below"]["kept"], 0);
    assert!(min_duration["below"]["dropped"].as_u64().unwrap() >= 1);
    let silence = threshold(
        histogram(&report, "audio_silence"),
        "filters.audio.max_silence_fraction",
    );
    assert_eq!(silence["above"]["kept"], 0);
    assert!(silence["above"]["dropped"].as_u64().unwrap() >= 1);
    histogram(&report, "video_motion");

    let audio = report["duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["reason"] == "audio_duplicate")
        .unwrap_or_else(|| panic!("no audio duplicates: {}", report["duplicates"]));
    assert_eq!(audio["pairs"][0]["duplicate"]["name"], "tone_copy.flac");
    assert_eq!(audio["pairs"][0]["kept"]["name"], "tone.wav");

    // keep_top_fraction's quantile is drawn on the CLIP histogram; every score below it is dropped.
    let clip = threshold(
        histogram(&report, "clip_score"),
        "alignment.quantile_threshold",
    );
    assert_eq!(clip["below"]["kept"], 0);
    let scored = report["clip"]["scored"].as_u64().unwrap();
    assert!(scored >= 4, "{scored}");
    let lowest = report["clip"]["lowest"].as_array().unwrap();
    let highest = report["clip"]["highest"].as_array().unwrap();
    assert!(lowest[0]["value"].as_f64().unwrap() <= highest[0]["value"].as_f64().unwrap());
    assert!(
        lowest.iter().all(|t| t["caption"].is_string()),
        "{lowest:?}"
    );
    let scores: Vec<f64> = lowest
        .iter()
        .map(|t| t["value"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");

    assert_rebuild_is_identical(&output);
    let page = current_version(&output).join("report.html");
    let facts = open_in_browser(&page, None);
    assert_page_is_whole_and_offline(&facts, &page);
    assert!(facts["video_tiles"].as_u64().unwrap() >= 2, "{facts}");
    assert!(facts["waveforms"].as_u64().unwrap() >= 2, "{facts}");
}

/// NumPy's default percentile (linear between the two nearest ranks).
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (values.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (rank - lo as f64)
}

#[test]
fn calibrate_sweeps_a_sample_with_a_percentile_threshold_and_writes_no_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let cal = tmp.path().join("cal");
    let run_output = format!("run.output={}", tmp.path().join("out").display());
    let calibrate = |dir: &Path| {
        ok(&mmcurate(&[
            "calibrate",
            "configs/quickstart.toml",
            "--sample",
            "14",
            "--output",
            dir.to_str().unwrap(),
            "--set",
            &run_output,
            "--set",
            "filters.image.min_sharpness=p25",
        ]))
    };
    let text = calibrate(&cal);
    assert!(text.contains("calibrated on 14 of 21 unit(s)"), "{text}");
    assert!(text.contains("dedup.phash_max_distance"), "{text}");
    assert!(!cal.join("shards").exists());
    assert!(
        !tmp.path().join("out").exists(),
        "calibrate wrote to the run's output"
    );

    let manifest = json_file(&cal.join("manifest.json"));
    assert_eq!(manifest["calibration"]["units_planned"], 21);
    assert_eq!(manifest["calibration"]["units_measured"], 14);
    assert_eq!(manifest["counts"]["samples"], 14);
    assert_eq!(manifest["shards"], Value::Array(vec![]));
    assert_eq!(
        manifest["config"]["filters"]["image"]["min_sharpness"],
        "p25"
    );

    // The percentile is resolved over every measured image of the sample, recorded with its
    // value, and every kept image is at or above it.
    let rows = ledger_rows(&cal);
    assert_eq!(rows.len(), 14);
    let mut sharpness: Vec<f64> = rows
        .iter()
        .filter_map(|r| r["sharpness"].as_f64())
        .collect();
    let expected = percentile(&mut sharpness, 25.0);
    let resolved = &manifest["thresholds"]["filters.image.min_sharpness"];
    assert_eq!(resolved["percentile"], 25.0);
    assert_eq!(resolved["samples"], sharpness.len());
    let value = resolved["value"].as_f64().unwrap();
    assert!((value - expected).abs() < 1e-9, "{value} vs {expected}");
    let blurry: Vec<&Value> = rows
        .iter()
        .filter(|r| r["drop_reason"] == "too_blurry")
        .collect();
    assert_eq!(resolved["dropped"], blurry.len());
    assert!(!blurry.is_empty());
    for row in &rows {
        if row["kept"] == true {
            assert!(row["sharpness"].as_f64().unwrap() >= value, "{row}");
        }
    }
    for row in &blurry {
        assert!(row["sharpness"].as_f64().unwrap() < value, "{row}");
        assert!(
            row["drop_detail"].as_str().unwrap().contains("p25"),
            "{row}"
        );
    }

    // The sweeps: the filter's at the resolved value, and the pHash dedup's at the configured
    // distance drops exactly what the decisions dropped.
    let report = json_file(&cal.join("report.json"));
    let sweeps = &report["sweeps"];
    let sharp = sweeps["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "filters.image.min_sharpness")
        .unwrap();
    assert_eq!(sharp["configured"].as_f64().unwrap(), value);
    assert_eq!(sharp["samples"], sharpness.len());
    let kept: Vec<u64> = sharp["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kept"].as_u64().unwrap())
        .collect();
    assert_eq!(kept.len(), 21);
    assert_eq!(kept[0], sharpness.len() as u64);
    assert!(kept.windows(2).all(|w| w[0] >= w[1]), "{kept:?}");
    let phash = sweeps["dedups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == "dedup.phash_max_distance")
        .unwrap();
    assert_eq!(phash["configured"], 6.0);
    let at_6 = phash["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["threshold"] == 6.0)
        .unwrap();
    let near = rows
        .iter()
        .filter(|r| r["drop_reason"] == "near_duplicate")
        .count();
    assert_eq!(at_6["dropped"], near);

    // The same sample on every calibration.
    let again = tmp.path().join("again");
    calibrate(&again);
    let ids = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&rows), ids(&ledger_rows(&again)));

    let page = cal.join("report.html");
    let facts = open_in_browser(&page, None);
    assert_page_is_whole_and_offline(&facts, &page);
    let html = String::from_utf8(read(&page)).unwrap();
    assert!(html.contains(r#"data-key="filters.image.min_sharpness""#));
    assert!(html.contains(r#"<table class="sweep" data-key="dedup.phash_max_distance">"#));
}
