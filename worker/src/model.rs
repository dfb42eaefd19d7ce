//! The MLP: `Linear → [BatchNorm] → activation → [dropout]` per hidden layer, then a
//! `Linear` to the logits — PyTorch's block order, on any [`Backend`].
//!
//! Every buffer is allocated once, for the largest batch the model will see, and reused
//! by every forward and backward pass.

use gradsweep_kernels::{Activation, Backend, BatchNormBuffers, BatchNormMode, Result, Transpose};

/// Batch norm's epsilon (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;
/// Batch norm's running-statistics momentum (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;

/// The architecture of an MLP.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    /// Input features.
    pub inputs: usize,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Output classes.
    pub classes: usize,
    /// Hidden activation.
    pub activation: Activation,
    /// Batch norm after every hidden Linear.
    pub batchnorm: bool,
    /// Dropout probability after every hidden activation.
    pub dropout: Option<f32>,
}

impl Architecture {
    /// `(fan_in, fan_out)` of each Linear layer, input to output.
    pub fn linear_shapes(&self) -> Vec<(usize, usize)> {
        let mut dims = vec![self.inputs];
        dims.extend(&self.hidden);
        dims.push(self.classes);
        dims.windows(2).map(|w| (w[0], w[1])).collect()
    }
}

/// One Linear layer's `(weight, bias)` on the host, in PyTorch's layout: W is
/// `outputs × inputs`, the bias `outputs`.
pub type LinearParams<F> = (Vec<F>, Vec<F>);

/// `x` (`rows × cols`, row-major) transposed.
pub fn transposed<F: Copy>(x: &[F], rows: usize, cols: usize) -> Vec<F> {
    let mut out = Vec::with_capacity(x.len());
    for c in 0..cols {
        out.extend((0..rows).map(|r| x[r * cols + c]));
    }
    out
}

/// The PyTorch flat index (`W[o, i]` at `o·inputs + i`) of entry `stored` of a weight
/// held as Wᵀ (`inputs × outputs`).
pub fn pytorch_index(stored: usize, inputs: usize, outputs: usize) -> usize {
    let (i, o) = (stored / outputs, stored % outputs);
    o * inputs + i
}

/// A trainable tensor with its gradient and optimiser state.
pub struct Param<B: Backend> {
    /// `linear1.weight`, `bn2.bias`, …
    pub name: String,
    /// Number of elements.
    pub len: usize,
    /// The values.
    pub value: B::Buf,
    /// The gradient of the last backward pass.
    pub grad: B::Buf,
    /// Optimiser state (SGD: velocity; Adam: first and second moments): empty until
    /// [`Mlp::allocate_optimizer_state`] sizes the ones the optimiser uses.
    pub state: [B::Buf; 2],
    /// Whether L1/L2 penalties apply (Linear weights only).
    pub penalised: bool,
}

impl<B: Backend> Param<B> {
    fn new(backend: &B, name: String, values: &[B::F], penalised: bool) -> Result<Self> {
        let len = values.len();
        Ok(Param {
            name,
            len,
            value: backend.upload(values)?,
            grad: backend.zeros(len)?,
            state: [backend.zeros(0)?, backend.zeros(0)?],
            penalised,
        })
    }
}

/// Batch norm's parameters, statistics and saved tensors.
pub struct BatchNorm<B: Backend> {
    /// γ.
    pub gamma: Param<B>,
    /// β.
    pub beta: Param<B>,
    /// Running mean.
    pub running_mean: B::Buf,
    /// Running variance.
    pub running_var: B::Buf,
    xhat: B::Buf,
    invstd: B::Buf,
    /// The Linear output (the batch norm input), `rows × outputs`.
    z: B::Buf,
    /// Gradient with respect to `z`.
    dz: B::Buf,
}

