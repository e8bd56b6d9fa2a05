//! [`GpuPairProducts`]: `decide::pairs`' within-partition products on a GPU. Each batch of
//! partitions is uploaded once per launch (`pair_plan` lays launches out), cuBLAS SGEMM computes
//! the scores in strict float32 (pedantic math: no TF32 tensor-core rounding, so the products
//! are within float rounding of the CPU's), and kernels/pairs.cu keeps only the candidates at
//! or above the floor, so that only those cross PCIe. The host checks every candidate exactly,
//! as for the CPU's (`decide::pairs::products`), so the pairs are the CPU's, bit for bit.
//!
//! cuBLAS is loaded at run time (cudarc's dynamic loading; linked only by the `cuda` feature's
//! build), so the binary starts without it. A GPU error mid-search makes that batch run on the
//! CPU reference the caller hands in (`decide::pairs::CpuProducts`: `gpu` does not depend on
//! `decide`), inside this backend, with a warning: the results are the same. Choosing the
//! backend for a search is [`select_pair_products`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;

use super::device::CudaDevice;
use super::pair_plan::{PairLimits, PairPlan, PartShape, COMPACT_THREADS};
use super::{kernels_ptx, GpuError, KERNELS, PAIR_KERNELS};
use crate::config::DeviceRequest;
use crate::vector::{Candidate, PairBlock, PairProducts};

/// A CPU implementation of the products, shared: the fallback of a GPU backend.
pub type SharedProducts = Arc<dyn PairProducts + Send + Sync>;

/// Whether the cuBLAS library can be loaded. cudarc panics on the first cuBLAS call when it
/// cannot, so this is checked before any.
pub fn cublas_available() -> bool {
    // With the `cuda` feature candle links libcublas at build time (cudarc's
    // `dynamic-linking`): a binary that started has the library.
    #[cfg(feature = "cuda")]
    return true;
    // SAFETY: only tries to open the shared library; no symbol is called.
    #[cfg(not(feature = "cuda"))]
    unsafe {
        cudarc::cublas::sys::is_culib_present()
    }
}

/// The pair search's products on one GPU.
pub struct GpuPairProducts {
    ordinal: usize,
    limits: PairLimits,
    /// One batch at a time: the engine asks for one anyway, and a cuBLAS handle is not to be
    /// shared by concurrent callers.
    device: Mutex<DeviceParts>,
    /// What computes a batch after a GPU error (the CPU reference), how many batches it
    /// computed, and whether that was reported.
    cpu: SharedProducts,
    fallbacks: AtomicU64,
    warned: AtomicBool,
}

struct DeviceParts {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    pairs_above_floor: CudaFunction,
}

impl std::fmt::Debug for GpuPairProducts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuPairProducts")
            .field("ordinal", &self.ordinal)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn failed<E: std::fmt::Display>(during: &'static str) -> impl Fn(E) -> GpuError {
    move |e| GpuError::Driver {
        during,
        message: e.to_string(),
    }
}

impl GpuPairProducts {
    /// cuBLAS and the compaction kernel on `gpu`, with the default launch limits; `cpu` computes
    /// what the GPU cannot.
    pub fn new(gpu: &CudaDevice, cpu: SharedProducts) -> Result<GpuPairProducts, GpuError> {
        GpuPairProducts::with_limits(gpu, PairLimits::DEFAULT, cpu)
    }

