//! `mmcurate reenrich` on real images with two different small CLIP checkpoints (the fixture,
//! and a copy whose image projection the test permutes): nothing is decoded or measured again,
//! every measurement that does not depend on the model is identical, the model's outputs
//! change with it, `diff.parquet` lists exactly the samples that entered or left, and a
//! checkpoint seen before is not run again (its outputs come from the model-output cache).

use crate::common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const QUICKSTART: &str = "examples/quickstart/images";
const FIXTURE: &str = "tests/fixtures/clip-tiny";

/// Quickstart images with captions.
fn corpus(dir: &Path) {
    let files = [
        (
            "baboon.jpg",
            "opencv_baboon.jpg",
            "a baboon with a colourful face",
        ),
        (
            "butterfly.jpg",
            "opencv_butterfly.jpg",
            "a butterfly on a flower",
        ),
        ("building.jpg", "opencv_building.jpg", "a tall building"),
        (
            "rocket.jpg",
            "skimage_rocket.jpg",
            "a rocket on its launch pad",
        ),
        ("aero.jpg", "opencv_aero1.jpg", "an aeroplane"),
        (
            "hopper.jpg",
            "matplotlib_grace_hopper.jpg",
            "a woman in uniform",
        ),
        ("camera.png", "skimage_camera.png", "a man with a camera"),
        ("whale.png", "opencv_rubberwhale2.png", "toys on a table"),
    ];
    std::fs::create_dir_all(dir).unwrap();
    for (name, source, caption) in files {
        std::fs::copy(root().join(QUICKSTART).join(source), dir.join(name)).unwrap();
        let stem = name.rsplit_once('.').unwrap().0;
        std::fs::write(dir.join(format!("{stem}.txt")), caption).unwrap();
    }
}

/// A second checkpoint: the fixture with the rows of its visual projection in reverse order,
/// so every image embedding, and with it every CLIP score, changes.
pub fn second_model(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(root().join(FIXTURE).join(name), dir.join(name)).unwrap();
    }
    let mut weights = read(root().join(FIXTURE).join("model.safetensors"));
    let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&weights[8..8 + header_len]).unwrap();
    let tensor = &header["visual_projection.weight"];
    assert_eq!(tensor["dtype"], "F32");
    let cols = tensor["shape"][1].as_u64().unwrap() as usize;
    let start = 8 + header_len + tensor["data_offsets"][0].as_u64().unwrap() as usize;
    let end = 8 + header_len + tensor["data_offsets"][1].as_u64().unwrap() as usize;
    let rows: Vec<Vec<u8>> = weights[start..end]
        .chunks(cols * 4)
        .map(<[u8]>::to_vec)
        .collect();
    let reversed: Vec<u8> = rows.into_iter().rev().flatten().collect();
    weights[start..end].copy_from_slice(&reversed);
    std::fs::write(dir.join("model.safetensors"), &weights).unwrap();
    dir.to_path_buf()
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(read(path)))
}

pub fn write_config(dir: &Path, corpus: &Path, output: &Path, model: &Path) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        r#"
[run]
output = "{output}"
threads = 2

[[inputs]]
uri = "{corpus}"

[filters.alignment]
keep_top_fraction = 0.5

[dedup]
embedding_min_cosine = 0.999

[models.clip]
path = "{model}"
batch_size = 3
"#,
        output = output.display(),
        corpus = corpus.display(),
        model = model.display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn manifest_of(output: &Path) -> Value {
    serde_json::from_slice(&read(current_version(output).join("manifest.json"))).unwrap()
}

fn by_id(rows: Vec<Value>) -> BTreeMap<String, Value> {
    rows.into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect()
}

/// A ledger row without what the model or the decisions made.
fn model_free(row: &Value) -> Value {
    let mut row = row.clone();
    let object = row.as_object_mut().unwrap();
    object.retain(|key, _| {
        !key.starts_with("clip_")
            && !key.starts_with("caption_t")
            && !key.starts_with("drop_")
            && !key.starts_with("duplicate_")
            && !["status", "shard"].contains(&key.as_str())
    });
    row
}

