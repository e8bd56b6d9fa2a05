//! deploy/kubernetes without a cluster: every manifest parses as YAML (PyYAML, from the test
//! venv), the phase Jobs are shaped as the README says (Indexed Jobs whose completions match
//! --num-shards for measure, write and the optional decide partition tasks, one pod for decide
//! and commit, all mounting the ConfigMap), the ConfigMap's job file is a valid mmcurate config writing to an object store
//! (pods share no disk), and the chain script is valid bash.

use crate::common::*;
use serde_json::Value;
use std::process::Command;

/// The Jobs' manifests (`<name>.yaml`) and the `--phase` each runs.
const PHASES: [(&str, &str); 5] = [
    ("measure", "measure"),
    ("decide-partitions", "decide"),
    ("decide", "decide"),
    ("write", "write"),
    ("commit", "commit"),
];

/// Every document of every manifest in deploy/kubernetes, as JSON (file name → documents).
fn manifests() -> serde_json::Map<String, Value> {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let parsed = python_json("read_yaml.py", &args);
    parsed
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, docs)| {
            let name = path.rsplit('/').next().unwrap().to_string();
            (name, docs.clone())
        })
        .collect()
}

/// The value after `flag` in a container's args.
fn arg_after<'a>(args: &'a [Value], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1)?.as_str()
}

#[test]
fn kubernetes_manifests_are_one_indexed_job_per_phase_reading_the_configmap() {
    let files = manifests();
    let configmap = &files["configmap.yaml"].as_array().unwrap()[0];
    assert_eq!(configmap["kind"], "ConfigMap");
    let configmap_name = configmap["metadata"]["name"].as_str().unwrap();
    let config_text = configmap["data"]["config.toml"].as_str().unwrap();

    // The job file is a valid config, and its inputs and output are in an object store.
    let config = mmcurate::config::Config::from_toml_str(config_text, "configmap.yaml", &[])
        .unwrap_or_else(|e| panic!("the ConfigMap's config.toml: {e}"));
    assert!(
        config.run.output.starts_with("s3://"),
        "{}",
        config.run.output
    );
    assert!(config.inputs.iter().all(|i| i.uri.starts_with("s3://")));

    for (phase, runs) in PHASES {
        let docs = files[&format!("{phase}.yaml")].as_array().unwrap();
        assert_eq!(docs.len(), 1, "{phase}.yaml holds one Job");
        let job = &docs[0];
        assert_eq!(job["apiVersion"], "batch/v1");
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["metadata"]["name"], format!("mmcurate-{phase}"));
        let spec = &job["spec"];
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never", "{phase}");
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        let container = &containers[0];
        let args = container["args"].as_array().unwrap();
        assert_eq!(args[0], "run");
        assert_eq!(args[1], "/etc/mmcurate/config.toml");
        assert_eq!(arg_after(args, "--phase"), Some(runs));
        assert_eq!(
            arg_after(args, "--set"),
            Some("run.threads=$(MMCURATE_THREADS)")
        );
        let threads_from = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "MMCURATE_THREADS")
            .map(|e| &e["valueFrom"]["resourceFieldRef"]);
        assert_eq!(
            threads_from.map(|r| r["resource"].clone()),
            Some(Value::from("limits.cpu")),
            "{phase}: threads follow the CPU limit"
        );

        // The config comes from the ConfigMap, mounted where the args read it.
        let volumes = pod["volumes"].as_array().unwrap();
        let config_volume = volumes
            .iter()
            .find(|v| v["configMap"]["name"] == configmap_name)
            .unwrap_or_else(|| panic!("{phase} mounts no ConfigMap {configmap_name}"));
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == config_volume["name"])
            .unwrap_or_else(|| panic!("{phase} does not mount its config volume"));
        assert_eq!(mount["mountPath"], "/etc/mmcurate");

        let requests = &container["resources"]["requests"];
        assert!(requests["cpu"].is_string() && requests["memory"].is_string());

        match phase {
            "measure" | "write" | "decide-partitions" => {
                assert_eq!(spec["completionMode"], "Indexed", "{phase}");
                let completions = spec["completions"].as_u64().unwrap();
                assert!(completions >= 2, "{phase}: {completions} completions");
                assert_eq!(
                    arg_after(args, "--num-shards"),
                    Some(completions.to_string().as_str()),
                    "{phase}: --num-shards equals completions (the pods' JOB_COMPLETION_INDEX runs 0..completions)"
                );
                assert!(spec["parallelism"].as_u64().unwrap() <= completions);
                assert!(!args.iter().any(|a| a == "--shard-index"));
            }
            _ => {
                assert_eq!(spec["completions"], 1, "{phase}");
                assert!(spec.get("completionMode").is_none());
                assert_eq!(arg_after(args, "--num-shards"), None);
            }
        }
    }
    let names: Vec<&String> = files.keys().collect();
    assert_eq!(
        names,
        [
            "commit.yaml",
            "configmap.yaml",
            "decide-partitions.yaml",
            "decide.yaml",
            "measure.yaml",
            "write.yaml"
        ]
    );

    let syntax = Command::new("bash")
        .arg("-n")
        .arg(root().join("deploy/kubernetes/run.sh"))
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
}
