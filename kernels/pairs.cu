// The thresholding step of the within-partition pair search on a GPU (gpu::pair_products):
// cuBLAS has written each job's scores (dot products of unit vectors, float32), and this kernel
// keeps only the candidates, so that a few bytes per candidate cross PCIe instead of the whole
// score matrix. gpu::pair_plan lays out the jobs and mirrors this kernel on the host for the
// tests; the host then checks every candidate exactly (decide::pairs::within).
//
// Compiled at run time with NVRTC (src/gpu/mod.rs): no host headers, plain C types only.

// Job blockIdx.y has rows[job] x cols[job] scores, row-major, at scores + offsets[job]; element
// (i, j) is the product of the job's i-th and j-th rows, and only j > i is a pair. Every such
// element at or above `floor` (NaN never is) is appended to `out` as three unsigned ints
// (job, i, j) in no particular order. `count` (zeroed by the host) ends as the number found,
// even beyond `capacity` triples: the host then runs the kernel again with room for all.
extern "C" __global__ void pairs_above_floor(const float* scores,
                                             const unsigned long long* offsets,
                                             const unsigned int* rows, const unsigned int* cols,
                                             float floor, unsigned int* out,
                                             unsigned int capacity, unsigned int* count) {
    const unsigned int job = blockIdx.y;
    const unsigned long long c = cols[job];
    const unsigned long long total = (unsigned long long)rows[job] * c;
    const float* s = scores + offsets[job];
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long e = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         e < total; e += stride) {
        if (s[e] >= floor) {
            const unsigned int i = (unsigned int)(e / c);
            const unsigned int j = (unsigned int)(e - (unsigned long long)i * c);
            if (j > i) {
                const unsigned int slot = atomicAdd(count, 1u);
                if (slot < capacity) {
                    unsigned int* o = out + 3ull * slot;
                    o[0] = job;
                    o[1] = i;
                    o[2] = j;
                }
            }
        }
    }
}
