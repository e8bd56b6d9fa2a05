//! Deciding which samples to keep: the per-sample judgement ([`judge`]: the filters on size,
//! aspect ratio, caption, sharpness, brightness, video and audio limits, cheap before
//! expensive), global deduplication over the whole run (exact by sha256, then near by pHash,
//! video signatures and audio fingerprints, then semantic by embedding neighbours found in
//! `semantic`; the keep policy in [`run_wide`]) and the run-wide alignment threshold on CLIP
//! scores. Every drop says which stage dropped it, why, and the numbers behind it.
//!
//! The filters and dedup work on measurements only; `judge` calls `decode` and `measure` (in
//! that order) to get them, and never stages or writes anything.

pub mod alignment;
pub mod dedup;
pub mod filters;
pub mod hamming_index;
pub mod judge;
pub mod pairs;
pub mod percentiles;
pub mod run_wide;
pub mod semantic;
pub mod sweeps;

pub use crate::record::decision::{Decision, Drop, Reason, Stage};
