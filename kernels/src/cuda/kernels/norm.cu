// Batch normalisation over the rows of a rows x cols matrix (PyTorch BatchNorm1d), as
// kernels/src/cpu/norm.rs. The per-column kernels run one block of
// (COL_TILE x ROW_THREADS) threads per COL_TILE columns: threadIdx.x picks the column,
// so each row's reads are coalesced, and the ROW_THREADS threads of a column walk its
// rows and combine their partial sums in shared memory.

// Training mode: batch statistics by two passes in float (the mean, then the sum of
// squared deviations from it: no cancellation), x̂ and y written, 1/sqrt(var + eps)
// saved per column, and, with `update_running`, the running statistics moved towards
// the batch ones by `momentum` (computed in double, as on the CPU).
__device__ void batchnorm_train_cols(const float *x, float *y, const float *gamma,
                                           const float *beta, float *running_mean,
                                           float *running_var, float *xhat, float *invstd,
                                           unsigned int rows, unsigned int cols, double eps,
                                           int update_running, double momentum) {
    __shared__ float partial[COL_TILE * ROW_THREADS];
    unsigned int c = blockIdx.x * COL_TILE + threadIdx.x;
    bool live = c < cols;

    float s = 0.0f;
    if (live)
        for (unsigned int r = threadIdx.y; r < rows; r += ROW_THREADS) s += x[r * cols + c];
    float mean = column_sum(s, partial) / (float)rows;

    float s2 = 0.0f;
    if (live)
        for (unsigned int r = threadIdx.y; r < rows; r += ROW_THREADS) {
            float d = x[r * cols + c] - mean;
            s2 += d * d;
        }
    float ss = column_sum(s2, partial);

    double biased = (double)ss / (double)rows;
    float inv = (float)(1.0 / sqrt(biased + eps));
    if (!live) return;
    if (threadIdx.y == 0) {
        invstd[c] = inv;
        if (update_running) {
            double unbiased = rows > 1 ? (double)ss / (double)(rows - 1) : biased;
            running_mean[c] =
                (float)((1.0 - momentum) * (double)running_mean[c] + momentum * (double)mean);
            running_var[c] =
                (float)((1.0 - momentum) * (double)running_var[c] + momentum * unbiased);
        }
    }
    float g = gamma[c], b = beta[c];
    for (unsigned int r = threadIdx.y; r < rows; r += ROW_THREADS) {
        unsigned int i = r * cols + c;
        float h = (x[i] - mean) * inv;
        xhat[i] = h;
        y[i] = h * g + b;
    }
}

// Evaluation mode: y = (x - running_mean) * (1/sqrt(running_var + eps)) * gamma + beta,
// all in float as on the CPU.
__device__ void batchnorm_eval_rows(const float *x, float *y, const float *gamma,
                                          const float *beta, const float *running_mean,
                                          const float *running_var, unsigned int rows,
                                          unsigned int cols, float eps) {
    GRID_STRIDE_LOOP(i, rows * cols) {
        unsigned int c = i % cols;
        float inv = 1.0f / sqrtf(running_var[c] + eps);
        y[i] = (x[i] - running_mean[c]) * inv * gamma[c] + beta[c];
    }
}

// Backward with training-mode statistics:
// dβ = Σdy, dγ = Σdy·x̂, dx = γ·invstd·(dy − Σdy/N − x̂·Σ(dy·x̂)/N).
__device__ void batchnorm_backward_cols(const float *dy, const float *xhat,
                                              const float *gamma, const float *invstd,
                                              float *dx, float *dgamma, float *dbeta,
                                              unsigned int rows, unsigned int cols) {
    __shared__ float partial[COL_TILE * ROW_THREADS];
    unsigned int c = blockIdx.x * COL_TILE + threadIdx.x;
    bool live = c < cols;

    float s = 0.0f, sh = 0.0f;
    if (live)
        for (unsigned int r = threadIdx.y; r < rows; r += ROW_THREADS) {
            unsigned int i = r * cols + c;
            s += dy[i];
            sh += dy[i] * xhat[i];
        }
    float sum_dy = column_sum(s, partial);
    float sum_dy_xhat = column_sum(sh, partial);
    if (!live) return;
    if (threadIdx.y == 0) {
        dbeta[c] = sum_dy;
        dgamma[c] = sum_dy_xhat;
    }
    float k = gamma[c] * invstd[c];
    float mean_dy = sum_dy / (float)rows;
    float mean_dy_xhat = sum_dy_xhat / (float)rows;
    for (unsigned int r = threadIdx.y; r < rows; r += ROW_THREADS) {
        unsigned int i = r * cols + c;
        dx[i] = k * (dy[i] - mean_dy - xhat[i] * mean_dy_xhat);
    }
}

