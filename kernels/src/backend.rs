//! The contract every device implements.
//!
//! Shapes are row-major `rows × cols`. An op uses the first `rows * cols` elements of a
//! buffer, so buffers are allocated once for the largest batch and reused for smaller
//! ones (the last batch of an epoch, evaluation batches). Accumulators (`acc`) are small
//! buffers that stay on the device and are read once per epoch.

use crate::{Activation, Float, Result};

/// Whether a matrix operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transpose {
    /// Used as stored.
    No,
    /// Used transposed.
    Yes,
}

/// How batch norm normalises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchNormMode {
    /// Batch statistics, and the running statistics updated with `momentum`.
    Train {
        /// Weight of the new batch statistic in the running average (PyTorch: 0.1).
        momentum: f64,
    },
    /// Batch statistics, running statistics left alone (gradient checking).
    TrainFrozen,
    /// Running statistics (evaluation).
    Eval,
}

/// The buffers of one batch-norm layer over `cols` features.
pub struct BatchNormBuffers<'a, B: Backend + ?Sized> {
    /// Scale γ.
    pub gamma: &'a B::Buf,
    /// Shift β.
    pub beta: &'a B::Buf,
    /// Running mean (updated in [`BatchNormMode::Train`]).
    pub running_mean: &'a mut B::Buf,
    /// Running unbiased variance (updated in [`BatchNormMode::Train`]).
    pub running_var: &'a mut B::Buf,
    /// Saved for backward: the normalised input x̂ (`rows × cols`).
    pub xhat: &'a mut B::Buf,
    /// Saved for backward: 1/√(var + eps) per feature.
    pub invstd: &'a mut B::Buf,
}

impl<B: Backend + ?Sized> BatchNormBuffers<'_, B> {
    /// The buffers' lengths, for [`crate::shape::batchnorm_forward`].
    pub fn lens(&self) -> crate::shape::BatchNormLens {
        crate::shape::BatchNormLens {
            gamma: B::buf_len(self.gamma),
            beta: B::buf_len(self.beta),
            running_mean: B::buf_len(self.running_mean),
            running_var: B::buf_len(self.running_var),
            xhat: B::buf_len(self.xhat),
            invstd: B::buf_len(self.invstd),
        }
    }
}

/// A compute device: its buffers and the ops MLP training needs.
///
/// Implementations must compute the same functions (to rounding) as the CPU backend;
/// the parity tests hold them to it.
pub trait Backend {
    /// The element type of float buffers.
    type F: Float;
    /// A buffer of `F` on the device.
    type Buf;
    /// A buffer of bytes on the device (datasets, as `u8`). It may borrow the host
    /// bytes it was made from: the CPU backend trains straight from the dataset in
    /// memory instead of holding a second copy of it.
    type Bytes<'a>;
    /// A buffer of `u32` on the device (sample orders, labels).
    type Idx;

    /// The number of elements `buf` holds.
    fn buf_len(buf: &Self::Buf) -> usize;

    /// Human-readable device name, e.g. `cpu (2 threads)`.
    fn name(&self) -> String;

