//! `ListTrials` and `ExportTrials`: a sweep's trials, filtered by state and axis values,
//! streamed one message per trial in index order.
//!
//! A blocking task reads the trials one at a time (by index, never the whole sweep) and
//! feeds a bounded channel, so a slow reader holds back the reading and a 100,000-trial
//! export needs the memory of a few trials. A reader that goes away ends the task at its
//! next send. Every [`TrialSummary`] is built by [`summary`], and only there.

use crate::Error;
use crate::readers::Readers;
use crate::service::status;
use crate::store::Store;
use crate::summary::Picks;
use gradsweep_proto::{
    Axis, AxisFilter, EpochReport, ExportTrialsRequest, ListTrialsRequest, Trial, TrialExport,
    TrialState, TrialSummary, outcome,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Messages buffered between the reading task and the gRPC stream.
pub const CHANNEL_DEPTH: usize = 32;

/// What a list or export keeps: the states (empty: all) and, per filtered axis, its
/// position among the sweep's axes and the index of the label to keep.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    states: Vec<TrialState>,
    choices: Vec<(usize, u32)>,
}

impl Selection {
    /// Checks the request's states and filters against `axes`: an unknown state, an axis
    /// key that is not one of the sweep's, or a label that is not one of the axis's is
    /// `Error::BadRequest` naming the valid ones.
    pub fn new(
        sweep_id: u64,
        axes: &[Axis],
        states: &[i32],
        filters: &[AxisFilter],
    ) -> Result<Selection, Error> {
        let mut out = Selection::default();
        for &s in states {
            let state = TrialState::try_from(s)
                .ok()
                .filter(|s| *s != TrialState::Unspecified)
                .ok_or_else(|| {
                    Error::BadRequest(format!(
                        "states: {s} is not a trial state (1 pending … 6 cancelled)"
                    ))
                })?;
            out.states.push(state);
        }
        for f in filters {
            let Some(axis) = axes.iter().position(|a| a.key == f.key) else {
                let keys: Vec<&str> = axes.iter().map(|a| a.key.as_str()).collect();
                return Err(Error::BadRequest(format!(
                    "filter {}={}: \"{}\" is not an axis of sweep {sweep_id}; its axes: {}",
                    f.key,
                    f.label,
                    f.key,
                    if keys.is_empty() {
                        "none (it has no grid)".to_owned()
                    } else {
                        keys.join(", ")
                    }
                )));
            };
            let labels = &axes[axis].labels;
            let Some(choice) = labels.iter().position(|l| *l == f.label) else {
                return Err(Error::BadRequest(format!(
                    "filter {}={}: \"{}\" is not a value of axis {}; its values: {}",
                    f.key,
                    f.label,
                    f.label,
                    f.key,
                    labels.join(", ")
                )));
            };
            out.choices.push((axis, choice as u32));
        }
        Ok(out)
    }

    /// Whether `trial` is kept.
    pub fn keeps(&self, trial: &Trial) -> bool {
        let state = match trial.state() {
            TrialState::Unspecified => TrialState::Pending,
            s => s,
        };
        (self.states.is_empty() || self.states.contains(&state))
            && self
                .choices
                .iter()
                .all(|&(axis, choice)| trial.choice.get(axis) == Some(&choice))
    }
}

