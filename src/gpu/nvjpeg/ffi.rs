//! The declarations from `nvjpeg.h` (CUDA 12/13; the NVIDIA nvJPEG documentation, section 2.2
//! "Type Declarations" and 2.3 "API Reference"), only those this module calls. C enums are
//! `int` on the platforms CUDA supports.
//! Nothing here is called: the loader resolves these from the library, the decoder calls them.

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
