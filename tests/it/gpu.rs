//! The GPU path (issue 5): `[run] device` end to end (a GPU asked for on a machine without one
//! is a clear setup error, `auto` falls back to the CPU and says so in the manifest), the GPU
//! plan's host emulation against the CPU reference on the shared images (runs everywhere), and
//! the CUDA kernels against it (runs where there is a GPU; `scripts/gpu/check.sh`).

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

/// The shared images as the measure stage sees them: decoded to luminance by the CPU decoder
/// at the analysis size, in name order.
fn shared_lumas() -> Vec<(String, mmcurate::decode::LumaImage)> {
    use mmcurate::decode::{probe, CpuDecoder, ImageDecoder};
    // scripts/gpu/check.sh runs this binary on another machine, where the build's
    // CARGO_MANIFEST_DIR does not exist: it says where the images are.
    let dir = std::env::var_os("MMCURATE_MEDIA_IMAGES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(shared_images);
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let bytes = read(&path);
        let Ok(info) = probe(&bytes) else { continue };
        let luma = CpuDecoder
            .decode_luma(&bytes, &info, mmcurate::measure::ANALYSIS_SHORT_SIDE)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.push((name, luma));
    }
    assert!(out.len() >= 40, "only {} images decoded", out.len());
    out
}

/// Runs everywhere: the GPU plan, executed by host loops that do each kernel's arithmetic,
/// gives exactly the CPU's measurements on every shared image. What only a GPU can add is that
/// the CUDA code does what those loops do (the parity test below).
#[test]
fn the_gpu_plan_emulated_on_the_host_measures_the_shared_images_as_the_cpu() {
    use mmcurate::measure::{CpuKernels, QualityKernels};
    let images = shared_lumas();
    let lumas: Vec<_> = images.iter().map(|(_, l)| l.clone()).collect();
    let sizes: Vec<_> = lumas.iter().map(|l| (l.width, l.height)).collect();
    let plan = mmcurate::gpu::plan::MeasurePlan::new(&sizes);
    let emulated = plan.emulate(&lumas).expect("planned sizes");
    for ((name, luma), gpu) in images.iter().zip(emulated) {
        assert_eq!(gpu, CpuKernels.measure(luma), "{name}");
    }
}

/// Relative error, 0 when both are 0.
fn relative_error(a: f64, b: f64) -> f64 {
    let scale = a.abs().max(b.abs());
    if scale == 0.0 {
        0.0
    } else {
        (a - b).abs() / scale
    }
}

/// Runs when a GPU is there (else returns at once, saying why): the CUDA kernels against the
/// CPU reference on every shared image, in one batch and one at a time. Issue 5's bar:
/// identical pHash and dHash on at least 99% of images, sharpness and brightness within 1e-3
/// relative error. The kernels are written to agree exactly, so the summary line also says
/// how many are bit-identical.
#[test]
fn gpu_parity_on_the_shared_images() {
    use mmcurate::gpu::{select, CudaKernels, DeviceRequest};
    use mmcurate::measure::{CpuKernels, QualityKernels};
    let selected = select(DeviceRequest::Auto).unwrap_or_else(|e| panic!("{e}"));
    let Some(device) = &selected.cuda else {
        println!("gpu parity: skipped, no CUDA device ({})", selected.reason);
        return;
    };
    let kernels = CudaKernels::new(device).unwrap_or_else(|e| panic!("{e}"));
    let images = shared_lumas();
    let lumas: Vec<_> = images.iter().map(|(_, l)| l.clone()).collect();
    let batched = kernels
        .try_measure_batch(&lumas)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(batched.len(), lumas.len());
    let n = lumas.len();
    let (mut phash_same, mut dhash_same, mut identical) = (0, 0, 0);
    let (mut sharpness_err, mut brightness_err) = (0f64, 0f64);
    for ((name, luma), gpu) in images.iter().zip(&batched) {
        let cpu = CpuKernels.measure(luma);
        phash_same += (gpu.phash == cpu.phash) as usize;
        dhash_same += (gpu.dhash == cpu.dhash) as usize;
        identical += (*gpu == cpu) as usize;
        let (s, b) = (
            relative_error(gpu.sharpness, cpu.sharpness),
            relative_error(gpu.brightness, cpu.brightness),
        );
        assert!(s <= 1e-3 && b <= 1e-3, "{name}: GPU {gpu:?} vs CPU {cpu:?}");
        sharpness_err = sharpness_err.max(s);
        brightness_err = brightness_err.max(b);
        // One image per launch takes the same path as the batch.
        assert_eq!(kernels.measure(luma), *gpu, "{name}: alone vs in a batch");
    }
    println!(
        "gpu parity on {}: {n} images, pHash identical {phash_same}/{n}, dHash identical {dhash_same}/{n}, all fields identical {identical}/{n}, max relative error sharpness {sharpness_err:.2e} brightness {brightness_err:.2e}",
        device.name
    );
    assert!(
        phash_same * 100 >= n * 99,
        "pHash identical on {phash_same}/{n}"
    );
    assert!(
        dhash_same * 100 >= n * 99,
        "dHash identical on {dhash_same}/{n}"
    );
}
