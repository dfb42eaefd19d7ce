//! The gradient check of a trial: the network (at its initial weights, and trained)
//! copied into f64 on the CPU, its loss (mean cross-entropy + L1/L2 penalty)
//! differentiated numerically on a fixed small batch, batch norm in training mode and
//! dropout masks held fixed.
//!
//! Two criteria, both must hold: the **directional check** (the criterion that decides;
//! [`Directional`]): every parameter tensor of a checked layer — its weight, bias and
//! batch norm's γ and β — along random unit directions, relative error against the
//! tensor's own gradient scale, so that a small gradient is no easier to get wrong; and
//! PyTorch `gradcheck`'s **elementwise** test on sampled weight and bias entries
//! (|a − n| ≤ 1e-5 + 1e-3·|n|), whose absolute tolerance alone would pass any gradient
//! smaller than 1e-5. The trial device's own f32 gradient on the same batch and masks
//! is checked elementwise beside it with f32 tolerances.

use crate::config::{GradCheckLayer, TrialConfig};
use crate::data::Dataset;
use crate::model::{Mlp, Mode, pytorch_index, transposed};
use crate::report::{DeviceGradCheck, GradCheckReport, LayerGradCheck, TensorCheck};
use crate::train::normalisation;
use gradsweep_kernels::gradcheck::{self, Directional, EntryCheck, Tolerance};
use gradsweep_kernels::{Backend, CpuBackend, Float, Result};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

/// Samples in the fixed batch of a gradient check.
pub const GRADCHECK_ROWS: usize = 8;

/// The dropout step whose masks the check holds fixed (never a training step).
const CHECK_STEP: u64 = u64::MAX;

fn download_f64<B: Backend>(backend: &B, buf: &B::Buf) -> Result<Vec<f64>> {
    Ok(backend.download(buf)?.iter().map(|v| v.to_f64()).collect())
}

/// The model in f64 on one CPU thread, with the parameters of `model` (any backend).
pub fn to_f64<B: Backend>(backend: &B, model: &Mlp<B>) -> Result<Mlp<CpuBackend<f64>>> {
    let cpu = CpuBackend::<f64>::new(1);
    let mut linear = Vec::with_capacity(model.layers.len());
    for layer in &model.layers {
        let wt = download_f64(backend, &layer.weight.value)?;
        linear.push((
            transposed(&wt[..layer.weight.len], layer.inputs, layer.outputs),
            download_f64(backend, &layer.bias.value)?,
        ));
    }
    let mut out = Mlp::new(&cpu, model.arch.clone(), &linear, GRADCHECK_ROWS)?;
    for (dst, src) in out.layers.iter_mut().zip(&model.layers) {
        if let (Some(d), Some(s)) = (&mut dst.bn, &src.bn) {
            d.gamma.value = download_f64(backend, &s.gamma.value)?;
            d.beta.value = download_f64(backend, &s.beta.value)?;
        }
    }
    Ok(out)
}

/// A fixed batch and the loss of a model on it.
pub struct CheckBatch {
    x: Vec<f64>,
    y: Vec<u32>,
    rows: usize,
    classes: usize,
    l1: f64,
    l2: f64,
    seed: u64,
}

impl CheckBatch {
    /// The first [`GRADCHECK_ROWS`] training samples of `data`, as training feeds them
    /// (standardised or not, per `input_norm`).
    pub fn new(config: &TrialConfig, data: &Dataset) -> CheckBatch {
        let rows = GRADCHECK_ROWS.min(data.train.len());
        let features = data.shape.features();
        let plane = features / data.shape.channels;
        let (scale, shift) = normalisation(config, data);
        let mut x = Vec::with_capacity(rows * features);
        for image in data.train.images.chunks_exact(features).take(rows) {
            for (f, &p) in image.iter().enumerate() {
                x.push(p as f64 * scale[f / plane] + shift[f / plane]);
            }
        }
        CheckBatch {
            x,
            y: data.train.labels[..rows]
                .iter()
                .map(|&l| l as u32)
                .collect(),
            rows,
            classes: data.classes,
            l1: config.regularization.l1.unwrap_or(0.0),
            l2: config.regularization.l2.unwrap_or(0.0),
            seed: config.seed,
        }
    }

    /// The loss: mean cross-entropy in a `Frozen` forward plus the L1/L2 penalty.
    pub fn loss(&self, cpu: &CpuBackend<f64>, model: &mut Mlp<CpuBackend<f64>>) -> Result<f64> {
        model.forward(cpu, &self.x, self.rows, Mode::Frozen)?;
        let mut acc = vec![0.0; 2];
        cpu.softmax_xent(
            model.logits(),
            &self.y,
            self.rows,
            self.classes,
            None,
            &mut acc,
        )?;
        Ok(acc[0] / self.rows as f64 + self.penalty(model))
    }

