//! The other input formats end to end: JSONL and Parquet manifests, and WebDataset shards with
//! awkward contents (keys with dots, samples without media, a shard cut short).

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn config(dir: &Path, input: &str, format: &str) -> std::path::PathBuf {
    let path = dir.join("job.toml");
    std::fs::write(
        &path,
        format!(
            "[run]\noutput = {:?}\n[[inputs]]\nuri = {input:?}\nformat = {format:?}\n[dedup]\nphash_max_distance = 4\n",
            dir.join("out").display().to_string()
        ),
    )
    .unwrap();
    path
}

fn rows_by_id(output: &Path) -> BTreeMap<String, Value> {
    ledger_rows(output)
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect()
}

fn copy_images(to: &Path, names: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for name in names {
        std::fs::copy(test_images().join(name), to.join(name)).unwrap();
    }
}

#[test]
fn jsonl_and_parquet_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_images(
        &dir.join("img"),
        &["skimage_coffee.png", "opencv_fruits.jpg"],
    );
    let absolute = test_images().join("skimage_rocket.jpg");
    let lines = [
        serde_json::json!({"url": "img/skimage_coffee.png", "caption": "a cup of coffee", "license": "cc0", "score": 0.9}),
        serde_json::json!({"url": "img/opencv_fruits.jpg", "caption": "fruit", "license": "bsd"}),
        serde_json::json!({"url": absolute.to_str().unwrap(), "caption": "a rocket"}),
        serde_json::json!({"caption": "no url at all"}),
        serde_json::json!({"url": "img/missing.jpg", "caption": "gone"}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("manifest.jsonl"), text).unwrap();

    let job = config(
        dir,
        dir.join("manifest.jsonl").to_str().unwrap(),
        "manifest",
    );
    // The rocket's absolute path is outside the manifest's folder: refused unless allowed.
    let refused = mmcurate(&["run", job.to_str().unwrap()]);
    ok(&refused);
    let rows = rows_by_id(&dir.join("out"));
    assert_eq!(
        rows["0:manifest.jsonl#000000002"]["drop_reason"],
        "outside_input"
    );
    std::fs::remove_dir_all(dir.join("out")).unwrap();
    let allow = "inputs.0.allow_outside=true";
    ok(&mmcurate(&["run", job.to_str().unwrap(), "--set", allow]));
    let rows = rows_by_id(&dir.join("out"));
    assert_eq!(rows.len(), 5);
    let row = |n: usize| &rows[&format!("0:manifest.jsonl#{n:09}")];
    assert_eq!(row(0)["status"], "kept");
    assert_eq!(row(0)["manifest_row"], 0);
    assert!(row(0)["manifest_uri"]
        .as_str()
        .unwrap()
        .ends_with("/manifest.jsonl"));
    assert_eq!(row(2)["status"], "kept");
    assert_eq!(row(3)["drop_reason"], "fetch_failed");
    assert_eq!(row(3)["drop_detail"], "the row has no URL");
    assert_eq!(row(4)["drop_reason"], "fetch_failed");
    assert!(row(4)["drop_detail"]
        .as_str()
        .unwrap()
        .contains("missing.jpg"));

    let shards = python_json("read_shards.py", &[dir.join("out").to_str().unwrap()]);
    let coffee = shards["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "skimage_coffee")
        .expect("coffee is kept");
    assert_eq!(coffee["txt"], "a cup of coffee");
    assert_eq!(coffee["json"]["license"], "cc0");
    assert_eq!(coffee["json"]["score"], 0.9);
    assert!(coffee["parts"].get("png").is_some());

    // The same rows as Parquet (written by pyarrow) give the same decisions.
    let script = format!(
        "import pyarrow as pa, pyarrow.parquet as pq, json\nrows=[json.loads(l) for l in open({:?})]\n\
         pq.write_table(pa.Table.from_pylist([{{k: r.get(k) for k in ['url','caption','license']}} for r in rows]), {:?})",
        dir.join("manifest.jsonl").display().to_string(),
        dir.join("manifest.parquet").display().to_string()
    );
    let status = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_file(dir.join("manifest.jsonl")).unwrap();
    std::fs::remove_dir_all(dir.join("out")).unwrap();
    let job = config(
        dir,
        dir.join("manifest.parquet").to_str().unwrap(),
        "manifest",
    );
    ok(&mmcurate(&["run", job.to_str().unwrap(), "--set", allow]));
    let parquet_rows = rows_by_id(&dir.join("out"));
    let statuses = |rows: &BTreeMap<String, Value>| -> Vec<(String, String)> {
        rows.values()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(statuses(&parquet_rows), statuses(&rows));
}

#[test]
fn a_manifest_without_its_url_column_is_refused_before_work() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.jsonl"), "{\"path\": \"a.jpg\"}\n").unwrap();
    let job = config(
        tmp.path(),
        tmp.path().join("m.jsonl").to_str().unwrap(),
        "manifest",
    );
    let out = mmcurate(&["plan", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no row has the URL column `url` (columns: path)"),
        "{stderr}"
    );
}

fn tar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).unwrap();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + (512 - data.len() % 512) % 512, 0);
}

