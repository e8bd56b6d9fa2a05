//! JPEG decoding on the GPU with nvJPEG, loaded at run time: [`GpuJpegDecoder`] decodes the
//! luminance plane (`NVJPEG_OUTPUT_Y`, all that measuring needs) into device memory, on the
//! hardware JPEG engine where the GPU has one (A100, H100/H200) and on nvJPEG's CUDA decoder
//! otherwise. Anything nvJPEG cannot or should not decode goes to [`CpuDecoder`], per sample.
//!
//! No crate binds nvJPEG, so the few entry points used are declared here from `nvjpeg.h` and
//! resolved once with `libloading`; all the unsafe code of this module sits in [`ffi`] and in the
//! handle, state and decode calls below it, each with its SAFETY note. A machine without
//! libnvjpeg gets an [`NvjpegError`] saying what to install, never a panic.
//!
//! Not here: choosing the device (`gpu::device`), measuring (`gpu::CudaKernels`). The pipeline
//! still downloads the luminance to the host, because `decode::ImageDecoder` returns host
//! memory; [`GpuJpegDecoder::decode_luma_device`] is the start of the zero-copy path.

use std::ffi::{c_int, c_uchar, c_uint};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtrMut, DriverError};
use image::ImageFormat;

use super::device::{CudaDevice, Selected};
use crate::decode::{CpuDecoder, DecodeError, ImageDecoder, ImageInfo, LumaImage};

/// The library names tried, in this order: CUDA 13's, CUDA 12's, then whatever `libnvjpeg.so`
/// the loader finds (a development install).
pub const LIBRARY_NAMES: [&str; 3] = ["libnvjpeg.so.13", "libnvjpeg.so.12", "libnvjpeg.so"];

/// Why nvJPEG cannot be used, or could not decode one image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvjpegError {
    #[error("the nvJPEG library was not found (tried {tried}; last: {message}): install nvJPEG (the CUDA toolkit's libnvjpeg, or the nvidia-nvjpeg wheel for CUDA 13, nvidia-nvjpeg-cu12 for CUDA 12) and put its lib folder on LD_LIBRARY_PATH; JPEGs are decoded on the CPU until then")]
    LibraryMissing { tried: String, message: String },
    #[error("{library} has no symbol {symbol} ({message}): it is not nvJPEG, or too old a release; install nvJPEG from CUDA 12 or 13")]
    SymbolMissing {
        library: String,
        symbol: &'static str,
        message: String,
    },
    #[error("nvJPEG {call} failed: {} ({status})", status_name(*.status))]
    Call { call: &'static str, status: i32 },
    #[error("CUDA {during} failed for nvJPEG: {message}")]
    Driver {
        during: &'static str,
        message: String,
    },
    /// Routed to the CPU before nvJPEG was asked (CMYK, 12-bit, lossless, RGB-coded, …).
    #[error("left to the CPU decoder: {0}")]
    Unsupported(String),
    #[error("nvJPEG's self-check failed: {0}")]
    SelfCheck(String),
}

fn driver(during: &'static str) -> impl Fn(DriverError) -> NvjpegError {
    move |e| NvjpegError::Driver {
        during,
        message: e.to_string(),
    }
}

/// The name of an `nvjpegStatus_t` value (nvjpeg.h, "nvJPEG API Return Codes").
pub fn status_name(status: i32) -> &'static str {
    match status {
        0 => "NVJPEG_STATUS_SUCCESS",
        1 => "NVJPEG_STATUS_NOT_INITIALIZED",
        2 => "NVJPEG_STATUS_INVALID_PARAMETER",
        3 => "NVJPEG_STATUS_BAD_JPEG",
        4 => "NVJPEG_STATUS_JPEG_NOT_SUPPORTED",
        5 => "NVJPEG_STATUS_ALLOCATOR_FAILURE",
        6 => "NVJPEG_STATUS_EXECUTION_FAILED",
        7 => "NVJPEG_STATUS_ARCH_MISMATCH",
        8 => "NVJPEG_STATUS_INTERNAL_ERROR",
        9 => "NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED",
        10 => "NVJPEG_STATUS_INCOMPLETE_BITSTREAM",
        _ => "unknown nvjpegStatus_t",
    }
}

fn check(call: &'static str, status: ffi::NvjpegStatus) -> Result<(), NvjpegError> {
    if status == ffi::NVJPEG_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(NvjpegError::Call { call, status })
    }
}

/// The declarations from `nvjpeg.h` (CUDA 12/13; the NVIDIA nvJPEG documentation, section 2.2
/// "Type Declarations" and 2.3 "API Reference"), only those this module calls. C enums are
/// `int` on the platforms CUDA supports.
pub mod ffi {
    use std::ffi::{c_int, c_uchar, c_uint, c_void};

    /// `nvjpegStatus_t`; 0 is `NVJPEG_STATUS_SUCCESS` (2.3.x "nvJPEG API Return Codes").
    pub type NvjpegStatus = c_int;
    pub const NVJPEG_STATUS_SUCCESS: NvjpegStatus = 0;

    /// `nvjpegBackend_t` (2.2.1): `NVJPEG_BACKEND_DEFAULT = 0`, `NVJPEG_BACKEND_HARDWARE = 3`
    /// (the JPEG engine of A100/A30, Hopper, Ada and Blackwell; 1.5 "Hardware Acceleration").
    pub type NvjpegBackend = c_int;
    pub const NVJPEG_BACKEND_DEFAULT: NvjpegBackend = 0;
    pub const NVJPEG_BACKEND_HARDWARE: NvjpegBackend = 3;

    /// `nvjpegOutputFormat_t`: `NVJPEG_OUTPUT_Y = 2`, "return the Y component only", written to
    /// `channel[0]` with `pitch[0] >= width[0]` (2.1.1).
    pub type NvjpegOutputFormat = c_int;
    pub const NVJPEG_OUTPUT_Y: NvjpegOutputFormat = 2;
    /// `NVJPEG_OUTPUT_RGBI = 5`: interleaved RGB in `channel[0]`, `pitch[0] >= 3 * width`.
    pub const NVJPEG_OUTPUT_RGBI: NvjpegOutputFormat = 5;

    /// `nvjpegChromaSubsampling_t` (2.3.x "nvJPEG Chroma Subsampling"); read, not interpreted.
    pub type NvjpegChromaSubsampling = c_int;

    /// `libraryPropertyType` (library_types.h): `MAJOR_VERSION = 0`, `MINOR_VERSION = 1`,
    /// `PATCH_LEVEL = 2`.
    pub type LibraryPropertyType = c_int;

