//! Terminal rendering of a trial: the header (here), then one line per epoch and the
//! summary, both by `gradsweep_client::trial_view`, the renderer `sweep trial` uses.

use gradsweep_client::trial_view;
use gradsweep_worker::config::TrialConfig;
use gradsweep_worker::data::Dataset;
use gradsweep_worker::report::{self, EpochReport};
use gradsweep_worker::trial::TrialRecord;
use gradsweep_worker::wire;

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
    trial_view::epoch_header()
}

/// One epoch, as `sweep trial` shows it.
pub fn epoch_line(r: &EpochReport) -> String {
    trial_view::epoch_line(&wire::epoch(r))
}

/// Outcome, per-layer diagnostics of the last epoch, verdicts and the gradient check:
/// the record converted to the wire types and rendered by the `sweep` CLI's renderer
/// (what `sweep trial` shows for the same trial), with each gradient-check layer's
/// worst entry, which only the local record has.
pub fn summary(record: &TrialRecord) -> String {
    let result = wire::result(record, "");
    let epochs: Vec<_> = record.epochs.iter().map(wire::epoch).collect();
    let worst = |stage: &str, device: bool, i: usize| -> Option<String> {
        let check = [&record.gradcheck_initial, &record.gradcheck]
            .into_iter()
            .flatten()
            .find(|g| g.stage == stage)?;
        let layers: &[report::LayerGradCheck] = if device {
            &check.device.as_ref()?.layers
        } else {
            &check.layers
        };
        let (param, e) = layers.get(i)?.worst.as_ref()?;
        Some(format!(
            "      worst: {param}[{}] analytic {:.6e} numeric {:.6e}",
            e.index, e.analytic, e.numeric
        ))
    };
    trial_view::summary(Some(&result), &epochs, Some(&worst))
}
