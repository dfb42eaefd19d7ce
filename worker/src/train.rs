//! The training loop: one trial, start to finish, on any [`Backend`].
//!
//! Each epoch shuffles the training split (seeded by the trial's seed and the epoch),
//! trains on its batches, evaluates the validation and test splits in evaluation mode
//! with large forward-only batches, and measures every Linear layer's diagnostics.
//! Everything stays on the device; only per-epoch numbers come back.

use crate::config::{Init, InitScope, InputNorm, Optimizer, TrialConfig};
use crate::data::Dataset;
use crate::init;
use crate::memory;
use crate::model::{Architecture, LinearParams, Mlp, Mode};
use crate::report::{EpochReport, LayerDiagnostics, Outcome};
use gradsweep_kernels::{Activation, Backend, Float};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Samples in the probe batch that measures dead ReLU units.
pub const PROBE_ROWS: usize = 256;

/// Something worth showing while a trial runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// A training batch finished.
    Batch {
        /// 1-based epoch.
        epoch: u32,
        /// Batches done in this epoch.
        done: usize,
        /// Batches in the epoch.
        total: usize,
    },
    /// An epoch finished.
    Epoch(&'a EpochReport),
}

/// What training produced.
pub struct Trained<B: Backend> {
    /// The model at the end of training.
    pub model: Mlp<B>,
    /// Every completed epoch's report.
    pub epochs: Vec<EpochReport>,
    /// Completed or diverged.
    pub outcome: Outcome,
}

/// The kernels' activation for the one a trial names.
pub fn kernel_activation(activation: crate::config::Activation) -> Activation {
    use crate::config::Activation as Named;
    match activation {
        Named::Sigmoid => Activation::Sigmoid,
        Named::Tanh => Activation::Tanh,
        Named::Relu => Activation::Relu,
        Named::LeakyRelu => Activation::LeakyRelu,
        Named::Elu => Activation::Elu,
    }
}

/// The architecture a trial config describes on a dataset.
pub fn architecture(config: &TrialConfig, data: &Dataset) -> Architecture {
    Architecture {
        inputs: data.shape.features(),
        hidden: config.hidden.clone(),
        classes: data.classes,
        activation: kernel_activation(config.activation),
        batchnorm: config.batchnorm,
        dropout: config.regularization.dropout.map(|p| p as f32),
    }
}

/// The initial Linear parameters of a trial, drawn from its seed, layer by layer: the
/// config's `init` on every layer (`init_scope = "all"`), or on the hidden layers with
/// the output layer at `nn.Linear`'s default (`"hidden"`).
pub fn initial_params(config: &TrialConfig, arch: &Architecture) -> Vec<LinearParams<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let shapes = arch.linear_shapes();
    let last = shapes.len() - 1;
    shapes
        .into_iter()
        .enumerate()
        .map(|(l, (fan_in, fan_out))| {
            let scheme = match config.init_scope {
                InitScope::Hidden if l == last => Init::Default,
                _ => config.init,
            };
            init::linear(scheme, fan_in, fan_out, &mut rng)
        })
        .collect()
}

/// The per-channel `(scale, shift)` that map a `u8` pixel to the first layer's input,
/// `p·scale + shift`: standardised, `(p/255 − mean)/std` with the train split's
/// statistics (`input_norm = "standardize"`), or `p/255` (`"none"`).
pub fn normalisation(config: &TrialConfig, data: &Dataset) -> (Vec<f64>, Vec<f64>) {
    match config.input_norm {
        InputNorm::Standardize => data
            .channel_stats()
            .into_iter()
            .map(|(mean, std)| (1.0 / (255.0 * std), -mean / std))
            .unzip(),
        InputNorm::None => (
            vec![1.0 / 255.0; data.shape.channels],
            vec![0.0; data.shape.channels],
        ),
    }
}

fn to_f<F: Float>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x)).collect()
}

/// A split on the device (borrowing the host bytes where the backend can).
struct DeviceSplit<'a, B: Backend> {
    images: B::Bytes<'a>,
    labels: B::Bytes<'a>,
    len: usize,
}

