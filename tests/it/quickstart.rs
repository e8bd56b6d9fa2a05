//! The quickstart run end to end, read back by independent readers: the Python `webdataset`
//! library and GNU tar for the shards, pyarrow for the ledger.

use crate::common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What the quickstart corpus is built to show: file → (status, reason, duplicate of).
fn expected() -> BTreeMap<&'static str, (&'static str, Option<&'static str>, Option<&'static str>)>
{
    let kept = ("kept", None, None);
    let drop = |reason| ("dropped", Some(reason), None);
    BTreeMap::from([
        ("blurred_opencv_building.jpg", drop("too_blurry")),
        ("dark.jpg", drop("too_dark")),
        ("empty.jpg", drop("empty_file")),
        ("exact_copy_of_opencv_home.jpg", kept),
        ("matplotlib_grace_hopper.jpg", kept),
        ("not_an_image.jpg", drop("not_an_image")),
        ("opencv_aero1.jpg", kept),
        ("opencv_baboon.jpg", kept),
        ("opencv_building.jpg", kept),
        ("opencv_butterfly.jpg", kept),
        // Same bytes, same sharpness and size: the lower id is kept.
        (
            "opencv_home.jpg",
            (
                "dropped",
                Some("exact_duplicate"),
                Some("0:exact_copy_of_opencv_home.jpg"),
            ),
        ),
        // Two frames of one scene, pHash distance 2: the (slightly) sharper frame is kept.
        (
            "opencv_rubberwhale1.png",
            (
                "dropped",
                Some("near_duplicate"),
                Some("0:opencv_rubberwhale2.png"),
            ),
        ),
        ("opencv_rubberwhale2.png", kept),
        // JPEG q60 blocking raises the Laplacian variance, so the re-encode is "sharper".
        (
            "opencv_squirrel_cls.jpg",
            (
                "dropped",
                Some("near_duplicate"),
                Some("0:reencoded_opencv_squirrel_cls.jpg"),
            ),
        ),
        ("overexposed.png", drop("too_bright")),
        ("reencoded_opencv_squirrel_cls.jpg", kept),
        (
            "resized_opencv_baboon.jpg",
            (
                "dropped",
                Some("near_duplicate"),
                Some("0:opencv_baboon.jpg"),
            ),
        ),
        ("skimage_camera.png", kept),
        ("skimage_rocket.jpg", kept),
        ("tiny.jpg", drop("too_small")),
        ("truncated.jpg", drop("unreadable")),
    ])
}

pub(crate) fn run_quickstart(output: &Path, extra: &[&str]) -> String {
    let out = format!("run.output={}", output.display());
    let mut args = vec!["run", "configs/quickstart.toml", "--set", &out];
    args.extend_from_slice(extra);
    ok(&mmcurate(&args))
}

