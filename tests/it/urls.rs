//! URL lists as img2dataset takes them: manifests (JSON Lines, Parquet, CSV, TSV) whose rows
//! name `http://` URLs, downloaded from a local server the test starts on 127.0.0.1
//! (tests/python/url_server.py) that serves real images and the ways the web fails: 404, 500
//! (always, and once then the image), slow and truncated bodies, redirect chains within and
//! over the limit, `X-Robots-Tag` opt-outs and an oversized body.

use crate::common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The URL server, killed (by the PID it was started with) on drop.
struct UrlServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl UrlServer {
    fn start(dir: &Path) -> UrlServer {
        let log = dir.join("requests.jsonl");
        let mut child = Command::new(python())
            .arg(root().join("tests/python/url_server.py"))
            .arg(images())
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server prints its port");
        UrlServer { child, port, log }
    }

    fn url(&self, path: &str, run: &str) -> String {
        format!("http://127.0.0.1:{}{path}?run={run}", self.port)
    }

    /// The requests the server saw for one run, as (client address, path without the query).
    fn requests(&self, run: &str) -> Vec<(String, String)> {
        let tag = format!("?run={run}");
        let mut seen: Vec<(String, String)> = std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter_map(|r| {
                let path = r["path"].as_str()?.to_string();
                let path = path.strip_suffix(&tag)?.to_string();
                Some((r["client"].as_str()?.to_string(), path))
            })
            .collect();
        seen.sort();
        seen
    }
}

impl Drop for UrlServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn images() -> PathBuf {
    root().join("examples/quickstart/images")
}

fn sha256_of(name: &str) -> String {
    hex::encode(Sha256::digest(read(images().join(name))))
}

/// One manifest row: the server path (None: no URL), the caption, and what the ledger says.
struct Row {
    path: Option<&'static str>,
    caption: &'static str,
    /// `kept`, or `REASON: DETAIL` (a detail ending in `…` is a prefix).
    expect: &'static str,
    /// The image the server sends (kept rows: the bytes to find in the shard).
    image: Option<&'static str>,
    http_status: Option<u64>,
    /// Requests this row makes, by path.
    requests: &'static [&'static str],
}

const TIMEOUT: &str =
    "timed out: the server sent nothing for 1 s (http.timeout_seconds) (2 attempts)";

fn rows() -> Vec<Row> {
    let row = |path, caption, expect, image, http_status, requests| Row {
        path,
        caption,
        expect,
        image,
        http_status,
        requests,
    };
    vec![
        row(Some("/img/opencv_baboon.jpg"), "a baboon", "kept", Some("opencv_baboon.jpg"), Some(200), &["/img/opencv_baboon.jpg"]),
        row(Some("/missing/opencv_aero1.jpg"), "gone", "fetch_failed: HTTP 404 Not Found", None, Some(404), &["/missing/opencv_aero1.jpg"]),
        row(
            Some("/error/opencv_aero1.jpg"),
            "broken",
            "fetch_failed: HTTP 500 Internal Server Error (2 attempts)",
            None,
            Some(500),
            &["/error/opencv_aero1.jpg", "/error/opencv_aero1.jpg"],
        ),
        row(
            Some("/flaky/opencv_butterfly.jpg"),
            "a butterfly",
            "kept",
            Some("opencv_butterfly.jpg"),
            Some(200),
            &["/flaky/opencv_butterfly.jpg", "/flaky/opencv_butterfly.jpg"],
        ),
        row(
            Some("/slow/opencv_building.jpg"),
            "slow",
            "fetch_failed: timed out",
            None,
            Some(200),
            &["/slow/opencv_building.jpg", "/slow/opencv_building.jpg"],
        ),
        row(
            Some("/truncated/opencv_squirrel_cls.jpg"),
            "cut",
            "fetch_failed: the body was cut short: 31155 of 62311 bytes arrived…",
            None,
            Some(200),
            &["/truncated/opencv_squirrel_cls.jpg", "/truncated/opencv_squirrel_cls.jpg"],
        ),
        row(
            Some("/redirect/2/matplotlib_grace_hopper.jpg"),
            "Grace Hopper",
            "kept",
            Some("matplotlib_grace_hopper.jpg"),
            Some(200),
            &["/img/matplotlib_grace_hopper.jpg", "/redirect/1/matplotlib_grace_hopper.jpg", "/redirect/2/matplotlib_grace_hopper.jpg"],
        ),
        row(
            Some("/redirect/3/dark.jpg"),
            "too far",
            "fetch_failed: more than 2 redirects (http.max_redirects)",
            None,
            None,
            &["/redirect/1/dark.jpg", "/redirect/2/dark.jpg", "/redirect/3/dark.jpg"],
        ),
        row(
            Some("/xrobots/noai/opencv_home.jpg"),
            "opted out",
            "opted_out: X-Robots-Tag \"noai\" opts this object out (http.disallowed_header_directives)",
            Some("opencv_home.jpg"),
            Some(200),
            &["/xrobots/noai/opencv_home.jpg"],
        ),
        row(
            Some("/xrobots/otherbot:_noai/opencv_rubberwhale2.png"),
            "another agent's opt-out",
            "kept",
            Some("opencv_rubberwhale2.png"),
            Some(200),
            &["/xrobots/otherbot:_noai/opencv_rubberwhale2.png"],
        ),
        row(
            Some("/xrobots/mmcurate:_noimageai/overexposed.png"),
            "our opt-out",
            "opted_out: X-Robots-Tag \"mmcurate: noimageai\" opts this object out (http.disallowed_header_directives)",
            Some("overexposed.png"),
            Some(200),
            &["/xrobots/mmcurate:_noimageai/overexposed.png"],
        ),
        row(
            Some("/big/opencv_aero1.jpg"),
            "huge",
            "fetch_failed: Content-Length 1000000000 is above http.max_bytes (100000000)",
            None,
            Some(200),
            &["/big/opencv_aero1.jpg"],
        ),
        row(None, "no url", "fetch_failed: the row has no URL", None, None, &[]),
    ]
}

