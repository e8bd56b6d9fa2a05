//! A filter threshold that is either a fixed value (`min_sharpness = 30`) or a percentile of
//! the whole run (`min_sharpness = "p10"`). This module only types and parses it; `decide`
//! resolves percentiles over every measured sample of the run and the manifest records what
//! each resolved to.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a percentile threshold may be written as, for error messages.
pub const PERCENTILE_FORMS: &str =
    "a number, or a percentile of the run written \"pN\" with 0 < N < 100 (e.g. \"p10\", \"p2.5\")";

/// A fixed value, or the `N`th percentile of the run's values of the measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Value(f64),
    Percentile(f64),
}

impl Threshold {
    /// The value, when it is fixed in the config.
    pub fn fixed(self) -> Option<f64> {
        match self {
            Threshold::Value(v) => Some(v),
            Threshold::Percentile(_) => None,
        }
    }

    /// The percentile (0–100), when the threshold is resolved over the run.
    pub fn percentile(self) -> Option<f64> {
        match self {
            Threshold::Value(_) => None,
            Threshold::Percentile(p) => Some(p),
        }
    }

    /// Parses `"pN"`; `None` when `text` is not of that form or N is not within (0, 100).
    pub fn parse_percentile(text: &str) -> Option<Threshold> {
        let number = text.trim().strip_prefix(['p', 'P'])?;
        let p: f64 = number.parse().ok()?;
        (p > 0.0 && p < 100.0).then_some(Threshold::Percentile(p))
    }
}

impl From<f64> for Threshold {
    fn from(value: f64) -> Self {
        Threshold::Value(value)
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threshold::Value(v) => write!(f, "{v}"),
            Threshold::Percentile(p) => write!(f, "\"p{p}\""),
        }
    }
}

impl Serialize for Threshold {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Threshold::Value(v) => serializer.serialize_f64(*v),
            Threshold::Percentile(p) => serializer.serialize_str(&format!("p{p}")),
        }
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ThresholdVisitor;
        impl Visitor<'_> for ThresholdVisitor {
            type Value = Threshold;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(PERCENTILE_FORMS)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Threshold, E> {
                Ok(Threshold::Value(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Threshold, E> {
                Ok(Threshold::Value(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Threshold, E> {
                Ok(Threshold::Value(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Threshold, E> {
                // `--set key=30` arrives as a string when the value is not TOML: accept numbers.
                if let Ok(value) = v.trim().parse::<f64>() {
                    return Ok(Threshold::Value(value));
                }
                Threshold::parse_percentile(v).ok_or_else(|| {
                    E::custom(format!(
                        "\"{v}\" is not a threshold: expected {PERCENTILE_FORMS}"
                    ))
                })
            }
        }
        deserializer.deserialize_any(ThresholdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Holder {
        t: Threshold,
    }

    fn parse(text: &str) -> Result<Threshold, String> {
        toml::from_str::<Holder>(text)
            .map(|h| h.t)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_and_percentiles() {
        assert_eq!(parse("t = 30").unwrap(), Threshold::Value(30.0));
        assert_eq!(parse("t = 12.5").unwrap(), Threshold::Value(12.5));
        assert_eq!(parse("t = \"p10\"").unwrap(), Threshold::Percentile(10.0));
        assert_eq!(parse("t = \"p2.5\"").unwrap(), Threshold::Percentile(2.5));
        assert_eq!(parse("t = \"40\"").unwrap(), Threshold::Value(40.0));
        for bad in ["\"p0\"", "\"p100\"", "\"q10\"", "\"p\"", "\"ten\"", "true"] {
            let e = parse(&format!("t = {bad}")).unwrap_err();
            assert!(e.contains("percentile of the run"), "{bad}: {e}");
        }
    }

    #[test]
    fn serialises_as_written() {
        let json = |t| serde_json::to_string(&Holder { t }).unwrap();
        assert_eq!(json(Threshold::Value(30.0)), r#"{"t":30.0}"#);
        assert_eq!(json(Threshold::Percentile(10.0)), r#"{"t":"p10"}"#);
        assert_eq!(Threshold::Percentile(2.5).to_string(), "\"p2.5\"");
    }
}
