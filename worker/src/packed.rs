//! Packed trials: a group of compatible trials trained in lockstep as one packed model
//! on one device, each trial getting exactly what it would get alone.
//!
//! [`can_pack`] says which trials may share a group; [`train_group`] trains a group and
//! answers, for each member, what [`crate::trial::run_until`] would have answered for it
//! alone: its [`TrialRecord`] (epoch reports, verdicts, gradient checks), or
//! [`TrialError::Stopped`] when its `stop` said so, or its splits refusal.
//!
//! # The packed model
//!
//! [`PackedMlp`] holds every trial's tensors one after the other in one device buffer
//! per tensor (trial `g`'s block at `g · stride`, see [`gradsweep_kernels::packed`]), so
//! each step is one [`PackedBackend`] op per single op: batched products for every
//! Linear layer, one elementwise launch for every trial's bias + activation, and so on.
//! What differs between trials is per-trial data: activations, dropout probabilities
//! and streams (`dropout_key(seed, layer, step)` of each trial), penalties, optimiser
//! hyper-parameters, shuffle orders (each trial's own, from its seed and the epoch), and
//! switches: batch norm runs on the trials that have it (the others' Linear outputs are
//! copied through), dropout on those that have it, and a trial that diverged or was
//! stopped is switched off everywhere it could change (its optimiser steps, its loss and
//! gradient accumulators) and simply carried along by the rest.
//!
//! On the CPU a packed op runs the single op on each trial's blocks, so a trial's
//! epoch reports in a group are bit for bit those it has alone
//! (`worker/tests/packed.rs`).

use crate::check;
use crate::config::{Optimizer, TrialConfig};
use crate::data::{Dataset, Split};
use crate::memory;
use crate::model::{Architecture, BN_EPS, BN_MOMENTUM, LinearParams, Mlp, transposed};
use crate::report::{EpochReport, LayerDiagnostics, Outcome, Verdicts};
use crate::train::{self, Event};
use crate::trial::{self, DatasetSummary, TrialError, TrialRecord};
use gradsweep_kernels::rng::dropout_key;
use gradsweep_kernels::{
    Activation, AdamHyper, BatchNormMode, Float, PackedBackend, PackedBatchNorm, SgdHyper,
    Transpose,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::time::Instant;

/// Whether trials `a` and `b` may be trained in one group, or the first reason why not.
///
/// A group shares everything that sets the *shape and schedule* of the computation:
/// the data (`dataset`, `val_fraction`, and `input_norm`, which sets the one input
/// standardisation the gathered batches get), the layer sizes (`hidden`; the dataset
/// fixes inputs and classes), `batch_size` and `eval_batch_size` (every trial's batch is
/// the same rows of one packed op, and the evaluation batches' sizes set how the loss
/// sums round), `epochs` (the group steps in lockstep to the end), and the optimiser
/// *kind* (SGD or Adam: which state buffers exist and which update kernel runs).
///
/// Everything else may differ, because it is per-trial data to the packed ops:
/// activation, init and init scope (drawn on the host), batch norm on/off (a switch per
/// trial), L1/L2/dropout (per-trial penalties, probabilities and dropout streams), the
/// optimiser's hyper-parameters (learning rate, momentum, betas, eps, weight decay),
/// the seed (own init, own shuffles, own masks), the name and the gradient check (run
/// per trial after training).
pub fn can_pack(a: &TrialConfig, b: &TrialConfig) -> Result<(), String> {
    fn differ(key: &str, a: impl std::fmt::Debug, b: impl std::fmt::Debug) -> Result<(), String> {
        Err(format!("`{key}` differs ({a:?} vs {b:?})"))
    }
    if a.dataset != b.dataset {
        return differ("dataset", &a.dataset, &b.dataset);
    }
    if a.val_fraction.to_bits() != b.val_fraction.to_bits() {
        return differ("val_fraction", a.val_fraction, b.val_fraction);
    }
    if a.input_norm != b.input_norm {
        return differ("input_norm", a.input_norm, b.input_norm);
    }
    if a.hidden != b.hidden {
        return differ("hidden", &a.hidden, &b.hidden);
    }
    if a.batch_size != b.batch_size {
        return differ("batch_size", a.batch_size, b.batch_size);
    }
    if a.eval_batch_size != b.eval_batch_size {
        return differ("eval_batch_size", a.eval_batch_size, b.eval_batch_size);
    }
    if a.epochs != b.epochs {
        return differ("epochs", a.epochs, b.epochs);
    }
    let kind = |o: &Optimizer| match o {
        Optimizer::Sgd { .. } => "sgd",
        Optimizer::Adam { .. } => "adam",
    };
    if kind(&a.optimizer) != kind(&b.optimizer) {
        return differ("optimizer kind", kind(&a.optimizer), kind(&b.optimizer));
    }
    Ok(())
}

/// Why a group could not be trained at all (each member's own problems are answered per
/// member instead).
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// Two members may not share a group ([`can_pack`]).
    #[error("trial {index} cannot join the group of trial 0: {reason}")]
    Incompatible {
        /// The member that does not fit.
        index: usize,
        /// What differs.
        reason: String,
    },
    /// A group needs at least one member.
    #[error("a group of no trials")]
    Empty,
    /// A kernel failed: the device is shared, so the whole group failed.
    #[error("training failed: {0}")]
    Kernel(#[from] gradsweep_kernels::Error),
}

/// One trial of a group, with what [`crate::trial::run_until`] would be given for it.
pub struct Member<'a> {
    /// Its configuration.
    pub config: &'a TrialConfig,
    /// Told of every batch and epoch of this trial.
    pub on_event: &'a mut dyn FnMut(Event<'_>),
    /// Asked after every batch: `true` drops this trial (only this one) from the group.
    pub stop: &'a dyn Fn() -> bool,
}

/// `a[g] && b[g]` for every trial.
fn and(a: &[bool], b: &[bool]) -> Vec<bool> {
    a.iter().zip(b).map(|(&a, &b)| a && b).collect()
}