    /// A buffer of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    /// A buffer holding `host`.
    fn upload(&self, host: &[Self::F]) -> Result<Self::Buf>;
    /// Overwrites the start of `dst` with `host`.
    fn write(&self, dst: &mut Self::Buf, host: &[Self::F]) -> Result<()>;
    /// The whole buffer, on the host.
    fn download(&self, buf: &Self::Buf) -> Result<Vec<Self::F>>;
    /// A byte buffer holding `host`.
    fn upload_bytes<'a>(&self, host: &'a [u8]) -> Result<Self::Bytes<'a>>;
    /// An index buffer of `len` zeros.
    fn zeros_idx(&self, len: usize) -> Result<Self::Idx>;
    /// Overwrites the start of `dst` with `host`.
    fn write_idx(&self, dst: &mut Self::Idx, host: &[u32]) -> Result<()>;
    /// Copies the first `len` elements of `src` into `dst`.
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf, len: usize) -> Result<()>;
    /// Sets the first `len` elements to `value`.
    fn fill(&self, buf: &mut Self::Buf, len: usize, value: Self::F) -> Result<()>;

    /// Builds a batch: for `r < rows`, sample `i = order[start + r]` gives
    /// `x[r, f] = images[i, f] · scale[f / (features / channels)] + shift[..]` (the
    /// per-channel standardisation folded into one multiply-add) and `y[r] = labels[i]`.
    fn gather_batch(
        &self,
        images: &Self::Bytes<'_>,
        labels: &Self::Bytes<'_>,
        order: &Self::Idx,
        start: usize,
        rows: usize,
        features: usize,
        scale: &Self::Buf,
        shift: &Self::Buf,
        channels: usize,
        x: &mut Self::Buf,
        y: &mut Self::Idx,
    ) -> Result<()>;

    /// `c[m×n] = op(a) · op(b) + beta · c`, `op(a)` being `m×k` and `op(b)` `k×n`;
    /// a transposed operand is stored as its transpose (`k×m`, `n×k`). `beta` is 0 or 1.
    fn matmul(
        &self,
        a: &Self::Buf,
        ta: Transpose,
        b: &Self::Buf,
        tb: Transpose,
        c: &mut Self::Buf,
        m: usize,
        n: usize,
        k: usize,
        beta: Self::F,
    ) -> Result<()>;

    /// In place: `x[r, c] = act(x[r, c] + bias[c])` (no bias when `None`).
    fn bias_act(
        &self,
        x: &mut Self::Buf,
        bias: Option<&Self::Buf>,
        act: Activation,
        rows: usize,
        cols: usize,
    ) -> Result<()>;

    /// In place: `grad[i] *= act'(·)`, computed from the activation's output `y`.
    fn act_backward(
        &self,
        y: &Self::Buf,
        grad: &mut Self::Buf,
        act: Activation,
        len: usize,
    ) -> Result<()>;

    /// `out[c] = Σ_r x[r, c]` (the bias gradient).
    fn sum_rows(&self, x: &Self::Buf, rows: usize, cols: usize, out: &mut Self::Buf) -> Result<()>;

    /// Batch norm forward: `y = γ·x̂ + β` with `x̂ = (x − μ)/√(σ² + eps)`.
    fn batchnorm_forward(
        &self,
        x: &Self::Buf,
        y: &mut Self::Buf,
        bn: BatchNormBuffers<'_, Self>,
        rows: usize,
        cols: usize,
        eps: f64,
        mode: BatchNormMode,
    ) -> Result<()>;

    /// Batch norm backward (training-mode statistics): `dx`, and `dγ`, `dβ` overwritten.
    fn batchnorm_backward(
        &self,
        dy: &Self::Buf,
        xhat: &Self::Buf,
        gamma: &Self::Buf,
        invstd: &Self::Buf,
        dx: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
        rows: usize,
        cols: usize,
    ) -> Result<()>;

    /// Draws an inverted-dropout mask: `mask[i] = 1/(1−p)` where
    /// [`crate::dropout_keep`]`(key, i, p)`, else 0.
    fn dropout_mask(&self, mask: &mut Self::Buf, len: usize, p: f32, key: u64) -> Result<()>;

    /// `out[i] = x[i] · m[i]`.
    fn mul(&self, x: &Self::Buf, m: &Self::Buf, out: &mut Self::Buf, len: usize) -> Result<()>;

    /// In place: `x[i] *= m[i]`.
    fn mul_assign(&self, x: &mut Self::Buf, m: &Self::Buf, len: usize) -> Result<()>;

    /// Mean softmax cross-entropy over `rows` rows of `cols` logits. Adds the summed
    /// per-row loss to `acc[0]` and the number of rows whose arg-max (first maximum)
    /// equals the label to `acc[1]`. With `dlogits`, writes `(softmax − onehot)/rows`.
    fn softmax_xent(
        &self,
        logits: &Self::Buf,
        labels: &Self::Idx,
        rows: usize,
        cols: usize,
        dlogits: Option<&mut Self::Buf>,
        acc: &mut Self::Buf,
    ) -> Result<()>;

    /// In place: `g += l1·sign(w) + 2·l2·w` (the gradient of `l1·Σ|w| + l2·Σw²`).
    fn penalty_grad(
        &self,
        w: &Self::Buf,
        g: &mut Self::Buf,
        len: usize,
        l1: f64,
        l2: f64,
    ) -> Result<()>;

    /// SGD as PyTorch: `g' = g + wd·w; v = μ·v + g'; w −= lr·v` (no dampening).
    fn sgd_step(
        &self,
        w: &mut Self::Buf,
        g: &Self::Buf,
        velocity: &mut Self::Buf,
        len: usize,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> Result<()>;

    /// Adam as PyTorch (L2 `weight_decay` added to the gradient), `step` counted from 1.
    fn adam_step(
        &self,
        w: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        len: usize,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        step: u32,
    ) -> Result<()>;

    /// Accumulates gradient diagnostics on the device: `acc[0] += ‖g‖₂`,
    /// `acc[1] = max(acc[1], max|g|)`.
    fn grad_stats(&self, g: &Self::Buf, len: usize, acc: &mut Self::Buf) -> Result<()>;

    /// `[Σx, Σx², Σ|x|, max|x|]` over the first `len` elements, in f64 on the host.
    fn moments(&self, x: &Self::Buf, len: usize) -> Result<[f64; 4]>;

    /// `Σ (a − b)²` over the first `len` elements, in f64 on the host.
    fn sq_dist(&self, a: &Self::Buf, b: &Self::Buf, len: usize) -> Result<f64>;

    /// The number of columns of `x` (`rows × cols`) with no positive entry (dead units).
    fn dead_columns(&self, x: &Self::Buf, rows: usize, cols: usize) -> Result<usize>;
}
