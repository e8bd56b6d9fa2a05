//! `mmcurate dedup` end to end: inputs written by NumPy and pyarrow (float32 and float16 .npy,
//! a folder of .npy, Parquet), outputs read back by pyarrow and checked against NumPy's brute
//! force; the same bytes on 1 and 3 threads; three shards merged give the one-machine files.

use crate::common::{mmcurate, ok, python_json, read};
use serde_json::Value;
use std::path::Path;

fn dedup(input: &Path, output: &Path, extra: &[&str]) {
    let mut args = vec![
        "dedup",
        "--embeddings",
        input.to_str().unwrap(),
        "--min-cosine",
        "0.9",
        "--output",
        output.to_str().unwrap(),
        "--partitions",
        "12",
    ];
    args.extend_from_slice(extra);
    ok(&mmcurate(&args));
}

/// Merges the 3 shards under `output` and checks the files are `one_machine`'s, byte for byte.
fn merge_is_one_machine(output: &Path, one_machine: &Path) {
    ok(&mmcurate(&[
        "dedup",
        "--merge",
        "--num-shards",
        "3",
        "--output",
        output.to_str().unwrap(),
    ]));
    for file in ["pairs.parquet", "groups.parquet"] {
        assert!(
            read(one_machine.join(file)) == read(output.join(file)),
            "merged {file} under {} differs",
            output.display()
        );
    }
}

