//! `mmcurate report OUTPUT`: rebuilds a finished run's `report.html` and `report.json` from
//! its manifest, ledger and shards (the library's `write::report` does the work).

use std::process::ExitCode;

use crate::write::report::rebuild;

pub fn report(output: &str) -> ExitCode {
    match rebuild(output) {
        Ok((uri, files)) => {
            println!(
                "report written: {uri} ({} KB, {} pictures) and report.json ({} KB)",
                files.html_bytes / 1024,
                files.pictures,
                files.json_bytes / 1024
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}
