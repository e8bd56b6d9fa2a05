//! [`CudaKernels`]: `measure::QualityKernels` on a GPU through cudarc's driver API. It uploads a
//! batch of luminance planes into one arena, runs the passes that `plan::MeasurePlan` lays out
//! (resizes, analysis sums, hashes) and downloads four sums and two hashes per image.
//!
//! It also turns a batch of RGB images (on the host, or decoded on the device by nvJPEG) into
//! CLIP's input tensor in device memory ([`CudaKernels::clip_inputs`], `clip_plan`'s layout).
//!
//! Only the launches and copies live here; sizes, offsets and launch shapes are `plan`'s and
//! `clip_plan`'s, which the tests check on the host. A GPU failure mid-run falls back to the
//! CPU reference for the images concerned, with a warning, since the results are the same.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use super::batcher::Batcher;
use super::clip_plan::{self, ClipPlan};
use super::device::CudaDevice;
use super::nvjpeg::{DeviceLuma, DeviceRgb};
use super::plan::{self, Launch, MeasurePlan};
use super::{kernels_ptx, GpuError, KERNELS};
use crate::measure::{CpuKernels, ImageQuality, QualityKernels};
use crate::pixels::LumaImage;

/// Arena bytes per launch at most: a batch of large images is split into runs under this.
pub const MAX_ARENA_BYTES: u64 = 1 << 30;

/// The loaded kernels and the GPU they run on.
pub struct CudaKernels {
    context: Arc<CudaContext>,
    /// One stream, used by one batch at a time: the measure workers take turns, which keeps
    /// each batch's copies and launches in order without events.
    stream: Mutex<Arc<CudaStream>>,
    resample_pass: CudaFunction,
    analyse: CudaFunction,
    phash32: CudaFunction,
    dhash9x8: CudaFunction,
    clip_normalise: CudaFunction,
    /// `plan::dct_basis()`, uploaded once.
    basis: CudaSlice<f64>,
    /// Whether the CPU fallback has been reported (once per run is enough).
    warned: AtomicBool,
    /// Nanoseconds the stream was held for measuring, and for CLIP inputs: each holder
    /// synchronises before it lets go, so this is the time the GPU worked for each (plus the
    /// launches' host overhead).
    busy_nanos: [AtomicU64; 2],
    /// The measure workers' planes, gathered into batches (group commit).
    host_batch: Batcher<LumaImage, ImageQuality>,
    device_batch: Batcher<DeviceLuma, Result<ImageQuality, GpuError>>,
}

/// Seconds [`CudaKernels`] kept the GPU busy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KernelBusy {
    pub measure: f64,
    pub clip_inputs: f64,
}

impl std::fmt::Debug for CudaKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaKernels")
            .field("ordinal", &self.context.ordinal())
            .finish_non_exhaustive()
    }
}

fn driver(during: &'static str) -> impl Fn(DriverError) -> GpuError {
    move |e| GpuError::Driver {
        during,
        message: e.to_string(),
    }
}

/// Adds the time from its making to its drop to a counter.
struct BusyTimer<'a> {
    started: Instant,
    nanos: &'a AtomicU64,
}

impl<'a> BusyTimer<'a> {
    fn new(nanos: &'a AtomicU64) -> Self {
        BusyTimer {
            started: Instant::now(),
            nanos,
        }
    }
}

impl Drop for BusyTimer<'_> {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed().as_nanos() as u64;
        self.nanos.fetch_add(elapsed, Ordering::Relaxed);
    }
}

/// cudarc's launch configuration for a planned launch.
pub fn launch_config(launch: Launch) -> LaunchConfig {
    LaunchConfig {
        grid_dim: launch.grid,
        block_dim: launch.block,
        shared_mem_bytes: 0,
    }
}

