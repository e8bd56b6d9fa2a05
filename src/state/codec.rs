//! How state objects are encoded: CBOR through `ciborium` (compact, self-describing, and
//! lossless for every `f64`, which JSON is not for NaN and infinities). Encoding only.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes a value; state values are plain data, so encoding cannot fail.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("state values encode to CBOR");
    out
}

/// Decodes a value, saying what is wrong with bytes that are not one.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| format!("not a valid state object: {e}"))
}
