//! `mmcurate reenrich OUTPUT --set models.clip.path=NEW`: a new version of an output with its
//! model outputs made again by other model settings. It takes the config recorded in the
//! current version's manifest, applies the overrides (only `models.*`, and `run.threads` /
//! `run.device`, which change no result), and runs the phases over the output's state: every
//! work unit's measurements and staged copies are reused (nothing is fetched or decoded again),
//! the decide phase embeds the kept samples with the new model (outputs the checkpoint made
//! before come from the model-output cache) and decides semantic dedup and alignment again,
//! and the commit writes `diff.parquet` and the lineage into the manifest. Orchestration only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::backends::Backends;
use super::phases::{self, Job, Slice};
use super::progress::Progress;
use super::{RunError, RunSummary};
use crate::config::{Config, ConfigError};
use crate::store::{Location, Stores};
use crate::write::diff::{diff, write_diff, Change};
use crate::write::ledger_read::{ledger_files, version_ledger};
use crate::write::manifest::{ChangedSetting, MadeBy, Reenrichment, RunManifest};
use crate::write::version::{read_current, read_manifest, OutputVersion};
use crate::write::{self, WriteError};

/// Config keys `reenrich` may change: the models, and settings that change no result.
const CHANGEABLE: &[&str] = &["models.", "run.threads", "run.device"];

#[derive(Debug, thiserror::Error)]
pub enum ReenrichError {
    /// The command cannot start: a bad override, or an output without a current version.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Run(#[from] RunError),
}

impl From<WriteError> for ReenrichError {
    fn from(e: WriteError) -> ReenrichError {
        ReenrichError::Run(RunError::Write(e))
    }
}

/// What the current version of `output` was made with, and the config to make the next one.
pub struct ReenrichPlan {
    pub parent_version: u64,
    pub parent_folder: String,
    pub parent_manifest: serde_json::Value,
    pub config: Config,
    pub changed: BTreeMap<String, ChangedSetting>,
}