    /// The same with other launch limits (the tests use small ones to exercise many launches).
    pub fn with_limits(
        gpu: &CudaDevice,
        limits: PairLimits,
        cpu: SharedProducts,
    ) -> Result<GpuPairProducts, GpuError> {
        if !cublas_available() {
            return Err(GpuError::CublasMissing);
        }
        let ptx = kernels_ptx()?;
        let index = KERNELS
            .iter()
            .position(|k| k.file == PAIR_KERNELS.file)
            .ok_or(GpuError::Driver {
                during: "kernel lookup",
                message: format!("kernels/{} is not in gpu::KERNELS", PAIR_KERNELS.file),
            })?;
        let module = gpu
            .context
            .load_module(Ptx::from_src(ptx[index].clone()))
            .map_err(failed("module load"))?;
        let pairs_above_floor = module
            .load_function("pairs_above_floor")
            .map_err(failed("function load"))?;
        let stream = gpu
            .context
            .new_stream()
            .map_err(failed("stream creation"))?;
        let blas = CudaBlas::new(stream.clone()).map_err(failed("cuBLAS initialisation"))?;
        // Strict float32: the default math mode already excludes TF32 for SGEMM, but pedantic
        // also keeps out any reduced-precision path a future cuBLAS or an environment variable
        // (NVIDIA_TF32_OVERRIDE) might bring. TF32 would round products by about 1e-3, more
        // than the candidates' slack below the threshold.
        // SAFETY: the handle is live (owned by `blas`); the call only sets its mode.
        unsafe {
            cudarc::cublas::sys::cublasSetMathMode(
                *blas.handle(),
                cublasMath_t::CUBLAS_PEDANTIC_MATH,
            )
        }
        .result()
        .map_err(failed("cuBLAS math mode"))?;
        Ok(GpuPairProducts {
            ordinal: gpu.ordinal,
            limits,
            device: Mutex::new(DeviceParts {
                stream,
                blas,
                pairs_above_floor,
            }),
            cpu,
            fallbacks: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        })
    }

