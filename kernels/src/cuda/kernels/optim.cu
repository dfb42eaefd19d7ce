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
