//! The module layout is the data flow, and this test keeps it so: it reads every file under
//! `src/` and fails on a `crate::…` (or `super::…` climbing to the crate root) path that goes
//! against the dependency rules, on an import cycle between top-level modules, and on two
//! sibling files that import each other.
//!
//! The rules, by top-level module (`src/<module>/…` or `src/<module>.rs`):
//! - Stages, in flow order: `config` → `store` → `plan` → `source` → `decode` → `measure` →
//!   `decide` → `write`. (`store`, object storage access, is the lowest stage that does I/O:
//!   `plan` lists through it, `source` fetches through it, `write` writes through it.) A stage
//!   may use the stages before it, never one after it. `record` (the per-sample record handed
//!   from `measure` to `decide` and `write`) ranks between `measure` and `decide`, and `state`
//!   (the work units' records and staged bytes, kept between phases) right after it.
//! - Low-level modules (`pixels`, `vector`, `contain`) may be used by every module and use no
//!   stage, `gpu`, `models`, `pipeline` or `cli` (only each other).
//! - `gpu` (beside the stages: a device backend of decode and measure) may use `config`,
//!   `decode`, `measure` and the low-level modules.
//! - `models` (beside the stages) may use `config`, `gpu` and the low-level modules.
//! - No stage uses `gpu`; only `measure`, `decide` and `write` may use `models` (embedding
//!   models, and their identity for the provenance).
//! - `pipeline` and `cli` may use everything; nothing else uses them.
//! - Items of the crate root (`crate::VERSION`) may be used by all.
//!
//! Code under `#[cfg(test)]` (an inline test module, or a file declared `#[cfg(test)] mod x;`)
//! may use any module: tests compare with references wherever those live. Comments and string
//! literals are not read as paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The stages, in the order data meets them.
/// `record` is not a stage but the hand-over between them: the per-sample record that
/// `measure` fills (it holds `source`'s origin and `measure`'s measurements) and `decide` and
/// `write` work on, so it ranks between `measure` and `decide`. `state` keeps those records
/// (and the staged candidates) between phases: it stores `record`s, and `decide` and `write`
/// read through it, so it ranks right after `record`.
const STAGES: [&str; 10] = [
    "config", "store", "plan", "source", "decode", "measure", "record", "state", "decide", "write",
];
/// Modules every module may use, which use no stage.
const LOW_LEVEL: [&str; 3] = ["pixels", "vector", "contain"];
/// Modules that run the stages together, which may use everything.
const ORCHESTRATION: [&str; 2] = ["pipeline", "cli"];
/// Beside the stages.
const BESIDE: [&str; 2] = ["gpu", "models"];

fn stage_rank(module: &str) -> Option<usize> {
    STAGES.iter().position(|s| *s == module)
}

/// Every top-level module the rules know.
fn known(module: &str) -> bool {
    stage_rank(module).is_some()
        || LOW_LEVEL.contains(&module)
        || ORCHESTRATION.contains(&module)
        || BESIDE.contains(&module)
}

/// Whether top-level module `from` may use top-level module `to` (see the module comment).
fn allowed(from: &str, to: &str) -> bool {
    if from == to || LOW_LEVEL.contains(&to) {
        return true;
    }
    if LOW_LEVEL.contains(&from) {
        return false;
    }
    if ORCHESTRATION.contains(&from) {
        return true;
    }
    if ORCHESTRATION.contains(&to) {
        return false;
    }
    match from {
        "gpu" => matches!(to, "config" | "decode" | "measure"),
        "models" => matches!(to, "config" | "gpu"),
        _ => match (stage_rank(from), stage_rank(to)) {
            (Some(f), Some(t)) => t < f,
            (Some(_), None) => to == "models" && matches!(from, "measure" | "decide" | "write"),
            _ => false,
        },
    }
}

/// One path out of a file into another top-level module (or the crate root's items).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    /// The first segment after `crate::`: a top-level module, or an item of the crate root.
    target: String,
    /// The segment after that, when there is one (a file of the target, for sibling checks).
    next: Option<String>,
    line: usize,
    /// Inside `#[cfg(test)]` code.
    in_test: bool,
}

