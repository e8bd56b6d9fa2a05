//! `[output]`: how the shards are cut and how many versions are kept. Writing them is
//! `write`'s job.

use serde::{Deserialize, Serialize};

use super::check::invalid;
use super::{ByteSize, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Start a new shard after this many samples.
    #[serde(default = "default_max_samples_per_shard")]
    pub max_samples_per_shard: u64,
    /// Start a new shard before it would grow past this size ("512MB", "1GiB" or bytes).
    #[serde(default = "default_max_bytes_per_shard")]
    pub max_bytes_per_shard: ByteSize,
    /// After a commit, keep this many committed versions and remove older ones (0: keep all).
    #[serde(default)]
    pub keep_versions: usize,
}

fn default_max_samples_per_shard() -> u64 {
    10_000
}
fn default_max_bytes_per_shard() -> ByteSize {
    ByteSize(1 << 30)
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            max_samples_per_shard: default_max_samples_per_shard(),
            max_bytes_per_shard: default_max_bytes_per_shard(),
            keep_versions: 0,
        }
    }
}

impl OutputConfig {
    /// Checks `[output]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_samples_per_shard == 0 {
            return Err(invalid(
                "output.max_samples_per_shard",
                0,
                "must be at least 1",
            ));
        }
        if self.max_bytes_per_shard.0 < 10 * 1024 {
            return Err(invalid(
                "output.max_bytes_per_shard",
                self.max_bytes_per_shard,
                "must be at least 10KiB",
            ));
        }
        Ok(())
    }
}
