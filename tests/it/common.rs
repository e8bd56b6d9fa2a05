//! Helpers shared by the end-to-end tests: running the `mmcurate` binary, the Python clients
//! (webdataset, pyarrow, imagehash) from the test venv, and reading outputs back.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real media the tests use, kept in the repository (`tests/media`: images, video, audio;
/// origins and licences in tests/media/LICENSES.md). MMCURATE_MEDIA overrides it: on the GPU
/// machine scripts/gpu/check.sh runs a test binary built elsewhere, whose CARGO_MANIFEST_DIR
/// does not exist there, and points it at the `tests/media` of the checkout it runs in.
pub fn test_media() -> PathBuf {
    std::env::var_os("MMCURATE_MEDIA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("tests/media"))
}

/// `tests/media/images`: 42 photographs and renders, JPEG and PNG, colour and grey.
pub fn test_images() -> PathBuf {
    let dir = test_media().join("images");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir
}

/// A file of `tests/media/<kind>/<name>`.
pub fn test_media_file(kind: &str, name: &str) -> PathBuf {
    let path = test_media().join(kind).join(name);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// Makes the speech clip (`tests/media/make_speech.sh`: espeak-ng, then the ffmpeg CLI) as
/// `dir/name` and returns its path: 29.435 s of 16 kHz mono 16-bit PCM, about 24 s of speech
/// with pauses, then silence.
pub fn make_speech(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let output = Command::new("bash")
        .arg(root().join("tests/media/make_speech.sh"))
        .arg(&path)
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "tests/media/make_speech.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

/// The Python interpreter with the test clients (scripts/requirements-test.txt): set by
/// `scripts/test.sh` as MMCURATE_TEST_PYTHON, or the repository's `.venv`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("MMCURATE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python test environment: run `bash scripts/test.sh`, which creates .venv with the test clients"
    );
    venv
}

/// Runs a Python script from tests/python and parses its JSON output.
pub fn python_json(script: &str, args: &[&str]) -> Value {
    let output = Command::new(python())
        .arg(root().join("tests/python").join(script))
        .args(args)
        .output()
        .expect("python starts");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

/// Runs the mmcurate binary in the repository root.
pub fn mmcurate(args: &[&str]) -> Output {
    mmcurate_with_env(args, &[])
}

pub fn mmcurate_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mmcurate"));
    command
        .current_dir(root())
        .args(args)
        .env("RUST_LOG", "info");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("mmcurate starts")
}

/// Asserts success and returns stdout.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "mmcurate failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The ledger rows of an output folder, read with pyarrow, as (id → row).
pub fn ledger_rows(output: &Path) -> Vec<Value> {
    let ledger = python_json("read_ledger.py", &[output.to_str().unwrap()]);
    ledger["rows"].as_array().cloned().unwrap_or_default()
}

/// Reads a file under an output folder.
pub fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

/// Every file under `dir`, relative path → bytes (sorted).
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, read(&path)));
            }
        }
    }
    out.sort();
    out
}

/// Reads a little-endian float32 .npy file (C order): (shape, values).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = read(path);
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"));
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let values = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

/// The current version's folder of an output, as its `current.json` names it (asserting that
/// the pointer and the folder exist).
pub fn current_version(output: &Path) -> PathBuf {
    let pointer: Value = serde_json::from_slice(&read(output.join("current.json"))).unwrap();
    let folder = output.join(
        pointer["folder"]
            .as_str()
            .expect("current.json names a folder"),
    );
    assert!(folder.is_dir(), "{} is missing", folder.display());
    folder
}
