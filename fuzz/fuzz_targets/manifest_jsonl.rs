//! The JSON Lines manifest reader on arbitrary bytes: rows or a clear error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Parquet starts with `PAR1`; everything else is read as JSON Lines.
    if data.starts_with(b"PAR1") {
        return;
    }
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Ok(rows) = mmcurate::plan::manifest::parse("m.jsonl", bytes, "url", "caption") {
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.row, i as u64);
        }
    }
});
