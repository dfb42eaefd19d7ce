//! The one text rendering of a trial's results, over the wire types: the epoch table,
//! the outcome, the last epoch's per-layer diagnostics, the verdicts and the gradient
//! checks. `sweep trial` (a stored trial) and `worker train` (a trial trained here,
//! converted with `gradsweep_worker::wire`) both print these, so that the same trial
//! reads the same in both.
//!
//! Accuracies are percentages, losses four decimals, diagnostics three significant
//! digits in scientific notation; a NaN or infinite value prints as `NaN` / `inf`.

use gradsweep_proto::{
    EpochReport, GradCheck, LayerGradCheck, Tolerance, TrialResult, Verdict, outcome,
};
use std::fmt::Write;

/// The column titles of [`epoch_line`] (with a blank line before them).
pub fn epoch_header() -> String {
    format!(
        "\n{:>5}  {:>10} {:>9}  {:>10} {:>9}  {:>10} {:>9}  {:>7}",
        "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "time"
    )
}

/// One epoch: the six numbers and its time.
pub fn epoch_line(r: &EpochReport) -> String {
    format!(
        "{:>5}  {:>10.4} {:>8.2}%  {:>10.4} {:>8.2}%  {:>10.4} {:>8.2}%  {:>6.1}s",
        r.epoch,
        r.train_loss,
        r.train_accuracy * 100.0,
        r.val_loss,
        r.val_accuracy * 100.0,
        r.test_loss,
        r.test_accuracy * 100.0,
        r.seconds
    )
}

/// [`epoch_header`] and one [`epoch_line`] per epoch, each line ended.
pub fn epochs(epochs: &[EpochReport]) -> String {
    let mut out = epoch_header();
    out.push('\n');
    for e in epochs {
        out.push_str(&epoch_line(e));
        out.push('\n');
    }
    out
}

/// Lines a caller adds under a gradient check's layer: `worker train` shows each
/// layer's worst entry, which the wire types do not carry. Called with the check's
/// stage, whether it is the device's own check, and the layer's position.
pub type LayerExtra<'a> = &'a dyn Fn(&str, bool, usize) -> Option<String>;

/// After the epochs: the outcome (from `result`, when the trial finished), the penalty
/// and per-layer diagnostics of the last epoch, the verdicts and the gradient checks.
pub fn summary(
    result: Option<&TrialResult>,
    epochs: &[EpochReport],
    extra: Option<LayerExtra<'_>>,
) -> String {
    let mut out = String::new();
    if let Some(kind) = result
        .and_then(|r| r.outcome.as_ref())
        .and_then(|o| o.kind.as_ref())
    {
        match kind {
            outcome::Kind::Completed(_) => {
                let _ = writeln!(
                    out,
                    "\ncompleted {} epochs in {:.1}s",
                    epochs.len(),
                    result.map_or(0.0, |r| r.seconds)
                );
            }
            outcome::Kind::Diverged(d) => {
                let _ = writeln!(
                    out,
                    "\nDIVERGED in epoch {}: the train loss became NaN or infinite; training stopped",
                    d.epoch
                );
            }
        }
    }
    if let Some(last) = epochs.last() {
        if last.penalty > 0.0 {
            let _ = writeln!(
                out,
                "regularisation penalty at the end: {:.6} (not in train_loss)",
                last.penalty
            );
        }
        if !last.layers.is_empty() {
            layers(&mut out, last);
        }
    }
    let Some(r) = result else {
        return out;
    };
    if !r.verdicts.is_empty() {
        let _ = writeln!(
            out,
            "\nverdicts (thresholds are gradsweep's own; a flagged reason cites the values that crossed them):"
        );
        for v in &r.verdicts {
            out.push_str(&verdict(v));
        }
    }
    if let Some(g) = &r.gradcheck_initial {
        gradcheck(&mut out, g, extra);
    }
    match (&r.gradcheck, r.gradcheck_skipped.as_str()) {
        (Some(g), _) => gradcheck(&mut out, g, extra),
        (None, "") => {}
        (None, why) => {
            let _ = writeln!(out, "\ngradient check of the trained model: skipped, {why}");
        }
    }
    out
}

