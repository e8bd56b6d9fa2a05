// Quality and hash kernels, batched over many images per launch (one image per blockIdx.y).
// They mirror the CPU reference in src/measure/ exactly: integer sums for luminance, the
// Laplacian and brightness, and the pHash DCT in the CPU's order of double operations, so GPU
// and CPU agree bit for bit (gpu::plan mirrors each kernel on the host for the tests).
//
// Compiled at run time with NVRTC (src/gpu/mod.rs): no host headers, plain C types only.

// Images in a batch are packed one after another: image i starts at offsets[i] and is
// widths[i] x heights[i] bytes, row-major.

// PIL's fixed-point RGB -> L (Convert.c, L24): 0.299 R + 0.587 G + 0.114 B, rounded.
extern "C" __global__ void rgb_to_luma(const unsigned char* rgb, unsigned char* luma,
                                       unsigned long long pixels) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= pixels) return;
    unsigned int r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
    luma[i] = (unsigned char)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

__device__ __forceinline__ int reflect101(int i, int n) {
    return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);
}

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Per image, four exact integer sums into stats[4 * image + k]:
//   k = 0: sum of the 3x3 Laplacian [0 1 0; 1 -4 1; 0 1 0] with reflect-101 borders
//          (two's complement in a u64), k = 1: sum of its squares,
//   k = 2: sum of luminance,  k = 3: pixels at 0 or 255.
// stats must be zeroed before the launch. The host turns them into sharpness (variance),
// brightness (mean) and the clipped fraction, as quality::analyse does.
extern "C" __global__ void analyse(const unsigned char* pixels, const unsigned long long* offsets,
                                   const int* widths, const int* heights,
                                   unsigned long long* stats) {
    const int image = blockIdx.y;
    const unsigned char* p = pixels + offsets[image];
    const int w = widths[image], h = heights[image];
    const long long n = (long long)w * h;
    const bool laplacian = w >= 2 && h >= 2;
    unsigned long long lap_sum = 0, lap_sq = 0, luma_sum = 0, clipped = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const int y = (int)(i / w), x = (int)(i - (long long)y * w);
        const int c = p[i];
        luma_sum += c;
        clipped += (c == 0 || c == 255);
        if (laplacian) {
            const int v = p[(long long)reflect101(y - 1, h) * w + x] +
                          p[(long long)reflect101(y + 1, h) * w + x] +
                          p[(long long)y * w + reflect101(x - 1, w)] +
                          p[(long long)y * w + reflect101(x + 1, w)] - 4 * c;
            lap_sum += (unsigned long long)(long long)v;
            lap_sq += (unsigned long long)(v * v);
        }
    }
    lap_sum = warp_sum(lap_sum);
    lap_sq = warp_sum(lap_sq);
    luma_sum = warp_sum(luma_sum);
    clipped = warp_sum(clipped);
    if ((threadIdx.x & 31) == 0) {
        atomicAdd(&stats[4 * image + 0], lap_sum);
        atomicAdd(&stats[4 * image + 1], lap_sq);
        atomicAdd(&stats[4 * image + 2], luma_sum);
        atomicAdd(&stats[4 * image + 3], clipped);
    }
}

// pHash of 32x32 images (already resized), one block of 64 threads per image (blockIdx.y):
// thread t computes DCT-II coefficient (t / 8, t % 8) in exactly the CPU's order (hash.rs:
// along columns for each x, then along the row) with the CPU's basis table (gpu::plan), and
// with __dmul_rn / __dadd_rn, which the compiler never fuses into FMAs, so the coefficients
// are the CPU's bit for bit. They are compared with their median (the mean of the 32nd and
// 33rd smallest) and packed row-major, first bit highest, as imagehash does.
// Image i is the 1024 bytes at images + base + 1024 i; basis is 8 x 32 doubles.
extern "C" __global__ void phash32(const unsigned char* images, unsigned long long base,
                                   const double* basis, unsigned long long* hashes) {
    __shared__ double coefficient[64];
    __shared__ double order[2];
    __shared__ unsigned long long bits;
    const int t = threadIdx.x;
    const unsigned char* p = images + base + (unsigned long long)blockIdx.y * 1024;
    const double* cos_k = basis + (t / 8) * 32;
    const double* cos_l = basis + (t % 8) * 32;
    double sum = -0.0;  // Rust's f64 `sum()` starts at -0.0
    for (int x = 0; x < 32; ++x) {
        double column = 0.0;
        for (int y = 0; y < 32; ++y) column = __dadd_rn(column, __dmul_rn((double)p[y * 32 + x], cos_k[y]));
        sum = __dadd_rn(sum, __dmul_rn(column, cos_l[x]));
    }
    coefficient[t] = sum;
    if (t == 0) bits = 0ull;
    __syncthreads();
    int rank = 0;  // position in sorted order, ties broken by index
    for (int j = 0; j < 64; ++j) {
        const double other = coefficient[j];
        rank += (other < sum) || (other == sum && j < t);
    }
    if (rank == 31) order[0] = sum;
    if (rank == 32) order[1] = sum;
    __syncthreads();
    const double median = __ddiv_rn(__dadd_rn(order[0], order[1]), 2.0);
    if (sum > median) atomicOr(&bits, 1ull << (63 - t));
    __syncthreads();
    if (t == 0) hashes[blockIdx.y] = bits;
}

// dHash of 9x8 images (already resized): bit (row, x) is pixel (row, x + 1) > pixel (row, x).
// Image i is the 72 bytes at images + base + 72 i.
extern "C" __global__ void dhash9x8(const unsigned char* images, unsigned long long base,
                                    unsigned long long* hashes, int count) {
    const int image = blockIdx.x * blockDim.x + threadIdx.x;
    if (image >= count) return;
    const unsigned char* p = images + base + (unsigned long long)image * 72;
    unsigned long long hash = 0ull;
    for (int row = 0; row < 8; ++row)
        for (int x = 0; x < 8; ++x) hash = (hash << 1) | (p[row * 9 + x + 1] > p[row * 9 + x]);
    hashes[image] = hash;
}
