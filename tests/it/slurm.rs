//! A run on a real Slurm: the test starts a one-node cluster on 127.0.0.1 from Debian's
//! `munge`, `slurmctld` and `slurmd` (installed by scripts/test.sh), submits the quickstart
//! corpus with scripts/slurm/submit.sh as 4-task measure and write arrays chained by afterok
//! dependencies, and compares the shards and ledger byte for byte with a one-machine run. Every
//! daemon is stopped by the process id the test started, also when it fails (`Cluster`'s Drop).

use crate::common::*;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The phases submit.sh chains, in order.
const PHASES: [&str; 4] = ["measure", "decide", "write", "commit"];
const CONFIG: &str = "configs/quickstart.toml";
/// Work units of 4 files: the quickstart's 21 images are 6 units, spread over the 4 tasks.
const UNITS: &str = "run.unit_size=4";
/// Job states after which a job does nothing more (squeue's "completed" family).
const FINAL_STATES: [&str; 9] = [
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
];

/// A one-node Slurm cluster in a temporary folder: munged with its own key and socket,
/// slurmctld and slurmd in the foreground, each in its own session.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    /// (name, process) in start order; stopped in reverse.
    daemons: Vec<(&'static str, Child)>,
    /// Jobs submitted, cancelled on drop so no job step outlives the test.
    jobs: Vec<String>,
}

