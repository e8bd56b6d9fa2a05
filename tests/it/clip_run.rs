//! The CLIP stages in a whole run, with the random-weight fixture model: caption checks,
//! embeddings written and read back with pyarrow, semantic dedup against brute force over
//! those embeddings, CLIP scores and the alignment quantile, model provenance, determinism
//! across thread counts, the `hf` source through the Hugging Face cache, and the run without
//! a model.

use crate::common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const QUICKSTART: &str = "examples/quickstart/images";
const FIXTURE: &str = "tests/fixtures/clip-tiny";

/// A caption corpus from the quickstart images: file name → caption bytes (None: no caption).
fn corpus(dir: &Path) {
    let long = "a very long caption that goes on and on about the picture ".repeat(12);
    let files: [(&str, &str, Option<&[u8]>); 9] = [
        (
            "baboon.jpg",
            "opencv_baboon.jpg",
            Some(b"a baboon with a colourful face"),
        ),
        // The same picture at half size: a semantic copy that pHash dedup (off here) would
        // also find.
        (
            "baboon_small.jpg",
            "resized_opencv_baboon.jpg",
            Some(b"a mandrill, smaller"),
        ),
        (
            "butterfly.jpg",
            "opencv_butterfly.jpg",
            Some(long.as_bytes()),
        ),
        ("building.jpg", "opencv_building.jpg", None),
        ("rocket.jpg", "skimage_rocket.jpg", Some(b"caf\xe9 au lait")),
        ("aero.jpg", "opencv_aero1.jpg", Some(b"aeroplane")),
        (
            "hopper.jpg",
            "matplotlib_grace_hopper.jpg",
            Some(b"a woman in uniform"),
        ),
        (
            "camera.png",
            "skimage_camera.png",
            Some(b"a man with a camera on a tripod"),
        ),
        (
            "whale.png",
            "opencv_rubberwhale2.png",
            Some(b"toys on a table"),
        ),
    ];
    std::fs::create_dir_all(dir).unwrap();
    for (name, source, caption) in files {
        std::fs::copy(root().join(QUICKSTART).join(source), dir.join(name)).unwrap();
        if let Some(caption) = caption {
            let stem = name.rsplit_once('.').unwrap().0;
            std::fs::write(dir.join(format!("{stem}.txt")), caption).unwrap();
        }
    }
}