/// `text` with comments blanked out and string and char literals emptied, newlines kept (so
/// line numbers hold).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // A raw string r"…" or r#"…"#: count the hashes, find the closing quote.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push(b'"');
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|h| b.get(j + 1 + h) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                blank(&mut out, b[j]);
                j += 1;
            }
            out.push(b'"');
            i = j;
        } else if c == b'"' {
            out.push(b'"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            out.push(b'"');
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                out.extend_from_slice(b"' '");
                i = j + 1;
            } else if let Some(&lead) = b.get(i + 1) {
                // One UTF-8 character between the quotes, else a lifetime.
                let len = match lead {
                    0..0x80 => 1,
                    0x80..0xE0 => 2,
                    0xE0..0xF0 => 3,
                    _ => 4,
                };
                if b.get(i + 1 + len) == Some(&b'\'') {
                    out.extend_from_slice(b"' '");
                    i += 2 + len;
                } else {
                    out.push(c);
                    i += 1;
                }
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Byte ranges of `code` (already [`code_only`]) inside `#[cfg(test)]` items with a body
/// (`mod tests { … }`, a test-only fn), and the names of `#[cfg(test)] mod name;` files.
fn test_regions(code: &str) -> (Vec<(usize, usize)>, Vec<String>) {
    let mut regions = Vec::new();
    let mut files = Vec::new();
    let b = code.as_bytes();
    let mut from = 0;
    while let Some(found) = code[from..].find("#[cfg(test)]") {
        let start = from + found;
        let mut i = start + "#[cfg(test)]".len();
        // The item the attribute is on: up to its `;` (a file module) or its body's end.
        while i < b.len() && b[i] != b'{' && b[i] != b';' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b';' {
            let item = code[start + "#[cfg(test)]".len()..i].trim();
            if let Some(name) = item.strip_prefix("mod ") {
                files.push(name.trim().to_string());
            }
            from = i + 1;
            continue;
        }
        let mut depth = 0;
        let mut end = i;
        while end < b.len() {
            match b[end] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            end += 1;
        }
        regions.push((start, end));
        from = end.max(start + 1);
    }
    (regions, files)
}

/// How many inline `mod x { … }` blocks are open at each byte of `code`.
fn inline_module_depths(code: &str) -> Vec<usize> {
    let b = code.as_bytes();
    let mut depths = vec![0; b.len() + 1];
    let mut braces = 0usize;
    // The brace depth at which each open inline module's body started.
    let mut open: Vec<usize> = Vec::new();
    let mut pending_mod = false;
    let mut i = 0;
    while i < b.len() {
        let word_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if word_start && b[i..].starts_with(b"mod ") {
            pending_mod = true;
        }
        match b[i] {
            b';' => pending_mod = false,
            b'{' => {
                braces += 1;
                if pending_mod {
                    open.push(braces);
                    pending_mod = false;
                }
            }
            b'}' => {
                if open.last() == Some(&braces) {
                    open.pop();
                }
                braces = braces.saturating_sub(1);
            }
            _ => {}
        }
        depths[i] = open.len();
        i += 1;
    }
    depths
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The identifier at `code[i..]` after white space, and where it ends.
fn ident_at(code: &str, mut i: usize) -> Option<(String, usize)> {
    let b = code.as_bytes();
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    while i < b.len() && is_ident(b[i]) {
        i += 1;
    }
    (i > start).then(|| (code[start..i].to_string(), i))
}

/// After `::` (with white space): the position past it, if there is one.
fn after_path_sep(code: &str, mut i: usize) -> Option<usize> {
    let b = code.as_bytes();
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    b[i..].starts_with(b"::").then_some(i + 2)
}

/// The paths named right after `crate::` at `i`: one, or each of a `{a, b::c}` group.
fn names_at(code: &str, i: usize) -> Vec<(String, Option<String>)> {
    let b = code.as_bytes();
    let mut j = i;
    while j < b.len() && b[j].is_ascii_whitespace() {
        j += 1;
    }
    if b.get(j) == Some(&b'{') {
        let mut depth = 0;
        let mut end = j;
        while end < b.len() {
            match b[end] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            end += 1;
        }
        let inner = &code[j + 1..end.min(b.len())];
        let mut items = Vec::new();
        let mut depth = 0;
        let mut item_start = 0;
        for (k, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&inner[item_start..k]);
                    item_start = k + 1;
                }
                _ => {}
            }
        }
        items.push(&inner[item_start..]);
        return items
            .into_iter()
            .filter_map(|item| {
                let (first, end) = ident_at(item, 0)?;
                let next = after_path_sep(item, end)
                    .and_then(|k| ident_at(item, k))
                    .map(|(n, _)| n);
                Some((first, next))
            })
            .collect();
    }
    match ident_at(code, j) {
        Some((first, end)) => {
            let next = after_path_sep(code, end)
                .and_then(|k| ident_at(code, k))
                .map(|(n, _)| n);
            vec![(first, next)]
        }
        None => Vec::new(),
    }
}