/// `a[g] && !b[g]` for every trial.
fn and_not(a: &[bool], b: &[bool]) -> Vec<bool> {
    a.iter().zip(b).map(|(&a, &b)| a && !b).collect()
}

/// A trainable tensor of every trial, with its gradient and optimiser state.
pub struct PackedParam<B: PackedBackend> {
    /// Elements per trial (the stride of its blocks).
    pub len: usize,
    /// The values.
    pub value: B::Buf,
    /// The gradients of the last backward pass.
    pub grad: B::Buf,
    /// SGD's velocity, or Adam's moments.
    pub state: [B::Buf; 2],
    /// The trials it belongs to (batch norm's γ and β: those with batch norm).
    pub of: Vec<bool>,
}

impl<B: PackedBackend> PackedParam<B> {
    fn new(
        backend: &B,
        len: usize,
        host: &[B::F],
        buffers: usize,
        of: Vec<bool>,
    ) -> Result<Self, GroupError> {
        let total = host.len();
        let state = |i: usize| {
            if i < buffers {
                backend.zeros(total)
            } else {
                backend.zeros(0)
            }
        };
        Ok(PackedParam {
            len,
            value: backend.upload(host)?,
            grad: backend.zeros(total)?,
            state: [state(0)?, state(1)?],
            of,
        })
    }
}

/// Batch norm of every trial that has it (the buffers have a block for every trial).
pub struct PackedBn<B: PackedBackend> {
    /// γ.
    pub gamma: PackedParam<B>,
    /// β.
    pub beta: PackedParam<B>,
    /// Running means.
    pub running_mean: B::Buf,
    /// Running variances.
    pub running_var: B::Buf,
    xhat: B::Buf,
    invstd: B::Buf,
    /// The Linear outputs (the batch-norm inputs).
    z: B::Buf,
    /// Their gradients.
    dz: B::Buf,
}

/// Dropout of every trial that has it.
struct PackedDropout<B: PackedBackend> {
    /// Probability per trial (unused where `of` is off).
    p: Vec<f32>,
    /// The trials with dropout.
    of: Vec<bool>,
    mask: B::Buf,
    dropped: B::Buf,
    /// The trials whose masks the last forward pass applied.
    active: Vec<bool>,
}

/// One Linear layer of every trial and what follows it.
pub struct PackedLayer<B: PackedBackend> {
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// Wᵀ per trial (`inputs × outputs`, as [`crate::model::Layer::weight`]).
    pub weight: PackedParam<B>,
    /// Biases.
    pub bias: PackedParam<B>,
    /// Batch norm, when any trial has it (hidden layers).
    pub bn: Option<PackedBn<B>>,
    /// Activation per trial (identity for the output layer).
    pub acts: Vec<Activation>,
    /// The activation applied with the bias before batch norm: identity for the trials
    /// with batch norm (their activation follows it), theirs for the others.
    pre_acts: Vec<Activation>,
    dropout: Option<PackedDropout<B>>,
    /// Activation outputs, `max_rows × outputs` per trial.
    pub a: B::Buf,
    grad_out: B::Buf,
}

impl<B: PackedBackend> PackedLayer<B> {
    /// The layer's output as the next layer sees it.
    fn output(&self) -> &B::Buf {
        match &self.dropout {
            Some(d) => &d.dropped,
            None => &self.a,
        }
    }
}

/// How a packed forward pass treats batch norm and dropout.
#[derive(Debug, Clone, Copy)]
pub enum PackedMode<'a> {
    /// Training: batch statistics, fresh dropout masks from each trial's
    /// `dropout_key(seeds[g], layer, steps[g])`.
    Train {
        /// Each trial's seed.
        seeds: &'a [u64],
        /// Each trial's optimisation step.
        steps: &'a [u64],
    },
    /// Evaluation: running statistics, no dropout.
    Eval,
}

/// The MLPs of a group of trials, packed.
pub struct PackedMlp<B: PackedBackend> {
    /// Trials in the group.
    pub groups: usize,
    /// The Linear layers, input to output.
    pub layers: Vec<PackedLayer<B>>,
    /// Which trials have batch norm.
    pub batchnorm: Vec<bool>,
    max_rows: usize,
}

