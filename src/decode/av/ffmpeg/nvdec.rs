//! Everything unsafe about NVDEC: the CUDA device FFmpeg decodes on, attaching it to a decoder
//! before it opens, and copying decoded frames out of device memory.
//!
//! The device is FFmpeg's CUDA device context wrapped around the CUDA *primary* context of the
//! GPU, the one cudarc (and so the rest of mmcurate) uses: it is retained through cudarc and
//! handed to `av_hwdevice_ctx_init`. Not `av_hwdevice_ctx_create(…, AV_CUDA_USE_PRIMARY_CONTEXT)`:
//! FFmpeg 5.1 then insists on the primary context's flags being `CU_CTX_SCHED_BLOCKING_SYNC`
//! and fails with ENOTSUP ("Primary context already active with incompatible flags") when it is
//! already active with others, which it always is here (`gpu::select` opened it first, with
//! the default flags).
//!
//! Also, in safe code: bringing NVDEC's frames to host memory in the CPU decoder's very layout
//! ([`HostFrames`]), so that they go through the same conversions as the CPU's.

use std::collections::BTreeMap;
use std::ffi::{c_int, c_uint, c_void};
use std::ptr::{self, NonNull};
use std::sync::Mutex;

use cudarc::driver::{result as cu, sys as cu_sys};
use ffmpeg::ffi;
use ffmpeg::format::Pixel;
use ffmpeg::util::frame;
use ffmpeg::{codec, Codec};
use ffmpeg_next as ffmpeg;

use super::ffmpeg_error;
use crate::decode::av::NvdecDeviceState;
use crate::decode::DecodeError;

/// Why NVDEC cannot decode (a device that does not open, a stream it cannot take, a frame
/// that would not match the CPU's); the video then decodes on the CPU, or the sample says why.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum NvdecError {
    #[error("out of memory for a CUDA device reference")]
    OutOfMemory,
    #[error("{0}")]
    Ffmpeg(String),
    #[error("no CUDA driver library (libcuda.so) found")]
    NoDriver,
    #[error(
        "the driver's video decoding library {NVCUVID} cannot be loaded ({0}); in a \
         container, NVIDIA_DRIVER_CAPABILITIES must include `video`"
    )]
    NoVideoLibrary(String),
    #[error("CUDA does not start: {0}")]
    CudaInit(String),
    #[error("no CUDA device {ordinal}{reason}")]
    NoDevice { ordinal: usize, reason: String },
    #[error("the primary context of CUDA device {ordinal}: {reason}")]
    PrimaryContext { ordinal: usize, reason: String },
    #[error("FFmpeg cannot allocate a CUDA device context")]
    ContextAlloc,
    #[error("FFmpeg's CUDA device context does not start: {0}")]
    ContextInit(String),
    #[error("this FFmpeg has no NVDEC decoder for {0}; decoded on the CPU")]
    NoDecoder(&'static str),
    #[error("NVDEC decoded a damaged frame")]
    DamagedFrame,
    #[error(
        "the stream crops {left} px left and {top} px top, which FFmpeg does not do on the device"
    )]
    Cropped { left: usize, top: usize },
    #[error("copying a frame from the GPU failed: {0}")]
    Transfer(String),
    #[error("NVDEC gave {from:?} frames where the CPU decoder gives {to:?}: no exact conversion")]
    NoExactConversion { from: Pixel, to: Pixel },
    #[error("a {format:?} frame with {planes} planes, or no room for its {to:?} copy")]
    Planes {
        format: Pixel,
        planes: usize,
        to: Pixel,
    },
    #[error("NVDEC's frame is smaller than its size")]
    ShortFrame,
}

/// The library FFmpeg's NVDEC loads at run time; it comes with the driver, but a container
/// has it only with the `video` driver capability.
const NVCUVID: &str = "libnvcuvid.so.1";

/// A counted reference to FFmpeg's CUDA device context (an `AVBufferRef` whose data is the
/// `AVHWDeviceContext`), unreferenced on drop; the last one frees the context, whose `free`
/// callback releases the primary context retained for it.
pub(super) struct Device(NonNull<ffi::AVBufferRef>);

// SAFETY: a `Device` is only referenced again (av_buffer_ref: the count is atomic) and
// unreferenced once, by its owner. FFmpeg's CUDA device context is meant to be shared by
// decoders on several threads at once: each pushes the CUDA context it holds around its
// own driver calls, and the CUDA driver API is thread-safe.
unsafe impl Send for Device {}
unsafe impl Sync for Device {}

impl Device {
    /// A new reference to the same device context.
    fn new_ref(&self) -> Result<NonNull<ffi::AVBufferRef>, NvdecError> {
        // SAFETY: `self.0` is a live reference, owned by `self`.
        NonNull::new(unsafe { ffi::av_buffer_ref(self.0.as_ptr()) }).ok_or(NvdecError::OutOfMemory)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let mut reference = self.0.as_ptr();
        // SAFETY: the reference is owned by `self` and unreferenced only here.
        unsafe { ffi::av_buffer_unref(&mut reference) };
    }
}

struct Opened {
    device: Result<Device, NvdecError>,
    attempts: u32,
}

