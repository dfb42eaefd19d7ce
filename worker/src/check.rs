//! The gradient check of a trial: the trained network copied into f64 on the CPU, its
//! loss (mean cross-entropy + L1/L2 penalty) differentiated by central differences on a
//! fixed small batch, batch norm in training mode and dropout masks held fixed.

use crate::config::{GradCheckLayer, TrialConfig};
use crate::data::Dataset;
use crate::model::{Mlp, Mode};
use crate::report::{GradCheckReport, LayerGradCheck};
use crate::train::normalisation;
use gradsweep_kernels::gradcheck::{self, Tolerance};
use gradsweep_kernels::{Backend, CpuBackend, Float, Result};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

/// Samples in the fixed batch of a gradient check.
pub const GRADCHECK_ROWS: usize = 8;

/// The model in f64 on one CPU thread, with the parameters of `model` (any backend).
pub fn to_f64<B: Backend>(backend: &B, model: &Mlp<B>) -> Result<Mlp<CpuBackend<f64>>> {
    let cpu = CpuBackend::<f64>::new(1);
    let mut linear = Vec::with_capacity(model.layers.len());
    for layer in &model.layers {
        let w = backend.download(&layer.weight.value)?;
        let b = backend.download(&layer.bias.value)?;
        linear.push((
            w.iter().map(|v| v.to_f64()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_f64()).collect::<Vec<_>>(),
        ));
    }
    let mut out = Mlp::new(&cpu, model.arch.clone(), &linear, GRADCHECK_ROWS)?;
    for (dst, src) in out.layers.iter_mut().zip(&model.layers) {
        if let (Some(d), Some(s)) = (&mut dst.bn, &src.bn) {
            d.gamma.value = backend
                .download(&s.gamma.value)?
                .iter()
                .map(|v| v.to_f64())
                .collect();
            d.beta.value = backend
                .download(&s.beta.value)?
                .iter()
                .map(|v| v.to_f64())
                .collect();
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
}

impl CheckBatch {
    /// The first [`GRADCHECK_ROWS`] training samples of `data`, standardised.
    pub fn new(config: &TrialConfig, data: &Dataset) -> CheckBatch {
        let rows = GRADCHECK_ROWS.min(data.train.len());
        let features = data.shape.features();
        let plane = features / data.shape.channels;
        let (scale, shift) = normalisation(data);
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

    /// Forward and backward: every parameter's gradient of [`CheckBatch::loss`].
    pub fn gradients(&self, cpu: &CpuBackend<f64>, model: &mut Mlp<CpuBackend<f64>>) -> Result<()> {
        model.forward(cpu, &self.x, self.rows, Mode::Frozen)?;
        let mut acc = vec![0.0; 2];
        let (logits, dlogits) = model.logits_and_grad();
        cpu.softmax_xent(
            logits,
            &self.y,
            self.rows,
            self.classes,
            Some(dlogits),
            &mut acc,
        )?;
        model.backward(cpu, &self.x, self.rows)?;
        for layer in &mut model.layers {
            let len = layer.weight.len;
            cpu.penalty_grad(
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
    let (w_len, b_len) = {
        let layer = &model.layers[index];
        (layer.weight.len, layer.bias.len)
    };
    let total = w_len + b_len;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9));
    let mut picked = sample(&mut rng, total, samples.min(total)).into_vec();
    picked.sort_unstable();
    let entries: Vec<(usize, f64)> = picked
        .iter()
        .map(|&i| {
            let layer = &model.layers[index];
            let g = if i < w_len {
                layer.weight.grad[i]
            } else {
                layer.bias.grad[i - w_len]
            };
            (i, g)
        })
        .collect();
    let result = gradcheck::check(&entries, Tolerance::F64, |i, delta| {
        fn entry(
            model: &mut Mlp<CpuBackend<f64>>,
            index: usize,
            i: usize,
            w_len: usize,
        ) -> &mut f64 {
            let layer = &mut model.layers[index];
            if i < w_len {
                &mut layer.weight.value[i]
            } else {
                &mut layer.bias.value[i - w_len]
            }
        }
        let saved = *entry(model, index, i, w_len);
        *entry(model, index, i, w_len) = saved + delta;
        let loss = batch.loss(cpu, model);
        *entry(model, index, i, w_len) = saved;
        loss
    })?;
    let layer = &model.layers[index];
    Ok(LayerGradCheck {
        layer: format!("linear{}", index + 1),
        checked: result.checked,
        max_abs_error: result.max_abs_error,
        max_rel_error: result.max_rel_error,
        passed: result.passed,
        worst: result.worst.map(|e| {
            if e.index < w_len {
                (layer.weight.name.clone(), e)
            } else {
                let mut e = e;
                e.index -= w_len;
                (layer.bias.name.clone(), e)
            }
        }),
    })
}

/// The gradient check a trial's config asks for, on `model` (any backend); `None` when
/// the config says `layer = "none"`.
pub fn check_trial<B: Backend>(
    backend: &B,
    model: &Mlp<B>,
    config: &TrialConfig,
    data: &Dataset,
) -> Result<Option<GradCheckReport>> {
    let layers: Vec<usize> = match config.gradcheck.layer {
        GradCheckLayer::None => return Ok(None),
        GradCheckLayer::All => (0..model.layers.len()).collect(),
        GradCheckLayer::Linear(n) => vec![n - 1],
    };
    let cpu = CpuBackend::<f64>::new(1);
    let mut m64 = to_f64(backend, model)?;
    let batch = CheckBatch::new(config, data);
    m64.draw_masks(&cpu, batch.rows, config.seed, u64::MAX)?;
    batch.gradients(&cpu, &mut m64)?;
    let mut reports = Vec::with_capacity(layers.len());
    for index in layers {
        reports.push(check_layer(
            &cpu,
            &mut m64,
            &batch,
            index,
            config.gradcheck.samples,
            config.seed,
        )?);
    }
    Ok(Some(GradCheckReport {
        dtype: "f64".into(),
        batch: batch.rows,
        tolerance: Tolerance::F64,
        passed: reports.iter().all(|r| r.passed),
        layers: reports,
    }))
}
