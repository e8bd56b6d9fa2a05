//! The run manifest, `<output>/versions/NNNNNN/manifest.json`: which version it is and the
//! version it replaced, what ran (tool version and commit, the resolved
//! config and its sha256), on what (every input with its size and etag), and what came out
//! (counts by status and reason, every shard and ledger file with its sha256, relative to the
//! version's folder, time per stage).
//! [`RunManifest::assemble`] builds it from the facts the pipeline collected; `write::put`
//! writes it.

use serde::Serialize;
use std::collections::BTreeMap;

use super::shards::ShardInfo;
use super::Written;
use crate::config::Config;
use crate::decide::alignment::AlignmentSummary;
use crate::decide::percentiles::ResolvedThreshold;
use crate::measure::{MediaKind, MEASURE_VERSION};
use crate::models::clip::ClipInfo;
use crate::plan::{InputObject, Plan, Units};
use crate::record::Record;
use crate::store::Location;

/// What the run manifest is made from.
pub struct RunFacts<'a> {
    pub config: &'a Config,
    pub plan: &'a Plan,
    /// The output root (`run.output`).
    pub output: &'a Location,
    /// The version being written, and the one it replaces (`write::version::OutputVersion`).
    pub version: u64,
    pub parent_version: Option<u64>,
    pub records: &'a [Record],
    pub input_errors: &'a [(usize, String)],
    pub written: Written,
    pub embeddings: Vec<OutputFile>,
    pub clip: Option<&'a ClipInfo>,
    pub alignment: Option<AlignmentSummary>,
    /// What each percentile threshold (`"p10"`) resolved to over the run, by config key.
    pub thresholds: BTreeMap<String, ResolvedThreshold>,
    pub stage_seconds: BTreeMap<String, f64>,
    pub gpu_busy_seconds: BTreeMap<String, f64>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// What decoded the JPEGs.
    pub jpeg_decoder: String,
    /// Videos decoded while measuring, by decoder.
    pub video_decoders: BTreeMap<String, u64>,
    /// The work units, and how many this process measured or found committed.
    pub units: Option<UnitCounts>,
}

