//! Packed ops: the ops of [`Backend`] over a *group* of `G` same-shaped trials at once,
//! each trial with its own parameters, so that one launch (one batched matrix multiply,
//! one elementwise kernel over a leading group dimension) serves all of them.
//!
//! # Layout
//!
//! A packed buffer holds the trials' blocks one after the other: trial `g`'s block of
//! an op starts at `g · stride` (the op's `stride` argument) and is as long as the
//! single op's buffer would be. Per-feature buffers (biases, batch-norm γ, β and
//! statistics) use a stride of `cols`; accumulators a stride of 2. A read-only input
//! that every trial shares (an evaluation batch, its labels, a sample order) may have
//! stride 0.
//!
//! # Masks and per-trial parameters
//!
//! Ops that take `on: &[bool]` (one entry per trial, `groups = on.len()`) leave the
//! blocks of the trials that are off untouched: a trial without batch norm or dropout,
//! or one that diverged and is no longer updated. Per-trial parameters (activations,
//! dropout probabilities and keys, penalties, optimiser hyper-parameters) are host
//! slices of one entry per trial.
//!
//! # The contract
//!
//! Trial `g`'s block after a packed op is *exactly* what the single op of [`Backend`]
//! gives on that block with trial `g`'s parameters: on the CPU bit for bit (it runs
//! them), on other backends within the single op's own tolerance. Shapes are checked
//! by [`crate::shape`] as for the single ops.

use crate::{Activation, Backend, BatchNormMode, Result, Transpose};

/// One trial's SGD hyper-parameters ([`Backend::sgd_step`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdHyper {
    /// Learning rate.
    pub lr: f64,
    /// Momentum μ.
    pub momentum: f64,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
}

/// One trial's Adam hyper-parameters ([`Backend::adam_step`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHyper {
    /// Learning rate.
    pub lr: f64,
    /// (β₁, β₂).
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
}

/// The packed buffers of one batch-norm layer: the single layer's buffers, each holding
/// every trial's block (per-feature buffers with stride `cols`, x̂ with the stride of
/// the op's `rows × cols` blocks).
pub type PackedBatchNorm<'a, B> = crate::backend::BatchNormBuffers<'a, B>;

/// The packed ops a group of trials trained in lockstep needs (see the module docs).
pub trait PackedBackend: Backend {
    /// Prepares the backend for groups of up to `groups` trials (the CUDA backend
    /// allocates its per-trial parameter tables and reduction partials here, once, so
    /// that no packed op allocates). A packed op on more trials than reserved fails.
    fn reserve_group(&self, groups: usize) -> Result<()>;

    /// [`Backend::gather_batch`] per trial: trial `g` gathers the samples at
    /// `orders[g·order_stride + start ..]` into its blocks of `x` and `y`.
    fn gather_batch_packed(
        &self,
        images: &Self::Bytes<'_>,
        labels: &Self::Bytes<'_>,
        orders: &Self::Idx,
        order_stride: usize,
        start: usize,
        rows: usize,
        features: usize,
        scale: &Self::Buf,
        shift: &Self::Buf,
        channels: usize,
        x: &mut Self::Buf,
        x_stride: usize,
        y: &mut Self::Idx,
        y_stride: usize,
        groups: usize,
    ) -> Result<()>;

    /// [`Backend::matmul`] per trial on blocks of `a`, `b` and `c` (a strided batched
    /// GEMM); `a_stride` or `b_stride` may be 0 (a shared operand).
    fn matmul_batched(
        &self,
        a: &Self::Buf,
        a_stride: usize,
        ta: Transpose,
        b: &Self::Buf,
        b_stride: usize,
        tb: Transpose,
        c: &mut Self::Buf,
        c_stride: usize,
        m: usize,
        n: usize,
        k: usize,
        beta: Self::F,
        groups: usize,
    ) -> Result<()>;

    /// [`Backend::bias_act`] per trial, with trial `g`'s activation `acts[g]`.
    fn bias_act_packed(
        &self,
        x: &mut Self::Buf,
        stride: usize,
        bias: Option<&Self::Buf>,
        acts: &[Activation],
        on: &[bool],
        rows: usize,
        cols: usize,
    ) -> Result<()>;

    /// [`Backend::act_backward`] per trial.
    fn act_backward_packed(
        &self,
        y: &Self::Buf,
        grad: &mut Self::Buf,
        stride: usize,
        acts: &[Activation],
        on: &[bool],
        len: usize,
    ) -> Result<()>;

    /// [`Backend::sum_rows`] per trial (`out` with stride `cols`).
    fn sum_rows_packed(
        &self,
        x: &Self::Buf,
        stride: usize,
        rows: usize,
        cols: usize,
        out: &mut Self::Buf,
        groups: usize,
    ) -> Result<()>;

