//! All pairs of vectors at or above a cosine threshold, at corpus scale: the vectors are
//! split into partitions learnt by spherical k-means on a seeded sample, each vector is also
//! copied into the neighbouring partitions a pair could straddle into (`assign` derives the
//! bound), and all pairs inside each partition are found by blocked matrix products (`gemm`,
//! or a GPU's: `products`), partitions in parallel. Memory holds one batch of partitions at a
//! time: the input is read in passes (`source`), from .npy (`npy`) or Parquet
//! (`parquet_input`) files or memory.
//!
//! This module finds pairs and writes/reads pair files (`files`); choosing which sample of a
//! group to keep in a run is `dedup`'s job. Results are identical on any thread count.

mod assign;
pub mod engine;
pub mod files;
mod kmeans;
pub mod npy;
pub mod parquet_input;
pub mod plan;
pub mod products;
pub mod recall;
pub mod source;
mod tile;
mod within;

pub use engine::{find_pairs, find_pairs_on, PairSearch, PairSearchReport, PairStats, Shard};
pub use products::CpuProducts;
pub use source::{EmbeddingSource, VectorsInMemory};

/// Rows `a < b` of the input (numbered over the whole input) and their cosine similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosinePair {
    pub a: u64,
    pub b: u64,
    pub cosine: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[error("{path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{name} = {value}: must be {allowed}")]
    Parameter {
        name: &'static str,
        value: String,
        allowed: &'static str,
    },
}

pub(crate) fn io_error(path: &std::path::Path, source: std::io::Error) -> PairsError {
    PairsError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn format_error(path: &std::path::Path, message: String) -> PairsError {
    PairsError::Format {
        path: path.display().to_string(),
        message,
    }
}

pub(crate) fn parquet_error(
    path: &std::path::Path,
    source: parquet::errors::ParquetError,
) -> PairsError {
    PairsError::Parquet {
        path: path.display().to_string(),
        source,
    }
}

/// splitmix64: a well-mixed hash, for seeded choices that depend on nothing but the seed and
/// the row number.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod engine_tests;