impl CudaKernels {
    /// Compiles (or reads from the PTX cache) and loads every kernel on `gpu`.
    pub fn new(gpu: &CudaDevice) -> Result<CudaKernels, GpuError> {
        let ptx = kernels_ptx()?;
        let context = gpu.context.clone();
        let function = |file: &str, name: &str| -> Result<CudaFunction, GpuError> {
            let index = KERNELS
                .iter()
                .position(|k| k.file == file)
                .ok_or(GpuError::Driver {
                    during: "kernel lookup",
                    message: format!("kernels/{file} is not in gpu::KERNELS"),
                })?;
            let module = context
                .load_module(Ptx::from_src(ptx[index].clone()))
                .map_err(driver("module load"))?;
            module.load_function(name).map_err(driver("function load"))
        };
        let resample_pass = function("resample.cu", "resample_pass")?;
        let analyse = function("quality.cu", "analyse")?;
        let phash32 = function("quality.cu", "phash32")?;
        let dhash9x8 = function("quality.cu", "dhash9x8")?;
        let clip_normalise = function("clip.cu", "clip_normalise")?;
        let stream = context.new_stream().map_err(driver("stream creation"))?;
        let basis = stream
            .clone_htod(&plan::dct_basis())
            .map_err(driver("upload"))?;
        Ok(CudaKernels {
            context,
            stream: Mutex::new(stream),
            resample_pass,
            analyse,
            phash32,
            dhash9x8,
            clip_normalise,
            basis,
            warned: AtomicBool::new(false),
            busy_nanos: [AtomicU64::new(0), AtomicU64::new(0)],
            host_batch: Batcher::new(plan::MAX_BATCH_IMAGES),
            device_batch: Batcher::new(plan::MAX_BATCH_IMAGES),
        })
    }

    /// How long the GPU has worked for measuring and for CLIP inputs so far.
    pub fn busy(&self) -> KernelBusy {
        let seconds = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64 * 1e-9;
        KernelBusy {
            measure: seconds(&self.busy_nanos[0]),
            clip_inputs: seconds(&self.busy_nanos[1]),
        }
    }

