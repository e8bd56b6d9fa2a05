//! Versioned output and keeping the output ours: every run writes `versions/NNNNNN/` and commits
//! it by `current.json`; the real readers (webdataset, Hugging Face `datasets`, DuckDB and
//! `mmcurate inspect`) see exactly the current version; a version that was never committed is
//! invisible and its number is not reused; `mmcurate prune` and `[output] keep_versions` remove
//! only our files and never follow a symlink; a folder that is not ours is refused; the lock
//! keeps a second run off and a stale one is reported or taken over.

use crate::common::*;
use crate::quickstart::run_quickstart;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

fn run(output: &Path, extra: &[&str]) -> Output {
    let out = format!("run.output={}", output.display());
    let mut args = vec!["run", "configs/quickstart.toml", "--set", &out];
    args.extend_from_slice(extra);
    mmcurate(&args)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&read(path)).unwrap()
}

/// Every file a version's manifest lists is there, with its recorded sha256.
fn assert_complete(version: &Path) {
    let manifest = json_file(&version.join("manifest.json"));
    let mut files = 0;
    for list in ["shards", "ledger", "embeddings"] {
        for file in manifest[list].as_array().unwrap() {
            let bytes = read(version.join(file["name"].as_str().unwrap()));
            assert_eq!(
                file["sha256"],
                hex::encode(Sha256::digest(&bytes)),
                "{file}"
            );
            files += 1;
        }
    }
    assert!(files >= 2, "{}: {files} files", version.display());
}

/// The keys of the kept rows of the ledger read at `output` (an output or a version folder).
fn kept_keys(output: &Path) -> BTreeSet<String> {
    ledger_rows(output)
        .iter()
        .filter(|r| r["status"] == "kept")
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn readers_see_exactly_the_current_version_and_the_previous_one_stays_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    run_quickstart(&output, &["--set", "filters.image.min_sharpness=200"]);
    run_quickstart(&output, &[]);

    let (v1, v2) = (
        output.join("versions/000001"),
        output.join("versions/000002"),
    );
    assert_eq!(current_version(&output), v2);
    let manifest = json_file(&v2.join("manifest.json"));
    assert_eq!(
        (&manifest["version"], &manifest["parent_version"]),
        (&json!(2), &json!(1))
    );
    assert_complete(&v1);
    assert_complete(&v2);
    assert_eq!(
        std::fs::read_link(output.join("current")).unwrap(),
        Path::new("versions/000002")
    );
    let current = kept_keys(&output);
    let previous = kept_keys(&v1);
    assert_eq!((current.len(), previous.len()), (10, 9));
    assert_ne!(current, previous);

    // The README's readers, by current.json's lists.
    let cache = tmp.path().join("hf-cache");
    let read = python_json(
        "read_current.py",
        &[output.to_str().unwrap(), cache.to_str().unwrap()],
    );
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(read["version"], 2);
    assert_eq!(keys(&read["webdataset"]), current);
    assert_eq!(read["webdataset"].as_array().unwrap().len(), 10);
    assert_eq!(keys(&read["datasets"]), current);
    assert_eq!(keys(&read["duckdb"]["kept_keys"]), current);
    assert_eq!(
        (&read["duckdb"]["rows"], &read["duckdb"]["kept"]),
        (&json!(21), &json!(10))
    );

    let text = ok(&mmcurate(&["inspect", output.to_str().unwrap()]));
    assert!(
        text.contains("current version 2 (versions/000002)")
            && text.contains("replacing version 1"),
        "{text}"
    );
    assert!(text.contains("21 samples, 10 kept, 11 dropped"), "{text}");
    let text = ok(&mmcurate(&["inspect", v1.to_str().unwrap()]));
    assert!(text.contains("version 1 (this folder"), "{text}");
    assert!(text.contains("21 samples, 9 kept, 12 dropped"), "{text}");
}