/// Panics, saying what to do, when this machine cannot run a Slurm node: CI runs as root on a
/// machine where scripts/test.sh installed the packages, so a missing piece fails the suite
/// instead of passing it in silence.
fn require_slurm() {
    let uid = Command::new("id").arg("-u").output().expect("id runs");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the Slurm test starts slurmd, which must run as root: run the suite as root (as CI does), \
         or leave this test out with `--skip slurm::`"
    );
    for tool in [
        "munged",
        "slurmctld",
        "slurmd",
        "sbatch",
        "scontrol",
        "sinfo",
        "scancel",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is not installed: run the tests with `bash scripts/test.sh`, which installs \
             Debian's slurmctld, slurmd, slurm-client and munge"
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn short_hostname() -> String {
    let out = Command::new("hostname")
        .arg("-s")
        .output()
        .expect("hostname runs");
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!name.is_empty(), "hostname -s printed nothing");
    name
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        // munged refuses a socket whose folders others cannot traverse.
        run_ok(Command::new("chmod").arg("755").arg(&d));
        for sub in ["spool", "state", "log"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        let key = d.join("munge.key");
        let mut key_bytes = vec![0u8; 1024];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut key_bytes))
            .expect("/dev/urandom gives a munge key");
        std::fs::write(&key, key_bytes).unwrap();
        run_ok(Command::new("chmod").arg("400").arg(&key));
        let socket = d.join("munge.socket");
        let host = short_hostname();
        let conf = d.join("slurm.conf");
        std::fs::write(&conf, slurm_conf(&d, &socket, &host)).unwrap();

        let mut cluster = Cluster {
            dir,
            conf,
            daemons: Vec::new(),
            jobs: Vec::new(),
        };
        cluster.spawn(
            "munged",
            &[
                "-F".to_string(),
                format!("--key-file={}", key.display()),
                format!("--socket={}", socket.display()),
                format!("--pid-file={}", d.join("munged.pid").display()),
                format!("--seed-file={}", d.join("munged.seed").display()),
                format!("--log-file={}", d.join("log/munged.log").display()),
            ],
        );
        cluster.wait_until("munged's socket", |_| socket.exists());
        let conf_arg = cluster.conf.display().to_string();
        cluster.spawn(
            "slurmctld",
            &["-D", "-c", "-i", "-f", &conf_arg].map(String::from),
        );
        cluster.spawn(
            "slurmd",
            &["-D", "-N", &host, "-f", &conf_arg].map(String::from),
        );
        cluster.wait_until("the node to be idle", |cluster| {
            cluster
                .slurm("sinfo", &["-h", "-o", "%T"])
                .is_some_and(|s| s.trim() == "idle")
        });
        cluster
    }

    /// Starts a daemon in the foreground under `setsid` (its own session, so a terminal's
    /// signals do not reach it). setsid execs in place, so the child's id is the daemon's.
    fn spawn(&mut self, name: &'static str, args: &[String]) {
        let log = self.dir.path().join(format!("log/{name}.out"));
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new("setsid")
            .arg(name)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        self.daemons.push((name, child));
    }

    /// Waits (at most 30 s) for `ready`, failing with the daemons' logs if a daemon exits.
    fn wait_until(&mut self, what: &str, ready: impl Fn(&Cluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(self) {
            let exited = self
                .daemons
                .iter_mut()
                .find_map(|(name, child)| Some((*name, child.try_wait().ok()??)));
            if let Some((name, status)) = exited {
                panic!("{name} exited ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "waited 30 s for {what}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a Slurm client command against this cluster; its stdout when it succeeds.
    fn slurm(&self, tool: &str, args: &[&str]) -> Option<String> {
        let out = Command::new(tool)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The state of every job (and array task) of `job`, from `scontrol show job`.
    fn job_states(&self, job: &str) -> Vec<String> {
        let text = self
            .slurm("scontrol", &["show", "job", "-o", job])
            .unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                line.split_whitespace()
                    .find_map(|field| field.strip_prefix("JobState="))
                    .map(String::from)
            })
            .collect()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for dir in ["log", "jobs-1", "jobs-2"] {
            let Ok(entries) = std::fs::read_dir(self.dir.path().join(dir)) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
            paths.sort();
            for path in paths {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out += &format!("--- {}\n", path.display());
                for line in tail.iter().rev() {
                    out += line;
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for job in &self.jobs {
            let _ = self.slurm("scancel", &[job.as_str()]);
        }
        for (name, child) in self.daemons.iter_mut().rev() {
            let pid = child.id().to_string();
            // sh's built-in kill: a minimal Debian has no procps, so no kill(1).
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -TERM {pid}")])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        eprintln!("{name} (pid {pid}) did not stop on SIGTERM: killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

/// slurm.conf for one node on 127.0.0.1 with every path inside `dir` (settings as checked on
/// Debian 12's Slurm 22.05). config_overrides keeps the node usable whatever its hardware;
/// kill_invalid_depend cancels the jobs after a failed one instead of leaving them pending.
fn slurm_conf(dir: &Path, munge_socket: &Path, host: &str) -> String {
    let d = dir.display();
    format!(
        "ClusterName=mmcurate-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={socket}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
DependencyParameters=kill_invalid_depend
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=1
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
",
        ctld_port = free_port(),
        slurmd_port = free_port(),
        socket = munge_socket.display(),
    )
}

fn run_ok(command: &mut Command) {
    let status = command.status().expect("command starts");
    assert!(status.success(), "{command:?}: {status}");
}

/// The folder holding the current version's files: the one `current.json` names when the
/// output is versioned (a `versions/…` folder), else the output folder itself.
fn current_version(output: &Path) -> PathBuf {
    let Ok(text) = std::fs::read_to_string(output.join("current.json")) else {
        return output.to_path_buf();
    };
    let pointer: serde_json::Value = serde_json::from_str(&text).expect("current.json is JSON");
    let mut strings = vec![&pointer];
    while let Some(value) = strings.pop() {
        match value {
            serde_json::Value::String(s) if s.starts_with("versions/") => {
                let candidate = output.join(s.trim_end_matches('/'));
                if candidate.is_dir() {
                    return candidate;
                }
            }
            serde_json::Value::Object(map) => strings.extend(map.values()),
            serde_json::Value::Array(items) => strings.extend(items),
            _ => {}
        }
    }
    panic!("current.json names no version folder: {text}");
}

/// Shards and ledger of the current version: relative path → bytes.
fn shards_and_ledger(output: &Path) -> Vec<(String, Vec<u8>)> {
    let version = current_version(output);
    let mut files = Vec::new();
    for sub in ["shards", "ledger"] {
        for (name, bytes) in tree(&version.join(sub)) {
            files.push((format!("{sub}/{name}"), bytes));
        }
    }
    files
}

impl Cluster {
    /// Submits the quickstart with scripts/slurm/submit.sh as 4-task arrays writing to
    /// `output`, job logs in `log_dir`, `env` added to the jobs' environment (sbatch exports
    /// it); returns (phase, job id) per job.
    fn submit(
        &mut self,
        output: &Path,
        log_dir: &Path,
        env: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut command = Command::new("bash");
        command
            .current_dir(root())
            .arg("scripts/slurm/submit.sh")
            .args([CONFIG, "--tasks", "4", "--cpus-per-task", "1"])
            .arg("--log-dir")
            .arg(log_dir)
            .arg("--mmcurate")
            .arg(env!("CARGO_BIN_EXE_mmcurate"))
            .arg("--")
            .args(["--set", UNITS, "--set"])
            .arg(format!("run.output={}", output.display()))
            .env("SLURM_CONF", &self.conf)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            command.env(k, v);
        }
        let submit = command.output().expect("bash runs submit.sh");
        assert!(
            submit.status.success(),
            "submit.sh: {}\n{}",
            String::from_utf8_lossy(&submit.stderr),
            self.logs()
        );
        let jobs: Vec<(String, String)> = String::from_utf8_lossy(&submit.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(phase, id)| (phase.to_string(), id.to_string()))
            .collect();
        let phases: Vec<&str> = jobs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(phases, PHASES, "submit.sh prints `PHASE JOBID` per job");
        self.jobs.extend(jobs.iter().map(|(_, id)| id.clone()));
        jobs
    }

    /// Waits until every job of `jobs` has ended and returns the final state of each of its
    /// tasks. (`sbatch --wait` returns 0 for a job cancelled by a failed dependency, so the
    /// test reads JobState.)
    fn wait_for(&self, jobs: &[(String, String)]) -> Vec<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut ended = Vec::new();
        for (phase, id) in jobs {
            loop {
                let states = self.job_states(id);
                if !states.is_empty() && states.iter().all(|s| FINAL_STATES.contains(&s.as_str())) {
                    ended.push(states);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{phase} job {id} still {states:?} after 300 s:\n{}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        ended
    }
}

/// What a task's log says it reused: the sum of "N already measured" over `log_dir`'s measure
/// logs.
fn units_reused(log_dir: &Path) -> u64 {
    let mut reused = 0;
    for entry in std::fs::read_dir(log_dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("measure-")
        {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if let Some((before, _)) = line.split_once(" already measured") {
                let n = before.rsplit(' ').next().unwrap_or_default();
                reused += n.parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
            }
        }
    }
    reused
}

#[test]
fn quickstart_as_four_task_slurm_arrays_matches_a_one_machine_run() {
    require_slurm();
    let mut cluster = Cluster::start();
    let work = cluster.dir.path().to_path_buf();
    let slurm_out = work.join("out-slurm");
    let one_out = work.join("out-one");

    // First attempt: every measure task dies after committing its first unit (as under
    // kill -9), so the array fails and Slurm cancels decide, write and commit.
    let failing = cluster.submit(
        &slurm_out,
        &work.join("jobs-1"),
        &[("MMCURATE_ABORT_AFTER", "measure:1")],
    );

    // The reference, on one machine, while the cluster works.
    ok(&mmcurate(&[
        "run",
        CONFIG,
        "--set",
        UNITS,
        "--set",
        &format!("run.output={}", one_out.display()),
    ]));

    let states = cluster.wait_for(&failing);
    assert!(
        states[0].iter().any(|s| s == "FAILED"),
        "measure tasks failed: {states:?}\n{}",
        cluster.logs()
    );
    for (phase, ended) in PHASES.iter().zip(&states).skip(1) {
        assert_eq!(
            ended,
            &["CANCELLED"],
            "{phase} is cancelled by its failed dependency"
        );
    }

    // Submitted again, the same command resumes: every job completes, reusing finished units.
    let jobs = cluster.submit(&slurm_out, &work.join("jobs-2"), &[]);
    let states = cluster.wait_for(&jobs);
    for ((phase, id), ended) in jobs.iter().zip(&states) {
        let tasks = if phase == "measure" || phase == "write" {
            4
        } else {
            1
        };
        assert_eq!(
            ended,
            &vec!["COMPLETED".to_string(); tasks],
            "{phase} job {id} did not complete:\n{}",
            cluster.logs()
        );
    }
    let reused = units_reused(&work.join("jobs-2"));
    assert!(
        reused >= 1,
        "the resubmitted measure tasks reused the units the failed ones finished\n{}",
        cluster.logs()
    );

    let from_slurm = shards_and_ledger(&slurm_out);
    let from_one = shards_and_ledger(&one_out);
    assert!(
        from_one.iter().any(|(n, _)| n.starts_with("shards/"))
            && from_one.iter().any(|(n, _)| n.starts_with("ledger/")),
        "the one-machine run wrote shards and a ledger: {:?}",
        from_one.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let names =
        |files: &[(String, Vec<u8>)]| files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&from_slurm), names(&from_one), "the same files");
    for ((name, a), (_, b)) in from_slurm.iter().zip(&from_one) {
        assert!(
            a == b,
            "{name} differs between the Slurm run and the one-machine run"
        );
    }
    // The quickstart keeps 10 of its 21 images (README): the split changed nothing.
    let rows = ledger_rows(&current_version(&slurm_out));
    assert_eq!(rows.len(), 21, "one ledger row per input sample");
    let kept = rows.iter().filter(|row| row["status"] == "kept").count();
    assert_eq!(kept, 10);
}