    fn penalty(&self, model: &Mlp<CpuBackend<f64>>) -> f64 {
        model
            .layers
            .iter()
            .map(|l| {
                l.weight
                    .value
                    .iter()
                    .map(|w| self.l1 * w.abs() + self.l2 * w * w)
                    .sum::<f64>()
            })
            .sum()
    }

    /// Draws the check's fixed dropout masks into `model` and runs forward and
    /// backward on `backend`: every parameter's gradient of [`CheckBatch::loss`].
    pub fn gradients<B: Backend>(&self, backend: &B, model: &mut Mlp<B>) -> Result<()> {
        self.gradients_with(backend, model, |_| ())
    }

    /// [`CheckBatch::gradients`], calling `between` on the model after the forward pass
    /// and before the backward one (tests use it to break the backward pass).
    pub fn gradients_with<B: Backend>(
        &self,
        backend: &B,
        model: &mut Mlp<B>,
        between: impl FnOnce(&mut Mlp<B>),
    ) -> Result<()> {
        let x: Vec<B::F> = self.x.iter().map(|&v| B::F::from_f64(v)).collect();
        let x = backend.upload(&x)?;
        let mut y = backend.zeros_idx(self.rows)?;
        backend.write_idx(&mut y, &self.y)?;
        model.draw_masks(backend, self.rows, self.seed, CHECK_STEP)?;
        model.forward(backend, &x, self.rows, Mode::Frozen)?;
        let mut acc = backend.zeros(2)?;
        let (logits, dlogits) = model.logits_and_grad();
        backend.softmax_xent(logits, &y, self.rows, self.classes, Some(dlogits), &mut acc)?;
        between(model);
        model.backward(backend, &x, self.rows)?;
        for layer in &mut model.layers {
            let len = layer.weight.len;
            backend.penalty_grad(
                &layer.weight.value,
                &mut layer.weight.grad,
                len,
                self.l1,
                self.l2,
            )?;
        }
        Ok(())
    }
}

/// The entries of Linear layer `index` to check: `samples` of its weight and bias
/// entries together (weights first), drawn with `seed`.
fn pick(total: usize, samples: usize, seed: u64, index: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9));
    let mut picked = sample(&mut rng, total, samples.min(total)).into_vec();
    picked.sort_unstable();
    picked
}

/// Central differences of the f64 loss at the `picked` entries of layer `index`.
fn numeric(
    cpu: &CpuBackend<f64>,
    model: &mut Mlp<CpuBackend<f64>>,
    batch: &CheckBatch,
    index: usize,
    picked: &[usize],
) -> Result<Vec<f64>> {
    fn entry(model: &mut Mlp<CpuBackend<f64>>, index: usize, i: usize) -> &mut f64 {
        let layer = &mut model.layers[index];
        let w_len = layer.weight.len;
        if i < w_len {
            &mut layer.weight.value[i]
        } else {
            &mut layer.bias.value[i - w_len]
        }
    }
    gradcheck::numeric(picked, Tolerance::F64.eps, |i, delta| {
        let saved = *entry(model, index, i);
        *entry(model, index, i) = saved + delta;
        let loss = batch.loss(cpu, model);
        *entry(model, index, i) = saved;
        loss
    })
}

/// Judges one layer's analytic gradient (`weight ‖ bias`) at `picked` against `numeric`;
/// a failing weight entry is reported by its PyTorch index (`W` is `outputs × inputs`).
fn judge(
    name: String,
    (weight_name, bias_name): (&str, &str),
    (inputs, outputs): (usize, usize),
    analytic: &[f64],
    picked: &[usize],
    numeric: &[f64],
    tolerance: Tolerance,
) -> LayerGradCheck {
    let entries: Vec<EntryCheck> = picked
        .iter()
        .zip(numeric)
        .map(|(&index, &numeric)| EntryCheck {
            index,
            analytic: analytic[index],
            numeric,
        })
        .collect();
    let result = gradcheck::compare(&entries, tolerance);
    LayerGradCheck {
        layer: name,
        checked: result.checked,
        max_abs_error: result.max_abs_error,
        max_rel_error: result.max_rel_error,
        passed: result.passed,
        elementwise_passed: result.passed,
        tensors: Vec::new(),
        worst: result.worst.map(|e| {
            let w_len = inputs * outputs;
            if e.index < w_len {
                let mut e = e;
                e.index = pytorch_index(e.index, inputs, outputs);
                (weight_name.to_string(), e)
            } else {
                let mut e = e;
                e.index -= w_len;
                (bias_name.to_string(), e)
            }
        }),
    }
}

