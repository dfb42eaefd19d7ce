// Softmax cross-entropy, fused forward and backward, as kernels/src/cpu/loss.rs.
//
// One block of BLOCK threads does the whole batch, one row per thread at a time: the
// class count of an MLP's head is small (10 here), so a row is a short sequential loop
// with exactly the CPU's arg-max rule (first maximum; a NaN in column 0 wins), and the
// block's fixed reduction tree makes the loss sum the same on every run, with no
// atomics.

__device__ void softmax_xent_rows(const float *logits, const unsigned int *labels,
                                  unsigned int rows, unsigned int cols, float *dlogits,
                                  float inv_rows, float *acc, unsigned int *fault) {
    __shared__ double shared[BLOCK];
    double loss = 0.0;
    double correct = 0.0;
    for (unsigned int r = threadIdx.x; r < rows; r += BLOCK) {
        const float *row = logits + (unsigned long long)r * cols;
        unsigned int label = labels[r];
        if (label >= cols) {
            raise_fault(fault, FAULT_LABEL, label, r, cols);
            continue;
        }
        float best = row[0];
        unsigned int best_at = 0;
        for (unsigned int c = 1; c < cols; ++c) {
            if (row[c] > best) {
                best = row[c];
                best_at = c;
            }
        }
        float sum = 0.0f;
        for (unsigned int c = 0; c < cols; ++c) sum += expf(row[c] - best);
        float log_sum = logf(sum);
        loss += (double)(log_sum - (row[label] - best));
        if (best_at == label) correct += 1.0;
        if (dlogits != 0) {
            float inv_sum = 1.0f / sum;
            float *d = dlogits + (unsigned long long)r * cols;
            for (unsigned int c = 0; c < cols; ++c) {
                float p = expf(row[c] - best) * inv_sum;
                float target = c == label ? 1.0f : 0.0f;
                d[c] = (p - target) * inv_rows;
            }
        }
    }
    loss = block_sum(loss, shared);
    correct = block_sum(correct, shared);
    if (threadIdx.x == 0) {
        acc[0] += (float)loss;
        acc[1] += (float)correct;
    }
}

// Adds the summed loss to acc[0] and the correct count to acc[1]; no gradient.
extern "C" __global__ void softmax_xent_loss(const float *logits, const unsigned int *labels,
                                             unsigned int rows, unsigned int cols, float *acc,
                                             unsigned int *fault) {
    softmax_xent_rows(logits, labels, rows, cols, 0, 0.0f, acc, fault);
}

// As softmax_xent_loss, and writes dlogits = (softmax - onehot) * inv_rows.
extern "C" __global__ void softmax_xent_grad(const float *logits, const unsigned int *labels,
                                             unsigned int rows, unsigned int cols,
                                             float *dlogits, float inv_rows, float *acc,
                                             unsigned int *fault) {
    softmax_xent_rows(logits, labels, rows, cols, dlogits, inv_rows, acc, fault);
}

// Packed: trial g = blockIdx.y (one block of BLOCK threads each) on its logits and
// dlogits (`stride` apart), its labels (`labels_stride` apart, 0 when shared) and its
// two accumulators; a trial whose on[g] is 0 is left alone.
extern "C" __global__ void softmax_xent_loss_packed(const float *logits,
                                                    unsigned long long stride,
                                                    const unsigned int *labels,
                                                    unsigned long long labels_stride,
                                                    unsigned int rows, unsigned int cols,
                                                    float *acc, const int *on,
                                                    unsigned int *fault) {
    unsigned long long g = blockIdx.y;
    if (!on[g]) return;
    softmax_xent_rows(logits + g * stride, labels + g * labels_stride, rows, cols, 0, 0.0f,
                      acc + 2 * g, fault);
}

extern "C" __global__ void softmax_xent_grad_packed(const float *logits,
                                                    unsigned long long stride,
                                                    const unsigned int *labels,
                                                    unsigned long long labels_stride,
                                                    unsigned int rows, unsigned int cols,
                                                    float *dlogits, float inv_rows, float *acc,
                                                    const int *on, unsigned int *fault) {
    unsigned long long g = blockIdx.y;
    if (!on[g]) return;
    softmax_xent_rows(logits + g * stride, labels + g * labels_stride, rows, cols,
                      dlogits + g * stride, inv_rows, acc + 2 * g, fault);
}
