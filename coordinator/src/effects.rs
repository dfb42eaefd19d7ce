//! Each axis's effect on one metric (`GetEffects`, `sweep table --effects`), every axis
//! in one pass over the sweep's compact records ([`Summary`]).
//!
//! Per value of an axis: the metric's mean and sample std over the `SUCCEEDED` trials
//! with that value (every other axis and the seeds pooled; std absent under two
//! trials), and how many of its trials diverged, failed, were cancelled or are
//! unfinished. Values are ordered best first in the metric's direction (accuracies:
//! higher is better; losses and the penalty: lower), values without a mean last. An
//! axis's `spread` is its best mean minus its worst (in the metric's direction, so
//! never negative; absent under two means); its `lost_fraction` is the largest share,
//! over its values, of the value's ended trials (succeeded, diverged or failed) that
//! diverged or failed. Axes are ranked by `lost_fraction`, then by spread: an axis
//! with a value that diverges every time ranks first, whatever the spread.

use crate::Error;
use crate::summary::Summary;
use crate::table::{METRICS, mean_std, metric};
use gradsweep_proto::{AxisEffect, EffectValue, Effects, MetricStat, Sweep, TrialState};
use std::cmp::Ordering;

/// The metric used when a request names none.
pub const DEFAULT_METRIC: &str = "test_accuracy";

/// Whether higher values of `metric` are better (accuracies) or lower (the rest).
pub fn higher_is_better(metric: &str) -> bool {
    metric.ends_with("accuracy")
}

#[derive(Default)]
struct Value {
    xs: Vec<f64>,
    diverged: u32,
    failed: u32,
    cancelled: u32,
    unfinished: u32,
}

