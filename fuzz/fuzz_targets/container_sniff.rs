//! The video/audio container sniffer and the completeness check on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(container) = mmcurate::decode::sniff_av(data) {
        let _ = container.extension(true);
        let _ = mmcurate::decode::check_container_complete(container, data);
    }
    // The completeness check also sees bytes the sniffer did not recognise.
    for container in [
        mmcurate::decode::AvContainer::Wav,
        mmcurate::decode::AvContainer::IsoMedia,
    ] {
        let _ = mmcurate::decode::check_container_complete(container, data);
    }
});
