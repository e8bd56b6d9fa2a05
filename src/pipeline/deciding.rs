//! The decide phase without CLIP, streaming: every unit's records are read from `state/` one
//! unit at a time into compact per-sample summaries ([`SampleSummaries`]), the run-wide
//! decisions are made over those, the units are read a second time for the tar size of each
//! kept sample, and the shard layout is planned from the sizes. What is committed is the
//! changes (drops and new keys, by rank) and the layout, not the records, which the write and
//! commit phases read back from the units ([`with_records`]). Orchestration only: what is
//! dropped is `decide`'s, the layout `write::layout`'s.

use std::collections::HashMap;
use std::time::Instant;

use super::backends::Backends;
use super::job::{Decisions, Job, DECISIONS};
use super::RunError;
use crate::decide::summary::{DecidedSamples, SampleSummaries};
use crate::record::Record;
use crate::state::{self, StateError};
use crate::write::layout::{cut_series, sample_bytes, PlannedShard, UniqueKeys};
use crate::write::shards::group_into_series;
use crate::write::version::OutputVersion;

/// Decides over the summaries of every unit's records and commits the decisions.
pub(super) fn decide_over_summaries(
    job: &mut Job,
    backends: &Backends,
    video_decoders: std::collections::BTreeMap<String, u64>,
    version: &OutputVersion,
) -> Result<Decisions, RunError> {
    let started = Instant::now();
    let corrupt = |message: String| {
        RunError::State(StateError::Corrupt {
            uri: job.measure.uri(),
            message,
        })
    };
    let mut summaries = SampleSummaries::new(job.config);
    let mut input_errors = Vec::new();
    for unit in &job.units {
        let mut state = job.runtime.block_on(job.measure.read_unit(&unit.id))?;
        for record in &state.records {
            summaries.push(record).map_err(|e| corrupt(e.to_string()))?;
        }
        input_errors.append(&mut state.input_errors);
    }
    input_errors.sort();
    summaries.sort();
    let thresholds = summaries.decide(job.config);
    let samples = summaries.len();
    let mut rank_of = vec![0u32; samples];
    for (rank, &position) in summaries.order().iter().enumerate() {
        rank_of[position as usize] = rank as u32;
    }
    let mut drops: Vec<(u64, _)> = summaries
        .take_drops()
        .into_iter()
        .map(|(position, drop)| (u64::from(rank_of[position as usize]), drop))
        .collect();
    drops.sort_by_key(|(rank, _)| *rank);

    // The layout: keys made unique in id order, then series by set of parts.
    let mut renamed: HashMap<u32, String> = HashMap::new();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); summaries.part_sets().len()];
    let mut with_txt = vec![false; summaries.part_sets().len()];
    {
        let mut keys = UniqueKeys::default();
        for (rank, &position) in summaries.order().iter().enumerate() {
            let p = position as usize;
            if !summaries.is_kept(p) {
                continue;
            }
            if let Some(key) = keys.take(summaries.key(p), summaries.id(p)) {
                renamed.insert(position, key);
            }
            members[summaries.part_set(p)].push(rank);
            with_txt[summaries.part_set(p)] |= summaries.has_txt(p);
        }
    }
    let sets: Vec<(usize, Vec<&str>)> = summaries
        .part_sets()
        .iter()
        .enumerate()
        .filter(|(set, _)| !members[*set].is_empty())
        .map(|(set, exts)| (set, exts.iter().map(String::as_str).collect()))
        .collect();
    let series = group_into_series(&sets);
    drop(sets);

    // The units once more, for each kept sample's tar size (its `.json` is built from the whole
    // record, and read from staging when the source had one).
    let staged = job.measure.staged_reader(
        job.units.iter().map(|u| u.id.clone()).collect(),
        job.runtime.handle().clone(),
    );
    let mut sizes = vec![0u64; samples];
    let mut position = 0usize;
    for unit in &job.units {
        let state = job.runtime.block_on(job.measure.read_unit(&unit.id))?;
        for mut record in state.records {
            if position >= samples {
                return Err(corrupt("a unit's records changed while deciding".into()));
            }
            if summaries.is_kept(position) {
                if let Some(key) = renamed.get(&(position as u32)) {
                    record.key = key.clone();
                }
                let with_txt = with_txt[summaries.part_set(position)];
                sizes[position] = sample_bytes(&record, &staged, with_txt)?;
            }
            position += 1;
        }
    }
    if position != samples {
        return Err(corrupt("a unit's records changed while deciding".into()));
    }
    let order = summaries.order();
    let mut shards: Vec<PlannedShard> = Vec::new();
    for (name, set) in series {
        let set = set[0];
        let sized = members[set]
            .iter()
            .map(|&rank| (rank, sizes[order[rank] as usize]));
        shards.extend(cut_series(
            &name,
            0,
            with_txt[set],
            sized,
            &job.config.output,
        ));
    }
    let mut keys: Vec<(u64, String)> = renamed
        .into_iter()
        .map(|(position, key)| (u64::from(rank_of[position as usize]), key))
        .collect();
    keys.sort();
    let kept = members.iter().map(Vec::len).sum::<usize>() as u64;
    let held = summaries.bytes_held() + (rank_of.capacity() * 4 + sizes.capacity() * 8) as u64;
    tracing::info!(
        "decide: {samples} sample(s) summarised in {:.1} MB ({:.0} bytes per sample, besides the dedup indexes)",
        held as f64 / 1e6,
        held as f64 / samples.max(1) as f64
    );
    drop(summaries);
    job.clock.add("decide", started);
    let decisions = Decisions {
        version: version.number,
        parent_version: version.parent,
        records: Vec::new(),
        decided: Some(DecidedSamples {
            samples: samples as u64,
            kept,
            drops,
            keys,
        }),
        shards,
        embeddings: Vec::new(),
        alignment: None,
        thresholds,
        sweeps: None,
        input_errors,
        clip: None,
        device: backends.device.label(),
        jpeg_decoder: backends.jpeg_decoder_description(),
        video_decoders,
        gpu_busy_seconds: backends.measure_busy_seconds(),
        stage_seconds: job.clock.seconds.clone(),
        model_outputs: None,
        against: None,
    };
    let bytes = state::codec::encode(&decisions);
    job.runtime
        .block_on(state::put(&job.decided, DECISIONS, bytes))?;
    tracing::info!(
        "decide: {samples} sample(s), {kept} kept, {} shard(s) planned; committed to {}",
        decisions.shards.len(),
        job.decided.uri()
    );
    Ok(decisions)
}

/// The decisions with every record decided, for the write and commit phases: decisions made
/// over summaries get their records from the units' state (sorted by id, as the decide phase
/// numbered them) with the drops, keys and shards applied; others have them already.
pub fn with_records(job: &Job, mut decisions: Decisions) -> Result<Decisions, RunError> {
    let Some(decided) = &decisions.decided else {
        return Ok(decisions);
    };
    let mut records: Vec<Record> = Vec::new();
    for unit in &job.units {
        let mut state = job.runtime.block_on(job.measure.read_unit(&unit.id))?;
        records.append(&mut state.records);
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    decided.apply(&mut records).map_err(|e| {
        RunError::State(StateError::Corrupt {
            uri: job.measure.uri(),
            message: e.to_string(),
        })
    })?;
    for shard in &decisions.shards {
        for &index in &shard.records {
            if let Some(record) = records.get_mut(index) {
                record.shard = Some(shard.name.clone());
            }
        }
    }
    decisions.records = records;
    Ok(decisions)
}
