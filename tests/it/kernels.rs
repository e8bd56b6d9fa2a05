//! Every CUDA kernel in kernels/ compiles with NVRTC and defines its entry points. No GPU is
//! needed: scripts/test.sh installs NVRTC from the `nvidia-cuda-nvrtc` wheel and puts it on
//! LD_LIBRARY_PATH, so a kernel that does not compile fails CI.

use mmcurate::gpu::{compile, nvrtc_available, KERNELS};

#[test]
fn every_kernel_compiles_with_nvrtc() {
    assert!(
        nvrtc_available(),
        "NVRTC not found: run `bash scripts/test.sh` (it installs the nvidia-cuda-nvrtc wheel and sets LD_LIBRARY_PATH)"
    );
    let files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/kernels"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cu"))
        .collect();
    assert_eq!(
        files.len(),
        KERNELS.len(),
        "every kernels/*.cu must be listed in gpu::KERNELS"
    );
    for kernel in KERNELS {
        let ptx = compile(kernel).unwrap_or_else(|e| panic!("{e}"));
        for entry in kernel.entry_points {
            assert!(
                ptx.contains(&format!(".entry {entry}(")),
                "{}: no entry point {entry}",
                kernel.file
            );
        }
    }
}

#[test]
fn a_broken_kernel_is_reported_with_the_compiler_log() {
    assert!(nvrtc_available());
    let broken = mmcurate::gpu::KernelSource {
        file: "broken.cu",
        source: "extern \"C\" __global__ void f() { undeclared_thing = 1; }",
        entry_points: &["f"],
    };
    let error = compile(&broken).unwrap_err().to_string();
    assert!(
        error.starts_with("kernels/broken.cu does not compile")
            && error.contains("undeclared_thing"),
        "{error}"
    );
}