    /// `NVJPEG_FLAGS_DEFAULT 0`, `NVJPEG_FLAGS_HW_DECODE_NO_PIPELINE 1` (2.2.17): the latter
    /// stops the hardware backend from holding images back between batched calls, so that
    /// each call's output is complete once its stream is.
    pub const NVJPEG_FLAGS_DEFAULT: c_uint = 0;
    pub const NVJPEG_FLAGS_HW_DECODE_NO_PIPELINE: c_uint = 1;

    /// `#define NVJPEG_MAX_COMPONENT 4`.
    pub const NVJPEG_MAX_COMPONENT: usize = 4;

    /// `struct nvjpegHandle*` (2.2.13): "thread safe, and can be used by multiple threads
    /// simultaneously".
    pub type NvjpegHandle = *mut c_void;
    /// `struct nvjpegJpegState*` (2.2.12): one per thread at a time (1.3 "Thread Safety").
    pub type NvjpegJpegState = *mut c_void;
    /// `cudaStream_t`, the same object as the driver API's `CUstream`.
    pub type CudaStreamT = *mut c_void;

    /// `typedef struct { unsigned char *channel[NVJPEG_MAX_COMPONENT]; size_t
    /// pitch[NVJPEG_MAX_COMPONENT]; } nvjpegImage_t;` (2.2.9): device pointers, host struct.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct NvjpegImage {
        pub channel: [*mut c_uchar; NVJPEG_MAX_COMPONENT],
        pub pitch: [usize; NVJPEG_MAX_COMPONENT],
    }

    /// `nvjpegStatus_t nvjpegGetProperty(libraryPropertyType type, int *value);` (2.3.1.1)
    pub type GetPropertyFn =
        unsafe extern "C" fn(kind: LibraryPropertyType, value: *mut c_int) -> NvjpegStatus;
    /// `nvjpegStatus_t nvjpegCreateEx(nvjpegBackend_t backend, nvjpegDevAllocator_t
    /// *dev_allocator, nvjpegPinnedAllocator_t *pinned_allocator, unsigned int flags,
    /// nvjpegHandle_t *handle);` (2.3.1.5); null allocators mean cudaMalloc/cudaHostAlloc.
    pub type CreateExFn = unsafe extern "C" fn(
        backend: NvjpegBackend,
        dev_allocator: *mut c_void,
        pinned_allocator: *mut c_void,
        flags: c_uint,
        handle: *mut NvjpegHandle,
    ) -> NvjpegStatus;
    /// `nvjpegStatus_t nvjpegDestroy(nvjpegHandle_t handle);` (2.3.1.7)
    pub type DestroyFn = unsafe extern "C" fn(handle: NvjpegHandle) -> NvjpegStatus;
    /// `nvjpegStatus_t nvjpegJpegStateCreate(nvjpegHandle_t handle, nvjpegJpegState_t
    /// *jpeg_handle);` (2.3.1.13)
    pub type JpegStateCreateFn =
        unsafe extern "C" fn(handle: NvjpegHandle, state: *mut NvjpegJpegState) -> NvjpegStatus;
    /// `nvjpegStatus_t nvjpegJpegStateDestroy(nvjpegJpegState_t handle);` (2.3.1.14)
    pub type JpegStateDestroyFn = unsafe extern "C" fn(state: NvjpegJpegState) -> NvjpegStatus;
    /// `nvjpegStatus_t nvjpegGetImageInfo(nvjpegHandle_t handle, const unsigned char *data,
    /// size_t length, int *nComponents, nvjpegChromaSubsampling_t *subsampling, int *widths,
    /// int *heights);` (2.3.2.1); `widths`/`heights` hold NVJPEG_MAX_COMPONENT ints.
    pub type GetImageInfoFn = unsafe extern "C" fn(
        handle: NvjpegHandle,
        data: *const c_uchar,
        length: usize,
        components: *mut c_int,
        subsampling: *mut NvjpegChromaSubsampling,
        widths: *mut c_int,
        heights: *mut c_int,
    ) -> NvjpegStatus;
    /// `nvjpegStatus_t nvjpegDecode(nvjpegHandle_t handle, nvjpegJpegState_t jpeg_handle,
    /// const unsigned char *data, size_t length, nvjpegOutputFormat_t output_format,
    /// nvjpegImage_t *destination, cudaStream_t stream);` (2.3.3.1); asynchronous with respect
    /// to the host.
    pub type DecodeFn = unsafe extern "C" fn(
        handle: NvjpegHandle,
        state: NvjpegJpegState,
        data: *const c_uchar,
        length: usize,
        output_format: NvjpegOutputFormat,
        destination: *mut NvjpegImage,
        stream: CudaStreamT,
    ) -> NvjpegStatus;
    /// `nvjpegStatus_t nvjpegDecodeBatchedInitialize(nvjpegHandle_t handle, nvjpegJpegState_t
    /// jpeg_handle, int batch_size, int max_cpu_threads, nvjpegOutputFormat_t
    /// output_format);` (2.3.3.2); `max_cpu_threads` is no longer used by the library.
    pub type DecodeBatchedInitializeFn = unsafe extern "C" fn(
        handle: NvjpegHandle,
        state: NvjpegJpegState,
        batch_size: c_int,
        max_cpu_threads: c_int,
        output_format: NvjpegOutputFormat,
    ) -> NvjpegStatus;
    /// `nvjpegStatus_t nvjpegDecodeBatched(nvjpegHandle_t handle, nvjpegJpegState_t
    /// jpeg_handle, const unsigned char *const *data, const size_t *lengths, nvjpegImage_t
    /// *destinations, cudaStream_t stream);` (2.3.3.3); the hardware backend's entry point.
    pub type DecodeBatchedFn = unsafe extern "C" fn(
        handle: NvjpegHandle,
        state: NvjpegJpegState,
        data: *const *const c_uchar,
        lengths: *const usize,
        destinations: *mut NvjpegImage,
        stream: CudaStreamT,
    ) -> NvjpegStatus;
}

/// The resolved entry points. The library is never unloaded while these exist: it lives in
/// the same struct, and the process-wide one in a static.
pub struct Api {
    library_name: &'static str,
    get_property: ffi::GetPropertyFn,
    create_ex: ffi::CreateExFn,
    destroy: ffi::DestroyFn,
    jpeg_state_create: ffi::JpegStateCreateFn,
    jpeg_state_destroy: ffi::JpegStateDestroyFn,
    get_image_info: ffi::GetImageInfoFn,
    decode: ffi::DecodeFn,
    decode_batched_initialize: ffi::DecodeBatchedInitializeFn,
    decode_batched: ffi::DecodeBatchedFn,
    _library: libloading::Library,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("library", &self.library_name)
            .finish_non_exhaustive()
    }
}

