//! The repository is self-contained: nothing the test suite or CI runs (src/, tests/, configs/
//! and the scripts CI runs) names a path outside the repository, and every media file the tests
//! use is in tests/media with its origin and licence in tests/media/LICENSES.md.

use crate::common::*;
use std::path::{Component, Path, PathBuf};

/// What CI runs besides src/, tests/ and configs/: .ci/run runs scripts/test.sh and
/// scripts/fuzz.sh (with scripts/fuzz_rustc.sh), which source scripts/setup.sh; the README's
/// quickstart runs scripts/quickstart.sh.
const CI_SCRIPTS: [&str; 6] = [
    ".ci/run",
    "scripts/test.sh",
    "scripts/fuzz.sh",
    "scripts/fuzz_rustc.sh",
    "scripts/setup.sh",
    "scripts/quickstart.sh",
];

/// Absolute locations of someone's machine.
const ABSOLUTE_PREFIXES: [&str; 6] = ["/work/", "/home/", "/root/", "/Users/", "/mnt/", "/srv/"];

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `base` joined with the relative `path`, `..` resolved lexically; None when it climbs above
/// the repository root (`base` is relative to the root).
fn resolve_inside(base: &Path, path: &str) -> Option<PathBuf> {
    let mut parts: Vec<String> = base
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for component in Path::new(path).components() {
        match component {
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(name) => parts.push(name.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    Some(parts.iter().collect())
}

/// The places in `text` (a file at `relative`) that name a path outside the repository: an
/// absolute home or work folder, or a relative path whose `..` climb above the root, read both
/// from the root (where the tests and scripts run) and from the file's folder. `include_str!`
/// and `include_bytes!` paths, and Markdown links, are read from the file's folder only, as the
/// compiler and Markdown readers do.
fn outside_paths(relative: &Path, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let at = |what: &str| format!("{}:{}: {what}", relative.display(), number + 1);
        for prefix in ABSOLUTE_PREFIXES {
            if line.contains(prefix) {
                found.push(at(line.trim()));
            }
        }
        let is_path_char = |c: char| c.is_ascii_alphanumeric() || "._-/$".contains(c);
        let mut rest = line;
        let mut offset = 0;
        while let Some(i) = rest.find("../") {
            let index = offset + i;
            let start = line[..index]
                .char_indices()
                .rev()
                .find(|&(_, c)| !is_path_char(c))
                .map_or(0, |(s, c)| s + c.len_utf8());
            let end = line[index..]
                .find(|c: char| !is_path_char(c))
                .map_or(line.len(), |e| index + e);
            let token = &line[start..end];
            let before = &line[..start];
            let file_relative = before.ends_with("include_str!(\"")
                || before.ends_with("include_bytes!(\"")
                || relative.extension().is_some_and(|e| e == "md");
            let folder = relative.parent().unwrap_or(Path::new(""));
            // `$X/../y` and `"/../y"` appended to a folder: read from the root.
            let path = token.trim_start_matches(|c: char| c != '.');
            let escapes = if file_relative {
                resolve_inside(folder, path).is_none()
            } else {
                resolve_inside(Path::new(""), path).is_none()
                    || resolve_inside(folder, path).is_none()
            };
            if escapes {
                found.push(at(token));
            }
            offset = index + 3;
            rest = &line[offset..];
        }
    }
    found
}

#[test]
fn nothing_the_tests_or_ci_run_names_a_path_outside_the_repository() {
    let root = root();
    let mut files: Vec<PathBuf> = ["src", "tests", "configs"]
        .iter()
        .flat_map(|dir| files_under(&root.join(dir)))
        .collect();
    files.extend(CI_SCRIPTS.iter().map(|script| root.join(script)));
    let this_file = root.join(file!());
    let mut found = Vec::new();
    let mut scanned = 0;
    for path in files {
        if path == this_file {
            continue;
        }
        // Media and model weights are not text; nothing in them is a path the tests open.
        let Ok(text) = String::from_utf8(read(&path)) else {
            continue;
        };
        scanned += 1;
        let relative = path.strip_prefix(&root).unwrap();
        found.extend(outside_paths(relative, &text));
    }
    assert!(scanned > 50, "only {scanned} text files scanned");
    assert!(
        found.is_empty(),
        "paths outside the repository:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_finds_paths_outside_the_repository() {
    let cases = [
        // (file, line, names a path outside the repository)
        (
            "tests/it/x.rs",
            "root().join(\"../sibling/media/images\")",
            true,
        ),
        (
            "src/decode/x.rs",
            "concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/../sibling/media/\")",
            true,
        ),
        ("scripts/test.sh", "media=$root/../sibling/media", true),
        ("tests/it/x.rs", "let dir = \"/work/shared/media\";", true),
        (
            "src/gpu/mod.rs",
            "include_str!(\"../../kernels/clip.cu\")",
            false,
        ),
        (
            "src/gpu/mod.rs",
            "include_str!(\"../../../kernels/clip.cu\")",
            true,
        ),
        ("src/write/x.rs", "let key = \"a/b.jpg\";", false),
        (
            "tests/it/x.rs",
            "root().join(\"tests/media/images\")",
            false,
        ),
        ("scripts/test.sh", "cd \"$(dirname \"$0\")/..\"", false),
        (
            "tests/fixtures/m/README.md",
            "see ../../media/LICENSES.md",
            false,
        ),
        (
            "tests/fixtures/m/README.md",
            "see ../../../../sibling/x.md",
            true,
        ),
    ];
    for (file, line, outside) in cases {
        let found = outside_paths(Path::new(file), line);
        assert_eq!(!found.is_empty(), outside, "{file}: {line}: {found:?}");
    }
}

#[test]
fn every_test_media_file_has_its_origin_and_licence() {
    let media = root().join("tests/media");
    let licences = String::from_utf8(read(media.join("LICENSES.md"))).unwrap();
    let mut missing = Vec::new();
    let mut counted = 0;
    for kind in ["images", "video", "audio"] {
        for path in files_under(&media.join(kind)) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            counted += 1;
            if !licences.contains(&name) {
                missing.push(format!("{kind}/{name}"));
            }
        }
    }
    assert!(counted >= 45, "only {counted} media files");
    assert!(
        missing.is_empty(),
        "not in tests/media/LICENSES.md: {missing:?}"
    );
}