    /// [`Backend::batchnorm_forward`] per trial.
    fn batchnorm_forward_packed(
        &self,
        x: &Self::Buf,
        y: &mut Self::Buf,
        stride: usize,
        bn: PackedBatchNorm<'_, Self>,
        rows: usize,
        cols: usize,
        eps: f64,
        mode: BatchNormMode,
        on: &[bool],
    ) -> Result<()>;

    /// [`Backend::batchnorm_backward`] per trial (`dy`, x̂, `dx` with `stride`; γ,
    /// invstd, dγ, dβ with stride `cols`).
    fn batchnorm_backward_packed(
        &self,
        dy: &Self::Buf,
        xhat: &Self::Buf,
        dx: &mut Self::Buf,
        stride: usize,
        gamma: &Self::Buf,
        invstd: &Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
        rows: usize,
        cols: usize,
        on: &[bool],
    ) -> Result<()>;

    /// [`Backend::dropout_mask`] per trial, with probability `p[g]` and key `keys[g]`.
    fn dropout_mask_packed(
        &self,
        mask: &mut Self::Buf,
        stride: usize,
        len: usize,
        p: &[f32],
        keys: &[u64],
        on: &[bool],
    ) -> Result<()>;

    /// [`Backend::mul`] per trial.
    fn mul_packed(
        &self,
        x: &Self::Buf,
        m: &Self::Buf,
        out: &mut Self::Buf,
        stride: usize,
        len: usize,
        on: &[bool],
    ) -> Result<()>;

    /// [`Backend::mul_assign`] per trial.
    fn mul_assign_packed(
        &self,
        x: &mut Self::Buf,
        m: &Self::Buf,
        stride: usize,
        len: usize,
        on: &[bool],
    ) -> Result<()>;

    /// [`Backend::copy`] per trial.
    fn copy_packed(
        &self,
        src: &Self::Buf,
        dst: &mut Self::Buf,
        stride: usize,
        len: usize,
        on: &[bool],
    ) -> Result<()>;

    /// [`Backend::softmax_xent`] per trial that is on: `logits` (and `dlogits`) with
    /// `logits_stride`, `labels` with `labels_stride` (0: shared), `acc` with stride 2.
    fn softmax_xent_packed(
        &self,
        logits: &Self::Buf,
        logits_stride: usize,
        labels: &Self::Idx,
        labels_stride: usize,
        rows: usize,
        cols: usize,
        dlogits: Option<&mut Self::Buf>,
        acc: &mut Self::Buf,
        on: &[bool],
    ) -> Result<()>;

    /// [`Backend::penalty_grad`] per trial, with `l1[g]` and `l2[g]`.
    fn penalty_grad_packed(
        &self,
        w: &Self::Buf,
        g: &mut Self::Buf,
        stride: usize,
        len: usize,
        l1: &[f64],
        l2: &[f64],
        on: &[bool],
    ) -> Result<()>;

    /// [`Backend::sgd_step`] per trial, with `hyper[g]`.
    fn sgd_step_packed(
        &self,
        w: &mut Self::Buf,
        g: &Self::Buf,
        velocity: &mut Self::Buf,
        stride: usize,
        len: usize,
        hyper: &[SgdHyper],
        on: &[bool],
    ) -> Result<()>;

    /// [`Backend::adam_step`] per trial, with `hyper[g]` at its own step `steps[g]`
    /// (a trial may have skipped a step the others took).
    fn adam_step_packed(
        &self,
        w: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        stride: usize,
        len: usize,
        hyper: &[AdamHyper],
        steps: &[u32],
        on: &[bool],
    ) -> Result<()>;

    /// [`Backend::grad_stats`] per trial that is on (`acc` with stride 2).
    fn grad_stats_packed(
        &self,
        g: &Self::Buf,
        stride: usize,
        len: usize,
        acc: &mut Self::Buf,
        on: &[bool],
    ) -> Result<()>;

    /// [`Backend::moments`] of each trial's block.
    fn moments_packed(
        &self,
        x: &Self::Buf,
        stride: usize,
        len: usize,
        groups: usize,
    ) -> Result<Vec<[f64; 4]>>;

    /// [`Backend::sq_dist`] of each trial's blocks.
    fn sq_dist_packed(
        &self,
        a: &Self::Buf,
        b: &Self::Buf,
        stride: usize,
        len: usize,
        groups: usize,
    ) -> Result<Vec<f64>>;

    /// [`Backend::dead_columns`] of each trial's block.
    fn dead_columns_packed(
        &self,
        x: &Self::Buf,
        stride: usize,
        rows: usize,
        cols: usize,
        groups: usize,
    ) -> Result<Vec<usize>>;
}