impl Api {
    fn resolve(library: libloading::Library, name: &'static str) -> Result<Api, NvjpegError> {
        fn symbol<T: Copy>(
            library: &libloading::Library,
            library_name: &str,
            symbol: &'static str,
        ) -> Result<T, NvjpegError> {
            // SAFETY: each call below names T as the function-pointer type that nvjpeg.h
            // declares for `symbol` (the aliases in `ffi`); the pointer is only called while
            // the library is loaded (it is stored next to it).
            unsafe { library.get::<T>(symbol) }
                .map(|s| *s)
                .map_err(|e| NvjpegError::SymbolMissing {
                    library: library_name.to_string(),
                    symbol,
                    message: e.to_string(),
                })
        }
        Ok(Api {
            library_name: name,
            get_property: symbol(&library, name, "nvjpegGetProperty")?,
            create_ex: symbol(&library, name, "nvjpegCreateEx")?,
            destroy: symbol(&library, name, "nvjpegDestroy")?,
            jpeg_state_create: symbol(&library, name, "nvjpegJpegStateCreate")?,
            jpeg_state_destroy: symbol(&library, name, "nvjpegJpegStateDestroy")?,
            get_image_info: symbol(&library, name, "nvjpegGetImageInfo")?,
            decode: symbol(&library, name, "nvjpegDecode")?,
            decode_batched_initialize: symbol(&library, name, "nvjpegDecodeBatchedInitialize")?,
            decode_batched: symbol(&library, name, "nvjpegDecodeBatched")?,
            _library: library,
        })
    }

    /// `major.minor.patch` of the loaded library.
    pub fn version(&self) -> String {
        let part = |kind: ffi::LibraryPropertyType| {
            let mut value: c_int = -1;
            // SAFETY: nvjpegGetProperty writes one int; it needs no handle or GPU.
            let status = unsafe { (self.get_property)(kind, &mut value) };
            if status == ffi::NVJPEG_STATUS_SUCCESS {
                value.to_string()
            } else {
                "?".to_string()
            }
        };
        format!("{}.{}.{}", part(0), part(1), part(2))
    }

    /// The file name that was loaded (`libnvjpeg.so.13`, …).
    pub fn library_name(&self) -> &'static str {
        self.library_name
    }
}

/// Opens the first of `names` that loads and resolves every entry point from it.
pub fn load_from(names: &[&'static str]) -> Result<Api, NvjpegError> {
    let mut last = "no library name given".to_string();
    for &name in names {
        // SAFETY: loading a shared library runs its initialisers; nvJPEG's (and any system
        // library's) only set up their own state.
        match unsafe { libloading::Library::new(name) } {
            Ok(library) => return Api::resolve(library, name),
            Err(e) => last = e.to_string(),
        }
    }
    Err(NvjpegError::LibraryMissing {
        tried: names.join(", "),
        message: last,
    })
}

/// The process's nvJPEG, loaded and resolved on first use from [`LIBRARY_NAMES`].
pub fn api() -> Result<&'static Api, NvjpegError> {
    static API: OnceLock<Result<Api, NvjpegError>> = OnceLock::new();
    API.get_or_init(|| load_from(&LIBRARY_NAMES))
        .as_ref()
        .map_err(Clone::clone)
}

/// An nvJPEG library handle, destroyed on drop.
struct Handle {
    raw: ffi::NvjpegHandle,
    api: &'static Api,
}

// SAFETY: "The library handle is thread safe, and can be used by multiple threads
// simultaneously" (nvJPEG documentation 2.2.13).
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Handle {
    /// Must be called with the decoder's CUDA context current: handles belong to the device
    /// that was current when they were made (1.4 "Multi-GPU support").
    fn create(
        api: &'static Api,
        backend: ffi::NvjpegBackend,
        flags: c_uint,
    ) -> Result<Handle, NvjpegError> {
        let mut raw: ffi::NvjpegHandle = null_mut();
        // SAFETY: null allocators select nvJPEG's defaults; `raw` is a valid out-pointer and is
        // used only when the call succeeds.
        check("nvjpegCreateEx", unsafe {
            (api.create_ex)(backend, null_mut(), null_mut(), flags, &mut raw)
        })?;
        Ok(Handle { raw, api })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `raw` came from nvjpegCreateEx and every state made from it is gone (states
        // live in workers, which the decoder drops first).
        unsafe { (self.api.destroy)(self.raw) };
    }
}

/// One JPEG state (per thread at a time, 1.3 "Thread Safety"), destroyed on drop.
struct State {
    raw: ffi::NvjpegJpegState,
    api: &'static Api,
}

impl State {
    fn create(handle: &Handle) -> Result<State, NvjpegError> {
        let mut raw: ffi::NvjpegJpegState = null_mut();
        // SAFETY: `handle.raw` is a live handle; `raw` is a valid out-pointer.
        check("nvjpegJpegStateCreate", unsafe {
            (handle.api.jpeg_state_create)(handle.raw, &mut raw)
        })?;
        Ok(State {
            raw,
            api: handle.api,
        })
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // SAFETY: `raw` came from nvjpegJpegStateCreate; the stream it was used on was
        // synchronised after its last decode.
        unsafe { (self.api.jpeg_state_destroy)(self.raw) };
    }
}

/// What one measure worker decodes with: its own stream and states. Workers are kept in a
/// pool and taken by one thread at a time, which is what nvJPEG asks of states.
struct Worker {
    stream: Arc<CudaStream>,
    state: State,
    /// The state for the hardware handle, and the output format
    /// `nvjpegDecodeBatchedInitialize` was last called with on it (none since it was made or
    /// last failed: `None`).
    hardware: Option<(State, Option<ffi::NvjpegOutputFormat>)>,
}

// SAFETY: a worker's states are used by one thread at a time (the pool hands each worker to
// one caller), and its stream is synchronised before the worker goes back to the pool, so no
// nvJPEG work of a previous holder is in flight when another thread takes it.
unsafe impl Send for Worker {}

/// Which of nvJPEG's decoders to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// The hardware engine when there is one and the JPEG is baseline, else the CUDA decoder.
    Auto,
    Hardware,
    Cuda,
}