// The kernels: one trial, or (packed) trial g = blockIdx.y of a group with its blocks
// `stride` apart (per-feature buffers `cols` apart), skipped when on[g] is 0.

extern "C" __global__ void batchnorm_train(const float *x, float *y, const float *gamma,
                                           const float *beta, float *running_mean,
                                           float *running_var, float *xhat, float *invstd,
                                           unsigned int rows, unsigned int cols, double eps,
                                           int update_running, double momentum) {
    batchnorm_train_cols(x, y, gamma, beta, running_mean, running_var, xhat, invstd, rows, cols,
                         eps, update_running, momentum);
}

extern "C" __global__ void batchnorm_eval(const float *x, float *y, const float *gamma,
                                          const float *beta, const float *running_mean,
                                          const float *running_var, unsigned int rows,
                                          unsigned int cols, float eps) {
    batchnorm_eval_rows(x, y, gamma, beta, running_mean, running_var, rows, cols, eps);
}

extern "C" __global__ void batchnorm_backward(const float *dy, const float *xhat,
                                              const float *gamma, const float *invstd,
                                              float *dx, float *dgamma, float *dbeta,
                                              unsigned int rows, unsigned int cols) {
    batchnorm_backward_cols(dy, xhat, gamma, invstd, dx, dgamma, dbeta, rows, cols);
}

extern "C" __global__ void batchnorm_train_packed(
    const float *x, float *y, unsigned long long stride, const float *gamma, const float *beta,
    float *running_mean, float *running_var, float *xhat, float *invstd, unsigned int rows,
    unsigned int cols, double eps, int update_running, double momentum, const int *on) {
    unsigned int g = blockIdx.y;
    if (!on[g]) return;
    unsigned long long b = (unsigned long long)g * stride, f = (unsigned long long)g * cols;
    batchnorm_train_cols(x + b, y + b, gamma + f, beta + f, running_mean + f, running_var + f,
                         xhat + b, invstd + f, rows, cols, eps, update_running, momentum);
}

extern "C" __global__ void batchnorm_eval_packed(const float *x, float *y,
                                                 unsigned long long stride, const float *gamma,
                                                 const float *beta, const float *running_mean,
                                                 const float *running_var, unsigned int rows,
                                                 unsigned int cols, float eps, const int *on) {
    unsigned int g = blockIdx.y;
    if (!on[g]) return;
    unsigned long long b = (unsigned long long)g * stride, f = (unsigned long long)g * cols;
    batchnorm_eval_rows(x + b, y + b, gamma + f, beta + f, running_mean + f, running_var + f, rows,
                        cols, eps);
}

extern "C" __global__ void batchnorm_backward_packed(
    const float *dy, const float *xhat, float *dx, unsigned long long stride, const float *gamma,
    const float *invstd, float *dgamma, float *dbeta, unsigned int rows, unsigned int cols,
    const int *on) {
    unsigned int g = blockIdx.y;
    if (!on[g]) return;
    unsigned long long b = (unsigned long long)g * stride, f = (unsigned long long)g * cols;
    batchnorm_backward_cols(dy + b, xhat + b, gamma + f, invstd + f, dx + b, dgamma + f,
                            dbeta + f, rows, cols);
}