    /// Measures many images in as few launches as the arena budget allows; on a GPU error,
    /// measures them on the CPU instead (the same results) and warns once.
    pub fn measure_batch(&self, images: &[LumaImage]) -> Vec<ImageQuality> {
        match self.try_measure_batch(images) {
            Ok(qualities) => qualities,
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!("{e}; measuring on the CPU instead");
                }
                images
                    .iter()
                    .map(|image| CpuKernels.measure(image))
                    .collect()
            }
        }
    }

    /// [`Self::measure_batch`] without the fallback.
    pub fn try_measure_batch(&self, images: &[LumaImage]) -> Result<Vec<ImageQuality>, GpuError> {
        let sizes: Vec<(u32, u32)> = images.iter().map(|i| (i.width, i.height)).collect();
        let mut out = Vec::with_capacity(images.len());
        for run in plan::batches(&sizes, MAX_ARENA_BYTES) {
            let plan = MeasurePlan::new(&sizes[run.clone()]);
            let images = &images[run];
            let packed = plan.pack_inputs(images).ok_or(GpuError::Driver {
                during: "upload",
                message: "an image's pixel count does not match its size".to_string(),
            })?;
            out.extend(self.run_plan(&plan, |stream, arena| {
                stream
                    .memcpy_htod(&packed, &mut arena.slice_mut(..packed.len()))
                    .map_err(driver("upload"))
            })?);
        }
        Ok(out)
    }

    /// Measures luminance planes already in device memory (nvJPEG's), copied device to device
    /// into the arena: the pixels never go through the host. No CPU fallback: an error is
    /// returned for the caller to decide.
    pub fn try_measure_device(
        &self,
        images: &[&DeviceLuma],
    ) -> Result<Vec<ImageQuality>, GpuError> {
        let sizes: Vec<(u32, u32)> = images.iter().map(|i| (i.width, i.height)).collect();
        let mut out = Vec::with_capacity(images.len());
        for run in plan::batches(&sizes, MAX_ARENA_BYTES) {
            let plan = MeasurePlan::new(&sizes[run.clone()]);
            let images = &images[run];
            out.extend(self.run_plan(&plan, |stream, arena| {
                for (image, input) in images.iter().zip(&plan.inputs) {
                    let (at, len) = (input.offset as usize, image.pixels.len());
                    if len as u64 != input.width as u64 * input.height as u64 {
                        return Err(GpuError::Driver {
                            during: "upload",
                            message: "a device plane's size does not match its dimensions"
                                .to_string(),
                        });
                    }
                    stream
                        .memcpy_dtod(&image.pixels, &mut arena.slice_mut(at..at + len))
                        .map_err(driver("device copy"))?;
                }
                Ok(())
            })?);
        }
        Ok(out)
    }

    /// Launches `resample_pass` once per stage, in order, on jobs that stay inside `arena` and
    /// the tables (the callers' plans are tested for it).
    fn run_passes(
        &self,
        stream: &Arc<CudaStream>,
        arena: &mut CudaSlice<u8>,
        stages: &[Vec<plan::PassJob>],
        bounds: &[i32],
        weights: &[i32],
    ) -> Result<(), GpuError> {
        if stages.is_empty() {
            return Ok(());
        }
        let bounds = stream.clone_htod(bounds).map_err(driver("upload"))?;
        let weights = stream.clone_htod(weights).map_err(driver("upload"))?;
        for stage in stages {
            let jobs = stream
                .clone_htod(&MeasurePlan::job_table(stage))
                .map_err(driver("upload"))?;
            let mut launch = stream.launch_builder(&self.resample_pass);
            launch
                .arg(&mut *arena)
                .arg(&jobs)
                .arg(&bounds)
                .arg(&weights);
            // SAFETY: the arguments are resample_pass's, in order; every offset and stride in
            // the jobs stays inside the arena and the tables (see above).
            unsafe { launch.launch(launch_config(plan::pass_launch(stage))) }
                .map_err(driver("resample_pass"))?;
        }
        Ok(())
    }

    /// Runs one plan; `upload` fills the arena's input region on the stream.
    fn run_plan(
        &self,
        plan: &MeasurePlan,
        upload: impl FnOnce(&Arc<CudaStream>, &mut CudaSlice<u8>) -> Result<(), GpuError>,
    ) -> Result<Vec<ImageQuality>, GpuError> {
        let n = plan.inputs.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let _busy = BusyTimer::new(&self.busy_nanos[0]);
        let stream = &*stream;
        let mut arena = stream
            .alloc_zeros::<u8>(plan.arena_len as usize)
            .map_err(driver("allocation"))?;
        upload(stream, &mut arena)?;
        // plan's tests check that every job stays inside the arena and the tables.
        self.run_passes(
            stream,
            &mut arena,
            &plan.stages,
            &plan.bounds,
            &plan.weights,
        )?;

        let (offsets, widths, heights) = plan.analysis_tables();
        let offsets = stream.clone_htod(&offsets).map_err(driver("upload"))?;
        let widths = stream.clone_htod(&widths).map_err(driver("upload"))?;
        let heights = stream.clone_htod(&heights).map_err(driver("upload"))?;
        let mut stats = stream
            .alloc_zeros::<u64>(4 * n)
            .map_err(driver("allocation"))?;
        let mut launch = stream.launch_builder(&self.analyse);
        launch
            .arg(&arena)
            .arg(&offsets)
            .arg(&widths)
            .arg(&heights)
            .arg(&mut stats);
        // SAFETY: analyse's arguments, in order; stats is zeroed and holds 4 sums per image.
        unsafe { launch.launch(launch_config(plan::analyse_launch(&plan.analysis))) }
            .map_err(driver("analyse"))?;

        let mut phashes = stream.alloc_zeros::<u64>(n).map_err(driver("allocation"))?;
        let mut launch = stream.launch_builder(&self.phash32);
        launch
            .arg(&arena)
            .arg(&plan.phash_base)
            .arg(&self.basis)
            .arg(&mut phashes);
        // SAFETY: phash32's arguments; the plan puts n 32x32 inputs at phash_base.
        unsafe { launch.launch(launch_config(plan::phash_launch(n))) }
            .map_err(driver("phash32"))?;

        let mut dhashes = stream.alloc_zeros::<u64>(n).map_err(driver("allocation"))?;
        let count = n as i32;
        let mut launch = stream.launch_builder(&self.dhash9x8);
        launch
            .arg(&arena)
            .arg(&plan.dhash_base)
            .arg(&mut dhashes)
            .arg(&count);
        // SAFETY: dhash9x8's arguments; the plan puts n 9x8 inputs at dhash_base.
        unsafe { launch.launch(launch_config(plan::dhash_launch(n))) }
            .map_err(driver("dhash9x8"))?;

        let stats = stream.clone_dtoh(&stats).map_err(driver("download"))?;
        let phashes = stream.clone_dtoh(&phashes).map_err(driver("download"))?;
        let dhashes = stream.clone_dtoh(&dhashes).map_err(driver("download"))?;
        stream.synchronize().map_err(driver("synchronize"))?;
        Ok(plan
            .analysis
            .iter()
            .enumerate()
            .map(|(i, plane)| {
                let sums = [
                    stats[4 * i],
                    stats[4 * i + 1],
                    stats[4 * i + 2],
                    stats[4 * i + 3],
                ];
                plan::image_quality(sums, plane.width, plane.height, phashes[i], dhashes[i])
            })
            .collect())
    }
}