fn write_config(dir: &Path, corpus: &Path, output: &Path, threads: usize, model: &str) -> PathBuf {
    let path = dir.join(format!("config-{threads}.toml"));
    let text = format!(
        r#"
[run]
output = "{output}"
threads = {threads}

[[inputs]]
uri = "{corpus}"

[filters.caption]
min_words = 2

[filters.alignment]
keep_top_fraction = 0.5

[dedup]
phash_max_distance = 0
embedding_min_cosine = 0.998

{model}
"#,
        output = output.display(),
        corpus = corpus.display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs a config that must fail; returns its stderr.
fn run_failing(config: &Path, env: &[(&str, &str)]) -> String {
    let run = mmcurate_with_env(&["run", config.to_str().unwrap()], env);
    assert!(!run.status.success(), "the run succeeded");
    String::from_utf8_lossy(&run.stderr).into_owned()
}

fn fixture_model() -> String {
    format!(
        "[models.clip]\npath = \"{}\"\nbatch_size = 3\n",
        root().join(FIXTURE).display()
    )
}

fn by_id(rows: &[Value]) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

fn dot(a: &Value, b: &Value) -> f64 {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.as_f64().unwrap() * y.as_f64().unwrap())
        .sum()
}

#[test]
fn clip_stages_embed_dedup_and_score() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus_dir = tmp.path().join("corpus");
    corpus(&corpus_dir);
    let output = tmp.path().join("out");
    let config = write_config(tmp.path(), &corpus_dir, &output, 2, &fixture_model());
    let run = mmcurate(&["run", config.to_str().unwrap()]);
    ok(&run);
    // The semantic search ran on the run's device (`auto`: the GPU when one answers); its pairs
    // are checked against brute force below, so on a GPU machine this is the GPU's parity.
    let gpu = mmcurate::gpu::select(mmcurate::config::DeviceRequest::Auto)
        .unwrap()
        .cuda
        .map(|gpu| gpu.ordinal);
    let device = gpu.map_or("cpu".to_string(), |n| format!("cuda:{n}"));
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(
        log.contains(&format!(
            "semantic dedup: searching 7 image embeddings (cosine >= 0.998) on {device}"
        )),
        "{log}"
    );

    let ledger = by_id(&ledger_rows(&output));
    let row = |name: &str| &ledger[&format!("0:{name}")];
    // Caption checks run with the cheap filters: nothing is embedded for these.
    assert_eq!(row("rocket.jpg")["drop_reason"], "caption_not_utf8");
    assert_eq!(row("aero.jpg")["drop_reason"], "caption_too_short");
    assert_eq!(
        row("aero.jpg")["drop_detail"],
        "caption has 1 word(s) < min_words 2"
    );
    for name in ["rocket.jpg", "aero.jpg"] {
        assert!(row(name)["clip_model"].is_null(), "{name} was embedded");
    }
    // The long caption is cut to the 77-token context, and says so.
    let butterfly = row("butterfly.jpg");
    assert_eq!(butterfly["caption_truncated"], true);
    assert!(butterfly["caption_tokens"].as_u64().unwrap() > 77);
    assert_eq!(row("baboon.jpg")["caption_truncated"], false);
    assert_eq!(row("baboon.jpg")["caption_words"], 6);
    // No caption: embedded, not scored, and the ledger says why.
    let building = row("building.jpg");
    assert!(building["clip_score"].is_null());
    assert_eq!(building["clip_note"], "not scored: no caption");
    assert_eq!(
        building["status"], "kept",
        "unscored samples are not dropped"
    );

    // Model provenance beside every score, and in the manifest.
    let weights_sha = hex::encode(Sha256::digest(read(
        root().join(FIXTURE).join("model.safetensors"),
    )));
    let manifest: Value =
        serde_json::from_slice(&read(current_version(&output).join("manifest.json"))).unwrap();
    assert_eq!(
        manifest["models"]["clip"]["id"],
        "mmcurate/clip-tiny-random"
    );
    assert_eq!(
        manifest["models"]["clip"]["weights_sha256"],
        weights_sha.as_str()
    );
    assert_eq!(manifest["models"]["clip"]["card_verified"], true);

    // The embeddings, read back with pyarrow.
    let embeddings = python_json("read_embeddings.py", &[output.to_str().unwrap()]);
    let file = &embeddings["files"][0];
    assert_eq!(
        file["metadata"]["clip_weights_sha256"],
        weights_sha.as_str()
    );
    assert_eq!(
        manifest["embeddings"][0]["name"],
        format!("embeddings/{}", file["name"].as_str().unwrap())
    );
    let rows = embeddings["rows"].as_array().unwrap();
    let embedded: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let expected_embedded: Vec<String> = [
        "baboon.jpg",
        "baboon_small.jpg",
        "building.jpg",
        "butterfly.jpg",
        "camera.png",
        "hopper.jpg",
        "whale.png",
    ]
    .iter()
    .map(|n| format!("0:{n}"))
    .collect();
    assert_eq!(embedded, expected_embedded);
    for r in rows {
        let l = &ledger[r["id"].as_str().unwrap()];
        assert_eq!(l["clip_weights_sha256"], weights_sha.as_str());
        assert!(
            (dot(&r["image"], &r["image"]) - 1.0).abs() < 1e-5,
            "unit length"
        );
        // The score is the cosine of the sample's two embeddings.
        match l["clip_score"].as_f64() {
            Some(score) => assert!((score - dot(&r["image"], &r["text"])).abs() < 1e-5),
            None => assert!(r["text"].is_null()),
        }
    }

    // Semantic dedup against brute force over the same embeddings: the linked pairs are the
    // pairs at or above the threshold, and each drop names a sample it is linked to.
    let mut above = Vec::new();
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            let cosine = dot(&a["image"], &b["image"]);
            if cosine >= 0.998 - 1e-6 {
                above.push((a["id"].as_str().unwrap(), b["id"].as_str().unwrap(), cosine));
            }
        }
    }
    let semantic: Vec<&Value> = ledger
        .values()
        .filter(|r| r["drop_reason"] == "semantic_duplicate")
        .collect();
    assert!(!above.is_empty(), "the half-size copy is a semantic copy");
    assert_eq!(semantic.len(), above.len(), "{above:?}");
    let small = row("baboon_small.jpg");
    assert_eq!(small["drop_reason"], "semantic_duplicate");
    let similarity = small["duplicate_similarity"].as_f64().unwrap();
    assert!(similarity >= 0.998, "{similarity}");
    // The keep rule is pHash dedup's: the sharper full-size image stays.
    assert_eq!(small["duplicate_of"], "0:baboon.jpg");

    // Alignment: the threshold is the run's quantile over the scored samples still kept after
    // dedup; half of them (rounded up) are kept.
    let alignment = &manifest["alignment"];
    let threshold = alignment["quantile_threshold"].as_f64().unwrap();
    let scored: Vec<&Value> = ledger
        .values()
        .filter(|r| {
            !r["clip_score"].is_null()
                && (r["status"] == "kept" || r["drop_reason"] == "low_clip_score")
        })
        .collect();
    assert_eq!(alignment["scored"], scored.len() as u64);
    let kept_scored = scored.iter().filter(|r| r["status"] == "kept").count();
    assert_eq!(kept_scored, scored.len().div_ceil(2));
    for r in scored {
        let score = r["clip_score"].as_f64().unwrap();
        assert_eq!(r["status"] == "kept", score >= threshold, "{r}");
        if r["status"] == "dropped" {
            assert_eq!(r["drop_stage"], "alignment");
        }
    }
}

