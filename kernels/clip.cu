// CLIP preprocessing after the resize (which resample.cu's passes do, each channel on its own):
// the centre crop of each image, (v / 255 - mean) / std per channel, written CHW as float32
// into the model's input tensor. It mirrors models::clip_preprocess::clip_pixel_values_rgb:
// IEEE division and subtraction in f32 (NVRTC's defaults: --prec-div=true, no fast math; there
// is no multiply-add to contract), so every float equals the CPU's (gpu::clip_plan mirrors this
// kernel on the host for the tests).
//
// Compiled at run time with NVRTC (src/gpu/mod.rs): no host headers, plain C types only.

// crops: two long longs per image (gpu::clip_plan::CropSource): the arena offset of channel 0
// of the crop's top-left pixel, and the bytes between its rows; pixels are 3 bytes apart.
// norm: the three means, then the three standard deviations. out: 3 * size * size floats per
// image, image blockIdx.y at out + 3 * size * size * blockIdx.y.
extern "C" __global__ void clip_normalise(const unsigned char* arena, const long long* crops,
                                          int size, const float* norm, float* out) {
    const int image = blockIdx.y;
    const long long base = crops[2 * image], line = crops[2 * image + 1];
    const long long plane = (long long)size * size;
    float* o = out + 3 * plane * image;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < 3 * plane;
         t += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(t / plane);
        const long long rest = t - c * plane;
        const long long y = rest / size, x = rest - y * size;
        const float v = (float)arena[base + y * line + 3 * x + c];
        o[t] = (v / 255.0f - norm[c]) / norm[3 + c];
    }
}
