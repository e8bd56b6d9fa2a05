//! Inputs that cannot be read, made by the tests: a tar member whose header declares 2^40 bytes
//! over data cut short, a shard that is not a tar, manifests with broken and cut lines and a
//! Parquet manifest cut short. Nothing is skipped in silence: each unreadable member, shard or
//! row is a dropped ledger row saying why, and an input error in the run manifest.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

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
    // Over limits.max_part_bytes, its data is not read but skipped, and skipping finds the
    // shard cut short: that is the row's error, with the refusal beside it.
    let liar = detail("0:a-000000.tar/liar");
    assert!(liar.contains("tar stream broken after 1 samples"), "{liar}");
    assert_eq!(rows["0:a-000000.tar/liar"]["tar_member"], "liar.jpg");
    assert_eq!(
        rows["0:a-000000.tar/liar"]["part_changes"]
            .as_str()
            .unwrap(),
        format!(
            "liar.jpg: {} bytes > limits.max_part_bytes 1073741824; not read",
            1u64 << 40
        )
    );
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
    assert!(errors[0].contains("a-000000.tar: tar stream broken after 1 samples"));
    assert!(errors[1].contains("b-000000.tar: tar stream broken"));
    assert!(errors[2].contains("c-000000.tar: no end-of-archive marker"));
}