/// What nvJPEG writes: the luminance plane (measuring) or interleaved RGB (CLIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Luma,
    Rgb,
}

impl Output {
    fn format(self) -> ffi::NvjpegOutputFormat {
        match self {
            Output::Luma => ffi::NVJPEG_OUTPUT_Y,
            Output::Rgb => ffi::NVJPEG_OUTPUT_RGBI,
        }
    }

    fn channels(self) -> usize {
        match self {
            Output::Luma => 1,
            Output::Rgb => 3,
        }
    }
}

/// Interleaved RGB left on the GPU by [`GpuJpegDecoder::decode_rgb_device`]: `3 * width *
/// height` bytes, row-major, pitch = 3 * width, complete (its stream was synchronised),
/// allocated in the decoder's CUDA context.
#[derive(Debug)]
pub struct DeviceRgb {
    pub width: u32,
    pub height: u32,
    pub pixels: CudaSlice<u8>,
}

/// Luminance left on the GPU by [`GpuJpegDecoder::decode_luma_device`]: `width * height`
/// bytes, row-major, pitch = width, complete (its stream was synchronised), allocated on
/// `pixels.stream()` in the decoder's CUDA context.
#[derive(Debug)]
pub struct DeviceLuma {
    pub width: u32,
    pub height: u32,
    pub pixels: CudaSlice<u8>,
}

impl DeviceLuma {
    /// Copies the pixels to the host.
    pub fn download(&self) -> Result<LumaImage, NvjpegError> {
        let stream = self.pixels.stream();
        let pixels = stream
            .clone_dtoh(&self.pixels)
            .map_err(driver("download"))?;
        stream.synchronize().map_err(driver("synchronize"))?;
        Ok(LumaImage {
            width: self.width,
            height: self.height,
            pixels,
        })
    }
}

/// `decode::ImageDecoder` on nvJPEG, with [`CpuDecoder`] for every sample it does not decode.
///
/// Sizes: nvJPEG decodes at full size (the CPU decoder decodes large JPEGs at a reduced DCT
/// scale); the measure kernels, CPU and CUDA alike, resize to a 512-pixel shorter side anyway,
/// so only the host copy and upload grow. Values: nvJPEG's inverse DCT rounds differently from
/// libjpeg-turbo's, and full size then resize is not DCT-domain scaling: measurements agree
/// within a tolerance (tests/it/gpu.rs measures it), not bit for bit.
pub struct GpuJpegDecoder {
    // Field order is drop order: workers (states) before the handles they came from.
    workers: Mutex<Vec<Worker>>,
    hardware: Option<Handle>,
    default: Handle,
    context: Arc<CudaContext>,
    api: &'static Api,
    device_name: String,
    gpu_decodes: AtomicU64,
    hardware_decodes: AtomicU64,
    fallbacks: AtomicU64,
    warned: AtomicBool,
    /// Nanoseconds spent in decodes, from the worker's taking to its stream's
    /// synchronisation, summed over the threads decoding at once.
    busy_nanos: AtomicU64,
}

impl std::fmt::Debug for GpuJpegDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuJpegDecoder")
            .field("ordinal", &self.context.ordinal())
            .field("hardware", &self.hardware.is_some())
            .finish_non_exhaustive()
    }
}