impl RunManifest {
    /// The run manifest: provenance, counts by status and reason, outputs with checksums.
    pub fn assemble(facts: RunFacts) -> RunManifest {
        let kept = facts
            .records
            .iter()
            .filter(|r| r.decision.is_keep())
            .count() as u64;
        let (config_json, config_sha256) = facts.config.resolved_json_and_sha256();
        let mut counts = Counts {
            samples: facts.records.len() as u64,
            kept,
            dropped: facts.records.len() as u64 - kept,
            units: facts.units,
            ..Counts::default()
        };
        for record in facts.records {
            let kind = record.media_kind().map_or("unknown", MediaKind::as_str);
            let entry = counts.by_media_kind.entry(kind.to_string()).or_default();
            entry.samples += 1;
            entry.kept += u64::from(record.decision.is_keep());
        }
        for drop in facts.records.iter().filter_map(|r| r.decision.dropped()) {
            *counts
                .dropped_by_stage
                .entry(drop.stage.as_str().to_string())
                .or_default() += 1;
            *counts
                .dropped_by_reason
                .entry(drop.reason.as_str().to_string())
                .or_default() += 1;
        }
        let inputs = facts
            .plan
            .inputs
            .iter()
            .map(|input| InputRecord {
                uri: input.config.uri.clone(),
                format: input.config.format.as_str().to_string(),
                object_count: input.objects.len() as u64,
                total_bytes: input.total_bytes(),
                listing_sha256: input.listing_sha256(),
                objects: match input.units {
                    Units::Files(_) => None,
                    _ => Some(input.objects.clone()),
                },
                errors: facts
                    .input_errors
                    .iter()
                    .filter(|(i, _)| *i == input.index)
                    .map(|(_, e)| e.clone())
                    .collect(),
            })
            .collect();
        RunManifest {
            tool: ToolInfo::current(),
            version: facts.version,
            parent_version: facts.parent_version,
            made_by: MadeBy::Run,
            reenrich: None,
            diff: None,
            run: RunInfo {
                name: facts.config.run.name.clone(),
                output: facts.output.uri(),
                started_at: facts
                    .started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                finished_at: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                device: facts.device,
                jpeg_decoder: facts.jpeg_decoder,
                video_decoders: facts.video_decoders,
                threads: facts.config.worker_threads(),
            },
            config: config_json,
            config_sha256,
            inputs,
            counts,
            shards: facts.written.shards,
            ledger: facts.written.ledger,
            embeddings: facts.embeddings,
            index: Vec::new(),
            incremental: None,
            models: ModelsRecord {
                clip: facts.clip.cloned(),
            },
            thresholds: facts.thresholds,
            alignment: facts.alignment,
            measure_version: MEASURE_VERSION.to_string(),
            stage_seconds: facts.stage_seconds,
            gpu_busy_seconds: facts.gpu_busy_seconds,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunManifest {
    pub tool: ToolInfo,
    /// This version of the output (`versions/NNNNNN`).
    pub version: u64,
    /// The version that was current when this one was written (null for the first; 0 for an
    /// output in the layout before versions).
    pub parent_version: Option<u64>,
    /// What made this version: `run`, `incremental`, `reenrich` or `forget`.
    pub made_by: MadeBy,
    /// For a version made by `mmcurate reenrich`: what changed and what was reused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reenrich: Option<Reenrichment>,
    /// `diff.parquet`: the samples that entered or left the kept set since the parent version
    /// (written by `mmcurate reenrich`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<OutputFile>,
    pub run: RunInfo,
    pub config: serde_json::Value,
    pub config_sha256: String,
    pub inputs: Vec<InputRecord>,
    pub counts: Counts,
    pub shards: Vec<ShardInfo>,
    pub ledger: Vec<OutputFile>,
    /// The CLIP embeddings files (empty without a CLIP model).
    pub embeddings: Vec<OutputFile>,
    /// The persisted index (`index/samples.parquet`): every sample of the corpus as of this
    /// version (`write::index`).
    pub index: Vec<OutputFile>,
    /// `mmcurate run --against`: the corpus this run was deduplicated against and what it
    /// added to it (absent for other runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
    /// The auxiliary models the run used (`null` for one it did not).
    pub models: ModelsRecord,
    /// The alignment thresholds as applied (absent without `[filters.alignment]` rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alignment: Option<AlignmentSummary>,
    /// Thresholds written as a percentile of the run, with the value each resolved to
    /// (`thresholds."filters.image.min_sharpness" = {percentile, value, samples, dropped}`);
    /// absent when the config has none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, ResolvedThreshold>,
    pub measure_version: String,
    pub stage_seconds: BTreeMap<String, f64>,
    /// On a GPU: seconds it was busy per stage and step (`measure.kernels`,
    /// `measure.jpeg_decode`, `embed.jpeg_decode`, `embed.clip_inputs`, `embed.model`); absent
    /// on the CPU. nvJPEG's are summed over the threads decoding at once.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gpu_busy_seconds: BTreeMap<String, f64>,
}

/// What made a version (`made_by` in its manifest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MadeBy {
    /// `mmcurate run` over the inputs alone.
    #[default]
    Run,
    /// `mmcurate run --against`: new inputs deduplicated against the previous version.
    Incremental,
    /// `mmcurate reenrich`: the model outputs recomputed with other model settings.
    Reenrich,
    /// `mmcurate forget`: samples removed on request.
    Forget,
}

/// What `mmcurate reenrich` records: the settings it changed, the CLIP weights before and
/// after, and what it reused.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reenrichment {
    /// Each changed config key with its old and new value (`{"old": …, "new": …}`).
    pub changed: BTreeMap<String, ChangedSetting>,
    /// The CLIP weights' sha256 in the parent version and in this one (null without a model).
    pub old_weights_sha256: Option<String>,
    pub new_weights_sha256: Option<String>,
    /// Samples fetched and decoded again to measure them (0 when every work unit's records and
    /// staged copies were in `state/`).
    pub samples_decoded: u64,
    /// Samples whose measurements (everything but the model's outputs) were taken from
    /// `state/`.
    pub measurements_reused: u64,
    /// CLIP embeddings (with scores) the model computed, and those taken from the model-output
    /// cache (`state/model-outputs/`).
    pub embeddings_computed: u64,
    pub embeddings_from_cache: u64,
    /// Samples that entered and left the kept set (the rows of `diff.parquet`).
    pub entered: u64,
    pub left: u64,
}

/// One changed config key.
#[derive(Debug, Clone, Serialize)]
pub struct ChangedSetting {
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

/// What an incremental run (`mmcurate run --against`) records.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Incremental {
    /// The corpus deduplicated against: its output (`run.output` itself in the common case)
    /// and its version.
    pub against: String,
    pub against_version: u64,
    /// Whether that corpus is this output's: then this version lists its files too.
    pub same_output: bool,
    /// Kept samples of the corpus before, what this run added, and the total after (the
    /// corpus as this version lists it: the earlier samples only when `same_output`).
    pub corpus_before: u64,
    pub added: u64,
    pub corpus_after: u64,
    /// New samples dropped as copies of corpus samples, by reason.
    pub dropped_as_existing: BTreeMap<String, u64>,
}

/// What `mmcurate calibrate` adds to its manifest: how the sample was taken and the sweeps.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// `--sample N`, when the inputs were sampled.
    pub sample: Option<u64>,
    /// Units of work the inputs hold, and how many were measured.
    pub units_planned: u64,
    pub units_measured: u64,
    pub sweeps: crate::decide::sweeps::Sweeps,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelsRecord {
    /// The CLIP checkpoint: id, weights sha256, whether a model card vouches for it.
    pub clip: Option<ClipInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
    pub git_commit: String,
}

impl ToolInfo {
    pub fn current() -> ToolInfo {
        ToolInfo {
            name: "mmcurate".to_string(),
            version: crate::VERSION.to_string(),
            git_commit: env!("MMCURATE_GIT_COMMIT").to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub name: String,
    pub output: String,
    pub started_at: String,
    pub finished_at: String,
    pub device: String,
    /// `libjpeg-turbo (cpu)`, or nvJPEG's backend with `run.gpu_jpeg_decode`.
    pub jpeg_decoder: String,
    /// Videos decoded while measuring, by decoder (`nvdec`, `cpu`); absent without videos.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub video_decoders: BTreeMap<String, u64>,
    pub threads: usize,
}

/// One `[[inputs]]` entry as it was read.
#[derive(Debug, Clone, Serialize)]
pub struct InputRecord {
    pub uri: String,
    pub format: String,
    /// Objects the input holds (media files with sidecars, shards or manifests).
    pub object_count: u64,
    pub total_bytes: u64,
    /// sha256 of the sorted `uri, size, etag` listing: equal listings, equal hash.
    pub listing_sha256: String,
    /// Every object with its size and etag. For `files` inputs, which can hold millions of
    /// objects, the per-object sizes and etags are in the ledger instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<Vec<InputObject>>,
    /// Problems that cut an input short (e.g. a truncated shard).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub samples: u64,
    pub kept: u64,
    pub dropped: u64,
    pub dropped_by_stage: BTreeMap<String, u64>,
    pub dropped_by_reason: BTreeMap<String, u64>,
    /// Samples and kept samples by media kind (`image`, `video`, `audio`; `unknown` for bytes
    /// that were not recognised or not read).
    pub by_media_kind: BTreeMap<String, KindCounts>,
    /// Work units (`run.unit_size`): all of them, those measured by the process that committed
    /// the run and those it found already measured in `state/` (absent when the phases ran as
    /// separate processes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<UnitCounts>,
}

/// How the run's work units were measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct UnitCounts {
    pub total: u64,
    pub measured: u64,
    pub reused: u64,
}

/// How many samples of one media kind there were, and how many were kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindCounts {
    pub samples: u64,
    pub kept: u64,
}

/// An output file (ledger or embeddings Parquet) with its row count and checksum.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct OutputFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The version whose folder holds the file, when not the version listing it: an
    /// incremental or forget version lists the files of earlier versions it keeps (their name
    /// is then relative to `versions/<version>/`). Absent for the version's own files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl OutputFile {
    /// The entry for `bytes` written as `name`, a file of the version that lists it.
    pub fn of(name: impl Into<String>, rows: u64, bytes: &[u8]) -> OutputFile {
        OutputFile {
            name: name.into(),
            rows,
            bytes: bytes.len() as u64,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
            version: None,
        }
    }
}