fn layer_gradient<B: Backend>(backend: &B, model: &Mlp<B>, index: usize) -> Result<Vec<f64>> {
    let layer = &model.layers[index];
    let mut g = download_f64(backend, &layer.weight.grad)?;
    g.truncate(layer.weight.len);
    g.extend(download_f64(backend, &layer.bias.grad)?);
    Ok(g)
}

/// Checks `samples` entries (weights and bias together, drawn with `seed`) of Linear
/// layer `index` (0-based) of `model`, whose gradients [`CheckBatch::gradients`] filled.
pub fn check_layer(
    cpu: &CpuBackend<f64>,
    model: &mut Mlp<CpuBackend<f64>>,
    batch: &CheckBatch,
    index: usize,
    samples: usize,
    seed: u64,
) -> Result<LayerGradCheck> {
    let analytic = layer_gradient(cpu, model, index)?;
    let picked = pick(analytic.len(), samples, seed, index);
    let numeric = numeric(cpu, model, batch, index, &picked)?;
    let layer = &model.layers[index];
    Ok(judge(
        format!("linear{}", index + 1),
        (&layer.weight.name, &layer.bias.name),
        (layer.inputs, layer.outputs),
        &analytic,
        &picked,
        &numeric,
        Tolerance::F64,
    ))
}

/// The layers a config's `gradcheck.layer` names (0-based); `None` for `"none"`.
fn checked_layers(config: &TrialConfig, layers: usize) -> Option<Vec<usize>> {
    match config.gradcheck.layer {
        GradCheckLayer::None => None,
        GradCheckLayer::All => Some((0..layers).collect()),
        GradCheckLayer::Linear(n) => Some(vec![n - 1]),
    }
}

/// The parameter tensors of Linear layer `index`, as the directional check moves them:
/// weight, bias, then batch norm's γ and β when there is batch norm.
fn tensor(
    model: &mut Mlp<CpuBackend<f64>>,
    index: usize,
    which: usize,
) -> &mut crate::model::Param<CpuBackend<f64>> {
    let layer = &mut model.layers[index];
    match (which, &mut layer.bn) {
        (0, _) => &mut layer.weight,
        (1, _) => &mut layer.bias,
        (2, Some(bn)) => &mut bn.gamma,
        (_, Some(bn)) => &mut bn.beta,
        (_, None) => unreachable!("only layers with batch norm have tensors 2 and 3"),
    }
}

