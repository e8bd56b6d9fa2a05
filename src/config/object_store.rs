//! `[run.object_store]`: how S3 requests survive faults (retries, back-off, time-outs).
//!
//! This is only the typed, validated section; `store` turns it into `object_store`'s
//! `RetryConfig` and `ClientOptions`. Local paths ignore it.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Retries, back-off and time-outs of every S3 request (reads, listings, writes).
///
/// The defaults fit multi-gigabyte shards: a whole request has no time limit (a 4 GB shard
/// streamed at the pace of the measuring threads takes minutes), while a body that stalls for
/// `read_timeout_s` is cut and resumed from where it stopped (a ranged GET of the rest), and a
/// connection that does not open in `connect_timeout_s` is retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// How many times one request is retried (after a 5xx or 429 answer, a refused or reset
    /// connection, a time-out); 0 turns retries off.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// No retry starts later than this many seconds after a request's first try. Requests are
    /// retried with the signature of their first try, so this stays under S3's 15 minutes.
    #[serde(default = "default_retry_timeout_s")]
    pub retry_timeout_s: f64,
    /// The wait before the first retry, in seconds; each next wait is `backoff_base` times
    /// longer (with jitter), up to `backoff_max_s`.
    #[serde(default = "default_backoff_initial_s")]
    pub backoff_initial_s: f64,
    #[serde(default = "default_backoff_max_s")]
    pub backoff_max_s: f64,
    #[serde(default = "default_backoff_base")]
    pub backoff_base: f64,
    /// Seconds to open a connection (TCP and TLS) before that try counts as failed.
    #[serde(default = "default_connect_timeout_s")]
    pub connect_timeout_s: f64,
    /// Seconds a response body may stall (no byte arriving) before that try counts as failed.
    #[serde(default = "default_read_timeout_s")]
    pub read_timeout_s: f64,
    /// Seconds for a whole request, body included; 0 means no limit (the default, as a large
    /// shard may take minutes to stream).
    #[serde(default)]
    pub request_timeout_s: f64,
}

fn default_max_retries() -> u32 {
    10
}
fn default_retry_timeout_s() -> f64 {
    300.0
}
fn default_backoff_initial_s() -> f64 {
    0.1
}
fn default_backoff_max_s() -> f64 {
    15.0
}
fn default_backoff_base() -> f64 {
    2.0
}
fn default_connect_timeout_s() -> f64 {
    5.0
}
fn default_read_timeout_s() -> f64 {
    60.0
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        ObjectStoreConfig {
            max_retries: default_max_retries(),
            retry_timeout_s: default_retry_timeout_s(),
            backoff_initial_s: default_backoff_initial_s(),
            backoff_max_s: default_backoff_max_s(),
            backoff_base: default_backoff_base(),
            connect_timeout_s: default_connect_timeout_s(),
            read_timeout_s: default_read_timeout_s(),
            request_timeout_s: 0.0,
        }
    }
}

/// The longest time any of these settings may name: one day.
const MAX_SECONDS: f64 = 86_400.0;

impl ObjectStoreConfig {
    /// Checks every value; `prefix` is the section's key (`run.object_store`).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: String, allowed: &str| ConfigError::Invalid {
            key: format!("{prefix}.{key}"),
            value,
            allowed: allowed.to_string(),
        };
        if self.max_retries > 100 {
            return Err(invalid(
                "max_retries",
                self.max_retries.to_string(),
                "must be 0 (no retries) to 100",
            ));
        }
        let positive = [
            ("retry_timeout_s", self.retry_timeout_s),
            ("backoff_initial_s", self.backoff_initial_s),
            ("backoff_max_s", self.backoff_max_s),
            ("connect_timeout_s", self.connect_timeout_s),
            ("read_timeout_s", self.read_timeout_s),
        ];
        for (key, value) in positive {
            if !(value > 0.0 && value <= MAX_SECONDS) {
                return Err(invalid(
                    key,
                    value.to_string(),
                    "must be a number of seconds above 0 and at most 86400 (one day)",
                ));
            }
        }
        if !(0.0..=MAX_SECONDS).contains(&self.request_timeout_s) {
            return Err(invalid(
                "request_timeout_s",
                self.request_timeout_s.to_string(),
                "must be 0 (no limit) or a number of seconds up to 86400 (one day)",
            ));
        }
        if self.backoff_max_s < self.backoff_initial_s {
            return Err(invalid(
                "backoff_max_s",
                self.backoff_max_s.to_string(),
                &format!(
                    "must be at least {prefix}.backoff_initial_s ({})",
                    self.backoff_initial_s
                ),
            ));
        }
        if !(1.0..=10.0).contains(&self.backoff_base) {
            return Err(invalid(
                "backoff_base",
                self.backoff_base.to_string(),
                "must be a factor from 1 (constant waits) to 10",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_fit_large_shards() {
        let c = ObjectStoreConfig::default();
        c.validate("run.object_store").unwrap();
        assert_eq!(c.max_retries, 10);
        assert_eq!(
            c.request_timeout_s, 0.0,
            "no whole-request limit by default"
        );
        assert_eq!(c.read_timeout_s, 60.0);
        assert_eq!(c.connect_timeout_s, 5.0);
    }

    #[test]
    fn bad_values_name_key_value_and_what_is_allowed() {
        let error = |c: ObjectStoreConfig| c.validate("run.object_store").unwrap_err().to_string();
        let e = error(ObjectStoreConfig {
            read_timeout_s: 0.0,
            ..Default::default()
        });
        assert_eq!(
            e,
            "config key `run.object_store.read_timeout_s` = 0: must be a number of seconds above 0 and at most 86400 (one day)"
        );
        let e = error(ObjectStoreConfig {
            max_retries: 1000,
            ..Default::default()
        });
        assert!(
            e.contains("`run.object_store.max_retries` = 1000: must be 0"),
            "{e}"
        );
        let e = error(ObjectStoreConfig {
            backoff_initial_s: 20.0,
            ..Default::default()
        });
        assert!(
            e.contains("`run.object_store.backoff_max_s` = 15: must be at least run.object_store.backoff_initial_s (20)"),
            "{e}"
        );
        let e = error(ObjectStoreConfig {
            request_timeout_s: f64::NAN,
            ..Default::default()
        });
        assert!(
            e.contains("`run.object_store.request_timeout_s` = NaN"),
            "{e}"
        );
        let e = error(ObjectStoreConfig {
            backoff_base: 0.5,
            ..Default::default()
        });
        assert!(e.contains("backoff_base` = 0.5: must be a factor"), "{e}");
    }
}
