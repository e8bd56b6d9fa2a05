//! The Parquet manifest reader on arbitrary bytes after `PAR1`: rows, rows with an error, or a
//! clear error, never a panic that escapes (the seed corpus holds real Parquet manifests).
//!
//! Its finds in the `parquet` crate (57.3), each a file under tests/fixtures/fuzz/ and a test:
//! a 34 GB allocation from a footer's list header (refused by `plan::parquet_footer`), a page
//! header whose lists of booleans kept the crate's Thrift skip looping for hours (refused by
//! `plan::parquet_pages`), and a panic in its footer decoder, which `parse` contains.
//!
//! The `parquet` crate itself panics on some malformed footers (an `unwrap` in its Thrift
//! decoder: tests/fixtures/fuzz/manifest_parquet-thrift-unwrap.parquet, found by this target);
//! `plan::manifest::parse` contains that panic and makes it the manifest's unreadable row.
//! libFuzzer's panic hook would abort on the contained panic too, so it is replaced once by a
//! silent one: a panic that escapes `parse` still reaches libfuzzer-sys's `catch_unwind`,
//! which aborts, and that is a crash.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|_| {}));
    });
    let mut bytes = Vec::with_capacity(data.len() + 4);
    if !data.starts_with(b"PAR1") {
        bytes.extend_from_slice(b"PAR1");
    }
    bytes.extend_from_slice(data);
    let rows = mmcurate::plan::manifest::parse("m.parquet", bytes.into(), "url", "caption");
    if let Ok(rows) = rows {
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.row, i as u64);
        }
    }
});
