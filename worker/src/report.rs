//! What a trial reports: per-epoch metrics and per-layer diagnostics, the verdicts drawn
//! from them, and the gradient check.

use gradsweep_kernels::gradcheck::{Directional, EntryCheck, Tolerance};
use serde::Serialize;

/// The diagnostics of one Linear layer over one epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerDiagnostics {
    /// `linear1`, …
    pub layer: String,
    /// Mean of the weights at the end of the epoch.
    pub weight_mean: f64,
    /// Standard deviation (population) of the weights at the end of the epoch.
    pub weight_std: f64,
    /// L2 norm of the weight gradient (of the data loss), averaged over the epoch's steps.
    pub grad_norm: f64,
    /// Largest |gradient| entry seen during the epoch.
    pub grad_max_abs: f64,
    /// ‖W_end − W_start‖ / ‖W_start‖ over this epoch.
    pub update_ratio: f64,
    /// ‖W_end − W_init‖ / ‖W_init‖: the change since the start of epoch 1.
    pub change_since_start: f64,
    /// Fraction of the layer's ReLU units that output 0 for every sample of the probe
    /// batch (ReLU layers only).
    pub dead_fraction: Option<f64>,
}

/// The numbers of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Mean per-sample cross-entropy over the epoch's training batches (data loss only).
    pub train_loss: f64,
    /// Accuracy over the epoch's training batches (training mode).
    pub train_acc: f64,
    /// Validation loss, evaluation mode.
    pub val_loss: f64,
    /// Validation accuracy, evaluation mode.
    pub val_acc: f64,
    /// Test loss, evaluation mode.
    pub test_loss: f64,
    /// Test accuracy, evaluation mode.
    pub test_acc: f64,
    /// The L1/L2 penalty at the end of the epoch (kept apart from the data loss).
    pub penalty: f64,
    /// Wall-clock seconds spent on the epoch (training, evaluation and diagnostics).
    pub seconds: f64,
    /// Of which seconds spent on the training batches alone.
    pub train_seconds: f64,
    /// One entry per Linear layer, input to output.
    pub layers: Vec<LayerDiagnostics>,
}

/// Relative train-loss movement under which the loss counts as stagnant.
pub const STAGNANT_REL_CHANGE: f64 = 0.01;
/// Epochs over which stagnation is measured.
pub const STAGNANT_WINDOW: usize = 3;
/// Train accuracy within this much of chance counts as "near chance".
pub const NEAR_CHANCE_MARGIN: f64 = 0.05;
/// First-to-last-layer gradient-norm ratio under which gradients count as vanishing.
pub const VANISHING_GRAD_RATIO: f64 = 1e-3;
/// Relative change of the first layer's weights under which they count as frozen.
pub const FROZEN_WEIGHT_CHANGE: f64 = 1e-3;
/// Fraction of a ReLU layer's units dead on the probe batch at or above which the
/// layer counts as dead.
pub const DEAD_RELU_FRACTION: f64 = 0.5;
/// A layer's epoch-mean weight-gradient norm at or above which gradients count as
/// exploding.
pub const EXPLODING_GRAD_NORM: f64 = 100.0;
/// Train loss at or above this multiple of chance's loss (ln classes) counts as
/// diverged, as does a loss that is not finite.
pub const DIVERGED_LOSS_RATIO: f64 = 1.5;

/// A yes/no finding: its criterion, and the measured value behind it. A flagged
/// verdict's reason cites only what crossed its threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Whether the finding holds.
    pub flagged: bool,
    /// The criterion with its threshold, in words.
    pub criterion: String,
    /// What was measured: when flagged, the value(s) that crossed the threshold; else
    /// the values that did not.
    pub reason: String,
}

impl Verdict {
    fn new(flagged: bool, criterion: String, reason: String) -> Verdict {
        Verdict {
            flagged,
            criterion,
            reason,
        }
    }
}

/// The verdicts of a trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdicts {
    /// Train loss moved less than 1% over the last 3 epochs while accuracy is near chance.
    pub stagnant_loss: Verdict,
    /// First-to-last gradient ratio below 1e-3, or first-layer weights changed < 1e-3
    /// (not when dead ReLU units explain the missing gradient).
    pub vanishing_gradients: Verdict,
    /// A ReLU layer with at least half its units dead on the probe batch.
    pub dead_relu: Verdict,
    /// A layer's weight-gradient norm at or above 100.
    pub exploding_gradients: Verdict,
    /// The loss became NaN or infinite, or rose to 1.5 × chance's loss.
    pub divergence: Verdict,
}