/// Every path in `text` (a file `depth` modules below the crate root: 1 for
/// `src/decode/mod.rs` or `src/vector.rs`, 2 for `src/decode/av/mod.rs`) that leaves for the
/// crate root: `crate::x…`, and `super::…` chains that climb to it.
fn references(text: &str, depth: usize) -> Vec<Reference> {
    let code = code_only(text);
    let (tests, _) = test_regions(&code);
    let inline = inline_module_depths(&code);
    let line_of = |pos: usize| code[..pos].bytes().filter(|&c| c == b'\n').count() + 1;
    let in_test = |pos: usize| tests.iter().any(|&(a, b)| a <= pos && pos <= b);
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let word_start = i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == b'$');
        if !word_start || !is_ident(b[i]) {
            i += 1;
            continue;
        }
        let Some((word, end)) = ident_at(&code, i) else {
            i += 1;
            continue;
        };
        // Only path starts: not the tail of `a::crate` (impossible) nor of `x.super`.
        let at_path_start = i < 2 || &b[i - 2..i] != b"::";
        if at_path_start && word == "crate" {
            if let Some(k) = after_path_sep(&code, end) {
                for (target, next) in names_at(&code, k) {
                    out.push(Reference {
                        target,
                        next,
                        line: line_of(i),
                        in_test: in_test(i),
                    });
                }
            }
        } else if at_path_start && word == "super" {
            // Count the chain: super::super::…
            let mut climbs = 1;
            let mut k = end;
            while let Some(after) = after_path_sep(&code, k) {
                match ident_at(&code, after) {
                    Some((w, e)) if w == "super" => {
                        climbs += 1;
                        k = e;
                    }
                    _ => break,
                }
            }
            let module_depth = depth + inline[i];
            if climbs >= module_depth {
                if let Some(after) = after_path_sep(&code, k) {
                    for (target, next) in names_at(&code, after) {
                        out.push(Reference {
                            target,
                            next,
                            line: line_of(i),
                            in_test: in_test(i),
                        });
                    }
                }
            }
            i = k;
            continue;
        }
        i = end;
    }
    out
}

/// The problems of one file: `module` is its top-level module, `text` its source.
fn check_file(module: &str, depth: usize, text: &str, test_only: bool) -> Vec<String> {
    references(text, depth)
        .into_iter()
        .filter(|r| !r.in_test && !test_only)
        .filter(|r| known(&r.target) && !allowed(module, &r.target))
        .map(|r| {
            format!(
                "line {}: `{module}` must not use `crate::{}`",
                r.line, r.target
            )
        })
        .collect()
}

/// A source file, its top-level module and its depth below the crate root.
struct SourceFile {
    path: PathBuf,
    relative: String,
    module: String,
    depth: usize,
    text: String,
}

fn source_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![root.clone()];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let mut parts: Vec<&str> = relative.trim_end_matches(".rs").split('/').collect();
                if parts.last() == Some(&"mod") {
                    parts.pop();
                }
                let module = parts[0].to_string();
                let depth = if matches!(relative.as_str(), "lib.rs" | "main.rs") {
                    0
                } else {
                    parts.len()
                };
                let text = std::fs::read_to_string(&path).unwrap();
                files.push(SourceFile {
                    path,
                    relative,
                    module,
                    depth,
                    text,
                });
            }
        }
    }
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    files
}

/// Files declared `#[cfg(test)] mod name;`: test code in full.
fn test_only_files(files: &[SourceFile]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for file in files {
        let (_, names) = test_regions(&code_only(&file.text));
        let dir = if file
            .path
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs")
        {
            file.path.parent().unwrap().to_path_buf()
        } else {
            file.path.with_extension("")
        };
        for name in names {
            out.insert(dir.join(format!("{name}.rs")));
            out.insert(dir.join(&name).join("mod.rs"));
        }
    }
    out
}

/// A cycle in `edges`, if there is one, as the modules along it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn every_top_level_module_has_a_place_in_the_rules() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(modules.contains(&"decode"), "{modules:?}");
    let unknown: Vec<&&str> = modules.iter().filter(|m| !known(m)).collect();
    assert!(
        unknown.is_empty(),
        "modules the dependency rules do not place (add them to tests/it/architecture.rs): {unknown:?}"
    );
}

