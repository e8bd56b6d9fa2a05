//! The run manifest, `<output>/manifest.json`: what ran (tool version and commit, the resolved
//! config and its sha256), on what (every input with its size and etag), and what came out
//! (counts by status and reason, every shard and ledger file with its sha256, time per stage).

use serde::Serialize;
use std::collections::BTreeMap;

use super::shards::ShardInfo;
use crate::decide::alignment::AlignmentSummary;
use crate::models::clip::ClipInfo;
use crate::plan::InputObject;

#[derive(Debug, Clone, Serialize)]
pub struct RunManifest {
    pub tool: ToolInfo,
    pub run: RunInfo,
    pub config: serde_json::Value,
    pub config_sha256: String,
    pub inputs: Vec<InputRecord>,
    pub counts: Counts,
    pub shards: Vec<ShardInfo>,
    pub ledger: Vec<OutputFile>,
    /// The CLIP embeddings files (empty without a CLIP model).
    pub embeddings: Vec<OutputFile>,
    /// The auxiliary models the run used (`null` for one it did not).
    pub models: ModelsRecord,
    /// The alignment thresholds as applied (absent without `[filters.alignment]` rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alignment: Option<AlignmentSummary>,
    pub measure_version: String,
    pub stage_seconds: BTreeMap<String, f64>,
    /// On a GPU: seconds it was busy per stage and step (`measure.kernels`,
    /// `measure.jpeg_decode`, `embed.jpeg_decode`, `embed.clip_inputs`, `embed.model`); absent
    /// on the CPU. nvJPEG's are summed over the threads decoding at once.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gpu_busy_seconds: BTreeMap<String, f64>,
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
}

/// How many samples of one media kind there were, and how many were kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindCounts {
    pub samples: u64,
    pub kept: u64,
}

/// An output file (ledger or embeddings Parquet) with its row count and checksum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}