/// An image for [`CudaKernels::clip_inputs`]: interleaved RGB, `3 * width` bytes a row, in
/// host memory or already on the device.
#[derive(Debug, Clone, Copy)]
pub enum RgbInput<'a> {
    Host {
        width: u32,
        height: u32,
        pixels: &'a [u8],
    },
    Device(&'a DeviceRgb),
}

impl RgbInput<'_> {
    fn size(&self) -> (u32, u32) {
        match self {
            RgbInput::Host { width, height, .. } => (*width, *height),
            RgbInput::Device(rgb) => (rgb.width, rgb.height),
        }
    }

    fn len(&self) -> usize {
        match self {
            RgbInput::Host { pixels, .. } => pixels.len(),
            RgbInput::Device(rgb) => rgb.pixels.len(),
        }
    }
}

/// Splits a CLIP batch into runs whose arenas stay under `max_arena_bytes` (an image larger
/// than that runs alone) and whose image count fits a launch.
pub fn clip_batches(sizes: &[(u32, u32)], size: u32, max_arena_bytes: u64) -> Vec<Range<usize>> {
    let needs: Vec<u64> = sizes
        .iter()
        .map(|&image| ClipPlan::new(&[image], size).arena_len)
        .collect();
    plan::split_runs(&needs, plan::MAX_BATCH_IMAGES, max_arena_bytes)
}