#[test]
fn clip_outputs_do_not_depend_on_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus_dir = tmp.path().join("corpus");
    corpus(&corpus_dir);
    let outputs: Vec<_> = [1, 2]
        .iter()
        .map(|&threads| {
            let output = tmp.path().join(format!("out-{threads}"));
            let config = write_config(tmp.path(), &corpus_dir, &output, threads, &fixture_model());
            ok(&mmcurate(&["run", config.to_str().unwrap()]));
            output
        })
        .collect();
    for part in ["embeddings", "ledger", "shards"] {
        assert_eq!(
            tree(&current_version(&outputs[0]).join(part)),
            tree(&current_version(&outputs[1]).join(part)),
            "{part}/ differs between 1 and 2 threads"
        );
    }
}

/// `hf` reads the Hugging Face cache (here one laid out from the fixture, as hf-hub leaves a
/// download), verifies the weights against the bundled cards and refuses weights that differ
/// from their repository's card; without the files and without network it fails clearly.
#[test]
fn hf_model_from_the_cache_and_a_clear_error_without_network() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus_dir = tmp.path().join("corpus");
    corpus(&corpus_dir);
    let hf_home = tmp.path().join("hf");
    let repo = hf_home.join("hub/models--mmcurate--clip-tiny-random");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(root().join(FIXTURE).join(name), snapshot.join(name)).unwrap();
    }
    // Nothing listens on port 9: any network access fails at once.
    let env = [
        ("HF_HOME", hf_home.to_str().unwrap()),
        ("HF_ENDPOINT", "http://127.0.0.1:9"),
    ];
    let output = tmp.path().join("out");
    let model = "[models.clip]\nhf = \"mmcurate/clip-tiny-random\"\n";
    let config = write_config(tmp.path(), &corpus_dir, &output, 2, model);
    ok(&mmcurate_with_env(&["run", config.to_str().unwrap()], &env));
    let manifest: Value =
        serde_json::from_slice(&read(current_version(&output).join("manifest.json"))).unwrap();
    assert_eq!(
        manifest["models"]["clip"]["id"],
        "mmcurate/clip-tiny-random"
    );
    assert_eq!(manifest["models"]["clip"]["card_verified"], true);

    // Files in the cache under a repository whose card lists other weights are refused.
    let b32 = hf_home.join("hub/models--openai--clip-vit-base-patch32");
    let pinned = "b33cedfd0df4e43b8238760678fcc89e1a0d38b3";
    std::fs::create_dir_all(b32.join("refs")).unwrap();
    std::fs::write(b32.join("refs").join(pinned), pinned).unwrap();
    std::fs::create_dir_all(b32.join("snapshots")).unwrap();
    std::fs::rename(&snapshot, b32.join("snapshots").join(pinned)).unwrap();
    let output = tmp.path().join("out-tampered");
    let model = "[models.clip]\nhf = \"openai/clip-vit-base-patch32\"\n";
    let config = write_config(tmp.path(), &corpus_dir, &output, 2, model);
    let stderr = run_failing(&config, &env);
    assert!(
        stderr.contains("but the model card openai/clip-vit-base-patch32 lists 99d28a652e6ec46629ab7047a0ac82c69b1fe11e0ce672c43af65d3a9a3fc05d"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&b32).unwrap();

    // A repository that is not in the cache needs the network, which is not there.
    let output = tmp.path().join("out-missing");
    let model = "[models.clip]\nhf = \"openai/clip-vit-base-patch32\"\n";
    let config = write_config(tmp.path(), &corpus_dir, &output, 2, model);
    let stderr = run_failing(&config, &env);
    assert!(
        stderr.contains("cannot fetch openai/clip-vit-base-patch32@b33cedfd0df4e43b8238760678fcc89e1a0d38b3 from the Hugging Face Hub"),
        "{stderr}"
    );
    assert!(stderr.contains("set `models.clip.path`"), "{stderr}");
    assert!(!output.join("current.json").exists(), "no work was done");
}