    /// Batches whose products ran on the CPU after a GPU error.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// [`PairProducts::candidates`] without the CPU fallback.
    pub fn try_candidates(
        &self,
        parts: &[PairBlock],
        dim: usize,
        floor: f32,
    ) -> Result<Vec<Vec<Candidate>>, GpuError> {
        if dim == 0 {
            return Ok(vec![Vec::new(); parts.len()]);
        }
        let shapes = PartShape::of(parts, dim);
        for (index, (part, shape)) in parts.iter().zip(&shapes).enumerate() {
            if part.vectors.len() != shape.rows * dim || part.primaries > shape.rows {
                return Err(GpuError::Driver {
                    during: "pair upload",
                    message: format!(
                        "block {index}: {} values and {} primaries for rows of {dim}",
                        part.vectors.len(),
                        part.primaries
                    ),
                });
            }
        }
        let plan =
            PairPlan::new(&shapes, dim, &self.limits).map_err(|message| GpuError::Driver {
                during: "pair plan",
                message,
            })?;
        let mut out = vec![Vec::new(); parts.len()];
        if plan.launches.is_empty() {
            return Ok(out);
        }
        let device = self.device.lock().unwrap_or_else(|p| p.into_inner());
        let stream = &device.stream;
        // cuBLAS works in the thread's current context: the search calls from its worker
        // threads, not the one that made the handle.
        stream
            .context()
            .bind_to_thread()
            .map_err(failed("context"))?;
        let largest = |f: fn(&super::pair_plan::Launch) -> u64| {
            plan.launches.iter().map(f).max().unwrap_or(0).max(1) as usize
        };
        // Sized for the largest launch, once per batch; zeroed, so nothing reads garbage.
        let mut arena = stream
            .alloc_zeros::<f32>(largest(|l| l.vector_floats))
            .map_err(failed("allocation"))?;
        let mut scores = stream
            .alloc_zeros::<f32>(largest(|l| l.score_floats))
            .map_err(failed("allocation"))?;
        let mut capacity = self.limits.candidate_capacity.clamp(1, u32::MAX as usize);
        let mut found = stream
            .alloc_zeros::<u32>(3 * capacity)
            .map_err(failed("allocation"))?;
        let mut count = stream.alloc_zeros::<u32>(1).map_err(failed("allocation"))?;
        for launch in &plan.launches {
            for (k, &part) in launch.parts.iter().enumerate() {
                let at = launch.part_offsets[k] as usize;
                let values = parts[part].vectors;
                stream
                    .memcpy_htod(values, &mut arena.slice_mut(at..at + values.len()))
                    .map_err(failed("upload"))?;
            }
            for k in 0..launch.jobs.len() {
                let g = plan.gemm(launch, k);
                let a = arena.slice(g.a_offset as usize..(g.a_offset + g.a_len()) as usize);
                let mut c =
                    scores.slice_mut(g.c_offset as usize..(g.c_offset + g.c_len()) as usize);
                let config = GemmConfig {
                    transa: cublasOperation_t::CUBLAS_OP_T,
                    transb: cublasOperation_t::CUBLAS_OP_N,
                    m: g.m,
                    n: g.n,
                    k: g.k,
                    alpha: 1.0f32,
                    lda: g.lda,
                    ldb: g.ldb,
                    beta: 0.0f32,
                    ldc: g.ldc,
                };
                // SAFETY: `pair_plan` derives the arguments (its tests check them against BLAS's
                // definition): A and B read `a`, the job's rows of one uploaded partition
                // (a_len floats: cols rows of dim), and C writes the job's rows × cols scores,
                // which `c` holds exactly.
                unsafe { device.blas.gemm(config, &a, &a, &mut c) }
                    .map_err(failed("cuBLAS SGEMM"))?;
            }
            let (offsets, rows, cols) = plan.compact_tables(launch);
            let offsets = stream.clone_htod(&offsets).map_err(failed("upload"))?;
            let rows = stream.clone_htod(&rows).map_err(failed("upload"))?;
            let cols = stream.clone_htod(&cols).map_err(failed("upload"))?;
            let config = LaunchConfig {
                grid_dim: plan.compact_grid(launch),
                block_dim: (COMPACT_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            loop {
                stream.memset_zeros(&mut count).map_err(failed("memset"))?;
                let room = capacity as u32;
                let mut builder = stream.launch_builder(&device.pairs_above_floor);
                builder
                    .arg(&scores)
                    .arg(&offsets)
                    .arg(&rows)
                    .arg(&cols)
                    .arg(&floor)
                    .arg(&mut found)
                    .arg(&room)
                    .arg(&mut count);
                // SAFETY: pairs_above_floor's arguments, in order; every job's rows × cols
                // scores lie in `scores` at its offset (pair_plan), and `found` holds `room`
                // triples, which the kernel never writes beyond.
                unsafe { builder.launch(config) }.map_err(failed("pairs_above_floor"))?;
                let total = stream.clone_dtoh(&count).map_err(failed("download"))?;
                stream.synchronize().map_err(failed("synchronize"))?;
                let total = total.first().copied().unwrap_or(0) as usize;
                if total <= capacity {
                    let mut triples = vec![0u32; 3 * total];
                    if total > 0 {
                        stream
                            .memcpy_dtoh(&found.slice(..3 * total), &mut triples)
                            .map_err(failed("download"))?;
                        stream.synchronize().map_err(failed("synchronize"))?;
                    }
                    plan.add_candidates(launch, &triples, &mut out)
                        .map_err(|message| GpuError::Driver {
                            during: "pairs_above_floor",
                            message,
                        })?;
                    break;
                }
                // More candidates than room: again, with room for all of them (the scores are
                // still there).
                capacity = total.min(u32::MAX as usize);
                found = stream
                    .alloc_zeros::<u32>(3 * capacity)
                    .map_err(failed("allocation"))?;
            }
        }
        Ok(out)
    }
}

impl PairProducts for GpuPairProducts {
    fn device(&self) -> String {
        match self.fallbacks() {
            0 => format!("cuda:{}", self.ordinal),
            n => format!(
                "cuda:{} (CPU after a GPU error in {n} batches)",
                self.ordinal
            ),
        }
    }

    fn candidates(&self, blocks: &[PairBlock], dim: usize, floor: f32) -> Vec<Vec<Candidate>> {
        match self.try_candidates(blocks, dim, floor) {
            Ok(candidates) => candidates,
            Err(e) => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!("{e}; computing the pair products on the CPU instead");
                }
                self.cpu.candidates(blocks, dim, floor)
            }
        }
    }
}

