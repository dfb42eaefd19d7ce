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
extern "C" __global__ void gather_batch(const unsigned char *images, const unsigned char *labels,
                                        const unsigned int *order, unsigned int start,
                                        unsigned int rows, unsigned int features,
                                        unsigned int plane, unsigned int channels,
                                        unsigned int samples, const float *scale,
                                        const float *shift, float *x, unsigned int *y,
                                        unsigned int *fault) {
    GRID_STRIDE_LOOP(e, rows * features) {
        unsigned int r = e / features;
        unsigned int f = e - r * features;
        unsigned int i = order[start + r];
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