#[test]
fn unknown_weights_are_used_and_recorded_as_unverified() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus_dir = tmp.path().join("corpus");
    corpus(&corpus_dir);
    // An unknown checkpoint in a local folder is used but recorded as unverified.
    let model_dir = tmp.path().join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(root().join(FIXTURE).join(name), model_dir.join(name)).unwrap();
    }
    let mut weights = read(model_dir.join("model.safetensors"));
    let last = weights.len() - 1;
    weights[last] ^= 1; // one bit of the last weight
    std::fs::write(model_dir.join("model.safetensors"), &weights).unwrap();
    let output = tmp.path().join("out");
    let model = format!("[models.clip]\npath = \"{}\"\n", model_dir.display());
    let config = write_config(tmp.path(), &corpus_dir, &output, 2, &model);
    let run = mmcurate(&["run", config.to_str().unwrap()]);
    ok(&run);
    assert!(String::from_utf8_lossy(&run.stderr).contains("match no model card"));
    let manifest: Value =
        serde_json::from_slice(&read(current_version(&output).join("manifest.json"))).unwrap();
    assert_eq!(manifest["models"]["clip"]["card_verified"], false);
    assert_eq!(
        manifest["models"]["clip"]["weights_sha256"],
        hex::encode(Sha256::digest(&weights)).as_str()
    );
}

#[test]
fn without_a_model_the_clip_stages_are_skipped_and_the_run_says_so_once() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus_dir = tmp.path().join("corpus");
    corpus(&corpus_dir);
    let output = tmp.path().join("out");
    let config = write_config(tmp.path(), &corpus_dir, &output, 2, "");
    // The alignment rules need a model: refused before any work.
    let stderr = run_failing(&config, &[]);
    assert!(
        stderr
            .contains("config key `filters.alignment.keep_top_fraction` = 0.5: needs a CLIP model"),
        "{stderr}"
    );
    let run = mmcurate(&[
        "run",
        config.to_str().unwrap(),
        "--set",
        "filters.alignment={}",
    ]);
    let stdout = ok(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        stderr.matches("no [models.clip] in the config").count(),
        1,
        "{stderr}"
    );
    assert!(!stdout.contains("embedded"));
    assert!(!current_version(&output).join("embeddings").exists());
    let manifest: Value =
        serde_json::from_slice(&read(current_version(&output).join("manifest.json"))).unwrap();
    assert!(manifest["models"]["clip"].is_null());
    for row in ledger_rows(&output) {
        assert!(row["clip_score"].is_null() && row["clip_model"].is_null());
    }
}

/// `configs/image-text.toml` as shipped, on WebDataset shards made here, with the fixture model
/// in place of the hub one.
#[test]
fn image_text_example_config_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus_dir = tmp.path().join("corpus");
    corpus(&corpus_dir);
    let shards = tmp.path().join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&corpus_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Three samples per shard; a sample's files stay together, as WebDataset requires.
    let mut samples: Vec<Vec<String>> = Vec::new();
    for name in names {
        let stem = name.rsplit_once('.').unwrap().0.to_string();
        match samples.last_mut() {
            Some(last) if last[0].starts_with(&format!("{stem}.")) => last.push(name),
            _ => samples.push(vec![name]),
        }
    }
    for (index, chunk) in samples.chunks(3).enumerate() {
        let chunk: Vec<&String> = chunk.iter().flatten().collect();
        let file = std::fs::File::create(shards.join(format!("part-{index:03}.tar"))).unwrap();
        let mut tar = tar::Builder::new(file);
        for name in chunk {
            let bytes = read(corpus_dir.join(name));
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, &bytes[..]).unwrap();
        }
        tar.finish().unwrap();
    }
    let output = tmp.path().join("out");
    let model = format!(
        "models.clip={{path = \"{}\", batch_size = 4}}",
        root().join(FIXTURE).display()
    );
    ok(&mmcurate(&[
        "run",
        "configs/image-text.toml",
        "--set",
        &format!("inputs.0.uri=\"{}\"", shards.display()),
        "--set",
        &format!("run.output=\"{}\"", output.display()),
        "--set",
        &model,
    ]));
    let rows = ledger_rows(&output);
    assert_eq!(rows.len(), 9);
    let reason = |key: &str| {
        rows.iter()
            .find(|r| r["key"] == key)
            .map(|r| r["drop_reason"].as_str().unwrap_or("kept").to_string())
            .unwrap()
    };
    assert_eq!(reason("building"), "no_caption");
    assert_eq!(reason("rocket"), "caption_not_utf8");
    assert_eq!(reason("aero"), "caption_too_short");
    for row in &rows {
        match row["status"].as_str().unwrap() {
            "kept" => assert!(row["clip_score"].as_f64().unwrap() >= 0.28, "{row}"),
            _ if row["drop_reason"] == "low_clip_score" => {
                assert!(row["clip_score"].as_f64().unwrap() < 0.28, "{row}")
            }
            _ => {}
        }
    }
}