/// The effects of `sweep`'s axes on `metric` (empty: [`DEFAULT_METRIC`]), from its
/// trials' summaries.
pub fn build(
    sweep: &Sweep,
    trials: impl IntoIterator<Item = Result<Summary, Error>>,
    metric_name: &str,
    best_val_epoch: bool,
) -> Result<Effects, Error> {
    let metric_name = if metric_name.is_empty() {
        DEFAULT_METRIC
    } else {
        metric_name
    };
    if !METRICS.contains(&metric_name) {
        return Err(Error::BadRequest(format!(
            "metric: unknown metric \"{metric_name}\"; expected one of {}",
            METRICS.join(", ")
        )));
    }
    let higher = higher_is_better(metric_name);
    let mut axes: Vec<Vec<Value>> = sweep
        .axes
        .iter()
        .map(|a| (0..a.labels.len()).map(|_| Value::default()).collect())
        .collect();
    for trial in trials {
        let trial = trial?;
        let x = match trial.state() {
            TrialState::Succeeded => trial
                .pick(best_val_epoch)
                .and_then(|r| metric(r, metric_name)),
            _ => None,
        };
        for (a, values) in axes.iter_mut().enumerate() {
            let Some(v) = trial
                .choice
                .get(a)
                .and_then(|&c| values.get_mut(c as usize))
            else {
                continue;
            };
            match trial.state() {
                TrialState::Succeeded => v.xs.extend(x),
                TrialState::Diverged => v.diverged += 1,
                TrialState::Failed => v.failed += 1,
                TrialState::Cancelled => v.cancelled += 1,
                _ => v.unfinished += 1,
            }
        }
    }
    // Better first; values without a mean last.
    let order = |a: f64, b: f64| -> Ordering {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) if higher => b.total_cmp(&a),
            (false, false) => a.total_cmp(&b),
        }
    };
    let mut out: Vec<AxisEffect> = Vec::with_capacity(axes.len());
    for (axis, values) in sweep.axes.iter().zip(axes) {
        let mut lost_fraction: f64 = 0.0;
        let mut effect: Vec<EffectValue> = values
            .into_iter()
            .zip(&axis.labels)
            .map(|(v, label)| {
                let ended = v.xs.len() as u32 + v.diverged + v.failed;
                if ended > 0 {
                    lost_fraction =
                        lost_fraction.max(f64::from(v.diverged + v.failed) / f64::from(ended));
                }
                let (mean, std) = mean_std(&v.xs);
                EffectValue {
                    label: label.clone(),
                    stat: Some(MetricStat {
                        metric: metric_name.to_owned(),
                        mean,
                        std: (v.xs.len() >= 2).then_some(std),
                        count: v.xs.len() as u32,
                    }),
                    diverged: v.diverged,
                    failed: v.failed,
                    cancelled: v.cancelled,
                    unfinished: v.unfinished,
                }
            })
            .collect();
        let mean = |v: &EffectValue| v.stat.as_ref().map_or(f64::NAN, |s| s.mean);
        effect.sort_by(|a, b| order(mean(a), mean(b)));
        let means: Vec<f64> = effect.iter().map(mean).filter(|m| !m.is_nan()).collect();
        let spread = match (means.first(), means.last()) {
            (Some(best), Some(worst)) if means.len() >= 2 => Some((best - worst).abs()),
            _ => None,
        };
        out.push(AxisEffect {
            key: axis.key.clone(),
            values: effect,
            spread,
            lost_fraction,
        });
    }
    out.sort_by(|a, b| {
        b.lost_fraction
            .total_cmp(&a.lost_fraction)
            .then_with(|| match (a.spread, b.spread) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            })
    });
    Ok(Effects {
        sweep_id: sweep.id,
        metric: metric_name.to_owned(),
        higher_is_better: higher,
        axes: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradsweep_proto::{Axis, EpochReport};

    fn sweep() -> Sweep {
        Sweep {
            id: 3,
            axes: vec![
                Axis {
                    key: "activation".into(),
                    labels: vec!["relu".into(), "tanh".into(), "sigmoid".into()],
                },
                Axis {
                    key: "lr".into(),
                    labels: vec!["0.1".into(), "10".into()],
                },
            ],
            ..Sweep::default()
        }
    }

    fn summary(choice: [u32; 2], state: TrialState, loss: f64) -> Result<Summary, Error> {
        let report = EpochReport {
            test_loss: loss,
            test_accuracy: 1.0 - loss,
            ..EpochReport::default()
        };
        Ok(Summary {
            choice: choice.to_vec(),
            state: state as i32,
            final_epoch: Some(report.clone()),
            best_val_epoch: Some(report),
            ..Summary::default()
        })
    }

    fn trials() -> Vec<Result<Summary, Error>> {
        use TrialState::*;
        vec![
            summary([0, 0], Succeeded, 0.1),
            summary([0, 0], Succeeded, 0.3),
            summary([1, 0], Succeeded, 0.5),
            summary([2, 0], Succeeded, 0.9),
            summary([0, 1], Diverged, 0.0),
            summary([1, 1], Diverged, 0.0),
            summary([2, 1], Failed, 0.0),
            summary([2, 1], Pending, 0.0),
            summary([1, 1], Cancelled, 0.0),
        ]
    }

    #[test]
    fn a_value_that_always_diverges_ranks_its_axis_first() {
        let e = build(&sweep(), trials(), "test_loss", false).unwrap();
        assert!(!e.higher_is_better);
        assert_eq!(e.axes[0].key, "lr");
        assert_eq!(e.axes[0].lost_fraction, 1.0);
        // Only lr=0.1 has a mean: no spread; lr=10 comes last, with its counts.
        assert_eq!(e.axes[0].spread, None);
        let v = &e.axes[0].values;
        assert_eq!((v[0].label.as_str(), v[1].label.as_str()), ("0.1", "10"));
        assert_eq!(
            (v[1].diverged, v[1].failed, v[1].cancelled, v[1].unfinished),
            (2, 1, 1, 1)
        );
        assert_eq!(v[1].stat.as_ref().unwrap().count, 0);
        assert!(v[1].stat.as_ref().unwrap().std.is_none());

        let a = &e.axes[1];
        assert_eq!(a.key, "activation");
        // Lower loss first: relu (0.2), tanh (0.5), sigmoid (0.9).
        let labels: Vec<&str> = a.values.iter().map(|v| v.label.as_str()).collect();
        assert_eq!(labels, ["relu", "tanh", "sigmoid"]);
        let relu = a.values[0].stat.as_ref().unwrap();
        assert!((relu.mean - 0.2).abs() < 1e-12);
        assert!((relu.std.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!(a.values[1].stat.as_ref().unwrap().std, None);
        assert!((a.spread.unwrap() - 0.7).abs() < 1e-12);
        // sigmoid: 1 failed of 2 ended; relu 1 of 3; tanh 1 of 2.
        assert_eq!(a.lost_fraction, 0.5);

        // Accuracies: higher first, spread still positive.
        let e = build(&sweep(), trials(), "", false).unwrap();
        assert_eq!(e.metric, "test_accuracy");
        assert!(e.higher_is_better);
        let labels: Vec<&str> = e.axes[1].values.iter().map(|v| v.label.as_str()).collect();
        assert_eq!(labels, ["relu", "tanh", "sigmoid"]);
        assert!((e.axes[1].spread.unwrap() - 0.7).abs() < 1e-12);
    }

    #[test]
    fn without_losses_axes_rank_by_spread() {
        let t = vec![
            summary([0, 0], TrialState::Succeeded, 0.1),
            summary([1, 0], TrialState::Succeeded, 0.2),
            summary([2, 1], TrialState::Succeeded, 0.9),
        ];
        let e = build(&sweep(), t, "test_accuracy", false).unwrap();
        assert_eq!(e.axes[0].key, "activation");
        assert!((e.axes[0].spread.unwrap() - 0.8).abs() < 1e-12);
        assert!((e.axes[1].spread.unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(e.axes[0].lost_fraction, 0.0);
    }

    #[test]
    fn an_unknown_metric_is_named() {
        let e = build(&sweep(), trials(), "f1", false).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("metric: unknown metric \"f1\"; expected one of train_loss"),
            "{e}"
        );
    }
}
