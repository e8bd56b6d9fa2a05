//! A corpus over time, on real images: an incremental run (`run --against`) over new inputs
//! that hold copies of corpus samples (exact, and resized and re-encoded, made here) keeps the
//! same samples as one run over all inputs, lists the corpus's shards beside its new ones
//! without touching them, and `prune` keeps what the current version lists; `forget` removes
//! samples from shards, ledger, embeddings, index and state, leaving every other shard
//! byte-identical. Everything is read back with webdataset and pyarrow.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::common::*;

const QUICKSTART: &str = "examples/quickstart/images";

/// The quickstart's settings, over `inputs`, into `output`, with `extra` TOML.
fn config(dir: &Path, name: &str, inputs: &[&Path], output: &Path, extra: &str) -> PathBuf {
    let mut text = format!("[run]\noutput = \"{}\"\nthreads = 2\n", output.display());
    for input in inputs {
        text.push_str(&format!("[[inputs]]\nuri = \"{}\"\n", input.display()));
    }
    text.push_str(
        "[filters.image]\nmin_side = 64\nmin_sharpness = 30.0\nmin_brightness = 20.0\n\
         max_brightness = 235.0\n[dedup]\nphash_max_distance = 6\nembedding_min_cosine = 0.0\n\
         [output]\nmax_samples_per_shard = 4\n",
    );
    text.push_str(extra);
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// New inputs: copies of corpus samples (one exact, one resized to 90% and re-encoded at JPEG
/// quality 85), new pictures from tests/media, and an exact copy among the new ones.
fn new_inputs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let quickstart = root().join(QUICKSTART);
    std::fs::copy(
        quickstart.join("skimage_rocket.jpg"),
        dir.join("rocket_again.jpg"),
    )
    .unwrap();
    let butterfly = image::open(quickstart.join("opencv_butterfly.jpg")).unwrap();
    let (w, h) = (butterfly.width() * 9 / 10, butterfly.height() * 9 / 10);
    let smaller = butterfly.resize_exact(w, h, image::imageops::FilterType::Triangle);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(&smaller.to_rgb8())
        .unwrap();
    std::fs::write(dir.join("butterfly_resized.jpg"), jpeg).unwrap();
    for name in [
        "opencv_fruits.jpg",
        "skimage_chelsea.png",
        "opencv_messi5.jpg",
    ] {
        std::fs::copy(test_images().join(name), dir.join(name)).unwrap();
    }
    std::fs::copy(
        test_images().join("opencv_fruits.jpg"),
        dir.join("fruits_copy.jpg"),
    )
    .unwrap();
}

fn corpus(output: &Path) -> Value {
    python_json("read_corpus.py", &[output.to_str().unwrap()])
}

fn strings(rows: &Value, field: &str) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r[field].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The sha256s of the kept rows of a ledger.
fn kept_sha256s(ledger: &Value) -> BTreeSet<String> {
    ledger
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "kept")
        .map(|r| r["sha256"].as_str().unwrap().to_string())
        .collect()
}

