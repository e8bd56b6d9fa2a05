// One separable pass of Pillow's fixed-point convolution resize (src/pixels/resample.rs), over
// many images per launch: block row blockIdx.y runs job blockIdx.y, one output pixel per thread.
// The weights are the CPU's own (resample::pass_coefficients), the sum is the same i32 sum and
// the rounding the same clip8, so every byte equals the CPU's (gpu::plan pins this arithmetic
// with a host mirror that the test suite checks against resize_plane).
//
// Compiled at run time with NVRTC (src/gpu/mod.rs): no host headers, plain C types only.

// A job is JOB_FIELDS long longs (gpu::plan::PassJob writes them in this order). All planes
// live in one byte arena; offsets and strides are in bytes.
#define JOB_SRC 0        // offset of the input plane
#define JOB_DST 1        // offset of the output plane
#define JOB_OUT_LEN 2    // outputs along the resampled axis
#define JOB_LINES 3      // lines along the other axis
#define JOB_SRC_STEP 4   // input stride between taps (along the resampled axis)
#define JOB_SRC_LINE 5   // input stride between lines
#define JOB_DST_STEP 6   // output stride between outputs along the resampled axis
#define JOB_DST_LINE 7   // output stride between lines (1 and DST_STEP = lines: transposed)
#define JOB_TAPS 8       // weights per output in the weight table
#define JOB_BOUNDS 9     // index of this axis's first (start, count) pair in bounds
#define JOB_WEIGHTS 10   // index of this axis's first weight in weights
#define JOB_FIELDS 12

#define PRECISION_BITS 22  // resample::WEIGHT_PRECISION_BITS

// Pillow's clip8: back from fixed point to a byte, saturating.
__device__ __forceinline__ unsigned char clip8(int a) {
    a = a < 0 ? 0 : a >> PRECISION_BITS;
    return (unsigned char)(a > 255 ? 255 : a);
}

// Consecutive threads take consecutive lines: on a vertical pass those are neighbouring
// columns, so reads and writes coalesce.
extern "C" __global__ void resample_pass(unsigned char* arena, const long long* jobs,
                                         const int* bounds, const int* weights) {
    const long long* job = jobs + (long long)JOB_FIELDS * blockIdx.y;
    const unsigned char* src = arena + job[JOB_SRC];
    unsigned char* dst = arena + job[JOB_DST];
    const long long lines = job[JOB_LINES];
    const long long outputs = job[JOB_OUT_LEN] * lines;
    const long long src_step = job[JOB_SRC_STEP], src_line = job[JOB_SRC_LINE];
    const long long dst_step = job[JOB_DST_STEP], dst_line = job[JOB_DST_LINE];
    const int taps = (int)job[JOB_TAPS];
    const int* axis_bounds = bounds + job[JOB_BOUNDS];
    const int* axis_weights = weights + job[JOB_WEIGHTS];
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < outputs;
         t += (long long)gridDim.x * blockDim.x) {
        const long long i = t / lines, line = t - i * lines;
        const int start = axis_bounds[2 * i], count = axis_bounds[2 * i + 1];
        const int* w = axis_weights + i * taps;
        const unsigned char* s = src + line * src_line + start * src_step;
        // Integer sum: exact in any order, so it equals the CPU's vectorised one.
        int acc = 1 << (PRECISION_BITS - 1);
        for (int k = 0; k < count; ++k) acc += (int)s[k * src_step] * w[k];
        dst[i * dst_step + line * dst_line] = clip8(acc);
    }
}
