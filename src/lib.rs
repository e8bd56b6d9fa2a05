//! mmcurate: a curation pipeline for multimodal training corpora.
//!
//! The modules follow the data flow, in the order a sample meets them: `config` → `store` →
//! `plan` → `source` → `decode` → `measure` → `decide` → `write`, with `pipeline` running the
//! stages together (in phases that can run on separate nodes, with `state` keeping
//! each work unit's results in the output between them) and `cli` as the binary's edge; `gpu`
//! and `models` sit beside the stages, and the low-level `pixels`, `vector` and `contain`
//! (panics in per-sample work) serve them all. Imports run with the flow
//! (tests/it/architecture.rs checks it). Stages talk through a few plain types:
//! [`source::Sample`], [`measure::Measurements`], [`record::Decision`] and the per-sample
//! [`record::Record`] that carries them.

pub mod cli;
pub mod config;
pub mod contain;
pub mod decide;
pub mod decode;
pub mod gpu;
pub mod measure;
pub mod models;
pub mod pipeline;
pub mod pixels;
pub mod plan;
pub mod record;
pub mod source;
pub mod state;
pub mod store;
pub mod vector;
pub mod write;

/// The tool's version, recorded in every manifest and shard `.json`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