fn by_id(ledger: &Value) -> BTreeMap<String, Value> {
    ledger
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

#[test]
fn an_incremental_run_keeps_what_one_run_over_all_inputs_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (root().join(QUICKSTART), dir.path().join("new"));
    new_inputs(&new);
    let out = dir.path().join("out");
    let first = config(dir.path(), "first.toml", &[&old], &out, "");
    ok(&mmcurate(&["-q", "run", first.to_str().unwrap()]));
    let v1 = tree(&out.join("versions/000001/shards"));
    let second = config(dir.path(), "second.toml", &[&new], &out, "");
    let out_arg = out.to_str().unwrap();
    ok(&mmcurate(&[
        "-q",
        "run",
        second.to_str().unwrap(),
        "--against",
        out_arg,
    ]));
    let single_out = dir.path().join("single");
    let single = config(dir.path(), "single.toml", &[&old, &new], &single_out, "");
    ok(&mmcurate(&["-q", "run", single.to_str().unwrap()]));

    let combined = corpus(&out);
    let pointer = &combined["pointer"];
    assert_eq!(pointer["version"], 2);
    // The corpus's shards are listed, untouched, beside the new ones.
    let shards: Vec<String> = pointer["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(shards.iter().any(|s| s.starts_with("versions/000001/")));
    assert!(shards.iter().any(|s| s.starts_with("versions/000002/")));
    assert_eq!(tree(&out.join("versions/000001/shards")), v1);
    assert!(
        !out.join("versions/000002/shards/jpg-000000.tar").exists(),
        "new shards are numbered after the corpus's"
    );
    // The same kept set as one run over old and new inputs.
    let shard_sha256s: Vec<String> = strings(&combined["samples"], "sha256");
    let kept: BTreeSet<String> = shard_sha256s.iter().cloned().collect();
    assert_eq!(kept.len(), shard_sha256s.len(), "no sample twice");
    let single_kept = kept_sha256s(&corpus(&single_out)["ledger"]);
    assert_eq!(kept, single_kept);
    assert_eq!(kept, kept_sha256s(&combined["ledger"]));
    // The cumulative index: one row per sample of the shards, in id order, where it is.
    let index = combined["index"].as_array().unwrap();
    assert_eq!(index.len(), shard_sha256s.len());
    assert_eq!(pointer["samples"], index.len());
    let located: BTreeSet<(String, String)> = combined["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["shard"].as_str().unwrap().into(),
                s["key"].as_str().unwrap().into(),
            )
        })
        .collect();
    for row in index {
        let at = (
            row["shard"].as_str().unwrap().to_string(),
            row["key"].as_str().unwrap().to_string(),
        );
        assert!(located.contains(&at), "{row}");
        let version = row["version"].as_u64().unwrap();
        assert!(row["shard"]
            .as_str()
            .unwrap()
            .starts_with(&format!("versions/{version:06}/")));
    }
    let ids: Vec<String> = strings(&combined["index"], "id");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    // New copies name the corpus sample and its version.
    let ledger = by_id(&combined["ledger"]);
    let rocket = &ledger["0:rocket_again.jpg"];
    assert_eq!(rocket["drop_reason"], "exact_duplicate");
    assert_eq!(rocket["duplicate_of"], "0:skimage_rocket.jpg");
    assert!(
        rocket["drop_detail"]
            .as_str()
            .unwrap()
            .contains("(version 1)"),
        "{rocket}"
    );
    let butterfly = &ledger["0:butterfly_resized.jpg"];
    assert_eq!(butterfly["drop_reason"], "near_duplicate", "{butterfly}");
    assert_eq!(butterfly["duplicate_of"], "0:opencv_butterfly.jpg");
    let manifest: Value =
        serde_json::from_slice(&read(out.join("versions/000002/manifest.json"))).unwrap();
    let incremental = &manifest["incremental"];
    assert_eq!(incremental["against_version"], 1);
    assert_eq!(incremental["corpus_before"], 10);
    assert_eq!(incremental["added"], 3);
    assert_eq!(incremental["corpus_after"], 13);
    assert_eq!(incremental["dropped_as_existing"]["exact_duplicate"], 1);
    assert_eq!(incremental["dropped_as_existing"]["near_duplicate"], 1);

    // Readers of the version find the ledger files it lists from version 1.
    let inspected = ok(&mmcurate(&["inspect", out_arg]));
    assert!(inspected.contains("version 2"), "{inspected}");
    // `verify` checks the files version 2 lists from version 1 too.
    let (code, printed) = verify(&out);
    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.contains("ok: version 2"), "{printed}");

    // Prune keeps the corpus's files the current version lists.
    ok(&mmcurate(&["-q", "prune", out_arg, "--keep", "1"]));
    assert!(!out.join("versions/000001/manifest.json").exists());
    assert_eq!(tree(&out.join("versions/000001/shards")), v1);
    assert_eq!(strings(&corpus(&out)["samples"], "sha256"), shard_sha256s);
    assert_eq!(verify(&out).0, Some(0));
}

/// `mmcurate verify OUTPUT`: its exit code and what it printed.
fn verify(output: &Path) -> (Option<i32>, String) {
    let run = mmcurate(&["verify", output.to_str().unwrap()]);
    (
        run.status.code(),
        String::from_utf8_lossy(&run.stdout).into_owned(),
    )
}

