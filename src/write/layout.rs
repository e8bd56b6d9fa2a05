//! The shard layout: which kept sample goes into which shard, planned once over the whole run
//! (keys made unique, samples grouped into series, each series cut into shards at the output
//! limits from the samples' tar sizes), so that shards can then be written independently, by
//! any number of processes, and come out identical whatever the split. A sample's tar size is
//! known without reading its media: staged part lengths, plus its `.json`, which is built here
//! from the record and its small staged source `.json`. Writing one planned shard reads the
//! staged bytes back; nothing here fetches or decodes.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use super::shards::{
    append_member, group_into_series, member_bytes, shard_name, ShardInfo, ShardWriter, TAR_END,
};
use super::{renamed_key, sample_json, unique_key, WriteError};
use crate::config::OutputConfig;
use crate::record::Record;
use crate::state::StagedBytes;
use crate::store::Location;

/// One shard of the layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedShard {
    /// Path relative to the output, e.g. `shards/jpg-000000.tar`.
    pub name: String,
    pub series: String,
    /// Its number within the series.
    pub number: usize,
    /// Whether its samples carry a `.txt` (empty for those without a caption).
    pub with_txt: bool,
    /// The records it holds, by index into the run's records (id order), in write order.
    pub records: Vec<usize>,
    /// Its size in bytes, end-of-archive marker included.
    pub bytes: u64,
}

/// Where the layout of an incremental run starts: the keys the corpus uses, and the first free
/// shard number of each series (so no new shard has the name of one the version lists).
#[derive(Debug, Clone, Default)]
pub struct LayoutStart {
    pub used_keys: HashSet<String>,
    pub next_number: std::collections::BTreeMap<String, usize>,
}

/// Plans the shards of the kept records (sorted by id): makes their keys unique, sets each
/// one's `shard`, and returns the shards in write order.
pub fn plan_layout(
    records: &mut [Record],
    staged: &dyn StagedBytes,
    config: &OutputConfig,
) -> Result<Vec<PlannedShard>, WriteError> {
    plan_layout_after(records, staged, config, LayoutStart::default())
}

/// [`plan_layout`] after the corpus `start` describes.
pub fn plan_layout_after(
    records: &mut [Record],
    staged: &dyn StagedBytes,
    config: &OutputConfig,
    start: LayoutStart,
) -> Result<Vec<PlannedShard>, WriteError> {
    let mut used_keys = start.used_keys;
    for record in records.iter_mut().filter(|r| r.decision.is_keep()) {
        record.key = unique_key(&record.key, &record.id, &mut used_keys);
    }
    // One shard series per set of parts (shards::series_name): every sample of a series carries
    // the same files, as readers that take a dataset's columns from its first samples (Hugging
    // Face `datasets`) need. `.json` is always written; `.txt` is written for every sample of a
    // series where any sample has a caption, empty for those without one (as img2dataset does).
    let parts: Vec<(usize, Vec<&str>)> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.decision.is_keep())
        .map(|(index, r)| {
            let exts = r.staged.iter().map(|p| p.ext.as_str());
            (
                index,
                exts.filter(|e| *e != "txt" && *e != "json").collect(),
            )
        })
        .collect();
    let series = group_into_series(&parts);
    drop(parts);
    let mut planned = Vec::new();
    for (name, indexes) in series {
        let with_txt = indexes
            .iter()
            .any(|&i| records[i].staged.iter().any(|p| p.ext == "txt"));
        let mut sized = Vec::with_capacity(indexes.len());
        for index in indexes {
            sized.push((index, sample_bytes(&records[index], staged, with_txt)?));
        }
        let first = start.next_number.get(&name).copied().unwrap_or(0);
        planned.extend(cut_series(&name, first, with_txt, sized, config));
    }
    for shard in &planned {
        for &index in &shard.records {
            records[index].shard = Some(shard.name.clone());
        }
    }
    Ok(planned)
}

/// Cuts one series into shards at the output limits, numbered from `first`: `samples` are its
/// samples (index into the run's records in id order, tar bytes) in id order.
pub fn cut_series(
    name: &str,
    first: usize,
    with_txt: bool,
    samples: impl IntoIterator<Item = (usize, u64)>,
    config: &OutputConfig,
) -> Vec<PlannedShard> {
    let (max_samples, max_bytes) = (config.max_samples_per_shard, config.max_bytes_per_shard.0);
    let mut planned = Vec::new();
    let mut open: Option<PlannedShard> = None;
    let mut number = first;
    for (index, size) in samples {
        // The rule of `ShardWriter::add`: a new shard at the sample limit, or when this
        // sample would take a non-empty shard past the byte limit.
        let full = open.as_ref().is_some_and(|s| {
            s.records.len() as u64 >= max_samples
                || (!s.records.is_empty() && s.bytes + size + TAR_END as u64 > max_bytes)
        });
        if full {
            planned.extend(open.take().map(close));
            number += 1;
        }
        let shard = open.get_or_insert_with(|| PlannedShard {
            name: shard_name(name, number),
            series: name.to_string(),
            number,
            with_txt,
            records: Vec::new(),
            bytes: 0,
        });
        shard.records.push(index);
        shard.bytes += size;
    }
    planned.extend(open.take().map(close));
    planned
}

