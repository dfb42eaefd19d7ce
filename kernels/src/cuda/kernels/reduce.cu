// Reductions: bias gradients, gradient statistics and the diagnostics' moments, as
// kernels/src/cpu/reduce.rs. Whole-buffer reductions run in two stages without
// atomics: a grid of at most PARTIAL_BLOCKS blocks writes one partial per block (in
// double, as the CPU sums in f64), then either one block (grad_stats_finish, which stays
// on the device) or the host (moments, sq_dist) combines the partials.

// out[c] = sum over rows of x[r, c]; one (COL_TILE x ROW_THREADS) block per COL_TILE
// columns.
__device__ void sum_rows_cols(const float *x, unsigned int rows, unsigned int cols,
                                    float *out) {
    __shared__ float partial[COL_TILE * ROW_THREADS];
    unsigned int c = blockIdx.x * COL_TILE + threadIdx.x;
    float s = 0.0f;
    if (c < cols)
        for (unsigned int r = threadIdx.y; r < rows; r += ROW_THREADS) s += x[r * cols + c];
    float total = column_sum(s, partial);
    if (c < cols && threadIdx.y == 0) out[c] = total;
}

// partials[b] = Σx, partials[n + b] = Σx², partials[2n + b] = Σ|x|, partials[3n + b] =
// max|x| over block b's share of x (n = gridDim.x).
__device__ void moments_partial_blocks(const float *x, unsigned int len, double *partials) {
    __shared__ double shared[BLOCK];
    double s = 0.0, s2 = 0.0, sa = 0.0, m = 0.0;
    GRID_STRIDE_LOOP(i, len) {
        double v = (double)x[i];
        s += v;
        s2 += v * v;
        sa += fabs(v);
        m = fmax(m, fabs(v));
    }
    s = block_sum(s, shared);
    s2 = block_sum(s2, shared);
    sa = block_sum(sa, shared);
    m = block_max(m, shared);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = s;
        partials[gridDim.x + blockIdx.x] = s2;
        partials[2 * gridDim.x + blockIdx.x] = sa;
        partials[3 * gridDim.x + blockIdx.x] = m;
    }
}

// acc[0] += sqrt(Σ partial sums of squares); acc[1] = max(acc[1], max of partial
// maxima), from the `blocks` partials moments_partial wrote. One block of BLOCK threads.
__device__ void grad_stats_finish_block(const double *partials, unsigned int blocks,
                                             float *acc) {
    __shared__ double shared[BLOCK];
    double s2 = 0.0, m = 0.0;
    for (unsigned int b = threadIdx.x; b < blocks; b += BLOCK) {
        s2 += partials[blocks + b];
        m = fmax(m, partials[3 * blocks + b]);
    }
    s2 = block_sum(s2, shared);
    m = block_max(m, shared);
    if (threadIdx.x == 0) {
        acc[0] += (float)sqrt(s2);
        acc[1] = fmaxf(acc[1], (float)m);
    }
}

// partials[b] = Σ(a − b)² over block b's share, in double.
__device__ void sq_dist_partial_blocks(const float *a, const float *b, unsigned int len,
                                           double *partials) {
    __shared__ double shared[BLOCK];
    double s = 0.0;
    GRID_STRIDE_LOOP(i, len) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    s = block_sum(s, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// *dead += the number of columns of x (rows x cols) with no positive entry; one
// (COL_TILE x ROW_THREADS) block per COL_TILE columns.
__device__ void dead_columns_cols(const float *x, unsigned int rows, unsigned int cols,
                                        unsigned int *dead) {
    __shared__ float partial[COL_TILE * ROW_THREADS];
    unsigned int c = blockIdx.x * COL_TILE + threadIdx.x;
    float alive = 0.0f;
    if (c < cols)
        for (unsigned int r = threadIdx.y; r < rows; r += ROW_THREADS)
            if (x[r * cols + c] > 0.0f) alive = 1.0f;
    float alive_rows = column_sum(alive, partial);
    if (c < cols && threadIdx.y == 0 && alive_rows == 0.0f) atomicAdd(dead, 1u);
}

// The kernels: one buffer, or (packed) trial g = blockIdx.y of a group, its block
// `stride` apart; partials of trial g at g * 4 * gridDim.x (moments) or g * gridDim.x
// (sq_dist), accumulators at 2g, dead counts at g.

extern "C" __global__ void sum_rows(const float *x, unsigned int rows, unsigned int cols,
                                    float *out) {
    sum_rows_cols(x, rows, cols, out);
}

extern "C" __global__ void moments_partial(const float *x, unsigned int len, double *partials) {
    moments_partial_blocks(x, len, partials);
}

extern "C" __global__ void grad_stats_finish(const double *partials, unsigned int blocks,
                                             float *acc) {
    grad_stats_finish_block(partials, blocks, acc);
}

extern "C" __global__ void sq_dist_partial(const float *a, const float *b, unsigned int len,
                                           double *partials) {
    sq_dist_partial_blocks(a, b, len, partials);
}

extern "C" __global__ void dead_columns(const float *x, unsigned int rows, unsigned int cols,
                                        unsigned int *dead) {
    dead_columns_cols(x, rows, cols, dead);
}

extern "C" __global__ void sum_rows_packed(const float *x, unsigned long long stride,
                                           unsigned int rows, unsigned int cols, float *out) {
    unsigned long long g = blockIdx.y;
    sum_rows_cols(x + g * stride, rows, cols, out + g * cols);
}

extern "C" __global__ void moments_partial_packed(const float *x, unsigned long long stride,
                                                  unsigned int len, double *partials) {
    unsigned long long g = blockIdx.y;
    moments_partial_blocks(x + g * stride, len, partials + g * 4 * gridDim.x);
}

extern "C" __global__ void grad_stats_finish_packed(const double *partials, unsigned int blocks,
                                                    float *acc, const int *on) {
    unsigned long long g = blockIdx.y;
    if (!on[g]) return;
    grad_stats_finish_block(partials + g * 4 * blocks, blocks, acc + 2 * g);
}

extern "C" __global__ void sq_dist_partial_packed(const float *a, const float *b,
                                                  unsigned long long stride, unsigned int len,
                                                  double *partials) {
    unsigned long long g = blockIdx.y;
    sq_dist_partial_blocks(a + g * stride, b + g * stride, len, partials + g * gridDim.x);
}

extern "C" __global__ void dead_columns_packed(const float *x, unsigned long long stride,
                                               unsigned int rows, unsigned int cols,
                                               unsigned int *dead) {
    unsigned long long g = blockIdx.y;
    dead_columns_cols(x + g * stride, rows, cols, dead + g);
}
