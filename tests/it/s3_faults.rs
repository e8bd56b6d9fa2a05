//! S3 under faults: runs against moto behind tests/python/fault_proxy.py, which resets
//! connections, answers 500 and 503, trickles and cuts bodies and goes away for a while. Reads
//! and writes retry and give the same bytes as a clean run, or fail saying what failed; no
//! partial object appears at a final name, abandoned multipart uploads are aborted, the
//! secret key appears in no log line or output file, and the private staging folder in the
//! temp folder is gone after every run, failed or not.

use crate::common::*;
use crate::s3::{Moto, BUCKET};
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A secret key no code path has any reason to print.
const SECRET: &str = "mmcurateTESTsecret9f3b1c7e2d";

/// The fault proxy on a free local port in front of moto, killed on drop.
struct FaultProxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl FaultProxy {
    fn start(upstream: u16, rules: serde_json::Value, log: &Path) -> FaultProxy {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python())
            .arg(root().join("tests/python/fault_proxy.py"))
            .args([
                port.to_string(),
                upstream.to_string(),
                rules.to_string(),
                log.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "fault_proxy.py did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The probe connection above is logged by nobody (it sends no request); start afresh.
        FaultProxy {
            child,
            port,
            log: log.to_path_buf(),
        }
    }

    /// (request line, fault) of every request the proxy saw.
    fn requests(&self) -> Vec<(Option<String>, Option<String>)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                (
                    v["request"].as_str().map(str::to_string),
                    v["fault"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    fn faults(&self, fault: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(_, f)| f.as_deref() == Some(fault))
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the quickstart config with `sets`, its S3 endpoint at `port` and the distinctive secret.
/// The system temp folder (where S3 runs stage) is a fresh folder, which must be empty again
/// when the run ends, whether it succeeded or failed.
fn run_through(port: u16, sets: &[String], log_level: &str) -> std::process::Output {
    let endpoint = format!("http://127.0.0.1:{port}");
    let temp = tempfile::tempdir().unwrap();
    let temp_path = temp.path().to_str().unwrap().to_string();
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_REGION", "us-east-1"),
        ("RUST_LOG", log_level),
        ("TMPDIR", temp_path.as_str()),
    ];
    let mut args = vec!["run", "configs/quickstart.toml"];
    for set in sets {
        args.push("--set");
        args.push(set);
    }
    let output = mmcurate_with_env(&args, &env);
    let left: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "the run ({}) left {left:?} in its temp folder",
        output.status
    );
    output
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every object under `prefix`, name relative to it → bytes.
fn download(store: &impl ObjectStore, prefix: &str) -> Vec<(String, Vec<u8>)> {
    runtime().block_on(async {
        let listed: Vec<_> = store
            .list(Some(&ObjPath::from(prefix)))
            .try_collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for object in listed {
            let bytes = store
                .get(&object.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let name = object.location.to_string();
            out.push((name[prefix.len() + 1..].to_string(), bytes.to_vec()));
        }
        out.sort();
        out
    })
}

fn upload_quickstart_images(store: &impl ObjectStore, prefix: &str) {
    runtime().block_on(async {
        for entry in std::fs::read_dir(root().join("examples/quickstart/images")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            store
                .put(
                    &ObjPath::from(format!("{prefix}/{name}")),
                    PutPayload::from(read(&path)),
                )
                .await
                .unwrap();
        }
    });
}

/// The multipart uploads moto still holds in the bucket (`GET /bucket?uploads`).
fn open_multipart_uploads(moto: &Moto) -> usize {
    let mut stream = TcpStream::connect(("127.0.0.1", moto.port)).unwrap();
    write!(
        stream,
        "GET /{BUCKET}?uploads HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        moto.port
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.matches("<Upload>").count()
}

/// Asserts that no stdout, stderr or output file holds the secret key.
fn assert_no_secret(output: &std::process::Output, files: &[(String, Vec<u8>)]) {
    let needle = SECRET.as_bytes();
    let holds = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!holds(&output.stdout), "the secret key is in stdout");
    assert!(!holds(&output.stderr), "the secret key is in stderr");
    for (name, bytes) in files {
        assert!(!holds(bytes), "the secret key is in {name}");
    }
}

#[test]
fn s3_reads_and_writes_retry_through_faults_to_the_bytes_of_a_clean_run() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let store = moto.store();
    upload_quickstart_images(&store, "in");

    // The clean run, straight to moto.
    let clean = run_through(
        moto.port,
        &[
            format!("inputs.0.uri=s3://{BUCKET}/in"),
            format!("run.output=s3://{BUCKET}/clean"),
        ],
        "info",
    );
    ok(&clean);

    // The same run through the proxy: every kind of fault, on reads, listings and writes.
    let logs = tempfile::tempdir().unwrap();
    let rules = serde_json::json!([
        {"match": "GET /mmcurate-test?list-type", "fault": "500", "nth": [1]},
        {"match": "GET /mmcurate-test/in/opencv_baboon.jpg", "fault": "reset", "nth": [1, 2]},
        {"match": "GET /mmcurate-test/in/opencv_home.jpg", "fault": "503", "nth": [1]},
        {"match": "GET /mmcurate-test/in/opencv_building.jpg", "fault": "cut", "nth": [1]},
        {"match": "GET /mmcurate-test/in/opencv_butterfly.jpg", "fault": "slow", "nth": [1], "delay": 3.0},
        {"match": "GET /mmcurate-test/in/opencv_aero1.jpg", "fault": "slow", "nth": [1], "delay": 0.01},
        {"match": "GET /mmcurate-test/in/dark.jpg", "fault": "down", "nth": [1], "seconds": 1.0},
        {"match": "PUT /mmcurate-test/faults/versions/000001/shards/jpg-000000.tar", "fault": "503", "nth": [1]},
        {"match": "PUT /mmcurate-test/faults/versions/000001/shards/png-000000.tar", "fault": "reset", "nth": [1]},
        {"match": "PUT /mmcurate-test/faults/versions/000001/ledger", "fault": "500", "nth": [1]},
        {"match": "PUT /mmcurate-test/faults/versions/000001/manifest.json", "fault": "reset", "nth": [1]}
    ]);
    let proxy = FaultProxy::start(moto.port, rules, &logs.path().join("proxy.jsonl"));
    let faulty = run_through(
        proxy.port,
        &[
            format!("inputs.0.uri=s3://{BUCKET}/in"),
            format!("run.output=s3://{BUCKET}/faults"),
            // A body that stalls for a second is cut and resumed (the slow butterfly's first
            // chunk is followed by a 3 s pause).
            "run.object_store.read_timeout_s=1".to_string(),
            // Ten retries spread over several seconds outlast the 1 s the server is down.
            "run.object_store.backoff_initial_s=0.2".to_string(),
            "run.object_store.backoff_max_s=1".to_string(),
        ],
        "debug",
    );
    ok(&faulty);
    for fault in ["reset", "500", "503", "cut", "slow", "down"] {
        assert!(
            proxy.faults(fault) > 0,
            "no `{fault}` was injected: {:?}",
            proxy.requests()
        );
    }
    let clean_files = download(&store, "clean");
    let faulty_files = download(&store, "faults");
    {
        let local = tempfile::tempdir().unwrap();
        for (name, bytes) in &faulty_files {
            let path = local.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let failed: Vec<String> = ledger_rows(local.path())
            .iter()
            .filter(|r| r["drop_reason"] == "fetch_failed")
            .map(|r| format!("{} {}", r["name"], r["drop_detail"]))
            .collect();
        assert!(
            failed.is_empty(),
            "fetches that were not retried: {failed:#?}"
        );
    }
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&faulty_files), names(&clean_files));
    for ((name, clean), (_, faulty)) in clean_files.iter().zip(&faulty_files) {
        if name.contains("/shards/") || name.contains("/ledger/") {
            assert!(clean == faulty, "{name} differs from the clean run's");
        }
    }
    // Each faulted request was retried: every object the run reads was answered in full once.
    let answered = |path: &str| {
        proxy
            .requests()
            .iter()
            .filter(|(r, f)| {
                r.as_deref()
                    .is_some_and(|r| r.starts_with(&format!("GET {path} ")))
                    && f.is_none()
            })
            .count()
    };
    for path in [
        "/mmcurate-test/in/opencv_baboon.jpg",
        "/mmcurate-test/in/opencv_home.jpg",
        "/mmcurate-test/in/opencv_building.jpg",
    ] {
        assert!(answered(path) >= 1, "{path}: {:#?}", proxy.requests());
    }

    assert_no_secret(&faulty, &faulty_files);
    let stderr = String::from_utf8_lossy(&faulty.stderr);
    assert!(stderr.contains("retry"), "the retries are logged: {stderr}");
}

/// A WebDataset shard of the quickstart images, each with a 1.5 MB `bin` part, so the kept
/// samples make one output shard above `BufWriter`'s 10 MB: a multipart upload.
fn large_shard() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut entries: Vec<_> = std::fs::read_dir(root().join("examples/quickstart/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .collect();
    entries.sort();
    for path in entries {
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let ext = path.extension().unwrap().to_str().unwrap().to_string();
        let noise: Vec<u8> = (0..1_500_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for (name, data) in [
            (format!("{stem}.{ext}"), read(&path)),
            (format!("{stem}.bin"), noise),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, &data[..]).unwrap();
        }
    }
    builder.into_inner().unwrap()
}

#[test]
fn a_failing_s3_write_says_why_leaves_no_partial_shard_and_aborts_its_upload() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let store = moto.store();
    runtime().block_on(async {
        store
            .put(
                &ObjPath::from("wds/big-000000.tar"),
                PutPayload::from(large_shard()),
            )
            .await
            .unwrap();
    });
    let sets = |output: &str| {
        vec![
            format!("inputs.0.uri=s3://{BUCKET}/wds"),
            "inputs.0.format=webdataset".to_string(),
            format!("run.output=s3://{BUCKET}/{output}"),
            "output.max_samples_per_shard=1000".to_string(),
            "run.object_store.max_retries=2".to_string(),
            "run.object_store.backoff_initial_s=0.05".to_string(),
            "run.object_store.backoff_max_s=0.2".to_string(),
        ]
    };

    // Every part upload of the shard answered 500 (the unit's staged bytes, committed to
    // `state/` while measuring, go up unharmed): the run fails naming the shard and the
    // server's answer.
    let logs = tempfile::tempdir().unwrap();
    let rules = serde_json::json!([
        {"match": "shards/jpg_bin-000000.tar?partNumber=", "fault": "500", "all": true}
    ]);
    let proxy = FaultProxy::start(moto.port, rules, &logs.path().join("proxy.jsonl"));
    let failed = run_through(proxy.port, &sets("failed"), "info");
    assert_eq!(failed.status.code(), Some(1), "the run fails");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("shards/jpg_bin-000000.tar"), "{stderr}");
    assert!(
        stderr.contains("500"),
        "the server's answer is named: {stderr}"
    );
    // Tried three times (one try, two retries) for the first part, then aborted.
    assert!(proxy.faults("500") >= 3, "{:?}", proxy.requests());
    assert!(
        proxy.requests().iter().any(|(r, _)| r
            .as_deref()
            .is_some_and(|r| r.starts_with("DELETE ") && r.contains("uploadId="))),
        "the multipart upload is aborted: {:?}",
        proxy.requests()
    );
    assert_eq!(
        open_multipart_uploads(&moto),
        0,
        "no multipart upload is left"
    );
    let left = download(&store, "failed");
    assert!(
        left.iter()
            .all(|(name, _)| !name.contains("shards/") && name != "current.json"),
        "no shard or current.json at a final name: {:?}",
        left.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert_no_secret(&failed, &left);
    drop(proxy);

    // The same run with one part answered 503 then reset: it retries and completes, and the
    // shard is whole (pyarrow and webdataset read it back below through the ledger's count).
    let rules = serde_json::json!([
        {"match": "shards/jpg_bin-000000.tar?partNumber=1", "fault": "503", "nth": [1]},
        {"match": "shards/jpg_bin-000000.tar?partNumber=2", "fault": "reset", "nth": [1]}
    ]);
    let proxy = FaultProxy::start(moto.port, rules, &logs.path().join("proxy2.jsonl"));
    let done = run_through(proxy.port, &sets("done"), "info");
    ok(&done);
    assert_eq!(proxy.faults("503"), 1);
    assert_eq!(proxy.faults("reset"), 1);
    assert!(
        proxy.requests().iter().any(|(r, _)| r
            .as_deref()
            .is_some_and(|r| r.contains("shards/jpg_bin-000000.tar?partNumber=2"))),
        "the shard went up in more than one part"
    );
    assert_eq!(open_multipart_uploads(&moto), 0);
    let files = download(&store, "done");
    let local = tempfile::tempdir().unwrap();
    for (name, bytes) in &files {
        let path = local.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let kept = ledger_rows(local.path())
        .iter()
        .filter(|r| r["status"] == "kept")
        .count();
    assert_eq!(kept, 10);
    let samples = python_json("read_shards.py", &[local.path().to_str().unwrap()]);
    let samples = samples["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 10);
    assert_no_secret(&done, &files);
}

#[test]
fn an_s3_object_that_never_answers_is_a_dropped_row_saying_why() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let store = moto.store();
    upload_quickstart_images(&store, "in");
    let logs = tempfile::tempdir().unwrap();
    let rules = serde_json::json!([
        {"match": "GET /mmcurate-test/in/opencv_baboon.jpg", "fault": "503", "all": true}
    ]);
    let proxy = FaultProxy::start(moto.port, rules, &logs.path().join("proxy.jsonl"));
    let out = run_through(
        proxy.port,
        &[
            format!("inputs.0.uri=s3://{BUCKET}/in"),
            format!("run.output=s3://{BUCKET}/out"),
            "run.object_store.max_retries=1".to_string(),
            "run.object_store.backoff_initial_s=0.05".to_string(),
        ],
        "info",
    );
    ok(&out);
    assert_eq!(proxy.faults("503"), 2, "one try and one retry");
    let files = download(&store, "out");
    let local = tempfile::tempdir().unwrap();
    for (name, bytes) in &files {
        let path = local.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let rows = ledger_rows(local.path());
    let baboon = rows
        .iter()
        .find(|r| r["name"] == "opencv_baboon.jpg")
        .unwrap();
    assert_eq!(baboon["status"], "dropped");
    assert_eq!(baboon["drop_reason"], "fetch_failed");
    let detail = baboon["drop_detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("503"),
        "the server's answer is in the ledger: {baboon}"
    );
    assert_no_secret(&out, &files);
}

#[test]
fn a_terminated_s3_run_removes_its_private_staging_folder() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    upload_quickstart_images(&moto.store(), "in");
    let logs = tempfile::tempdir().unwrap();
    // Every image trickles in, so the run is still reading when it is terminated.
    let rules = serde_json::json!([
        {"match": "GET /mmcurate-test/in/", "fault": "slow", "all": true, "delay": 0.2}
    ]);
    let proxy = FaultProxy::start(moto.port, rules, &logs.path().join("proxy.jsonl"));
    let temp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mmcurate"))
        .current_dir(root())
        .args(["run", "configs/quickstart.toml", "--set"])
        .arg(format!("inputs.0.uri=s3://{BUCKET}/in"))
        .arg("--set")
        .arg(format!("run.output=s3://{BUCKET}/out"))
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", proxy.port),
        )
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("TMPDIR", temp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The staging folder appears, private, while the run reads.
    let deadline = Instant::now() + Duration::from_secs(60);
    let folder = loop {
        let found = std::fs::read_dir(temp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.join("staging.bin").exists());
        if let Some(folder) = found {
            break folder;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before staging"
        );
        assert!(Instant::now() < deadline, "no staging folder appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    let name = folder.file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("mmcurate-staging-"), "{name}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&folder).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run is still going"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
    let left: Vec<_> = std::fs::read_dir(temp.path()).unwrap().collect();
    assert!(left.is_empty(), "the staging folder is removed: {left:?}");
}
