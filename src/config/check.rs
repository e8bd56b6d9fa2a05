//! The range checks every section's `validate()` shares, and the error they make: it names the
//! key, the value and what is allowed. This module knows no section; the sections call it.

use super::ConfigError;

/// What a duration limit allows.
pub(crate) const SECONDS: &str = "must be a finite number of seconds >= 0 (0 turns it off)";

/// The error for `key` = `value`, saying what is `allowed`.
pub(crate) fn invalid(key: &str, value: impl std::fmt::Display, allowed: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

/// A finite number >= 0.
pub(crate) fn check_non_negative(key: &str, value: f64, allowed: &str) -> Result<(), ConfigError> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(invalid(key, value, allowed))
    }
}

/// A fraction from 0 to 1, where 1 turns the limit off.
pub(crate) fn check_fraction(key: &str, value: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            key,
            value,
            "must be a fraction from 0 to 1 (1 turns it off)",
        ))
    }
}

/// `min` is at most `max` when `max` is set (above 0); else the error names `min`.
pub(crate) fn check_min_not_above_max(
    min_key: &str,
    min: f64,
    max_key: &str,
    max: f64,
) -> Result<(), ConfigError> {
    if max > 0.0 && min > max {
        return Err(invalid(
            min_key,
            min,
            &format!("must not exceed {max_key} ({max})"),
        ));
    }
    Ok(())
}

/// Accepts a local path, `file://`, or a bucket/container URI of a store `store`
/// opens: `s3://`, `gs://`, `az://`, `abfs://`, `abfss://`.
pub(crate) fn check_uri(key: &str, uri: &str) -> Result<(), ConfigError> {
    const ALLOWED: &str = "a local path, file://PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX or abfs[s]://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX";
    let bad = |allowed: &str| ConfigError::Invalid {
        key: key.to_string(),
        value: format!("{uri:?}"),
        allowed: allowed.to_string(),
    };
    if uri.trim().is_empty() {
        return Err(bad(&format!("must be {ALLOWED}")));
    }
    if let Some((scheme, rest)) = uri.split_once("://") {
        match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(bad(
                        "a file:// URI must hold an absolute path (file:///data/x)",
                    ));
                }
            }
            "s3" | "gs" | "az" | "abfs" | "abfss" => {
                if rest.split('/').next().unwrap_or("").is_empty() {
                    return Err(bad(&format!(
                        "a {scheme}:// URI must name a bucket or container ({scheme}://NAME/PREFIX)"
                    )));
                }
            }
            _ => return Err(bad(&format!("unsupported scheme: use {ALLOWED}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_checks_name_key_value_and_what_is_allowed() {
        assert!(check_non_negative("a.b", 0.0, SECONDS).is_ok());
        let e = check_non_negative("a.b", f64::NAN, SECONDS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config key `a.b` = NaN: must be a finite number of seconds >= 0 (0 turns it off)"
        );
        assert!(check_fraction("f", 1.0).is_ok());
        assert_eq!(
            check_fraction("f", 1.5).unwrap_err().to_string(),
            "config key `f` = 1.5: must be a fraction from 0 to 1 (1 turns it off)"
        );
        // A max of 0 is "no limit": any min passes.
        assert!(check_min_not_above_max("lo", 9.0, "hi", 0.0).is_ok());
        assert_eq!(
            check_min_not_above_max("lo", 9.0, "hi", 3.0)
                .unwrap_err()
                .to_string(),
            "config key `lo` = 9: must not exceed hi (3)"
        );
        assert!(check_uri("run.output", "s3://bucket/prefix").is_ok());
        assert_eq!(
            check_uri("run.output", "s3:///x").unwrap_err().to_string(),
            "config key `run.output` = \"s3:///x\": a s3:// URI must name a bucket or container (s3://NAME/PREFIX)"
        );
    }
}