/// Keys made unique in id order exactly as [`plan_layout`] makes them, for a layout planned
/// from summaries: the original keys are borrowed (from the summaries' text), and only keys
/// made anew are held as strings.
#[derive(Default)]
pub struct UniqueKeys<'a> {
    original: HashSet<&'a str>,
    renamed: HashSet<String>,
}

impl<'a> UniqueKeys<'a> {
    /// The next kept sample's key: `None` when `key` is free (it is taken now), else its new
    /// key.
    pub fn take(&mut self, key: &'a str, id: &str) -> Option<String> {
        let taken = |k: &str| self.original.contains(k) || self.renamed.contains(k);
        if !taken(key) {
            self.original.insert(key);
            return None;
        }
        let new = renamed_key(key, id, taken);
        self.renamed.insert(new.clone());
        Some(new)
    }
}

fn close(mut shard: PlannedShard) -> PlannedShard {
    shard.bytes += TAR_END as u64;
    shard
}

/// The tar bytes of one sample (kept, with its final key): its staged parts, an empty `.txt` where its series needs one,
/// and its `.json` (read from staging only for the source `.json`).
pub fn sample_bytes(
    record: &Record,
    staged: &dyn StagedBytes,
    with_txt: bool,
) -> Result<u64, WriteError> {
    let member = |ext: &str, len: u64| {
        member_bytes(&format!("{}.{ext}", record.key), len).map_err(|e| WriteError::Store {
            uri: record.id.clone(),
            message: e.to_string(),
        })
    };
    let mut total = 0;
    let mut json = None;
    for part in &record.staged {
        if part.ext == "json" {
            json = Some(read_part(staged, record, part)?);
        } else {
            total += member(&part.ext, part.len)?;
        }
    }
    if with_txt && !record.staged.iter().any(|p| p.ext == "txt") {
        total += member("txt", 0)?;
    }
    total += member("json", sample_json(record, json.as_deref()).len() as u64)?;
    Ok(total)
}

fn read_part(
    staged: &dyn StagedBytes,
    record: &Record,
    part: &crate::record::StagedPart,
) -> Result<Vec<u8>, WriteError> {
    staged.read(part).map_err(|source| WriteError::Staging {
        id: record.id.clone(),
        source,
    })
}

/// The tar members of one sample, in order: media, caption, metadata, then the rest, as staged.
pub fn sample_members(
    record: &Record,
    staged: &dyn StagedBytes,
    with_txt: bool,
    members: &mut Vec<u8>,
) -> Result<(), WriteError> {
    members.clear();
    let mut files: Vec<(&str, Vec<u8>)> = Vec::with_capacity(record.staged.len() + 2);
    for part in &record.staged {
        files.push((&part.ext, read_part(staged, record, part)?));
    }
    let position = |files: &[(&str, Vec<u8>)], ext| files.iter().position(|f| f.0 == ext);
    if with_txt && position(&files, "txt").is_none() {
        files.insert(files.len().min(1), ("txt", Vec::new()));
    }
    match position(&files, "json") {
        Some(at) => files[at].1 = sample_json(record, Some(&files[at].1)),
        None => {
            let after_txt = position(&files, "txt").map_or(1, |t| t + 1);
            files.insert(
                after_txt.min(files.len()),
                ("json", sample_json(record, None)),
            );
        }
    }
    for (ext, bytes) in &files {
        append_member(members, &format!("{}.{ext}", record.key), bytes).map_err(|e| {
            WriteError::Store {
                uri: record.id.clone(),
                message: e.to_string(),
            }
        })?;
    }
    Ok(())
}