impl Verdicts {
    /// Draws the verdicts from the epochs run (`classes` sets chance accuracy and loss;
    /// `diverged_in` is the epoch whose loss was not finite, if any).
    pub fn from_epochs(
        epochs: &[EpochReport],
        classes: usize,
        diverged_in: Option<u32>,
    ) -> Verdicts {
        let dead_relu = dead_relu(epochs);
        let all_dead = epochs.last().is_some_and(|last| {
            last.layers
                .iter()
                .any(|l| l.dead_fraction.is_some_and(|f| f >= 1.0))
        });
        Verdicts {
            stagnant_loss: stagnant_loss(epochs, classes),
            vanishing_gradients: vanishing_gradients(epochs, all_dead),
            dead_relu,
            exploding_gradients: exploding_gradients(epochs),
            divergence: divergence(epochs, classes, diverged_in),
        }
    }

    /// Every verdict with its wire name, in a fixed order.
    pub fn all(&self) -> [(&'static str, &Verdict); 5] {
        [
            ("stagnant_loss", &self.stagnant_loss),
            ("vanishing_gradients", &self.vanishing_gradients),
            ("dead_relu", &self.dead_relu),
            ("exploding_gradients", &self.exploding_gradients),
            ("divergence", &self.divergence),
        ]
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn stagnant_loss(epochs: &[EpochReport], classes: usize) -> Verdict {
    let chance = 1.0 / classes as f64;
    let criterion = format!(
        "train loss moved less than {}% over the last {STAGNANT_WINDOW} epochs while train \
         accuracy is below chance + {}% ({:.1}%)",
        STAGNANT_REL_CHANGE * 100.0,
        NEAR_CHANCE_MARGIN * 100.0,
        (chance + NEAR_CHANCE_MARGIN) * 100.0
    );
    if epochs.len() <= STAGNANT_WINDOW {
        return Verdict::new(
            false,
            criterion,
            format!(
                "needs more than {STAGNANT_WINDOW} epochs to judge, ran {}",
                epochs.len()
            ),
        );
    }
    let last = &epochs[epochs.len() - 1];
    let before = &epochs[epochs.len() - 1 - STAGNANT_WINDOW];
    let change = (last.train_loss - before.train_loss).abs() / before.train_loss.abs().max(1e-12);
    let near_chance = last.train_acc < chance + NEAR_CHANCE_MARGIN;
    let still = change < STAGNANT_REL_CHANGE;
    let moved = format!(
        "train loss moved {} over epochs {}–{} ({:.4} → {:.4})",
        pct(change),
        before.epoch,
        last.epoch,
        before.train_loss,
        last.train_loss
    );
    let acc = format!("train accuracy {:.1}%", last.train_acc * 100.0);
    let reason = if still && near_chance {
        format!(
            "{moved} < {}%, {acc} < {:.1}%",
            STAGNANT_REL_CHANGE * 100.0,
            (chance + NEAR_CHANCE_MARGIN) * 100.0
        )
    } else if still {
        format!(
            "{acc} is not near chance (≥ {:.1}%)",
            (chance + NEAR_CHANCE_MARGIN) * 100.0
        )
    } else {
        format!("{moved} (≥ {}%)", STAGNANT_REL_CHANGE * 100.0)
    };
    Verdict::new(
        still && near_chance && change.is_finite(),
        criterion,
        reason,
    )
}

fn vanishing_gradients(epochs: &[EpochReport], all_dead: bool) -> Verdict {
    let criterion = format!(
        "first-to-last layer gradient-norm ratio below {VANISHING_GRAD_RATIO:.0e}, or the \
         first layer's weights changed less than {FROZEN_WEIGHT_CHANGE:.0e} since epoch 1 \
         (not when dead ReLU units explain it)"
    );
    let Some(last) = epochs.last() else {
        return Verdict::new(false, criterion, "no epoch ran".into());
    };
    let (Some(first), Some(out)) = (last.layers.first(), last.layers.last()) else {
        return Verdict::new(false, criterion, "no layer".into());
    };
    if last.layers.len() < 2 {
        return Verdict::new(
            false,
            criterion,
            "one layer: nothing to vanish through".into(),
        );
    }
    let ratio = first.grad_norm / out.grad_norm.max(f64::MIN_POSITIVE);
    let change = first.change_since_start;
    let small_ratio = ratio < VANISHING_GRAD_RATIO;
    let frozen = change < FROZEN_WEIGHT_CHANGE;
    let ratio_text = format!(
        "{}/{} gradient-norm ratio {ratio:.2e}",
        first.layer, out.layer
    );
    let change_text = format!("{} weights changed {change:.2e} since epoch 1", first.layer);
    if all_dead {
        return Verdict::new(
            false,
            criterion,
            "the gradient stopped at dead ReLU units (see dead_relu), not by vanishing".into(),
        );
    }
    let reason = match (small_ratio, frozen) {
        (true, true) => format!(
            "{ratio_text} < {VANISHING_GRAD_RATIO:.0e}; {change_text} < {FROZEN_WEIGHT_CHANGE:.0e}"
        ),
        (true, false) => format!("{ratio_text} < {VANISHING_GRAD_RATIO:.0e}"),
        (false, true) => format!("{change_text} < {FROZEN_WEIGHT_CHANGE:.0e}"),
        (false, false) => format!(
            "{ratio_text} (≥ {VANISHING_GRAD_RATIO:.0e}); {change_text} (≥ {FROZEN_WEIGHT_CHANGE:.0e})"
        ),
    };
    Verdict::new(small_ratio || frozen, criterion, reason)
}

fn dead_relu(epochs: &[EpochReport]) -> Verdict {
    let criterion = format!(
        "a ReLU layer with at least {}% of its units outputting 0 for every sample of the \
         probe batch (last epoch)",
        DEAD_RELU_FRACTION * 100.0
    );
    let Some(last) = epochs.last() else {
        return Verdict::new(false, criterion, "no epoch ran".into());
    };
    let worst = last
        .layers
        .iter()
        .filter_map(|l| l.dead_fraction.map(|f| (l.layer.as_str(), f)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let Some((layer, fraction)) = worst else {
        return Verdict::new(false, criterion, "no ReLU layer".into());
    };
    let flagged = fraction >= DEAD_RELU_FRACTION;
    let dead: Vec<String> = last
        .layers
        .iter()
        .filter_map(|l| {
            l.dead_fraction
                .filter(|&f| f >= DEAD_RELU_FRACTION)
                .map(|f| format!("{} {}", l.layer, pct(f)))
        })
        .collect();
    let reason = if flagged {
        format!(
            "dead units: {} (≥ {}%)",
            dead.join(", "),
            DEAD_RELU_FRACTION * 100.0
        )
    } else {
        format!(
            "most dead: {layer} {} (< {}%)",
            pct(fraction),
            DEAD_RELU_FRACTION * 100.0
        )
    };
    Verdict::new(flagged, criterion, reason)
}

fn exploding_gradients(epochs: &[EpochReport]) -> Verdict {
    let criterion = format!(
        "a layer's weight-gradient norm (mean over an epoch's steps) at or above \
         {EXPLODING_GRAD_NORM:.0e}, or not finite"
    );
    let worst = epochs
        .iter()
        .flat_map(|e| e.layers.iter().map(move |l| (e.epoch, l)))
        .max_by(|a, b| {
            let key = |x: f64| if x.is_nan() { f64::INFINITY } else { x };
            key(a.1.grad_norm).total_cmp(&key(b.1.grad_norm))
        });
    let Some((epoch, layer)) = worst else {
        return Verdict::new(false, criterion, "no layer diagnostics".into());
    };
    let norm = layer.grad_norm;
    let flagged = !(norm < EXPLODING_GRAD_NORM);
    let reason = format!(
        "largest: {} gradient norm {norm:.2e} in epoch {epoch} ({} {EXPLODING_GRAD_NORM:.0e})",
        layer.layer,
        if flagged { "≥" } else { "<" }
    );
    Verdict::new(flagged, criterion, reason)
}

fn divergence(epochs: &[EpochReport], classes: usize, diverged_in: Option<u32>) -> Verdict {
    let chance_loss = (classes as f64).ln();
    let limit = DIVERGED_LOSS_RATIO * chance_loss;
    let criterion = format!(
        "train loss NaN or infinite, or at or above {DIVERGED_LOSS_RATIO} × chance's loss \
         (ln {classes} = {chance_loss:.3}: {limit:.3})"
    );
    if let Some(epoch) = diverged_in {
        return Verdict::new(
            true,
            criterion,
            format!("train loss not finite in epoch {epoch}"),
        );
    }
    let Some(worst) = epochs
        .iter()
        .max_by(|a, b| a.train_loss.total_cmp(&b.train_loss))
    else {
        return Verdict::new(false, criterion, "no epoch ran".into());
    };
    let flagged = worst.train_loss >= limit;
    let reason = format!(
        "highest train loss {:.4} in epoch {} ({} {limit:.3})",
        worst.train_loss,
        worst.epoch,
        if flagged { "≥" } else { "<" }
    );
    Verdict::new(flagged, criterion, reason)
}

/// One parameter tensor's directional check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorCheck {
    /// `linear1.weight`, `bn1.weight` (γ), …
    pub param: String,
    /// Its entries (all of them move along each direction).
    pub entries: usize,
    /// RMS of its analytic gradient: the scale the error is measured against.
    pub grad_rms: f64,
    /// Random unit directions checked.
    pub directions: usize,
    /// ‖a − n‖ / max(‖a‖, ‖n‖) over the directions.
    pub rel_error: f64,
    /// Whether `rel_error` is within the directional tolerance.
    pub passed: bool,
}

/// The gradient check of one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerGradCheck {
    /// `linear1`, …
    pub layer: String,
    /// Entries checked (weights and bias).
    pub checked: usize,
    /// Largest |analytic − numeric|.
    pub max_abs_error: f64,
    /// Largest relative error.
    pub max_rel_error: f64,
    /// Whether the layer passed: every sampled entry within the elementwise tolerance
    /// and every tensor's directional check.
    pub passed: bool,
    /// Whether every sampled entry was within the elementwise (PyTorch) tolerance.
    pub elementwise_passed: bool,
    /// The directional check of each tensor (weight, bias, batch norm γ and β); empty
    /// for a device's elementwise-only check.
    pub tensors: Vec<TensorCheck>,
    /// The worst entry outside tolerance, by parameter name and index.
    pub worst: Option<(String, EntryCheck)>,
}

/// The gradient check of a trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GradCheckReport {
    /// Which weights: `epoch 0 (initial weights)` or `trained`.
    pub stage: String,
    /// Element type of the check (`f64`).
    pub dtype: String,
    /// Samples in the fixed batch.
    pub batch: usize,
    /// Elementwise tolerances used (PyTorch `gradcheck`'s).
    pub tolerance: Tolerance,
    /// The directional check's tolerances.
    pub directional: Directional,
    /// The criterion in words, with the reference its tolerances come from.
    pub criterion: String,
    /// One entry per checked layer.
    pub layers: Vec<LayerGradCheck>,
    /// True when every layer passed.
    pub passed: bool,
    /// The gradient the trial's own device computes (f32), against the same f64
    /// numeric derivatives, with f32 tolerances; `None` when it could not be run.
    pub device: Option<DeviceGradCheck>,
}

impl GradCheckReport {
    /// One line per failure: each tensor whose directional check failed
    /// (`linear1.weight: directional relative error 5.0e-1 > 1e-4`), and each layer
    /// whose elementwise check failed with its worst entry.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for layer in &self.layers {
            for t in layer.tensors.iter().filter(|t| !t.passed) {
                out.push(format!(
                    "{}: directional relative error {:.2e} > {:.0e} (gradient RMS {:.2e})",
                    t.param, t.rel_error, self.directional.rtol, t.grad_rms
                ));
            }
            if !layer.elementwise_passed {
                let worst = match &layer.worst {
                    Some((param, e)) => format!(
                        "{param}[{}]: analytic {:.6e}, numeric {:.6e}",
                        e.index, e.analytic, e.numeric
                    ),
                    None => layer.layer.clone(),
                };
                out.push(format!(
                    "{worst}: outside |a − n| ≤ {:.0e} + {:.0e}·|n|",
                    self.tolerance.atol, self.tolerance.rtol
                ));
            }
        }
        out
    }
}

/// The trial device's own f32 gradient, checked against the f64 numeric one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceGradCheck {
    /// The device (`cpu f32 (2 threads)`, `cuda:0 …`).
    pub device: String,
    /// Tolerances used (f32's).
    pub tolerance: Tolerance,
    /// One entry per checked layer, the same entries as the f64 check.
    pub layers: Vec<LayerGradCheck>,
    /// True when every layer passed.
    pub passed: bool,
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Every epoch ran.
    Completed,
    /// The train loss became NaN or infinite in `epoch`; training stopped there.
    Diverged {
        /// The epoch (1-based) whose loss was not finite.
        epoch: u32,
    },
}
