//! The config parser on arbitrary text: the first line is a `--set` override, the rest the
//! TOML file. A config or a clear error, never a panic; a config that loads is valid.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let overrides: Vec<String> = if first.is_empty() {
        Vec::new()
    } else {
        vec![first.to_string()]
    };
    if let Ok(config) = mmcurate::config::Config::from_toml_str(rest, "fuzz.toml", &overrides) {
        config.validate().expect("a loaded config is valid");
    }
});