#[test]
fn members_that_are_not_regular_files_are_dropped_rows_naming_them_and_their_type() {
    // A shard made by GNU tar from a folder holding a sample, a symbolic link, a hard link, a
    // FIFO, a sparse file and a sub-folder with a sample; the same shard cut short inside its
    // last member's data; and one behind a GNU volume label, whose header the tar crate
    // (0.4.46) cannot read past (its size field is not a number): that shard is one row.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("files");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.jpg"), image("opencv_baboon.jpg")).unwrap();
    std::fs::write(dir.join("a.txt"), "a baboon").unwrap();
    std::os::unix::fs::symlink("a.jpg", dir.join("link.jpg")).unwrap();
    std::fs::hard_link(dir.join("a.jpg"), dir.join("hard.jpg")).unwrap();
    let fifo = Command::new("mkfifo")
        .arg(dir.join("pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
    std::fs::File::create(dir.join("holes.jpg"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    std::fs::write(dir.join("sub/b.jpg"), image("opencv_butterfly.jpg")).unwrap();
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    for (shard, label) in [("s", &[][..]), ("u", &["-V", "volume-1"][..])] {
        let made = Command::new("tar")
            .args(["--format=gnu", "--sparse"])
            .args(label)
            .arg("-cf")
            .arg(shards.join(format!("{shard}-000000.tar")))
            .arg("-C")
            .arg(&dir)
            .args([
                "a.jpg",
                "a.txt",
                "link.jpg",
                "hard.jpg",
                "pipe",
                "holes.jpg",
                "sub",
            ])
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
    }
    let whole = read(shards.join("s-000000.tar"));
    // Cut inside sub/b.jpg's data, the last member's (searched from the end: the two JPEGs
    // may begin alike).
    let butterfly = image("opencv_butterfly.jpg");
    let at = whole
        .windows(64)
        .rposition(|w| w == &butterfly[..64])
        .unwrap();
    std::fs::write(shards.join("t-000000.tar"), &whole[..at + 1000]).unwrap();

    let config = job(tmp.path(), &shards, "webdataset");
    ok(&mmcurate(&["run", config.to_str().unwrap()]));
    let out = tmp.path().join("out");
    let rows = rows_by_id(&out);
    let ids: Vec<&str> = rows.keys().map(String::as_str).collect();
    let mut expected = Vec::new();
    for shard in ["s", "t"] {
        for id in [
            "/a",
            "/hard.jpg",
            "/holes.jpg",
            "/link.jpg",
            "/pipe#fifo",
            "/sub/b",
        ] {
            expected.push(format!("0:{shard}-000000.tar{id}"));
        }
    }
    expected.push("0:u-000000.tar".to_string());
    assert_eq!(ids, expected);
    for shard in ["s", "t"] {
        let row = |id: &str| &rows[&format!("0:{shard}-000000.tar/{id}")];
        // The cut shard's copy of the sample is an exact duplicate of the whole shard's.
        let a = if shard == "s" { "kept" } else { "dropped" };
        assert_eq!(row("a")["status"], a, "{}", row("a"));
        for (id, member, what) in [
            ("link.jpg", "link.jpg", "a symbolic link to `a.jpg`"),
            ("hard.jpg", "hard.jpg", "a hard link to `a.jpg`"),
            ("pipe#fifo", "pipe", "a FIFO"),
            ("holes.jpg", "holes.jpg", "a GNU sparse file"),
        ] {
            let row = row(id);
            assert_eq!(row["status"], "dropped", "{row}");
            assert_eq!(row["drop_reason"], "fetch_failed", "{row}");
            assert_eq!(row["tar_member"], member, "{row}");
            let detail = row["drop_detail"].as_str().unwrap();
            let says = format!(
                "/{shard}-000000.tar: member {member} is {what}, not a regular file: not read"
            );
            assert!(detail.ends_with(&says), "{detail}");
        }
    }
    // The folder `sub/` has no row (it is the archive's structure); its sample does.
    assert_eq!(rows["0:s-000000.tar/sub/b"]["status"], "kept");
    let cut = &rows["0:t-000000.tar/sub/b"];
    assert_eq!(cut["drop_reason"], "fetch_failed");
    assert!(
        cut["drop_detail"]
            .as_str()
            .unwrap()
            .contains("member sub/b.jpg is truncated (1000 of"),
        "{cut}"
    );
    let label = rows["0:u-000000.tar"]["drop_detail"].as_str().unwrap();
    assert!(
        label.contains("tar stream broken after 0 samples: numeric field was not a number"),
        "{label}"
    );
    // Links and devices are rows, not input errors; the shard cut short and the one the tar
    // crate cannot read are.
    let errors = input_errors(&out);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("t-000000.tar: member sub/b.jpg is truncated (1000 of"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("u-000000.tar: tar stream broken"),
        "{errors:?}"
    );
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

#[test]
fn malformed_csv_records_are_rows_and_input_errors_not_a_failed_run() {
    // Before, one record with a field missing failed the whole run before any work.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("baboon.jpg"), image("opencv_baboon.jpg")).unwrap();
    std::fs::write(dir.join("butterfly.jpg"), image("opencv_butterfly.jpg")).unwrap();
    let csv = b"url,caption\nbaboon.jpg,a baboon\njust-one-field\nx.jpg,\xff\xfe\nbutterfly.jpg,a butterfly\n";
    std::fs::write(dir.join("m.csv"), csv).unwrap();
    let config = job(tmp.path(), &dir.join("m.csv"), "manifest");
    ok(&mmcurate(&["run", config.to_str().unwrap()]));
    let out = tmp.path().join("out");
    let rows = rows_by_id(&out);
    let row = |n: usize| &rows[&format!("0:m.csv#{n:09}")];
    assert_eq!(rows.len(), 4, "{:?}", rows.keys());
    assert_eq!(row(0)["status"], "kept");
    assert_eq!(row(3)["status"], "kept");
    for (n, line, what) in [
        (1, "m.csv: line 3: ", "found record with 1 fields"),
        (2, "m.csv: line 4: ", "invalid utf-8"),
    ] {
        assert_eq!(row(n)["drop_reason"], "fetch_failed", "{}", row(n));
        let detail = row(n)["drop_detail"].as_str().unwrap();
        assert!(
            detail.contains(line) && detail.contains(what),
            "row {n}: {detail}"
        );
    }
    let errors = input_errors(&out);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("m.csv: line 3"), "{errors:?}");
}

#[test]
fn parquet_footers_that_crashed_the_parquet_crate_are_one_unreadable_row() {
    // Found by fuzz/fuzz_targets/manifest_parquet.rs (scripts/fuzz.sh, 2 December 2026) in the
    // parquet crate (57.3): on the first, an `Option::unwrap()` on `None` in its Thrift footer
    // decoder (a panic, which `parse` contained); on the second, an allocation of the 34.5 GB
    // a Thrift list header declared, which aborted the process. Both footers declare more
    // than they hold, and plan::parquet_footer now refuses them before the crate reads
    // them: the manifest is one row saying so, never a failed or aborted run.
    //
    // The third, CI's find of 2 December 2026 (found again here with another seed): a footer
    // whose known field declared another Thrift type, so the crate read the bytes after it as
    // a list header and allocated 201 GB. The footer is now walked by the crate's own schema.
    for (name, wrong) in [
        (
            "manifest_parquet-thrift-unwrap.parquet",
            "at byte 313 of 700: unknown Thrift type 0",
        ),
        (
            "manifest_parquet-thrift-list-34gb.parquet",
            // The 34.5 GB the crate allocated: 719,123,839 KeyValue of 48 bytes.
            "at byte 20 of 700: 719123839 elements declared, 680 bytes remain",
        ),
        (
            "manifest_parquet-footer-list-201gb.parquet",
            "at byte 3 of 700: field 2 has Thrift type 5, not 9",
        ),
    ] {
        let bytes = read(root().join("tests/fixtures/fuzz").join(name));
        let rows =
            mmcurate::plan::manifest::parse("m.parquet", bytes.into(), "url", "caption").unwrap();
        assert_eq!(rows.len(), 1, "{name}");
        assert_eq!(
            rows[0].error.as_deref().unwrap(),
            format!(
                "m.parquet: cannot read the Parquet manifest past row 0: the Parquet footer is \
                 malformed {wrong}"
            ),
            "{name}"
        );
    }
}

#[test]
fn a_parquet_page_header_that_hung_the_parquet_crate_is_a_ledger_row_and_an_input_error() {
    // Found by fuzz/fuzz_targets/manifest_parquet.rs: a 1,101-byte manifest whose first page
    // header holds, in a field the parquet crate (57.3) does not know, lists of lists of
    // booleans; its `skip_till_depth` takes each boolean of a list as zero bytes, so it looped
    // over them for hours. plan::parquet_pages now refuses the header first. The parse runs in a
    // thread so that a hang fails this test in 20 s instead of hanging the suite.
    let bytes = read(root().join("tests/fixtures/fuzz/manifest_parquet-page-header-hang.parquet"));
    let (done, result) = std::sync::mpsc::channel();
    let parse = bytes.clone();
    std::thread::spawn(move || {
        let rows =
            mmcurate::plan::manifest::parse("h.parquet", parse.into(), "url", "caption").unwrap();
        let _ = done.send(rows);
    });
    let rows = result
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the manifest's parse did not return within 20 s");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].error.as_deref().unwrap(),
        "h.parquet: cannot read the Parquet manifest past row 0: the Parquet column chunk 0 \
         (`url`) of row group 0 is malformed: the page header at byte 53: a list of 4 booleans \
         (the parquet crate would skip them as zero bytes each)"
    );

    // In a run: one dropped row and one input error saying so; the manifest beside it is read.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("baboon.jpg"), image("opencv_baboon.jpg")).unwrap();
    std::fs::write(dir.join("h.parquet"), &bytes).unwrap();
    std::fs::write(dir.join("m.jsonl"), "{\"url\": \"baboon.jpg\"}\n").unwrap();
    let config = job(tmp.path(), &dir, "manifest");
    ok(&mmcurate(&["run", config.to_str().unwrap()]));
    let out = tmp.path().join("out");
    let rows = rows_by_id(&out);
    assert_eq!(rows.len(), 2, "{:?}", rows.keys());
    assert_eq!(rows["0:m.jsonl#000000000"]["status"], "kept");
    let hung = &rows["0:h.parquet#000000000"];
    assert_eq!(hung["status"], "dropped");
    assert_eq!(hung["drop_reason"], "fetch_failed");
    let detail = hung["drop_detail"].as_str().unwrap();
    assert!(
        detail.contains("column chunk 0 (`url`) of row group 0 is malformed: the page header"),
        "{detail}"
    );
    let errors = input_errors(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("h.parquet: cannot read the Parquet manifest past row 0"));
}

#[test]
fn parquet_manifests_that_declare_gigabytes_in_kilobytes_are_refused_before_they_are_decoded() {
    // After CI's fuzz run of 2 December 2026 stopped at a crash in manifest_parquet (its input
    // was not kept), two 4 KB manifests that made the parquet crate (57.3) hold over 2 GB, the
    // fuzz target's limit. The first is the seed manifest with its first data page declaring
    // 2^31 - 1 uncompressed bytes: the crate allocates and zeroes that much before it
    // decompresses a Snappy page. The second, written by pyarrow, is 30,000 rows of one
    // dictionary value of 80 KB, 2.4 GB of rows once decoded.
    let page = read(root().join("tests/fixtures/fuzz/manifest_parquet-page-size-2gb.parquet"));
    let rows = mmcurate::plan::manifest::parse("p.parquet", page.into(), "url", "caption").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].error.as_deref().unwrap(),
        "p.parquet: cannot read the Parquet manifest past row 0: the Parquet column chunk 0 \
         (`url`) of row group 0 is malformed: the page header at byte 38: 11 compressed bytes \
         declare 2147483647 uncompressed, more than the 235 they can hold"
    );

    let dictionary =
        read(root().join("tests/fixtures/fuzz/manifest_parquet-dictionary-2gb.parquet"));
    let size = dictionary.len();
    let rows =
        mmcurate::plan::manifest::parse("d.parquet", dictionary.into(), "url", "caption").unwrap();
    // Its first batch of 1,024 rows is 82 MB as JSON, past the 64 MiB a 4 KB file may decode to.
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].error.as_deref().unwrap(),
        format!(
            "d.parquet: cannot read the Parquet manifest past row 0: its rows decode to more \
             than 67108864 bytes, the most a file of {size} bytes may (64 a byte, at least 64 \
             MiB): a long value its dictionary repeats, or a manifest to split into smaller files"
        )
    );
}