fn layers(out: &mut String, last: &EpochReport) {
    let _ = writeln!(out, "\nper-layer diagnostics, epoch {}:", last.epoch);
    let _ = writeln!(
        out,
        "  {:<9} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "layer", "w_mean", "w_std", "grad_norm", "max|g|", "update", "change", "dead_relu"
    );
    for l in &last.layers {
        let dead = l
            .dead_fraction
            .map_or_else(|| "-".to_string(), |d| format!("{:.1}%", d * 100.0));
        let _ = writeln!(
            out,
            "  {:<9} {:>11.3e} {:>10.3e} {:>10.3e} {:>10.3e} {:>10.3e} {:>10.3e} {:>10}",
            l.layer,
            l.weight_mean,
            l.weight_std,
            l.grad_norm,
            l.grad_max_abs,
            l.update_ratio,
            l.change_since_start,
            dead
        );
    }
    let _ = writeln!(
        out,
        "  grad_norm: mean ‖∂loss/∂W‖ over the epoch's steps; update: ‖ΔW‖/‖W‖ this epoch; \
         change: ‖W − W₀‖/‖W₀‖ since epoch 1"
    );
}

fn verdict(v: &Verdict) -> String {
    format!(
        "  {:<20} {}  {}\n  {:<20}      criterion: {}\n",
        v.name.replace('_', " "),
        if v.flagged { "YES" } else { "no " },
        v.reason,
        "",
        v.criterion
    )
}

fn gradcheck(out: &mut String, g: &GradCheck, extra: Option<LayerExtra<'_>>) {
    // The numeric derivatives are always taken in f64 (ARCHITECTURE.md, Decisions).
    let _ = writeln!(
        out,
        "\ngradient check, {} (f64, batch of {}): {}\n  criterion: {}",
        g.stage,
        g.batch,
        if g.passed { "PASSED" } else { "FAILED" },
        g.criterion
    );
    for l in &g.layers {
        for t in &l.tensors {
            let _ = writeln!(
                out,
                "  {:<15} {:>9} entries  gradient RMS {:.2e}  directional rel err {:.2e} ({} directions)  {}",
                t.param,
                t.entries,
                t.grad_rms,
                t.rel_error,
                t.directions,
                if t.passed { "ok" } else { "FAILED" }
            );
        }
    }
    let t = g.tolerance.unwrap_or_default();
    let _ = writeln!(
        out,
        "  elementwise, as torch.autograd.gradcheck (eps {:.0e}, pass when |a − n| ≤ {:.0e} + {:.0e}·|n|; blind below {:.0e}):",
        t.eps, t.atol, t.rtol, t.atol
    );
    gradcheck_layers(out, &g.layers, &g.stage, false, extra);
    if !g.device.is_empty() {
        let t: Tolerance = g.device_tolerance.unwrap_or_default();
        let _ = writeln!(
            out,
            "  the device's own f32 gradient ({}) against the same numeric one, pass when |a − n| ≤ {:.0e} + {:.0e}·|n|: {}",
            g.device,
            t.atol,
            t.rtol,
            if g.device_passed { "PASSED" } else { "FAILED" }
        );
        gradcheck_layers(out, &g.device_layers, &g.stage, true, extra);
    }
}

fn gradcheck_layers(
    out: &mut String,
    layers: &[LayerGradCheck],
    stage: &str,
    device: bool,
    extra: Option<LayerExtra<'_>>,
) {
    for (i, l) in layers.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:<9} {:>4} entries  max abs err {:.2e}  max rel err {:.2e}  {}",
            l.layer,
            l.checked,
            l.max_abs_error,
            l.max_rel_error,
            if l.elementwise_passed { "ok" } else { "FAILED" }
        );
        if let Some(line) = extra.and_then(|f| f(stage, device, i)) {
            let _ = writeln!(out, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradsweep_proto::{Completed, LayerDiagnostics, Outcome};

    #[test]
    fn epochs_show_percent_and_every_layer_column() {
        let e = EpochReport {
            epoch: 3,
            train_loss: 0.5,
            train_accuracy: 0.875,
            val_loss: f64::NAN,
            val_accuracy: 0.5,
            layers: vec![LayerDiagnostics {
                layer: "linear1".into(),
                weight_mean: -1.5e-3,
                grad_max_abs: 2.0,
                dead_fraction: Some(0.25),
                ..Default::default()
            }],
            ..Default::default()
        };
        let line = epoch_line(&e);
        assert!(line.contains("87.50%") && line.contains("NaN"), "{line}");
        let result = TrialResult {
            outcome: Some(Outcome {
                kind: Some(outcome::Kind::Completed(Completed {})),
            }),
            verdicts: vec![Verdict {
                name: "dead_relu".into(),
                flagged: false,
                criterion: "c".into(),
                ..Default::default()
            }],
            seconds: 2.0,
            ..Default::default()
        };
        let text = summary(Some(&result), &[e], None);
        for part in [
            "completed 1 epochs in 2.0s",
            "max|g|",
            "-1.500e-3",
            "2.000e0",
            "25.0%",
            "dead relu",
            " no   ",
            "criterion: c",
        ] {
            assert!(text.contains(part), "{part:?} missing in\n{text}");
        }
    }
}