#[test]
fn webdataset_shards_with_awkward_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let jpeg = read(test_images().join("opencv_fruits.jpg"));
    let png = read(test_images().join("skimage_coffee.png"));

    let mut first = Vec::new();
    tar_member(&mut first, "set.v1/fruit.jpg", &jpeg);
    tar_member(&mut first, "set.v1/fruit.txt", b"some fruit");
    tar_member(
        &mut first,
        "set.v1/fruit.json",
        br#"{"source": "opencv", "width": 1}"#,
    );
    tar_member(&mut first, "set.v1/fruit.cls", b"7");
    tar_member(&mut first, "set.v1/captiononly.txt", b"no image here");
    tar_member(&mut first, "set.v1/broken.jpg", &jpeg[..jpeg.len() / 3]);
    first.extend_from_slice(&[0; 1024]);
    std::fs::write(shards.join("a-000000.tar"), &first).unwrap();

    // A shard cut off in the middle of its second sample's image.
    let mut second = Vec::new();
    tar_member(&mut second, "coffee.png", &png);
    tar_member(&mut second, "coffee.txt", b"coffee");
    tar_member(&mut second, "fruit2.jpg", &jpeg);
    second.truncate(second.len() - jpeg.len() / 2);
    std::fs::write(shards.join("a-000001.tar"), &second).unwrap();

    // A shard cut exactly between two members: it reads like a shorter complete archive, but
    // has no end-of-archive marker.
    let mut third = Vec::new();
    tar_member(&mut third, "whole.png", &png);
    tar_member(&mut third, "lost.png", &png);
    let cut_at = third.len() - (512 + png.len().div_ceil(512) * 512);
    std::fs::write(shards.join("a-000002.tar"), &third[..cut_at]).unwrap();

    let job = config(tmp.path(), shards.to_str().unwrap(), "webdataset");
    ok(&mmcurate(&["run", job.to_str().unwrap()]));
    let out = tmp.path().join("out");
    let rows = rows_by_id(&out);
    let ids: Vec<&str> = rows.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "0:a-000000.tar/set.v1/broken",
            "0:a-000000.tar/set.v1/captiononly",
            "0:a-000000.tar/set.v1/fruit",
            "0:a-000001.tar/coffee",
            "0:a-000001.tar/fruit2",
            "0:a-000002.tar",
            "0:a-000002.tar/whole"
        ]
    );
    let fruit = &rows["0:a-000000.tar/set.v1/fruit"];
    assert_eq!(fruit["status"], "kept");
    assert_eq!(fruit["key"], "set_v1_fruit");
    assert_eq!(fruit["tar_member"], "set.v1/fruit.jpg");
    assert_eq!(
        rows["0:a-000000.tar/set.v1/captiononly"]["drop_reason"],
        "no_media"
    );
    assert_eq!(
        rows["0:a-000000.tar/set.v1/broken"]["drop_reason"],
        "unreadable"
    );
    assert_eq!(rows["0:a-000001.tar/coffee"]["status"], "kept");
    let cut = &rows["0:a-000001.tar/fruit2"];
    assert_eq!(cut["drop_reason"], "fetch_failed");
    assert!(
        cut["drop_detail"].as_str().unwrap().contains("truncated"),
        "{cut}"
    );

    let manifest: Value =
        serde_json::from_slice(&read(current_version(&out).join("manifest.json"))).unwrap();
    let errors = manifest["inputs"][0]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].as_str().unwrap().contains("a-000001.tar"));
    assert!(errors[1]
        .as_str()
        .unwrap()
        .contains("a-000002.tar: no end-of-archive marker after 1 samples"));
    // The sample before the cut was read; it carries coffee.png's bytes, so dedup (across
    // shards) drops it as an exact copy.
    // The cut between members is a row of its own: the shard, saying what was lost.
    let cut = &rows["0:a-000002.tar"];
    assert_eq!(cut["drop_reason"], "fetch_failed");
    assert!(
        cut["drop_detail"]
            .as_str()
            .unwrap()
            .contains("no end-of-archive marker after 1 samples"),
        "{cut}"
    );
    let whole = &rows["0:a-000002.tar/whole"];
    assert_eq!(whole["drop_reason"], "exact_duplicate");
    assert_eq!(whole["duplicate_of"], "0:a-000001.tar/coffee");

    let samples = python_json("read_shards.py", &[out.to_str().unwrap()]);
    let fruit = samples["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "set_v1_fruit")
        .unwrap();
    assert_eq!(fruit["json"]["source"], "opencv");
    assert_eq!(fruit["json"]["mmcurate"]["name"], "set.v1/fruit");
    assert_eq!(fruit["parts"]["cls"]["bytes"], 1);
    assert_eq!(fruit["txt"], "some fruit");
}
