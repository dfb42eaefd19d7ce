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
    /// Stagnant loss and vanishing gradients.
    pub verdicts: Verdicts,
    /// The gradient check; `None` when the config turned it off or the trial diverged.
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
}

/// Loads the trial's dataset.
pub fn load_data(config: &TrialConfig) -> Result<Dataset, TrialError> {
    Ok(data::load(&config.dataset, config.val_fraction)?)
}

/// Runs a trial on `backend` with already loaded `data`.
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
    let started = Instant::now();
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
        verdicts: Verdicts::from_epochs(&trained.epochs, data.classes),
        outcome: trained.outcome,
        epochs: trained.epochs,
        gradcheck,
        gradcheck_skipped,
        seconds: started.elapsed().as_secs_f64(),
    })
}
