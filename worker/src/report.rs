//! What a trial reports: per-epoch metrics and per-layer diagnostics, the verdicts drawn
//! from them, and the gradient check.

use gradsweep_kernels::gradcheck::{EntryCheck, Tolerance};
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

/// A yes/no finding with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Whether the finding holds.
    pub flagged: bool,
    /// Why, in words with the numbers and thresholds.
    pub reason: String,
}

/// The verdicts of a trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdicts {
    /// Train loss moved less than 1% over the last 3 epochs while accuracy is near chance.
    pub stagnant_loss: Verdict,
    /// First-to-last gradient ratio below 1e-3, or first-layer weights changed < 1e-3.
    pub vanishing_gradients: Verdict,
}

impl Verdicts {
    /// Draws the verdicts from the epochs run (`classes` sets chance accuracy).
    pub fn from_epochs(epochs: &[EpochReport], classes: usize) -> Verdicts {
        Verdicts {
            stagnant_loss: stagnant_loss(epochs, classes),
            vanishing_gradients: vanishing_gradients(epochs),
        }
    }
}

fn stagnant_loss(epochs: &[EpochReport], classes: usize) -> Verdict {
    let chance = 1.0 / classes as f64;
    if epochs.len() <= STAGNANT_WINDOW {
        return Verdict {
            flagged: false,
            reason: format!(
                "needs more than {STAGNANT_WINDOW} epochs to judge, ran {}",
                epochs.len()
            ),
        };
    }
    let last = &epochs[epochs.len() - 1];
    let before = &epochs[epochs.len() - 1 - STAGNANT_WINDOW];
    let change = (last.train_loss - before.train_loss).abs() / before.train_loss.abs().max(1e-12);
    let near_chance = last.train_acc < chance + NEAR_CHANCE_MARGIN;
    let flagged = change < STAGNANT_REL_CHANGE && near_chance;
    Verdict {
        flagged,
        reason: format!(
            "train loss moved {:.2}% over the last {STAGNANT_WINDOW} epochs (threshold {}%), \
             train accuracy {:.1}% (chance {:.1}%, near chance below {:.1}%)",
            change * 100.0,
            STAGNANT_REL_CHANGE * 100.0,
            last.train_acc * 100.0,
            chance * 100.0,
            (chance + NEAR_CHANCE_MARGIN) * 100.0
        ),
    }
}

fn vanishing_gradients(epochs: &[EpochReport]) -> Verdict {
    let Some(last) = epochs.last() else {
        return Verdict {
            flagged: false,
            reason: "no epoch ran".into(),
        };
    };
    let (Some(first), Some(out)) = (last.layers.first(), last.layers.last()) else {
        return Verdict {
            flagged: false,
            reason: "no layer".into(),
        };
    };
    let ratio = first.grad_norm / out.grad_norm.max(f64::MIN_POSITIVE);
    let small_ratio = ratio < VANISHING_GRAD_RATIO;
    let frozen = first.change_since_start < FROZEN_WEIGHT_CHANGE;
    Verdict {
        flagged: last.layers.len() > 1 && (small_ratio || frozen),
        reason: format!(
            "{first_name}/{out_name} gradient-norm ratio {ratio:.2e} (threshold {VANISHING_GRAD_RATIO:.0e}); \
             {first_name} weights changed {change:.2e} since epoch 1 (threshold {FROZEN_WEIGHT_CHANGE:.0e})",
            first_name = first.layer,
            out_name = out.layer,
            change = first.change_since_start,
        ),
    }
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
    /// Whether every entry was within tolerance.
    pub passed: bool,
    /// The worst entry outside tolerance, by parameter name and index.
    pub worst: Option<(String, EntryCheck)>,
}

/// The gradient check of a trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GradCheckReport {
    /// Element type of the check (`f64`).
    pub dtype: String,
    /// Samples in the fixed batch.
    pub batch: usize,
    /// Tolerances used.
    pub tolerance: Tolerance,
    /// One entry per checked layer.
    pub layers: Vec<LayerGradCheck>,
    /// True when every layer passed.
    pub passed: bool,
    /// The gradient the trial's own device computes (f32), against the same f64
    /// numeric derivatives, with f32 tolerances; `None` when it could not be run.
    pub device: Option<DeviceGradCheck>,
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