/// Writes one planned shard from the staged bytes; `on_sample` is called after each sample.
/// A shard that does not come out as planned (a layout bug) is an error, not a silent change.
pub fn write_planned_shard(
    output: &Location,
    shard: &PlannedShard,
    records: &[Record],
    staged: &dyn StagedBytes,
    runtime: &tokio::runtime::Handle,
    mut on_sample: impl FnMut(),
) -> Result<ShardInfo, WriteError> {
    let store_error = |message: String| WriteError::Store {
        uri: output.uri_of(&super::shards::relative_path(&output.path, &shard.name)),
        message,
    };
    let mut writer = ShardWriter::new(output, runtime, &shard.series, u64::MAX, u64::MAX)
        .numbered_from(shard.number);
    let mut members = Vec::new();
    for &index in &shard.records {
        let record = &records[index];
        sample_members(record, staged, shard.with_txt, &mut members)?;
        writer
            .add(&members)
            .map_err(|e| store_error(e.to_string()))?;
        on_sample();
    }
    let mut written = writer.finish().map_err(|e| store_error(e.to_string()))?;
    match (written.pop(), written.is_empty()) {
        (Some(info), true) if info.name == shard.name && info.bytes == shard.bytes => Ok(info),
        (info, _) => Err(store_error(format!(
            "the shard came out as {:?} ({} bytes), not as planned ({} bytes): a bug, please report it",
            info.as_ref().map(|i| i.name.as_str()),
            info.as_ref().map_or(0, |i| i.bytes),
            shard.bytes
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;
    use crate::measure::Measurements;
    use crate::record::{Decision, Drop, Reason, Stage};
    use crate::source::Origin;
    use crate::store::Stores;
    use crate::write::staging::Staging;

    /// Kept JPEG samples of `sizes` bytes (every third with a caption, one with a source
    /// `.json`), and one dropped sample, staged.
    fn records(staging: &Staging, sizes: &[usize]) -> Vec<Record> {
        let mut records = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let media = vec![i as u8; size];
            let mut parts: Vec<(&str, &[u8])> = vec![("jpg", &media)];
            if i % 3 == 0 {
                parts.push(("txt", b"a caption"));
            }
            if i == 1 {
                parts.push(("json", br#"{"license": "cc0"}"#));
            }
            records.push(Record {
                id: format!("0:{i:03}.jpg"),
                key: if i == 4 {
                    "003".into()
                } else {
                    format!("{i:03}")
                },
                name: format!("{i:03}.jpg"),
                origin: Origin::default(),
                measurements: Measurements::default(),
                decision: Decision::Keep,
                staged: staging.put(parts).unwrap(),
                shard: None,
            });
        }
        records.push(Record {
            id: "0:zzz.jpg".into(),
            key: "zzz".into(),
            name: "zzz.jpg".into(),
            origin: Origin::default(),
            measurements: Measurements::default(),
            decision: Decision::Drop(Drop::new(Stage::Filter, Reason::TooSmall, "4 px")),
            staged: Vec::new(),
            shard: None,
        });
        records
    }

    #[test]
    fn unique_keys_from_summaries_are_the_keys_of_plan_layout() {
        let taken = ["a", "a", "b", "a_ca978112", "a", "c", "b"];
        let ids: Vec<String> = (0..taken.len()).map(|i| format!("0:{i}")).collect();
        let mut used = HashSet::new();
        let expected: Vec<String> = taken
            .iter()
            .zip(&ids)
            .map(|(key, id)| unique_key(key, id, &mut used))
            .collect();
        let mut keys = UniqueKeys::default();
        let made: Vec<String> = taken
            .iter()
            .zip(&ids)
            .map(|(key, id)| keys.take(key, id).unwrap_or(key.to_string()))
            .collect();
        assert_eq!(made, expected);
        assert_eq!(made.iter().collect::<HashSet<_>>().len(), taken.len());
        assert_ne!(made[1], "a");
    }

    #[test]
    fn planned_shards_are_written_exactly_as_planned_at_both_limits() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::create(&dir.path().join("staging")).unwrap();
        let sizes = [100, 3000, 700, 5000, 20, 1500, 900];
        let mut records = records(&staging, &sizes);
        let staged = staging.finish().unwrap();
        let config = OutputConfig {
            max_samples_per_shard: 3,
            max_bytes_per_shard: ByteSize(9 * 1024),
            keep_versions: 0,
        };
        let shards = plan_layout(&mut records, &staged, &config).unwrap();
        // Every kept sample once, in id order; each shard filled greedily: the next shard's
        // first sample did not fit (3 samples, or 9 KiB with the end marker).
        let order: Vec<usize> = shards.iter().flat_map(|s| s.records.clone()).collect();
        assert_eq!(order, (0..sizes.len()).collect::<Vec<_>>());
        assert!(shards.len() >= 3, "{shards:?}");
        for pair in shards.windows(2) {
            let next = sample_bytes(&records[pair[1].records[0]], &staged, true).unwrap();
            assert!(
                pair[0].records.len() == 3 || pair[0].bytes + next > 9 * 1024,
                "{pair:?}"
            );
        }
        let names: Vec<String> = shards.iter().map(|s| s.name.clone()).collect();
        let expected: Vec<String> = (0..shards.len())
            .map(|n| format!("shards/jpg-{n:06}.tar"))
            .collect();
        assert_eq!(names, expected);
        assert!(shards.iter().all(|s| s.with_txt));
        assert_eq!(records[4].key, format!("003_{}", &records[4].key[4..]));
        assert_eq!(records[0].shard.as_deref(), Some("shards/jpg-000000.tar"));
        assert_eq!(records[7].shard, None, "a dropped sample has no shard");

        // Written one by one, in any order, each comes out as planned.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let output = Stores::new()
            .open_for_output(out.to_str().unwrap())
            .unwrap();
        for shard in shards.iter().rev() {
            let mut samples = 0;
            let info =
                write_planned_shard(&output, shard, &records, &staged, runtime.handle(), || {
                    samples += 1
                })
                .unwrap();
            assert_eq!(samples, shard.records.len());
            let bytes = std::fs::read(out.join(&shard.name)).unwrap();
            assert_eq!(info.bytes, bytes.len() as u64);
            assert_eq!(info.bytes, shard.bytes);
            assert!(shard.bytes <= 9 * 1024 || shard.records.len() == 1);
        }
    }
}