#[test]
fn forget_removes_samples_everywhere_and_leaves_other_shards_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let model = format!(
        "[models.clip]\npath = \"{}\"\nbatch_size = 4\n",
        root().join("tests/fixtures/clip-tiny").display()
    );
    let first = config(
        dir.path(),
        "first.toml",
        &[&root().join(QUICKSTART)],
        &out,
        &model,
    );
    ok(&mmcurate(&["-q", "run", first.to_str().unwrap()]));
    let before = corpus(&out);
    let old_ledger = by_id(&before["ledger"]);
    let baboon_sha = old_ledger["0:opencv_baboon.jpg"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let baboon_shard = old_ledger["0:opencv_baboon.jpg"]["shard"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(before["embeddings"]
        .as_array()
        .unwrap()
        .contains(&Value::from("0:opencv_baboon.jpg")));
    let v1_shards = tree(&out.join("versions/000001/shards"));
    // A calibration of the run (into calibration/) holds the samples' state and thumbnails too.
    ok(&mmcurate(&["-q", "calibrate", first.to_str().unwrap()]));
    assert!(out.join("calibration/state").is_dir());
    // By sha256 and by key; with duplicates, the resized baboon (a dropped near copy) too.
    let ids = dir.path().join("ids.txt");
    std::fs::write(
        &ids,
        format!("{baboon_sha}\nskimage_camera\n# a comment\nno-such-sample\n"),
    )
    .unwrap();
    let out_arg = out.to_str().unwrap();
    let printed = ok(&mmcurate(&[
        "forget",
        out_arg,
        "--ids",
        ids.to_str().unwrap(),
        "--request-id",
        "REQ-7",
        "--with-duplicates",
    ]));
    assert!(
        printed.contains("matched nothing: no-such-sample"),
        "{printed}"
    );
    assert!(printed.contains("calibration/ removed"), "{printed}");
    assert!(!out.join("calibration").exists());
    assert!(
        printed.contains("older version(s) 1 still hold"),
        "{printed}"
    );

    let after = corpus(&out);
    assert_eq!(after["pointer"]["version"], 2);
    let gone = [
        "0:opencv_baboon.jpg",
        "0:resized_opencv_baboon.jpg",
        "0:skimage_camera.png",
    ];
    let sha_gone: BTreeSet<String> = gone
        .iter()
        .map(|id| old_ledger[*id]["sha256"].as_str().unwrap().to_string())
        .collect();
    // Shards: gone; every other sample still there.
    let left: BTreeSet<String> = strings(&after["samples"], "sha256").into_iter().collect();
    let was: BTreeSet<String> = strings(&before["samples"], "sha256").into_iter().collect();
    assert_eq!(
        was.difference(&left).cloned().collect::<BTreeSet<_>>(),
        sha_gone.intersection(&was).cloned().collect()
    );
    // Ledger: status forgotten with the request, the sha256 kept, no content.
    let ledger = by_id(&after["ledger"]);
    for id in gone {
        let row = &ledger[id];
        assert_eq!(row["status"], "forgotten", "{row}");
        assert_eq!(row["sha256"], old_ledger[id]["sha256"]);
        assert!(row["drop_detail"].as_str().unwrap().contains("REQ-7"));
        for column in ["name", "source_uri", "key"] {
            assert_eq!(row[column], "", "{column}: {row}");
        }
        for column in [
            "width",
            "sharpness",
            "phash",
            "caption_chars",
            "clip_score",
            "shard",
            "etag",
        ] {
            assert!(row[column].is_null(), "{column}: {row}");
        }
    }
    assert_eq!(ledger.len(), old_ledger.len());
    // Embeddings and index: gone.
    let embedded: Vec<&str> = after["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!embedded.is_empty() && embedded.iter().all(|id| !gone.contains(id)));
    assert!(strings(&after["index"], "sha256")
        .iter()
        .all(|s| !sha_gone.contains(s)));
    assert_eq!(after["index"].as_array().unwrap().len(), left.len());
    // forgotten.parquet: each forgotten sample with the request.
    let forgotten: BTreeSet<String> = strings(&after["forgotten"], "sha256").into_iter().collect();
    assert_eq!(forgotten, sha_gone);
    assert!(strings(&after["forgotten"], "request_id")
        .iter()
        .all(|r| r == "REQ-7"));
    // Only the shards that held them were rewritten; the others are listed from version 1.
    let shards: Vec<&str> = after["pointer"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let held: BTreeSet<&str> = before["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| sha_gone.contains(s["sha256"].as_str().unwrap()))
        .map(|s| s["shard"].as_str().unwrap())
        .collect();
    assert!(held.contains(format!("versions/000001/{baboon_shard}").as_str()));
    for shard in &shards {
        let in_v1 = shard.replace("versions/000002/", "versions/000001/");
        assert_eq!(
            held.contains(in_v1.as_str()),
            shard.starts_with("versions/000002/"),
            "{shard}"
        );
    }
    assert_eq!(
        tree(&out.join("versions/000001/shards")),
        v1_shards,
        "version 1 is not rewritten"
    );
    // The state holds none of their bytes or records any more.
    let mut state_hits = Vec::new();
    for (path, bytes) in tree(&out.join("state")) {
        for id in gone {
            if bytes.windows(id.len()).any(|w| w == id.as_bytes()) {
                state_hits.push(format!("{path}: {id}"));
            }
        }
    }
    assert!(state_hits.is_empty(), "{state_hits:?}");
    // `verify` finds the forgotten content version 1 still holds, and names the way out.
    let (code, printed) = verify(&out);
    assert_eq!(code, Some(1), "{printed}");
    assert!(
        printed.contains("version 1 still holds forgotten content") && printed.contains("prune"),
        "{printed}"
    );
    assert!(!printed.contains("versions/000002/shards"), "{printed}");

    // Prune completes the request: no file of the output holds their bytes.
    ok(&mmcurate(&["-q", "prune", out_arg, "--keep", "1"]));
    let (code, printed) = verify(&out);
    assert_eq!(code, Some(0), "{printed}");
    let originals: Vec<Vec<u8>> = ["opencv_baboon.jpg", "skimage_camera.png"]
        .iter()
        .map(|f| read(root().join(QUICKSTART).join(f)))
        .collect();
    for (path, bytes) in tree(&out) {
        for original in &originals {
            let head = &original[..4096];
            assert!(
                !bytes.windows(head.len()).any(|w| w == head),
                "{path} holds a forgotten image"
            );
        }
    }
}

#[test]
fn semantic_copies_of_corpus_samples_are_found_through_its_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let quickstart = root().join(QUICKSTART);
    std::fs::create_dir_all(&old).unwrap();
    std::fs::create_dir_all(&new).unwrap();
    for name in [
        "opencv_baboon.jpg",
        "opencv_butterfly.jpg",
        "skimage_rocket.jpg",
    ] {
        std::fs::copy(quickstart.join(name), old.join(name)).unwrap();
    }
    // The same picture at half size (a semantic copy, with pHash dedup off), and a new one.
    std::fs::copy(
        quickstart.join("resized_opencv_baboon.jpg"),
        new.join("baboon_small.jpg"),
    )
    .unwrap();
    std::fs::copy(
        quickstart.join("skimage_camera.png"),
        new.join("camera.png"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let extra = format!(
        "[models.clip]\npath = \"{}\"\nbatch_size = 4\n",
        root().join("tests/fixtures/clip-tiny").display()
    );
    let semantic = |name: &str, input: &Path| {
        let path = config(dir.path(), name, &[input], &out, &extra);
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "phash_max_distance = 6\nembedding_min_cosine = 0.0",
            "phash_max_distance = 0\nembedding_min_cosine = 0.998",
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    ok(&mmcurate(&[
        "-q",
        "run",
        semantic("first.toml", &old).to_str().unwrap(),
    ]));
    let second = semantic("second.toml", &new);
    let out_arg = out.to_str().unwrap();
    ok(&mmcurate(&[
        "-q",
        "run",
        second.to_str().unwrap(),
        "--against",
        out_arg,
    ]));
    let combined = corpus(&out);
    let ledger = by_id(&combined["ledger"]);
    let small = &ledger["0:baboon_small.jpg"];
    assert_eq!(small["drop_reason"], "semantic_duplicate", "{small}");
    assert_eq!(small["duplicate_of"], "0:opencv_baboon.jpg");
    assert!(
        small["drop_detail"]
            .as_str()
            .unwrap()
            .contains("(version 1)"),
        "{small}"
    );
    assert_eq!(ledger["0:camera.png"]["status"], "kept");
    // Both versions' embeddings are listed; the new file is numbered after the corpus's.
    let embeddings: Vec<&str> = combined["pointer"]["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        embeddings,
        [
            "versions/000001/embeddings/clip-000000.parquet",
            "versions/000002/embeddings/clip-000001.parquet"
        ]
    );
    assert_eq!(combined["index"].as_array().unwrap().len(), 4);
}
