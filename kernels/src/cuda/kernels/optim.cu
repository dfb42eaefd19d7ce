// Optimiser updates as PyTorch's SGD and Adam, operation for operation as
// kernels/src/cpu/optim.rs (the host folds the bias corrections into `step_size` and
// `inv_sqrt_bc2` in double, as the CPU does).

// g' = g + wd*w; v = mu*v + g'; w -= lr*v.
extern "C" __global__ void sgd_step(float *w, const float *g, float *v, unsigned int len,
                                    float lr, float mu, float wd) {
    GRID_STRIDE_LOOP(i, len) {
        float gi = g[i] + wd * w[i];
        float vi = mu * v[i] + gi;
        v[i] = vi;
        w[i] -= lr * vi;
    }
}

// g' = g + wd*w; m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'*g';
// w -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps).
extern "C" __global__ void adam_step(float *w, const float *g, float *m, float *v,
                                     unsigned int len, float step_size, float inv_sqrt_bc2,
                                     float b1, float b2, float eps, float wd) {
    GRID_STRIDE_LOOP(i, len) {
        float gi = g[i] + wd * w[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) * inv_sqrt_bc2 + eps;
        w[i] -= step_size * mi / denom;
    }
}

// Packed: trial g = blockIdx.y updates its block (`stride` apart) with its own
// hyper-parameters; a trial whose on[g] is 0 (diverged) is left alone.

extern "C" __global__ void sgd_step_packed(float *w, const float *g, float *v,
                                           unsigned long long stride, unsigned int len,
                                           const float *lrs, const float *mus, const float *wds,
                                           const int *on) {
    unsigned int t = blockIdx.y;
    if (!on[t]) return;
    unsigned long long base = (unsigned long long)t * stride;
    float lr = lrs[t], mu = mus[t], wd = wds[t];
    GRID_STRIDE_LOOP(i, len) {
        unsigned long long j = base + i;
        float gi = g[j] + wd * w[j];
        float vi = mu * v[j] + gi;
        v[j] = vi;
        w[j] -= lr * vi;
    }
}

// hyper[t * 6 ..]: step_size, inv_sqrt_bc2, b1, b2, eps, wd (rounded by the host as for
// adam_step).
extern "C" __global__ void adam_step_packed(float *w, const float *g, float *m, float *v,
                                            unsigned long long stride, unsigned int len,
                                            const float *hyper, const int *on) {
    unsigned int t = blockIdx.y;
    if (!on[t]) return;
    unsigned long long base = (unsigned long long)t * stride;
    const float *h = hyper + 6 * t;
    float step_size = h[0], inv_sqrt_bc2 = h[1], b1 = h[2], b2 = h[3], eps = h[4], wd = h[5];
    GRID_STRIDE_LOOP(i, len) {
        unsigned long long j = base + i;
        float gi = g[j] + wd * w[j];
        float mi = b1 * m[j] + (1.0f - b1) * gi;
        float vi = b2 * v[j] + (1.0f - b2) * gi * gi;
        m[j] = mi;
        v[j] = vi;
        float denom = sqrtf(vi) * inv_sqrt_bc2 + eps;
        w[j] -= step_size * mi / denom;
    }
}
