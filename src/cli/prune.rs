//! `mmcurate prune OUTPUT --keep N`: removes the versions older than the newest N committed
//! ones, and folders of runs that stopped before their commit (`write::prune` does the work),
//! printing every file it removed and what it left.

use std::process::ExitCode;

use crate::write::prune;

pub fn prune(output: &str, keep: usize) -> ExitCode {
    let (runtime, root) = match super::open_output(output) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    match runtime.block_on(prune::prune(&root, keep, runtime.handle())) {
        Ok(pruned) => {
            let lines = pruned.lines();
            if lines.is_empty() {
                println!(
                    "nothing to prune in {}: {keep} or fewer versions",
                    root.uri()
                );
            }
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(if e.is_refusal() { 2 } else { 1 })
        }
    }
}