impl GpuJpegDecoder {
    /// Loads nvJPEG, makes its handles on `gpu` (the hardware one where the GPU has the
    /// engine) and checks both on a small JPEG against the CPU decoder.
    pub fn new(gpu: &CudaDevice) -> Result<GpuJpegDecoder, NvjpegError> {
        let api = api()?;
        let context = gpu.context.clone();
        context.bind_to_thread().map_err(driver("context"))?;
        let default = Handle::create(api, ffi::NVJPEG_BACKEND_DEFAULT, ffi::NVJPEG_FLAGS_DEFAULT)?;
        // Fails (e.g. NVJPEG_STATUS_ARCH_MISMATCH) on GPUs without the JPEG engine.
        let hardware = match Handle::create(
            api,
            ffi::NVJPEG_BACKEND_HARDWARE,
            ffi::NVJPEG_FLAGS_HW_DECODE_NO_PIPELINE,
        ) {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::debug!("no nvJPEG hardware backend on {}: {e}", gpu.name);
                None
            }
        };
        let mut decoder = GpuJpegDecoder {
            workers: Mutex::new(Vec::new()),
            hardware,
            default,
            context,
            api,
            device_name: gpu.name.clone(),
            gpu_decodes: AtomicU64::new(0),
            hardware_decodes: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            busy_nanos: AtomicU64::new(0),
        };
        decoder.self_check(Engine::Cuda)?;
        if decoder.hardware.is_some() {
            if let Err(e) = decoder.self_check(Engine::Hardware) {
                tracing::warn!(
                    "the nvJPEG hardware decoder of {} fails its check ({e}); using nvJPEG's CUDA decoder",
                    gpu.name
                );
                decoder
                    .workers
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                decoder.hardware = None;
            }
        }
        decoder.gpu_decodes.store(0, Ordering::Relaxed);
        decoder.hardware_decodes.store(0, Ordering::Relaxed);
        decoder.busy_nanos.store(0, Ordering::Relaxed);
        Ok(decoder)
    }

    /// One line for the log, e.g. `nvJPEG 12.9.0 (libnvjpeg.so.12) on NVIDIA H200, hardware
    /// decoder`.
    pub fn description(&self) -> String {
        format!(
            "nvJPEG {} ({}) on {}, {}",
            self.api.version(),
            self.api.library_name(),
            self.device_name,
            if self.hardware.is_some() {
                "hardware decoder for baseline JPEGs, CUDA decoder for the rest"
            } else {
                "CUDA decoder (this GPU has no JPEG engine)"
            }
        )
    }

    /// Seconds spent decoding on the GPU so far, summed over the threads that decode at once
    /// (so it can exceed the wall time).
    pub fn busy_seconds(&self) -> f64 {
        self.busy_nanos.load(Ordering::Relaxed) as f64 * 1e-9
    }

    /// Whether the hardware JPEG engine is in use.
    pub fn uses_hardware(&self) -> bool {
        self.hardware.is_some()
    }

    /// Samples decoded by [`CpuDecoder`] instead: other formats, JPEGs routed to the CPU
    /// (CMYK, 12-bit, lossless, RGB-coded, truncated) and nvJPEG errors.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// JPEGs decoded by nvJPEG, and of those, by the hardware engine.
    pub fn gpu_decodes(&self) -> (u64, u64) {
        (
            self.gpu_decodes.load(Ordering::Relaxed),
            self.hardware_decodes.load(Ordering::Relaxed),
        )
    }

    /// Decodes a JPEG's luminance into device memory, without any CPU fallback: the input of
    /// the measure path that keeps the pixels on the GPU ([`Self::measure_on_device`]).
    pub fn decode_luma_device(&self, bytes: &[u8]) -> Result<DeviceLuma, NvjpegError> {
        let (width, height, pixels) = self.decode_device_with(bytes, Engine::Auto, Output::Luma)?;
        Ok(DeviceLuma {
            width,
            height,
            pixels,
        })
    }

    /// Decodes a JPEG to interleaved RGB in device memory, without any CPU fallback: the
    /// input of CLIP preprocessing on the GPU (`CudaKernels::clip_inputs`). Truncated JPEGs,
    /// which nvJPEG would fill with grey, and JPEGs `gpu_route` sends to the CPU are errors.
    pub fn decode_rgb_device(&self, bytes: &[u8]) -> Result<DeviceRgb, NvjpegError> {
        if !has_end_marker(bytes) {
            return Err(NvjpegError::Unsupported(
                "the JPEG has no end marker (truncated)".to_string(),
            ));
        }
        let (width, height, pixels) = self.decode_device_with(bytes, Engine::Auto, Output::Rgb)?;
        Ok(DeviceRgb {
            width,
            height,
            pixels,
        })
    }

    /// [`Self::decode_luma_device`] then a download: nvJPEG or an error, never the CPU.
    pub fn try_decode_luma(&self, bytes: &[u8]) -> Result<LumaImage, NvjpegError> {
        self.decode_luma_device(bytes)?.download()
    }

    fn decode_device_with(
        &self,
        bytes: &[u8],
        engine: Engine,
        output: Output,
    ) -> Result<(u32, u32, CudaSlice<u8>), NvjpegError> {
        let header = parse_jpeg_header(bytes).map_err(NvjpegError::Unsupported)?;
        let baseline = gpu_route(&header).map_err(NvjpegError::Unsupported)?;
        let _counted = Counted {
            started: std::time::Instant::now(),
            nanos: &self.busy_nanos,
        };
        self.context.bind_to_thread().map_err(driver("context"))?;
        let (width, height) = self.image_size(bytes, header.components)?;
        let mut worker = match self.workers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            Some(worker) => worker,
            None => self.new_worker()?,
        };
        let use_hardware = match engine {
            Engine::Auto => baseline && worker.hardware.is_some(),
            Engine::Hardware => true,
            Engine::Cuda => false,
        };
        let result = self.decode_on(
            &mut worker,
            bytes,
            (width, height),
            use_hardware,
            engine,
            output,
        );
        // Whatever happened, nothing of this decode may still run when another thread takes
        // the worker; a worker whose stream does not synchronise is dropped.
        match (result, worker.stream.synchronize()) {
            (Ok(pixels), Ok(())) => {
                self.workers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(worker);
                Ok((width, height, pixels))
            }
            (Err(e), Ok(())) => {
                self.workers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(worker);
                Err(e)
            }
            (Ok(_), Err(e)) | (Err(_), Err(e)) => Err(driver("synchronize")(e)),
        }
    }

    fn new_worker(&self) -> Result<Worker, NvjpegError> {
        let stream = self
            .context
            .new_stream()
            .map_err(driver("stream creation"))?;
        let state = State::create(&self.default)?;
        let hardware = match &self.hardware {
            Some(handle) => Some((State::create(handle)?, None)),
            None => None,
        };
        Ok(Worker {
            stream,
            state,
            hardware,
        })
    }

    /// The luminance plane's size from nvJPEG's own header parse.
    fn image_size(&self, bytes: &[u8], components: u8) -> Result<(u32, u32), NvjpegError> {
        let mut count: c_int = 0;
        let mut subsampling: ffi::NvjpegChromaSubsampling = 0;
        let mut widths: [c_int; ffi::NVJPEG_MAX_COMPONENT] = [0; ffi::NVJPEG_MAX_COMPONENT];
        let mut heights: [c_int; ffi::NVJPEG_MAX_COMPONENT] = [0; ffi::NVJPEG_MAX_COMPONENT];
        // SAFETY: the handle is live; `bytes` is read for its length only; the out-pointers
        // point to one int, one enum and two arrays of NVJPEG_MAX_COMPONENT ints. The function
        // is thread safe (2.1.1).
        check("nvjpegGetImageInfo", unsafe {
            (self.api.get_image_info)(
                self.default.raw,
                bytes.as_ptr(),
                bytes.len(),
                &mut count,
                &mut subsampling,
                widths.as_mut_ptr(),
                heights.as_mut_ptr(),
            )
        })?;
        if count != components as c_int {
            return Err(NvjpegError::Unsupported(format!(
                "nvJPEG reads {count} components where the header has {components}"
            )));
        }
        match (u32::try_from(widths[0]), u32::try_from(heights[0])) {
            (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
            _ => Err(NvjpegError::Unsupported(format!(
                "nvJPEG reads a {}x{} image",
                widths[0], heights[0]
            ))),
        }
    }

    fn decode_on(
        &self,
        worker: &mut Worker,
        bytes: &[u8],
        (width, height): (u32, u32),
        use_hardware: bool,
        engine: Engine,
        output: Output,
    ) -> Result<CudaSlice<u8>, NvjpegError> {
        let stream = worker.stream.clone();
        let pitch = output.channels() * width as usize;
        let len = pitch * height as usize;
        let mut pixels = stream
            .alloc_zeros::<u8>(len)
            .map_err(driver("allocation"))?;
        // The hardware decoder does not wait for work queued before it on its stream
        // (pytorch/vision#9606, meta-pytorch/torchcodec#1634): finish the allocation and
        // zeroing first, so that it never writes memory something else still uses.
        stream.synchronize().map_err(driver("synchronize"))?;
        let raw_stream = stream.cu_stream() as ffi::CudaStreamT;
        let (pointer, written) = pixels.device_ptr_mut(&stream);
        let mut image = ffi::NvjpegImage {
            channel: [null_mut(); ffi::NVJPEG_MAX_COMPONENT],
            pitch: [0; ffi::NVJPEG_MAX_COMPONENT],
        };
        image.channel[0] = pointer as usize as *mut c_uchar;
        image.pitch[0] = pitch;

        let mut outcome = Err(NvjpegError::Unsupported(
            "no nvJPEG decoder was tried".to_string(),
        ));
        if use_hardware {
            if let (Some(handle), Some((state, initialised))) =
                (&self.hardware, worker.hardware.as_mut())
            {
                outcome = decode_hardware(
                    handle,
                    state,
                    initialised,
                    bytes,
                    output.format(),
                    &mut image,
                    raw_stream,
                );
                if outcome.is_ok() {
                    self.hardware_decodes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if outcome.is_err() && engine != Engine::Hardware {
            // SAFETY: live handle and state (this thread holds the worker); `bytes` outlives
            // the call, which reads the host input before it returns; channel[0] points to
            // `len` = pitch[0] * height device bytes in the current context, the size 2.1.1
            // asks of NVJPEG_OUTPUT_Y (pitch = width) and NVJPEG_OUTPUT_RGBI (pitch = 3 x
            // width); `raw_stream` is a stream of that context.
            outcome = check("nvjpegDecode", unsafe {
                (self.api.decode)(
                    self.default.raw,
                    worker.state.raw,
                    bytes.as_ptr(),
                    bytes.len(),
                    output.format(),
                    &mut image,
                    raw_stream,
                )
            });
        }
        drop(written);
        outcome?;
        self.gpu_decodes.fetch_add(1, Ordering::Relaxed);
        Ok(pixels)
    }

    /// Decodes the small JPEG of [`self_check_jpeg`] with `engine` and compares it with the
    /// CPU decoder's luminance: a library whose output is not what this module expects (a
    /// layout or enum mismatch) is refused here rather than measured.
    fn self_check(&self, engine: Engine) -> Result<(), NvjpegError> {
        let jpeg = self_check_jpeg()?;
        let info = crate::decode::probe(&jpeg)
            .map_err(|e| NvjpegError::SelfCheck(format!("the test JPEG does not probe: {e}")))?;
        let cpu = CpuDecoder
            .decode_luma(&jpeg, &info, u32::MAX)
            .map_err(|e| NvjpegError::SelfCheck(format!("the CPU decoder: {e}")))?;
        let (width, height, pixels) = self.decode_device_with(&jpeg, engine, Output::Luma)?;
        let gpu = DeviceLuma {
            width,
            height,
            pixels,
        }
        .download()?;
        if (gpu.width, gpu.height) != (cpu.width, cpu.height) {
            return Err(NvjpegError::SelfCheck(format!(
                "a {}x{} JPEG decodes to {}x{}",
                cpu.width, cpu.height, gpu.width, gpu.height
            )));
        }
        let mean = mean_absolute_difference(&gpu.pixels, &cpu.pixels);
        if mean > SELF_CHECK_TOLERANCE {
            return Err(NvjpegError::SelfCheck(format!(
                "its luminance differs from libjpeg-turbo's by {mean:.2} on average (at most {SELF_CHECK_TOLERANCE} expected)"
            )));
        }
        Ok(())
    }

    /// Counts a sample the CPU decodes, and says so once per run.
    fn note_fallback(&self, why: &NvjpegError) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a JPEG is decoded on the CPU instead of nvJPEG ({why}); such JPEGs are counted, and not reported again"
            );
        } else {
            tracing::debug!("a JPEG is decoded on the CPU instead of nvJPEG: {why}");
        }
    }
}