impl<'a, B: Backend> DeviceSplit<'a, B> {
    fn new(backend: &B, split: &'a crate::data::Split) -> gradsweep_kernels::Result<Self> {
        Ok(DeviceSplit {
            images: backend.upload_bytes(&split.images)?,
            labels: backend.upload_bytes(&split.labels)?,
            len: split.len(),
        })
    }
}

/// The batch buffers on the device and the standardisation that fills them.
struct Batch<B: Backend> {
    x: B::Buf,
    y: B::Idx,
    scale: B::Buf,
    shift: B::Buf,
    features: usize,
    channels: usize,
}

impl<B: Backend> Batch<B> {
    /// Gathers `rows` samples of `split`, those at `order[start..]`, into `x` and `y`.
    fn load(
        &mut self,
        backend: &B,
        split: &DeviceSplit<'_, B>,
        order: &B::Idx,
        start: usize,
        rows: usize,
    ) -> gradsweep_kernels::Result<()> {
        backend.gather_batch(
            &split.images,
            &split.labels,
            order,
            start,
            rows,
            self.features,
            &self.scale,
            &self.shift,
            self.channels,
            &mut self.x,
            &mut self.y,
        )
    }
}

/// Per-layer device buffers for the diagnostics.
struct LayerWatch<B: Backend> {
    init: B::Buf,
    epoch_start: B::Buf,
    init_norm: f64,
    grad_acc: B::Buf,
}