/// The products a pair search runs on, and a line for the log saying which and why.
pub struct SelectedProducts {
    pub products: SharedProducts,
    /// e.g. `cuda:0 (NVIDIA H200)`, `cpu (asked for)` or `cpu (no CUDA driver library
    /// libcuda.so found)`.
    pub description: String,
}

/// Chooses the products for a request, as [`super::select`] chooses a run's device, `cpu`
/// being the CPU reference (which also computes what a GPU cannot): `Auto` never fails (any
/// reason not to use the GPU, cuBLAS missing included, makes it the CPU, with that reason);
/// `Cuda` fails with what to do when the GPU cannot be used.
pub fn select_pair_products(
    request: DeviceRequest,
    cpu: SharedProducts,
) -> Result<SelectedProducts, GpuError> {
    let on_cpu = |products: SharedProducts, why: String| SelectedProducts {
        products,
        description: format!("cpu ({why})"),
    };
    if request == DeviceRequest::Cpu {
        return Ok(on_cpu(cpu, "asked for".to_string()));
    }
    let selected = super::select(request)?;
    products_on(&selected, request, cpu)
}

/// [`select_pair_products`] on a device already selected for `request` (a run's, which also
/// measures and embeds there): the same choice and the same reasons.
pub fn products_on(
    selected: &super::Selected,
    request: DeviceRequest,
    cpu: SharedProducts,
) -> Result<SelectedProducts, GpuError> {
    let on_cpu = |products: SharedProducts, why: String| SelectedProducts {
        products,
        description: format!("cpu ({why})"),
    };
    let Some(gpu) = &selected.cuda else {
        return Ok(on_cpu(cpu, selected.reason.clone()));
    };
    match GpuPairProducts::new(gpu, cpu.clone()) {
        Ok(products) => Ok(SelectedProducts {
            products: Arc::new(products),
            description: format!("cuda:{} ({})", gpu.ordinal, gpu.name),
        }),
        Err(e) if request == DeviceRequest::Auto => Ok(on_cpu(cpu, e.to_string())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::pairs::CpuProducts;

    fn cpu() -> SharedProducts {
        Arc::new(CpuProducts)
    }

    #[test]
    fn without_a_gpu_auto_chooses_the_cpu_products_and_says_why() {
        let chosen = select_pair_products(DeviceRequest::Auto, cpu()).unwrap();
        if !super::super::device::driver_available() {
            assert_eq!(chosen.products.device(), "cpu");
            assert_eq!(
                chosen.description,
                "cpu (no CUDA driver library libcuda.so found)"
            );
        } else if chosen.products.device() == "cpu" {
            assert!(
                chosen.description.starts_with("cpu ("),
                "{}",
                chosen.description
            );
        } else {
            assert!(
                chosen.description.starts_with("cuda:"),
                "{}",
                chosen.description
            );
        }
        let cpu = select_pair_products(DeviceRequest::Cpu, cpu()).unwrap();
        assert_eq!(cpu.products.device(), "cpu");
        assert_eq!(cpu.description, "cpu (asked for)");
    }

    #[test]
    fn cuda_without_a_usable_gpu_is_an_error_that_says_what_to_do() {
        // Far beyond any machine's GPU count, so this holds with or without a GPU.
        let e = select_pair_products(DeviceRequest::Cuda(4000), cpu())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("= \"cuda:4000\""), "{e}");
        if !super::super::device::driver_available() {
            let e = select_pair_products(DeviceRequest::Cuda(0), cpu())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("no CUDA driver library libcuda.so found"), "{e}");
        }
    }

    #[test]
    fn products_are_shareable_across_the_search_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<GpuPairProducts>();
    }
}