/// The directional check ([`Directional::F64`]) of every tensor of layer `index`, whose
/// gradients [`CheckBatch::gradients`] filled; directions drawn from `seed`.
pub fn check_directions(
    cpu: &CpuBackend<f64>,
    model: &mut Mlp<CpuBackend<f64>>,
    batch: &CheckBatch,
    index: usize,
    seed: u64,
) -> Result<Vec<TensorCheck>> {
    let count = if model.layers[index].bn.is_some() {
        4
    } else {
        2
    };
    let tolerance = Directional::F64;
    let mut out = Vec::with_capacity(count);
    for which in 0..count {
        // The gradient is taken out of the model while the loss is evaluated (no copy);
        // `saved` restores the values exactly after each step.
        let p = tensor(model, index, which);
        let name = p.name.clone();
        let len = p.len;
        let grad = std::mem::take(&mut p.grad);
        let saved = p.value[..len].to_vec();
        let key = seed ^ ((index as u64) << 8 | which as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
        let result = gradcheck::directional(&grad[..len], key, tolerance, |v, t| {
            let p = tensor(model, index, which);
            for ((x, s), &v) in p.value.iter_mut().zip(&saved).zip(v) {
                *x = s + t * f64::from(v);
            }
            let loss = batch.loss(cpu, model);
            tensor(model, index, which).value[..len].copy_from_slice(&saved);
            loss
        });
        let grad_rms = (grad[..len].iter().map(|g| g * g).sum::<f64>() / len.max(1) as f64).sqrt();
        tensor(model, index, which).grad = grad;
        let result = result?;
        out.push(TensorCheck {
            param: name,
            entries: len,
            grad_rms,
            directions: tolerance.directions,
            rel_error: result.rel_error,
            passed: result.passed,
        });
    }
    Ok(out)
}

/// Checks the f64 `model`, whose gradients [`CheckBatch::gradients`] filled (or a test
/// changed), at `layers` (0-based): the elementwise PyTorch test on `samples` entries and
/// the directional check of every tensor. `stage` says which weights these are.
pub fn check_model(
    cpu: &CpuBackend<f64>,
    model: &mut Mlp<CpuBackend<f64>>,
    batch: &CheckBatch,
    layers: &[usize],
    samples: usize,
    seed: u64,
    stage: &str,
) -> Result<GradCheckReport> {
    let mut out = Vec::with_capacity(layers.len());
    for &index in layers {
        let mut layer = check_layer(cpu, model, batch, index, samples, seed)?;
        layer.tensors = check_directions(cpu, model, batch, index, seed)?;
        layer.passed = layer.elementwise_passed && layer.tensors.iter().all(|t| t.passed);
        out.push(layer);
    }
    Ok(GradCheckReport {
        stage: stage.to_owned(),
        dtype: "f64".into(),
        batch: batch.rows,
        tolerance: Tolerance::F64,
        directional: Directional::F64,
        criterion: CRITERION.to_owned(),
        passed: out.iter().all(|r| r.passed),
        layers: out,
        device: None,
    })
}

/// The criterion as reports state it.
pub const CRITERION: &str = "directional: per tensor (weight, bias, batch norm γ/β), 4 random \
    unit directions v, g·v against a 5-point central difference of the f64 loss along v \
    (step: a loss change of 1e-9, 1e-8 to 1e-2 per entry), relative error ‖a − n‖/max(‖a‖, ‖n‖) ≤ 1e-4 (CS231n, \
    \"Gradient checks\": above 1e-4 is uncomfortable without kinks); and elementwise as \
    torch.autograd.gradcheck: |a − n| ≤ 1e-5 + 1e-3·|n|, eps 1e-6";

/// The check of the untrained model (epoch 0): the initial weights of `config`, built in
/// f64 on the CPU; `None` when the config turns the check off.
pub fn check_initial(config: &TrialConfig, data: &Dataset) -> Result<Option<GradCheckReport>> {
    let arch = crate::train::architecture(config, data);
    let Some(layers) = checked_layers(config, arch.linear_shapes().len()) else {
        return Ok(None);
    };
    let cpu = CpuBackend::<f64>::new(1);
    let params = crate::train::initial_params(config, &arch);
    let mut m64 = Mlp::new(&cpu, arch, &params, GRADCHECK_ROWS)?;
    let batch = CheckBatch::new(config, data);
    batch.gradients(&cpu, &mut m64)?;
    let report = check_model(
        &cpu,
        &mut m64,
        &batch,
        &layers,
        config.gradcheck.samples,
        config.seed,
        "epoch 0 (initial weights)",
    )?;
    Ok(Some(report))
}

/// The gradient check a trial's config asks for, on `model` (trained on `backend`);
/// `None` when the config says `layer = "none"`. The model's activation buffers are
/// overwritten; its parameters and running statistics are not.
pub fn check_trial<B: Backend>(
    backend: &B,
    model: &mut Mlp<B>,
    config: &TrialConfig,
    data: &Dataset,
) -> Result<Option<GradCheckReport>> {
    let Some(layers) = checked_layers(config, model.layers.len()) else {
        return Ok(None);
    };
    let cpu = CpuBackend::<f64>::new(1);
    let mut m64 = to_f64(backend, model)?;
    let batch = CheckBatch::new(config, data);
    batch.gradients(&cpu, &mut m64)?;
    let mut report = check_model(
        &cpu,
        &mut m64,
        &batch,
        &layers,
        config.gradcheck.samples,
        config.seed,
        "trained",
    )?;
    if model.max_rows() >= batch.rows {
        batch.gradients(backend, model)?;
        let mut device_layers = Vec::with_capacity(layers.len());
        for &index in &layers {
            let analytic = layer_gradient(&cpu, &m64, index)?;
            let picked = pick(analytic.len(), config.gradcheck.samples, config.seed, index);
            let numeric = numeric(&cpu, &mut m64, &batch, index, &picked)?;
            let layer = &m64.layers[index];
            let names = (layer.weight.name.as_str(), layer.bias.name.as_str());
            let shape = (layer.inputs, layer.outputs);
            let device_grad = layer_gradient(backend, model, index)?;
            device_layers.push(judge(
                format!("linear{}", index + 1),
                names,
                shape,
                &device_grad,
                &picked,
                &numeric,
                Tolerance::F32,
            ));
        }
        report.device = Some(DeviceGradCheck {
            device: backend.name(),
            tolerance: Tolerance::F32,
            passed: device_layers.iter().all(|r| r.passed),
            layers: device_layers,
        });
    }
    Ok(Some(report))
}