/// Trains one trial on `backend`, reporting progress through `on_event`.
pub fn train<B: Backend>(
    backend: &B,
    config: &TrialConfig,
    data: &Dataset,
    on_event: &mut dyn FnMut(Event<'_>),
) -> gradsweep_kernels::Result<Trained<B>> {
    match train_until(backend, config, data, on_event, &|| false)? {
        Some(trained) => Ok(trained),
        None => unreachable!("a training that is never asked to stop ran to its end"),
    }
}

/// [`train`], but `stop` is asked after every batch: when it says so, training ends at
/// once and the answer is `None` (the lease loop abandons a revoked trial this way).
pub fn train_until<B: Backend>(
    backend: &B,
    config: &TrialConfig,
    data: &Dataset,
    on_event: &mut dyn FnMut(Event<'_>),
    stop: &dyn Fn() -> bool,
) -> gradsweep_kernels::Result<Option<Trained<B>>> {
    let arch = architecture(config, data);
    let features = arch.inputs;
    let classes = arch.classes;
    let channels = data.shape.channels;
    let params: Vec<LinearParams<B::F>> = initial_params(config, &arch)
        .iter()
        .map(|(w, b)| (to_f(w), to_f(b)))
        .collect();
    let n_val = data.val.len();
    // The same sizes the memory estimate counts (`crate::memory`).
    let probe_rows = memory::probe_rows(data.train.len(), n_val);
    let max_rows = memory::max_rows(config, data.train.len(), n_val, data.test.len());
    let mut model = Mlp::new(backend, arch, &params, max_rows)?;
    model.allocate_optimizer_state(backend, optimizer_buffers(&config.optimizer))?;

    let (scale, shift) = normalisation(config, data);
    let train_split = DeviceSplit::new(backend, &data.train)?;
    let val_split = DeviceSplit::new(backend, &data.val)?;
    let test_split = DeviceSplit::new(backend, &data.test)?;
    let n_train = train_split.len;
    let identity: Vec<u32> = (0..n_val.max(data.test.len()).max(probe_rows) as u32).collect();
    let identity_order = {
        let mut buf = backend.zeros_idx(identity.len())?;
        backend.write_idx(&mut buf, &identity)?;
        buf
    };
    let mut order = backend.zeros_idx(n_train)?;
    let mut batch = Batch {
        x: backend.zeros(max_rows * features)?,
        y: backend.zeros_idx(max_rows)?,
        scale: backend.upload(&to_f::<B::F>(&scale))?,
        shift: backend.upload(&to_f::<B::F>(&shift))?,
        features,
        channels,
    };
    let mut acc = backend.zeros(2)?;

    let mut watches: Vec<LayerWatch<B>> = Vec::with_capacity(model.layers.len());
    for layer in &model.layers {
        let len = layer.weight.len;
        let mut init = backend.zeros(len)?;
        backend.copy(&layer.weight.value, &mut init, len)?;
        let mut epoch_start = backend.zeros(len)?;
        backend.copy(&layer.weight.value, &mut epoch_start, len)?;
        let init_norm = backend.moments(&init, len)?[1].sqrt();
        watches.push(LayerWatch {
            init,
            epoch_start,
            init_norm,
            grad_acc: backend.zeros(2)?,
        });
    }

    let bs = config.batch_size;
    // A last batch of one sample has no batch statistics; PyTorch refuses it, we skip it.
    let usable = if config.batchnorm && n_train % bs == 1 && n_train > 1 {
        n_train - 1
    } else {
        n_train
    };
    let batches = usable.div_ceil(bs);
    let penalty_l1 = config.regularization.l1.unwrap_or(0.0);
    let penalty_l2 = config.regularization.l2.unwrap_or(0.0);
    let penalised = penalty_l1 != 0.0 || penalty_l2 != 0.0;
    let mut step: u64 = 0;
    let mut epochs = Vec::with_capacity((config.epochs as usize).min(1024));
    let mut perm: Vec<u32> = (0..n_train as u32).collect();

    for epoch in 1..=config.epochs {
        let started = Instant::now();
        perm.sort_unstable();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(
            config.seed ^ (u64::from(epoch)).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ));
        backend.write_idx(&mut order, &perm)?;
        backend.fill(&mut acc, 2, B::F::ZERO)?;
        for w in &mut watches {
            backend.fill(&mut w.grad_acc, 2, B::F::ZERO)?;
        }
        for b in 0..batches {
            let start = b * bs;
            let rows = bs.min(usable - start);
            batch.load(backend, &train_split, &order, start, rows)?;
            model.forward(
                backend,
                &batch.x,
                rows,
                Mode::Train {
                    seed: config.seed,
                    step,
                },
            )?;
            let (logits, dlogits) = model.logits_and_grad();
            backend.softmax_xent(logits, &batch.y, rows, classes, Some(dlogits), &mut acc)?;
            model.backward(backend, &batch.x, rows)?;
            for (layer, watch) in model.layers.iter_mut().zip(&mut watches) {
                backend.grad_stats(&layer.weight.grad, layer.weight.len, &mut watch.grad_acc)?;
                if penalised {
                    backend.penalty_grad(
                        &layer.weight.value,
                        &mut layer.weight.grad,
                        layer.weight.len,
                        penalty_l1,
                        penalty_l2,
                    )?;
                }
            }
            step += 1;
            optimizer_step(backend, &config.optimizer, &mut model, step)?;
            on_event(Event::Batch {
                epoch,
                done: b + 1,
                total: batches,
            });
            if stop() {
                return Ok(None);
            }
        }
        let sums = backend.download(&acc)?;
        let train_seconds = started.elapsed().as_secs_f64();
        let train_loss = sums[0].to_f64() / usable.max(1) as f64;
        let train_acc = sums[1].to_f64() / usable.max(1) as f64;
        if !train_loss.is_finite() {
            return Ok(Some(Trained {
                model,
                epochs,
                outcome: Outcome::Diverged { epoch },
            }));
        }
        let mut eval = |split: &DeviceSplit<'_, B>,
                        model: &mut Mlp<B>|
         -> gradsweep_kernels::Result<(f64, f64)> {
            backend.fill(&mut acc, 2, B::F::ZERO)?;
            let mut start = 0;
            while start < split.len {
                let rows = config.eval_batch_size.min(split.len - start);
                batch.load(backend, split, &identity_order, start, rows)?;
                model.forward(backend, &batch.x, rows, Mode::Eval)?;
                backend.softmax_xent(model.logits(), &batch.y, rows, classes, None, &mut acc)?;
                start += rows;
            }
            let sums = backend.download(&acc)?;
            let n = split.len.max(1) as f64;
            Ok((sums[0].to_f64() / n, sums[1].to_f64() / n))
        };
        let (val_loss, val_acc) = eval(&val_split, &mut model)?;
        let (test_loss, test_acc) = eval(&test_split, &mut model)?;

        // Dead ReLU units on a fixed probe batch (the first validation samples).
        let probe = if n_val > 0 { &val_split } else { &train_split };
        batch.load(backend, probe, &identity_order, 0, probe_rows)?;
        model.forward(backend, &batch.x, probe_rows, Mode::Eval)?;

        let mut penalty = 0.0;
        let mut layers = Vec::with_capacity(model.layers.len());
        for (l, (layer, watch)) in model.layers.iter().zip(&mut watches).enumerate() {
            let len = layer.weight.len;
            let [sum, sum_sq, sum_abs, _] = backend.moments(&layer.weight.value, len)?;
            penalty += penalty_l1 * sum_abs + penalty_l2 * sum_sq;
            let mean = sum / len as f64;
            let std = (sum_sq / len as f64 - mean * mean).max(0.0).sqrt();
            let grads = backend.download(&watch.grad_acc)?;
            let start_norm = backend.moments(&watch.epoch_start, len)?[1].sqrt();
            let update = backend
                .sq_dist(&layer.weight.value, &watch.epoch_start, len)?
                .sqrt();
            let change = backend
                .sq_dist(&layer.weight.value, &watch.init, len)?
                .sqrt();
            backend.copy(&layer.weight.value, &mut watch.epoch_start, len)?;
            let dead_fraction = if layer.activation == Activation::Relu {
                let dead = backend.dead_columns(&layer.a, probe_rows, layer.outputs)?;
                Some(dead as f64 / layer.outputs as f64)
            } else {
                None
            };
            layers.push(LayerDiagnostics {
                layer: format!("linear{}", l + 1),
                weight_mean: mean,
                weight_std: std,
                grad_norm: grads[0].to_f64() / batches.max(1) as f64,
                grad_max_abs: grads[1].to_f64(),
                update_ratio: update / start_norm.max(f64::MIN_POSITIVE),
                change_since_start: change / watch.init_norm.max(f64::MIN_POSITIVE),
                dead_fraction,
            });
        }
        let report = EpochReport {
            epoch,
            train_loss,
            train_acc,
            val_loss,
            val_acc,
            test_loss,
            test_acc,
            penalty,
            seconds: started.elapsed().as_secs_f64(),
            train_seconds,
            layers,
        };
        on_event(Event::Epoch(&report));
        epochs.push(report);
    }
    Ok(Some(Trained {
        model,
        epochs,
        outcome: Outcome::Completed,
    }))
}

/// Optimiser-state buffers per parameter: SGD's velocity, Adam's two moments.
pub fn optimizer_buffers(optimizer: &Optimizer) -> usize {
    match optimizer {
        Optimizer::Sgd { .. } => 1,
        Optimizer::Adam { .. } => 2,
    }
}

fn optimizer_step<B: Backend>(
    backend: &B,
    optimizer: &Optimizer,
    model: &mut Mlp<B>,
    step: u64,
) -> gradsweep_kernels::Result<()> {
    for p in model.params_mut() {
        let [s0, s1] = &mut p.state;
        match *optimizer {
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
            } => backend.sgd_step(&mut p.value, &p.grad, s0, p.len, lr, momentum, weight_decay)?,
            Optimizer::Adam {
                lr,
                betas,
                eps,
                weight_decay,
            } => backend.adam_step(
                &mut p.value,
                &p.grad,
                s0,
                s1,
                p.len,
                lr,
                betas,
                eps,
                weight_decay,
                u32::try_from(step).unwrap_or(u32::MAX),
            )?,
        }
    }
    Ok(())
}