#[test]
fn an_uncommitted_version_is_invisible_and_prune_removes_only_our_files_never_through_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    run_quickstart(&output, &[]);
    let v1 = output.join("versions/000001");

    // A run killed before its commit left versions/000002: a whole shard, an unfinished upload,
    // someone's note, and a `ledger` that is a symlink to a folder that is not ours.
    let v2 = output.join("versions/000002");
    std::fs::create_dir_all(v2.join("shards")).unwrap();
    std::fs::copy(
        v1.join("shards/jpg-000000.tar"),
        v2.join("shards/jpg-000000.tar"),
    )
    .unwrap();
    std::fs::write(v2.join("shards/png-000000.tar#7"), b"partial").unwrap();
    std::fs::write(v2.join("notes.txt"), b"someone's").unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("ledger-000000.parquet"), b"not ours").unwrap();
    std::os::unix::fs::symlink(&elsewhere, v2.join("ledger")).unwrap();

    // Readers still see version 1 only.
    assert_eq!(current_version(&output), v1);
    let shards = python_json("read_shards.py", &[output.to_str().unwrap()]);
    assert_eq!(shards["samples"].as_array().unwrap().len(), 10);
    assert!(shards["shards"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s.as_str().unwrap().contains("/versions/000001/shards/")));
    let text = ok(&mmcurate(&["inspect", output.to_str().unwrap()]));
    assert!(text.contains("current version 1"), "{text}");

    // The next run does not reuse the number, says what it found, and replaces version 1.
    let third = run(&output, &[]);
    ok(&third);
    assert!(
        stderr(&third).contains("versions/000002 was left by a run that stopped before its commit"),
        "{}",
        stderr(&third)
    );
    let v3 = output.join("versions/000003");
    assert_eq!(current_version(&output), v3);
    assert_eq!(json_file(&v3.join("manifest.json"))["parent_version"], 1);

    // Version 1's shards folder is now a symlink to a folder elsewhere.
    let moved = tmp.path().join("v1-shards");
    std::fs::rename(v1.join("shards"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, v1.join("shards")).unwrap();

    let text = ok(&mmcurate(&[
        "prune",
        output.to_str().unwrap(),
        "--keep",
        "1",
    ]));
    for line in [
        "removed version(s) 1",
        "removed uncommitted folder(s) of version(s) 2",
        "removed versions/000001/manifest.json",
        "removed versions/000001/ledger/ledger-000000.parquet",
        "removed versions/000001/report.html",
        "removed versions/000002/shards/jpg-000000.tar",
        "removed versions/000002/shards/png-000000.tar#7",
        "left versions/000001/shards/jpg-000000.tar (versions/000001/shards is a symlink: not followed)",
        "left versions/000002/ledger (not a file mmcurate writes)",
        "left versions/000002/notes.txt (not a file mmcurate writes)",
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
    }
    // What is behind the symlinks, and what is not ours, survives.
    assert_eq!(read(elsewhere.join("ledger-000000.parquet")), b"not ours");
    assert!(moved.join("jpg-000000.tar").is_file() && moved.join("png-000000.tar").is_file());
    assert_eq!(read(v2.join("notes.txt")), b"someone's");
    assert!(!v1.join("manifest.json").exists() && !v2.join("shards").exists());
    assert_complete(&v3);
    assert_eq!(current_version(&output), v3);

    // `[output] keep_versions = 1`: after its commit, a run removes the version it replaced.
    let fourth = run(&output, &["--set", "output.keep_versions=1"]);
    ok(&fourth);
    assert!(
        stderr(&fourth).contains("keep_versions = 1: removed version(s) 3"),
        "{}",
        stderr(&fourth)
    );
    assert!(!v3.exists());
    assert_complete(&output.join("versions/000004"));
    assert_eq!(kept_keys(&output).len(), 10);
}

#[test]
fn a_folder_that_is_not_an_mmcurate_output_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    std::fs::create_dir_all(output.join("shards")).unwrap();
    std::fs::write(output.join("notes.txt"), b"mine").unwrap();
    std::fs::write(output.join("shards/mine.txt"), b"mine too").unwrap();
    let refused = run(&output, &[]);
    assert_eq!(refused.status.code(), Some(2));
    let message = stderr(&refused);
    assert!(
        message.contains(&format!(
            "{} is not empty and is not an mmcurate output",
            output.display()
        )) && message.contains("it holds 2 entries: notes.txt, shards/")
            && message.contains("Choose another output path, or empty this one first"),
        "{message}"
    );
    // What is left: version 1, the pointer and link, and the run's state (prune keeps it).
    let left: Vec<String> = tree(&output).into_iter().map(|(name, _)| name).collect();
    assert_eq!(left, ["notes.txt", "shards/mine.txt"]);
}

