//! `[limits]` and `allow_outside` on inputs made by the tests (issue 13 items 1 and 5): parts
//! and samples over the byte limits (sparse files of a gigabyte, which cost no disk and are
//! never read), video and audio over their declared-size limits, the per-sample decode
//! deadline, and manifest rows naming local paths or buckets outside their input. Each is a
//! dropped ledger row with its own reason; the rest of the run goes on.

use crate::common::*;
use crate::s3::Moto;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

const GIB: u64 = 1 << 30;

fn job(dir: &Path, input: &str, format: &str) -> std::path::PathBuf {
    let path = dir.join("job.toml");
    std::fs::write(
        &path,
        format!(
            "[run]\noutput = {:?}\nthreads = 2\n[[inputs]]\nuri = {input:?}\nformat = {format:?}\n",
            dir.join("out").display().to_string(),
        ),
    )
    .unwrap();
    path
}

fn run(config: &Path, sets: &[&str]) -> BTreeMap<String, Value> {
    let mut args = vec!["run", config.to_str().unwrap()];
    for set in sets {
        args.extend(["--set", set]);
    }
    let output = config.parent().unwrap().join("out");
    let _ = std::fs::remove_dir_all(&output);
    ok(&mmcurate(&args));
    rows_by_id(&output)
}

fn rows_by_id(output: &Path) -> BTreeMap<String, Value> {
    ledger_rows(output)
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect()
}

/// The drop reason and detail of a row, asserting it was dropped.
fn dropped(rows: &BTreeMap<String, Value>, id: &str) -> (String, String) {
    let row = rows
        .get(id)
        .unwrap_or_else(|| panic!("no row {id}: {:?}", rows.keys()));
    assert_eq!(row["status"], "dropped", "{row}");
    (
        row["drop_reason"].as_str().unwrap().to_string(),
        row["drop_detail"].as_str().unwrap().to_string(),
    )
}

fn image(name: &str) -> Vec<u8> {
    read(root().join("examples/quickstart/images").join(name))
}

