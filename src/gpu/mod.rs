//! The GPU backend's foundation: CUDA kernels from `kernels/*.cu`, compiled at run time with
//! NVRTC through `cudarc`, which loads the CUDA libraries dynamically. The default binary thus
//! links no CUDA library, starts on any machine, and uses the CPU where there is no GPU.
//!
//! `device` chooses the device a run uses (`[run] device`). The CPU implementations in
//! `measure` are the reference the kernels must agree with; `pair_products` runs the products
//! of `decide::pairs` through cuBLAS (loaded at run time too), with the CPU's as reference.

pub mod backend;
pub mod batcher;
pub mod clip_plan;
pub mod cuda;
pub mod device;
pub mod nvjpeg;
pub mod pair_plan;
pub mod pair_products;
pub mod plan;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub use cuda::CudaKernels;

pub use device::{select, Selected};
// Parsed by `config` (it owns `[run] device`); re-exported so that `gpu::select`'s callers
// (pipeline, tests) name the request where they name the function.
pub use crate::config::DeviceRequest;

pub use nvjpeg::GpuJpegDecoder;

/// A kernel source file and the entry points it must define.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    pub file: &'static str,
    pub source: &'static str,
    pub entry_points: &'static [&'static str],
}

/// Every kernel file, embedded in the binary.
pub const KERNELS: &[KernelSource] = &[
    QUALITY_KERNELS,
    RESAMPLE_KERNELS,
    CLIP_KERNELS,
    PAIR_KERNELS,
];

/// CLIP's crop and normalisation into the model's input tensor (`clip_plan`).
pub const CLIP_KERNELS: KernelSource = KernelSource {
    file: "clip.cu",
    source: include_str!("../../kernels/clip.cu"),
    entry_points: &["clip_normalise"],
};

/// The candidates of the pair search's products above a floor (`pair_products`).
pub const PAIR_KERNELS: KernelSource = KernelSource {
    file: "pairs.cu",
    source: include_str!("../../kernels/pairs.cu"),
    entry_points: &["pairs_above_floor"],
};

/// Luminance, the analysis sums and the hashes.
pub const QUALITY_KERNELS: KernelSource = KernelSource {
    file: "quality.cu",
    source: include_str!("../../kernels/quality.cu"),
    entry_points: &["rgb_to_luma", "analyse", "phash32", "dhash9x8"],
};

/// One pass of Pillow's fixed-point resize, batched (`plan::PassJob`).
pub const RESAMPLE_KERNELS: KernelSource = KernelSource {
    file: "resample.cu",
    source: include_str!("../../kernels/resample.cu"),
    entry_points: &["resample_pass"],
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum GpuError {
    #[error("the NVRTC library (libnvrtc.so) was not found: install the CUDA toolkit or the nvidia-cuda-nvrtc wheel and put its lib folder on LD_LIBRARY_PATH")]
    NvrtcMissing,
    #[error("a GPU was found but cuBLAS (libcublas.so), which the pair search's products use, was not: install the CUDA toolkit or the nvidia-cublas wheel and put its lib folder on LD_LIBRARY_PATH, or use the CPU")]
    CublasMissing,
    #[error("kernels/{file} does not compile: {log}")]
    Compile { file: String, log: String },
    #[error("config key `run.device` = \"{value}\": {problem}: {}", .problem.advice())]
    DeviceUnavailable {
        value: String,
        problem: device::GpuProblem,
    },
    #[error("CUDA {during} failed: {message}; set run.device = \"cpu\" to measure on the CPU")]
    Driver {
        during: &'static str,
        message: String,
    },
}

/// Whether the NVRTC library can be loaded. cudarc panics on first use when it cannot, so this
/// is checked before any NVRTC call.
pub fn nvrtc_available() -> bool {
    // With the `cuda` feature libnvrtc is linked at build time (see `driver_available`).
    #[cfg(feature = "cuda")]
    return true;
    // SAFETY: only tries to open the shared library; no symbol is called.
    #[cfg(not(feature = "cuda"))]
    unsafe {
        cudarc::nvrtc::sys::is_culib_present()
    }
}

/// The NVRTC options every kernel is compiled with. No fused multiply-adds: the kernels'
/// floating point must round like the CPU reference's (the pHash DCT also uses explicit
/// `__dmul_rn`/`__dadd_rn`, which this makes doubly sure of).
fn compile_options(kernel: &KernelSource) -> cudarc::nvrtc::CompileOptions {
    cudarc::nvrtc::CompileOptions {
        name: Some(kernel.file.to_string()),
        fmad: Some(false),
        ..Default::default()
    }
}

/// Compiles one kernel file to PTX.
pub fn compile(kernel: &KernelSource) -> Result<String, GpuError> {
    if !nvrtc_available() {
        return Err(GpuError::NvrtcMissing);
    }
    let options = compile_options(kernel);
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

/// The PTX of every kernel file, in [`KERNELS`] order: compiled once per process, and kept on
/// disk under `$XDG_CACHE_HOME/mmcurate/ptx` (or `~/.cache/mmcurate/ptx`), named by the sha256
/// of the source, the options and the NVRTC version, so later runs skip NVRTC.
pub fn kernels_ptx() -> Result<&'static [String], GpuError> {
    static PTX: OnceLock<Result<Vec<String>, GpuError>> = OnceLock::new();
    PTX.get_or_init(|| KERNELS.iter().map(cached_ptx).collect())
        .as_deref()
        .map_err(Clone::clone)
}

/// The folder of cached PTX files, if there is a home for it.
pub fn ptx_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("mmcurate").join("ptx"))
}

