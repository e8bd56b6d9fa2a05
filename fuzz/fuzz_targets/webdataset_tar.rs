//! The WebDataset reader on arbitrary bytes as a shard: it may report errors, never panic, and
//! every sample it emits has an id under the shard and a key without dots or separators; an
//! error is reported on exactly one row, and a sample refused for its size holds no bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mmcurate::source::{ReadLimits, Refusal};

fuzz_target!(|data: &[u8]| {
    let mut emitted = 0u64;
    let mut failed = 0u64;
    // Small limits, so that the fuzzer reaches the refusals with small inputs.
    let limits = ReadLimits {
        max_part_bytes: 4096,
        max_sample_bytes: 8192,
    };
    let result = mmcurate::source::webdataset::read_tar(
        std::io::Cursor::new(data),
        "file:///fuzz/shard.tar",
        "shard.tar",
        0,
        limits,
        |sample| {
            assert!(sample.id.starts_with("0:shard.tar"), "{}", sample.id);
            assert!(
                !sample.key.is_empty() && !sample.key.contains(['.', '/']),
                "{}",
                sample.key
            );
            let bytes: usize = sample.parts.iter().map(|p| p.bytes.len()).sum();
            assert!(
                bytes as u64 <= limits.max_sample_bytes,
                "{bytes} bytes read"
            );
            emitted += 1;
            match sample.refused {
                Some(Refusal::TooLarge) => assert!(sample.parts.is_empty()),
                Some(other) => panic!("a shard member refused as {other:?}"),
                None => failed += sample.fetch_error.is_some() as u64,
            }
        },
    );
    match result {
        Ok(count) => assert_eq!((count, failed), (emitted, 0)),
        // Each error is on exactly one row: the sample it cut short, or the shard itself.
        Err(_) => assert_eq!(failed, 1),
    }
});
