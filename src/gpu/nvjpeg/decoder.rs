//! The nvJPEG decoder: library handles and per-worker states, decoding on the hardware JPEG
//! engine or nvJPEG's CUDA decoder into device memory (luminance for measuring, RGB for CLIP),
//! the self-check that decides whether a run uses it, and the per-sample fallback to the CPU
//! decoder. All the unsafe calls into nvJPEG outside the loader are here, each with its SAFETY
//! note.

use std::ffi::{c_int, c_uchar, c_uint};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtrMut, DriverError};
use image::ImageFormat;

use super::loader::{api, Api};
use super::{check, ffi, gpu_route, mean_absolute_difference, NvjpegError, SELF_CHECK_TOLERANCE};
use crate::decode::jpeg::{has_end_marker, parse_jpeg_header};
use crate::decode::{CpuDecoder, DecodeError, ImageDecoder, ImageInfo};
use crate::gpu::device::CudaDevice;
use crate::pixels::LumaImage;

fn driver(during: &'static str) -> impl Fn(DriverError) -> NvjpegError {
    move |e| NvjpegError::Driver {
        during,
        message: e.to_string(),
    }
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
        let header =
            parse_jpeg_header(bytes).map_err(|e| NvjpegError::Unsupported(e.to_string()))?;
        let baseline = gpu_route(&header).map_err(|e| NvjpegError::Unsupported(e.to_string()))?;
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
        kernels: &crate::gpu::CudaKernels,
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

/// A 67x45 4:2:0 baseline JPEG of gradients and edges (odd sizes: partial MCUs).
pub(super) fn self_check_jpeg() -> Result<Vec<u8>, NvjpegError> {
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