/// Adds the time since `started` to `nanos` when dropped.
struct Counted<'a> {
    started: std::time::Instant,
    nanos: &'a AtomicU64,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed().as_nanos() as u64;
        self.nanos.fetch_add(elapsed, Ordering::Relaxed);
    }
}

/// The hardware backend's one-image batch: initialised once per state and output format, again
/// after a failure (2.1.3.1: "if the batch decoding fails, then call
/// nvjpegDecodeBatchedInitialize() again").
fn decode_hardware(
    handle: &Handle,
    state: &State,
    initialised: &mut Option<ffi::NvjpegOutputFormat>,
    bytes: &[u8],
    format: ffi::NvjpegOutputFormat,
    image: &mut ffi::NvjpegImage,
    stream: ffi::CudaStreamT,
) -> Result<(), NvjpegError> {
    if *initialised != Some(format) {
        // SAFETY: live hardware handle and its state, held by this thread only.
        check("nvjpegDecodeBatchedInitialize", unsafe {
            (handle.api.decode_batched_initialize)(handle.raw, state.raw, 1, 1, format)
        })?;
        *initialised = Some(format);
    }
    let data = [bytes.as_ptr()];
    let lengths = [bytes.len()];
    // SAFETY: arrays of batch_size = 1 input pointer, length and destination, all alive for
    // the call; the destination is as for nvjpegDecode (see `decode_on`).
    let status = unsafe {
        (handle.api.decode_batched)(
            handle.raw,
            state.raw,
            data.as_ptr(),
            lengths.as_ptr(),
            image,
            stream,
        )
    };
    let result = check("nvjpegDecodeBatched (hardware)", status);
    if result.is_err() {
        *initialised = None;
    }
    result
}

impl Drop for GpuJpegDecoder {
    fn drop(&mut self) {
        // Destroying states and handles frees device memory: the context must be current.
        let _ = self.context.bind_to_thread();
        self.workers
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let (gpu, hardware) = self.gpu_decodes();
        tracing::debug!(
            "nvJPEG decoded {gpu} JPEG(s) ({hardware} on the hardware engine); {} sample(s) went to the CPU decoder",
            self.fallbacks()
        );
    }
}

impl ImageDecoder for GpuJpegDecoder {
    fn decode_luma(
        &self,
        bytes: &[u8],
        info: &ImageInfo,
        min_side: u32,
    ) -> Result<LumaImage, DecodeError> {
        if info.format != ImageFormat::Jpeg {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            return CpuDecoder.decode_luma(bytes, info, min_side);
        }
        // The CPU decoder refuses truncated JPEGs, which nvJPEG would fill with grey: let it
        // say so, with its own message, so both devices drop the same samples.
        if !has_end_marker(bytes) {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            return CpuDecoder.decode_luma(bytes, info, min_side);
        }
        let decoded = self.try_decode_luma(bytes).and_then(|luma| {
            if (luma.width, luma.height) == (info.width, info.height) {
                Ok(luma)
            } else {
                Err(NvjpegError::Unsupported(format!(
                    "nvJPEG decodes {}x{}, the header says {}x{}",
                    luma.width, luma.height, info.width, info.height
                )))
            }
        });
        match decoded {
            Ok(luma) => Ok(luma),
            Err(e) => {
                self.note_fallback(&e);
                CpuDecoder.decode_luma(bytes, info, min_side)
            }
        }
    }
}

