//! A trial's compact record (tree `summaries`): what tables and effects read, one
//! small record per trial, so that neither decodes a trial's config,
//! history or result, nor any epoch's layer diagnostics.
//!
//! Every trial has one from its submission; the store rewrites it in the same sled
//! transaction as every change of the trial's state (see [`crate::store`]). A finished
//! trial's (`SUCCEEDED` or `DIVERGED`) carries its final and best-validation epochs
//! (without layer diagnostics), its verdicts' flags, how many epochs it stored, the
//! epoch it diverged in and its training time.

use gradsweep_proto::{EpochReport, Trial, TrialState, outcome};
use std::borrow::Borrow;

/// A verdict's name and whether it flagged the trial.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VerdictFlag {
    /// `stagnant_loss`, `vanishing_gradients`, …
    #[prost(string, tag = "1")]
    pub name: String,
    /// Whether it flagged the trial.
    #[prost(bool, tag = "2")]
    pub flagged: bool,
}

/// One trial, compactly. Fields added later read as zero/empty from older records.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The trial's index in its sweep.
    #[prost(uint32, tag = "1")]
    pub index: u32,
    /// Its key (hex BLAKE3 of the canonical TOML).
    #[prost(string, tag = "2")]
    pub key: String,
    /// Per axis of the sweep, the index of the trial's value.
    #[prost(uint32, repeated, tag = "3")]
    pub choice: Vec<u32>,
    /// Its seed.
    #[prost(uint64, tag = "4")]
    pub seed: u64,
    /// Its state.
    #[prost(enumeration = "TrialState", tag = "5")]
    pub state: i32,
    /// The current (or finishing) attempt.
    #[prost(uint32, tag = "6")]
    pub attempt: u32,
    /// Attempts ended by the trial's own error.
    #[prost(uint32, tag = "7")]
    pub failures: u32,
    /// Attempts lost to the infrastructure.
    #[prost(uint32, tag = "8")]
    pub lost: u32,
    /// The worker holding (leased) or that finished it; 0 when none.
    #[prost(uint64, tag = "9")]
    pub worker_id: u64,
    /// Epochs stored by the finishing attempt (0 until it finishes).
    #[prost(uint32, tag = "10")]
    pub epochs: u32,
    /// A finished trial's last stored epoch, without layer diagnostics.
    #[prost(message, optional, tag = "11")]
    pub final_epoch: Option<EpochReport>,
    /// A finished trial's best-validation-accuracy epoch (the earliest on ties),
    /// without layer diagnostics.
    #[prost(message, optional, tag = "12")]
    pub best_val_epoch: Option<EpochReport>,
    /// A finished trial's verdicts, in the order reported.
    #[prost(message, repeated, tag = "13")]
    pub verdicts: Vec<VerdictFlag>,
    /// The 1-based epoch whose loss became non-finite (DIVERGED); 0 otherwise.
    #[prost(uint32, tag = "14")]
    pub diverged_epoch: u32,
    /// The last error (FAILED, or a requeued attempt's).
    #[prost(string, tag = "15")]
    pub error: String,
    /// A finished trial's training time.
    #[prost(double, tag = "16")]
    pub seconds: f64,
}

/// The epoch reports a finished trial's summary keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Picks {
    /// How many epochs were stored.
    pub epochs: u32,
    /// The last one.
    pub final_epoch: Option<EpochReport>,
    /// The one with the best validation accuracy, the earliest on ties.
    pub best_val_epoch: Option<EpochReport>,
}

impl Picks {
    /// Picks from an attempt's epochs, in epoch order (layer diagnostics dropped).
    pub fn of<E: Borrow<EpochReport>>(epochs: impl IntoIterator<Item = E>) -> Picks {
        let bare = |e: &EpochReport| EpochReport {
            layers: Vec::new(),
            ..e.clone()
        };
        let mut picks = Picks::default();
        let mut last = None;
        for e in epochs {
            let report = e.borrow();
            picks.epochs += 1;
            let better = picks
                .best_val_epoch
                .as_ref()
                .is_none_or(|b| report.val_accuracy > b.val_accuracy);
            if better {
                picks.best_val_epoch = Some(bare(report));
            }
            last = Some(e);
        }
        picks.final_epoch = last.map(|e| bare(e.borrow()));
        picks
    }
}

impl Summary {
    /// The summary of `trial`; `picks` are its epochs when it is finished (else none
    /// are kept).
    pub fn of(trial: &Trial, picks: Option<&Picks>) -> Summary {
        let finished = matches!(trial.state(), TrialState::Succeeded | TrialState::Diverged);
        let picks = picks.filter(|_| finished);
        let result = trial.result.as_ref().filter(|_| finished);
        Summary {
            index: trial.index,
            key: trial.key.clone(),
            choice: trial.choice.clone(),
            seed: trial.seed,
            state: trial.state,
            attempt: trial.attempt,
            failures: trial.failures,
            lost: trial.lost,
            worker_id: trial.worker_id,
            epochs: picks.map_or(0, |p| p.epochs),
            final_epoch: picks.and_then(|p| p.final_epoch.clone()),
            best_val_epoch: picks.and_then(|p| p.best_val_epoch.clone()),
            verdicts: result
                .map(|r| {
                    r.verdicts
                        .iter()
                        .map(|v| VerdictFlag {
                            name: v.name.clone(),
                            flagged: v.flagged,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            diverged_epoch: result
                .and_then(|r| r.outcome.as_ref())
                .and_then(|o| match o.kind {
                    Some(outcome::Kind::Diverged(d)) => Some(d.epoch),
                    _ => None,
                })
                .unwrap_or(0),
            error: trial.error.clone(),
            seconds: result.map_or(0.0, |r| r.seconds),
        }
    }

    /// The epoch a table or effect takes from this trial: the final one, or the
    /// best-validation one.
    pub fn pick(&self, best_val_epoch: bool) -> Option<&EpochReport> {
        if best_val_epoch {
            self.best_val_epoch.as_ref()
        } else {
            self.final_epoch.as_ref()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_keep_the_last_and_the_earliest_best_epoch_without_layers() {
        let e = |epoch: u32, val_accuracy: f64| EpochReport {
            epoch,
            val_accuracy,
            layers: vec![gradsweep_proto::LayerDiagnostics::default()],
            ..EpochReport::default()
        };
        let p = Picks::of([e(1, 0.2), e(2, 0.5), e(3, 0.5), e(4, 0.1)]);
        assert_eq!(p.epochs, 4);
        assert_eq!(p.final_epoch.as_ref().unwrap().epoch, 4);
        assert_eq!(p.best_val_epoch.as_ref().unwrap().epoch, 2);
        assert!(p.final_epoch.unwrap().layers.is_empty());
        assert_eq!(Picks::of::<EpochReport>([]), Picks::default());
    }
}
