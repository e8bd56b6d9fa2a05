//! `mmcurate verify OUTPUT`: checks the current version's files, ledger and shards against
//! each other and, after a deletion request, that nothing forgotten remains
//! (`write::verify` does the checking); prints each problem and exits 1 when there is any.

use std::process::ExitCode;

use crate::write::verify::verify as verify_output;

pub fn verify(output: &str) -> ExitCode {
    let (runtime, root) = match super::open_output(output) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let checked = match runtime.block_on(verify_output(&root)) {
        Ok(checked) => checked,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    for problem in &checked.problems {
        println!("{}: {}", problem.file, problem.what);
    }
    let summary = format!(
        "version {} of {}: {} file(s), {} kept sample(s), {} shard member(s) checked{}",
        checked.version,
        root.uri(),
        checked.files_checked,
        checked.kept_checked,
        checked.shard_members_checked,
        if checked.forgotten > 0 {
            format!(", {} forgotten sha256(s) searched for", checked.forgotten)
        } else {
            String::new()
        }
    );
    if checked.problems.is_empty() {
        println!("ok: {summary}");
        ExitCode::SUCCESS
    } else {
        println!("{} problem(s) in {summary}", checked.problems.len());
        ExitCode::from(1)
    }
}
