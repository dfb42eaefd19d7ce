// Elementwise kernels: batch gathering, bias + activation, dropout, products, penalties.
// Each mirrors a function of kernels/src/cpu/elementwise.rs (or cpu/mod.rs) operation
// for operation: the module is compiled with --fmad=false, so a*b+c rounds twice as it
// does on the CPU.

// ACT_* (the activation codes) are defined by compile.rs.

// f(x), as `Activation::forward` in kernels/src/activation.rs.
__device__ __forceinline__ float act_forward(int act, float x, float slope) {
    switch (act) {
    case ACT_IDENTITY: return x;
    case ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case ACT_TANH: return tanhf(x);
    case ACT_RELU: return x > 0.0f ? x : 0.0f;
    case ACT_LEAKY_RELU: return x > 0.0f ? x : x * slope;
    case ACT_ELU: return x > 0.0f ? x : expf(x) - 1.0f;
    default: __trap(); return x; // an unknown code is a launcher bug: stop, never guess
    }
}

// f'(x) from y = f(x), as `Activation::derivative_from_output`.
__device__ __forceinline__ float act_derivative(int act, float y, float slope) {
    switch (act) {
    case ACT_IDENTITY: return 1.0f;
    case ACT_SIGMOID: return y * (1.0f - y);
    case ACT_TANH: return 1.0f - y * y;
    case ACT_RELU: return y > 0.0f ? 1.0f : 0.0f;
    case ACT_LEAKY_RELU: return y > 0.0f ? 1.0f : slope;
    case ACT_ELU: return y > 0.0f ? 1.0f : y + 1.0f;
    default: __trap(); return 1.0f; // an unknown code is a launcher bug: stop, never guess
    }
}

// x[r, f] = images[order[start + r], f] * scale[c] + shift[c] with c = f / plane, and
// y[r] = labels[order[start + r]], for r < rows. Elements with c >= channels are left
// alone (as on the CPU when channels does not divide features; with plane = 0, when
// features < channels, no element is written). A sample index at or
// past `samples` raises FAULT_SAMPLE_INDEX and its row is skipped.
__device__ __forceinline__ void gather_rows(const unsigned char *images,
                                            const unsigned char *labels,
                                            const unsigned int *order, unsigned int rows,
                                            unsigned int features, unsigned int plane,
                                            unsigned int channels, unsigned int samples,
                                            const float *scale, const float *shift, float *x,
                                            unsigned int *y, unsigned int *fault) {
    GRID_STRIDE_LOOP(e, rows * features) {
        unsigned int r = e / features;
        unsigned int f = e - r * features;
        unsigned int i = order[r];
        if (i >= samples) {
            if (f == 0) raise_fault(fault, FAULT_SAMPLE_INDEX, i, samples, 0);
            continue;
        }
        unsigned int c = plane == 0 ? channels : f / plane;
        if (c < channels) {
            float v = (float)images[(unsigned long long)i * features + f];
            x[e] = v * scale[c] + shift[c];
        }
        if (f == 0) y[r] = labels[i];
    }
}

extern "C" __global__ void gather_batch(const unsigned char *images, const unsigned char *labels,
                                        const unsigned int *order, unsigned int start,
                                        unsigned int rows, unsigned int features,
                                        unsigned int plane, unsigned int channels,
                                        unsigned int samples, const float *scale,
                                        const float *shift, float *x, unsigned int *y,
                                        unsigned int *fault) {
    gather_rows(images, labels, order + start, rows, features, plane, channels, samples, scale,
                shift, x, y, fault);
}

// x[r, c] = act(x[r, c] + bias[c]).
extern "C" __global__ void bias_act(float *x, const float *bias, unsigned int rows,
                                    unsigned int cols, int act, float slope) {
    GRID_STRIDE_LOOP(i, rows * cols) {
        x[i] = act_forward(act, x[i] + bias[i % cols], slope);
    }
}

// x[i] = act(x[i]) (no bias).
extern "C" __global__ void act_only(float *x, unsigned int len, int act, float slope) {
    GRID_STRIDE_LOOP(i, len) { x[i] = act_forward(act, x[i], slope); }
}

// grad[i] *= act'(from y[i]).
extern "C" __global__ void act_backward(const float *y, float *grad, unsigned int len, int act,
                                        float slope) {
    GRID_STRIDE_LOOP(i, len) { grad[i] *= act_derivative(act, y[i], slope); }
}

// The SplitMix64 finaliser, as `mix64` in kernels/src/rng.rs.
__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// mask[i] = scale where uniform(key, i) >= p, else 0: `dropout_keep` in rng.rs, bit for
// bit (the 24-bit uniform is exact in float). `scale` = 1/(1-p) rounded by the host.
extern "C" __global__ void dropout_mask(float *mask, unsigned int len, unsigned long long key,
                                        float p, float scale) {
    GRID_STRIDE_LOOP(i, len) {
        unsigned long long h = mix64(key ^ mix64((unsigned long long)i + 0x9e3779b97f4a7c15ull));
        float u = (float)(h >> 40) * (1.0f / 16777216.0f);
        mask[i] = u >= p ? scale : 0.0f;
    }
}

// out[i] = x[i] * m[i].
extern "C" __global__ void mul(const float *x, const float *m, float *out, unsigned int len) {
    GRID_STRIDE_LOOP(i, len) { out[i] = x[i] * m[i]; }
}

