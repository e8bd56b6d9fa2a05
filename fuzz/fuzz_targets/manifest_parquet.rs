//! The Parquet manifest reader on arbitrary bytes after `PAR1`: rows, rows with an error, or a
//! clear error, never a panic (the seed corpus holds real Parquet manifests).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = Vec::with_capacity(data.len() + 4);
    if !data.starts_with(b"PAR1") {
        bytes.extend_from_slice(b"PAR1");
    }
    bytes.extend_from_slice(data);
    let _ = mmcurate::plan::manifest::parse("m.parquet", bytes.into(), "url", "caption");
});
