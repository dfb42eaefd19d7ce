//! Comparison tables: rows are combinations of chosen axes, each metric aggregated as
//! mean ± std (sample standard deviation) over the `SUCCEEDED` trials of the row — over
//! seeds and over the axes not chosen.
//!
//! A trial contributes its final epoch, or its best-validation-accuracy epoch (the
//! earliest on ties) on request. Diverged, failed and unfinished trials contribute
//! nothing (their count is missing from `count`). Built in one pass over the sweep's
//! compact records ([`Summary`]): no epoch is read.

use crate::Error;
use crate::summary::Summary;
use gradsweep_proto::{EpochReport, MetricStat, Sweep, Table, TableRow, TrialState, VerdictCount};
use std::collections::BTreeMap;

/// The metrics a table can show: the six numbers of every epoch, and `penalty`.
pub const METRICS: [&str; 7] = [
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "penalty",
];

/// The value of `metric` in `report`.
pub fn metric(report: &EpochReport, metric: &str) -> Option<f64> {
    Some(match metric {
        "train_loss" => report.train_loss,
        "train_accuracy" => report.train_accuracy,
        "val_loss" => report.val_loss,
        "val_accuracy" => report.val_accuracy,
        "test_loss" => report.test_loss,
        "test_accuracy" => report.test_accuracy,
        "penalty" => report.penalty,
        _ => return None,
    })
}