impl<B: PackedBackend> PackedMlp<B> {
    /// The packed model of `archs` (one per trial; same layer sizes) with each trial's
    /// Linear parameters (PyTorch's layout, as [`Mlp::new`]), batch norm at γ = 1, β = 0,
    /// running mean 0 and variance 1, optimiser state of `buffers` buffers per
    /// parameter, activations for batches of up to `max_rows`.
    pub fn new(
        backend: &B,
        archs: &[Architecture],
        linear: &[Vec<LinearParams<B::F>>],
        max_rows: usize,
        buffers: usize,
    ) -> Result<Self, GroupError> {
        let groups = archs.len();
        backend.reserve_group(groups)?;
        let shapes = archs[0].linear_shapes();
        let last = shapes.len() - 1;
        let one = B::F::ONE;
        let batchnorm: Vec<bool> = archs.iter().map(|a| a.batchnorm).collect();
        let any_bn = batchnorm.iter().any(|&b| b);
        let dropout_of: Vec<bool> = archs.iter().map(|a| a.dropout.is_some()).collect();
        let any_dropout = dropout_of.iter().any(|&d| d);
        let all = vec![true; groups];
        let mut layers = Vec::with_capacity(shapes.len());
        for (l, &(inputs, outputs)) in shapes.iter().enumerate() {
            let hidden = l < last;
            // Each member's Wᵀ in its block, transposed on the CPU's threads.
            let mut wt = vec![B::F::ZERO; groups * inputs * outputs];
            wt.par_chunks_mut((inputs * outputs).max(1))
                .zip(linear.par_iter())
                .for_each(|(block, trial)| {
                    let w = &trial[l].0;
                    assert_eq!(w.len(), inputs * outputs, "one weight per Linear layer");
                    for o in 0..outputs {
                        for i in 0..inputs {
                            block[i * outputs + o] = w[o * inputs + i];
                        }
                    }
                });
            let mut bias = Vec::with_capacity(groups * outputs);
            for trial in linear {
                bias.extend_from_slice(&trial[l].1);
            }
            let act_len = groups * max_rows * outputs;
            let bn = if hidden && any_bn {
                let per = |v: B::F| vec![v; groups * outputs];
                Some(PackedBn {
                    gamma: PackedParam::new(
                        backend,
                        outputs,
                        &per(one),
                        buffers,
                        batchnorm.clone(),
                    )?,
                    beta: PackedParam::new(
                        backend,
                        outputs,
                        &per(B::F::ZERO),
                        buffers,
                        batchnorm.clone(),
                    )?,
                    running_mean: backend.zeros(groups * outputs)?,
                    running_var: backend.upload(&per(one))?,
                    xhat: backend.zeros(act_len)?,
                    invstd: backend.zeros(groups * outputs)?,
                    z: backend.zeros(act_len)?,
                    dz: backend.zeros(act_len)?,
                })
            } else {
                None
            };
            let dropout = if hidden && any_dropout {
                Some(PackedDropout {
                    p: archs.iter().map(|a| a.dropout.unwrap_or(0.0)).collect(),
                    of: dropout_of.clone(),
                    mask: backend.zeros(act_len)?,
                    dropped: backend.zeros(act_len)?,
                    active: vec![false; groups],
                })
            } else {
                None
            };
            let acts: Vec<Activation> = archs
                .iter()
                .map(|a| {
                    if hidden {
                        a.activation
                    } else {
                        Activation::Identity
                    }
                })
                .collect();
            let pre_acts = acts
                .iter()
                .zip(&batchnorm)
                .map(|(&act, &bn)| {
                    if bn && hidden {
                        Activation::Identity
                    } else {
                        act
                    }
                })
                .collect();
            layers.push(PackedLayer {
                inputs,
                outputs,
                weight: PackedParam::new(backend, inputs * outputs, &wt, buffers, all.clone())?,
                bias: PackedParam::new(backend, outputs, &bias, buffers, all.clone())?,
                bn,
                acts,
                pre_acts,
                dropout,
                a: backend.zeros(act_len)?,
                grad_out: backend.zeros(act_len)?,
            });
        }
        Ok(PackedMlp {
            groups,
            layers,
            batchnorm,
            max_rows,
        })
    }

    /// The stride of a layer's per-trial activation blocks.
    fn act_stride(&self, layer: usize) -> usize {
        self.max_rows * self.layers[layer].outputs
    }

    /// Forward pass of `rows` rows of each trial's input (`x`, blocks `x_stride` apart;
    /// 0 when every trial gets the same batch) for the trials that are `on`.
    pub fn forward(
        &mut self,
        backend: &B,
        x: &B::Buf,
        x_stride: usize,
        rows: usize,
        mode: PackedMode<'_>,
        on: &[bool],
    ) -> gradsweep_kernels::Result<()> {
        assert!(
            rows <= self.max_rows,
            "batch of {rows} rows exceeds the buffers"
        );
        let zero = B::F::ZERO;
        let (groups, max_rows) = (self.groups, self.max_rows);
        let bn_on = and(on, &self.batchnorm);
        let plain_on = and_not(on, &self.batchnorm);
        for l in 0..self.layers.len() {
            let (before, rest) = self.layers.split_at_mut(l);
            let layer = &mut rest[0];
            let (input, in_stride) = match before.last() {
                Some(prev) => (prev.output(), max_rows * prev.outputs),
                None => (x, x_stride),
            };
            let (m, n, k) = (rows, layer.outputs, layer.inputs);
            let stride = max_rows * n;
            match &mut layer.bn {
                Some(bn) => {
                    backend.matmul_batched(
                        input,
                        in_stride,
                        Transpose::No,
                        &layer.weight.value,
                        k * n,
                        Transpose::No,
                        &mut bn.z,
                        stride,
                        m,
                        n,
                        k,
                        zero,
                        groups,
                    )?;
                    backend.bias_act_packed(
                        &mut bn.z,
                        stride,
                        Some(&layer.bias.value),
                        &layer.pre_acts,
                        on,
                        m,
                        n,
                    )?;
                    let bn_mode = match mode {
                        PackedMode::Train { .. } => BatchNormMode::Train {
                            momentum: BN_MOMENTUM,
                        },
                        PackedMode::Eval => BatchNormMode::Eval,
                    };
                    backend.batchnorm_forward_packed(
                        &bn.z,
                        &mut layer.a,
                        stride,
                        PackedBatchNorm {
                            gamma: &bn.gamma.value,
                            beta: &bn.beta.value,
                            running_mean: &mut bn.running_mean,
                            running_var: &mut bn.running_var,
                            xhat: &mut bn.xhat,
                            invstd: &mut bn.invstd,
                        },
                        m,
                        n,
                        BN_EPS,
                        bn_mode,
                        &bn_on,
                    )?;
                    backend.bias_act_packed(
                        &mut layer.a,
                        stride,
                        None,
                        &layer.acts,
                        &bn_on,
                        m,
                        n,
                    )?;
                    // The trials without batch norm: their Linear output, activated above.
                    backend.copy_packed(&bn.z, &mut layer.a, stride, m * n, &plain_on)?;
                }
                None => {
                    backend.matmul_batched(
                        input,
                        in_stride,
                        Transpose::No,
                        &layer.weight.value,
                        k * n,
                        Transpose::No,
                        &mut layer.a,
                        stride,
                        m,
                        n,
                        k,
                        zero,
                        groups,
                    )?;
                    backend.bias_act_packed(
                        &mut layer.a,
                        stride,
                        Some(&layer.bias.value),
                        &layer.acts,
                        on,
                        m,
                        n,
                    )?;
                }
            }
            if let Some(d) = &mut layer.dropout {
                d.active = match mode {
                    PackedMode::Train { seeds, steps } => {
                        let keys: Vec<u64> = seeds
                            .iter()
                            .zip(steps)
                            .map(|(&seed, &step)| dropout_key(seed, l as u64, step))
                            .collect();
                        let active = and(on, &d.of);
                        backend.dropout_mask_packed(
                            &mut d.mask,
                            stride,
                            m * n,
                            &d.p,
                            &keys,
                            &active,
                        )?;
                        active
                    }
                    PackedMode::Eval => vec![false; groups],
                };
                backend.mul_packed(&layer.a, &d.mask, &mut d.dropped, stride, m * n, &d.active)?;
                let through = and_not(on, &d.active);
                backend.copy_packed(&layer.a, &mut d.dropped, stride, m * n, &through)?;
            }
        }
        Ok(())
    }

