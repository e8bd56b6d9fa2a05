//! S3 in and out against a real S3-compatible server (moto, from the test venv) that the test
//! starts on 127.0.0.1 and stops afterwards.

use crate::common::*;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BUCKET: &str = "mmcurate-test";

/// A moto S3 server on a free local port, killed on drop.
pub(crate) struct Moto {
    child: Child,
    pub(crate) port: u16,
}

impl Moto {
    pub(crate) fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = python().parent().unwrap().join("moto_server");
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts (it is in the test venv: bash scripts/test.sh)");
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket with a plain HTTP PUT (moto accepts unsigned requests).
    pub(crate) fn create_bucket(&self, bucket: &str) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "create bucket: {response}"
        );
    }

    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }

    pub(crate) fn store(&self) -> impl ObjectStore {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_s3(moto: &Moto, sets: &[String]) -> std::process::Output {
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = vec!["run", "configs/quickstart.toml"];
    for set in sets {
        args.push("--set");
        args.push(set);
    }
    mmcurate_with_env(&args, &env)
}

#[test]
fn s3_input_and_output_against_a_real_server() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let store = moto.store();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let images = root().join("examples/quickstart/images");
    runtime.block_on(async {
        for entry in std::fs::read_dir(&images).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            store
                .put(
                    &ObjPath::from(format!("in/{name}")),
                    PutPayload::from(read(&path)),
                )
                .await
                .unwrap();
        }
    });

    // Files from S3 to shards on S3.
    let sets = [
        format!("inputs.0.uri=s3://{BUCKET}/in"),
        format!("run.output=s3://{BUCKET}/out"),
    ];
    ok(&run_s3(&moto, &sets));
    let listed: Vec<String> = runtime.block_on(async {
        let objects: Vec<_> = store
            .list(Some(&ObjPath::from("out")))
            .try_collect()
            .await
            .unwrap();
        let mut names: Vec<String> = objects.iter().map(|o| o.location.to_string()).collect();
        names.sort();
        names
    });
    // The run's state is in the bucket itself, beside the output: the one work unit's records
    // and staged bytes, the decisions and the two shards' write records.
    let (state, listed): (Vec<String>, Vec<String>) = listed
        .into_iter()
        .partition(|n| n.starts_with("out/state/"));
    let state_files: Vec<&str> = state.iter().filter_map(|n| n.rsplit('/').next()).collect();
    assert_eq!(state.len(), 5, "{state:?}");
    assert!(
        state_files.iter().any(|n| n.ends_with(".records")),
        "{state:?}"
    );
    assert!(
        state_files.iter().any(|n| n.ends_with(".staged")),
        "{state:?}"
    );
    assert!(state_files.contains(&"decisions.cbor"), "{state:?}");
    assert_eq!(
        listed,
        [
            "out/current.json",
            "out/versions/000001/index/samples.parquet",
            "out/versions/000001/ledger/ledger-000000.parquet",
            "out/versions/000001/manifest.json",
            "out/versions/000001/report.html",
            "out/versions/000001/report.json",
            "out/versions/000001/shards/jpg-000000.tar",
            "out/versions/000001/shards/png-000000.tar"
        ],
        "the version and its commit pointer; the lock object is gone"
    );

    // Read the S3 output back locally with pyarrow: the same decisions as the local run.
    let local = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        for name in &listed {
            let bytes = store
                .get(&ObjPath::from(name.as_str()))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let path = local.path().join(name.trim_start_matches("out/"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    });
    let rows = ledger_rows(local.path());
    assert_eq!(rows.len(), 21);
    let decisions: BTreeMap<String, (String, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                (
                    r["status"].as_str().unwrap().to_string(),
                    r["drop_reason"].as_str().map(str::to_string),
                ),
            )
        })
        .collect();
    assert_eq!(decisions["opencv_baboon.jpg"], ("kept".into(), None));
    assert_eq!(
        decisions["truncated.jpg"],
        ("dropped".into(), Some("unreadable".into()))
    );
    assert_eq!(
        decisions["resized_opencv_baboon.jpg"],
        ("dropped".into(), Some("near_duplicate".into()))
    );
    assert_eq!(decisions.values().filter(|(s, _)| s == "kept").count(), 10);
    let baboon = rows
        .iter()
        .find(|r| r["name"] == "opencv_baboon.jpg")
        .unwrap();
    assert_eq!(
        baboon["source_uri"],
        format!("s3://{BUCKET}/in/opencv_baboon.jpg")
    );
    assert!(
        !baboon["etag"].as_str().unwrap().is_empty(),
        "the S3 etag is recorded"
    );
    let samples = python_json("read_shards.py", &[local.path().to_str().unwrap()]);
    assert_eq!(samples["samples"].as_array().unwrap().len(), 10);

    // The shards just written, streamed back from S3 as WebDataset input: every sample passes
    // again, with its key, caption and original JSON fields.
    let sets = [
        format!("inputs.0.uri=s3://{BUCKET}/out/versions/000001/shards"),
        "inputs.0.format=webdataset".to_string(),
        format!("run.output=s3://{BUCKET}/again"),
    ];
    let summary = ok(&run_s3(&moto, &sets));
    assert!(
        summary.contains("kept") && summary.contains("10"),
        "{summary}"
    );
    let manifest: serde_json::Value = runtime.block_on(async {
        let bytes = store
            .get(&ObjPath::from("again/versions/000001/manifest.json"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    });
    assert_eq!(manifest["counts"]["samples"], 10);
    assert_eq!(manifest["counts"]["kept"], 10);
    assert_eq!(
        manifest["inputs"][0]["objects"].as_array().unwrap().len(),
        2
    );
    assert!(manifest["inputs"][0]["objects"][0]["etag"].is_string());

    // A run while the output's lock object exists (a run in progress, or one that was killed)
    // is refused before any work, naming the lock, its holder and what to do. The lock object
    // was made with a conditional create, so a second one cannot be made over it.
    let lock = br#"{"pid": 7, "host": "node-7", "started_at": "2026-01-01T00:00:00Z", "command": "mmcurate run job.toml"}"#;
    runtime.block_on(async {
        store
            .put(
                &ObjPath::from("out/.mmcurate.lock"),
                PutPayload::from(lock.to_vec()),
            )
            .await
            .unwrap();
        store
            .put(
                &ObjPath::from("theirs/notes.txt"),
                PutPayload::from(b"mine".to_vec()),
            )
            .await
            .unwrap();
    });
    let refused = run_s3(
        &moto,
        &[
            format!("inputs.0.uri=s3://{BUCKET}/in"),
            format!("run.output=s3://{BUCKET}/out"),
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "s3://{BUCKET}/out/.mmcurate.lock is held by pid 7 on node-7"
        )) && stderr.contains("delete that object and run again"),
        "{stderr}"
    );
    // A prefix that holds someone else's objects is refused, and left as it was.
    let refused = run_s3(
        &moto,
        &[
            format!("inputs.0.uri=s3://{BUCKET}/in"),
            format!("run.output=s3://{BUCKET}/theirs"),
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is not an mmcurate output") && stderr.contains("notes.txt"),
        "{stderr}"
    );
    let outputs: Vec<String> = runtime.block_on(async {
        let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
        objects
            .iter()
            .map(|o| o.location.to_string())
            .filter(|n| n.starts_with("out/") || n.starts_with("theirs/"))
            .collect()
    });
    assert_eq!(
        outputs.len(),
        listed.len() + state.len() + 2,
        "nothing written: {outputs:?}"
    );
    // A lock this host wrote for a process that is gone (a run killed with SIGKILL) is taken
    // over by a conditional overwrite, and the run commits version 2.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let stale = serde_json::json!({"pid": 4_194_305, "host": host.trim(),
        "started_at": "2026-01-01T00:00:00Z", "command": "mmcurate run job.toml"});
    runtime.block_on(async {
        store
            .put(
                &ObjPath::from("out/.mmcurate.lock"),
                PutPayload::from(stale.to_string()),
            )
            .await
            .unwrap();
    });
    let taken = run_s3(
        &moto,
        &[
            format!("inputs.0.uri=s3://{BUCKET}/in"),
            format!("run.output=s3://{BUCKET}/out"),
        ],
    );
    ok(&taken);
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert!(
        stderr.contains(&format!(
            "taking over the stale lock s3://{BUCKET}/out/.mmcurate.lock: it was left by pid 4194305"
        )),
        "{stderr}"
    );
    let pointer: serde_json::Value = runtime.block_on(async {
        let bytes = store
            .get(&ObjPath::from("out/current.json"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    });
    assert_eq!(
        (&pointer["version"], &pointer["parent_version"]),
        (&serde_json::json!(2), &serde_json::json!(1))
    );
    let lock_left = runtime.block_on(store.head(&ObjPath::from("out/.mmcurate.lock")));
    assert!(lock_left.is_err(), "the run removed its lock object");

    // An unreachable bucket is a clear error before any work.
    let sets = [
        "inputs.0.uri=s3://no-such-bucket/in".to_string(),
        format!("run.output=s3://{BUCKET}/never"),
    ];
    let out = run_s3(&moto, &sets);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot list s3://no-such-bucket/in")
            || stderr.contains("s3://no-such-bucket/in"),
        "{stderr}"
    );
    let never: Vec<_> = runtime.block_on(async {
        store
            .list(Some(&ObjPath::from("never")))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
    });
    assert!(never.is_empty());
}

