//! `[[inputs]]`: where samples come from (a folder, prefix or object) and in which format.

use serde::{Deserialize, Serialize};

use super::check::{check_uri, invalid};
use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// Every object under a prefix; captions from `.txt` / `.json` sidecars with the same stem.
    Files,
    /// Existing WebDataset `.tar` shards, streamed.
    Webdataset,
    /// JSONL or Parquet rows naming object URIs.
    Manifest,
}

impl InputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Files => "files",
            InputFormat::Webdataset => "webdataset",
            InputFormat::Manifest => "manifest",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// A local path, `file://…` or `s3://bucket/prefix`: a folder/prefix or a single object.
    pub uri: String,
    #[serde(default = "default_format")]
    pub format: InputFormat,
    /// Manifest column holding each object's URI.
    #[serde(default = "default_url_column")]
    pub url_column: String,
    /// Manifest column holding each object's caption.
    #[serde(default = "default_caption_column")]
    pub caption_column: String,
    /// Let manifest rows name local paths, buckets or prefixes outside this input's own
    /// location (the folder or prefix `uri` names, or the folder of the manifest `uri` names).
    /// Off by default: a manifest from an untrusted source could otherwise make the run read
    /// `/etc` or another tenant's bucket with the run's credentials. `http(s)://` rows are
    /// URLs, not locations, and are always allowed.
    #[serde(default)]
    pub allow_outside: bool,
}

fn default_format() -> InputFormat {
    InputFormat::Files
}
fn default_url_column() -> String {
    "url".to_string()
}
fn default_caption_column() -> String {
    "caption".to_string()
}

/// Checks the `[[inputs]]` tables: at least one, each with a valid `uri` and `url_column`.
pub fn validate(inputs: &[InputConfig]) -> Result<(), ConfigError> {
    if inputs.is_empty() {
        return Err(invalid(
            "inputs",
            "[]",
            "at least one [[inputs]] table with a `uri` is required",
        ));
    }
    for (i, input) in inputs.iter().enumerate() {
        check_uri(&format!("inputs[{i}].uri"), &input.uri)?;
        if input.url_column.is_empty() {
            return Err(invalid(
                &format!("inputs[{i}].url_column"),
                "\"\"",
                "must name a column",
            ));
        }
    }
    Ok(())
}