/// Reads the current version's config and applies `overrides` to it.
pub fn plan_reenrich(output: &str, overrides: &[String]) -> Result<ReenrichPlan, ReenrichError> {
    for arg in overrides {
        let key = arg.split_once('=').map_or(arg.as_str(), |(k, _)| k).trim();
        if !CHANGEABLE
            .iter()
            .any(|allowed| key == *allowed || (allowed.ends_with('.') && key.starts_with(allowed)))
        {
            return Err(ReenrichError::Usage(format!(
                "--set {arg}: reenrich changes only the models (`models.*`) and `run.threads` or \
                 `run.device`; a change to `{key}` changes what is measured or decided without \
                 a model: make a new run with `mmcurate run`"
            )));
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let root = Stores::new()
        .open(output)
        .map_err(|e| ReenrichError::Run(e.into()))?;
    let pointer = runtime.block_on(read_current(&root))?.ok_or_else(|| {
        ReenrichError::Usage(format!(
            "{}: no committed version (no current.json) to re-enrich; run `mmcurate run` first",
            root.uri()
        ))
    })?;
    let manifest = runtime
        .block_on(read_manifest(&root.child(&pointer.folder)))
        .ok_or_else(|| {
            ReenrichError::Usage(format!(
                "{}: the manifest of version {} cannot be read",
                root.child(&pointer.folder).uri(),
                pointer.version
            ))
        })?;
    let recorded = manifest["config"].clone();
    let config = config_with_overrides(&recorded, output, overrides, pointer.version)?;
    let (now, _) = config.resolved_json_and_sha256();
    let mut changed = BTreeMap::new();
    changed_settings("", &recorded, &now, &mut changed);
    changed.retain(|key, _| key != "run.output");
    if !changed.keys().any(|k| k.starts_with("models.")) {
        return Err(ReenrichError::Usage(format!(
            "the overrides change no model setting of version {}'s config: nothing to \
             re-enrich (give e.g. --set models.clip.path=NEW_FOLDER)",
            pointer.version
        )));
    }
    Ok(ReenrichPlan {
        parent_version: pointer.version,
        parent_folder: pointer.folder,
        parent_manifest: manifest,
        config,
        changed,
    })
}

/// The recorded (resolved) config as TOML with the overrides applied. `path` and `hf` are
/// alternatives: setting one removes the other (and `revision`, which goes with `hf`).
fn config_with_overrides(
    recorded: &serde_json::Value,
    output: &str,
    overrides: &[String],
    version: u64,
) -> Result<Config, ReenrichError> {
    let mut value = recorded.clone();
    drop_nulls(&mut value);
    if !value.is_object() || value["run"].is_null() {
        return Err(ReenrichError::Usage(format!(
            "version {version}'s manifest records no config"
        )));
    }
    value["run"]["output"] = serde_json::Value::String(output.to_string());
    let keys: Vec<&str> = overrides
        .iter()
        .filter_map(|a| a.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    if let Some(clip) = value
        .pointer_mut("/models/clip")
        .and_then(|c| c.as_object_mut())
    {
        if keys.contains(&"models.clip.path") {
            clip.remove("hf");
            clip.remove("revision");
        }
        if keys.contains(&"models.clip.hf") {
            clip.remove("path");
        }
    }
    let text = toml::to_string(&value).map_err(|e| {
        ReenrichError::Usage(format!(
            "version {version}'s recorded config cannot be read back: {e}"
        ))
    })?;
    Ok(Config::from_toml_str(
        &text,
        &format!("the config of version {version}"),
        overrides,
    )?)
}

fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Every leaf that differs between `old` and `new`, by dotted key.
fn changed_settings(
    prefix: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut BTreeMap<String, ChangedSetting>,
) {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let null = Value::Null;
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                changed_settings(
                    &path,
                    a.get(key).unwrap_or(&null),
                    b.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        // A table that appears or disappears (`[models.clip]`) is compared key by key too.
        (Value::Object(_), Value::Null) => {
            changed_settings(prefix, old, &Value::Object(Default::default()), out)
        }
        (Value::Null, Value::Object(_)) => {
            changed_settings(prefix, &Value::Object(Default::default()), new, out)
        }
        _ if old != new => {
            out.insert(
                prefix.to_string(),
                ChangedSetting {
                    old: old.clone(),
                    new: new.clone(),
                },
            );
        }
        _ => {}
    }
}

/// Makes the new version: measure (every unit reused), decide, write, commit with the diff and
/// the lineage.
pub fn reenrich(plan: &ReenrichPlan, progress: &Progress) -> Result<RunSummary, ReenrichError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let backends = Backends::set_up(&plan.config)?;
    let config = backends.resolve_video_decoding(&plan.config);
    let config = &config;
    let mut job = Job::prepare(config)?;
    let root = job
        .stores
        .open_for_output(&config.run.output)
        .map_err(RunError::from)?;
    let opened = OutputVersion::open(root.clone(), &config.output, job.runtime.handle())?;
    let before: BTreeSet<String> = job
        .runtime
        .block_on(job.measure.finished_units())
        .map_err(RunError::from)?;
    let missing = job.units.iter().filter(|u| !before.contains(&u.id)).count();
    if missing > 0 {
        tracing::warn!(
            "reenrich: {missing} of {} work unit(s) are not in {} (the inputs changed since \
             version {}, or the state was removed): they are fetched and measured again",
            job.units.len(),
            job.measure.uri(),
            plan.parent_version
        );
    }
    let measured = phases::measure(&mut job, &backends, Slice::WHOLE, progress)?;
    let mut samples_decoded = 0u64;
    for unit in job.units.iter().filter(|u| !before.contains(&u.id)) {
        let state = job
            .runtime
            .block_on(job.measure.read_unit(&unit.id))
            .map_err(RunError::from)?;
        samples_decoded += state.records.len() as u64;
    }
    let decisions_existed = phases::committed_decisions(&job, "reenrich").is_ok();
    let decisions = phases::decide(
        &mut job,
        &backends,
        measured.video_decoders.clone(),
        progress,
        false,
        &opened,
    )?;
    let output = OutputVersion::at(root.clone(), decisions.version, decisions.parent_version)
        .keeping(config.output.keep_versions);
    phases::write(&mut job, &decisions, &output.dir, Slice::WHOLE, progress)?;

    let committing = Instant::now();
    let shards = phases::gather_shards(&job, &decisions)?;
    phases::copy_embeddings(&job, &decisions.embeddings, &output.dir)?;
    let io = job.runtime.handle();
    let written = write::Written {
        shards,
        ledger: write::write_ledger(&output.dir, &decisions.records, io)?,
    };
    let old_rows = io
        .block_on(version_ledger(
            &root.child(&plan.parent_folder),
            &plan.parent_manifest,
        ))
        .map_err(|e| parent_unreadable(&root, e.to_string()))?;
    let new_names: Vec<String> = written.ledger.iter().map(|f| f.name.clone()).collect();
    let new_rows = io
        .block_on(ledger_files(&output.dir, &new_names))
        .map_err(|e| parent_unreadable(&root, e.to_string()))?;
    let changes = diff(&old_rows, &new_rows);
    let diff_file = write_diff(&output.dir, &changes, io)?;
    job.clock.add("write", committing);
    let mut stage_seconds = decisions.stage_seconds.clone();
    stage_seconds.extend(job.clock.seconds.clone());
    let units = Some(phases::unit_counts(&job, &measured));
    let mut manifest = RunManifest::assemble(super::committed_facts(
        super::CommittedRun {
            config,
            job: &job,
            decisions: &decisions,
            output: &output,
        },
        written,
        stage_seconds,
        started_at,
        units,
    ));
    // Decisions reused from `state/` (these exact settings were decided before) ran no model.
    let outputs = match (decisions_existed, decisions.model_outputs) {
        (false, Some(counts)) => counts,
        _ => Default::default(),
    };
    let count = |change: Change| changes.iter().filter(|c| c.change == change).count() as u64;
    manifest.made_by = MadeBy::Reenrich;
    manifest.diff = Some(diff_file);
    manifest.reenrich = Some(Reenrichment {
        changed: plan.changed.clone(),
        old_weights_sha256: plan.parent_manifest["models"]["clip"]["weights_sha256"]
            .as_str()
            .map(str::to_string),
        new_weights_sha256: decisions.clip.as_ref().map(|c| c.weights_sha256.clone()),
        samples_decoded,
        measurements_reused: decisions.records.len() as u64 - samples_decoded,
        embeddings_computed: outputs.computed,
        embeddings_from_cache: outputs.from_cache,
        entered: count(Change::Entered),
        left: count(Change::Left),
    });
    write::finish_run(&output, &manifest, &decisions.records, io)?;
    drop(opened);
    Ok(RunSummary {
        manifest,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn parent_unreadable(root: &Location, message: String) -> ReenrichError {
    ReenrichError::Run(RunError::Write(WriteError::Version {
        uri: root.uri(),
        message: format!("cannot read a ledger for the diff: {message}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_settings_are_listed_by_dotted_key() {
        let old =
            json!({"models": {"clip": {"path": "/a", "batch_size": 32}}, "run": {"threads": 2}});
        let new =
            json!({"models": {"clip": {"path": "/b", "batch_size": 32}}, "run": {"threads": 2}});
        let mut out = BTreeMap::new();
        changed_settings("", &old, &new, &mut out);
        assert_eq!(out.keys().collect::<Vec<_>>(), ["models.clip.path"]);
        assert_eq!(out["models.clip.path"].old, json!("/a"));
        assert_eq!(out["models.clip.path"].new, json!("/b"));
        let mut out = BTreeMap::new();
        changed_settings("", &json!({"models": {"clip": null}}), &new, &mut out);
        assert_eq!(
            out.keys().collect::<Vec<_>>(),
            ["models.clip.batch_size", "models.clip.path", "run.threads"]
        );
    }

    #[test]
    fn only_model_settings_may_change() {
        for bad in [
            "dedup.exact=false",
            "filters.image.min_side=3",
            "run.output=/x",
        ] {
            let error = plan_reenrich("/nonexistent/output", &[bad.to_string()])
                .err()
                .expect("refused");
            let message = error.to_string();
            assert!(
                message.contains("reenrich changes only the models"),
                "{message}"
            );
        }
    }

    #[test]
    fn the_recorded_config_reads_back_with_the_model_swapped() {
        let text = "[run]\noutput = \"/tmp/out\"\n[[inputs]]\nuri = \"/tmp/in\"\n\
                    [models.clip]\nhf = \"openai/clip-vit-base-patch32\"\nrevision = \"main\"\n";
        let config = Config::from_toml_str(text, "test", &[]).unwrap();
        let (recorded, _) = config.resolved_json_and_sha256();
        let sets = vec!["models.clip.path=/models/new".to_string()];
        let again = config_with_overrides(&recorded, "/tmp/moved", &sets, 3).unwrap();
        let clip = again.models.clip.as_ref().unwrap();
        assert_eq!(clip.path.as_deref(), Some("/models/new"));
        assert_eq!((clip.hf.as_deref(), clip.revision.as_deref()), (None, None));
        assert_eq!(again.run.output, "/tmp/moved");
        assert_eq!(again.inputs[0].uri, "/tmp/in");
        assert_eq!(
            crate::state::keys::measure_key(&again),
            crate::state::keys::measure_key(&config),
            "the measured units are the same"
        );
    }
}