// x[i] *= m[i].
extern "C" __global__ void mul_assign(float *x, const float *m, unsigned int len) {
    GRID_STRIDE_LOOP(i, len) { x[i] *= m[i]; }
}

// g[i] += l1 * sign(w[i]) + two_l2 * w[i].
extern "C" __global__ void penalty_grad(const float *w, float *g, unsigned int len, float l1,
                                        float two_l2) {
    GRID_STRIDE_LOOP(i, len) {
        float wi = w[i];
        float sign = wi > 0.0f ? 1.0f : (wi < 0.0f ? -1.0f : 0.0f);
        g[i] += l1 * sign + two_l2 * wi;
    }
}

// buf[i] = value.
extern "C" __global__ void fill(float *buf, unsigned int len, float value) {
    GRID_STRIDE_LOOP(i, len) { buf[i] = value; }
}

// ---------------------------------------------------------------------------------------
// Packed kernels: the kernels above over a leading group dimension. Trial g = blockIdx.y
// works on its blocks (`stride` apart; per-feature ones `cols` apart) with its own
// parameters from the per-trial arrays; a trial whose `on[g]` is 0 is left alone.
// Each computes exactly what the single kernel computes on that trial's blocks.

#define PACKED_TRIAL(on)                                                              \
    unsigned int g = blockIdx.y;                                                      \
    if (!(on)[g]) return;                                                             \
    unsigned long long base = (unsigned long long)g * stride;

extern "C" __global__ void gather_batch_packed(
    const unsigned char *images, const unsigned char *labels, const unsigned int *orders,
    unsigned long long order_stride, unsigned int start, unsigned int rows,
    unsigned int features, unsigned int plane, unsigned int channels, unsigned int samples,
    const float *scale, const float *shift, float *x, unsigned long long x_stride,
    unsigned int *y, unsigned long long y_stride, unsigned int *fault) {
    unsigned long long g = blockIdx.y;
    gather_rows(images, labels, orders + g * order_stride + start, rows, features, plane,
                channels, samples, scale, shift, x + g * x_stride, y + g * y_stride, fault);
}

extern "C" __global__ void bias_act_packed(float *x, unsigned long long stride,
                                           const float *bias, unsigned int rows,
                                           unsigned int cols, const int *acts, const int *on,
                                           float slope) {
    PACKED_TRIAL(on)
    float *xg = x + base;
    const float *bg = bias + (unsigned long long)g * cols;
    int act = acts[g];
    GRID_STRIDE_LOOP(i, rows * cols) { xg[i] = act_forward(act, xg[i] + bg[i % cols], slope); }
}

extern "C" __global__ void act_only_packed(float *x, unsigned long long stride, unsigned int len,
                                           const int *acts, const int *on, float slope) {
    PACKED_TRIAL(on)
    float *xg = x + base;
    int act = acts[g];
    if (act == ACT_IDENTITY) return;
    GRID_STRIDE_LOOP(i, len) { xg[i] = act_forward(act, xg[i], slope); }
}

extern "C" __global__ void act_backward_packed(const float *y, float *grad,
                                               unsigned long long stride, unsigned int len,
                                               const int *acts, const int *on, float slope) {
    PACKED_TRIAL(on)
    int act = acts[g];
    if (act == ACT_IDENTITY) return;
    const float *yg = y + base;
    float *dg = grad + base;
    GRID_STRIDE_LOOP(i, len) { dg[i] *= act_derivative(act, yg[i], slope); }
}

extern "C" __global__ void dropout_mask_packed(float *mask, unsigned long long stride,
                                               unsigned int len, const unsigned long long *keys,
                                               const float *ps, const float *scales,
                                               const int *on) {
    PACKED_TRIAL(on)
    float *mg = mask + base;
    unsigned long long key = keys[g];
    float p = ps[g], scale = scales[g];
    GRID_STRIDE_LOOP(i, len) {
        unsigned long long h = mix64(key ^ mix64((unsigned long long)i + 0x9e3779b97f4a7c15ull));
        float u = (float)(h >> 40) * (1.0f / 16777216.0f);
        mg[i] = u >= p ? scale : 0.0f;
    }
}

extern "C" __global__ void mul_packed(const float *x, const float *m, float *out,
                                      unsigned long long stride, unsigned int len,
                                      const int *on) {
    PACKED_TRIAL(on)
    GRID_STRIDE_LOOP(i, len) { out[base + i] = x[base + i] * m[base + i]; }
}

extern "C" __global__ void mul_assign_packed(float *x, const float *m, unsigned long long stride,
                                             unsigned int len, const int *on) {
    PACKED_TRIAL(on)
    GRID_STRIDE_LOOP(i, len) { x[base + i] *= m[base + i]; }
}

extern "C" __global__ void copy_packed(const float *src, float *dst, unsigned long long stride,
                                       unsigned int len, const int *on) {
    PACKED_TRIAL(on)
    GRID_STRIDE_LOOP(i, len) { dst[base + i] = src[base + i]; }
}

extern "C" __global__ void penalty_grad_packed(const float *w, float *grad,
                                               unsigned long long stride, unsigned int len,
                                               const float *l1s, const float *two_l2s,
                                               const int *on) {
    PACKED_TRIAL(on)
    float l1 = l1s[g], two_l2 = two_l2s[g];
    GRID_STRIDE_LOOP(i, len) {
        float wi = w[base + i];
        float sign = wi > 0.0f ? 1.0f : (wi < 0.0f ? -1.0f : 0.0f);
        grad[base + i] += l1 * sign + two_l2 * wi;
    }
}
