//! Work units, resume and phases, end to end on the quickstart corpus cut into units of 3
//! files (7 units, 2 shards): a run aborted after some units (`MMCURATE_ABORT_AFTER`, an
//! `abort()` that stops the process as `kill -9` would) and started again redoes no finished
//! unit and ends byte-identical to an uninterrupted run; the phases run as 3 slices in separate
//! processes give the same bytes too; a phase started too early says what is missing (exit 3);
//! a changed dedup setting reuses every unit, a changed filter redoes them; with S3 output the
//! state is in the bucket, and phases in separate processes share it there.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

const UNITS: u64 = 7;

fn run(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let output = format!("run.output={}", out.display());
    let mut args = vec![
        "run",
        "configs/quickstart.toml",
        "--set",
        &output,
        "--set",
        "run.unit_size=3",
        "--set",
        "run.threads=2",
    ];
    args.extend_from_slice(extra);
    mmcurate_with_env(&args, env)
}

/// The shards and ledger files of an output's current version, by their path from `shards/` or
/// `ledger/` on.
fn shards_and_ledger(out: &Path) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = tree(&current_version(out))
        .into_iter()
        .filter(|(path, _)| path.starts_with("shards/") || path.starts_with("ledger/"))
        .collect();
    assert!(
        files.iter().any(|(p, _)| p.starts_with("shards/")),
        "{out:?}"
    );
    assert!(
        files.iter().any(|(p, _)| p.starts_with("ledger/")),
        "{out:?}"
    );
    files
}

fn units(out: &Path) -> Value {
    let manifest = find_manifest(out);
    let json: Value = serde_json::from_slice(&read(manifest)).unwrap();
    json["counts"]["units"].clone()
}

/// The manifest of an output's current version.
fn find_manifest(out: &Path) -> std::path::PathBuf {
    current_version(out).join("manifest.json")
}

/// Units committed in an output's state.
fn committed_units(out: &Path) -> usize {
    tree(&out.join("state"))
        .iter()
        .filter(|(p, _)| p.ends_with(".records"))
        .count()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_killed_run_resumes_without_redoing_units_and_ends_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    ok(&run(&whole, &[], &[]));
    let expected = shards_and_ledger(&whole);
    assert_eq!(
        units(&whole),
        serde_json::json!({"total": UNITS, "measured": UNITS, "reused": 0})
    );

    // Killed after 3 committed units: the state holds exactly those.
    let resumed = dir.path().join("resumed");
    let killed = run(&resumed, &[], &[("MMCURATE_ABORT_AFTER", "measure:3")]);
    assert!(!killed.status.success(), "{}", stderr(&killed));
    assert_eq!(committed_units(&resumed), 3);
    // Started again, killed after the first shard: measures only the 4 missing units.
    let killed = run(&resumed, &[], &[("MMCURATE_ABORT_AFTER", "write:1")]);
    assert!(!killed.status.success(), "{}", stderr(&killed));
    assert!(
        stderr(&killed).contains("7 work unit(s), 3 already measured"),
        "{}",
        stderr(&killed)
    );
    assert_eq!(committed_units(&resumed), UNITS as usize);
    // Started again: nothing to measure, the written shard is reused, the output is the same.
    let last = run(&resumed, &[], &[]);
    ok(&last);
    assert!(
        stderr(&last).contains("1 shard(s) written, 1 already written"),
        "{}",
        stderr(&last)
    );
    assert_eq!(
        units(&resumed),
        serde_json::json!({"total": UNITS, "measured": 0, "reused": UNITS})
    );
    assert_eq!(shards_and_ledger(&resumed), expected);
}

#[test]
fn three_slices_in_separate_processes_give_the_one_machine_output() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    ok(&run(&whole, &[], &[]));
    let split = dir.path().join("split");
    let phase = |phase: &str, slice: Option<usize>| {
        let mut args = vec!["--phase", phase];
        let index = slice.map(|i| i.to_string());
        if let Some(index) = &index {
            args.extend_from_slice(&["--num-shards", "3", "--shard-index", index]);
        }
        run(&split, &args, &[])
    };
    ok(&phase("measure", Some(0)));
    // Decide before every unit is measured: exit 3, naming the missing units.
    let early = phase("decide", None);
    assert_eq!(early.status.code(), Some(3), "{}", stderr(&early));
    assert!(
        stderr(&early).contains("4 of 7 work unit(s) are not measured yet: 000001-"),
        "{}",
        stderr(&early)
    );
    // The write phase before decide: exit 3 too.
    assert_eq!(phase("write", Some(0)).status.code(), Some(3));
    // Slice 2 through the Slurm variables instead of the flags (--array=1-3: ids from 1).
    ok(&run(
        &split,
        &["--phase", "measure"],
        &[
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ],
    ));
    ok(&phase("measure", Some(1)));
    ok(&phase("decide", None));
    ok(&phase("write", Some(2)));
    ok(&phase("write", Some(0)));
    // Commit before the last shard is written: exit 3, naming it.
    let early = phase("commit", None);
    assert_eq!(early.status.code(), Some(3), "{}", stderr(&early));
    assert!(
        stderr(&early).contains("shards/png-000000.tar"),
        "{}",
        stderr(&early)
    );
    ok(&phase("write", Some(1)));
    ok(&phase("commit", None));
    assert_eq!(shards_and_ledger(&split), shards_and_ledger(&whole));
}

