//! The GPU path (issue 5): `[run] device` end to end (a GPU asked for on a machine without one
//! is a clear setup error, `auto` falls back to the CPU and says so in the manifest).

use crate::common::*;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn run_with_device(output: &std::path::Path, device: &str) -> std::process::Output {
    mmcurate(&[
        "run",
        "configs/quickstart.toml",
        "--set",
        &format!("run.output={}", output.display()),
        "--set",
        &format!("run.device={device}"),
    ])
}

#[test]
fn cuda_without_a_gpu_exits_2_before_any_work() {
    if mmcurate::gpu::device::driver_available() {
        eprintln!("gpu device: skipped, this machine has the CUDA driver library");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    let out = run_with_device(&output, "cuda");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("config key `run.device` = \"cuda\": no CUDA driver library libcuda.so found: install the NVIDIA driver")
            && message.contains("or set run.device = \"cpu\""),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
    assert!(!output.exists(), "nothing may be written");
}

#[test]
fn auto_without_a_gpu_runs_on_the_cpu_and_says_so() {
    if mmcurate::gpu::device::driver_available() {
        eprintln!("gpu device: skipped, this machine has the CUDA driver library");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    let out = run_with_device(&output, "auto");
    ok(&out);
    assert!(
        stderr(&out).contains("measuring on cpu (no CUDA driver library libcuda.so found)"),
        "{}",
        stderr(&out)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(output.join("manifest.json"))).unwrap();
    assert_eq!(manifest["run"]["device"], "cpu");
    assert_eq!(manifest["config"]["run"]["device"], "auto");
}

#[test]
fn an_unknown_device_is_a_config_error_naming_the_allowed_values() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("out");
    let out = run_with_device(&output, "gpu");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "config key `run.device` = \"gpu\": must be \"auto\" (the GPU when there is one, else the CPU), \"cpu\", \"cuda\" or \"cuda:N\""
        ),
        "{}",
        stderr(&out)
    );
    assert!(!output.exists());
}