/// One Linear layer and what follows it.
pub struct Layer<B: Backend> {
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// Wᵀ, `inputs × outputs` (PyTorch stores W, `outputs × inputs`): the forward
    /// product `x·Wᵀ` then has the layout matrix-multiply kernels run fastest, and so
    /// does the first layer's weight gradient; see [`pytorch_index`] for reporting.
    pub weight: Param<B>,
    /// `outputs`.
    pub bias: Param<B>,
    /// Batch norm, when enabled.
    pub bn: Option<BatchNorm<B>>,
    /// Activation (identity for the output layer).
    pub activation: Activation,
    /// Dropout probability, when enabled.
    pub dropout: Option<f32>,
    /// Activation output, `rows × outputs`.
    pub a: B::Buf,
    mask: B::Buf,
    dropped: B::Buf,
    dropout_active: bool,
    /// Gradient with respect to this layer's output.
    grad_out: B::Buf,
}

impl<B: Backend> Layer<B> {
    /// The layer's output as the next layer sees it.
    fn output(&self) -> &B::Buf {
        if self.dropout_active {
            &self.dropped
        } else {
            &self.a
        }
    }
}

/// How a forward pass treats batch norm and dropout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training: batch statistics (running ones updated), fresh dropout masks drawn
    /// with `dropout_key(layer)`.
    Train {
        /// Seed of this step's masks ([`gradsweep_kernels::rng::dropout_key`]'s inputs).
        seed: u64,
        /// The optimisation step.
        step: u64,
    },
    /// Gradient checking: batch statistics without updating the running ones, and the
    /// masks drawn by the last `Train` pass (or [`Mlp::draw_masks`]) held fixed.
    Frozen,
    /// Evaluation: running statistics, no dropout.
    Eval,
}

/// An MLP on a backend.
pub struct Mlp<B: Backend> {
    /// Its architecture.
    pub arch: Architecture,
    /// The Linear layers, input to output.
    pub layers: Vec<Layer<B>>,
    max_rows: usize,
}

impl<B: Backend> Mlp<B> {
    /// Builds the model with the given Linear parameters (`(weight, bias)` per layer, in
    /// [`Architecture::linear_shapes`] order, PyTorch's layout), batch norm at γ = 1, β = 0, running
    /// mean 0 and variance 1, buffers for batches of up to `max_rows`.
    pub fn new(
        backend: &B,
        arch: Architecture,
        linear: &[LinearParams<B::F>],
        max_rows: usize,
    ) -> Result<Self> {
        let shapes = arch.linear_shapes();
        assert_eq!(
            shapes.len(),
            linear.len(),
            "one (weight, bias) per Linear layer"
        );
        let last = shapes.len() - 1;
        let one = <B::F as gradsweep_kernels::Float>::ONE;
        let mut layers = Vec::with_capacity(shapes.len());
        for (l, (&(inputs, outputs), (w, b))) in shapes.iter().zip(linear).enumerate() {
            assert_eq!(w.len(), inputs * outputs);
            assert_eq!(b.len(), outputs);
            let hidden = l < last;
            let n = l + 1;
            let bn = if hidden && arch.batchnorm {
                Some(BatchNorm {
                    gamma: Param::new(
                        backend,
                        format!("bn{n}.weight"),
                        &vec![one; outputs],
                        false,
                    )?,
                    beta: Param::new(
                        backend,
                        format!("bn{n}.bias"),
                        &vec![Default::default(); outputs],
                        false,
                    )?,
                    running_mean: backend.zeros(outputs)?,
                    running_var: backend.upload(&vec![one; outputs])?,
                    xhat: backend.zeros(max_rows * outputs)?,
                    invstd: backend.zeros(outputs)?,
                    z: backend.zeros(max_rows * outputs)?,
                    dz: backend.zeros(max_rows * outputs)?,
                })
            } else {
                None
            };
            let dropout = if hidden { arch.dropout } else { None };
            let act_len = max_rows * outputs;
            let drop_len = if dropout.is_some() { act_len } else { 0 };
            layers.push(Layer {
                inputs,
                outputs,
                weight: Param::new(
                    backend,
                    format!("linear{n}.weight"),
                    &transposed(w, outputs, inputs),
                    true,
                )?,
                bias: Param::new(backend, format!("linear{n}.bias"), b, false)?,
                bn,
                activation: if hidden {
                    arch.activation
                } else {
                    Activation::Identity
                },
                dropout,
                a: backend.zeros(act_len)?,
                mask: backend.zeros(drop_len)?,
                dropped: backend.zeros(drop_len)?,
                dropout_active: false,
                grad_out: backend.zeros(act_len)?,
            });
        }
        Ok(Mlp {
            arch,
            layers,
            max_rows,
        })
    }

