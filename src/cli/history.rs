//! `mmcurate inspect OUTPUT --history [--diff A B]`: the versions of an output with what made
//! each (run, incremental, reenrich, forget), its parent, counts, config hash and model
//! digests; with `--diff`, the samples that entered or left the kept set between two versions.

use anyhow::{bail, Result};
use std::fmt::Write;

use crate::store::Stores;
use crate::write::history::{diff_versions, versions};

pub fn history(path: &str, diff: Option<(u64, u64)>) -> Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let root = Stores::new().open(path)?;
    let entries = runtime.block_on(versions(&root))?;
    if entries.is_empty() {
        bail!(
            "{}: no versions/ folder: not a versioned mmcurate output",
            root.uri()
        );
    }
    let mut out = format!("output {}: {} version(s)\n", root.uri(), entries.len());
    for entry in &entries {
        let Some(m) = &entry.manifest else {
            writeln!(
                out,
                "version {}: not committed (a run stopped before its commit)",
                entry.number
            )?;
            continue;
        };
        let short = |v: &serde_json::Value| {
            v.as_str()
                .map_or("-".to_string(), |s| s[..s.len().min(12)].to_string())
        };
        writeln!(
            out,
            "version {}{}: {} from {}, {} · {} samples, {} kept, {} dropped · config {}",
            entry.number,
            if entry.current { " (current)" } else { "" },
            entry.made_by(),
            m["parent_version"]
                .as_u64()
                .map_or("nothing".to_string(), |p| format!("version {p}")),
            m["run"]["finished_at"].as_str().unwrap_or("?"),
            m["counts"]["samples"],
            m["counts"]["kept"],
            m["counts"]["dropped"],
            short(&m["config_sha256"]),
        )?;
        if let Some(clip) = m["models"]["clip"].as_object() {
            writeln!(
                out,
                "  clip {} weights {}",
                clip.get("id").and_then(|v| v.as_str()).unwrap_or("?"),
                short(
                    clip.get("weights_sha256")
                        .unwrap_or(&serde_json::Value::Null)
                ),
            )?;
        }
        let r = &m["reenrich"];
        if r.is_object() {
            let changed: Vec<String> = r["changed"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, c)| format!("{k} {} → {}", c["old"], c["new"]))
                .collect();
            writeln!(out, "  changed {}", changed.join(", "))?;
            writeln!(
                out,
                "  weights {} → {} · {} decoded, {} measurements reused, {} embeddings computed, {} from cache · {} entered, {} left",
                short(&r["old_weights_sha256"]),
                short(&r["new_weights_sha256"]),
                r["samples_decoded"],
                r["measurements_reused"],
                r["embeddings_computed"],
                r["embeddings_from_cache"],
                r["entered"],
                r["left"],
            )?;
        }
    }
    if let Some((a, b)) = diff {
        let rows = runtime.block_on(diff_versions(&root, a, b))?;
        let entered = rows
            .iter()
            .filter(|r| r.change.as_str() == "entered")
            .count();
        writeln!(
            out,
            "diff version {a} → {b}: {entered} entered, {} left",
            rows.len() - entered
        )?;
        for row in &rows {
            writeln!(
                out,
                "  {:<7} {}  ({})",
                row.change.as_str(),
                row.id,
                row.reason
            )?;
        }
    }
    Ok(out)
}