#[test]
fn a_held_lock_refuses_a_run_and_a_stale_one_is_reported_or_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    std::fs::create_dir(&output).unwrap();
    let lock = output.join(".mmcurate.lock");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let holder = |pid: u32, host: &str| {
        json!({"pid": pid, "host": host, "started_at": "2026-01-01T00:00:00Z",
               "command": "mmcurate run other.toml"})
        .to_string()
    };

    // Held by a live process (this test, with the lock file's flock, as a run holds it).
    {
        std::fs::write(&lock, holder(std::process::id(), &host)).unwrap();
        let held = std::fs::File::open(&lock).unwrap();
        // SAFETY: flock(2) on a descriptor `held` owns and keeps open until the block ends.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&held),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        assert_eq!(rc, 0);
        let refused = run(&output, &[]);
        assert_eq!(refused.status.code(), Some(2));
        let message = stderr(&refused);
        assert!(
            message.contains(&format!(
                "another run is using this output: {} is held by pid {} on {host}",
                lock.display(),
                std::process::id()
            )) && message.contains("(mmcurate run other.toml)"),
            "{message}"
        );
        assert_eq!(read(&lock), holder(std::process::id(), &host).as_bytes());
    }

    // Left on another machine: this host cannot tell whether it still runs.
    std::fs::write(&lock, holder(4242, "node-17")).unwrap();
    let refused = run(&output, &[]);
    assert_eq!(refused.status.code(), Some(2));
    let message = stderr(&refused);
    assert!(
        message.contains(&format!(
            "{} is a lock left by pid 4242 on node-17",
            lock.display()
        )) && message.contains(&format!(
            "if no run is using this output, delete {} and run again",
            lock.display()
        )),
        "{message}"
    );
    assert!(!output.join("versions").exists());

    // A run killed with SIGKILL while it works leaves its lock and no version; the next run on
    // this host finds the process gone, takes the lock over, and commits version 1.
    std::fs::remove_file(&lock).unwrap();
    let mut killed = std::process::Command::new(env!("CARGO_BIN_EXE_mmcurate"))
        .current_dir(root())
        .args(["-q", "run", "configs/quickstart.toml", "--set"])
        .arg(format!("run.output={}", output.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while serde_json::from_slice::<Value>(&std::fs::read(&lock).unwrap_or_default()).is_err() {
        assert!(
            killed.try_wait().unwrap().is_none() && started.elapsed().as_secs() < 120,
            "the run ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert_eq!(json_file(&lock)["pid"], killed.id());
    assert!(!output.join("current.json").exists());
    let taken = run(&output, &[]);
    ok(&taken);
    assert!(
        stderr(&taken).contains(&format!(
            "taking over the stale lock {}: it was left by pid {} on {host}",
            lock.display(),
            killed.id()
        )),
        "{}",
        stderr(&taken)
    );
    assert!(!lock.exists(), "the run removed its lock when it ended");
    assert_eq!(current_version(&output), output.join("versions/000001"));
    assert_complete(&current_version(&output));
}

#[test]
fn an_output_written_before_versions_is_version_0() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    run_quickstart(&output, &[]);
    // Lay it out as mmcurate did before versions: the files at the top, `_SUCCESS` last.
    let v1 = output.join("versions/000001");
    for name in [
        "shards",
        "ledger",
        "manifest.json",
        "report.html",
        "report.json",
    ] {
        std::fs::rename(v1.join(name), output.join(name)).unwrap();
    }
    for name in ["current.json", "current"] {
        std::fs::remove_file(output.join(name)).unwrap();
    }
    // Outputs of that layout had no work-unit state either.
    for name in ["versions", "state"] {
        std::fs::remove_dir_all(output.join(name)).unwrap();
    }
    let mut manifest = json_file(&output.join("manifest.json"));
    let object = manifest.as_object_mut().unwrap();
    object.remove("version");
    object.remove("parent_version");
    std::fs::write(output.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(output.join("_SUCCESS"), b"").unwrap();

    let text = ok(&mmcurate(&["inspect", output.to_str().unwrap()]));
    assert!(
        text.contains("version 0: written before versioned outputs"),
        "{text}"
    );
    assert!(text.contains("21 samples, 10 kept, 11 dropped"), "{text}");

    run_quickstart(&output, &[]);
    assert_eq!(current_version(&output), v1);
    assert_eq!(json_file(&v1.join("manifest.json"))["parent_version"], 0);
    assert!(
        output.join("shards/jpg-000000.tar").exists(),
        "version 0 is left until pruned"
    );

    let text = ok(&mmcurate(&[
        "prune",
        output.to_str().unwrap(),
        "--keep",
        "1",
    ]));
    assert!(text.lines().any(|l| l == "removed version(s) 0"), "{text}");
    // What is left: version 1, the pointer and link, and the run's state (prune keeps it).
    let left: Vec<String> = tree(&output).into_iter().map(|(name, _)| name).collect();
    assert!(
        left.iter().all(|n| n == "current.json"
            || n.starts_with("versions/000001/")
            || n.starts_with("current/")
            || n.starts_with("state/")),
        "{left:?}"
    );
    assert!(!output.join("shards").exists() && !output.join("_SUCCESS").exists());
}
