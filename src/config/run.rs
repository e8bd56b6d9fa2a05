//! `[run]`: the run's name, output, threads and device, and what the device value means
//! ([`DeviceRequest`], which `gpu::select` turns into a device; this module opens nothing).

use serde::{Deserialize, Serialize};

use super::check::{check_uri, invalid};
use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A name for the run, recorded in the manifest.
    #[serde(default = "default_run_name")]
    pub name: String,
    /// Where shards, ledger and manifest go: a local path, `file://…` or `s3://bucket/prefix`.
    pub output: String,
    /// Worker threads for decoding and measuring; 0 means one per core.
    #[serde(default)]
    pub threads: usize,
    /// Where pixels are measured: `auto` (the GPU when there is a usable one, else the CPU),
    /// `cpu`, `cuda` or `cuda:N` (see `gpu::device`).
    #[serde(default = "default_device")]
    pub device: String,
    /// With a CUDA device: decode JPEGs with nvJPEG (the GPU's JPEG engine where it has one).
    /// Off by default: nvJPEG's inverse DCT rounds differently from libjpeg-turbo's, so the
    /// measurements are close to, not identical with, a CPU run's.
    #[serde(default)]
    pub gpu_jpeg_decode: bool,
    /// Local folder for staging candidate samples between measuring and writing. Default: a
    /// `.staging` folder inside a local output, or the system temporary folder for S3 output.
    #[serde(default)]
    pub staging_dir: Option<String>,
    /// Objects (loose files) or manifest rows per work unit; a `.tar` shard is always one unit.
    /// A finished unit's state is committed under `<output>/state/`, so a restarted run skips it.
    #[serde(default = "default_unit_size")]
    pub unit_size: usize,
    /// Retries, back-off and time-outs of object-store requests (`[run.object_store]`).
    #[serde(default)]
    pub object_store: super::ObjectStoreConfig,
}

fn default_run_name() -> String {
    "mmcurate".to_string()
}

fn default_unit_size() -> usize {
    256
}

/// The largest `run.unit_size`: a unit's records are held in memory while it is measured.
pub const MAX_UNIT_SIZE: usize = 1_000_000;

fn default_device() -> String {
    "auto".to_string()
}

/// What `[run] device` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The GPU when there is a usable one, else the CPU.
    Auto,
    Cpu,
    /// GPU number N (`cuda` is `cuda:0`).
    Cuda(usize),
}

/// What `[run] device` allows, for error messages.
pub const DEVICE_VALUES: &str = "must be \"auto\" (the GPU when there is one, else the CPU), \"cpu\", \"cuda\" or \"cuda:N\" (GPU number N, from 0)";

impl DeviceRequest {
    /// Parses `auto`, `cpu`, `cuda` or `cuda:N`; `None` for anything else.
    pub fn parse(value: &str) -> Option<DeviceRequest> {
        match value {
            "auto" => Some(DeviceRequest::Auto),
            "cpu" => Some(DeviceRequest::Cpu),
            "cuda" => Some(DeviceRequest::Cuda(0)),
            other => {
                let n = other.strip_prefix("cuda:")?;
                // Digits only: `cuda:+1` or `cuda: 1` would parse as usize but are typos.
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                n.parse().ok().map(DeviceRequest::Cuda)
            }
        }
    }

    /// The value as the config spells it (`cuda:0` for `cuda`).
    pub fn as_config_value(self) -> String {
        match self {
            DeviceRequest::Auto => "auto".to_string(),
            DeviceRequest::Cpu => "cpu".to_string(),
            DeviceRequest::Cuda(n) => format!("cuda:{n}"),
        }
    }
}

impl RunConfig {
    /// Checks `[run]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_uri("run.output", &self.output)?;
        if self.name.trim().is_empty() {
            return Err(invalid("run.name", "\"\"", "must not be empty"));
        }
        if self.threads > 4096 {
            return Err(invalid(
                "run.threads",
                self.threads,
                "must be 0 (one per core) to 4096",
            ));
        }
        if DeviceRequest::parse(&self.device).is_none() {
            return Err(invalid(
                "run.device",
                format!("{:?}", self.device),
                DEVICE_VALUES,
            ));
        }
        if self.unit_size == 0 || self.unit_size > MAX_UNIT_SIZE {
            return Err(invalid(
                "run.unit_size",
                self.unit_size,
                &format!("must be 1 to {MAX_UNIT_SIZE} objects or rows per work unit"),
            ));
        }
        self.object_store.validate("run.object_store")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_the_config_spells_them() {
        assert_eq!(DeviceRequest::parse("auto"), Some(DeviceRequest::Auto));
        assert_eq!(DeviceRequest::parse("cpu"), Some(DeviceRequest::Cpu));
        assert_eq!(DeviceRequest::parse("cuda"), Some(DeviceRequest::Cuda(0)));
        assert_eq!(DeviceRequest::parse("cuda:3"), Some(DeviceRequest::Cuda(3)));
        for bad in [
            "gpu", "CUDA", "cuda:", "cuda:x", "cuda:+1", "cuda: 1", "cuda:-1", "",
        ] {
            assert_eq!(DeviceRequest::parse(bad), None, "{bad:?}");
        }
        assert_eq!(DeviceRequest::Cuda(2).as_config_value(), "cuda:2");
    }
}
