//! Inputs that cannot be read, made by the tests: a tar member whose header declares 2^40 bytes
//! over data cut short, a shard that is not a tar, manifests with broken and cut lines and a
//! Parquet manifest cut short. Nothing is skipped in silence: each unreadable member, shard or
//! row is a dropped ledger row saying why, and an input error in the run manifest.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn job(dir: &Path, input: &Path, format: &str) -> std::path::PathBuf {
    let path = dir.join("job.toml");
    std::fs::write(
        &path,
        format!(
            "[run]\noutput = {:?}\nthreads = 2\n[[inputs]]\nuri = {:?}\nformat = {format:?}\n",
            dir.join("out").display().to_string(),
            input.display().to_string(),
        ),
    )
    .unwrap();
    path
}

fn rows_by_id(output: &Path) -> BTreeMap<String, Value> {
    ledger_rows(output)
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect()
}

fn input_errors(output: &Path) -> Vec<String> {
    let manifest: Value =
        serde_json::from_slice(&read(current_version(output).join("manifest.json"))).unwrap();
    manifest["inputs"][0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

fn image(name: &str) -> Vec<u8> {
    read(root().join("examples/quickstart/images").join(name))
}

/// One ustar member: header (with `declared` as its size), then `data` padded to 512 bytes.
fn member(out: &mut Vec<u8>, name: &str, data: &[u8], declared: u64) {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).unwrap();
    header.set_size(declared);
    header.set_mode(0o644);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + (512 - data.len() % 512) % 512, 0);
}

#[test]
fn unreadable_members_and_shards_are_ledger_rows_and_input_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let baboon = image("opencv_baboon.jpg");

    // A whole sample, then a member whose header declares 2^40 bytes and whose data stops
    // after 1000: the reader must neither reserve a terabyte nor skip it in silence.
    let mut huge = Vec::new();
    member(&mut huge, "baboon.jpg", &baboon, baboon.len() as u64);
    member(&mut huge, "baboon.txt", b"a baboon", 8);
    member(&mut huge, "liar.jpg", &baboon[..1000], 1 << 40);
    std::fs::write(shards.join("a-000000.tar"), &huge).unwrap();
    // Not a tar at all.
    std::fs::write(
        shards.join("b-000000.tar"),
        b"<html>not a shard</html>".repeat(40),
    )
    .unwrap();
    // Empty: cut short before its first member.
    std::fs::write(shards.join("c-000000.tar"), b"").unwrap();

    let config = job(tmp.path(), &shards, "webdataset");
    ok(&mmcurate(&["run", config.to_str().unwrap()]));
    let out = tmp.path().join("out");
    let rows = rows_by_id(&out);
    let ids: Vec<&str> = rows.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "0:a-000000.tar/baboon",
            "0:a-000000.tar/liar",
            "0:b-000000.tar",
            "0:c-000000.tar"
        ]
    );
    assert_eq!(rows["0:a-000000.tar/baboon"]["status"], "kept");
    let detail = |id: &str| {
        let row = &rows[id];
        assert_eq!(row["status"], "dropped", "{row}");
        assert_eq!(row["drop_reason"], "fetch_failed", "{row}");
        row["drop_detail"].as_str().unwrap().to_string()
    };
    let liar = detail("0:a-000000.tar/liar");
    assert!(
        liar.contains("member liar.jpg is truncated")
            && liar.contains(&format!("of {} bytes", 1u64 << 40)),
        "{liar}"
    );
    assert_eq!(rows["0:a-000000.tar/liar"]["tar_member"], "liar.jpg");
    assert!(
        detail("0:b-000000.tar").contains("tar stream broken after 0 samples"),
        "{}",
        detail("0:b-000000.tar")
    );
    assert!(detail("0:c-000000.tar").contains("no end-of-archive marker after 0 samples"));
    assert_eq!(rows["0:b-000000.tar"]["name"], "b-000000.tar");

    // The same three problems are the input's errors in the run manifest, in shard order.
    let errors = input_errors(&out);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("a-000000.tar: member liar.jpg is truncated"));
    assert!(errors[1].contains("b-000000.tar: tar stream broken"));
    assert!(errors[2].contains("c-000000.tar: no end-of-archive marker"));
}

#[test]
fn broken_manifest_rows_are_ledger_rows_and_input_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("baboon.jpg"), image("opencv_baboon.jpg")).unwrap();
    std::fs::write(dir.join("butterfly.jpg"), image("opencv_butterfly.jpg")).unwrap();
    // A good row, a JSON array, bytes that are not UTF-8, a good row, and a last line cut short.
    let mut text = Vec::new();
    text.extend_from_slice(b"{\"url\": \"baboon.jpg\", \"caption\": \"a baboon\"}\n");
    text.extend_from_slice(b"[\"not\", \"an\", \"object\"]\n");
    text.extend_from_slice(b"{\"url\": \"\xff\xfe.jpg\"}\n");
    text.extend_from_slice(b"{\"url\": \"butterfly.jpg\"}\n");
    text.extend_from_slice(b"{\"url\": \"cut.jp");
    std::fs::write(dir.join("m.jsonl"), &text).unwrap();

    let config = job(tmp.path(), &dir.join("m.jsonl"), "manifest");
    ok(&mmcurate(&["run", config.to_str().unwrap()]));
    let out = tmp.path().join("out");
    let rows = rows_by_id(&out);
    assert_eq!(rows.len(), 5, "{:?}", rows.keys());
    let row = |n: usize| &rows[&format!("0:m.jsonl#{n:09}")];
    assert_eq!(row(0)["status"], "kept");
    assert_eq!(row(3)["status"], "kept");
    for (n, what) in [
        (1, "line 2: expected a JSON object"),
        (2, "line 3: not a JSON object"),
        (4, "line 5: not a JSON object: EOF while parsing"),
    ] {
        assert_eq!(row(n)["status"], "dropped");
        assert_eq!(row(n)["drop_reason"], "fetch_failed");
        assert_eq!(row(n)["manifest_row"], n as u64);
        let detail = row(n)["drop_detail"].as_str().unwrap();
        assert!(detail.contains(what), "row {n}: {detail}");
    }
    let errors = input_errors(&out);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("m.jsonl: line 2: expected a JSON object"));
    assert!(errors[2].contains("m.jsonl: line 5"));

    // A Parquet manifest cut short (its footer gone): one row and one input error saying so;
    // the JSONL manifest beside it still runs.
    let parquet = {
        use arrow_array::{RecordBatch, StringArray};
        let batch = RecordBatch::try_from_iter([(
            "url",
            std::sync::Arc::new(StringArray::from(vec!["baboon.jpg", "butterfly.jpg"])) as _,
        )])
        .unwrap();
        let mut bytes = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        bytes
    };
    std::fs::write(dir.join("p.parquet"), &parquet[..parquet.len() - 20]).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    let config = job(tmp.path(), &dir, "manifest");
    ok(&mmcurate(&["run", config.to_str().unwrap()]));
    let rows = rows_by_id(&out);
    assert_eq!(rows.len(), 6, "{:?}", rows.keys());
    let cut = &rows["0:p.parquet#000000000"];
    assert_eq!(cut["drop_reason"], "fetch_failed");
    let detail = cut["drop_detail"].as_str().unwrap();
    assert!(
        detail.contains("p.parquet: cannot read the Parquet manifest past row 0"),
        "{detail}"
    );
    let errors = input_errors(&out);
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors
        .iter()
        .any(|e| e.contains("p.parquet: cannot read the Parquet manifest")));
}
