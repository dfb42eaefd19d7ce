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
/// Train loss at or above this fraction of chance's loss (ln classes) counts as "at
/// chance" for the stagnant-loss verdict.
pub const STAGNANT_CHANCE_LOSS: f64 = 0.98;
/// Fraction of a ReLU layer's units dead on the probe batch at or above which the
/// layer counts as dead: a layer with most units dead still trains through the rest
/// (a ReLU+He net learns with 60% of one layer dead), one with 90% passes almost nothing.
pub const DEAD_RELU_FRACTION: f64 = 0.9;
/// A hidden layer's to the output layer's gradient-norm ratio at or above which
/// gradients count as exploding (the mirror of [`VANISHING_GRAD_RATIO`]).
pub const EXPLODING_GRAD_RATIO: f64 = 1e3;
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
    /// The deciding measurement (when flagged, the one that crossed its threshold); 0,
    /// with a threshold of 0, when nothing could be measured.
    pub value: f64,
    /// Its threshold.
    pub threshold: f64,
    /// Whether the verdict flags values below the threshold (`value < threshold`), or
    /// at and above it (`value ≥ threshold`).
    pub below: bool,
}

impl Verdict {
    fn new(flagged: bool, criterion: String, reason: String) -> Verdict {
        Verdict {
            flagged,
            criterion,
            reason,
            value: 0.0,
            threshold: 0.0,
            below: true,
        }
    }

    fn measured(mut self, value: f64, threshold: f64, below: bool) -> Verdict {
        self.value = value;
        self.threshold = threshold;
        self.below = below;
        self
    }
}

/// The verdicts of a trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdicts {
    /// Train accuracy near chance while the train loss stays at chance's loss (≥ 98% of
    /// ln classes) or moves less than 1% over the last 3 epochs.
    pub stagnant_loss: Verdict,
    /// First-to-last gradient ratio below 1e-3, or first-layer weights changed < 1e-3
    /// (not when dead ReLU units explain the missing gradient).
    pub vanishing_gradients: Verdict,
    /// A ReLU layer with at least 90% of its units dead on the probe batch.
    pub dead_relu: Verdict,
    /// A hidden layer's gradient norm at or above 1e3 × the output layer's, or not
    /// finite.
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
    let near = chance + NEAR_CHANCE_MARGIN;
    let at_chance = STAGNANT_CHANCE_LOSS * (classes as f64).ln();
    let criterion = format!(
        "train accuracy below chance + {}% ({:.1}%) and, over the last {STAGNANT_WINDOW} \
         epochs, the train loss never below {}% of chance's loss ln {classes} ({at_chance:.4}) \
         or moving less than {}%",
        NEAR_CHANCE_MARGIN * 100.0,
        near * 100.0,
        STAGNANT_CHANCE_LOSS * 100.0,
        STAGNANT_REL_CHANGE * 100.0,
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
    let window = &epochs[epochs.len() - STAGNANT_WINDOW..];
    let lowest = window
        .iter()
        .map(|e| e.train_loss)
        .fold(f64::INFINITY, f64::min);
    let change = (last.train_loss - before.train_loss).abs() / before.train_loss.abs().max(1e-12);
    let near_chance = last.train_acc < near;
    let at_chance_loss = lowest >= at_chance;
    let flat = change < STAGNANT_REL_CHANGE;
    let acc = format!("train accuracy {:.1}%", last.train_acc * 100.0);
    let range = format!("epochs {}–{}", window[0].epoch, last.epoch);
    let lowest_text = format!("lowest train loss {lowest:.4} in {range}");
    let moved = format!(
        "train loss moved {} over epochs {}–{} ({:.4} → {:.4})",
        pct(change),
        before.epoch,
        last.epoch,
        before.train_loss,
        last.train_loss
    );
    let flagged = near_chance && (at_chance_loss || flat);
    let reason = if flagged && at_chance_loss {
        format!(
            "{acc} < {:.1}%, {lowest_text} ≥ {at_chance:.4}",
            near * 100.0
        )
    } else if flagged {
        format!(
            "{acc} < {:.1}%, {moved} < {}%",
            near * 100.0,
            STAGNANT_REL_CHANGE * 100.0
        )
    } else if !near_chance {
        format!("{acc} (≥ {:.1}%)", near * 100.0)
    } else {
        format!(
            "{lowest_text} (< {at_chance:.4}), {moved} (≥ {}%)",
            STAGNANT_REL_CHANGE * 100.0
        )
    };
    let verdict = Verdict::new(flagged, criterion, reason);
    if at_chance_loss || !flat {
        verdict.measured(lowest, at_chance, false)
    } else {
        verdict.measured(change, STAGNANT_REL_CHANGE, true)
    }
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
    let (value, threshold) = if small_ratio || !frozen {
        (ratio, VANISHING_GRAD_RATIO)
    } else {
        (change, FROZEN_WEIGHT_CHANGE)
    };
    Verdict::new(small_ratio || frozen, criterion, reason).measured(value, threshold, true)
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
    Verdict::new(flagged, criterion, reason).measured(fraction, DEAD_RELU_FRACTION, false)
}

