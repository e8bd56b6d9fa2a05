//! The image header probe on arbitrary bytes: a format and a non-zero size, or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = mmcurate::decode::probe(data) {
        assert!(info.width > 0 && info.height > 0);
    }
});
