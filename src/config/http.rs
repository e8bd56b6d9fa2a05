//! The `[http]` section: how manifest rows whose URL is `http://` or `https://` are downloaded
//! (concurrency, per-host limit, time-outs, retries, size and redirect limits, and the
//! `X-Robots-Tag` opt-outs honoured as img2dataset does). Every key has a default (README,
//! "Config reference"); validation names the key, the value and what is allowed. This module
//! only describes the settings: `store::http` is the downloader.

use serde::{Deserialize, Serialize};

use super::check::invalid;
use super::{ByteSize, ConfigError};

/// How URLs are downloaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Downloads in flight at once over all hosts; 0 means 16 per core (img2dataset's usual
    /// setting is one process per core with 16 or more threads each).
    #[serde(default)]
    pub concurrency: usize,
    /// Downloads in flight at once to one host (the host of the row's URL); 0: no per-host limit.
    #[serde(default = "default_per_host_concurrency")]
    pub per_host_concurrency: usize,
    /// Seconds to wait for a connection, and then for each next piece of the response; a
    /// server silent for longer fails the attempt (img2dataset's `timeout`, 10 by default).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: f64,
    /// Seconds one attempt may take in all, however steadily the bytes trickle in.
    #[serde(default = "default_total_timeout_seconds")]
    pub total_timeout_seconds: f64,
    /// Attempts after the first for failures that may pass: time-outs, connection errors, a
    /// body cut short, HTTP 408, 429 and 5xx. Other 4xx answers are not retried.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Seconds before the first retry; each next one waits twice as long (at most 30 s), or
    /// what a `Retry-After` header asks, up to that cap.
    #[serde(default = "default_retry_backoff_seconds")]
    pub retry_backoff_seconds: f64,
    /// Larger bodies are refused: from `Content-Length` before reading, else while reading.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Redirects followed per attempt; one more fails the row (urllib's limit, 10, by default).
    #[serde(default = "default_max_redirects")]
    pub max_redirects: u32,
    /// `X-Robots-Tag` directives that opt an object out: such rows are dropped as `opted_out`
    /// without reading the body. img2dataset's defaults, and `none` (which means `noindex,
    /// nofollow`). An empty list turns the check off.
    #[serde(default = "default_disallowed_header_directives")]
    pub disallowed_header_directives: Vec<String>,
    /// The product token sent in `User-Agent` and matched against `X-Robots-Tag: TOKEN: …`
    /// (a directive naming another agent does not apply).
    #[serde(default = "default_user_agent_token")]
    pub user_agent_token: String,
}

fn default_per_host_concurrency() -> usize {
    16
}
fn default_timeout_seconds() -> f64 {
    10.0
}
fn default_total_timeout_seconds() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    2
}
fn default_retry_backoff_seconds() -> f64 {
    0.5
}
fn default_max_bytes() -> ByteSize {
    ByteSize(100_000_000)
}
fn default_max_redirects() -> u32 {
    10
}
fn default_disallowed_header_directives() -> Vec<String> {
    ["noai", "noimageai", "noindex", "noimageindex", "none"]
        .map(String::from)
        .to_vec()
}
fn default_user_agent_token() -> String {
    "mmcurate".to_string()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            concurrency: 0,
            per_host_concurrency: default_per_host_concurrency(),
            timeout_seconds: default_timeout_seconds(),
            total_timeout_seconds: default_total_timeout_seconds(),
            retries: default_retries(),
            retry_backoff_seconds: default_retry_backoff_seconds(),
            max_bytes: default_max_bytes(),
            max_redirects: default_max_redirects(),
            disallowed_header_directives: default_disallowed_header_directives(),
            user_agent_token: default_user_agent_token(),
        }
    }
}