fn exploding_gradients(epochs: &[EpochReport]) -> Verdict {
    let criterion = format!(
        "in the last epoch, a layer's weight-gradient norm at or above \
         {EXPLODING_GRAD_RATIO:.0e} × the output layer's, or in any epoch a gradient norm \
         that is not finite"
    );
    if let Some((epoch, layer)) = epochs
        .iter()
        .flat_map(|e| e.layers.iter().map(move |l| (e.epoch, l)))
        .find(|(_, l)| !l.grad_norm.is_finite())
    {
        return Verdict::new(
            true,
            criterion,
            format!(
                "{} gradient norm {} in epoch {epoch}",
                layer.layer, layer.grad_norm
            ),
        )
        .measured(f64::INFINITY, EXPLODING_GRAD_RATIO, false);
    }
    let Some(last) = epochs.last() else {
        return Verdict::new(false, criterion, "no epoch ran".into());
    };
    let (Some(out), true) = (last.layers.last(), last.layers.len() > 1) else {
        return Verdict::new(
            false,
            criterion,
            "one layer: nothing to explode through".into(),
        );
    };
    let Some(worst) = last.layers[..last.layers.len() - 1]
        .iter()
        .max_by(|a, b| a.grad_norm.total_cmp(&b.grad_norm))
    else {
        return Verdict::new(false, criterion, "no layer".into());
    };
    let ratio = worst.grad_norm / out.grad_norm.max(f64::MIN_POSITIVE);
    let flagged = ratio >= EXPLODING_GRAD_RATIO;
    let reason = format!(
        "largest: {}/{} gradient-norm ratio {ratio:.2e} in epoch {} ({} {EXPLODING_GRAD_RATIO:.0e})",
        worst.layer,
        out.layer,
        last.epoch,
        if flagged { "≥" } else { "<" }
    );
    Verdict::new(flagged, criterion, reason).measured(ratio, EXPLODING_GRAD_RATIO, false)
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
        )
        .measured(f64::INFINITY, limit, false);
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
    Verdict::new(flagged, criterion, reason).measured(worst.train_loss, limit, false)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, grad_norm: f64, change: f64, dead: Option<f64>) -> LayerDiagnostics {
        LayerDiagnostics {
            layer: name.into(),
            weight_mean: 0.0,
            weight_std: 0.1,
            grad_norm,
            grad_max_abs: grad_norm,
            update_ratio: 0.0,
            change_since_start: change,
            dead_fraction: dead,
        }
    }

    fn epoch(n: u32, loss: f64, acc: f64, layers: Vec<LayerDiagnostics>) -> EpochReport {
        EpochReport {
            epoch: n,
            train_loss: loss,
            train_acc: acc,
            val_loss: loss,
            val_acc: acc,
            test_loss: loss,
            test_acc: acc,
            penalty: 0.0,
            seconds: 0.0,
            train_seconds: 0.0,
            layers,
        }
    }

    #[test]
    fn a_relu_net_whose_units_all_died_is_dead_relu_not_vanishing() {
        let layers = vec![
            layer("linear1", 0.0, 0.0, Some(1.0)),
            layer("linear2", 0.0, 0.0, Some(1.0)),
            layer("linear3", 0.05, 0.01, None),
        ];
        let epochs: Vec<EpochReport> = (1..=5)
            .map(|n| epoch(n, std::f64::consts::LN_10, 0.1, layers.clone()))
            .collect();
        let v = Verdicts::from_epochs(&epochs, 10, None);
        assert!(v.dead_relu.flagged, "{:?}", v.dead_relu);
        assert!(v.dead_relu.reason.contains("linear1 100.00%"));
        assert!(
            !v.vanishing_gradients.flagged,
            "{:?}",
            v.vanishing_gradients
        );
        assert!(v.stagnant_loss.flagged);
    }

    #[test]
    fn a_flagged_reason_cites_only_the_criterion_that_crossed() {
        // The ratio crosses, the weight change does not: the reason names the ratio only.
        let layers = vec![
            layer("linear1", 1e-6, 1.11e-2, None),
            layer("linear2", 1.0, 0.1, None),
        ];
        let epochs: Vec<EpochReport> = (1..=5)
            .map(|n| epoch(n, 1.0, 0.9, layers.clone()))
            .collect();
        let v = Verdicts::from_epochs(&epochs, 10, None).vanishing_gradients;
        assert!(v.flagged);
        assert!(v.reason.contains("ratio 1.00e-6 < 1e-3"), "{}", v.reason);
        assert!(!v.reason.contains("1.11e-2"), "{}", v.reason);
        assert!(v.value < v.threshold && v.below);
    }

    #[test]
    fn exploding_and_divergence_flag_with_their_values() {
        let layers = vec![
            layer("linear1", 5e3, 1.0, None),
            layer("linear2", 1.0, 0.1, None),
        ];
        let mut epochs: Vec<EpochReport> = (1..=4)
            .map(|n| epoch(n, 1.0, 0.5, layers.clone()))
            .collect();
        epochs[3].train_loss = 4.0;
        let v = Verdicts::from_epochs(&epochs, 10, None);
        assert!(v.exploding_gradients.flagged);
        assert!(
            v.exploding_gradients
                .reason
                .contains("5.00e3 in epoch 4 (≥ 1e3)")
        );
        assert!(v.divergence.flagged);
        assert!(v.divergence.value >= v.divergence.threshold);
        let v = Verdicts::from_epochs(&epochs[..2], 10, Some(3));
        assert!(v.divergence.flagged);
        assert!(v.divergence.reason.contains("epoch 3"));
        assert!(
            !Verdicts::from_epochs(&epochs[..2], 10, None)
                .divergence
                .flagged
        );
    }
}