/// Builds the table of `sweep` from its trials' summaries: `rows` are axis keys
/// (empty: every axis), `metrics` are names from [`METRICS`] (empty: the six numbers).
pub fn build(
    sweep: &Sweep,
    trials: impl IntoIterator<Item = Result<Summary, Error>>,
    rows: &[String],
    metrics: &[String],
    best_val_epoch: bool,
) -> Result<Table, Error> {
    let axis_keys: Vec<&str> = sweep.axes.iter().map(|a| a.key.as_str()).collect();
    let chosen: Vec<usize> = if rows.is_empty() {
        (0..sweep.axes.len()).collect()
    } else {
        rows.iter()
            .map(|r| {
                axis_keys.iter().position(|k| k == r).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "rows: \"{r}\" is not an axis of sweep {}; its axes are {}",
                        sweep.id,
                        if axis_keys.is_empty() {
                            "none".to_owned()
                        } else {
                            axis_keys.join(", ")
                        }
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let metrics: Vec<String> = if metrics.is_empty() {
        METRICS[..6].iter().map(|m| m.to_string()).collect()
    } else {
        for m in metrics {
            if !METRICS.contains(&m.as_str()) {
                return Err(Error::BadRequest(format!(
                    "metrics: unknown metric \"{m}\"; expected one of {}",
                    METRICS.join(", ")
                )));
            }
        }
        metrics.to_vec()
    };
    // Row key: the chosen axes' value indices, so rows sort in the spec's order.
    // Per row: the succeeded trials' metric values, and [diverged, failed, cancelled,
    // unfinished] counts.
    // And per row, each verdict's flagged and reported counts.
    type Group = (Vec<Vec<f64>>, [u32; 4], Vec<VerdictCount>);
    let mut groups: BTreeMap<Vec<u32>, Group> = BTreeMap::new();
    for trial in trials {
        let trial = trial?;
        let key: Vec<u32> = chosen
            .iter()
            .map(|&a| trial.choice.get(a).copied().unwrap_or(0))
            .collect();
        let (values, excluded, verdicts) = groups.entry(key).or_default();
        if matches!(trial.state(), TrialState::Succeeded | TrialState::Diverged) {
            count_verdicts(verdicts, &trial);
        }
        let slot = match trial.state() {
            TrialState::Succeeded => None,
            TrialState::Diverged => Some(0),
            TrialState::Failed => Some(1),
            TrialState::Cancelled => Some(2),
            _ => Some(3),
        };
        if let Some(slot) = slot {
            excluded[slot] += 1;
            continue;
        }
        if let Some(report) = trial.pick(best_val_epoch) {
            values.push(
                metrics
                    .iter()
                    .map(|m| metric(report, m).unwrap_or(f64::NAN))
                    .collect(),
            );
        }
    }
    let rows = groups
        .into_iter()
        .map(|(key, (values, excluded, verdicts))| TableRow {
            verdicts,
            diverged: excluded[0],
            failed: excluded[1],
            cancelled: excluded[2],
            unfinished: excluded[3],
            values: key
                .iter()
                .zip(&chosen)
                .map(|(&v, &a)| {
                    sweep.axes[a]
                        .labels
                        .get(v as usize)
                        .cloned()
                        .unwrap_or_default()
                })
                .collect(),
            stats: metrics
                .iter()
                .enumerate()
                .map(|(m, name)| {
                    let xs: Vec<f64> = values.iter().map(|v| v[m]).collect();
                    let (mean, std) = mean_std(&xs);
                    MetricStat {
                        metric: name.clone(),
                        mean,
                        std: (xs.len() >= 2).then_some(std),
                        count: xs.len() as u32,
                    }
                })
                .collect(),
        })
        .collect();
    Ok(Table {
        sweep_id: sweep.id,
        axes: chosen.iter().map(|&a| axis_keys[a].to_owned()).collect(),
        metrics,
        rows,
    })
}

/// Adds a finished trial's verdicts to a row's counts (in the order first reported).
fn count_verdicts(counts: &mut Vec<VerdictCount>, trial: &Summary) {
    for v in &trial.verdicts {
        let i = match counts.iter().position(|c| c.name == v.name) {
            Some(i) => i,
            None => {
                counts.push(VerdictCount {
                    name: v.name.clone(),
                    ..VerdictCount::default()
                });
                counts.len() - 1
            }
        };
        counts[i].of += 1;
        counts[i].flagged += u32::from(v.flagged);
    }
}

/// Mean and sample standard deviation (0 for fewer than two values; NaN mean for none).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::Picks;
    use gradsweep_proto::{Axis, Trial};

    fn sweep() -> Sweep {
        Sweep {
            id: 7,
            axes: vec![
                Axis {
                    key: "activation".into(),
                    labels: vec!["relu".into(), "tanh".into()],
                },
                Axis {
                    key: "batchnorm".into(),
                    labels: vec!["false".into(), "true".into()],
                },
            ],
            ..Sweep::default()
        }
    }

    fn trial(index: u32, choice: [u32; 2], state: TrialState) -> Trial {
        let mut t = Trial {
            index,
            choice: choice.to_vec(),
            ..Trial::default()
        };
        t.set_state(state);
        t
    }

    /// Test accuracy = index / 10; two epochs, the first with the higher val accuracy.
    fn epochs(t: &Trial) -> Result<Vec<EpochReport>, Error> {
        Ok(vec![
            EpochReport {
                epoch: 1,
                val_accuracy: 0.9,
                test_accuracy: 0.0,
                ..EpochReport::default()
            },
            EpochReport {
                epoch: 2,
                val_accuracy: 0.5,
                test_accuracy: f64::from(t.index) / 10.0,
                ..EpochReport::default()
            },
        ])
    }

    /// The trials' summaries, with `epochs` as their stored epochs.
    fn sums(trials: &[Trial]) -> Vec<Result<Summary, Error>> {
        trials
            .iter()
            .map(|t| Ok(Summary::of(t, Some(&Picks::of(epochs(t).unwrap())))))
            .collect()
    }

    fn trials() -> Vec<Trial> {
        vec![
            trial(0, [0, 0], TrialState::Succeeded),
            trial(1, [0, 0], TrialState::Succeeded),
            trial(2, [0, 1], TrialState::Succeeded),
            trial(3, [0, 1], TrialState::Diverged),
            trial(4, [1, 0], TrialState::Succeeded),
            trial(5, [1, 0], TrialState::Succeeded),
            trial(6, [1, 1], TrialState::Pending),
            trial(7, [1, 1], TrialState::Failed),
        ]
    }

    #[test]
    fn rows_aggregate_over_seeds_and_other_axes() {
        let m = vec!["test_accuracy".to_string()];
        let t = build(&sweep(), sums(&trials()), &[], &m, false).unwrap();
        assert_eq!(t.axes, ["activation", "batchnorm"]);
        assert_eq!(t.rows.len(), 4);
        assert_eq!(t.rows[0].values, ["relu", "false"]);
        let s = &t.rows[0].stats[0];
        assert_eq!(s.count, 2);
        assert!((s.mean - 0.05).abs() < 1e-12);
        assert!((s.std.unwrap() - (0.005f64).sqrt()).abs() < 1e-12);
        assert_eq!(t.rows[1].stats[0].count, 1);
        assert_eq!(t.rows[1].stats[0].std, None);
        assert_eq!(t.rows[3].values, ["tanh", "true"]);
        assert_eq!(t.rows[3].stats[0].count, 0);
        assert!(t.rows[3].stats[0].mean.is_nan());
        // Trials outside the stats are counted as what they are.
        assert_eq!(t.rows[1].diverged, 1);
        assert_eq!((t.rows[3].failed, t.rows[3].unfinished), (1, 1));
        assert_eq!((t.rows[0].diverged, t.rows[0].failed), (0, 0));

        // One axis: the other is aggregated over.
        let t = build(&sweep(), sums(&trials()), &["activation".into()], &m, false).unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[1].values, ["tanh"]);
        assert_eq!(t.rows[1].stats[0].count, 2);
        assert!((t.rows[1].stats[0].mean - 0.45).abs() < 1e-12);

        // Best validation epoch.
        let t = build(&sweep(), sums(&trials()), &["activation".into()], &m, true).unwrap();
        assert_eq!(t.rows[0].stats[0].mean, 0.0);

        // The six numbers by default.
        let t = build(&sweep(), sums(&trials()), &[], &[], false).unwrap();
        assert_eq!(t.metrics.len(), 6);
    }

    #[test]
    fn rows_count_each_verdict_over_their_finished_trials() {
        use gradsweep_proto::{TrialResult, Verdict};
        let verdict = |name: &str, flagged: bool| Verdict {
            name: name.into(),
            flagged,
            ..Verdict::default()
        };
        let mut trials = trials();
        for t in &mut trials {
            // Trial 0 stagnant, trial 3 (diverged) flagged as divergence; the pending and
            // failed trials report nothing.
            t.result = Some(TrialResult {
                verdicts: vec![
                    verdict("stagnant_loss", t.index == 0),
                    verdict("divergence", t.index == 3),
                ],
                ..TrialResult::default()
            });
        }
        let t = build(&sweep(), sums(&trials), &[], &[], false).unwrap();
        let counts = |row: usize| -> Vec<(String, u32, u32)> {
            t.rows[row]
                .verdicts
                .iter()
                .map(|v| (v.name.clone(), v.flagged, v.of))
                .collect()
        };
        assert_eq!(
            counts(0),
            [("stagnant_loss".into(), 1, 2), ("divergence".into(), 0, 2)]
        );
        assert_eq!(
            counts(1),
            [("stagnant_loss".into(), 0, 2), ("divergence".into(), 1, 2)]
        );
        // Pending and failed trials count in no verdict.
        assert!(counts(3).is_empty());
    }

    #[test]
    fn bad_requests_name_the_field() {
        let e = build(&sweep(), sums(&trials()), &["colour".into()], &[], false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "rows: \"colour\" is not an axis of sweep 7; its axes are activation, batchnorm"
        );
        let e = build(&sweep(), sums(&trials()), &[], &["f1".into()], false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("metrics: unknown metric \"f1\"; expected one of train_loss"));
    }
}