impl GpuJpegDecoder {
    /// Decodes a JPEG's luminance into device memory and measures it there with `kernels`
    /// (same GPU): the pixels never reach the host. `None` for a sample the CPU decoder must
    /// take (not a JPEG, truncated, refused by nvJPEG or a GPU error), counted as a fallback;
    /// the caller then decodes it on the CPU.
    pub fn measure_on_device(
        &self,
        bytes: &[u8],
        info: &ImageInfo,
        kernels: &super::CudaKernels,
    ) -> Option<crate::measure::ImageQuality> {
        if info.format != ImageFormat::Jpeg || !has_end_marker(bytes) {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let measured = self.decode_luma_device(bytes).and_then(|luma| {
            if (luma.width, luma.height) != (info.width, info.height) {
                return Err(NvjpegError::Unsupported(format!(
                    "nvJPEG decodes {}x{}, the header says {}x{}",
                    luma.width, luma.height, info.width, info.height
                )));
            }
            kernels
                .measure_device_batched(luma)
                .map_err(|e| NvjpegError::Unsupported(e.to_string()))
        });
        match measured {
            Ok(quality) => Some(quality),
            Err(e) => {
                self.note_fallback(&e);
                None
            }
        }
    }
}

/// The JPEG decoder a run uses on `selected`: nvJPEG when the device is a GPU and nvJPEG loads
/// and passes its check (logged), else `None` (the CPU decoder; the reason is logged).
pub fn decoder_for(selected: &Selected) -> Option<GpuJpegDecoder> {
    let gpu = selected.cuda.as_ref()?;
    match GpuJpegDecoder::new(gpu) {
        Ok(decoder) => {
            tracing::info!("decoding JPEGs with {}", decoder.description());
            Some(decoder)
        }
        Err(e) => {
            tracing::warn!("{e}; decoding JPEGs on the CPU");
            None
        }
    }
}

/// Mean luminance difference the self-check accepts on its test JPEG: IDCT rounding gives a
/// few hundredths; a wrong plane or layout gives tens.
pub const SELF_CHECK_TOLERANCE: f64 = 1.0;

/// Mean absolute difference of two planes of the same length (`f64::INFINITY` otherwise).
pub fn mean_absolute_difference(a: &[u8], b: &[u8]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return f64::INFINITY;
    }
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as i32 - y as i32).unsigned_abs() as u64)
        .sum();
    sum as f64 / a.len() as f64
}

/// A 67x45 4:2:0 baseline JPEG of gradients and edges (odd sizes: partial MCUs).
fn self_check_jpeg() -> Result<Vec<u8>, NvjpegError> {
    let rgb = image::RgbImage::from_fn(67, 45, |x, y| {
        let edge = if (x / 9 + y / 7) % 2 == 0 { 40 } else { 0 };
        image::Rgb([
            (x * 3 + edge) as u8,
            (y * 5 + edge) as u8,
            ((x + y) * 2) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    rgb.write_to(&mut out, ImageFormat::Jpeg)
        .map_err(|e| NvjpegError::SelfCheck(format!("cannot encode the test JPEG: {e}")))?;
    Ok(out.into_inner())
}

/// Whether the end-of-image marker is near the end, as the CPU decoder requires.
fn has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// What the frame header and the markers before the first scan say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JpegHeader {
    /// The start-of-frame marker: 0xC0 baseline, 0xC1 extended, 0xC2 progressive, ….
    pub sof: u8,
    pub precision: u8,
    pub width: u16,
    pub height: u16,
    pub components: u8,
    pub component_ids: Vec<u8>,
    /// The Adobe APP14 colour transform: 0 RGB or CMYK, 1 YCbCr, 2 YCCK.
    pub adobe_transform: Option<u8>,
}

/// Reads the markers up to the first scan. An error is a reason to leave the file to the CPU
/// decoder (which then reports what is wrong with it, if anything).
pub fn parse_jpeg_header(bytes: &[u8]) -> Result<JpegHeader, String> {
    if bytes.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err("no JPEG start-of-image marker".to_string());
    }
    let mut at = 2;
    let mut adobe_transform = None;
    let mut frame: Option<JpegHeader> = None;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return Err(format!("no marker at byte {at}"));
        };
        at += 2;
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            continue; // no length
        }
        if marker == 0xD9 {
            return Err("end of image before any scan".to_string());
        }
        let length = match bytes.get(at..at + 2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
            None => return Err("cut inside a marker".to_string()),
        };
        let Some(segment) = bytes.get(at + 2..at + length.max(2)) else {
            return Err(format!("marker 0x{marker:02X} runs past the end"));
        };
        match marker {
            0xDA => {
                let mut header =
                    frame.ok_or_else(|| "a scan before any frame header".to_string())?;
                header.adobe_transform = adobe_transform;
                return Ok(header);
            }
            0xEE if segment.len() >= 12 && segment.starts_with(b"Adobe") => {
                adobe_transform = Some(segment[11]);
            }
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if segment.len() < 6 {
                    return Err("short frame header".to_string());
                }
                let components = segment[5];
                let ids: Vec<u8> = segment[6..]
                    .chunks_exact(3)
                    .take(components as usize)
                    .map(|c| c[0])
                    .collect();
                if ids.len() != components as usize {
                    return Err("short frame header".to_string());
                }
                frame = Some(JpegHeader {
                    sof: marker,
                    precision: segment[0],
                    height: u16::from_be_bytes([segment[1], segment[2]]),
                    width: u16::from_be_bytes([segment[3], segment[4]]),
                    components,
                    component_ids: ids,
                    adobe_transform: None,
                });
            }
            _ => {}
        }
        at += length;
    }
}

