//! The WebDataset reader on arbitrary bytes as a shard: it may report errors, never panic, and
//! every sample it emits has an id under the shard and a key without dots or separators, and
//! an error is reported on exactly one row.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut emitted = 0u64;
    let mut failed = 0u64;
    let result = mmcurate::source::webdataset::read_tar(
        std::io::Cursor::new(data),
        "file:///fuzz/shard.tar",
        "shard.tar",
        0,
        |sample| {
            assert!(sample.id.starts_with("0:shard.tar"), "{}", sample.id);
            assert!(!sample.key.is_empty() && !sample.key.contains(['.', '/']), "{}", sample.key);
            emitted += 1;
            failed += sample.fetch_error.is_some() as u64;
        },
    );
    match result {
        Ok(count) => assert_eq!((count, failed), (emitted, 0)),
        // Each error is on exactly one row: the sample it cut short, or the shard itself.
        Err(_) => assert_eq!(failed, 1),
    }
});