    /// Gives every parameter `buffers` (at most 2) zeroed optimiser-state buffers of its
    /// size: 1 for SGD (the velocity), 2 for Adam (the moments). A model that is never
    /// trained (the gradient check's copy) holds none.
    pub fn allocate_optimizer_state(&mut self, backend: &B, buffers: usize) -> Result<()> {
        for p in self.params_mut() {
            for slot in p.state.iter_mut().take(buffers) {
                *slot = backend.zeros(p.len)?;
            }
        }
        Ok(())
    }

    /// The largest batch the buffers hold.
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// The logits of the last forward pass (`rows × classes`).
    pub fn logits(&self) -> &B::Buf {
        &self.layers[self.layers.len() - 1].a
    }

    /// The logits buffer and the buffer its gradient goes in, for the loss.
    pub fn logits_and_grad(&mut self) -> (&B::Buf, &mut B::Buf) {
        let last = self.layers.len() - 1;
        let layer = &mut self.layers[last];
        (&layer.a, &mut layer.grad_out)
    }

    /// Every parameter, Linear weight and bias then batch norm γ and β, layer by layer.
    pub fn params_mut(&mut self) -> Vec<&mut Param<B>> {
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

    /// Draws fresh dropout masks for `rows` rows, as a `Train` pass with this `seed` and
    /// `step` would, for a `Frozen` pass to reuse.
    pub fn draw_masks(&mut self, backend: &B, rows: usize, seed: u64, step: u64) -> Result<()> {
        for (l, layer) in self.layers.iter_mut().enumerate() {
            if let Some(p) = layer.dropout {
                let key = gradsweep_kernels::rng::dropout_key(seed, l as u64, step);
                backend.dropout_mask(&mut layer.mask, rows * layer.outputs, p, key)?;
            }
        }
        Ok(())
    }

    /// Makes the next [`Mlp::backward`] ignore the dropout masks the last forward pass
    /// applied, as a backward pass that forgot dropout would: the gradient check's tests
    /// use it to show that such a gradient fails.
    pub fn forget_dropout_masks(&mut self) {
        for layer in &mut self.layers {
            layer.dropout_active = false;
        }
    }

    /// Forward pass of `rows` samples of `x` (`rows × inputs`); the logits are then in
    /// [`Mlp::logits`].
    pub fn forward(&mut self, backend: &B, x: &B::Buf, rows: usize, mode: Mode) -> Result<()> {
        assert!(
            rows <= self.max_rows,
            "batch of {rows} rows exceeds the model's buffers"
        );
        let zero = <B::F as Default>::default();
        for l in 0..self.layers.len() {
            let (before, rest) = self.layers.split_at_mut(l);
            let layer = &mut rest[0];
            let input = match before.last() {
                Some(prev) => prev.output(),
                None => x,
            };
            let (m, n, k) = (rows, layer.outputs, layer.inputs);
            match &mut layer.bn {
                Some(bn) => {
                    backend.matmul(
                        input,
                        Transpose::No,
                        &layer.weight.value,
                        Transpose::No,
                        &mut bn.z,
                        m,
                        n,
                        k,
                        zero,
                    )?;
                    backend.bias_act(
                        &mut bn.z,
                        Some(&layer.bias.value),
                        Activation::Identity,
                        m,
                        n,
                    )?;
                    let bn_mode = match mode {
                        Mode::Train { .. } => BatchNormMode::Train {
                            momentum: BN_MOMENTUM,
                        },
                        Mode::Frozen => BatchNormMode::TrainFrozen,
                        Mode::Eval => BatchNormMode::Eval,
                    };
                    let buffers = BatchNormBuffers {
                        gamma: &bn.gamma.value,
                        beta: &bn.beta.value,
                        running_mean: &mut bn.running_mean,
                        running_var: &mut bn.running_var,
                        xhat: &mut bn.xhat,
                        invstd: &mut bn.invstd,
                    };
                    backend.batchnorm_forward(
                        &bn.z,
                        &mut layer.a,
                        buffers,
                        m,
                        n,
                        BN_EPS,
                        bn_mode,
                    )?;
                    backend.bias_act(&mut layer.a, None, layer.activation, m, n)?;
                }
                None => {
                    backend.matmul(
                        input,
                        Transpose::No,
                        &layer.weight.value,
                        Transpose::No,
                        &mut layer.a,
                        m,
                        n,
                        k,
                        zero,
                    )?;
                    backend.bias_act(
                        &mut layer.a,
                        Some(&layer.bias.value),
                        layer.activation,
                        m,
                        n,
                    )?;
                }
            }
            layer.dropout_active = false;
            if let Some(p) = layer.dropout {
                match mode {
                    Mode::Train { seed, step } => {
                        let key = gradsweep_kernels::rng::dropout_key(seed, l as u64, step);
                        backend.dropout_mask(&mut layer.mask, m * n, p, key)?;
                        layer.dropout_active = true;
                    }
                    Mode::Frozen => layer.dropout_active = true,
                    Mode::Eval => {}
                }
                if layer.dropout_active {
                    backend.mul(&layer.a, &layer.mask, &mut layer.dropped, m * n)?;
                }
            }
        }
        Ok(())
    }

    /// Backward pass after a `Train` or `Frozen` forward of the same `x`, with the
    /// loss gradient already in the logits' gradient buffer: fills every `Param::grad`.
    pub fn backward(&mut self, backend: &B, x: &B::Buf, rows: usize) -> Result<()> {
        let zero = <B::F as Default>::default();
        for l in (0..self.layers.len()).rev() {
            let (before, rest) = self.layers.split_at_mut(l);
            let layer = &mut rest[0];
            let (m, n, k) = (rows, layer.outputs, layer.inputs);
            if layer.dropout_active {
                backend.mul_assign(&mut layer.grad_out, &layer.mask, m * n)?;
            }
            backend.act_backward(&layer.a, &mut layer.grad_out, layer.activation, m * n)?;
            let dz = match &mut layer.bn {
                Some(bn) => {
                    backend.batchnorm_backward(
                        &layer.grad_out,
                        &bn.xhat,
                        &bn.gamma.value,
                        &bn.invstd,
                        &mut bn.dz,
                        &mut bn.gamma.grad,
                        &mut bn.beta.grad,
                        m,
                        n,
                    )?;
                    &bn.dz
                }
                None => &layer.grad_out,
            };
            backend.sum_rows(dz, m, n, &mut layer.bias.grad)?;
            match before.last_mut() {
                Some(prev) => {
                    let input = if prev.dropout_active {
                        &prev.dropped
                    } else {
                        &prev.a
                    };
                    // d(Wᵀ) = xᵀ·dz, dx = dz·(Wᵀ)ᵀ.
                    backend.matmul(
                        input,
                        Transpose::Yes,
                        dz,
                        Transpose::No,
                        &mut layer.weight.grad,
                        k,
                        n,
                        m,
                        zero,
                    )?;
                    backend.matmul(
                        dz,
                        Transpose::No,
                        &layer.weight.value,
                        Transpose::Yes,
                        &mut prev.grad_out,
                        m,
                        k,
                        n,
                        zero,
                    )?;
                }
                None => {
                    backend.matmul(
                        x,
                        Transpose::Yes,
                        dz,
                        Transpose::No,
                        &mut layer.weight.grad,
                        k,
                        n,
                        m,
                        zero,
                    )?;
                }
            }
        }
        Ok(())
    }
}