/// A file of `size` bytes that is all hole: no disk used, zeros if anyone reads it.
fn sparse(path: &Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

/// A tar member header for `name` declaring `size` bytes.
fn header(name: &str, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    header
}

#[test]
fn parts_and_samples_over_the_byte_limits_are_dropped_before_they_are_read() {
    let tmp = tempfile::tempdir().unwrap();

    // Files: a 1 GiB + 1 byte video, and an image whose caption brings the sample over 1 GiB
    // (each part under the part limit). Read, either would take a gigabyte of memory.
    let files = tmp.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("baboon.jpg"), image("opencv_baboon.jpg")).unwrap();
    sparse(&files.join("huge.mp4"), GIB + 1);
    let butterfly = image("opencv_butterfly.jpg");
    std::fs::write(files.join("pair.jpg"), &butterfly).unwrap();
    sparse(&files.join("pair.txt"), GIB - butterfly.len() as u64 + 1);
    let rows = run(&job(tmp.path(), files.to_str().unwrap(), "files"), &[]);
    assert_eq!(rows["0:baboon.jpg"]["status"], "kept");
    assert_eq!(
        dropped(&rows, "0:huge.mp4"),
        (
            "too_large".to_string(),
            "huge.mp4: 1073741825 bytes > limits.max_part_bytes 1073741824; not read".to_string()
        )
    );
    assert_eq!(
        dropped(&rows, "0:pair.jpg"),
        (
            "too_large".to_string(),
            "pair.txt: the sample's parts reach 1073741825 bytes > limits.max_sample_bytes 1073741824; not read"
                .to_string()
        )
    );

    // A shard: a member of 1 GiB + 512 bytes (a hole in the file) between two small samples.
    // It is skipped, not read into memory; the sample after it is read.
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let mut shard = std::fs::File::create(shards.join("s-000000.tar")).unwrap();
    let baboon = image("opencv_baboon.jpg");
    let mut member = |name: &str, data: &[u8], size: u64| {
        shard.write_all(header(name, size).as_bytes()).unwrap();
        shard.write_all(data).unwrap();
        let padded = size.div_ceil(512) * 512;
        shard
            .seek(SeekFrom::Current((padded - data.len() as u64) as i64))
            .unwrap();
    };
    member("a.jpg", &baboon, baboon.len() as u64);
    member("big.jpg", b"", GIB + 512);
    member("c.jpg", &butterfly, butterfly.len() as u64);
    shard.write_all(&[0; 1024]).unwrap();
    drop(shard);
    let rows = run(
        &job(tmp.path(), shards.to_str().unwrap(), "webdataset"),
        &[],
    );
    assert_eq!(rows.len(), 3, "{:?}", rows.keys());
    assert_eq!(rows["0:s-000000.tar/a"]["status"], "kept");
    assert_eq!(rows["0:s-000000.tar/c"]["status"], "kept");
    assert_eq!(
        dropped(&rows, "0:s-000000.tar/big"),
        (
            "too_large".to_string(),
            "big.jpg: 1073742336 bytes > limits.max_part_bytes 1073741824; not read".to_string()
        )
    );

    // Lower limits from the command line; a bad one is a config error before any work.
    let config = job(tmp.path(), files.to_str().unwrap(), "files");
    let rows = run(&config, &["limits.max_part_bytes=100KB"]);
    assert_eq!(dropped(&rows, "0:baboon.jpg").0, "too_large");
    assert_eq!(rows["0:pair.jpg"]["drop_reason"], "too_large");
    let out = mmcurate(&[
        "run",
        config.to_str().unwrap(),
        "--set",
        "limits.max_sample_bytes=1KB",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("limits.max_sample_bytes")
            && stderr.contains("1000")
            && stderr.contains("must be at least limits.max_part_bytes (1073741824)"),
        "{stderr}"
    );
}

#[cfg(feature = "av")]
#[test]
fn video_and_audio_over_their_limits_are_not_decoded_and_the_deadline_stops_decoding() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    for (kind, name) in [
        ("video", "bikes.mp4"),
        ("video", "carphone_pristine.mp4"),
        ("video", "opencv_tree.avi"),
        ("audio", "Kevin_MacLeod_-_Vibe_Ace.ogg"),
    ] {
        std::fs::copy(test_media_file(kind, name), dir.join(name)).unwrap();
    }
    std::fs::write(dir.join("baboon.jpg"), image("opencv_baboon.jpg")).unwrap();
    let config = job(tmp.path(), dir.to_str().unwrap(), "files");
    // Each file over one limit (bikes: 640 x 272, tree: 29.6 s, carphone: 120 frames, the
    // song: 61.5 s), all from the container header.
    let rows = run(
        &config,
        &[
            "limits.max_video_pixels=100000",
            "limits.max_video_seconds=20",
            "limits.max_video_frames=100",
            "limits.max_audio_seconds=60",
        ],
    );
    assert_eq!(rows["0:baboon.jpg"]["status"], "kept");
    let expected = [
        (
            "0:bikes.mp4",
            "too_many_pixels",
            "640x272 video: 174080 pixels a frame > limits.max_video_pixels 100000; not decoded",
        ),
        (
            "0:opencv_tree.avi",
            "too_long",
            "the video declares 29.6 s > limits.max_video_seconds 20; not decoded",
        ),
        (
            "0:carphone_pristine.mp4",
            "too_many_frames",
            "the video declares 120 frames > limits.max_video_frames 100; not decoded",
        ),
        (
            "0:Kevin_MacLeod_-_Vibe_Ace.ogg",
            "too_long",
            "the audio declares 61.5 s > limits.max_audio_seconds 60; not decoded",
        ),
    ];
    for (id, reason, detail) in expected {
        assert_eq!(
            dropped(&rows, id),
            (reason.to_string(), detail.to_string()),
            "{id}"
        );
    }

    // A deadline of a microsecond: every sample runs out of it, whatever its kind (FFmpeg is
    // stopped at its next read; the image is checked before its decode).
    let rows = run(&config, &["limits.max_decode_seconds=0.000001"]);
    assert_eq!(rows.len(), 5);
    for (id, row) in &rows {
        let (reason, detail) = dropped(&rows, id);
        assert_eq!(reason, "decode_timeout", "{row}");
        assert!(
            detail.contains("longer than limits.max_decode_seconds"),
            "{id}: {detail}"
        );
    }
    // The defaults let all of them through.
    let rows = run(&config, &[]);
    for (id, row) in &rows {
        let reason = row["drop_reason"].as_str().unwrap_or_default();
        assert!(
            ![
                "too_many_pixels",
                "too_long",
                "too_many_frames",
                "decode_timeout"
            ]
            .contains(&reason),
            "{id}: {row}"
        );
    }
}

