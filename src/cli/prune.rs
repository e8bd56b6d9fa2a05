//! `mmcurate prune OUTPUT --keep N`: removes the versions older than the newest N committed
//! ones, and folders of runs that stopped before their commit (`write::prune` does the work),
//! printing every file it removed and what it left.

use std::process::ExitCode;

use crate::store::Stores;
use crate::write::prune;

pub fn prune(output: &str, keep: usize) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the I/O runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let root = match Stores::new().open(output) {
        Ok(root) => root,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
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