/// Writes the manifest in `format` (`jsonl`, `csv`, `tsv`, `parquet`) and returns its path.
fn write_manifest(dir: &Path, server: &UrlServer, format: &str) -> PathBuf {
    let urls: Vec<Option<String>> = rows()
        .iter()
        .map(|r| r.path.map(|p| server.url(p, format)))
        .collect();
    let jsonl: String = rows()
        .iter()
        .zip(&urls)
        .enumerate()
        .map(|(i, (r, url))| {
            format!(
                "{}\n",
                serde_json::json!({"url": url, "caption": r.caption, "row_number": i.to_string()})
            )
        })
        .collect();
    let path = dir.join(format!("urls.{format}"));
    match format {
        "jsonl" => std::fs::write(&path, jsonl).unwrap(),
        "csv" | "tsv" => {
            let sep = if format == "csv" { "," } else { "\t" };
            let mut text = ["url", "caption", "row_number"].join(sep) + "\n";
            for (i, (r, url)) in rows().iter().zip(&urls).enumerate() {
                let url = url.clone().unwrap_or_default();
                let caption = if format == "csv" {
                    format!("\"{}\"", r.caption)
                } else {
                    r.caption.to_string()
                };
                text += &format!("{url}{sep}{caption}{sep}{i}\n");
            }
            std::fs::write(&path, text).unwrap();
        }
        "parquet" => {
            let source = dir.join("rows.jsonl");
            std::fs::write(&source, jsonl).unwrap();
            let script = format!(
                "import json, pyarrow as pa, pyarrow.parquet as pq\n\
                 rows=[json.loads(l) for l in open({:?})]\n\
                 pq.write_table(pa.Table.from_pylist(rows), {:?})",
                source.display().to_string(),
                path.display().to_string()
            );
            let status = Command::new(python())
                .arg("-c")
                .arg(script)
                .status()
                .unwrap();
            assert!(status.success());
        }
        other => panic!("no such format {other}"),
    }
    path
}

/// Runs mmcurate on the manifest with short time-outs, no proxy, and `sets`.
fn run_on(dir: &Path, manifest: &Path, sets: &[&str]) -> PathBuf {
    let out = dir.join("out");
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[run]\noutput = {:?}\nthreads = 2\n[[inputs]]\nuri = {:?}\nformat = \"manifest\"\n\
             [http]\ntimeout_seconds = 1\ntotal_timeout_seconds = 20\nretries = 1\n\
             retry_backoff_seconds = 0.1\nmax_redirects = 2\nper_host_concurrency = 4\n",
            out.display().to_string(),
            manifest.display().to_string()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mmcurate"));
    command.current_dir(root()).arg("run").arg(&job);
    for set in sets {
        command.args(["--set", set]);
    }
    // Nothing may go through a proxy: every request must reach 127.0.0.1 directly.
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    ok(&command.output().expect("mmcurate starts"));
    out
}

