//! `mmcurate verify` on a real run of the quickstart corpus, and on copies of it corrupted by
//! the test the ways outputs go wrong: a truncated shard, an edited ledger, a member added to a
//! shard, a missing file, and a forgotten sample whose content is still there.

use crate::common::*;
use crate::quickstart::run_quickstart;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn verify(output: &Path) -> (Option<i32>, String) {
    let run = mmcurate(&["verify", output.to_str().unwrap()]);
    (
        run.status.code(),
        String::from_utf8_lossy(&run.stdout).into_owned(),
    )
}

/// A copy of the clean output, to corrupt.
fn copy_of(clean: &Path, name: &str) -> PathBuf {
    let copy = clean.parent().unwrap().join(name);
    let status = Command::new("cp")
        .args(["-a", clean.to_str().unwrap(), copy.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

fn pointer(output: &Path) -> Value {
    serde_json::from_slice(&read(output.join("current.json"))).unwrap()
}

fn problems(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| !l.starts_with("ok:")).collect()
}

#[test]
fn verify_passes_a_clean_output_and_names_each_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    run_quickstart(&clean, &[]);
    let (code, stdout) = verify(&clean);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("ok: version 1 of "), "{stdout}");
    let current = pointer(&clean);
    let shard = current["shards"][0].as_str().unwrap().to_string();
    let ledger = current["ledger"][0].as_str().unwrap().to_string();

    // A truncated shard: its size and sha256 are wrong, and its samples are missing.
    let out = copy_of(&clean, "truncated");
    let bytes = read(out.join(&shard));
    std::fs::write(out.join(&shard), &bytes[..bytes.len() / 2]).unwrap();
    let (code, stdout) = verify(&out);
    assert_eq!(code, Some(1), "{stdout}");
    let expected = format!(
        "{shard}: {} bytes, the manifest says {}",
        bytes.len() / 2,
        bytes.len()
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(stdout.contains(&format!("{shard}: sha256 ")), "{stdout}");

    // An edited ledger: a kept sample marked dropped. The file's checksum no longer matches,
    // and its shard member is no longer a kept sample.
    let out = copy_of(&clean, "edited");
    let edited = python_json(
        "ledger_edits.py",
        &["drop-first-kept", out.join(&ledger).to_str().unwrap()],
    );
    let (code, stdout) = verify(&out);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains(&format!("{ledger}: sha256 ")), "{stdout}");
    let key = edited["key"].as_str().unwrap();
    assert!(
        stdout.contains(&format!("member {key} is not a kept sample of the ledger")),
        "{stdout}"
    );

    // A member added to a shard (GNU tar appends it).
    let out = copy_of(&clean, "extra");
    std::fs::write(tmp.path().join("stowaway.txt"), b"not curated").unwrap();
    let status = Command::new("tar")
        .current_dir(tmp.path())
        .args(["-rf", out.join(&shard).to_str().unwrap(), "stowaway.txt"])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, stdout) = verify(&out);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{shard}: member stowaway is not a kept sample of the ledger"
        )),
        "{stdout}"
    );

    // A missing file.
    let out = copy_of(&clean, "missing");
    let last = current["shards"].as_array().unwrap().last().unwrap();
    let last = last.as_str().unwrap();
    std::fs::remove_file(out.join(last)).unwrap();
    let (code, stdout) = verify(&out);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains(&format!("{last}: missing")), "{stdout}");
    assert!(stdout.contains("is in no shard"), "{stdout}");

    // A forgotten sample whose content is still in a shard, the ledger and the state; and a
    // forgotten sha256 found nowhere, which passes.
    let rows = ledger_rows(&clean);
    let kept = rows.iter().find(|r| r["status"] == "kept").unwrap();
    let (sha256, id) = (
        kept["sha256"].as_str().unwrap(),
        kept["id"].as_str().unwrap(),
    );
    let out = copy_of(&clean, "forgotten");
    let forgotten = out
        .join(current["folder"].as_str().unwrap())
        .join("forgotten.parquet");
    python_json(
        "ledger_edits.py",
        &["forgotten", forgotten.to_str().unwrap(), sha256, id],
    );
    let (code, stdout) = verify(&out);
    assert_eq!(code, Some(1), "{stdout}");
    let found = problems(&stdout);
    assert!(
        found
            .iter()
            .any(|l| l.starts_with("versions/000001/shards/")
                && l.contains(&format!("holds forgotten content {sha256}"))),
        "{stdout}"
    );
    assert!(
        found
            .iter()
            .any(|l| l.starts_with("state/") && l.contains(sha256)),
        "{stdout}"
    );
    assert!(
        found
            .iter()
            .any(|l| l.contains(&format!("row {id} (kept) still has forgotten sha256"))),
        "{stdout}"
    );
    python_json(
        "ledger_edits.py",
        &[
            "forgotten",
            forgotten.to_str().unwrap(),
            &"0".repeat(64),
            "0:nobody.jpg",
        ],
    );
    let (code, stdout) = verify(&out);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("1 forgotten sha256(s) searched for"),
        "{stdout}"
    );
}
