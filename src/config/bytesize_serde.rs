//! A byte count that reads from TOML as a number of bytes or a size string ("512MB", "1GiB").

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A size in bytes. Decimal units (`KB`, `MB`, `GB`) are powers of 1000, binary units (`KiB`,
/// `MiB`, `GiB`) powers of 1024, as the `bytesize` crate reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes or a size such as \"512MB\" or \"1GiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{v} is negative; a size must be >= 0")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.trim()
                    .parse::<bytesize::ByteSize>()
                    .map(|b| ByteSize(b.as_u64()))
                    .map_err(|_| {
                        E::custom(format!(
                            "{v:?} is not a size; use bytes or a size such as \"512MB\" or \"1GiB\""
                        ))
                    })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        s: ByteSize,
    }

    fn parse(v: &str) -> Result<u64, String> {
        toml::from_str::<T>(&format!("s = {v}"))
            .map(|t| t.s.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_numbers_and_units() {
        assert_eq!(parse("1234").unwrap(), 1234);
        assert_eq!(parse("\"512MB\"").unwrap(), 512_000_000);
        assert_eq!(parse("\"1GiB\"").unwrap(), 1 << 30);
        assert_eq!(parse("\"64 KiB\"").unwrap(), 64 * 1024);
        assert!(parse("\"12 parsecs\"").unwrap_err().contains("not a size"));
        assert!(parse("-5").unwrap_err().contains("negative"));
    }
}