fn pairs_of(read: &Value) -> Vec<(u64, u64)> {
    read["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
        .collect()
}

#[test]
fn dedup_finds_numpys_pairs_in_every_input_format_and_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let made = python_json("dedup_io.py", &["make", d.to_str().unwrap()]);
    let exact: Vec<(u64, u64)> = made["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
        .collect();
    assert!(exact.len() > 250, "{} pairs", exact.len());

    dedup(
        &d.join("emb.npy"),
        &d.join("out1"),
        &["--threads", "1", "--margin", "1", "--max-replicas", "12"],
    );
    let out1 = python_json("dedup_io.py", &["read", d.join("out1").to_str().unwrap()]);
    assert_eq!(
        out1["pair_types"],
        serde_json::json!(["uint64", "uint64", "float"])
    );
    // The worst-case bound: every pair NumPy finds, and no other.
    assert_eq!(pairs_of(&out1), exact);
    for p in out1["pairs"].as_array().unwrap() {
        assert!(p[2].as_f64().unwrap() >= 0.9 - 1e-7, "{p}");
    }
    // Groups: every row in a pair, named and kept by its lowest row.
    let groups = out1["groups"].as_array().unwrap();
    assert!(groups.iter().all(|g| g[2].as_bool() == Some(g[0] == g[1])));
    let summary: Value = serde_json::from_slice(&read(d.join("out1/summary.json"))).unwrap();
    assert_eq!(summary["pairs"].as_u64(), Some(exact.len() as u64));
    assert_eq!(summary["search"]["rows"].as_u64(), Some(3000));

    // 3 threads, a folder of .npy and Parquet give the same bytes.
    let strict = ["--margin", "1", "--max-replicas", "12"];
    dedup(
        &d.join("emb.npy"),
        &d.join("out3"),
        &[&["--threads", "3"][..], &strict].concat(),
    );
    dedup(
        &d.join("parts"),
        &d.join("parts-out"),
        &[&["--threads", "2"][..], &strict].concat(),
    );
    dedup(
        &d.join("emb.parquet"),
        &d.join("pq-out"),
        &[&["--column", "vec"][..], &strict].concat(),
    );
    for other in ["out3", "parts-out", "pq-out"] {
        for file in ["pairs.parquet", "groups.parquet"] {
            assert!(
                read(d.join("out1").join(file)) == read(d.join(other).join(file)),
                "{other}/{file} differs"
            );
        }
    }

    // Parquet ids carried into both files, beside the same row numbers.
    dedup(
        &d.join("emb.parquet"),
        &d.join("pq-ids"),
        &[&["--column", "vec", "--id-column", "id"][..], &strict].concat(),
    );
    let with_ids = python_json("dedup_io.py", &["read", d.join("pq-ids").to_str().unwrap()]);
    assert_eq!(pairs_of(&with_ids), exact);
    assert_eq!(
        with_ids["pair_types"],
        serde_json::json!(["uint64", "uint64", "float", "string", "string"])
    );
    assert_eq!(
        with_ids["group_types"],
        serde_json::json!(["uint64", "uint64", "bool", "string", "string"])
    );
    // An id column is read from Parquet only, and must exist there, checked before any work.
    for (input, column, message) in [
        ("emb.parquet", "nope", "no id column \"nope\""),
        ("emb.npy", "id", "ids are read from Parquet input"),
    ] {
        let out = mmcurate(&[
            "dedup",
            "--embeddings",
            d.join(input).to_str().unwrap(),
            "--column",
            "vec",
            "--min-cosine",
            "0.9",
            "--id-column",
            column,
            "--output",
            d.join("bad-ids").to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
    assert!(!d.join("bad-ids").exists());
    let named = |row: &Value| format!("s{}", row.as_u64().unwrap());
    for (pair, ids) in with_ids["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(with_ids["pair_ids"].as_array().unwrap())
    {
        assert_eq!(ids[0].as_str().unwrap(), named(&pair[0]), "{pair} {ids}");
        assert_eq!(ids[1].as_str().unwrap(), named(&pair[1]), "{pair} {ids}");
    }
    for (group, ids) in with_ids["groups"]
        .as_array()
        .unwrap()
        .iter()
        .zip(with_ids["group_ids"].as_array().unwrap())
    {
        assert_eq!(ids[0].as_str().unwrap(), named(&group[0]));
        assert_eq!(ids[1].as_str().unwrap(), named(&group[1]));
    }

    // float16 loses precision: nearly the same pairs.
    dedup(&d.join("emb16.npy"), &d.join("f16"), &strict);
    let f16 = pairs_of(&python_json(
        "dedup_io.py",
        &["read", d.join("f16").to_str().unwrap()],
    ));
    let common = f16
        .iter()
        .filter(|p| exact.binary_search(p).is_ok())
        .count();
    assert!(
        common as f64 >= 0.98 * exact.len() as f64,
        "{common} of {}",
        exact.len()
    );

    // Three shards, then the merge: the one-machine files, byte for byte.
    let sharded = d.join("sharded");
    for index in ["0", "1", "2"] {
        dedup(
            &d.join("emb.npy"),
            &sharded,
            &[&["--num-shards", "3", "--shard-index", index][..], &strict].concat(),
        );
    }
    merge_is_one_machine(&sharded, &d.join("out1"));

    // The same search split into steps: partitions once, then three row ranges assigned, then
    // three partition ranges searched, then the merge: again the one-machine files.
    let staged = d.join("staged");
    dedup(
        &d.join("emb.npy"),
        &staged,
        &[&["--step", "partitions"][..], &strict].concat(),
    );
    let plan: Value =
        serde_json::from_slice(&read(staged.join("state/partitions/plan.json"))).unwrap();
    assert_eq!(plan["partitions"], 12);
    for step in ["assign", "search"] {
        for index in ["0", "1", "2"] {
            let args = ["--step", step, "--num-shards", "3", "--shard-index", index];
            dedup(&d.join("emb.npy"), &staged, &[&args[..], &strict].concat());
        }
    }
    let summary: Value = serde_json::from_slice(&read(
        staged.join("state/partitions/memberships-00002-of-00003.json"),
    ))
    .unwrap();
    assert_eq!(summary["step"], "assign");
    merge_is_one_machine(&staged, &d.join("out1"));
}

#[test]
fn dedup_explains_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("emb.npy");
    std::fs::write(&text, "not numpy").unwrap();
    let out = mmcurate(&[
        "dedup",
        "--embeddings",
        text.to_str().unwrap(),
        "--min-cosine",
        "0.9",
        "--output",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a .npy file"));
    let out = mmcurate(&[
        "dedup",
        "--merge",
        "--num-shards",
        "2",
        "--output",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("shard 0 of 2 has not been written"));
    // A step that needs the plan before it was made says which step to run.
    let vectors = mmcurate::decide::pairs::npy::encode_f32(&[1.0, 0.0, 0.0, 1.0, 0.6, 0.8], 2);
    let input = dir.path().join("small.npy");
    std::fs::write(&input, vectors).unwrap();
    for step in ["assign", "search"] {
        let out = mmcurate(&[
            "dedup",
            "--embeddings",
            input.to_str().unwrap(),
            "--min-cosine",
            "0.9",
            "--step",
            step,
            "--output",
            dir.path().join("o").to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{step}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("no plan: run this command with --step partitions first"),
            "{step}: {stderr}"
        );
    }
}