/// Runs mmcurate with no `AWS_*` variable but those given, and HOME as given.
fn run_with_aws_env(
    args: &[&str],
    home: &std::path::Path,
    aws: &[(&str, &str)],
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mmcurate"));
    command.current_dir(root()).args(args).env("HOME", home);
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command.envs(aws.iter().copied());
    command.output().expect("mmcurate starts")
}

#[test]
fn s3_settings_from_an_aws_profile_in_the_shared_files() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let store = moto.store();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let images = root().join("examples/quickstart/images");
    runtime.block_on(async {
        for name in ["opencv_baboon.jpg", "opencv_butterfly.jpg"] {
            store
                .put(
                    &ObjPath::from(format!("profile/{name}")),
                    PutPayload::from(read(images.join(name))),
                )
                .await
                .unwrap();
        }
    });
    // Keys in ~/.aws/credentials, region and endpoint in ~/.aws/config, selected by
    // AWS_PROFILE: nothing in the environment says where the server is or how to sign.
    let home = tempfile::tempdir().unwrap();
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[default]\nregion = eu-west-1\n[profile ci]\nregion = us-east-1\nendpoint_url = {}\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("credentials"),
        "[ci]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let out = home.path().join("out");
    let input = format!("inputs.0.uri=s3://{BUCKET}/profile");
    let output = format!("run.output={}", out.display());
    let args = [
        "run",
        "configs/quickstart.toml",
        "--set",
        &input,
        "--set",
        &output,
    ];
    ok(&run_with_aws_env(
        &args,
        home.path(),
        &[("AWS_PROFILE", "ci")],
    ));
    let rows = ledger_rows(&out);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["status"] == "kept"), "{rows:?}");
    assert!(rows.iter().all(|r| r["source_uri"]
        .as_str()
        .unwrap()
        .starts_with("s3://mmcurate-test/profile/")));

    // A profile that is in neither file is named, with the files looked in.
    let failed = run_with_aws_env(&args, home.path(), &[("AWS_PROFILE", "nope")]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains(&format!(
            "s3://{BUCKET}: AWS_PROFILE=nope: there is no [profile nope] in {} and no [nope] in {}",
            aws.join("config").display(),
            aws.join("credentials").display()
        )),
        "{stderr}"
    );
}