/// The devices tried so far, by ordinal, with the outcome: each is opened at most once per
/// process, so a machine without a GPU does not try again for every video. Statics are
/// never dropped: an opened device lives as long as the process, as its primary context.
static DEVICES: Mutex<BTreeMap<usize, Opened>> = Mutex::new(BTreeMap::new());

/// A reference to the NVDEC device for CUDA device `ordinal`, opened on first use (and
/// logged once), or why there is none.
pub(super) fn device(ordinal: usize) -> Result<Device, NvdecError> {
    let mut devices = DEVICES.lock().unwrap_or_else(|p| p.into_inner());
    let opened = devices.entry(ordinal).or_insert_with(|| {
        let device = open(ordinal);
        match &device {
            Ok(_) => tracing::info!(
                "videos decode with NVDEC on cuda:{ordinal} (those it cannot decode exactly, on the CPU)"
            ),
            Err(reason) => tracing::warn!(
                "NVDEC cannot be used on cuda:{ordinal}, videos decode on the CPU: {reason}"
            ),
        }
        Opened {
            device,
            attempts: 1,
        }
    });
    match &opened.device {
        Ok(device) => device.new_ref().map(Device),
        Err(reason) => Err(reason.clone()),
    }
}

pub(super) fn state(ordinal: usize) -> Option<NvdecDeviceState> {
    let devices = DEVICES.lock().unwrap_or_else(|p| p.into_inner());
    devices.get(&ordinal).map(|opened| NvdecDeviceState {
        opened: opened
            .device
            .as_ref()
            .map(|_| ())
            .map_err(|e| e.to_string()),
        attempts: opened.attempts,
    })
}

/// Whether the CUDA driver library loads, checked before the first cudarc call (which panics
/// without it). The caller hands the device in ([`FrameSampling::cuda_device`], once
/// `gpu::select` chose it); this only keeps an ordinal asked for on a machine without CUDA
/// from panicking.
///
/// [`FrameSampling::cuda_device`]: crate::decode::av::FrameSampling::cuda_device
fn driver_library_present() -> bool {
    // With the `cuda` feature candle links libcuda.so.1 at build time: a binary that started
    // has it.
    #[cfg(feature = "cuda")]
    return true;
    // SAFETY: only tries to open the shared library; no symbol is called.
    #[cfg(not(feature = "cuda"))]
    unsafe {
        cudarc::driver::sys::is_culib_present()
    }
}

fn open(ordinal: usize) -> Result<Device, NvdecError> {
    // FFmpeg logs its own failures: keep it quiet, as everywhere in this module.
    super::init_ffmpeg().map_err(|e| NvdecError::Ffmpeg(e.to_string()))?;
    // cudarc panics on its first call without the driver library.
    if !driver_library_present() {
        return Err(NvdecError::NoDriver);
    }
    // SAFETY: loads (and unloads) the driver's own library, as FFmpeg's NVDEC would; it
    // runs no code of ours.
    if let Err(e) = unsafe { libloading::Library::new(NVCUVID) } {
        return Err(NvdecError::NoVideoLibrary(e.to_string()));
    }
    cu::init().map_err(|e| NvdecError::CudaInit(e.to_string()))?;
    let no_device = |reason: String| NvdecError::NoDevice { ordinal, reason };
    let index = c_int::try_from(ordinal).map_err(|_| no_device(String::new()))?;
    let cu_device = cu::device::get(index).map_err(|e| no_device(format!(": {e}")))?;
    // SAFETY: `cu_device` came from `device::get`, as `retain` requires. The retain is
    // released by `release_primary` when FFmpeg frees the device context, or just below.
    let primary =
        unsafe { cu::primary_ctx::retain(cu_device) }.map_err(|e| NvdecError::PrimaryContext {
            ordinal,
            reason: e.to_string(),
        })?;
    // SAFETY: FFmpeg's documented way to wrap an existing CUDA context: allocate the
    // device context, fill in its API-specific part (`hwctx`, an AVCUDADeviceContext for
    // the CUDA type) and init it. `cuda_ctx` is the retained primary context (both
    // bindings declare CUcontext as a pointer to an opaque struct); a NULL stream is
    // CUDA's default stream, FFmpeg's own default. FFmpeg does not release a context it
    // did not create: our `free` callback does, with the device kept in `user_opaque`.
    // Once the buffer exists, every failure path frees it through `Device`'s drop.
    unsafe {
        let Some(buffer) = NonNull::new(ffi::av_hwdevice_ctx_alloc(
            ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA,
        )) else {
            let _ = cu::primary_ctx::release(cu_device);
            return Err(NvdecError::ContextAlloc);
        };
        let hw = (*buffer.as_ptr()).data as *mut ffi::AVHWDeviceContext;
        let cuda = (*hw).hwctx as *mut ffi::AVCUDADeviceContext;
        (*cuda).cuda_ctx = primary as ffi::CUcontext;
        (*cuda).stream = ptr::null_mut();
        (*hw).user_opaque = cu_device as isize as *mut c_void;
        (*hw).free = Some(release_primary);
        let device = Device(buffer);
        let ret = ffi::av_hwdevice_ctx_init(buffer.as_ptr());
        if ret < 0 {
            return Err(NvdecError::ContextInit(
                ffmpeg::Error::from(ret).to_string(),
            ));
        }
        Ok(device)
    }
}