#[test]
fn a_changed_dedup_setting_reuses_every_unit_and_a_changed_filter_redoes_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ok(&run(&out, &[], &[]));
    let no_phash = ["--set", "dedup.phash_max_distance=0"];
    ok(&run(&out, &no_phash, &[]));
    assert_eq!(
        units(&out),
        serde_json::json!({"total": UNITS, "measured": 0, "reused": UNITS})
    );
    let fresh = dir.path().join("fresh");
    ok(&run(&fresh, &no_phash, &[]));
    assert_eq!(shards_and_ledger(&out), shards_and_ledger(&fresh));
    // The near duplicates are kept now: the rerun decided again.
    let rows = ledger_rows(&out);
    assert!(rows.iter().all(|r| r["drop_reason"] != "near_duplicate"));

    let min_side = ["--set", "filters.image.min_side=300"];
    let redo = run(&out, &min_side, &[]);
    ok(&redo);
    assert_eq!(
        units(&out),
        serde_json::json!({"total": UNITS, "measured": UNITS, "reused": 0})
    );
}

#[test]
fn a_percentile_threshold_resolves_over_every_slice_as_on_one_machine() {
    let dir = tempfile::tempdir().unwrap();
    let p30 = ["--set", "filters.image.min_sharpness=p30"];
    let whole = dir.path().join("whole");
    ok(&run(&whole, &p30, &[]));
    let split = dir.path().join("split");
    for (phase, slices) in [("measure", 3), ("decide", 0), ("write", 3), ("commit", 0)] {
        for index in 0..slices.max(1) {
            let index = index.to_string();
            let mut args = vec!["--phase", phase];
            if slices > 0 {
                args.extend_from_slice(&["--num-shards", "3", "--shard-index", &index]);
            }
            args.extend_from_slice(&p30);
            ok(&run(&split, &args, &[]));
        }
    }
    assert_eq!(shards_and_ledger(&split), shards_and_ledger(&whole));
    let thresholds = |out: &Path| {
        let json: Value = serde_json::from_slice(&read(find_manifest(out))).unwrap();
        json["thresholds"]["filters.image.min_sharpness"].clone()
    };
    let resolved = thresholds(&whole);
    assert_eq!(resolved["percentile"], 30.0);
    assert!(resolved["value"].as_f64().unwrap() > 0.0, "{resolved}");
    assert!(resolved["dropped"].as_u64().unwrap() >= 1, "{resolved}");
    assert_eq!(thresholds(&split), resolved);
}

/// The objects under `prefix` whose path has a `shards/` or `ledger/` folder, from there on.
fn s3_shards_and_ledger(moto: &crate::s3::Moto, prefix: &str) -> Vec<(String, Vec<u8>)> {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    let store = moto.store();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listed: Vec<_> = store
            .list(Some(&object_store::path::Path::from(prefix)))
            .try_collect()
            .await
            .unwrap();
        let mut files = Vec::new();
        for object in listed {
            let path = object.location.to_string();
            if path.contains("/state/") {
                continue;
            }
            let Some(at) = path.find("shards/").or_else(|| path.find("ledger/")) else {
                continue;
            };
            let bytes = store
                .get(&object.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            files.push((path[at..].to_string(), bytes.to_vec()));
        }
        files.sort();
        files
    })
}

#[test]
fn phases_on_separate_processes_share_their_state_through_the_object_store() {
    use crate::s3::{Moto, BUCKET};
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let whole = format!("s3://{BUCKET}/whole");
    let split = format!("s3://{BUCKET}/split");
    ok(&run(Path::new(&whole), &[], &env));
    let phase = |args: &[&str]| ok(&run(Path::new(&split), args, &env));
    phase(&[
        "--phase",
        "measure",
        "--num-shards",
        "2",
        "--shard-index",
        "1",
    ]);
    phase(&[
        "--phase",
        "measure",
        "--num-shards",
        "2",
        "--shard-index",
        "0",
    ]);
    phase(&["--phase", "decide"]);
    phase(&[
        "--phase",
        "write",
        "--num-shards",
        "2",
        "--shard-index",
        "0",
    ]);
    phase(&[
        "--phase",
        "write",
        "--num-shards",
        "2",
        "--shard-index",
        "1",
    ]);
    phase(&["--phase", "commit"]);
    let expected = s3_shards_and_ledger(&moto, "whole");
    assert!(expected.iter().any(|(p, _)| p.starts_with("shards/")));
    assert!(expected.iter().any(|(p, _)| p.starts_with("ledger/")));
    assert_eq!(s3_shards_and_ledger(&moto, "split"), expected);
}
