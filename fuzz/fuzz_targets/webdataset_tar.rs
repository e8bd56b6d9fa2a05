//! The WebDataset reader on arbitrary bytes as a shard: it may report errors, never panic, and
//! every sample it emits has an id under the shard and a key without dots or separators; an
//! error is reported on exactly one row, a sample refused for its size holds no bytes, and a
//! member that is not a regular file is a row of its own, with no bytes, naming the member.
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
            // A member that is not a regular file: not a sample, so not counted, and its error
            // is not the shard's. (A shard's own row has the shard's id; a truncated member's
            // error ends with why, in brackets.)
            let not_a_file = sample.id != "0:shard.tar"
                && sample.fetch_error.as_deref().is_some_and(|e| {
                    e.starts_with("file:///fuzz/shard.tar: member ")
                        && e.ends_with("not a regular file: not read")
                });
            if not_a_file {
                assert!(
                    sample.parts.is_empty() && sample.origin.tar_member.is_some(),
                    "{sample:?}"
                );
                return;
            }
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
