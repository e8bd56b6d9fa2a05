//! The command line's contract: exit codes (0 ok, 1 run failed, 2 bad usage or config), clear
//! messages naming the key, the value and what is allowed, and `plan` writing nothing.

use crate::common::*;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_usage_and_bad_config_exit_with_2_and_say_why() {
    assert_eq!(mmcurate(&[]).status.code(), Some(2));
    assert_eq!(mmcurate(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(mmcurate(&["--help"]).status.code(), Some(0));

    let missing = mmcurate(&["run", "configs/does-not-exist.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("cannot read config file configs/does-not-exist.toml"));

    let out = mmcurate(&[
        "run",
        "configs/quickstart.toml",
        "--set",
        "dedup.phash_max_distance=99",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("config key `dedup.phash_max_distance` = 99: must be 0 (off) to 64 bits"),
        "{}",
        stderr(&out)
    );

    let out = mmcurate(&[
        "plan",
        "configs/quickstart.toml",
        "--set",
        "inputs.0.format=zip",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`inputs[0].format`: unknown variant `zip`"),
        "{}",
        stderr(&out)
    );

    let out = mmcurate(&[
        "run",
        "configs/quickstart.toml",
        "--set",
        "output.max_bytes_per_shard=lots",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("\"lots\" is not a size"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_lists_inputs_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("never-written");
    let set = format!("run.output={}", output.display());
    let text = ok(&mmcurate(&[
        "plan",
        "configs/quickstart.toml",
        "--set",
        &set,
    ]));
    assert!(
        text.contains("input 0: examples/quickstart/images (files): 40 objects")
            && text.contains("21 samples"),
        "{text}"
    );
    assert!(!output.exists(), "plan must not create the output");
}

#[test]
fn a_missing_input_fails_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    let out = mmcurate(&[
        "run",
        "configs/quickstart.toml",
        "--set",
        &format!("run.output={}", output.display()),
        "--set",
        "inputs.0.uri=examples/no-such-folder",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("examples/no-such-folder: no such file or folder; check the path"),
        "{}",
        stderr(&out)
    );
    assert!(!output.join("versions").exists() && !output.join("current.json").exists());
}