#[test]
fn imports_follow_the_data_flow() {
    let files = source_files();
    assert!(files.len() > 40, "read {} files", files.len());
    let test_only = test_only_files(&files);
    let mut problems = Vec::new();
    for file in &files {
        if file.depth == 0 {
            continue;
        }
        for problem in check_file(
            &file.module,
            file.depth,
            &file.text,
            test_only.contains(&file.path),
        ) {
            problems.push(format!("src/{}: {problem}", file.relative));
        }
    }
    assert!(
        problems.is_empty(),
        "imports against the data flow (see the rules in tests/it/architecture.rs):\n{}",
        problems.join("\n")
    );
}

#[test]
fn top_level_modules_import_no_cycle() {
    let files = source_files();
    let test_only = test_only_files(&files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| f.depth > 0) {
        if test_only.contains(&file.path) {
            continue;
        }
        for r in references(&file.text, file.depth) {
            if !r.in_test && known(&r.target) && r.target != file.module {
                edges
                    .entry(file.module.clone())
                    .or_default()
                    .insert(r.target);
            }
        }
    }
    assert!(edges.contains_key("write"), "{edges:?}");
    assert_eq!(find_cycle(&edges), None, "{edges:?}");
}

#[test]
fn sibling_files_do_not_import_each_other() {
    let files = source_files();
    let test_only = test_only_files(&files);
    let folder = |f: &SourceFile| {
        f.relative
            .rsplit_once('/')
            .map_or("", |(d, _)| d)
            .to_string()
    };
    let stem = |f: &SourceFile| {
        f.relative
            .rsplit_once('/')
            .map_or("", |(_, n)| n)
            .trim_end_matches(".rs")
            .to_string()
    };
    // Which plain file (not mod.rs) names which sibling, through `super::name`,
    // `super::{name, …}` or `crate::<folder>::name`.
    let mut uses: BTreeSet<(String, String)> = BTreeSet::new();
    for file in files.iter().filter(|f| f.depth > 1) {
        if test_only.contains(&file.path) || file.relative.ends_with("/mod.rs") {
            continue;
        }
        let dir = folder(file);
        let siblings: BTreeSet<String> = files
            .iter()
            .filter(|f| folder(f) == dir && !f.relative.ends_with("/mod.rs"))
            .map(stem)
            .filter(|name| *name != stem(file))
            .collect();
        let code = code_only(&file.text);
        let (tests, _) = test_regions(&code);
        let prefixes = [
            "super::".to_string(),
            format!("crate::{}::", dir.replace('/', "::")),
        ];
        for prefix in &prefixes {
            let mut from = 0;
            while let Some(at) = code[from..].find(prefix.as_str()) {
                let pos = from + at;
                let starts_path = pos < 2 || &code.as_bytes()[pos - 2..pos] != b"::";
                let preceded = pos > 0 && is_ident(code.as_bytes()[pos - 1]);
                if starts_path && !preceded && !tests.iter().any(|&(a, b)| a <= pos && pos <= b) {
                    for (name, _) in names_at(&code, pos + prefix.len()) {
                        if siblings.contains(&name) {
                            uses.insert((file.relative.clone(), format!("{dir}/{name}.rs")));
                        }
                    }
                }
                from = pos + prefix.len();
            }
        }
    }
    assert!(
        uses.contains(&("gpu/cuda.rs".to_string(), "gpu/batcher.rs".to_string())),
        "{uses:?}"
    );
    let mutual: Vec<_> = uses
        .iter()
        .filter(|(a, b)| a < b && uses.contains(&(b.clone(), a.clone())))
        .collect();
    assert!(
        mutual.is_empty(),
        "sibling files that import each other: {mutual:?}"
    );
}

