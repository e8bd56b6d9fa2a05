//! What every phase of a run works with: the [`Job`] (the plan cut into work units, the state
//! folders its config keys to) and the [`Decisions`] the decide phase commits to `state/` for
//! the write and commit phases. Shared by `phases` and `deciding`, which both make decisions;
//! no phase's work is done here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::incremental::{Against, AgainstDecided};
use super::{RunError, StageClock};
use crate::config::Config;
use crate::decide::alignment::AlignmentSummary;
use crate::decide::percentiles::ResolvedThreshold;
use crate::decide::summary::DecidedSamples;
use crate::decide::sweeps::Sweeps;
use crate::models::clip::ClipInfo;
use crate::plan::units::{work_units, WorkUnit};
use crate::plan::Plan;
use crate::record::Record;
use crate::state::model_outputs::ModelOutputCounts;
use crate::state::{keys, MeasureState};
use crate::store::{Location, Stores};
use crate::write::layout::PlannedShard;
use crate::write::manifest::OutputFile;

/// What the decide phase commits to `state/`: everything the write and commit phases need.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Decisions {
    /// The output version these decisions are written as (`versions/NNNNNN/`), numbered when
    /// they were made, and the version it replaces.
    pub version: u64,
    pub parent_version: Option<u64>,
    /// Every sample's record, in id order, decided, with its final key and shard; empty when
    /// the decisions were made over summaries (`decided`) until [`super::deciding::with_records`]
    /// reads them back from the units.
    pub records: Vec<Record>,
    /// The decisions made over summaries (the decide phase without CLIP): what changes in the
    /// units' records.
    #[serde(default)]
    pub decided: Option<DecidedSamples>,
    /// The shard layout, in write order.
    pub shards: Vec<PlannedShard>,
    /// The embeddings files, kept in the decide state until commit copies them out.
    pub embeddings: Vec<OutputFile>,
    pub alignment: Option<AlignmentSummary>,
    /// What each percentile threshold resolved to over the whole run, by config key.
    pub thresholds: BTreeMap<String, ResolvedThreshold>,
    /// The threshold sweeps, when the decisions were made for `mmcurate calibrate`.
    pub sweeps: Option<Sweeps>,
    pub input_errors: Vec<(usize, String)>,
    pub clip: Option<ClipInfo>,
    pub device: String,
    pub jpeg_decoder: String,
    pub video_decoders: BTreeMap<String, u64>,
    pub gpu_busy_seconds: BTreeMap<String, f64>,
    pub stage_seconds: BTreeMap<String, f64>,
    /// CLIP outputs computed by the model and taken from the model-output cache.
    #[serde(default)]
    pub model_outputs: Option<ModelOutputCounts>,
    /// `run --against`: the corpus the run was deduplicated against (`pipeline::incremental`).
    #[serde(default)]
    pub against: Option<AgainstDecided>,
}

pub const DECISIONS: &str = "decisions.cbor";

impl Decisions {
    /// Samples kept.
    pub fn kept(&self) -> u64 {
        match &self.decided {
            Some(decided) => decided.kept,
            None => self.records.iter().filter(|r| r.decision.is_keep()).count() as u64,
        }
    }
}

/// What one process of a run works with: the plan cut into units, the state folders.
pub struct Job<'a> {
    pub config: &'a Config,
    pub runtime: tokio::runtime::Runtime,
    pub stores: Stores,
    pub plan: Plan,
    /// Units of the plan before it was sampled (files, manifest rows or shards).
    pub planned_units: u64,
    pub units: Vec<WorkUnit>,
    pub measure: MeasureState,
    /// `state/measure-<key>/decide-<key>/`.
    pub decided: Location,
    pub clock: StageClock,
    /// `run --against`: the corpus to dedup against (`pipeline::incremental::load`).
    pub against: Option<Against>,
}

impl<'a> Job<'a> {
    /// Resolves the plan and cuts it into units; says which state the run's config keys to.
    pub fn prepare(config: &'a Config) -> Result<Job<'a>, RunError> {
        Job::prepare_sampled(config, None)
    }

    /// As [`Job::prepare`], on `sample` units of the plan when given (`Plan::sample`).
    pub fn prepare_sampled(config: &'a Config, sample: Option<u64>) -> Result<Job<'a>, RunError> {
        let started = Instant::now();
        let runtime = super::io_runtime(config)?;
        let stores = Stores::with_http(config.http.clone())
            .with_object_store_config(&config.run.object_store);
        let mut plan = runtime.block_on(crate::plan::resolve(config, &stores))?;
        let planned_units = plan.unit_count();
        if let Some(n) = sample {
            plan.sample(n);
        }
        let units = work_units(&plan, config.run.unit_size);
        let root = stores.open_for_output(&config.run.output)?;
        let measure_key = keys::measure_key(config);
        let measure = MeasureState::open(&root, &measure_key);
        let unit_ids: Vec<String> = units.iter().map(|u| u.id.clone()).collect();
        let decided = measure.decide_folder(&keys::decide_key(config, &measure_key, &unit_ids));
        let mut clock = StageClock::default();
        clock.add("plan", started);
        super::log_plan(&plan);
        Ok(Job {
            config,
            runtime,
            stores,
            plan,
            planned_units,
            units,
            measure,
            decided,
            clock,
            against: None,
        })
    }

    pub(super) fn unit_ids(&self) -> Vec<String> {
        self.units.iter().map(|u| u.id.clone()).collect()
    }

    pub(super) fn finished_units(&self) -> Result<BTreeSet<String>, RunError> {
        Ok(self.runtime.block_on(self.measure.finished_units())?)
    }
}