impl HttpConfig {
    /// Downloads in flight at once: `concurrency`, or 16 per core when it is 0.
    pub fn effective_concurrency(&self) -> usize {
        if self.concurrency > 0 {
            self.concurrency
        } else {
            16 * std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// A product token: what RFC 9110 allows in a `User-Agent` product name, and what can stand
/// before the `:` of an `X-Robots-Tag` value.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks every `[http]` key against what it allows.
pub fn validate(http: &HttpConfig) -> Result<(), ConfigError> {
    if http.concurrency > 4096 {
        return Err(invalid(
            "http.concurrency",
            http.concurrency,
            "must be 0 (16 per core) to 4096",
        ));
    }
    if http.per_host_concurrency > 4096 {
        return Err(invalid(
            "http.per_host_concurrency",
            http.per_host_concurrency,
            "must be 0 (no per-host limit) to 4096",
        ));
    }
    if !(http.timeout_seconds > 0.0 && http.timeout_seconds <= 3600.0) {
        return Err(invalid(
            "http.timeout_seconds",
            http.timeout_seconds,
            "must be above 0 and at most 3600 seconds (e.g. 10)",
        ));
    }
    if !(http.total_timeout_seconds >= http.timeout_seconds
        && http.total_timeout_seconds <= 86_400.0)
    {
        return Err(invalid(
            "http.total_timeout_seconds",
            http.total_timeout_seconds,
            &format!(
                "must be at least http.timeout_seconds ({}) and at most 86400 seconds",
                http.timeout_seconds
            ),
        ));
    }
    if http.retries > 10 {
        return Err(invalid("http.retries", http.retries, "must be 0 to 10"));
    }
    if !(0.0..=60.0).contains(&http.retry_backoff_seconds) {
        return Err(invalid(
            "http.retry_backoff_seconds",
            http.retry_backoff_seconds,
            "must be 0 to 60 seconds (e.g. 0.5)",
        ));
    }
    if http.max_bytes.0 == 0 {
        return Err(invalid("http.max_bytes", 0, "must be at least 1 byte"));
    }
    if http.max_redirects > 100 {
        return Err(invalid(
            "http.max_redirects",
            http.max_redirects,
            "must be 0 (follow none) to 100",
        ));
    }
    for (i, directive) in http.disallowed_header_directives.iter().enumerate() {
        let lowercase_token = is_token(directive) && !directive.chars().any(|c| c.is_uppercase());
        if !lowercase_token {
            return Err(invalid(
                &format!("http.disallowed_header_directives[{i}]"),
                format!("{directive:?}"),
                "must be a lowercase X-Robots-Tag directive such as \"noai\" (letters, digits, '-', '_', '.'); an empty list turns the check off",
            ));
        }
    }
    if !is_token(&http.user_agent_token) {
        return Err(invalid(
            "http.user_agent_token",
            format!("{:?}", http.user_agent_token),
            "must be a product token: letters, digits, '-', '_' or '.' (e.g. \"mmcurate\")",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(toml_text: &str) -> Result<HttpConfig, String> {
        let http: HttpConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        validate(&http).map_err(|e| e.to_string())?;
        Ok(http)
    }

    #[test]
    fn defaults_are_img2dataset_like() {
        let http = with("").unwrap();
        assert_eq!(http.concurrency, 0);
        assert!(http.effective_concurrency() >= 16);
        assert_eq!(http.per_host_concurrency, 16);
        assert_eq!(http.timeout_seconds, 10.0);
        assert_eq!(http.retries, 2);
        assert_eq!(http.max_redirects, 10);
        assert_eq!(http.max_bytes, ByteSize(100_000_000));
        assert_eq!(
            http.disallowed_header_directives,
            ["noai", "noimageai", "noindex", "noimageindex", "none"]
        );
        assert_eq!(http.user_agent_token, "mmcurate");
        assert!(with("disallowed_header_directives = []").is_ok());
        assert_eq!(with("concurrency = 7").unwrap().effective_concurrency(), 7);
    }

    #[test]
    fn each_key_is_checked() {
        let cases = [
            ("concurrency = 5000", "config key `http.concurrency` = 5000: must be 0 (16 per core) to 4096"),
            ("per_host_concurrency = 5000", "config key `http.per_host_concurrency` = 5000: must be 0 (no per-host limit) to 4096"),
            ("timeout_seconds = 0", "config key `http.timeout_seconds` = 0: must be above 0 and at most 3600 seconds (e.g. 10)"),
            ("timeout_seconds = 20\ntotal_timeout_seconds = 5", "config key `http.total_timeout_seconds` = 5: must be at least http.timeout_seconds (20) and at most 86400 seconds"),
            ("retries = 11", "config key `http.retries` = 11: must be 0 to 10"),
            ("retry_backoff_seconds = -1", "config key `http.retry_backoff_seconds` = -1: must be 0 to 60 seconds (e.g. 0.5)"),
            ("max_bytes = 0", "config key `http.max_bytes` = 0: must be at least 1 byte"),
            ("max_redirects = 101", "config key `http.max_redirects` = 101: must be 0 (follow none) to 100"),
            ("disallowed_header_directives = [\"noai\", \"No AI\"]", "config key `http.disallowed_header_directives[1]` = \"No AI\": must be a lowercase X-Robots-Tag directive"),
            ("user_agent_token = \"my bot\"", "config key `http.user_agent_token` = \"my bot\": must be a product token"),
        ];
        for (text, expected) in cases {
            let e = with(text).unwrap_err();
            assert!(e.starts_with(expected), "{text}: {e}");
        }
    }
}
