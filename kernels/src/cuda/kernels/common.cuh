// Shared by every kernel file: compile.rs puts this text in front of each .cu file
// before NVRTC sees it (NVRTC reads no files of its own).
//
// Conventions, relied on by the launchers in kernels/src/cuda/*.rs:
// - every kernel is `extern "C"`, so its name in the module is its name here;
// - element counts are `unsigned int` (the launchers refuse larger shapes);
// - one-dimensional kernels use a grid-stride loop, so any grid size is correct;
// - reduction kernels are launched with exactly BLOCK threads, per-column kernels with
//   COL_TILE x ROW_THREADS.
//
// Defined by compile.rs from the Rust constants, in front of this file:
// BLOCK, COL_TILE, ROW_THREADS, PARTIAL_BLOCKS (launch shapes), FAULT_* (fault codes)
// and ACT_* (activation codes).

// Records the first fault since the host last looked: `fault[0]` holds its code and
// `fault[1..4]` its three details. Later faults are dropped.
__device__ __forceinline__ void raise_fault(unsigned int *fault, unsigned int code,
                                            unsigned int a, unsigned int b, unsigned int c) {
    if (atomicCAS(fault, 0u, code) == 0u) {
        fault[1] = a;
        fault[2] = b;
        fault[3] = c;
    }
}

#define GRID_STRIDE_LOOP(i, n)                                                      \
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n);           \
         i += blockDim.x * gridDim.x)

// Sum over the BLOCK threads of a block; every thread gets the total. `shared` holds
// BLOCK doubles. Pairs are added in a fixed tree, so the result does not depend on
// scheduling.
__device__ double block_sum(double v, double *shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    double total = shared[0];
    __syncthreads();
    return total;
}

// Maximum over the BLOCK threads of a block (NaN loses, as fmax), for every thread.
__device__ double block_max(double v, double *shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + s]);
        __syncthreads();
    }
    double m = shared[0];
    __syncthreads();
    return m;
}

// Sum over threadIdx.y of a (COL_TILE x ROW_THREADS) block, per column: the total for
// column threadIdx.x is returned to every thread of that column. `shared` holds
// COL_TILE * ROW_THREADS floats.
__device__ float column_sum(float v, float *shared) {
    shared[threadIdx.y * COL_TILE + threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = ROW_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.y < s)
            shared[threadIdx.y * COL_TILE + threadIdx.x] += shared[(threadIdx.y + s) * COL_TILE + threadIdx.x];
        __syncthreads();
    }
    float total = shared[threadIdx.x];
    __syncthreads();
    return total;
}
