//! The keys that name state: the measure key, a digest of exactly the settings that can change
//! what measuring produces (inputs, fetching, the per-sample filters that decide what is
//! measured and staged, video and audio settings, limits, the JPEG decoder, the unit size,
//! the tool and measure versions), and the decide key, a digest of the measure key, the work
//! units' ids (which change with the inputs' names, sizes and etags) and every setting of the
//! later phases. A rerun that changes only dedup, alignment thresholds, models
//! or output settings reuses every unit; one that changes a measuring setting redoes them.

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::measure::MEASURE_VERSION;

/// Settings that cannot change what a unit's measuring produces, as JSON pointers into the
/// resolved config: left out of the measure key. Everything else is in it, so a setting added
/// later counts as a measuring one until it is listed here.
const NOT_MEASURING: &[&str] = &[
    "/run/name",
    "/run/output",
    "/run/threads",
    "/run/staging_dir",
    "/run/object_store",
    "/dedup",
    "/output",
    // CLIP runs in the decide phase, on the survivors of dedup (see `pipeline::phases`).
    "/models",
    "/filters/alignment",
    "/video/clip_score",
];

/// The measure key: 16 hex digits.
pub fn measure_key(config: &Config) -> String {
    let (mut value, _) = config.resolved_json_and_sha256();
    for pointer in NOT_MEASURING {
        remove(&mut value, pointer);
    }
    digest(&[
        crate::VERSION,
        MEASURE_VERSION,
        &serde_json::to_string(&value).unwrap_or_default(),
    ])
}

/// The decide key: 16 hex digits over the measure key, the ids of the run's work units and
/// every setting but `[run]`'s.
pub fn decide_key(config: &Config, measure_key: &str, unit_ids: &[String]) -> String {
    let (mut value, _) = config.resolved_json_and_sha256();
    remove(&mut value, "/run");
    digest(&[
        measure_key,
        &unit_ids.join(","),
        &serde_json::to_string(&value).unwrap_or_default(),
    ])
}

fn digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())[..16].to_string()
}

/// Removes the value at a JSON pointer, if there is one.
fn remove(value: &mut serde_json::Value, pointer: &str) {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    let parent = if parent.is_empty() {
        Some(value)
    } else {
        value.pointer_mut(parent)
    };
    if let Some(serde_json::Value::Object(map)) = parent {
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[&str]) -> Config {
        let text = "[run]\noutput = \"/tmp/out\"\n[[inputs]]\nuri = \"/tmp/in\"\n";
        let sets: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Config::from_toml_str(text, "test", &sets).unwrap()
    }

    #[test]
    fn only_measuring_settings_change_the_measure_key() {
        let base = measure_key(&config(&[]));
        assert_eq!(base.len(), 16);
        for unchanged in [
            "run.threads=3",
            "dedup.phash_max_distance=3",
            "output.max_samples_per_shard=7",
            "dedup.exact=false",
            "run.name=\"other\"",
        ] {
            assert_eq!(measure_key(&config(&[unchanged])), base, "{unchanged}");
        }
        for changed in [
            "filters.image.min_side=300",
            "run.unit_size=5",
            "inputs.0.uri=\"/tmp/other\"",
            "run.gpu_jpeg_decode=true",
        ] {
            assert_ne!(measure_key(&config(&[changed])), base, "{changed}");
        }
    }

    #[test]
    fn the_decide_key_follows_decide_settings_but_not_run_settings() {
        let c = config(&[]);
        let mk = measure_key(&c);
        let units = vec!["000000-aa".to_string(), "000001-bb".to_string()];
        let base = decide_key(&c, &mk, &units);
        assert_eq!(decide_key(&config(&["run.threads=5"]), &mk, &units), base);
        assert_ne!(
            decide_key(&config(&["dedup.phash_max_distance=3"]), &mk, &units),
            base
        );
        assert_ne!(decide_key(&c, "0123456789abcdef", &units), base);
        // An input that changed changes its unit's id, and with it the decisions.
        assert_ne!(decide_key(&c, &mk, &units[..1]), base);
    }
}
