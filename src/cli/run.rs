//! `mmcurate run`'s phase flags: which phase (`--phase`), and which slice of the work
//! (`--num-shards N --shard-index I`, by default from a Slurm job array's or a Kubernetes
//! Indexed Job's environment). Resolves and checks them; running is `pipeline::run_phase`'s.

use crate::pipeline::{Phase, Slice};

/// `--phase`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PhaseArg {
    /// Every phase, in this process.
    All,
    /// Decode, measure and stage a slice of the work units.
    Measure,
    /// Run-wide dedup, CLIP, thresholds and the shard layout, over every unit's state (sliced:
    /// one partition task of the semantic search; unsliced, after them: their pairs merged).
    Decide,
    /// Write a slice of the planned shards from the staged candidates.
    Write,
    /// Write the ledger, manifest and report, and commit the run.
    Commit,
}

impl PhaseArg {
    pub fn phase(self) -> Phase {
        match self {
            PhaseArg::All => Phase::All,
            PhaseArg::Measure => Phase::Measure,
            PhaseArg::Decide => Phase::Decide,
            PhaseArg::Write => Phase::Write,
            PhaseArg::Commit => Phase::Commit,
        }
    }
}

/// The slice a phase works on: `--num-shards`/`--shard-index` when given, else
/// `SLURM_ARRAY_TASK_COUNT` and `SLURM_ARRAY_TASK_ID` (less `SLURM_ARRAY_TASK_MIN`, so
/// `--array=1-4` works too), else `JOB_COMPLETION_INDEX` with `--num-shards`. `measure` and
/// `write` are sliced by units and shards, `decide` by the partitions of its semantic search
/// (a slice is a partition task; the unsliced decide merges them); `all` and `commit` take the
/// whole run and refuse slice flags.
pub fn resolve_slice(
    phase: Phase,
    num_shards: Option<usize>,
    shard_index: Option<usize>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Slice, String> {
    if !matches!(phase, Phase::Measure | Phase::Decide | Phase::Write) {
        if num_shards.is_some_and(|n| n > 1) || shard_index.is_some_and(|i| i > 0) {
            return Err(format!(
                "--num-shards and --shard-index slice the measure, decide and write phases only; the {} phase takes the whole run",
                phase.as_str()
            ));
        }
        return Ok(Slice::WHOLE);
    }
    let number = |name: &str| -> Result<Option<usize>, String> {
        match env(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("{name}={v:?} is not a whole number")),
        }
    };
    let slurm_count = number("SLURM_ARRAY_TASK_COUNT")?;
    let count = num_shards.or(slurm_count).unwrap_or(1);
    let index = match shard_index {
        Some(i) => i,
        None => match (number("SLURM_ARRAY_TASK_ID")?, slurm_count) {
            (Some(id), Some(_)) if num_shards.is_none() || num_shards == slurm_count => {
                let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                id.checked_sub(min).ok_or_else(|| {
                    format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}")
                })?
            }
            _ => match number("JOB_COMPLETION_INDEX")? {
                Some(i) if num_shards.is_some() => i,
                Some(_) => {
                    return Err(
                        "JOB_COMPLETION_INDEX is set but --num-shards is not: give the Indexed Job's completions as --num-shards".to_string(),
                    )
                }
                None if count == 1 => 0,
                None => {
                    return Err(format!(
                        "--num-shards {count} needs --shard-index (or SLURM_ARRAY_TASK_ID, or JOB_COMPLETION_INDEX)"
                    ))
                }
            },
        },
    };
    if count == 0 {
        return Err("--num-shards must be at least 1".to_string());
    }
    if index >= count {
        return Err(format!(
            "--shard-index {index} is out of range for --num-shards {count} (0 to {})",
            count - 1
        ));
    }
    Ok(Slice { count, index })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_win_then_slurm_then_indexed_jobs() {
        let m = Phase::Measure;
        assert_eq!(resolve_slice(m, None, None, env(&[])), Ok(Slice::WHOLE));
        assert_eq!(
            resolve_slice(m, Some(3), Some(2), env(&[("SLURM_ARRAY_TASK_ID", "0")])),
            Ok(Slice { count: 3, index: 2 })
        );
        let slurm = [
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(
            resolve_slice(Phase::Write, None, None, env(&slurm)),
            Ok(Slice { count: 4, index: 2 })
        );
        assert_eq!(
            resolve_slice(m, Some(5), None, env(&[("JOB_COMPLETION_INDEX", "4")])),
            Ok(Slice { count: 5, index: 4 })
        );
    }

    #[test]
    fn bad_slices_say_what_is_wrong() {
        let m = Phase::Measure;
        let e = resolve_slice(m, Some(3), Some(3), env(&[])).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = resolve_slice(m, Some(3), None, env(&[])).unwrap_err();
        assert!(e.contains("needs --shard-index"), "{e}");
        let e = resolve_slice(m, None, None, env(&[("JOB_COMPLETION_INDEX", "1")])).unwrap_err();
        assert!(e.contains("--num-shards is not"), "{e}");
        let e = resolve_slice(m, Some(0), Some(0), env(&[])).unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        let e = resolve_slice(Phase::Commit, Some(2), Some(1), env(&[])).unwrap_err();
        assert!(e.contains("commit phase takes the whole run"), "{e}");
        let e = resolve_slice(Phase::All, Some(2), Some(0), env(&[])).unwrap_err();
        assert!(e.contains("all phase takes the whole run"), "{e}");
        // A Slurm array slices the decide phase into partition tasks, and not the commit.
        let slurm = [
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_ID", "2"),
        ];
        assert_eq!(
            resolve_slice(Phase::Decide, None, None, env(&slurm)),
            Ok(Slice { count: 4, index: 2 })
        );
        assert_eq!(
            resolve_slice(
                Phase::Decide,
                Some(3),
                None,
                env(&[("JOB_COMPLETION_INDEX", "1")])
            ),
            Ok(Slice { count: 3, index: 1 })
        );
        assert_eq!(
            resolve_slice(Phase::Commit, None, None, env(&slurm)),
            Ok(Slice::WHOLE)
        );
        let e = resolve_slice(m, None, None, env(&[("SLURM_ARRAY_TASK_COUNT", "x")])).unwrap_err();
        assert!(e.contains("not a whole number"), "{e}");
    }
}