/// A trial as a list shows it: its axis values (labels, in `axes` order), where it
/// stands, its attempts, its worker (`worker_name` as resolved by the caller), its last
/// and best-validation epochs (without layers), its flagged verdicts and its error.
/// `epochs` are the trial's stored epochs (those of its current or finishing attempt).
pub fn summary(
    trial: &Trial,
    epochs: &[EpochReport],
    axes: &[Axis],
    worker_name: &str,
) -> TrialSummary {
    let values = axes
        .iter()
        .zip(&trial.choice)
        .map(|(a, &c)| a.labels.get(c as usize).cloned().unwrap_or_default())
        .collect();
    let picks = Picks::of(epochs);
    let result = trial.result.as_ref();
    let diverged_epoch = result
        .and_then(|r| r.outcome.as_ref())
        .and_then(|o| o.kind.as_ref())
        .map_or(0, |k| match k {
            outcome::Kind::Diverged(d) => d.epoch,
            outcome::Kind::Completed(_) => 0,
        });
    let flagged = result
        .map(|r| {
            r.verdicts
                .iter()
                .filter(|v| v.flagged)
                .map(|v| v.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let seconds = match result {
        Some(r) => r.seconds,
        None => epochs.iter().map(|e| e.seconds).sum(),
    };
    TrialSummary {
        index: trial.index,
        key: trial.key.clone(),
        values,
        seed: trial.seed,
        state: trial.state,
        attempt: trial.attempt,
        failures: trial.failures,
        lost: trial.lost,
        worker_id: trial.worker_id,
        worker_name: if trial.worker_id == 0 {
            String::new()
        } else {
            worker_name.to_owned()
        },
        epochs: epochs.len() as u32,
        final_epoch: picks.final_epoch,
        best_val_epoch: picks.best_val_epoch,
        flagged,
        diverged_epoch,
        error: trial.error.clone(),
        seconds,
    }
}

/// Worker names by id, looked up once per stream.
struct Names<'a> {
    store: &'a Store,
    known: HashMap<u64, String>,
}

impl Names<'_> {
    fn of(&mut self, trial: &Trial) -> String {
        if let Some(r) = &trial.result
            && !r.worker_name.is_empty()
        {
            return r.worker_name.clone();
        }
        if trial.worker_id == 0 {
            return String::new();
        }
        let store = self.store;
        self.known
            .entry(trial.worker_id)
            .or_insert_with(|| {
                store
                    .worker(trial.worker_id)
                    .map(|w| w.name)
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// Streams, for each trial of sweep `sweep_id` that `selection` keeps, in index order,
/// what `make` builds from its summary and epochs (layers included when `layers`).
/// The sweep must exist and the selection must be valid before this is called.
fn stream<T: Send + 'static>(
    store: Arc<Store>,
    sweep_id: u64,
    axes: Vec<Axis>,
    trial_count: u32,
    selection: Selection,
    layers: bool,
    readers: &Readers,
    make: fn(TrialSummary, Vec<EpochReport>) -> T,
) -> Result<ReceiverStream<Result<T, Status>>, Status> {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    readers.spawn_stream(move || {
        let mut names = Names {
            store: &store,
            known: HashMap::new(),
        };
        for index in 0..trial_count {
            let one = (|| -> Result<Option<T>, Error> {
                let trial = store.trial((sweep_id, index))?;
                if !selection.keeps(&trial) {
                    return Ok(None);
                }
                let mut epochs = store.epochs((sweep_id, index))?;
                let s = summary(&trial, &epochs, &axes, &names.of(&trial));
                if !layers {
                    for e in &mut epochs {
                        e.layers = Vec::new();
                    }
                }
                Ok(Some(make(s, epochs)))
            })();
            let message = match one {
                Ok(None) => continue,
                Ok(Some(m)) => Ok(m),
                Err(e) => Err(status(e)),
            };
            let failed = message.is_err();
            // A reader that went away ends the task.
            if tx.blocking_send(message).is_err() || failed {
                return;
            }
        }
    })?;
    Ok(ReceiverStream::new(rx))
}

/// `ListTrials`: the sweep's trials that the request keeps, as summaries.
pub fn list_trials(
    store: &Arc<Store>,
    readers: &Readers,
    r: ListTrialsRequest,
) -> Result<ReceiverStream<Result<TrialSummary, Status>>, Status> {
    let sweep = store.sweep(r.sweep_id).map_err(status)?;
    let selection = Selection::new(sweep.id, &sweep.axes, &r.states, &r.filters).map_err(status)?;
    stream(
        store.clone(),
        sweep.id,
        sweep.axes,
        sweep.trial_count,
        selection,
        false,
        readers,
        |s, _| s,
    )
}

/// `ExportTrials`: the sweep's trials that the request keeps, each with its stored
/// epochs (and their layer diagnostics when asked).
pub fn export_trials(
    store: &Arc<Store>,
    readers: &Readers,
    r: ExportTrialsRequest,
) -> Result<ReceiverStream<Result<TrialExport, Status>>, Status> {
    let sweep = store.sweep(r.sweep_id).map_err(status)?;
    let selection = Selection::new(sweep.id, &sweep.axes, &r.states, &r.filters).map_err(status)?;
    stream(
        store.clone(),
        sweep.id,
        sweep.axes,
        sweep.trial_count,
        selection,
        r.layers,
        readers,
        |summary, epochs| TrialExport {
            summary: Some(summary),
            epochs,
        },
    )
}
