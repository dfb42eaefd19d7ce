//! One trial end to end: load the data, train, check the gradients, draw the verdicts.

use crate::check;
use crate::config::TrialConfig;
use crate::data::{self, Dataset, ImageShape};
use crate::report::{EpochReport, GradCheckReport, Outcome, Verdicts};
use crate::train::{self, Event};
use gradsweep_kernels::Backend;
use serde::Serialize;
use std::time::Instant;

/// What a trial trained on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetSummary {
    /// The dataset string of the trial.
    pub name: String,
    /// Image shape.
    pub shape: ImageShape,
    /// Classes.
    pub classes: usize,
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Test images.
    pub test: usize,
    /// The content hash of the data as loaded ([`Dataset::fingerprint`]).
    pub fingerprint: String,
}

impl DatasetSummary {
    /// The summary of a loaded dataset.
    pub fn of(data: &Dataset) -> DatasetSummary {
        DatasetSummary {
            name: data.name.clone(),
            shape: data.shape,
            classes: data.classes,
            train: data.train.len(),
            val: data.val.len(),
            test: data.test.len(),
            fingerprint: data.fingerprint.clone(),
        }
    }
}

/// Everything a trial produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialRecord {
    /// The trial's configuration (defaults filled in).
    pub config: TrialConfig,
    /// The data it trained on.
    pub dataset: DatasetSummary,
    /// The device it trained on.
    pub device: String,
    /// Completed or diverged.
    pub outcome: Outcome,
    /// Every completed epoch.
    pub epochs: Vec<EpochReport>,
    /// Stagnant loss, vanishing gradients, dead ReLU units, exploding gradients,
    /// divergence.
    pub verdicts: Verdicts,
    /// The gradient check of the untrained model (epoch 0); `None` when the config
    /// turned the check off.
    pub gradcheck_initial: Option<GradCheckReport>,
    /// The gradient check of the trained model; `None` when the config turned it off or
    /// the trial diverged.
    pub gradcheck: Option<GradCheckReport>,
    /// Why there is no gradient check, when there is none.
    pub gradcheck_skipped: Option<String>,
    /// Wall-clock seconds for the whole trial.
    pub seconds: f64,
}

/// Why a trial could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    /// The dataset could not be loaded.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// A kernel failed.
    #[error("training failed: {0}")]
    Kernel(#[from] gradsweep_kernels::Error),
    /// Asked to stop before the end ([`run_until`]).
    #[error("stopped before the end")]
    Stopped,
    /// The splits as loaded cannot train the trial ([`check_splits`]).
    #[error("{0}")]
    Splits(String),
}

/// `n` with thousands separators: `45,000`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Checks the loaded splits against the trial: an empty training, validation or test
/// split, or a `batch_size` larger than the training split, is refused with one line
/// naming the field, its value and the split's size
/// (`val_fraction = 0.999 leaves 0 training images of 1,000`).
pub fn check_splits(config: &TrialConfig, data: &Dataset) -> Result<(), TrialError> {
    let (n_train, n_val) = (data.train.len(), data.val.len());
    let pool = n_train + n_val;
    let refuse = |m: String| Err(TrialError::Splits(m));
    if n_train == 0 {
        return refuse(format!(
            "val_fraction = {} leaves 0 training images of {} in dataset {}",
            config.val_fraction,
            thousands(pool),
            config.dataset
        ));
    }
    if n_val == 0 {
        return refuse(format!(
            "val_fraction = {} leaves 0 validation images of {} in dataset {}; validation \
             needs at least one (val_fraction ≥ {:.2e})",
            config.val_fraction,
            thousands(pool),
            config.dataset,
            0.5 / pool as f64
        ));
    }
    if data.test.is_empty() {
        return refuse(format!("dataset {} has no test images", config.dataset));
    }
    if config.batch_size > n_train {
        return refuse(format!(
            "batch_size = {} is larger than the training split ({} images of dataset {} \
             at val_fraction = {})",
            config.batch_size,
            thousands(n_train),
            config.dataset,
            config.val_fraction
        ));
    }
    Ok(())
}

/// Loads the trial's dataset.
pub fn load_data(config: &TrialConfig) -> Result<Dataset, TrialError> {
    Ok(data::load(&config.dataset, config.val_fraction)?)
}

/// Runs a trial on `backend` with already loaded `data`; refuses splits that cannot
/// train it ([`check_splits`]).
pub fn run<B: Backend>(
    backend: &B,
    config: &TrialConfig,
    data: &Dataset,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<TrialRecord, TrialError> {
    run_until(backend, config, data, on_event, &|| false)
}

/// [`run`], asking `stop` after every training batch; [`TrialError::Stopped`] when it
/// said to stop.
pub fn run_until<B: Backend>(
    backend: &B,
    config: &TrialConfig,
    data: &Dataset,
    on_event: &mut dyn FnMut(Event<'_>),
    stop: &dyn Fn() -> bool,
) -> Result<TrialRecord, TrialError> {
    check_splits(config, data)?;
    let started = Instant::now();
    let gradcheck_initial = check::check_initial(config, data)?;
    let mut trained =
        train::train_until(backend, config, data, on_event, stop)?.ok_or(TrialError::Stopped)?;
    let (gradcheck, gradcheck_skipped) = match trained.outcome {
        Outcome::Diverged { epoch } => (
            None,
            Some(format!(
                "the trial diverged in epoch {epoch}: its weights are not finite"
            )),
        ),
        Outcome::Completed => {
            match check::check_trial(backend, &mut trained.model, config, data)? {
                Some(report) => (Some(report), None),
                None => (None, Some("turned off (gradcheck.layer = \"none\")".into())),
            }
        }
    };
    Ok(TrialRecord {
        config: config.clone(),
        dataset: DatasetSummary::of(data),
        device: backend.name(),
        verdicts: Verdicts::from_epochs(
            &trained.epochs,
            data.classes,
            match trained.outcome {
                Outcome::Diverged { epoch } => Some(epoch),
                Outcome::Completed => None,
            },
        ),
        gradcheck_initial,
        outcome: trained.outcome,
        epochs: trained.epochs,
        gradcheck,
        gradcheck_skipped,
        seconds: started.elapsed().as_secs_f64(),
    })
}