#[test]
fn quickstart_keeps_the_expected_samples_for_the_expected_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    let summary = run_quickstart(&output, &[]);
    assert!(
        summary.contains("samples") && summary.contains("21"),
        "{summary}"
    );

    let images = root().join("examples/quickstart/images");
    let rows = ledger_rows(&output);
    assert_eq!(rows.len(), 21, "one ledger row per input sample");
    let by_name: BTreeMap<String, &Value> = rows
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r))
        .collect();
    let expected = expected();
    assert_eq!(
        by_name.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>()
    );
    for (name, (status, reason, duplicate_of)) in &expected {
        let row = by_name[*name];
        assert_eq!(row["id"], format!("0:{name}"));
        assert_eq!(row["status"], *status, "{name}: {row}");
        assert_eq!(row["drop_reason"].as_str(), *reason, "{name}: {row}");
        assert_eq!(row["duplicate_of"].as_str(), *duplicate_of, "{name}: {row}");
        let bytes = read(images.join(name));
        assert_eq!(row["size_bytes"], bytes.len() as u64, "{name}");
        assert_eq!(
            row["source_uri"],
            format!(
                "file://{}",
                images.canonicalize().unwrap().join(name).display()
            )
        );
        if *status == "kept" {
            assert_eq!(row["sha256"], sha256(&bytes), "{name}");
            // A series of shards per media format: 8 JPEGs, 2 PNGs.
            let series = if name.ends_with(".png") { "png" } else { "jpg" };
            assert_eq!(
                row["shard"].as_str().unwrap(),
                format!("shards/{series}-000000.tar"),
                "{name}"
            );
            assert!(row["drop_detail"].is_null());
            assert!(row["sharpness"].as_f64().unwrap() >= 30.0);
        } else {
            assert!(row["shard"].is_null());
            assert!(!row["drop_detail"].as_str().unwrap().is_empty(), "{name}");
        }
    }
    // The numbers behind the decisions are in the detail.
    let detail = |name: &str| by_name[name]["drop_detail"].as_str().unwrap().to_string();
    assert!(
        detail("truncated.jpg").contains("truncated"),
        "{}",
        detail("truncated.jpg")
    );
    assert_eq!(detail("tiny.jpg"), "40x30: shorter side 30 < min_side 64");
    assert!(detail("blurred_opencv_building.jpg").starts_with("sharpness "));
    assert!(detail("not_an_image.jpg").contains("text"));
    assert_eq!(
        by_name["resized_opencv_baboon.jpg"]["duplicate_distance"],
        0.0
    );
    assert_eq!(
        by_name["opencv_rubberwhale1.png"]["duplicate_distance"],
        2.0
    );
    assert_eq!(by_name["opencv_rubberwhale1.png"]["drop_stage"], "dedup");
    assert_eq!(by_name["dark.jpg"]["drop_stage"], "filter");
    assert_eq!(by_name["empty.jpg"]["drop_stage"], "decode");
    // Too-small images are refused from the header: never decoded, so never measured.
    assert!(by_name["tiny.jpg"]["sharpness"].is_null());
    assert_eq!(by_name["tiny.jpg"]["width"], 40);

    // The manifest: provenance and counts, in the first version's folder.
    let version = current_version(&output);
    assert_eq!(version, output.join("versions/000001"));
    let manifest: Value = serde_json::from_slice(&read(version.join("manifest.json"))).unwrap();
    assert_eq!(manifest["tool"]["name"], "mmcurate");
    assert_eq!(
        (&manifest["version"], &manifest["parent_version"]),
        (&json!(1), &Value::Null)
    );
    assert_eq!(manifest["tool"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest["config_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        manifest["config"]["filters"]["image"]["min_sharpness"],
        30.0
    );
    assert_eq!(manifest["inputs"][0]["object_count"], 40);
    assert_eq!(manifest["counts"]["samples"], 21);
    assert_eq!(manifest["counts"]["kept"], 10);
    assert_eq!(manifest["counts"]["dropped_by_reason"]["near_duplicate"], 3);
    assert_eq!(manifest["counts"]["dropped_by_stage"]["filter"], 4);
    for stage in ["plan", "measure", "decide", "write"] {
        assert!(manifest["stage_seconds"][stage].as_f64().unwrap() >= 0.0);
    }
    let shards = manifest["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "one series of 8 JPEGs, one of 2 PNGs");
    assert_eq!(
        (
            &shards[0]["name"],
            &shards[0]["series"],
            &shards[0]["samples"]
        ),
        (&json!("shards/jpg-000000.tar"), &json!("jpg"), &json!(8))
    );
    assert_eq!(
        (
            &shards[1]["name"],
            &shards[1]["series"],
            &shards[1]["samples"]
        ),
        (&json!("shards/png-000000.tar"), &json!("png"), &json!(2))
    );
    for shard in shards {
        let bytes = read(version.join(shard["name"].as_str().unwrap()));
        assert_eq!(shard["sha256"], sha256(&bytes));
        assert_eq!(shard["bytes"], bytes.len() as u64);
    }
    let ledger = &manifest["ledger"][0];
    assert_eq!(ledger["rows"], 21);
    assert_eq!(
        ledger["sha256"],
        sha256(&read(version.join(ledger["name"].as_str().unwrap())))
    );
    // The commit pointer lists the version's files relative to the output.
    let pointer: Value = serde_json::from_slice(&read(output.join("current.json"))).unwrap();
    assert_eq!(pointer["version"], 1);
    assert_eq!(pointer["manifest"], "versions/000001/manifest.json");
    assert_eq!(
        pointer["shards"],
        json!([
            "versions/000001/shards/jpg-000000.tar",
            "versions/000001/shards/png-000000.tar"
        ])
    );
    assert_eq!(
        pointer["ledger"],
        json!(["versions/000001/ledger/ledger-000000.parquet"])
    );
    assert!(!output.join("_SUCCESS").exists() && !output.join(".mmcurate.lock").exists());

    // `inspect` on the output agrees.
    let text = ok(&mmcurate(&["inspect", output.to_str().unwrap()]));
    assert!(text.contains("21 samples, 10 kept, 11 dropped"), "{text}");
    assert!(
        text.contains("current version 1 (versions/000001)"),
        "{text}"
    );
}

#[test]
fn shards_read_back_with_webdataset_and_gnu_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    run_quickstart(&output, &[]);
    let images = root().join("examples/quickstart/images");

    // The Python webdataset library.
    let read_back = python_json("read_shards.py", &[output.to_str().unwrap()]);
    let samples = read_back["samples"].as_array().unwrap();
    let kept: Vec<&str> = expected()
        .iter()
        .filter(|(_, (s, _, _))| *s == "kept")
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(samples.len(), kept.len());
    for sample in samples {
        let key = sample["key"].as_str().unwrap();
        assert!(!key.contains('.') && !key.contains('/'), "{key}");
        let name = sample["json"]["mmcurate"]["name"].as_str().unwrap();
        assert!(
            kept.contains(&name),
            "{name} was not expected in the shards"
        );
        let original = read(images.join(name));
        let ext = if name.ends_with(".png") { "png" } else { "jpg" };
        assert_eq!(
            sample["parts"][ext]["sha256"],
            sha256(&original),
            "{name}: bytes must be unchanged"
        );
        assert_eq!(sample["json"]["mmcurate"]["id"], format!("0:{name}"));
        assert!(
            sample["json"]["mmcurate"]["measurements"]["phash"]
                .as_str()
                .unwrap()
                .len()
                == 16
        );
        let stem = name.rsplit_once('.').unwrap().0;
        if let Ok(caption) = std::fs::read_to_string(images.join(format!("{stem}.txt"))) {
            assert_eq!(sample["txt"], caption, "{name}");
        }
    }
    // A caption from a sidecar .json becomes the .txt, and the sidecar's fields are kept.
    let hopper = samples
        .iter()
        .find(|s| s["key"] == "matplotlib_grace_hopper")
        .expect("grace hopper is kept");
    let sidecar: Value =
        serde_json::from_slice(&read(images.join("matplotlib_grace_hopper.json"))).unwrap();
    assert_eq!(hopper["txt"], sidecar["caption"]);
    assert_eq!(hopper["json"]["license"], sidecar["license"]);
    // Every sample of a series carries the same parts: one without a caption has an empty .txt
    // (the ledger says it had none).
    let aero = samples.iter().find(|s| s["key"] == "opencv_aero1").unwrap();
    assert_eq!(aero["txt"], "");
    assert!(aero["json"]["mmcurate"]["measurements"]
        .get("caption_chars")
        .is_none());
    for sample in samples {
        let mut parts: Vec<&String> = sample["parts"].as_object().unwrap().keys().collect();
        parts.sort();
        let media = sample["json"]["mmcurate"]["measurements"]["format"]
            .as_str()
            .unwrap();
        let mut want = [media, "json", "txt"];
        want.sort();
        assert_eq!(parts, want, "{}", sample["key"]);
    }

    // GNU tar lists and extracts every shard; extracted images equal the originals.
    let extract = tmp.path().join("extract");
    std::fs::create_dir(&extract).unwrap();
    let mut members = Vec::new();
    for shard in ["jpg-000000.tar", "png-000000.tar"] {
        let path = current_version(&output).join("shards").join(shard);
        let list = Command::new("tar").arg("-tf").arg(&path).output().unwrap();
        assert!(
            list.status.success(),
            "tar -tf {shard}: {}",
            String::from_utf8_lossy(&list.stderr)
        );
        members.extend(
            String::from_utf8(list.stdout)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
        let x = Command::new("tar")
            .arg("-xf")
            .arg(&path)
            .arg("-C")
            .arg(&extract)
            .status()
            .unwrap();
        assert!(x.success());
    }
    assert_eq!(
        members.len(),
        10 + 10 + 10,
        "10 images, 10 .json, 10 captions (one empty)"
    );
    assert_eq!(
        read(extract.join("opencv_baboon.jpg")),
        read(images.join("opencv_baboon.jpg"))
    );
    assert_eq!(
        read(extract.join("skimage_camera.png")),
        read(images.join("skimage_camera.png"))
    );
}

#[test]
fn output_is_byte_identical_whatever_the_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let two = tmp.path().join("two");
    run_quickstart(&one, &["--set", "run.threads=1"]);
    run_quickstart(&two, &["--set", "run.threads=3"]);
    for folder in ["shards", "ledger"] {
        let a = tree(&current_version(&one).join(folder));
        let b = tree(&current_version(&two).join(folder));
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len());
        for ((name_a, bytes_a), (name_b, bytes_b)) in a.iter().zip(&b) {
            assert_eq!(name_a, name_b);
            assert!(
                bytes_a == bytes_b,
                "{folder}/{name_a} differs between 1 and 3 threads"
            );
        }
    }
}
