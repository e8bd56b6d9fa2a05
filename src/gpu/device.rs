//! Choosing the device a run measures on (`[run] device`): `auto` takes the GPU when the CUDA
//! driver library loads, a device answers and NVRTC is there to compile the kernels, else the
//! CPU, and says why; `cuda`/`cuda:N` insist on a GPU and fail with what to do instead.
//!
//! This module never panics on a machine without CUDA: cudarc panics on the first driver call
//! when `libcuda.so` is missing, so its presence is checked before anything else.

use std::sync::Arc;

use cudarc::driver::CudaContext;

use super::{nvrtc_available, GpuError};
use crate::config::DeviceRequest;

/// The GPU a run uses.
#[derive(Debug, Clone)]
pub struct CudaDevice {
    pub ordinal: usize,
    /// The name the driver reports, e.g. `NVIDIA H200`.
    pub name: String,
    pub context: Arc<CudaContext>,
}

/// The device a run measures on, and why it was chosen.
#[derive(Debug, Clone)]
pub struct Selected {
    /// `None` for the CPU.
    pub cuda: Option<CudaDevice>,
    /// Why this device, e.g. `no CUDA driver library (libcuda.so) found`.
    pub reason: String,
}

impl Selected {
    /// `cpu` or `cuda:N`, as the run manifest records it.
    pub fn label(&self) -> String {
        match &self.cuda {
            Some(gpu) => format!("cuda:{}", gpu.ordinal),
            None => "cpu".to_string(),
        }
    }

    /// One line for the log, e.g. `cuda:0 (NVIDIA H200; run.device = "auto")` or
    /// `cpu (no CUDA driver library libcuda.so found)`.
    pub fn description(&self) -> String {
        match &self.cuda {
            Some(gpu) => format!("cuda:{} ({}; {})", gpu.ordinal, gpu.name, self.reason),
            None => format!("cpu ({})", self.reason),
        }
    }

    fn cpu(reason: impl Into<String>) -> Selected {
        Selected {
            cuda: None,
            reason: reason.into(),
        }
    }
}

/// Whether the CUDA driver library (`libcuda.so`) can be loaded. cudarc panics on the first
/// driver call when it cannot, so this is checked before any.
pub fn driver_available() -> bool {
    // With the `cuda` feature candle links libcuda.so.1 at build time (cudarc's
    // `dynamic-linking`): a binary that started has the library.
    #[cfg(feature = "cuda")]
    return true;
    // SAFETY: only tries to open the shared library; no symbol is called.
    #[cfg(not(feature = "cuda"))]
    unsafe {
        cudarc::driver::sys::is_culib_present()
    }
}

/// Chooses the device for a request. `Auto` never fails: any reason not to use a GPU makes it
/// the CPU, with that reason. `Cuda` fails with what to do when the GPU cannot be used.
pub fn select(request: DeviceRequest) -> Result<Selected, GpuError> {
    let ordinal = match request {
        DeviceRequest::Cpu => return Ok(Selected::cpu("run.device = \"cpu\"")),
        DeviceRequest::Auto => 0,
        DeviceRequest::Cuda(n) => n,
    };
    match open_gpu(ordinal) {
        Ok(gpu) => Ok(Selected {
            cuda: Some(gpu),
            reason: format!("run.device = \"{}\"", request_value(request)),
        }),
        Err(problem) => match request {
            DeviceRequest::Auto => Ok(Selected::cpu(problem.to_string())),
            _ => Err(GpuError::DeviceUnavailable {
                value: request_value(request),
                problem,
            }),
        },
    }
}

fn request_value(request: DeviceRequest) -> String {
    match request {
        DeviceRequest::Cuda(0) => "cuda".to_string(),
        other => other.as_config_value(),
    }
}

/// Why a GPU cannot be used; each says what the machine lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuProblem {
    #[error("no CUDA driver library libcuda.so found")]
    NoDriver,
    #[error("the CUDA driver finds no GPU ({0})")]
    NoDevice(String),
    #[error("there is no GPU number {ordinal}: the CUDA driver sees {count}")]
    NoSuchDevice { ordinal: usize, count: usize },
    #[error("GPU {ordinal} does not start: {message}")]
    ContextFailed { ordinal: usize, message: String },
    #[error("a GPU was found but NVRTC (libnvrtc.so), which compiles the kernels, was not")]
    NoNvrtc,
}

impl GpuProblem {
    /// What the user can do about it.
    pub fn advice(&self) -> &'static str {
        match self {
            GpuProblem::NoDriver | GpuProblem::NoDevice(_) | GpuProblem::ContextFailed { .. } => {
                "install the NVIDIA driver on a machine with a GPU, or set run.device = \"cpu\" (or \"auto\", which uses a GPU only when there is one)"
            }
            GpuProblem::NoSuchDevice { .. } => {
                "choose a GPU the driver lists (cuda:0 is the first), or set run.device = \"auto\""
            }
            GpuProblem::NoNvrtc => {
                "install the CUDA toolkit or the nvidia-cuda-nvrtc wheel and put its lib folder on LD_LIBRARY_PATH, or set run.device = \"cpu\""
            }
        }
    }
}

fn open_gpu(ordinal: usize) -> Result<CudaDevice, GpuProblem> {
    if !driver_available() {
        return Err(GpuProblem::NoDriver);
    }
    // cuInit fails with CUDA_ERROR_NO_DEVICE when the library is there but no GPU is.
    let count = CudaContext::device_count().map_err(|e| GpuProblem::NoDevice(e.to_string()))?;
    let count = usize::try_from(count).unwrap_or(0);
    if count == 0 {
        return Err(GpuProblem::NoDevice("0 devices".to_string()));
    }
    if ordinal >= count {
        return Err(GpuProblem::NoSuchDevice { ordinal, count });
    }
    let context = CudaContext::new(ordinal).map_err(|e| GpuProblem::ContextFailed {
        ordinal,
        message: e.to_string(),
    })?;
    let name = context.name().unwrap_or_else(|e| format!("unnamed ({e})"));
    // The kernels are compiled at run time: without NVRTC a GPU is no use to us.
    if !nvrtc_available() {
        return Err(GpuProblem::NoNvrtc);
    }
    Ok(CudaDevice {
        ordinal,
        name,
        context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_granted_and_auto_never_fails() {
        let cpu = select(DeviceRequest::Cpu).unwrap();
        assert_eq!(cpu.label(), "cpu");
        assert_eq!(cpu.description(), "cpu (run.device = \"cpu\")");
        let auto = select(DeviceRequest::Auto).unwrap();
        if auto.cuda.is_none() {
            assert!(
                auto.description().starts_with("cpu ("),
                "{}",
                auto.description()
            );
        }
    }

    #[test]
    fn without_a_gpu_cuda_is_an_error_that_says_what_to_do() {
        if !driver_available() {
            let e = select(DeviceRequest::Cuda(0)).unwrap_err().to_string();
            assert!(
                e.starts_with("config key `run.device` = \"cuda\": no CUDA driver library")
                    && e.contains("set run.device = \"cpu\""),
                "{e}"
            );
        }
        // Far beyond any machine's GPU count, so this holds with or without a GPU.
        let e = select(DeviceRequest::Cuda(4000)).unwrap_err().to_string();
        assert!(e.contains("`run.device` = \"cuda:4000\""), "{e}");
    }
}