    /// The logits of the last forward pass, their gradient buffer, and their stride.
    fn logits_and_grad(&mut self) -> (&B::Buf, &mut B::Buf, usize) {
        let stride = self.act_stride(self.layers.len() - 1);
        let last = self.layers.len() - 1;
        let layer = &mut self.layers[last];
        (&layer.a, &mut layer.grad_out, stride)
    }

    /// Backward pass after a training forward of the same `x`, with the loss gradient
    /// in the logits' gradient buffer, for the trials that are `on`: fills the gradients.
    pub fn backward(
        &mut self,
        backend: &B,
        x: &B::Buf,
        x_stride: usize,
        rows: usize,
        on: &[bool],
    ) -> gradsweep_kernels::Result<()> {
        let zero = B::F::ZERO;
        let (groups, max_rows) = (self.groups, self.max_rows);
        let bn_on = and(on, &self.batchnorm);
        let plain_on = and_not(on, &self.batchnorm);
        for l in (0..self.layers.len()).rev() {
            let (before, rest) = self.layers.split_at_mut(l);
            let layer = &mut rest[0];
            let (m, n, k) = (rows, layer.outputs, layer.inputs);
            let stride = max_rows * n;
            if let Some(d) = &layer.dropout {
                let active = and(on, &d.active);
                backend.mul_assign_packed(&mut layer.grad_out, &d.mask, stride, m * n, &active)?;
            }
            backend.act_backward_packed(
                &layer.a,
                &mut layer.grad_out,
                stride,
                &layer.acts,
                on,
                m * n,
            )?;
            let dz = match &mut layer.bn {
                Some(bn) => {
                    backend.batchnorm_backward_packed(
                        &layer.grad_out,
                        &bn.xhat,
                        &mut bn.dz,
                        stride,
                        &bn.gamma.value,
                        &bn.invstd,
                        &mut bn.gamma.grad,
                        &mut bn.beta.grad,
                        m,
                        n,
                        &bn_on,
                    )?;
                    backend.copy_packed(&layer.grad_out, &mut bn.dz, stride, m * n, &plain_on)?;
                    &bn.dz
                }
                None => &layer.grad_out,
            };
            backend.sum_rows_packed(dz, stride, m, n, &mut layer.bias.grad, groups)?;
            match before.last_mut() {
                Some(prev) => {
                    let in_stride = max_rows * prev.outputs;
                    // d(Wᵀ) = xᵀ·dz, dx = dz·(Wᵀ)ᵀ.
                    backend.matmul_batched(
                        prev.output(),
                        in_stride,
                        Transpose::Yes,
                        dz,
                        stride,
                        Transpose::No,
                        &mut layer.weight.grad,
                        k * n,
                        k,
                        n,
                        m,
                        zero,
                        groups,
                    )?;
                    backend.matmul_batched(
                        dz,
                        stride,
                        Transpose::No,
                        &layer.weight.value,
                        k * n,
                        Transpose::Yes,
                        &mut prev.grad_out,
                        in_stride,
                        m,
                        k,
                        n,
                        zero,
                        groups,
                    )?;
                }
                None => {
                    backend.matmul_batched(
                        x,
                        x_stride,
                        Transpose::Yes,
                        dz,
                        stride,
                        Transpose::No,
                        &mut layer.weight.grad,
                        k * n,
                        k,
                        n,
                        m,
                        zero,
                        groups,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Every parameter: Linear weight and bias, then batch norm's γ and β, layer by
    /// layer (the single model's order).
    fn params_mut(&mut self) -> Vec<&mut PackedParam<B>> {
        let mut out = Vec::new();
        for layer in &mut self.layers {
            out.push(&mut layer.weight);
            out.push(&mut layer.bias);
            if let Some(bn) = &mut layer.bn {
                out.push(&mut bn.gamma);
                out.push(&mut bn.beta);
            }
        }
        out
    }

    /// Trial `g`'s parameters and batch-norm statistics, on the host.
    pub fn member(&self, backend: &B, g: usize) -> gradsweep_kernels::Result<MemberParams<B::F>> {
        let block = |buf: &B::Buf, per: usize| -> gradsweep_kernels::Result<Vec<B::F>> {
            Ok(backend.download(buf)?[g * per..(g + 1) * per].to_vec())
        };
        let mut linear = Vec::with_capacity(self.layers.len());
        let mut bn = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let wt = block(&layer.weight.value, layer.weight.len)?;
            linear.push((
                transposed(&wt, layer.inputs, layer.outputs),
                block(&layer.bias.value, layer.outputs)?,
            ));
            bn.push(match &layer.bn {
                Some(s) if self.batchnorm[g] => {
                    let per = layer.outputs;
                    Some([
                        block(&s.gamma.value, per)?,
                        block(&s.beta.value, per)?,
                        block(&s.running_mean, per)?,
                        block(&s.running_var, per)?,
                    ])
                }
                _ => None,
            });
        }
        Ok(MemberParams {
            linear,
            bn,
            max_rows: self.max_rows,
        })
    }
}

/// One member's trained parameters on the host ([`PackedMlp::member`]).
pub struct MemberParams<F> {
    /// `(weight, bias)` per Linear layer, PyTorch's layout.
    pub linear: Vec<LinearParams<F>>,
    /// Per layer, batch norm's γ, β, running mean and running variance.
    pub bn: Vec<Option<[Vec<F>; 4]>>,
    max_rows: usize,
}

impl<F: Float> MemberParams<F> {
    /// The member alone, as an [`Mlp`] on `backend` sized as in the group.
    pub fn model<B: PackedBackend<F = F>>(
        &self,
        backend: &B,
        arch: Architecture,
    ) -> gradsweep_kernels::Result<Mlp<B>> {
        let mut model = Mlp::new(backend, arch, &self.linear, self.max_rows)?;
        for (dst, src) in model.layers.iter_mut().zip(&self.bn) {
            if let (Some(d), Some([gamma, beta, mean, var])) = (&mut dst.bn, src) {
                backend.write(&mut d.gamma.value, gamma)?;
                backend.write(&mut d.beta.value, beta)?;
                backend.write(&mut d.running_mean, mean)?;
                backend.write(&mut d.running_var, var)?;
            }
        }
        Ok(model)
    }
}

/// A split on the device.
struct DeviceSplit<'a, B: PackedBackend> {
    images: B::Bytes<'a>,
    labels: B::Bytes<'a>,
    len: usize,
}

impl<'a, B: PackedBackend> DeviceSplit<'a, B> {
    fn new(backend: &B, split: &'a Split) -> gradsweep_kernels::Result<Self> {
        Ok(DeviceSplit {
            images: backend.upload_bytes(&split.images)?,
            labels: backend.upload_bytes(&split.labels)?,
            len: split.len(),
        })
    }
}

/// Per-layer diagnostics buffers of every trial.
struct Watch<B: PackedBackend> {
    init: B::Buf,
    epoch_start: B::Buf,
    init_norm: Vec<f64>,
    grad_acc: B::Buf,
}

/// What one trial of a group has become.
enum State {
    /// Still training.
    Training,
    /// Stopped by its `stop`.
    Stopped,
    /// Diverged in this epoch.
    Diverged(u32),
}

/// What training gave one member.
pub struct GroupTrained {
    /// Every completed epoch's report.
    pub epochs: Vec<EpochReport>,
    /// Completed or diverged.
    pub outcome: Outcome,
}

/// Trains `members` in lockstep on `backend`: the packed counterpart of
/// [`crate::train::train_until`]. Each answer is `None` when that member's `stop` said
/// so, else its epochs and outcome; with them, the packed model (for the gradient
/// checks). All members must be compatible ([`can_pack`]) and their splits checked.
pub fn train_packed<B: PackedBackend>(
    backend: &B,
    data: &Dataset,
    members: &mut [Member<'_>],
) -> Result<(Vec<Option<GroupTrained>>, PackedMlp<B>), GroupError> {
    train_packed_with(backend, data, members, &mut |_| {})
}

/// [`train_packed`], calling `after_epoch(epoch)` once the members' epoch reports of
/// `epoch` have all been given to their `on_event` (so that a caller can send a
/// group's reports together).
pub fn train_packed_with<B: PackedBackend>(
    backend: &B,
    data: &Dataset,
    members: &mut [Member<'_>],
    after_epoch: &mut dyn FnMut(u32),
) -> Result<(Vec<Option<GroupTrained>>, PackedMlp<B>), GroupError> {
    let groups = members.len();
    let Some(first) = members.first().map(|m| m.config) else {
        return Err(GroupError::Empty);
    };
    for (index, m) in members.iter().enumerate().skip(1) {
        can_pack(first, m.config).map_err(|reason| GroupError::Incompatible { index, reason })?;
    }
    let configs: Vec<&TrialConfig> = members.iter().map(|m| m.config).collect();
    let archs: Vec<Architecture> = configs
        .iter()
        .map(|c| train::architecture(c, data))
        .collect();
    let features = archs[0].inputs;
    let classes = archs[0].classes;
    let channels = data.shape.channels;
    // Each member's initial weights from its own seed, drawn on the CPU's threads.
    let linear: Vec<Vec<LinearParams<B::F>>> = configs
        .par_iter()
        .zip(&archs)
        .map(|(c, a)| {
            train::initial_params(c, a)
                .iter()
                .map(|(w, b)| (to_f(w), to_f(b)))
                .collect()
        })
        .collect();
    let n_val = data.val.len();
    let probe_rows = memory::probe_rows(data.train.len(), n_val);
    let max_rows = memory::max_rows(first, data.train.len(), n_val, data.test.len());
    let buffers = train::optimizer_buffers(&first.optimizer);
    let mut model = PackedMlp::new(backend, &archs, &linear, max_rows, buffers)?;

    let (scale, shift) = train::normalisation(first, data);
    let train_split = DeviceSplit::new(backend, &data.train)?;
    let val_split = DeviceSplit::new(backend, &data.val)?;
    let test_split = DeviceSplit::new(backend, &data.test)?;
    let n_train = train_split.len;
    let identity: Vec<u32> = (0..n_val.max(data.test.len()).max(probe_rows) as u32).collect();
    let mut identity_order = backend.zeros_idx(identity.len())?;
    backend.write_idx(&mut identity_order, &identity)?;
    let mut orders = backend.zeros_idx(groups * n_train)?;
    let x_stride = max_rows * features;
    let mut x = backend.zeros(groups * x_stride)?;
    let mut y = backend.zeros_idx(groups * max_rows)?;
    let scale = backend.upload(&to_f::<B::F>(&scale))?;
    let shift = backend.upload(&to_f::<B::F>(&shift))?;
    let mut acc = backend.zeros(2 * groups)?;

    let mut watches: Vec<Watch<B>> = Vec::with_capacity(model.layers.len());
    for layer in &model.layers {
        let (len, total) = (layer.weight.len, groups * layer.weight.len);
        let mut init = backend.zeros(total)?;
        backend.copy(&layer.weight.value, &mut init, total)?;
        let mut epoch_start = backend.zeros(total)?;
        backend.copy(&layer.weight.value, &mut epoch_start, total)?;
        let init_norm = backend
            .moments_packed(&init, len, len, groups)?
            .iter()
            .map(|m| m[1].sqrt())
            .collect();
        watches.push(Watch {
            init,
            epoch_start,
            init_norm,
            grad_acc: backend.zeros(2 * groups)?,
        });
    }

    let bs = first.batch_size;
    // A last batch of one sample has no batch statistics: a batch-norm trial skips it.
    let usable: Vec<usize> = configs
        .iter()
        .map(|c| {
            if c.batchnorm && n_train % bs == 1 && n_train > 1 {
                n_train - 1
            } else {
                n_train
            }
        })
        .collect();
    let batches: Vec<usize> = usable.iter().map(|u| u.div_ceil(bs)).collect();
    let l1: Vec<f64> = configs
        .iter()
        .map(|c| c.regularization.l1.unwrap_or(0.0))
        .collect();
    let l2: Vec<f64> = configs
        .iter()
        .map(|c| c.regularization.l2.unwrap_or(0.0))
        .collect();
    let penalised: Vec<bool> = l1
        .iter()
        .zip(&l2)
        .map(|(&a, &b)| a != 0.0 || b != 0.0)
        .collect();
    let seeds: Vec<u64> = configs.iter().map(|c| c.seed).collect();
    let sgd: Vec<SgdHyper> = configs
        .iter()
        .map(|c| match c.optimizer {
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
            } => SgdHyper {
                lr,
                momentum,
                weight_decay,
            },
            Optimizer::Adam { .. } => SgdHyper {
                lr: 0.0,
                momentum: 0.0,
                weight_decay: 0.0,
            },
        })
        .collect();
    let adam: Vec<AdamHyper> = configs
        .iter()
        .map(|c| match c.optimizer {
            Optimizer::Adam {
                lr,
                betas,
                eps,
                weight_decay,
            } => AdamHyper {
                lr,
                betas,
                eps,
                weight_decay,
            },
            Optimizer::Sgd { .. } => AdamHyper {
                lr: 0.0,
                betas: (0.0, 0.0),
                eps: 1.0,
                weight_decay: 0.0,
            },
        })
        .collect();
    // A group shares its optimiser kind (`can_pack`): the other kind's table is unused.
    let is_adam = matches!(first.optimizer, Optimizer::Adam { .. });

    let mut steps = vec![0u64; groups];
    let mut state: Vec<State> = (0..groups).map(|_| State::Training).collect();
    let mut epochs: Vec<Vec<EpochReport>> = (0..groups)
        .map(|_| Vec::with_capacity((first.epochs as usize).min(1024)))
        .collect();
    let training = |state: &[State]| -> Vec<bool> {
        state.iter().map(|s| matches!(s, State::Training)).collect()
    };
    let mut host_orders = vec![0u32; groups * n_train];

    for epoch in 1..=first.epochs {
        let alive = training(&state);
        if !alive.iter().any(|&a| a) {
            break;
        }
        let started = Instant::now();
        for (g, order) in host_orders.chunks_exact_mut(n_train).enumerate() {
            if alive[g] {
                for (i, o) in order.iter_mut().enumerate() {
                    *o = i as u32;
                }
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                    seeds[g] ^ (u64::from(epoch)).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                ));
            }
        }
        backend.write_idx(&mut orders, &host_orders)?;
        backend.fill(&mut acc, 2 * groups, B::F::ZERO)?;
        for w in &mut watches {
            backend.fill(&mut w.grad_acc, 2 * groups, B::F::ZERO)?;
        }
        let most = (0..groups)
            .filter(|&g| alive[g])
            .map(|g| batches[g])
            .max()
            .unwrap_or(0);
        for b in 0..most {
            let on: Vec<bool> = (0..groups)
                .map(|g| matches!(state[g], State::Training) && b < batches[g])
                .collect();
            let Some(lead) = on.iter().position(|&o| o) else {
                break;
            };
            let start = b * bs;
            let rows = bs.min(usable[lead] - start);
            debug_assert!((0..groups).all(|g| !on[g] || bs.min(usable[g] - start) == rows));
            backend.gather_batch_packed(
                &train_split.images,
                &train_split.labels,
                &orders,
                n_train,
                start,
                rows,
                features,
                &scale,
                &shift,
                channels,
                &mut x,
                x_stride,
                &mut y,
                max_rows,
                groups,
            )?;
            model.forward(
                backend,
                &x,
                x_stride,
                rows,
                PackedMode::Train {
                    seeds: &seeds,
                    steps: &steps,
                },
                &on,
            )?;
            let (logits, dlogits, stride) = model.logits_and_grad();
            backend.softmax_xent_packed(
                logits,
                stride,
                &y,
                max_rows,
                rows,
                classes,
                Some(dlogits),
                &mut acc,
                &on,
            )?;
            model.backward(backend, &x, x_stride, rows, &on)?;
            let penalise = and(&on, &penalised);
            for (layer, watch) in model.layers.iter_mut().zip(&mut watches) {
                let len = layer.weight.len;
                backend.grad_stats_packed(
                    &layer.weight.grad,
                    len,
                    len,
                    &mut watch.grad_acc,
                    &on,
                )?;
                backend.penalty_grad_packed(
                    &layer.weight.value,
                    &mut layer.weight.grad,
                    len,
                    len,
                    &l1,
                    &l2,
                    &penalise,
                )?;
            }
            for g in 0..groups {
                if on[g] {
                    steps[g] += 1;
                }
            }
            let step32: Vec<u32> = steps
                .iter()
                .map(|&s| u32::try_from(s).unwrap_or(u32::MAX))
                .collect();
            for p in model.params_mut() {
                let param_on = and(&on, &p.of);
                let [s0, s1] = &mut p.state;
                if is_adam {
                    backend.adam_step_packed(
                        &mut p.value,
                        &p.grad,
                        s0,
                        s1,
                        p.len,
                        p.len,
                        &adam,
                        &step32,
                        &param_on,
                    )?;
                } else {
                    backend.sgd_step_packed(
                        &mut p.value,
                        &p.grad,
                        s0,
                        p.len,
                        p.len,
                        &sgd,
                        &param_on,
                    )?;
                }
            }
            for (g, member) in members.iter_mut().enumerate() {
                if on[g] {
                    (member.on_event)(Event::Batch {
                        epoch,
                        done: b + 1,
                        total: batches[g],
                    });
                    if (member.stop)() {
                        state[g] = State::Stopped;
                    }
                }
            }
        }
        let sums = backend.download(&acc)?;
        let train_seconds = started.elapsed().as_secs_f64();
        let mut train_numbers = vec![(0.0, 0.0); groups];
        for g in 0..groups {
            if !matches!(state[g], State::Training) {
                continue;
            }
            let n = usable[g].max(1) as f64;
            let loss = sums[2 * g].to_f64() / n;
            train_numbers[g] = (loss, sums[2 * g + 1].to_f64() / n);
            if !loss.is_finite() {
                state[g] = State::Diverged(epoch);
            }
        }
        let evaluating = training(&state);
        if !evaluating.iter().any(|&e| e) {
            continue;
        }
        let mut eval = |split: &DeviceSplit<'_, B>,
                        model: &mut PackedMlp<B>|
         -> gradsweep_kernels::Result<Vec<(f64, f64)>> {
            backend.fill(&mut acc, 2 * groups, B::F::ZERO)?;
            let mut start = 0;
            while start < split.len {
                let rows = first.eval_batch_size.min(split.len - start);
                backend.gather_batch(
                    &split.images,
                    &split.labels,
                    &identity_order,
                    start,
                    rows,
                    features,
                    &scale,
                    &shift,
                    channels,
                    &mut x,
                    &mut y,
                )?;
                model.forward(backend, &x, 0, rows, PackedMode::Eval, &evaluating)?;
                let (logits, _, stride) = model.logits_and_grad();
                backend.softmax_xent_packed(
                    logits,
                    stride,
                    &y,
                    0,
                    rows,
                    classes,
                    None,
                    &mut acc,
                    &evaluating,
                )?;
                start += rows;
            }
            let sums = backend.download(&acc)?;
            let n = split.len.max(1) as f64;
            Ok((0..groups)
                .map(|g| (sums[2 * g].to_f64() / n, sums[2 * g + 1].to_f64() / n))
                .collect())
        };
        let val = eval(&val_split, &mut model)?;
        let test = eval(&test_split, &mut model)?;

        // Dead ReLU units on a fixed probe batch (the first validation samples).
        let probe = if n_val > 0 { &val_split } else { &train_split };
        backend.gather_batch(
            &probe.images,
            &probe.labels,
            &identity_order,
            0,
            probe_rows,
            features,
            &scale,
            &shift,
            channels,
            &mut x,
            &mut y,
        )?;
        model.forward(backend, &x, 0, probe_rows, PackedMode::Eval, &evaluating)?;

        let mut penalty = vec![0.0; groups];
        let mut layers: Vec<Vec<LayerDiagnostics>> =
            vec![Vec::with_capacity(model.layers.len()); groups];
        for (l, (layer, watch)) in model.layers.iter().zip(&mut watches).enumerate() {
            let len = layer.weight.len;
            let moments = backend.moments_packed(&layer.weight.value, len, len, groups)?;
            let grads = backend.download(&watch.grad_acc)?;
            let start_norms = backend.moments_packed(&watch.epoch_start, len, len, groups)?;
            let updates = backend.sq_dist_packed(
                &layer.weight.value,
                &watch.epoch_start,
                len,
                len,
                groups,
            )?;
            let changes =
                backend.sq_dist_packed(&layer.weight.value, &watch.init, len, len, groups)?;
            backend.copy(&layer.weight.value, &mut watch.epoch_start, groups * len)?;
            let relu = (0..groups).any(|g| evaluating[g] && layer.acts[g] == Activation::Relu);
            let dead = if relu {
                backend.dead_columns_packed(
                    &layer.a,
                    max_rows * layer.outputs,
                    probe_rows,
                    layer.outputs,
                    groups,
                )?
            } else {
                vec![0; groups]
            };
            for g in (0..groups).filter(|&g| evaluating[g]) {
                let [sum, sum_sq, sum_abs, _] = moments[g];
                penalty[g] += l1[g] * sum_abs + l2[g] * sum_sq;
                let mean = sum / len as f64;
                let std = (sum_sq / len as f64 - mean * mean).max(0.0).sqrt();
                let start_norm = start_norms[g][1].sqrt();
                layers[g].push(LayerDiagnostics {
                    layer: format!("linear{}", l + 1),
                    weight_mean: mean,
                    weight_std: std,
                    grad_norm: grads[2 * g].to_f64() / batches[g].max(1) as f64,
                    grad_max_abs: grads[2 * g + 1].to_f64(),
                    update_ratio: updates[g].sqrt() / start_norm.max(f64::MIN_POSITIVE),
                    change_since_start: changes[g].sqrt()
                        / watch.init_norm[g].max(f64::MIN_POSITIVE),
                    dead_fraction: (layer.acts[g] == Activation::Relu)
                        .then(|| dead[g] as f64 / layer.outputs as f64),
                });
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        for (g, member) in members.iter_mut().enumerate() {
            if !evaluating[g] {
                continue;
            }
            let report = EpochReport {
                epoch,
                train_loss: train_numbers[g].0,
                train_acc: train_numbers[g].1,
                val_loss: val[g].0,
                val_acc: val[g].1,
                test_loss: test[g].0,
                test_acc: test[g].1,
                penalty: penalty[g],
                seconds,
                train_seconds,
                layers: std::mem::take(&mut layers[g]),
            };
            (member.on_event)(Event::Epoch(&report));
            epochs[g].push(report);
        }
        after_epoch(epoch);
    }
    let answers = state
        .into_iter()
        .zip(epochs)
        .map(|(s, epochs)| match s {
            State::Stopped => None,
            State::Training => Some(GroupTrained {
                epochs,
                outcome: Outcome::Completed,
            }),
            State::Diverged(epoch) => Some(GroupTrained {
                epochs,
                outcome: Outcome::Diverged { epoch },
            }),
        })
        .collect();
    Ok((answers, model))
}

/// Runs a group of trials on `backend` with already loaded `data`, as many
/// [`crate::trial::run_until`] calls would, but trained together: the members whose
/// splits cannot train them are refused one by one ([`trial::check_splits`]), the rest
/// trained in lockstep ([`train_packed`]), then each gets its gradient checks and
/// verdicts. The answers are in the members' order.
pub fn train_group<B: PackedBackend>(
    backend: &B,
    data: &Dataset,
    members: &mut [Member<'_>],
) -> Result<Vec<Result<TrialRecord, TrialError>>, GroupError> {
    train_group_with(backend, data, members, &mut |_| {})
}

/// [`train_group`] with [`train_packed_with`]'s `after_epoch`.
pub fn train_group_with<B: PackedBackend>(
    backend: &B,
    data: &Dataset,
    members: &mut [Member<'_>],
    after_epoch: &mut dyn FnMut(u32),
) -> Result<Vec<Result<TrialRecord, TrialError>>, GroupError> {
    let started = Instant::now();
    let mut answers: Vec<Option<Result<TrialRecord, TrialError>>> =
        Vec::with_capacity(members.len());
    let mut fit = Vec::new();
    for m in members.iter_mut() {
        match trial::check_splits(m.config, data) {
            Ok(()) => {
                answers.push(None);
                fit.push(Member {
                    config: m.config,
                    on_event: &mut *m.on_event,
                    stop: m.stop,
                });
            }
            Err(e) => answers.push(Some(Err(e))),
        }
    }
    let configs: Vec<&TrialConfig> = fit.iter().map(|m| m.config).collect();
    if !fit.is_empty() {
        let (trained, model) = train_packed_with(backend, data, &mut fit, after_epoch)?;
        drop(fit);
        // The completed members' weights come to the host and the group's buffers go,
        // so that each member's gradient check has the device to itself.
        let params = trained
            .iter()
            .enumerate()
            .map(|(g, t)| match t {
                Some(GroupTrained {
                    outcome: Outcome::Completed,
                    ..
                }) => model.member(backend, g).map(Some),
                _ => Ok(None),
            })
            .collect::<gradsweep_kernels::Result<Vec<_>>>()?;
        drop(model);
        let mut next = 0;
        for answer in answers.iter_mut() {
            if answer.is_some() {
                continue;
            }
            let g = next;
            next += 1;
            let config = configs[g];
            *answer = Some(match &trained[g] {
                None => Err(TrialError::Stopped),
                Some(t) => record(backend, params[g].as_ref(), config, data, t, &started)
                    .map_err(TrialError::Kernel),
            });
        }
    }
    Ok(answers
        .into_iter()
        .map(|a| a.expect("every member answered"))
        .collect())
}

/// Trial `g`'s record: its gradient checks (initial, and on its trained weights unless
/// it diverged) and verdicts, as [`crate::trial::run_until`] writes them.
fn record<B: PackedBackend>(
    backend: &B,
    params: Option<&MemberParams<B::F>>,
    config: &TrialConfig,
    data: &Dataset,
    trained: &GroupTrained,
    started: &Instant,
) -> gradsweep_kernels::Result<TrialRecord> {
    let gradcheck_initial = check::check_initial(config, data)?;
    let (gradcheck, gradcheck_skipped) = match trained.outcome {
        Outcome::Diverged { epoch } => (
            None,
            Some(format!(
                "the trial diverged in epoch {epoch}: its weights are not finite"
            )),
        ),
        Outcome::Completed => {
            let params = params.expect("a completed member's weights were kept");
            let mut alone = params.model(backend, train::architecture(config, data))?;
            match check::check_trial(backend, &mut alone, config, data)? {
                Some(report) => (Some(report), None),
                None => (None, Some("turned off (gradcheck.layer = \"none\")".into())),
            }
        }
    };
    Ok(TrialRecord {
        config: config.clone(),
        dataset: DatasetSummary::of(data),
        device: backend.name(),
        verdicts: Verdicts::from_epochs(
            &trained.epochs,
            data.classes,
            match trained.outcome {
                Outcome::Diverged { epoch } => Some(epoch),
                Outcome::Completed => None,
            },
        ),
        gradcheck_initial,
        outcome: trained.outcome.clone(),
        epochs: trained.epochs.clone(),
        gradcheck,
        gradcheck_skipped,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn to_f<F: Float>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_shapes_and_schedule_and_mixes_the_rest() {
        let a = TrialConfig::default();
        let mut b = a.clone();
        b.seed = 7;
        b.activation = crate::config::Activation::Tanh;
        b.batchnorm = !a.batchnorm;
        b.regularization.dropout = Some(0.3);
        b.optimizer = Optimizer::Sgd {
            lr: 0.5,
            momentum: 0.0,
            weight_decay: 1e-4,
        };
        assert_eq!(can_pack(&a, &b), Ok(()));
        let mut c = a.clone();
        c.hidden = vec![64];
        assert_eq!(
            can_pack(&a, &c),
            Err("`hidden` differs ([256, 128] vs [64])".into())
        );
        let mut d = a.clone();
        d.optimizer = Optimizer::Adam {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        };
        assert_eq!(
            can_pack(&a, &d),
            Err("`optimizer kind` differs (\"sgd\" vs \"adam\")".into())
        );
        let mut e = a.clone();
        e.epochs += 1;
        assert!(
            can_pack(&a, &e)
                .unwrap_err()
                .starts_with("`epochs` differs")
        );
    }
}
