//! Deciding which samples to keep: per-sample filters (size, aspect ratio, sharpness,
//! brightness, caption), global deduplication over the whole run (exact by sha256, then near by
//! pHash, then semantic by embedding neighbours found in `semantic`) and the run-wide alignment
//! threshold on CLIP scores. Every drop says which stage dropped it, why, and the numbers
//! behind it.
//!
//! This stage works on measurements only; it never reads or decodes bytes.

pub mod alignment;
pub mod dedup;
pub mod filters;
pub mod hamming_index;
pub mod judge;
pub mod run_wide;
pub mod semantic;

pub use crate::record::decision::{Decision, Drop, Reason, Stage};