#[test]
fn local_manifest_rows_outside_their_input_are_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(input.join("ok.jpg"), image("opencv_baboon.jpg")).unwrap();
    for (name, source) in [
        ("a.jpg", "opencv_butterfly.jpg"),
        ("b.jpg", "opencv_building.jpg"),
        ("c.jpg", "opencv_aero1.jpg"),
        ("d.jpg", "opencv_squirrel_cls.jpg"),
    ] {
        std::fs::write(outside.join(name), image(source)).unwrap();
    }
    // A link inside the input's folder to the folder outside it.
    std::os::unix::fs::symlink(&outside, input.join("link")).unwrap();
    let outside_abs = outside.canonicalize().unwrap();
    let rows_text = [
        "ok.jpg".to_string(),
        // Up out of the input's folder (built here, not written as one literal path).
        ["..", "outside", "a.jpg"].join("/"),
        outside_abs.join("b.jpg").display().to_string(),
        "link/c.jpg".to_string(),
        format!("file://{}", outside_abs.join("d.jpg").display()),
    ]
    .iter()
    .map(|url| format!("{{\"url\": {url:?}}}\n"))
    .collect::<String>();
    std::fs::write(input.join("m.jsonl"), rows_text).unwrap();

    let config = job(
        tmp.path(),
        input.join("m.jsonl").to_str().unwrap(),
        "manifest",
    );
    let rows = run(&config, &[]);
    let id = |n: usize| format!("0:m.jsonl#{n:09}");
    assert_read(&rows[&id(0)]);
    let input_uri = format!("file://{}", input.canonicalize().unwrap().display());
    for (n, file) in [(1, "a.jpg"), (2, "b.jpg"), (3, "c.jpg"), (4, "d.jpg")] {
        let (reason, detail) = dropped(&rows, &id(n));
        assert_eq!(reason, "outside_input", "row {n}: {detail}");
        assert!(
            detail.starts_with(&format!(
                "file://{} is outside the input's location {input_uri}; not read",
                outside_abs.join(file).display()
            )) && detail.contains("allow_outside = true"),
            "row {n}: {detail}"
        );
    }
    // Allowed, the same rows are read.
    let rows = run(&config, &["inputs.0.allow_outside=true"]);
    for n in 0..5 {
        assert_read(&rows[&id(n)]);
    }
}

/// The row's object was read: it has its bytes' sha256 and no refusal.
fn assert_read(row: &Value) {
    assert!(row["sha256"].is_string(), "{row}");
    assert!(
        !["outside_input", "too_large", "fetch_failed"]
            .contains(&row["drop_reason"].as_str().unwrap_or_default()),
        "{row}"
    );
}

#[test]
fn s3_manifest_rows_naming_other_buckets_or_prefixes_are_refused_unless_allowed() {
    let moto = Moto::start();
    let bucket = crate::s3::BUCKET;
    let other = "mmcurate-other-tenant";
    moto.create_bucket(bucket);
    moto.create_bucket(other);
    let endpoint = moto.endpoint();
    let store_of = |name: &str| {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_bucket_name(name)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .unwrap()
    };
    let manifest = format!(
        "{{\"url\": \"a.jpg\"}}\n{{\"url\": \"s3://{bucket}/in/sub/b.jpg\"}}\n\
         {{\"url\": \"s3://{bucket}/secret/c.jpg\"}}\n{{\"url\": \"s3://{other}/d.jpg\"}}\n"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ours = store_of(bucket);
        for (path, bytes) in [
            ("in/m.jsonl", manifest.into_bytes()),
            ("in/a.jpg", image("opencv_baboon.jpg")),
            ("in/sub/b.jpg", image("opencv_butterfly.jpg")),
            ("secret/c.jpg", image("opencv_building.jpg")),
        ] {
            ours.put(&ObjPath::from(path), PutPayload::from(bytes))
                .await
                .unwrap();
        }
        store_of(other)
            .put(
                &ObjPath::from("d.jpg"),
                PutPayload::from(image("opencv_aero1.jpg")),
            )
            .await
            .unwrap();
    });
    let tmp = tempfile::tempdir().unwrap();
    let config = job(tmp.path(), &format!("s3://{bucket}/in"), "manifest");
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run_s3 = |sets: &[&str]| {
        let mut args = vec!["run", config.to_str().unwrap()];
        for set in sets {
            args.extend(["--set", set]);
        }
        let _ = std::fs::remove_dir_all(tmp.path().join("out"));
        ok(&mmcurate_with_env(&args, &env));
        rows_by_id(&tmp.path().join("out"))
    };
    let rows = run_s3(&[]);
    let id = |n: usize| format!("0:m.jsonl#{n:09}");
    assert_read(&rows[&id(0)]);
    assert_read(&rows[&id(1)]);
    for (n, uri) in [
        (2, format!("s3://{bucket}/secret/c.jpg")),
        (3, format!("s3://{other}/d.jpg")),
    ] {
        let (reason, detail) = dropped(&rows, &id(n));
        assert_eq!(reason, "outside_input");
        assert!(
            detail.starts_with(&format!(
                "{uri} is outside the input's location s3://{bucket}/in; not read"
            )),
            "{detail}"
        );
    }
    let rows = run_s3(&["inputs.0.allow_outside=true"]);
    for n in 0..4 {
        assert_read(&rows[&id(n)]);
    }
}
