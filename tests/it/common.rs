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

/// `../shared/media/images`, the real images the tests use.
pub fn shared_images() -> PathBuf {
    let dir = root().join("../shared/media/images");
    assert!(
        dir.is_dir(),
        "{} is missing: the tests need the shared media folder beside the repository",
        dir.display()
    );
    dir
}

/// The shared media folder (`images/`, `video/`, `audio/`): MMCURATE_MEDIA when set, else the
/// parent of MMCURATE_MEDIA_IMAGES when it has a `video/` beside the images (scripts/gpu/check.sh
/// sets that one on the GPU machine, where prepare.sh carries `media/{images,video,audio}`), else
/// `../shared/media` beside the repository.
pub fn shared_media() -> PathBuf {
    if let Some(dir) = std::env::var_os("MMCURATE_MEDIA") {
        return PathBuf::from(dir);
    }
    if let Some(images) = std::env::var_os("MMCURATE_MEDIA_IMAGES") {
        if let Some(parent) = Path::new(&images).parent() {
            if parent.join("video").is_dir() {
                return parent.to_path_buf();
            }
        }
    }
    root().join("../shared/media")
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