/// The names of the members of every shard of the current version, by shard file name.
fn shard_members(out: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut shards: Vec<_> = std::fs::read_dir(current_version(out).join("shards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    shards.sort();
    for shard in shards {
        let mut archive = tar::Archive::new(std::fs::File::open(&shard).unwrap());
        for entry in archive.entries().unwrap() {
            names.push(entry.unwrap().path().unwrap().display().to_string());
        }
    }
    names
}

#[test]
fn parts_whose_names_cannot_be_written_are_renamed_or_dropped_not_a_failed_run() {
    // The case from issue 13: a sample `k1.jpg` with a second part `k1.` + 120 × `a` failed
    // the whole run at the write stage. Beside it: an empty extension, an extension that is
    // not UTF-8 and one with a backslash and spaces.
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let baboon = image("opencv_baboon.jpg");
    let long = format!("k1.{}", "a".repeat(120));
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &[u8], data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if name.len() <= 100 {
            header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        } else {
            // GNU long name, as GNU tar writes it.
            let path = std::str::from_utf8(name).unwrap();
            builder.append_data(&mut header, path, data).unwrap();
        }
    };
    add(b"k1.jpg", &baboon);
    add(long.as_bytes(), b"the long part");
    add(b"k1.", b"no extension");
    add(b"k1.b\xffn", b"not utf-8");
    add(b"k1.A B\\C", b"odd characters");
    let shard = builder.into_inner().unwrap();
    std::fs::write(shards.join("a-000000.tar"), &shard).unwrap();

    let config = job(tmp.path(), &shards, "webdataset");
    ok(&mmcurate(&["run", config.to_str().unwrap()]));
    let out = tmp.path().join("out");
    let rows = rows_by_id(&out);
    let row = &rows["0:a-000000.tar/k1"];
    assert_eq!(row["status"], "kept", "{row}");
    let cut = format!("aaaaaaaaaa_{}", &sha256_hex(&"a".repeat(120))[..8]);
    assert_eq!(
        row["part_changes"].as_str().unwrap(),
        format!(
            "{long}: written as .{cut}; k1.: dropped, no usable extension; \
             k1.b\u{fffd}n: written as .b_n; k1.A B\\C: written as .a_b_c"
        )
    );
    let mut members = shard_members(&out);
    members.sort();
    let mut expected = vec![
        "k1.a_b_c".to_string(),
        format!("k1.{cut}"),
        "k1.b_n".to_string(),
        "k1.jpg".to_string(),
        "k1.json".to_string(),
    ];
    expected.sort();
    assert_eq!(members, expected);
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[test]
fn playlists_and_concat_lists_disguised_as_video_open_nothing_and_are_dropped() {
    // Issue 13 item 4: FFmpeg opens only the bytes we hand it. Each file names a listener on
    // 127.0.0.1 (or a local file, or a data: URL) that a demuxer following it would open.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let at = listener.local_addr().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    let playlist = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nhttp://{at}/seg0.ts\n#EXT-X-ENDLIST\n"
    );
    let data_urls = "#EXTM3U\n#EXTINF:4,\ndata:video/mp2t;base64,R0dHR0dHR0dH\n#EXT-X-ENDLIST\n";
    let concat = format!("ffconcat version 1.0\nfile 'http://{at}/a.mp4'\nfile '/etc/hostname'\n");
    let mut in_mp4 = b"\0\0\0\x14ftypisom\0\0\0\0isom".to_vec();
    in_mp4.extend_from_slice(playlist.as_bytes());
    let files: [(&str, &[u8]); 5] = [
        ("hls.mp4", playlist.as_bytes()),
        ("data_urls.webm", data_urls.as_bytes()),
        ("concat.mkv", concat.as_bytes()),
        ("concat.mov", concat.as_bytes()),
        ("hls_in_mp4.mp4", &in_mp4),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let config = job(tmp.path(), &dir, "files");
    ok(&mmcurate(&["run", config.to_str().unwrap()]));
    let rows = rows_by_id(&tmp.path().join("out"));
    assert_eq!(rows.len(), files.len(), "{:?}", rows.keys());
    for (name, _) in files {
        let row = &rows[&format!("0:{name}")];
        assert_eq!(row["status"], "dropped", "{row}");
        let reason = row["drop_reason"].as_str().unwrap();
        assert!(["not_media", "unreadable"].contains(&reason), "{row}");
        assert!(!row["drop_detail"].as_str().unwrap().is_empty(), "{row}");
    }
    let detail = rows["0:hls_in_mp4.mp4"]["drop_detail"].as_str().unwrap();
    assert!(detail.starts_with("mov decoder:"), "{detail}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the run connected to {at}"
    );
}

#[test]
fn media_over_the_limits_are_dropped_before_decoding() {
    // Issue 13 item 1: files made to exhaust a decoder, small on disk
    // (tests/python/make_hostile_media.py), and a caption of 70 KB.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    let made = Command::new(python())
        .arg(root().join("tests/python/make_hostile_media.py"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    std::fs::write(dir.join("baboon.jpg"), image("opencv_baboon.jpg")).unwrap();
    std::fs::write(dir.join("long.jpg"), image("opencv_baboon.jpg")).unwrap();
    std::fs::write(dir.join("long.txt"), "word ".repeat(14_000)).unwrap();
    let config = job(tmp.path(), &dir, "files");
    ok(&mmcurate(&["run", config.to_str().unwrap()]));
    let rows = rows_by_id(&tmp.path().join("out"));
    let dropped = |id: &str, reason: &str| {
        let row = &rows[id];
        assert_eq!(row["status"], "dropped", "{row}");
        assert_eq!(row["drop_reason"], reason, "{row}");
        row["drop_detail"].as_str().unwrap().to_string()
    };
    assert_eq!(rows["0:baboon.jpg"]["status"], "kept");
    assert_eq!(
        dropped("0:png16.png", "too_many_pixels"),
        "10000x10000 Rgb16 decodes to 600000000 bytes > limits.max_decode_bytes 536870912; not decoded"
    );
    // The screen is 100 x 100: the 65535 x 65535 frame is caught by the decoder's own limit.
    let gif = dropped("0:gif_frame.gif", "unreadable");
    assert!(gif.contains("limit"), "{gif}");
    // Float samples are counted in bytes (16 per RGBA pixel, 12 per RGB one).
    assert_eq!(
        dropped("0:tiff_float.tif", "too_many_pixels"),
        "10000x10000 Rgb32F decodes to 1200000000 bytes > limits.max_decode_bytes 536870912; not decoded"
    );
    // An APNG is measured on its default image, a TIFF on its first page: the 65535 x 65535
    // frame and the 30000 x 30000 page after them are never decoded.
    let apng = &rows["0:apng_frame.png"];
    assert_eq!(apng["status"], "kept", "{apng}");
    assert_eq!(
        (apng["width"].as_u64(), apng["height"].as_u64()),
        (Some(100), Some(100))
    );
    let pages = &rows["0:tiff_pages.tif"];
    assert_eq!(pages["status"], "kept", "{pages}");
    assert_eq!(
        (pages["width"].as_u64(), pages["height"].as_u64()),
        (Some(100), Some(100))
    );
    assert_eq!(
        dropped("0:wav64.wav", "too_many_channels"),
        "64 channels > limits.max_audio_channels 16; not decoded"
    );
    assert_eq!(
        dropped("0:long.jpg", "caption_too_long"),
        "70000 bytes > limits.max_caption_bytes 65536"
    );

    // A bad limit is a config error naming key, value and range, before any work.
    let out = mmcurate(&[
        "run",
        config.to_str().unwrap(),
        "--set",
        "limits.max_audio_channels=0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("limits.max_audio_channels") && stderr.contains("must be 1 to 255"),
        "{stderr}"
    );
}