/// The cache key of a kernel: sha256 of its source, its compile options and the NVRTC version.
pub fn ptx_cache_key(kernel: &KernelSource) -> String {
    let (mut major, mut minor) = (0, 0);
    if nvrtc_available() {
        // SAFETY: NVRTC is loaded (checked just above); the call only writes the two ints.
        unsafe {
            let _ = cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor);
        }
    }
    let mut hasher = Sha256::new();
    hasher.update(kernel.source.as_bytes());
    hasher.update(format!(
        "\0{:?}\0nvrtc {major}.{minor}",
        compile_options(kernel)
    ));
    hex::encode(hasher.finalize())
}

fn cached_ptx(kernel: &KernelSource) -> Result<String, GpuError> {
    let path = ptx_cache_dir().map(|dir| dir.join(format!("{}.ptx", ptx_cache_key(kernel))));
    if let Some(ptx) = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
        tracing::debug!("kernels/{}: PTX from the cache", kernel.file);
        return Ok(ptx);
    }
    let ptx = compile(kernel)?;
    if let Some(path) = path {
        // A cache that cannot be written only costs the next run a compile.
        if let Err(e) = write_atomically(&path, ptx.as_bytes()) {
            tracing::debug!("cannot cache PTX at {}: {e}", path.display());
        }
    }
    Ok(ptx)
}

/// Writes next to `path`, then renames, so a concurrent run never reads half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptx_cache_keys_follow_source_and_options() {
        let a = ptx_cache_key(&QUALITY_KERNELS);
        assert_eq!(a, ptx_cache_key(&QUALITY_KERNELS));
        assert_ne!(a, ptx_cache_key(&RESAMPLE_KERNELS));
        assert_eq!(a.len(), 64);
        let edited = KernelSource {
            source: "// edited\n",
            ..QUALITY_KERNELS
        };
        assert_ne!(a, ptx_cache_key(&edited));
    }

    #[test]
    fn kernels_compile_once_and_land_in_the_cache() {
        if !nvrtc_available() {
            return; // tests/it/kernels.rs insists on NVRTC; this one is about the cache.
        }
        let Some(dir) = ptx_cache_dir() else { return };
        let ptx = kernels_ptx().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ptx.len(), KERNELS.len());
        for (kernel, ptx) in KERNELS.iter().zip(ptx) {
            for entry in kernel.entry_points {
                assert!(ptx.contains(&format!(".entry {entry}(")), "{entry}");
            }
            let cached = dir.join(format!("{}.ptx", ptx_cache_key(kernel)));
            assert_eq!(std::fs::read_to_string(&cached).ok().as_ref(), Some(ptx));
        }
    }
}
