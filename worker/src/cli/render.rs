//! Terminal rendering of a trial: the header, one line per epoch, then the summary.

use gradsweep_worker::config::TrialConfig;
use gradsweep_worker::data::Dataset;
use gradsweep_worker::report::{self, EpochReport, Outcome, Verdict};
use gradsweep_worker::trial::TrialRecord;
use std::fmt::Write;

/// What is about to be trained, on what, where.
pub fn header(config: &TrialConfig, data: &Dataset, device: &str) -> String {
    let hidden: Vec<String> = config.hidden.iter().map(|h| h.to_string()).collect();
    let dims = format!(
        "{}-{}{}{}",
        data.shape.features(),
        hidden.join("-"),
        if hidden.is_empty() { "" } else { "-" },
        data.classes
    );
    format!(
        "trial \"{name}\": {dims} {act}, init {init} ({scope}), batchnorm {bn}, regularization {reg}, {opt}\n\
         data {dataset} (fingerprint {fingerprint}): {train} train / {val} val / {test} test, {c}×{h}×{w}, {classes} classes, inputs {norm}\n\
         {epochs} epochs, batch {batch}, seed {seed}, on {device}",
        name = config.name,
        act = config.activation,
        init = config.init,
        scope = match config.init_scope {
            gradsweep_worker::config::InitScope::All => "all Linear layers",
            gradsweep_worker::config::InitScope::Hidden => "hidden layers; output layer default",
        },
        norm = match config.input_norm {
            gradsweep_worker::config::InputNorm::Standardize => "standardized per channel",
            gradsweep_worker::config::InputNorm::None => "in [0, 1] (input_norm = \"none\")",
        },
        bn = if config.batchnorm { "on" } else { "off" },
        reg = config.regularization,
        opt = optimizer(config),
        dataset = data.name,
        fingerprint = gradsweep_worker::data::fingerprint::short(&data.fingerprint),
        train = data.train.len(),
        val = data.val.len(),
        test = data.test.len(),
        c = data.shape.channels,
        h = data.shape.height,
        w = data.shape.width,
        classes = data.classes,
        epochs = config.epochs,
        batch = config.batch_size,
        seed = config.seed,
    )
}

fn optimizer(config: &TrialConfig) -> String {
    use gradsweep_worker::config::Optimizer;
    match config.optimizer {
        Optimizer::Sgd {
            lr,
            momentum,
            weight_decay,
        } => format!(
            "sgd lr {} momentum {} weight_decay {}",
            num(lr),
            num(momentum),
            num(weight_decay)
        ),
        Optimizer::Adam {
            lr,
            betas,
            eps,
            weight_decay,
        } => format!(
            "adam lr {} betas ({}, {}) eps {} weight_decay {}",
            num(lr),
            num(betas.0),
            num(betas.1),
            num(eps),
            num(weight_decay)
        ),
    }
}

/// A hyper-parameter as a user would write it: `0.01`, `1e-8`, `0`.
fn num(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// The column titles of [`epoch_line`].
pub fn epoch_header() -> String {
    format!(
        "\n{:>5}  {:>10} {:>9}  {:>10} {:>9}  {:>10} {:>9}  {:>7}",
        "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "time"
    )
}

/// One epoch: the six numbers of the assignment's tables.
pub fn epoch_line(r: &EpochReport) -> String {
    format!(
        "{:>5}  {:>10.4} {:>8.2}%  {:>10.4} {:>8.2}%  {:>10.4} {:>8.2}%  {:>6.1}s",
        r.epoch,
        r.train_loss,
        r.train_acc * 100.0,
        r.val_loss,
        r.val_acc * 100.0,
        r.test_loss,
        r.test_acc * 100.0,
        r.seconds
    )
}

fn verdict(name: &str, v: &Verdict) -> String {
    format!(
        "  {name:<20} {}  {}\n  {:<20}      criterion: {}\n",
        if v.flagged { "YES" } else { "no " },
        v.reason,
        "",
        v.criterion
    )
}

/// Outcome, per-layer diagnostics of the last epoch, verdicts and the gradient check.
pub fn summary(record: &TrialRecord) -> String {
    let mut out = String::new();
    match record.outcome {
        Outcome::Completed => {
            let _ = writeln!(
                out,
                "\ncompleted {} epochs in {:.1}s",
                record.epochs.len(),
                record.seconds
            );
        }
        Outcome::Diverged { epoch } => {
            let _ = writeln!(
                out,
                "\nDIVERGED in epoch {epoch}: the train loss became NaN or infinite; training stopped"
            );
        }
    }
    if let Some(last) = record.epochs.last() {
        if last.penalty > 0.0 {
            let _ = writeln!(
                out,
                "regularisation penalty at the end: {:.6} (not in train_loss)",
                last.penalty
            );
        }
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
    let _ = writeln!(
        out,
        "\nverdicts (thresholds are gradsweep's own; a flagged reason cites the values that crossed them):"
    );
    for (name, v) in record.verdicts.all() {
        out.push_str(&verdict(&name.replace('_', " "), v));
    }
    if let Some(g) = &record.gradcheck_initial {
        gradcheck(&mut out, g);
    }
    match (&record.gradcheck, &record.gradcheck_skipped) {
        (Some(g), _) => gradcheck(&mut out, g),
        (None, Some(why)) => {
            let _ = writeln!(out, "\ngradient check of the trained model: skipped, {why}");
        }
        (None, None) => {}
    }
    out
}

fn gradcheck(out: &mut String, g: &report::GradCheckReport) {
    let _ = writeln!(
        out,
        "\ngradient check, {} ({}, batch of {}): {}\n  criterion: {}",
        g.stage,
        g.dtype,
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
    let t = g.tolerance;
    let _ = writeln!(
        out,
        "  elementwise, as torch.autograd.gradcheck (eps {:.0e}, pass when |a − n| ≤ {:.0e} + {:.0e}·|n|; blind below {:.0e}):",
        t.eps, t.atol, t.rtol, t.atol
    );
    gradcheck_layers(out, &g.layers);
    if let Some(d) = &g.device {
        let t = d.tolerance;
        let _ = writeln!(
            out,
            "  the device's own f32 gradient ({}) against the same numeric one, pass when |a − n| ≤ {:.0e} + {:.0e}·|n|: {}",
            d.device,
            t.atol,
            t.rtol,
            if d.passed { "PASSED" } else { "FAILED" }
        );
        gradcheck_layers(out, &d.layers);
    }
}

fn gradcheck_layers(out: &mut String, layers: &[report::LayerGradCheck]) {
    for l in layers {
        let _ = writeln!(
            out,
            "  {:<9} {:>4} entries  max abs err {:.2e}  max rel err {:.2e}  {}",
            l.layer,
            l.checked,
            l.max_abs_error,
            l.max_rel_error,
            if l.elementwise_passed { "ok" } else { "FAILED" }
        );
        if let Some((param, e)) = &l.worst {
            let _ = writeln!(
                out,
                "      worst: {param}[{}] analytic {:.6e} numeric {:.6e}",
                e.index, e.analytic, e.numeric
            );
        }
    }
}
