//! The CUDA decode-and-measure backend: the kernels on one GPU, with nvJPEG decoding JPEGs into
//! device memory when `run.gpu_jpeg_decode` asks for it. What the device path does not take
//! (not a JPEG, a file nvJPEG refuses, a GPU error) is decoded on the CPU here, inside the
//! backend, and still measured by the GPU kernels: callers never branch on the device.

use super::{CudaKernels, GpuJpegDecoder};
use crate::decode::{CpuDecoder, DecodeError, ImageInfo};
use crate::measure::backend::{measure_with, MeasureBackend};
use crate::measure::{ImageQuality, QualityKernels};

/// The kernels of one GPU, and nvJPEG on it when a run decodes JPEGs there.
pub struct CudaBackend {
    pub kernels: CudaKernels,
    pub jpeg: Option<GpuJpegDecoder>,
}

impl MeasureBackend for CudaBackend {
    fn measure_image(&self, media: &[u8], info: &ImageInfo) -> Result<ImageQuality, DecodeError> {
        if let Some(jpeg) = &self.jpeg {
            if let Some(quality) = jpeg.measure_on_device(media, info, &self.kernels) {
                return Ok(quality);
            }
        }
        // What the device path did not take, the CPU decodes (nvJPEG would only refuse it
        // again).
        measure_with(&CpuDecoder, &self.kernels, media, info)
    }

    fn kernels(&self) -> &dyn QualityKernels {
        &self.kernels
    }
}