#[test]
fn url_lists_in_every_manifest_format_give_one_ledger_row_per_url() {
    let tmp = tempfile::tempdir().unwrap();
    let server = UrlServer::start(tmp.path());
    for format in ["jsonl", "parquet", "csv", "tsv"] {
        let dir = tmp.path().join(format);
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = write_manifest(&dir, &server, format);
        let out = run_on(&dir, &manifest, &[]);

        let ledger = ledger_rows(&out);
        assert_eq!(
            ledger.len(),
            rows().len(),
            "{format}: one ledger row per manifest row"
        );
        let by_row: BTreeMap<u64, &Value> = ledger
            .iter()
            .map(|r| (r["manifest_row"].as_u64().unwrap(), r))
            .collect();
        let shards = python_json("read_shards.py", &[out.to_str().unwrap()]);
        let samples = shards["samples"].as_array().unwrap();
        let mut expected_requests = Vec::new();
        for (i, row) in rows().iter().enumerate() {
            let got = by_row[&(i as u64)];
            let context = format!("{format} row {i} ({:?})", row.path);
            let url = row.path.map(|p| server.url(p, format));
            assert_eq!(
                got["source_uri"].as_str(),
                Some(url.clone().unwrap_or_default().as_str()),
                "{context}"
            );
            assert_eq!(got["http_status"].as_u64(), row.http_status, "{context}");
            if row.expect == "kept" {
                assert_eq!(got["status"], "kept", "{context}: {got}");
                let image = row.image.unwrap();
                assert_eq!(got["sha256"], sha256_of(image), "{context}");
                // Redirects end on /img/NAME on the same server.
                let final_uri = server.url(&format!("/img/{image}"), format);
                let final_uri = if row.path.unwrap().starts_with("/redirect/") {
                    final_uri
                } else {
                    url.clone().unwrap()
                };
                assert_eq!(got["final_uri"], final_uri, "{context}");
                assert!(
                    got["etag"].as_str().is_some_and(|e| e.len() == 18),
                    "{context}"
                );
                // The shard holds the served bytes unchanged, with the caption and columns.
                let key = got["key"].as_str().unwrap();
                let sample = samples.iter().find(|s| s["key"] == key).unwrap();
                let ext = image.rsplit('.').next().unwrap();
                assert_eq!(
                    sample["parts"][ext]["sha256"],
                    sha256_of(image),
                    "{context}"
                );
                assert_eq!(sample["txt"], row.caption, "{context}");
                assert_eq!(sample["json"]["row_number"], i.to_string(), "{context}");
            } else {
                let (reason, detail) = row.expect.split_once(": ").unwrap();
                assert_eq!(got["status"], "dropped", "{context}");
                assert_eq!(got["drop_stage"], "source", "{context}");
                assert_eq!(got["drop_reason"], reason, "{context}: {got}");
                let got_detail = got["drop_detail"].as_str().unwrap();
                match detail.strip_suffix('…') {
                    Some(prefix) => assert!(
                        got_detail.starts_with(prefix) && got_detail.ends_with("(2 attempts)"),
                        "{context}: {got_detail}"
                    ),
                    None if detail == "timed out" => assert_eq!(got_detail, TIMEOUT, "{context}"),
                    None => assert_eq!(got_detail, detail, "{context}"),
                }
                assert!(got["sha256"].is_null(), "{context}: nothing kept");
            }
            expected_requests.extend(
                row.requests
                    .iter()
                    .map(|p| ("127.0.0.1".to_string(), p.to_string())),
            );
        }
        assert_eq!(samples.len(), 4, "{format}: the kept rows only");
        // Exactly these requests, all from 127.0.0.1: retries where they belong, no more.
        expected_requests.sort();
        assert_eq!(server.requests(format), expected_requests, "{format}");
    }
}

#[test]
fn opt_outs_can_be_turned_off_and_unreachable_hosts_are_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let server = UrlServer::start(tmp.path());
    let text = format!(
        "{}\n{}\n",
        serde_json::json!({"url": server.url("/xrobots/noai/opencv_home.jpg", "off"), "caption": "c"}),
        serde_json::json!({"url": "http://127.0.0.1:1/closed.jpg", "caption": "c"}),
    );
    std::fs::write(tmp.path().join("urls.jsonl"), text).unwrap();
    let out = run_on(
        tmp.path(),
        &tmp.path().join("urls.jsonl"),
        &["http.disallowed_header_directives=[]"],
    );
    let ledger = ledger_rows(&out);
    let row = |n: u64| ledger.iter().find(|r| r["manifest_row"] == n).unwrap();
    assert_eq!(row(0)["status"], "kept");
    assert_eq!(row(0)["sha256"], sha256_of("opencv_home.jpg"));
    assert_eq!(row(1)["drop_reason"], "fetch_failed");
    let detail = row(1)["drop_detail"].as_str().unwrap();
    assert!(
        detail.starts_with("cannot connect: ") && detail.ends_with("(2 attempts)"),
        "{detail}"
    );
    assert!(row(1)["http_status"].is_null());
}
