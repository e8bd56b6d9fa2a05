//! The integration tests, in one binary: each test target links the whole crate with candle,
//! arrow and the object store (about 700 MB in a debug build), so one binary instead of twelve
//! keeps CI's build small and fast to link. Run one group with `cargo test --test it cli::`.

mod common;

mod architecture;

#[cfg(feature = "av")]
mod av_run;
mod cli;
mod clip_parity;
mod clip_preprocess;
mod clip_run;
mod clip_tokenizer;
mod decide_partitions;
mod dedup_cli;
mod gpu;
mod gpu_pairs;
mod hf_datasets;
mod hostile_inputs;
mod hostile_limits;
mod incremental;
mod inputs;
mod kernels;
mod kubernetes;
mod model_cards;
mod phases;
mod phash_reference;
mod quickstart;
mod reenrich;
mod report;
mod resample_reference;
mod s3;
mod s3_faults;
mod self_contained;
mod slurm;
mod urls;
mod verify;
mod versions;