/// `AVHWDeviceContext.free`: releases the primary context retained in `open`.
unsafe extern "C" fn release_primary(context: *mut ffi::AVHWDeviceContext) {
    // SAFETY: FFmpeg calls this once, with the context `open` set up, whose `user_opaque`
    // holds the device the primary context was retained on.
    unsafe {
        let cu_device = (*context).user_opaque as isize as cu_sys::CUdevice;
        let _ = cu::primary_ctx::release(cu_device);
    }
}

/// The decoder NVDEC decodes a stream with.
pub(super) struct CudaDecoder {
    pub codec: Codec,
    /// It is the decoder the CPU path uses (so its software frames are the reference).
    pub is_default: bool,
}

/// FFmpeg's decoder for `id` when it has a CUDA hardware configuration, else another
/// decoder for `id` that has one and decodes through FFmpeg's hwaccel (not a `*_cuvid`
/// wrapper, which bypasses FFmpeg's parsing and frame handling and would not give the
/// CPU path's frames).
pub(super) fn cuda_decoder(id: codec::Id) -> Option<CudaDecoder> {
    let default = ffmpeg::decoder::find(id)?;
    if decodes_to_cuda(default) {
        return Some(CudaDecoder {
            codec: default,
            is_default: true,
        });
    }
    let mut cursor: *mut c_void = ptr::null_mut();
    loop {
        // SAFETY: av_codec_iterate's documented use: an opaque cursor that starts null; it
        // returns FFmpeg's static codec descriptions, then null.
        let p = unsafe { ffi::av_codec_iterate(&mut cursor) };
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` is one of FFmpeg's static codec descriptions.
        let (codec, capabilities) = unsafe { (Codec::wrap(p), (*p).capabilities) };
        let hardware = (capabilities as c_uint) & ffi::AV_CODEC_CAP_HARDWARE != 0;
        if codec.is_decoder() && codec.id() == id && !hardware && decodes_to_cuda(codec) {
            return Some(CudaDecoder {
                codec,
                is_default: false,
            });
        }
    }
}

/// Whether `codec` can decode to CUDA frames with a device context (FFmpeg's hwaccel).
fn decodes_to_cuda(codec: Codec) -> bool {
    let method = ffi::AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX as c_int;
    for index in 0.. {
        // SAFETY: `codec` is a static codec description; configurations are indexed from
        // 0 until null.
        let config = unsafe { ffi::avcodec_get_hw_config(codec.as_ptr(), index) };
        if config.is_null() {
            return false;
        }
        // SAFETY: a non-null configuration is one of the codec's static entries.
        let config = unsafe { &*config };
        if config.methods & method != 0
            && config.device_type == ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA
            && config.pix_fmt == ffi::AVPixelFormat::AV_PIX_FMT_CUDA
        {
            return true;
        }
    }
    false
}

/// Readies the unopened decoder `context` for NVDEC on `device`; returns the decoder to
/// open it with, or why NVDEC cannot decode `id`.
pub(super) fn attach(
    context: &mut codec::Context,
    id: codec::Id,
    device: &Device,
) -> Result<CudaDecoder, NvdecError> {
    let decoder = cuda_decoder(id).ok_or(NvdecError::NoDecoder(id.name()))?;
    let reference = device.new_ref()?;
    // SAFETY: the context is not opened yet, which is when these fields are set. The
    // context owns the reference from here (avcodec_free_context unreferences it, also
    // when opening fails), and it had none before (a fresh context).
    unsafe {
        let context = context.as_mut_ptr();
        (*context).hw_device_ctx = reference.as_ptr();
        (*context).get_format = Some(prefer_cuda);
    }
    Ok(decoder)
}

/// `get_format`: CUDA frames whenever FFmpeg offers them; else (the CUDA format is offered
/// no more once NVDEC's setup declined the stream) FFmpeg's own choice, which is then the
/// software format the CPU path gets.
unsafe extern "C" fn prefer_cuda(
    context: *mut ffi::AVCodecContext,
    formats: *const ffi::AVPixelFormat,
) -> ffi::AVPixelFormat {
    let cuda = ffi::AVPixelFormat::AV_PIX_FMT_CUDA as c_int;
    let none = ffi::AVPixelFormat::AV_PIX_FMT_NONE as c_int;
    // Read as integers, not as the Rust enum: no value from C can be out of its range.
    let list = formats as *const c_int;
    let mut i = 0;
    // SAFETY: FFmpeg passes a list ending with AV_PIX_FMT_NONE.
    while unsafe { *list.add(i) } != none {
        if unsafe { *list.add(i) } == cuda {
            return ffi::AVPixelFormat::AV_PIX_FMT_CUDA;
        }
        i += 1;
    }
    // SAFETY: the arguments FFmpeg gave us, as the default expects them.
    unsafe { ffi::avcodec_default_get_format(context, formats) }
}

/// What the CPU decoder would output for the stream (the decoder keeps it in
/// `sw_pix_fmt` while it decodes to CUDA frames).
pub(super) fn software_format(decoder: &ffmpeg::decoder::Video) -> Pixel {
    // SAFETY: reads a plain field of the opened decoder's context.
    Pixel::from(unsafe { (*decoder.as_ptr()).sw_pix_fmt })
}

/// Refuses a device frame that would not match the CPU's: one NVDEC reports damaged, or
/// one whose left or top crop FFmpeg could not apply (it crops device frames only on the
/// right and bottom).
pub(super) fn check_frame(frame: &frame::Video) -> Result<(), NvdecError> {
    // SAFETY: reads plain fields of a decoded frame.
    let (flags, errors, left, top) = unsafe {
        let f = frame.as_ptr();
        (
            (*f).flags,
            (*f).decode_error_flags,
            (*f).crop_left,
            (*f).crop_top,
        )
    };
    if flags & ffi::AV_FRAME_FLAG_CORRUPT != 0 || errors != 0 {
        return Err(NvdecError::DamagedFrame);
    }
    if left != 0 || top != 0 {
        return Err(NvdecError::Cropped { left, top });
    }
    Ok(())
}

/// Copies a device frame into host memory (`host` is reset and reallocated by FFmpeg in
/// the frames context's software format: NV12, P010, P016, YUV444P or YUV444P16).
pub(super) fn transfer(
    device_frame: &frame::Video,
    host: &mut frame::Video,
) -> Result<(), NvdecError> {
    // SAFETY: `host` is ours; unreferencing it leaves a blank frame, which
    // av_hwframe_transfer_data allocates itself. `device_frame` is a decoded CUDA frame
    // (format checked by the caller) with its frames context. The copy is synchronous.
    let ret = unsafe {
        ffi::av_frame_unref(host.as_mut_ptr());
        ffi::av_hwframe_transfer_data(host.as_mut_ptr(), device_frame.as_ptr(), 0)
    };
    if ret < 0 {
        return Err(NvdecError::Transfer(ffmpeg::Error::from(ret).to_string()));
    }
    Ok(())
}

/// Brings NVDEC's frames (in device memory, `Pixel::CUDA`) to host memory in the very layout
/// the CPU decoder gives for the stream, so that they go through the same swscale conversions
/// as the CPU's frames; frames already in host memory pass as they are.
///
/// Why not hand NVDEC's NV12 to swscale directly: NV12 → GRAY8 reads only the Y plane, which
/// NV12 and yuv420p share, but the two are not the same to swscale elsewhere. NV12 has no
/// full-range (`yuvj`) variant, so a full-range stream's gray would be range-converted, and
/// yuv420p → RGB24 at the same size takes swscale's special unscaled path that NV12 does not,
/// rounding differently. Rearranging the planes (and shifting P010's MSB-aligned samples down)
/// is lossless and leaves swscale exactly the CPU's input.
pub(super) struct HostFrames {
    /// av_hwframe_transfer_data's output (NV12, P010, P016 or YUV444P(16)).
    transferred: frame::Video,
    /// The same samples in the CPU decoder's format, reused from frame to frame.
    host: frame::Video,
    pub(super) from_device: u64,
    pub(super) in_software: u64,
}

impl Default for HostFrames {
    fn default() -> Self {
        HostFrames {
            transferred: frame::Video::empty(),
            host: frame::Video::empty(),
            from_device: 0,
            in_software: 0,
        }
    }
}

impl HostFrames {
    pub(super) fn frame<'a>(
        &'a mut self,
        decoded: &'a frame::Video,
        decoder: &ffmpeg::decoder::Video,
    ) -> Result<&'a frame::Video, DecodeError> {
        if decoded.format() != Pixel::CUDA {
            self.in_software += 1;
            return Ok(decoded);
        }
        self.from_device += 1;
        let err = |e: NvdecError| ffmpeg_error("nvdec", e);
        check_frame(decoded).map_err(err)?;
        transfer(decoded, &mut self.transferred).map_err(err)?;
        let cpu_format = software_format(decoder);
        to_cpu_layout(&self.transferred, cpu_format, &mut self.host).map_err(err)?;
        Ok(&self.host)
    }
}

/// How NVDEC's host copy maps onto the CPU decoder's format.
struct Layout {
    /// NV12-style: one plane of interleaved U and V samples (else three planes).
    interleaved_chroma: bool,
    /// Bytes per sample: 1, or 2 (little-endian).
    sample_bytes: usize,
    /// NVDEC puts 10- and 12-bit samples in the high bits of 16: shift right by this.
    shift: u32,
}

fn layout(from: Pixel, to: Pixel) -> Option<Layout> {
    let (interleaved_chroma, sample_bytes, shift) = match (from, to) {
        (Pixel::NV12, Pixel::YUV420P | Pixel::YUVJ420P) => (true, 1, 0),
        (Pixel::P010LE, Pixel::YUV420P10LE) => (true, 2, 6),
        (Pixel::P016LE, Pixel::YUV420P12LE) => (true, 2, 4),
        (Pixel::YUV444P, Pixel::YUV444P | Pixel::YUVJ444P) => (false, 1, 0),
        (Pixel::YUV444P16LE, Pixel::YUV444P10LE) => (false, 2, 6),
        (Pixel::YUV444P16LE, Pixel::YUV444P12LE) => (false, 2, 4),
        _ => return None,
    };
    Some(Layout {
        interleaved_chroma,
        sample_bytes,
        shift,
    })
}

/// Rewrites `from` (NVDEC's host copy) into `out` in `cpu_format`, sample for sample.
fn to_cpu_layout(
    from: &frame::Video,
    cpu_format: Pixel,
    out: &mut frame::Video,
) -> Result<(), NvdecError> {
    let Some(layout) = layout(from.format(), cpu_format) else {
        return Err(NvdecError::NoExactConversion {
            from: from.format(),
            to: cpu_format,
        });
    };
    let (width, height) = (from.width(), from.height());
    if out.format() != cpu_format || out.width() != width || out.height() != height {
        *out = frame::Video::new(cpu_format, width, height);
    }
    let planes_in = if layout.interleaved_chroma { 2 } else { 3 };
    if from.planes() < planes_in || out.planes() < 3 {
        return Err(NvdecError::Planes {
            format: from.format(),
            planes: from.planes(),
            to: cpu_format,
        });
    }
    for plane in 0..3 {
        let (source, step, first) = match (plane, layout.interleaved_chroma) {
            (0, _) => (0, 1, 0),
            (_, true) => (1, 2, plane - 1),
            (_, false) => (plane, 1, 0),
        };
        let rows = out.plane_height(plane) as usize;
        let samples = out.plane_width(plane) as usize;
        let dst_stride = out.stride(plane);
        copy_samples(
            from.data(source),
            from.stride(source),
            out.data_mut(plane),
            dst_stride,
            (rows, samples),
            (step, first),
            &layout,
        )?;
    }
    Ok(())
}

/// Copies `rows` rows of `samples` samples, taking every `step`-th sample of `src` from sample
/// `first` on, shifting each right by the layout's shift.
fn copy_samples(
    src: &[u8],
    src_stride: usize,
    dst: &mut [u8],
    dst_stride: usize,
    (rows, samples): (usize, usize),
    (step, first): (usize, usize),
    layout: &Layout,
) -> Result<(), NvdecError> {
    let bytes = layout.sample_bytes;
    let short = || NvdecError::ShortFrame;
    if samples == 0 {
        return Ok(());
    }
    let src_row_bytes = ((samples - 1) * step + first + 1) * bytes;
    for y in 0..rows {
        let src_row = src
            .get(y * src_stride..y * src_stride + src_row_bytes)
            .ok_or_else(short)?;
        let dst_row = dst
            .get_mut(y * dst_stride..y * dst_stride + samples * bytes)
            .ok_or_else(short)?;
        match (bytes, step) {
            (1, 1) => dst_row.copy_from_slice(src_row),
            (1, _) => {
                for (x, d) in dst_row.iter_mut().enumerate() {
                    *d = src_row[x * step + first];
                }
            }
            _ => {
                for (x, d) in dst_row.chunks_exact_mut(2).enumerate() {
                    let i = (x * step + first) * 2;
                    let v = u16::from_le_bytes([src_row[i], src_row[i + 1]]) >> layout.shift;
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use ffmpeg::software::scaling;

    use super::super::test_support::*;
    use super::super::video::{Converter, NVDEC_CODECS};
    use super::super::{
        init_ffmpeg, next_packet, nvdec, nvdec_device_state, open_media, sample_video_frames,
        video_stream_index,
    };
    use super::*;
    use crate::decode::av::sampler::{scaled_size, THUMBNAIL_SIDE};
    use crate::decode::av::{FrameSampling, CPU, NVDEC};

    /// Like [`ffmpeg_cli`], but `None` when there is no ffmpeg CLI or it cannot make the file
    /// (an encoder this FFmpeg lacks): for the GPU machine, which may have neither.
    fn try_ffmpeg_cli(dir: &Path, args: &[&str], output: &str) -> Option<Vec<u8>> {
        let path = dir.join(output);
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-y"])
            .args(args)
            .arg(&path)
            .status()
            .ok()?;
        status
            .success()
            .then(|| std::fs::read(&path).ok())
            .flatten()
    }

    /// Short clips of `bikes.mp4` re-encoded with `codec_args`, for the NVDEC tests.
    fn reencoded(dir: &Path, codec_args: &[&str], name: &str) -> Option<Vec<u8>> {
        let input = media_path("video/bikes.mp4");
        let args = [&["-i", input.as_str(), "-t", "2", "-an"][..], codec_args].concat();
        try_ffmpeg_cli(dir, &args, name)
    }

    /// The first `count` frames the CPU decoder gives, as it gives them.
    fn cpu_frames(bytes: &[u8], count: usize) -> Vec<frame::Video> {
        let mut media = open_media(bytes).unwrap();
        let index = video_stream_index(media.input()).unwrap();
        let context = {
            let stream = media.input().stream(index).unwrap();
            codec::Context::from_parameters(stream.parameters()).unwrap()
        };
        let mut decoder = context.decoder().video().unwrap();
        let mut frames = Vec::new();
        while frames.len() < count {
            let Some(packet) = next_packet(&mut media, index, "test").unwrap() else {
                break;
            };
            decoder.send_packet(&packet).unwrap();
            let mut frame = frame::Video::empty();
            while decoder.receive_frame(&mut frame).is_ok() {
                frames.push(std::mem::replace(&mut frame, frame::Video::empty()));
            }
        }
        frames.truncate(count);
        frames
    }

    /// What `av_hwframe_transfer_data` gives for a CPU frame's picture: the frames context's
    /// software format (FFmpeg's `ff_nvdec_frame_params`) with the samples laid out as NVDEC
    /// writes them (chroma interleaved for 4:2:0, 10 and 12 bits in the high bits of 16).
    fn as_nvdec_writes_it(cpu: &frame::Video) -> frame::Video {
        let (format, interleaved, shift) = match cpu.format() {
            Pixel::YUV420P | Pixel::YUVJ420P => (Pixel::NV12, true, 0),
            Pixel::YUV420P10LE => (Pixel::P010LE, true, 6),
            Pixel::YUV420P12LE => (Pixel::P016LE, true, 4),
            Pixel::YUV444P | Pixel::YUVJ444P => (Pixel::YUV444P, false, 0),
            Pixel::YUV444P10LE => (Pixel::YUV444P16LE, false, 6),
            Pixel::YUV444P12LE => (Pixel::YUV444P16LE, false, 4),
            other => panic!("no NVDEC layout for {other:?}"),
        };
        let wide = cpu.format() != Pixel::YUV420P
            && cpu.format() != Pixel::YUVJ420P
            && cpu.format() != Pixel::YUV444P
            && cpu.format() != Pixel::YUVJ444P;
        let bytes = if wide { 2 } else { 1 };
        let mut out = frame::Video::new(format, cpu.width(), cpu.height());
        let sample = |plane: usize, x: usize, y: usize| -> u16 {
            let i = y * cpu.stride(plane) + x * bytes;
            let data = cpu.data(plane);
            if wide {
                u16::from_le_bytes([data[i], data[i + 1]])
            } else {
                data[i] as u16
            }
        };
        let put = |out: &mut frame::Video, plane: usize, x: usize, y: usize, v: u16| {
            let stride = out.stride(plane);
            let data = out.data_mut(plane);
            let i = y * stride + x * bytes;
            if wide {
                data[i..i + 2].copy_from_slice(&(v << shift).to_le_bytes());
            } else {
                data[i] = v as u8;
            }
        };
        for plane in 0..3 {
            let (w, h) = (cpu.plane_width(plane), cpu.plane_height(plane));
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let v = sample(plane, x, y);
                    match (plane, interleaved) {
                        (0, _) | (_, false) => put(&mut out, plane, x, y, v),
                        (_, true) => put(&mut out, 1, 2 * x + plane - 1, y, v),
                    }
                }
            }
        }
        out
    }

    /// Each plane's rows (without stride padding) of a planar frame.
    fn planes(frame: &frame::Video, bytes: usize) -> Vec<Vec<u8>> {
        (0..frame.planes())
            .map(|p| {
                let row = frame.plane_width(p) as usize * bytes;
                (0..frame.plane_height(p) as usize)
                    .flat_map(|y| &frame.data(p)[y * frame.stride(p)..y * frame.stride(p) + row])
                    .copied()
                    .collect()
            })
            .collect()
    }

    /// The three conversions the sampler makes from a frame.
    fn conversions(frame: &frame::Video) -> [Vec<u8>; 3] {
        let (w, h) = (frame.width(), frame.height());
        let (sw, sh) = scaled_size(w, h, w.min(h) / 2);
        [
            Converter::new(scaling::Flags::AREA)
                .convert(frame, Pixel::GRAY8, THUMBNAIL_SIDE, THUMBNAIL_SIDE, 1)
                .unwrap(),
            Converter::new(scaling::Flags::AREA)
                .convert(frame, Pixel::GRAY8, sw, sh, 1)
                .unwrap(),
            Converter::new(scaling::Flags::BICUBIC)
                .convert(frame, Pixel::RGB24, w, h, 3)
                .unwrap(),
        ]
    }

    /// NVDEC's host copies, rearranged, are the CPU decoder's frames sample for sample, so the
    /// sampler's conversions give the same bytes (the GPU path's conversion, checked here on
    /// frames laid out as NVDEC writes them; the transfer itself needs a GPU, see
    /// `on_a_gpu_nvdec_gives_the_cpus_frames`).
    #[test]
    fn nvdec_layouts_rearranged_are_the_cpu_decoders_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut cases = vec![
            ("h264 yuv420p", media("video/bikes.mp4")),
            ("h264 176x144", media("video/carphone_pristine.mp4")),
        ];
        let encodes: [(&str, &[&str]); 6] = [
            (
                "h264 full range (yuvj420p), odd chroma width",
                &[
                    "-vf",
                    "scale=314:138",
                    "-c:v",
                    "libx264",
                    "-pix_fmt",
                    "yuvj420p",
                    "-f",
                    "mp4",
                ],
            ),
            (
                "h264 10-bit",
                &["-c:v", "libx264", "-pix_fmt", "yuv420p10le", "-f", "mp4"],
            ),
            (
                "hevc 12-bit",
                &[
                    "-c:v",
                    "libx265",
                    "-pix_fmt",
                    "yuv420p12le",
                    "-x265-params",
                    "log-level=none",
                    "-f",
                    "mp4",
                ],
            ),
            (
                "h264 4:4:4",
                &["-c:v", "libx264", "-pix_fmt", "yuv444p", "-f", "mp4"],
            ),
            (
                "hevc 4:4:4 10-bit",
                &[
                    "-c:v",
                    "libx265",
                    "-pix_fmt",
                    "yuv444p10le",
                    "-x265-params",
                    "log-level=none",
                    "-f",
                    "mp4",
                ],
            ),
            (
                "vp9 4:2:0",
                &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-f", "webm"],
            ),
        ];
        for (name, args) in encodes {
            let bytes = reencoded(dir.path(), args, &format!("{}.bin", name.replace(' ', "_")))
                .unwrap_or_else(|| panic!("ffmpeg could not make the {name} clip"));
            cases.push((name, bytes));
        }
        let mut formats = Vec::new();
        for (name, bytes) in &cases {
            let frames = cpu_frames(bytes, 3);
            assert_eq!(frames.len(), 3, "{name}");
            for cpu in &frames {
                let nvdec = as_nvdec_writes_it(cpu);
                let mut host = frame::Video::empty();
                to_cpu_layout(&nvdec, cpu.format(), &mut host).unwrap();
                assert_eq!(
                    (host.format(), host.width(), host.height()),
                    (cpu.format(), cpu.width(), cpu.height()),
                    "{name}"
                );
                let bytes = if matches!(nvdec.format(), Pixel::NV12 | Pixel::YUV444P) {
                    1
                } else {
                    2
                };
                assert!(
                    planes(&host, bytes) == planes(cpu, bytes),
                    "{name}: planes differ"
                );
                assert!(
                    conversions(&host) == conversions(cpu),
                    "{name}: conversions differ"
                );
            }
            formats.push(frames[0].format());
        }
        // Every layout NVDEC gives was met.
        for format in [
            Pixel::YUV420P,
            Pixel::YUVJ420P,
            Pixel::YUV420P10LE,
            Pixel::YUV420P12LE,
            Pixel::YUV444P,
            Pixel::YUV444P10LE,
        ] {
            assert!(
                formats.contains(&format),
                "{format:?} not covered: {formats:?}"
            );
        }
        // A pairing NVDEC does not give is an error, not a guess.
        let cpu = &cpu_frames(&cases[0].1, 1)[0];
        let nvdec = as_nvdec_writes_it(cpu);
        let mut host = frame::Video::empty();
        let e = to_cpu_layout(&nvdec, Pixel::YUV422P, &mut host).unwrap_err();
        assert!(e.to_string().contains("no exact conversion"), "{e}");
    }

    /// Which decoders NVDEC would use: FFmpeg's own where it has a CUDA hwaccel, the native
    /// AV1 decoder where libdav1d (no hwaccel) is the default, never a `*_cuvid` wrapper; and
    /// only the bit-exact codecs are sent to it. Configuration only: no GPU needed.
    #[test]
    fn nvdec_uses_ffmpegs_hwaccel_decoders_for_the_bit_exact_codecs() {
        init_ffmpeg().unwrap();
        for id in [
            codec::Id::H264,
            codec::Id::HEVC,
            codec::Id::VP8,
            codec::Id::VP9,
        ] {
            let decoder = nvdec::cuda_decoder(id).unwrap_or_else(|| panic!("{id:?}"));
            assert!(decoder.is_default, "{id:?}: {}", decoder.codec.name());
            assert_eq!(decoder.codec.name(), id.name());
        }
        let av1 = nvdec::cuda_decoder(codec::Id::AV1).unwrap();
        assert_eq!(av1.codec.name(), "av1");
        assert_eq!(
            av1.is_default,
            ffmpeg::decoder::find(codec::Id::AV1).unwrap().name() == "av1"
        );
        assert!(nvdec::cuda_decoder(codec::Id::CINEPAK).is_none());
        // MPEG-4 Part 2 has an NVDEC hwaccel, but its IDCT is not bit-exact: not used.
        assert!(nvdec::cuda_decoder(codec::Id::MPEG4).is_some());
        assert!(!NVDEC_CODECS.contains(&codec::Id::MPEG4));
    }

    /// On a machine without a GPU (this one), asking for NVDEC gives the CPU's very frames,
    /// says why, and tries to open the device once for all videos.
    #[test]
    fn asking_for_nvdec_without_a_gpu_gives_the_cpus_frames_and_says_why() {
        let bytes = media("video/bikes.mp4");
        let before = crate::decode::av::video_decoder_counts();
        for (threshold, keep_rgb) in [(0.0, true), (30.0, false)] {
            let mut cpu = sampling(1.0, threshold, 6);
            cpu.keep_rgb = keep_rgb;
            let asked = FrameSampling {
                cuda_device: Some(0),
                ..cpu.clone()
            };
            let reference = sample_video_frames(&bytes, &cpu).unwrap();
            let out = sample_video_frames(&bytes, &asked).unwrap();
            assert_eq!((reference.decoder, &reference.nvdec_fallback), (CPU, &None));
            assert_eq!(out.frames, reference.frames);
            assert_eq!(out.decoded_frames, reference.decoded_frames);
            assert_eq!(out.scene_cuts, reference.scene_cuts);
            assert_eq!(out.mean_frame_difference, reference.mean_frame_difference);
            assert_eq!(out.seeks, reference.seeks);
            if let Some(NvdecDeviceState { opened: Ok(()), .. }) = nvdec_device_state(0) {
                eprintln!("a GPU is here: NVDEC decoded the frames (the GPU test checks them)");
                assert_eq!(out.decoder, NVDEC);
                return;
            }
            assert_eq!(out.decoder, CPU);
            let state = nvdec_device_state(0).unwrap();
            let Err(reason) = &state.opened else {
                unreachable!()
            };
            assert_eq!(out.nvdec_fallback.as_ref(), Some(reason));
            assert!(
                reason.contains("CUDA") || reason.contains("libnvcuvid"),
                "{reason}"
            );
        }
        // Opened (or not) once, whatever the number of videos that asked.
        assert_eq!(nvdec_device_state(0).unwrap().attempts, 1);
        let after = crate::decode::av::video_decoder_counts();
        assert!(after.cpu >= before.cpu + 4, "{before:?} -> {after:?}");
        // Nothing asked for another device.
        assert_eq!(nvdec_device_state(7), None);
    }

    /// The GPU path itself, on a GPU: NVDEC decodes the shared H.264 videos (and, where the
    /// ffmpeg CLI can make them, HEVC, VP9, AV1, 10-bit and full-range clips) to exactly the
    /// CPU's sampled frames: luma and RGB with a maximum difference of 0, since these codecs
    /// decode bit-exactly and the frames go through the same conversion. Skipped (saying why)
    /// where no NVDEC device opens, as on machines without a GPU.
    #[test]
    fn on_a_gpu_nvdec_gives_the_cpus_frames() {
        if let Err(reason) = nvdec::device(0) {
            eprintln!("skipped: NVDEC cannot be used on cuda:0: {reason}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut cases: Vec<(String, Vec<u8>)> = [
            "video/bigbuckbunny.mp4",
            "video/bikes.mp4",
            "video/carphone_pristine.mp4",
        ]
        .iter()
        .map(|name| (name.to_string(), media(name)))
        .collect();
        let encodes: [(&str, &[&str]); 5] = [
            (
                "hevc",
                &[
                    "-c:v",
                    "libx265",
                    "-x265-params",
                    "log-level=none",
                    "-f",
                    "mp4",
                ],
            ),
            (
                "hevc 10-bit",
                &[
                    "-c:v",
                    "libx265",
                    "-pix_fmt",
                    "yuv420p10le",
                    "-x265-params",
                    "log-level=none",
                    "-f",
                    "mp4",
                ],
            ),
            (
                "vp9",
                &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-f", "webm"],
            ),
            (
                "av1",
                &["-c:v", "libaom-av1", "-cpu-used", "8", "-f", "mp4"],
            ),
            (
                "h264 full range",
                &["-c:v", "libx264", "-pix_fmt", "yuvj420p", "-f", "mp4"],
            ),
        ];
        for (name, args) in encodes {
            match reencoded(dir.path(), args, &format!("{}.bin", name.replace(' ', "_"))) {
                Some(bytes) => cases.push((name.to_string(), bytes)),
                None => eprintln!("no {name} clip: no ffmpeg CLI or encoder here"),
            }
        }
        for (name, bytes) in &cases {
            for threshold in [0.0, 30.0] {
                let mut cpu = sampling(2.0, threshold, 8);
                cpu.keep_rgb = true;
                let gpu = FrameSampling {
                    cuda_device: Some(0),
                    ..cpu.clone()
                };
                let reference = sample_video_frames(bytes, &cpu).unwrap();
                let out = sample_video_frames(bytes, &gpu).unwrap();
                assert_eq!(out.decoder, NVDEC, "{name}: {:?}", out.nvdec_fallback);
                assert_eq!(out.nvdec_fallback, None, "{name}");
                assert_eq!(out.frames.len(), reference.frames.len(), "{name}");
                for (a, b) in out.frames.iter().zip(&reference.frames) {
                    assert_eq!(a.pts_seconds, b.pts_seconds, "{name}");
                    let max_difference = |x: &[u8], y: &[u8]| {
                        assert_eq!(x.len(), y.len(), "{name}");
                        x.iter()
                            .zip(y)
                            .map(|(p, q)| p.abs_diff(*q))
                            .max()
                            .unwrap_or(0)
                    };
                    let luma = max_difference(&a.luma.pixels, &b.luma.pixels);
                    let (ra, rb) = (a.rgb.as_ref().unwrap(), b.rgb.as_ref().unwrap());
                    let rgb = max_difference(&ra.pixels, &rb.pixels);
                    assert_eq!(
                        (luma, rgb),
                        (0, 0),
                        "{name}, scene threshold {threshold}: frame at {} s",
                        a.pts_seconds
                    );
                }
                assert_eq!(out.decoded_frames, reference.decoded_frames, "{name}");
                assert_eq!(out.scene_cuts, reference.scene_cuts, "{name}");
                assert_eq!(out.mean_frame_difference, reference.mean_frame_difference);
            }
        }
        // A codec NVDEC does not decode exactly stays on the CPU, saying why.
        let mut asked = sampling(1.0, 0.0, 4);
        asked.cuda_device = Some(0);
        let avi = sample_video_frames(&media("video/opencv_tree.avi"), &asked).unwrap();
        assert_eq!(avi.decoder, CPU);
        assert!(avi.nvdec_fallback.unwrap().contains("bit-exact"));
        assert!(crate::decode::av::video_decoder_counts().nvdec > 0);
    }
}