impl CudaKernels {
    /// CLIP's input for `images`: `n x 3 x size x size` float32, CHW, in device memory, equal
    /// bit for bit to `clip_pixel_values_rgb` of the same pixels. Complete when this returns
    /// (the stream is synchronised), so another stream (candle's) or the host may read it.
    pub fn clip_inputs(
        &self,
        images: &[RgbInput],
        size: u32,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<CudaSlice<f32>, GpuError> {
        let sizes: Vec<(u32, u32)> = images.iter().map(RgbInput::size).collect();
        let floats = 3 * size as usize * size as usize;
        let stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let _busy = BusyTimer::new(&self.busy_nanos[1]);
        let stream = &*stream;
        let mut out = stream
            .alloc_zeros::<f32>((images.len() * floats).max(1))
            .map_err(driver("allocation"))?;
        let norm = stream
            .clone_htod(&clip_plan::normalisation(mean, std))
            .map_err(driver("upload"))?;
        for run in clip_batches(&sizes, size, MAX_ARENA_BYTES) {
            let plan = ClipPlan::new(&sizes[run.clone()], size);
            let mut arena = stream
                .alloc_zeros::<u8>(plan.arena_len.max(1) as usize)
                .map_err(driver("allocation"))?;
            for (image, plane) in images[run.clone()].iter().zip(&plan.inputs) {
                if image.len() as u64 != plane.len() {
                    return Err(GpuError::Driver {
                        during: "upload",
                        message: "an RGB image's byte count does not match its size".to_string(),
                    });
                }
                let at = plane.offset as usize;
                let mut slot = arena.slice_mut(at..at + image.len());
                match image {
                    RgbInput::Host { pixels, .. } => stream.memcpy_htod(*pixels, &mut slot),
                    RgbInput::Device(rgb) => stream.memcpy_dtod(&rgb.pixels, &mut slot),
                }
                .map_err(driver("upload"))?;
            }
            // clip_plan's tests check that every job stays inside the arena and the tables.
            self.run_passes(
                stream,
                &mut arena,
                &plan.stages,
                &plan.bounds,
                &plan.weights,
            )?;
            let crops = stream
                .clone_htod(&plan.crop_table())
                .map_err(driver("upload"))?;
            let side = size as i32;
            let mut target = out.slice_mut(run.start * floats..run.end * floats);
            let mut launch = stream.launch_builder(&self.clip_normalise);
            launch
                .arg(&arena)
                .arg(&crops)
                .arg(&side)
                .arg(&norm)
                .arg(&mut target);
            // SAFETY: clip_normalise's arguments, in order; each crop reads size x size pixels
            // inside the arena, and `target` holds 3 x size x size floats per image of the run.
            unsafe { launch.launch(launch_config(clip_plan::normalise_launch(run.len(), size))) }
                .map_err(driver("clip_normalise"))?;
        }
        stream.synchronize().map_err(driver("synchronize"))?;
        Ok(out)
    }

    /// [`Self::clip_inputs`] copied to the host, for a CLIP that runs on the CPU.
    pub fn clip_inputs_host(
        &self,
        images: &[RgbInput],
        size: u32,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Vec<f32>, GpuError> {
        let device = self.clip_inputs(images, size, mean, std)?;
        let stream = device.stream().clone();
        let mut host = stream.clone_dtoh(&device).map_err(driver("download"))?;
        stream.synchronize().map_err(driver("synchronize"))?;
        host.truncate(images.len() * 3 * size as usize * size as usize);
        Ok(host)
    }
}

impl QualityKernels for CudaKernels {
    fn measure(&self, luma: &LumaImage) -> ImageQuality {
        match self.measure_batch(std::slice::from_ref(luma)).pop() {
            Some(quality) => quality,
            None => CpuKernels.measure(luma),
        }
    }

    /// Queued with what the other measure workers submit at the same time, and measured with
    /// them in one batch (`batcher`).
    fn measure_owned(&self, luma: LumaImage) -> ImageQuality {
        match self
            .host_batch
            .submit(luma, |images| self.measure_batch(images))
        {
            Ok(quality) => quality,
            Err(luma) => CpuKernels.measure(&luma),
        }
    }
}

impl CudaKernels {
    /// [`Self::try_measure_device`] of one plane, in a batch with what the other measure
    /// workers submit at the same time.
    pub fn measure_device_batched(&self, luma: DeviceLuma) -> Result<ImageQuality, GpuError> {
        let outcome = self.device_batch.submit(luma, |lumas| {
            let planes: Vec<&DeviceLuma> = lumas.iter().collect();
            match self.try_measure_device(&planes) {
                Ok(qualities) => qualities.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e); lumas.len()],
            }
        });
        outcome.unwrap_or_else(|_| {
            Err(GpuError::Driver {
                during: "measure batch",
                message: "the batch failed".to_string(),
            })
        })
    }

    /// Measure batches run so far and the images they held, host and device planes together.
    pub fn batch_counts(&self) -> (u64, u64) {
        let (a, b) = (self.host_batch.counts(), self.device_batch.counts());
        (a.0 + b.0, a.1 + b.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_launches_become_cudarc_configs() {
        let config = launch_config(plan::phash_launch(7));
        assert_eq!(
            (config.grid_dim, config.block_dim, config.shared_mem_bytes),
            ((1, 7, 1), (64, 1, 1), 0)
        );
    }

    #[test]
    fn kernels_are_shareable_across_measure_workers() {
        fn shareable<T: Send + Sync>() {}
        shareable::<CudaKernels>();
    }
}
