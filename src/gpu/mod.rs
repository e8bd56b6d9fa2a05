//! The GPU backend's foundation: CUDA kernels from `kernels/*.cu`, compiled at run time with
//! NVRTC through `cudarc`, which loads the CUDA libraries dynamically. The default binary thus
//! links no CUDA library, starts on any machine, and uses the CPU where there is no GPU.
//!
//! `device` chooses the device a run uses (`[run] device`). The CPU implementations in
//! `measure` are the reference the kernels must agree with.

pub mod device;

pub use device::{select, DeviceRequest, Selected};

/// A kernel source file and the entry points it must define.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    pub file: &'static str,
    pub source: &'static str,
    pub entry_points: &'static [&'static str],
}

/// Every kernel file, embedded in the binary.
pub const KERNELS: &[KernelSource] = &[KernelSource {
    file: "quality.cu",
    source: include_str!("../../kernels/quality.cu"),
    entry_points: &["rgb_to_luma", "analyse", "phash32", "dhash9x8"],
}];

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("the NVRTC library (libnvrtc.so) was not found: install the CUDA toolkit or the nvidia-cuda-nvrtc wheel and put its lib folder on LD_LIBRARY_PATH")]
    NvrtcMissing,
    #[error("kernels/{file} does not compile: {log}")]
    Compile { file: String, log: String },
    #[error("config key `run.device` = \"{value}\": {problem}: {}", .problem.advice())]
    DeviceUnavailable {
        value: String,
        problem: device::GpuProblem,
    },
}

/// Whether the NVRTC library can be loaded. cudarc panics on first use when it cannot, so this
/// is checked before any NVRTC call.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to open the shared library; no symbol is called.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles one kernel file to PTX.
pub fn compile(kernel: &KernelSource) -> Result<String, GpuError> {
    if !nvrtc_available() {
        return Err(GpuError::NvrtcMissing);
    }
    let options = cudarc::nvrtc::CompileOptions {
        name: Some(kernel.file.to_string()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(kernel.source, options)
        .map(|ptx| ptx.to_src())
        .map_err(|e| GpuError::Compile {
            file: kernel.file.to_string(),
            log: match e {
                cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                    log.to_string_lossy().into_owned()
                }
                other => other.to_string(),
            },
        })
}
