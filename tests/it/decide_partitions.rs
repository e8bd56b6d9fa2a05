//! The decide phase spread over partition tasks, end to end with the CLIP fixture model and
//! semantic dedup on: `--phase measure`, then `--phase decide --num-shards 3 --shard-index I`
//! in three processes, then the unsliced decide (which merges their pairs), write and commit
//! give the shards, ledger and embeddings of a one-machine run byte for byte; a merge with a
//! task missing exits 3 naming it, and a task before measuring exits 3 too.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

const QUICKSTART: &str = "examples/quickstart/images";

/// Seven quickstart pictures, one of them twice at two sizes (a semantic copy pHash dedup,
/// off here, would also find), in units of 3 files.
fn corpus(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, source) in [
        ("baboon.jpg", "opencv_baboon.jpg"),
        ("baboon_small.jpg", "resized_opencv_baboon.jpg"),
        ("butterfly.jpg", "opencv_butterfly.jpg"),
        ("building.jpg", "opencv_building.jpg"),
        ("rocket.jpg", "skimage_rocket.jpg"),
        ("hopper.jpg", "matplotlib_grace_hopper.jpg"),
        ("camera.png", "skimage_camera.png"),
    ] {
        std::fs::copy(root().join(QUICKSTART).join(source), dir.join(name)).unwrap();
    }
}

fn config(dir: &Path, corpus: &Path, output: &Path) -> PathBuf {
    let path = dir.join(format!(
        "{}.toml",
        output.file_name().unwrap().to_str().unwrap()
    ));
    let text = format!(
        r#"
[run]
output = "{output}"
threads = 2
unit_size = 3

[[inputs]]
uri = "{corpus}"

[dedup]
phash_max_distance = 0
embedding_min_cosine = 0.998

[models.clip]
path = "{model}"
batch_size = 3
"#,
        output = output.display(),
        corpus = corpus.display(),
        model = root().join("tests/fixtures/clip-tiny").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["run", config.to_str().unwrap()];
    all.extend_from_slice(args);
    mmcurate(&all)
}

fn task(config: &Path, index: &str) -> Output {
    run(
        config,
        &[
            "--phase",
            "decide",
            "--num-shards",
            "3",
            "--shard-index",
            index,
        ],
    )
}

/// The shards, ledger and embeddings files of the current version.
fn outputs(out: &Path) -> Vec<(String, Vec<u8>)> {
    let files: Vec<_> = tree(&current_version(out))
        .into_iter()
        .filter(|(p, _)| {
            ["shards/", "ledger/", "embeddings/"]
                .iter()
                .any(|d| p.starts_with(d))
        })
        .collect();
    for dir in ["shards/", "ledger/", "embeddings/"] {
        assert!(
            files.iter().any(|(p, _)| p.starts_with(dir)),
            "{dir} in {out:?}"
        );
    }
    files
}

/// The names of the partition state files under an output's `state/`.
fn partition_files(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = tree(&out.join("state"))
        .into_iter()
        .filter_map(|(p, _)| p.split_once("/partitions/").map(|(_, n)| n.to_string()))
        .collect();
    names.sort();
    names
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn partition_tasks_in_separate_processes_give_the_one_machine_output() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("corpus");
    corpus(&images);
    let whole = tmp.path().join("whole");
    ok(&run(&config(tmp.path(), &images, &whole), &[]));
    let expected = outputs(&whole);
    let ledger = ledger_rows(&whole);
    let semantic = ledger
        .iter()
        .filter(|r| r["drop_reason"] == "semantic_duplicate")
        .count();
    assert_eq!(
        semantic, 1,
        "the small baboon is a semantic copy: {ledger:?}"
    );

    let split = tmp.path().join("split");
    let config = config(tmp.path(), &images, &split);
    // A partition task before every unit is measured: exit 3, naming what is missing.
    let early = task(&config, "0");
    assert_eq!(early.status.code(), Some(3), "{}", stderr(&early));
    assert!(
        stderr(&early).contains("not measured yet"),
        "{}",
        stderr(&early)
    );

    ok(&run(&config, &["--phase", "measure"]));
    // Tasks 0 and 2 (the first one makes the shared part: run-wide dedup and CLIP).
    ok(&task(&config, "0"));
    ok(&task(&config, "2"));
    assert_eq!(
        partition_files(&split),
        [
            "embeddings.npy",
            "pairs-00000-of-00003.cbor",
            "pairs-00002-of-00003.cbor",
            "shared.cbor"
        ]
    );
    // The merge with task 1 missing: exit 3, naming it; no decisions are made.
    let early = run(&config, &["--phase", "decide"]);
    assert_eq!(early.status.code(), Some(3), "{}", stderr(&early));
    assert!(
        stderr(&early).contains("1 partition task(s) have not committed their pairs yet: --shard-index 1 of --num-shards 3"),
        "{}",
        stderr(&early)
    );
    ok(&task(&config, "1"));
    // Run again, a task finds its pairs committed and does nothing.
    let again = ok(&task(&config, "1"));
    assert!(again.contains("(reused)"), "{again}");

    ok(&run(&config, &["--phase", "decide"]));
    ok(&run(&config, &["--phase", "write"]));
    ok(&run(&config, &["--phase", "commit"]));
    assert_eq!(outputs(&split), expected);
}