/// Whether nvJPEG's luminance is the luminance the CPU decoder would give: `Ok(true)` for
/// baseline (the hardware engine's), `Ok(false)` for the other DCT Huffman JPEGs nvJPEG
/// decodes on CUDA, `Err(why)` for those left to the CPU.
pub fn gpu_route(header: &JpegHeader) -> Result<bool, String> {
    if header.precision != 8 {
        return Err(format!("{}-bit samples", header.precision));
    }
    match header.sof {
        0xC0..=0xC2 => {}
        0xC3 => return Err("lossless JPEG".to_string()),
        other => {
            return Err(format!(
                "frame type 0x{other:02X} (arithmetic-coded or hierarchical)"
            ))
        }
    }
    match header.components {
        1 => {}
        3 => {
            // Component 0 is R, not Y, in an RGB-coded JPEG: libjpeg-turbo computes luminance
            // from RGB there, nvJPEG's Y output would be the red plane.
            if header.adobe_transform == Some(0) || header.component_ids == b"RGB" {
                return Err("an RGB-coded JPEG".to_string());
            }
        }
        4 => return Err("a CMYK or YCCK JPEG".to_string()),
        n => return Err(format!("a {n}-component JPEG")),
    }
    Ok(header.sof == 0xC0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let rgb = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        rgb.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_missing_library_is_an_error_that_says_what_to_install() {
        let e = load_from(&["libnvjpeg-missing.so.99"]).unwrap_err();
        let message = e.to_string();
        assert!(
            message.starts_with("the nvJPEG library was not found (tried libnvjpeg-missing.so.99")
                && message.contains("install nvJPEG")
                && message.contains("LD_LIBRARY_PATH"),
            "{message}"
        );
    }

    #[test]
    fn a_library_without_the_symbols_is_refused_naming_the_first_missing_one() {
        // libc is loaded in every process and has none of nvJPEG's symbols.
        let e = load_from(&["libnvjpeg-missing.so.99", "libc.so.6"]).unwrap_err();
        match &e {
            NvjpegError::SymbolMissing {
                library, symbol, ..
            } => {
                assert_eq!(
                    (library.as_str(), *symbol),
                    ("libc.so.6", "nvjpegGetProperty")
                );
            }
            other => panic!("{other}"),
        }
        assert!(
            e.to_string().contains("install nvJPEG from CUDA 12 or 13"),
            "{e}"
        );
    }

    #[test]
    fn status_codes_have_their_header_names() {
        assert_eq!(status_name(0), "NVJPEG_STATUS_SUCCESS");
        assert_eq!(status_name(4), "NVJPEG_STATUS_JPEG_NOT_SUPPORTED");
        assert_eq!(status_name(10), "NVJPEG_STATUS_INCOMPLETE_BITSTREAM");
        let e = NvjpegError::Call {
            call: "nvjpegDecode",
            status: 3,
        };
        assert_eq!(
            e.to_string(),
            "nvJPEG nvjpegDecode failed: NVJPEG_STATUS_BAD_JPEG (3)"
        );
    }

    #[test]
    fn the_image_struct_has_the_c_layout() {
        // 4 pointers then 4 size_t: 64 bytes on 64-bit targets, pitch at offset 32.
        assert_eq!(
            std::mem::size_of::<ffi::NvjpegImage>(),
            8 * std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::offset_of!(ffi::NvjpegImage, pitch),
            4 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn headers_of_baseline_jpegs_are_read_and_routed_to_the_hardware() {
        let bytes = jpeg(67, 45);
        let header = parse_jpeg_header(&bytes).unwrap();
        assert_eq!(
            (
                header.sof,
                header.precision,
                header.width,
                header.height,
                header.components
            ),
            (0xC0, 8, 67, 45, 3)
        );
        assert_eq!(gpu_route(&header), Ok(true));
        assert!(has_end_marker(&bytes));
        assert!(!has_end_marker(&bytes[..bytes.len() / 2]));
        assert!(self_check_jpeg().is_ok_and(|j| parse_jpeg_header(&j).is_ok()));
    }

    #[test]
    fn jpegs_whose_y_plane_is_not_luminance_stay_on_the_cpu() {
        let base = JpegHeader {
            sof: 0xC0,
            precision: 8,
            width: 8,
            height: 8,
            components: 3,
            component_ids: vec![1, 2, 3],
            adobe_transform: None,
        };
        let routed = |edit: &dyn Fn(&mut JpegHeader)| {
            let mut h = base.clone();
            edit(&mut h);
            gpu_route(&h)
        };
        assert_eq!(routed(&|_| {}), Ok(true));
        assert_eq!(
            routed(&|h| h.sof = 0xC2),
            Ok(false),
            "progressive: CUDA decoder"
        );
        assert_eq!(
            routed(&|h| {
                h.components = 1;
                h.component_ids = vec![1];
            }),
            Ok(true)
        );
        for (edit, why) in [
            (
                &(|h: &mut JpegHeader| {
                    h.components = 4;
                    h.component_ids = vec![1, 2, 3, 4];
                    h.adobe_transform = Some(2);
                }) as &dyn Fn(&mut JpegHeader),
                "CMYK",
            ),
            (
                &|h: &mut JpegHeader| h.adobe_transform = Some(0),
                "RGB-coded",
            ),
            (
                &|h: &mut JpegHeader| h.component_ids = b"RGB".to_vec(),
                "RGB-coded",
            ),
            (&|h: &mut JpegHeader| h.precision = 12, "12-bit"),
            (&|h: &mut JpegHeader| h.sof = 0xC3, "lossless"),
            (&|h: &mut JpegHeader| h.sof = 0xC9, "arithmetic"),
        ] {
            let e = routed(edit).unwrap_err();
            assert!(e.contains(why), "{e} should say {why}");
        }
    }

    #[test]
    fn the_adobe_marker_and_broken_headers_are_seen() {
        let bytes = jpeg(16, 16);
        // An Adobe APP14 segment (transform 0) right after SOI.
        let mut adobe = vec![0xFF, 0xD8, 0xFF, 0xEE, 0x00, 0x0E];
        adobe.extend_from_slice(b"Adobe\x00\x64\x00\x00\x00\x00\x00");
        adobe.extend_from_slice(&bytes[2..]);
        let header = parse_jpeg_header(&adobe).unwrap();
        assert_eq!(header.adobe_transform, Some(0));
        assert!(gpu_route(&header).unwrap_err().contains("RGB-coded"));

        assert!(parse_jpeg_header(b"\x89PNG\r\n").is_err());
        assert!(parse_jpeg_header(&bytes[..20]).is_err());
        assert!(parse_jpeg_header(&[0xFF, 0xD8, 0xFF, 0xD9]).is_err());
    }

    #[test]
    fn mean_absolute_difference_is_per_pixel() {
        assert_eq!(
            mean_absolute_difference(&[0, 10, 20, 30], &[1, 8, 20, 30]),
            0.75
        );
        assert!(mean_absolute_difference(&[0], &[0, 1]).is_infinite());
    }

    #[test]
    fn the_decoder_is_shareable_across_measure_workers() {
        fn shareable<T: Send + Sync>() {}
        shareable::<GpuJpegDecoder>();
    }
}