/// The checker itself, on planted imports: each must be caught, and the allowed ones not.
#[test]
fn the_checker_catches_planted_bad_imports() {
    // A stage using a later stage, through `use`, a grouped `use` and a path in code.
    let decode = "//! decoding\nuse crate::measure::audio::LevelMeter;\nfn f() {}\n";
    assert_eq!(
        check_file("decode", 1, decode, false),
        ["line 2: `decode` must not use `crate::measure`"]
    );
    let grouped = "use crate::{pixels::LumaImage, write::Record};\n";
    assert_eq!(
        check_file("measure", 1, grouped, false),
        ["line 1: `measure` must not use `crate::write`"]
    );
    let inline = "fn f() -> bool {\n    crate::gpu::device::driver_available()\n}\n";
    assert_eq!(
        check_file("decode", 2, inline, false),
        ["line 2: `decode` must not use `crate::gpu`"]
    );
    // `config` uses no later stage; low-level modules use no stage.
    assert_eq!(
        check_file("config", 1, "use crate::gpu::Selected;", false).len(),
        1
    );
    assert_eq!(
        check_file("config", 1, "use crate::plan::Plan;", false).len(),
        1
    );
    assert_eq!(
        check_file("source", 1, "use crate::decode::probe;", false).len(),
        1
    );
    // Planning lists and reads manifests through `store`, never through `source`.
    assert_eq!(
        check_file("plan", 1, "use crate::source::files::fetch;", false).len(),
        1
    );
    assert_eq!(
        check_file("store", 1, "use crate::plan::Plan;", false).len(),
        1
    );
    assert!(check_file("plan", 1, "use crate::store::Stores;", false).is_empty());
    assert_eq!(
        check_file("vector", 1, "use crate::decide::Drop;", false).len(),
        1
    );
    assert_eq!(
        check_file("pixels", 1, "use crate::decode::probe;", false).len(),
        1
    );
    // models and gpu: beside, and not the other way round.
    assert_eq!(
        check_file("gpu", 1, "use crate::models::clip::Clip;", false).len(),
        1
    );
    assert_eq!(
        check_file("decode", 1, "use crate::models::clip::Clip;", false).len(),
        1
    );
    assert_eq!(
        check_file("write", 1, "use crate::pipeline::run;", false).len(),
        1
    );
    // `super::` climbing to the root from `src/decode/av/mod.rs` (depth 2), and from an
    // inline module one deeper.
    let climbing = "use super::super::measure::audio::LevelMeter;\n";
    assert_eq!(check_file("decode", 2, climbing, false).len(), 1);
    let nested = "mod inner {\n    use super::super::super::write::Record;\n}\n";
    assert_eq!(check_file("decode", 2, nested, false).len(), 1);
    // …but a `super::` that stays inside the module is its own business.
    assert!(check_file("decode", 2, "use super::DecodeError;\n", false).is_empty());

    // Allowed: earlier stages, low-level modules, the crate root, pipeline using all.
    let fine = "use crate::config::Config;\nuse crate::decode::av::MediaInfo;\nuse crate::pixels::LumaImage;\nuse crate::vector::cosine;\nconst V: &str = crate::VERSION;\n";
    assert!(check_file("measure", 1, fine, false).is_empty());
    assert!(check_file(
        "pipeline",
        1,
        "use crate::gpu::select;\nuse crate::write::Record;",
        false
    )
    .is_empty());
    assert!(check_file("gpu", 1, "use crate::measure::QualityKernels;", false).is_empty());
    assert!(check_file("models", 1, "use crate::gpu::Selected;", false).is_empty());

    // Not paths: comments, doc comments, strings (raw too), `$crate`.
    let not_code = "// use crate::write::Record;\n/// [`crate::write::Record`]\n/* crate::write */\nconst A: &str = \"crate::write::x\";\nconst B: &str = r#\"crate::write\"#;\nmacro_rules! m { () => { $crate::write::x } }\nconst C: char = '\"'; const D: &str = \"use crate::write\";\n";
    assert!(
        check_file("decode", 1, not_code, false).is_empty(),
        "{:?}",
        references(not_code, 1)
    );

    // Test code may use anything: an inline #[cfg(test)] module, or a test-only file.
    let tests =
        "fn f() {}\n\n#[cfg(test)]\nmod tests {\n    use crate::measure::audio::audio_levels;\n}\n";
    assert!(check_file("decode", 1, tests, false).is_empty());
    assert_eq!(check_file("decode", 1, decode, true), Vec::<String>::new());
    // …but code after the test module is checked again.
    let after = format!("{tests}fn g() {{ crate::write::x() }}\n");
    assert_eq!(check_file("decode", 1, &after, false).len(), 1);
    let (_, files) = test_regions(&code_only("#[cfg(test)]\nmod test_support;\nmod video;\n"));
    assert_eq!(files, ["test_support"]);

    // A cycle between modules is found, and its absence too.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
