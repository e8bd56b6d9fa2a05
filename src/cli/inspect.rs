//! `mmcurate inspect PATH`: a readable summary of an output (its current version, through
//! `current.json`), a version folder, a shard or a ledger.

use anyhow::{Context, Result};
use arrow_array::{Array, StringArray};
use object_store::ObjectStoreExt;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::Read;

use super::human_bytes;
use crate::store::{Location, Stores};
use crate::write::ledger::{self, DROP_REASON, STATUS};
use crate::write::version::locate_current;

pub fn inspect(path: &str) -> Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stores = Stores::new();
    let location = stores.open(path)?;
    let bytes = |location: &Location| -> Result<bytes::Bytes> {
        runtime.block_on(async {
            let result = location.store.get(&location.path).await?;
            Ok(result.bytes().await?)
        })
    };
    if path.ends_with(".tar") {
        return shard_summary(&location.uri(), &bytes(&location)?);
    }
    if path.ends_with(".parquet") {
        let mut out = format!("ledger {}\n", location.uri());
        ledger_summary(bytes(&location)?, &mut out)?;
        return Ok(out);
    }
    let current = runtime
        .block_on(locate_current(&location))
        .with_context(|| {
            format!("{path} is not a shard (.tar), a ledger (.parquet) or an mmcurate output")
        })?;
    let version = current.dir;
    let manifest_bytes = bytes(&version.child("manifest.json"))?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest_bytes).context("manifest.json is not valid JSON")?;
    let mut out = String::new();
    writeln!(out, "output {}", location.uri())?;
    match (&current.pointer, current.number) {
        (Some(pointer), _) => writeln!(
            out,
            "  current version {} ({}), committed {}, replacing {}",
            pointer.version,
            pointer.folder,
            pointer.committed_at,
            pointer
                .parent_version
                .map_or("none".to_string(), |p| format!("version {p}"))
        )?,
        (None, 0) => writeln!(
            out,
            "  version 0: written before versioned outputs (manifest.json at the top, no \
             current.json); the next run writes version 1 beside it"
        )?,
        (None, n) => writeln!(
            out,
            "  version {n} (this folder; the output's current.json says which is current)"
        )?,
    }
    writeln!(
        out,
        "  run {} by mmcurate {} ({})",
        manifest["run"]["name"],
        manifest["tool"]["version"].as_str().unwrap_or("?"),
        manifest["tool"]["git_commit"].as_str().unwrap_or("?"),
    )?;
    writeln!(
        out,
        "  config sha256 {}",
        manifest["config_sha256"].as_str().unwrap_or("?")
    )?;
    for input in manifest["inputs"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  input {} ({}): {} objects, {}",
            input["uri"].as_str().unwrap_or("?"),
            input["format"].as_str().unwrap_or("?"),
            input["object_count"],
            human_bytes(input["total_bytes"].as_u64().unwrap_or(0))
        )?;
    }
    let shards = manifest["shards"].as_array().cloned().unwrap_or_default();
    let shard_bytes: u64 = shards.iter().filter_map(|s| s["bytes"].as_u64()).sum();
    writeln!(
        out,
        "  shards: {} ({})",
        shards.len(),
        human_bytes(shard_bytes)
    )?;
    for ledger in manifest["ledger"].as_array().into_iter().flatten() {
        let name = ledger["name"].as_str().unwrap_or_default();
        let file = crate::write::version::listed_file(&version, ledger)
            .unwrap_or_else(|| version.child(name));
        ledger_summary(bytes(&file)?, &mut out)?;
    }
    Ok(out)
}

fn shard_summary(uri: &str, bytes: &[u8]) -> Result<String> {
    let mut archive = tar::Archive::new(bytes);
    let mut keys = Vec::<String>::new();
    let mut parts: BTreeMap<String, u64> = BTreeMap::new();
    let mut members = 0u64;
    for entry in archive.entries().context("not a tar file")? {
        let mut entry = entry.context("the tar file is corrupt")?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let (key, ext) = crate::source::webdataset::key_and_extension(&name)
            .map(|(k, e)| (k.to_string(), e))
            .unwrap_or((name.clone(), String::new()));
        if keys.last() != Some(&key) {
            keys.push(key);
        }
        *parts.entry(ext).or_default() += 1;
        members += 1;
        std::io::copy(&mut entry.by_ref().take(u64::MAX), &mut std::io::sink())?;
    }
    let mut out = format!(
        "shard {uri}: {} samples, {members} files, {}\n",
        keys.len(),
        human_bytes(bytes.len() as u64)
    );
    let parts: Vec<String> = parts.iter().map(|(e, n)| format!(".{e} {n}")).collect();
    writeln!(out, "  parts: {}", parts.join(", "))?;
    let first: Vec<&str> = keys.iter().take(5).map(String::as_str).collect();
    writeln!(out, "  first keys: {}", first.join(", "))?;
    Ok(out)
}

fn ledger_summary(bytes: bytes::Bytes, out: &mut String) -> Result<()> {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .context("not a Parquet file")?;
    let differences = schema_differences(builder.schema().fields());
    let reader = builder.build()?;
    let (mut rows, mut kept) = (0u64, 0u64);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| -> Result<StringArray> {
            let array = batch
                .column_by_name(name)
                .with_context(|| format!("no {name} column"))?;
            Ok(array
                .as_any()
                .downcast_ref::<StringArray>()
                .with_context(|| format!("{name} is not a string column"))?
                .clone())
        };
        let (status, reason) = (column(STATUS)?, column(DROP_REASON)?);
        for i in 0..batch.num_rows() {
            rows += 1;
            if status.value(i) == "kept" {
                kept += 1;
            } else if !reason.is_null(i) {
                *reasons.entry(reason.value(i).to_string()).or_default() += 1;
            }
        }
    }
    writeln!(
        out,
        "  ledger: {rows} samples, {kept} kept, {} dropped",
        rows - kept
    )?;
    for (reason, n) in reasons {
        writeln!(out, "    {reason:<20} {n:>8}")?;
    }
    if let Some(differences) = differences {
        writeln!(
            out,
            "  columns differ from this version's ledger schema: {differences}"
        )?;
    }
    Ok(())
}

/// How a ledger file's columns differ from [`ledger::schema`] (`None`: they do not), e.g. a
/// ledger an older version wrote.
fn schema_differences(fields: &arrow_schema::Fields) -> Option<String> {
    let expected = ledger::schema();
    let names = |fields: &arrow_schema::Fields| -> Vec<String> {
        fields.iter().map(|f| f.name().clone()).collect()
    };
    let (have, want) = (names(fields), names(expected.fields()));
    if fields == expected.fields() {
        return None;
    }
    let missing: Vec<&str> = want
        .iter()
        .filter(|n| !have.contains(n))
        .map(String::as_str)
        .collect();
    let extra: Vec<&str> = have
        .iter()
        .filter(|n| !want.contains(n))
        .map(String::as_str)
        .collect();
    Some(if missing.is_empty() && extra.is_empty() {
        "same names, other types or order".to_string()
    } else {
        format!(
            "missing [{}], extra [{}]",
            missing.join(", "),
            extra.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_of_this_version_is_summarised_without_a_schema_note() {
        assert_eq!(schema_differences(ledger::schema().fields()), None);
        let fewer: arrow_schema::Fields = ledger::schema()
            .fields()
            .iter()
            .filter(|f| f.name() != "shard")
            .cloned()
            .collect();
        assert_eq!(
            schema_differences(&fewer).as_deref(),
            Some("missing [shard], extra []")
        );
    }
}