fn kept(rows: &BTreeMap<String, Value>) -> BTreeSet<String> {
    rows.iter()
        .filter(|(_, r)| r["status"] == "kept")
        .map(|(id, _)| id.clone())
        .collect()
}

#[test]
fn reenrich_recomputes_only_the_model_outputs_and_reuses_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus_dir = tmp.path().join("corpus");
    corpus(&corpus_dir);
    let output = tmp.path().join("out");
    let model_a = root().join(FIXTURE);
    let model_b = second_model(&tmp.path().join("model-b"));
    let config = write_config(tmp.path(), &corpus_dir, &output, &model_a);
    ok(&mmcurate(&["run", config.to_str().unwrap()]));
    let v1 = manifest_of(&output);
    let rows_v1 = by_id(ledger_rows(&output));
    let embedded = v1["embeddings"][0]["rows"].as_u64().unwrap();
    assert_eq!(embedded, 8, "every image embedded");
    assert_eq!(v1["made_by"], "run");
    let units = std::fs::read_dir(output.join("state"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("measure-"))
        .unwrap()
        .path()
        .join("units");
    let unit_files = tree(&units);

    let out = ok(&mmcurate(&[
        "reenrich",
        output.to_str().unwrap(),
        "--set",
        &format!("models.clip.path={}", model_b.display()),
    ]));
    assert!(out.contains("0 sample(s) decoded"), "{out}");
    let v2 = manifest_of(&output);
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["parent_version"], 1);
    assert_eq!(v2["made_by"], "reenrich");
    let r = &v2["reenrich"];
    assert_eq!(r["samples_decoded"], 0);
    assert_eq!(r["measurements_reused"], 8);
    assert_eq!(r["embeddings_computed"], embedded);
    assert_eq!(r["embeddings_from_cache"], 0);
    assert_eq!(v2["counts"]["units"]["measured"], 0);
    assert_eq!(
        r["old_weights_sha256"],
        sha256_of(&model_a.join("model.safetensors")).as_str()
    );
    assert_eq!(
        r["new_weights_sha256"],
        sha256_of(&model_b.join("model.safetensors")).as_str()
    );
    assert_eq!(
        r["changed"]["models.clip.path"]["new"],
        model_b.display().to_string().as_str()
    );
    assert_eq!(
        r["changed"].as_object().unwrap().len(),
        1,
        "{}",
        r["changed"]
    );
    assert_eq!(
        tree(&units),
        unit_files,
        "the work units' records and staged copies are untouched"
    );

    // Every measurement that does not depend on the model is the same; the model's are new.
    let rows_v2 = by_id(ledger_rows(&current_version(&output)));
    assert_eq!(
        rows_v1.keys().collect::<Vec<_>>(),
        rows_v2.keys().collect::<Vec<_>>()
    );
    let new_digest = sha256_of(&model_b.join("model.safetensors"));
    let mut scores_changed = 0;
    for (id, row) in &rows_v2 {
        assert_eq!(model_free(row), model_free(&rows_v1[id]), "{id}");
        assert_eq!(row["clip_weights_sha256"], new_digest.as_str(), "{id}");
        scores_changed += usize::from(row["clip_score"] != rows_v1[id]["clip_score"]);
    }
    assert_eq!(
        scores_changed, 8,
        "the new model scores every sample differently"
    );

    // diff.parquet: exactly the samples kept in one version and not the other.
    let diff = python_json(
        "read_parquet.py",
        &[current_version(&output)
            .join("diff.parquet")
            .to_str()
            .unwrap()],
    );
    let (kept_v1, kept_v2) = (kept(&rows_v1), kept(&rows_v2));
    let entered: BTreeSet<String> = kept_v2.difference(&kept_v1).cloned().collect();
    let left: BTreeSet<String> = kept_v1.difference(&kept_v2).cloned().collect();
    assert!(
        !entered.is_empty() && !left.is_empty(),
        "{entered:?} {left:?}"
    );
    let listed = |change: &str| -> BTreeSet<String> {
        diff["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| row["change"] == change)
            .map(|row| row["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed("entered"), entered);
    assert_eq!(listed("left"), left);
    assert_eq!(r["entered"], entered.len() as u64);
    assert_eq!(r["left"], left.len() as u64);
    for row in diff["rows"].as_array().unwrap() {
        let id = row["id"].as_str().unwrap();
        assert_eq!(row["sha256"], rows_v1[id]["sha256"]);
        if row["change"] == "left" {
            assert_eq!(row["old_status"], "kept");
            assert_eq!(row["new_drop_reason"], rows_v2[id]["drop_reason"]);
            assert!(row["reason"]
                .as_str()
                .unwrap()
                .starts_with(rows_v2[id]["drop_reason"].as_str().unwrap()));
        } else {
            assert_eq!(row["new_status"], "kept");
            assert_eq!(row["old_drop_reason"], rows_v1[id]["drop_reason"]);
        }
    }

    // Back to the first checkpoint, with another batch size (so the decisions are made again):
    // its outputs come from the cache, and the result is the first version's.
    ok(&mmcurate(&[
        "reenrich",
        output.to_str().unwrap(),
        "--set",
        &format!("models.clip.path={}", model_a.display()),
        "--set",
        "models.clip.batch_size=5",
    ]));
    let v3 = manifest_of(&output);
    assert_eq!(v3["version"], 3);
    assert_eq!(v3["reenrich"]["embeddings_computed"], 0);
    assert_eq!(v3["reenrich"]["embeddings_from_cache"], embedded);
    assert_eq!(v3["reenrich"]["samples_decoded"], 0);
    let rows_v3 = by_id(ledger_rows(&current_version(&output)));
    for (id, row) in &rows_v3 {
        assert_eq!(row["clip_score"], rows_v1[id]["clip_score"], "{id}");
        assert_eq!(row["status"], rows_v1[id]["status"], "{id}");
    }
    assert_eq!(
        read(current_version(&output).join("embeddings/clip-000000.parquet")),
        read(output.join("versions/000001/embeddings/clip-000000.parquet")),
        "the cached embeddings are the first run's, bit for bit, in the same order"
    );

    // The lineage, and the diff between two versions from their ledgers.
    let history = ok(&mmcurate(&[
        "inspect",
        output.to_str().unwrap(),
        "--history",
        "--diff",
        "1",
        "2",
    ]));
    let lines: Vec<&str> = history.lines().collect();
    let version_lines: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("version "))
        .collect();
    assert_eq!(version_lines.len(), 3, "{history}");
    assert!(
        version_lines[0].starts_with("version 1: run from nothing"),
        "{history}"
    );
    assert!(
        version_lines[1].starts_with("version 2: reenrich from version 1"),
        "{history}"
    );
    assert!(
        version_lines[2].starts_with("version 3 (current): reenrich from version 2"),
        "{history}"
    );
    let short_b = &new_digest[..12];
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  clip ") && l.ends_with(&format!(" weights {short_b}"))),
        "{history}"
    );
    assert!(
        history.contains(&format!("weights {short_b} → ")) && history.contains("8 from cache"),
        "{history}"
    );
    let diff_line = format!(
        "diff version 1 → 2: {} entered, {} left",
        entered.len(),
        left.len()
    );
    assert!(history.contains(&diff_line), "{history}");
    for id in &entered {
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with("entered") && l.contains(id.as_str())),
            "{id}: {history}"
        );
    }
    for id in &left {
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with("left") && l.contains(id.as_str())),
            "{id}: {history}"
        );
    }
}

#[test]
fn reenrich_refuses_settings_that_are_not_the_models() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    std::fs::create_dir_all(&output).unwrap();
    let run = mmcurate(&[
        "reenrich",
        output.to_str().unwrap(),
        "--set",
        "dedup.phash_max_distance=3",
    ]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("reenrich changes only the models"),
        "{stderr}"
    );
    let run = mmcurate(&[
        "reenrich",
        output.to_str().unwrap(),
        "--set",
        "models.clip.batch_size=4",
    ]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("no committed version"), "{stderr}");
}
