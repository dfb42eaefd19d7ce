//! What the figures and the report draw, aggregated while `ExportTrials` streams: one
//! [`Config`] per configuration (every axis value but the seed), holding per epoch the
//! mean and spread over its seeds, never the trials themselves.

use gradsweep_proto::{EpochReport, TrialExport, TrialState};
use std::collections::BTreeMap;

/// Mean and sample standard deviation, accumulated one value at a time (Welford).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stat {
    n: u32,
    mean: f64,
    m2: f64,
}

impl Stat {
    /// Adds `x`; a value that is not finite is not a measurement and is skipped.
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / f64::from(self.n);
        self.m2 += d * (x - self.mean);
    }

    /// How many values.
    pub fn count(&self) -> u32 {
        self.n
    }

    /// The mean; `None` without values.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then_some(self.mean)
    }

    /// The sample standard deviation; `None` with fewer than two values (as the
    /// coordinator's tables).
    pub fn std(&self) -> Option<f64> {
        (self.n > 1).then(|| (self.m2 / f64::from(self.n - 1)).max(0.0).sqrt())
    }
}

/// One quantity per epoch (index 0 = epoch 1), each over the configuration's seeds.
#[derive(Clone, Debug, Default)]
pub struct Series(pub Vec<Stat>);

impl Series {
    /// Adds `x` at 1-based `epoch` (skipped when not finite).
    pub fn push(&mut self, epoch: u32, x: f64) {
        if epoch == 0 || !x.is_finite() {
            return;
        }
        let i = epoch as usize - 1;
        if self.0.len() <= i {
            self.0.resize(i + 1, Stat::default());
        }
        self.0[i].push(x);
    }

    /// `(epoch, mean, std)` for every epoch with a value.
    pub fn points(&self) -> Vec<(u32, f64, Option<f64>)> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as u32 + 1, s.mean()?, s.std())))
            .collect()
    }
}

/// One Linear layer's diagnostics over a configuration's seeds.
#[derive(Clone, Debug, Default)]
pub struct LayerSeries {
    /// `linear1`, … as the worker names them.
    pub name: String,
    /// Per epoch.
    pub weight_mean: Series,
    /// Per epoch.
    pub weight_std: Series,
    /// Per epoch.
    pub grad_norm: Series,
    /// Per epoch: ‖W_end − W_start‖ / ‖W_start‖ over the epoch.
    pub update_ratio: Series,
    /// Per epoch: ‖W − W₀‖ / ‖W₀‖ since the initial weights.
    pub change: Series,
    /// Each trial's update ratio in its first epoch.
    pub first_update: Stat,
    /// Each trial's update ratio in its last finite epoch.
    pub last_update: Stat,
    /// Each trial's change since the start at its last finite epoch.
    pub final_change: Stat,
}

/// Where a diverged trial stopped: its last finite epoch (0 when it diverged in the
/// first) and the losses there.
#[derive(Clone, Debug, PartialEq)]
pub struct DivergedMark {
    /// The trial's index in the sweep.
    pub index: u32,
    /// Its seed.
    pub seed: u64,
    /// The epoch whose loss became non-finite (1-based; 0 when unknown).
    pub diverged_epoch: u32,
    /// The last epoch with a finite train loss (0: none).
    pub last_finite_epoch: u32,
    /// Train loss at that epoch.
    pub train_loss: Option<f64>,
    /// Validation loss at the last epoch where it was finite, with that epoch.
    pub val_loss: Option<(u32, f64)>,
}

/// A configuration: every axis value but the seed.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The label on each of the sweep's axes, in the sweep's axis order.
    pub values: Vec<String>,
    /// Per epoch over the seeds.
    pub train_loss: Series,
    /// Per epoch over the seeds.
    pub val_loss: Series,
    /// Per epoch over the seeds.
    pub train_accuracy: Series,
    /// Per epoch over the seeds.
    pub test_accuracy: Series,
    /// Per Linear layer, in the order reported.
    pub layers: Vec<LayerSeries>,
    /// The final epoch's accuracies of the SUCCEEDED trials (as `sweep table`).
    pub final_train_accuracy: Stat,
    /// The same, test accuracy.
    pub final_test_accuracy: Stat,
    /// Trials aggregated (succeeded and diverged).
    pub trials: u32,
    /// Of those, succeeded.
    pub succeeded: u32,
    /// Its diverged trials.
    pub diverged: Vec<DivergedMark>,
    /// Per verdict name, how many trials it flagged and the first such trial's index.
    pub flagged: BTreeMap<String, (u32, u32)>,
    /// The first succeeded trial's index (its gradient check stands for the config).
    pub first_succeeded: Option<u32>,
}

impl Config {
    /// Whether any trial of it diverged.
    pub fn any_diverged(&self) -> bool {
        !self.diverged.is_empty()
    }
}

/// The last epoch whose train loss is finite (0: none), and its value.
pub fn last_finite_epoch(epochs: &[EpochReport]) -> (u32, Option<f64>) {
    epochs
        .iter()
        .rev()
        .find(|e| e.train_loss.is_finite())
        .map_or((0, None), |e| (e.epoch, Some(e.train_loss)))
}

/// A sweep's trials aggregated per configuration, in the order of their first trial.
#[derive(Clone, Debug, Default)]
pub struct Study {
    /// The sweep's axes (trial keys), in its order.
    pub axes: Vec<String>,
    /// One per configuration seen.
    pub configs: Vec<Config>,
    index: BTreeMap<Vec<String>, usize>,
    /// Trials taken in (succeeded and diverged).
    pub trials: u32,
    /// Trials in another state, skipped.
    pub skipped: u32,
}

impl Study {
    /// An empty study of a sweep with these axes.
    pub fn new(axes: Vec<String>) -> Study {
        Study {
            axes,
            ..Study::default()
        }
    }

    /// Adds one trial (its epochs are read, then dropped by the caller).
    pub fn add(&mut self, t: &TrialExport) {
        let Some(s) = &t.summary else { return };
        let state = s.state();
        if state != TrialState::Succeeded && state != TrialState::Diverged {
            self.skipped += 1;
            return;
        }
        self.trials += 1;
        let slot = match self.index.get(&s.values) {
            Some(&i) => i,
            None => {
                self.configs.push(Config {
                    values: s.values.clone(),
                    ..Config::default()
                });
                self.index.insert(s.values.clone(), self.configs.len() - 1);
                self.configs.len() - 1
            }
        };
        let c = &mut self.configs[slot];
        c.trials += 1;
        for name in &s.flagged {
            let e = c.flagged.entry(name.clone()).or_insert((0, s.index));
            e.0 += 1;
        }
        for e in &t.epochs {
            c.train_loss.push(e.epoch, e.train_loss);
            c.val_loss.push(e.epoch, e.val_loss);
            c.train_accuracy.push(e.epoch, e.train_accuracy);
            c.test_accuracy.push(e.epoch, e.test_accuracy);
            for (i, l) in e.layers.iter().enumerate() {
                if c.layers.len() <= i {
                    c.layers.push(LayerSeries {
                        name: l.layer.clone(),
                        ..LayerSeries::default()
                    });
                }
                let ls = &mut c.layers[i];
                ls.weight_mean.push(e.epoch, l.weight_mean);
                ls.weight_std.push(e.epoch, l.weight_std);
                ls.grad_norm.push(e.epoch, l.grad_norm);
                ls.update_ratio.push(e.epoch, l.update_ratio);
                ls.change.push(e.epoch, l.change_since_start);
            }
        }
        // First and last finite epoch, per layer.
        let finite = |f: fn(&gradsweep_proto::LayerDiagnostics) -> f64, i: usize, rev: bool| {
            let mut it: Box<dyn Iterator<Item = &EpochReport>> = if rev {
                Box::new(t.epochs.iter().rev())
            } else {
                Box::new(t.epochs.iter())
            };
            it.find_map(|e| e.layers.get(i).map(f).filter(|x| x.is_finite()))
        };
        for (i, ls) in c.layers.iter_mut().enumerate() {
            if let Some(x) = finite(|l| l.update_ratio, i, false) {
                ls.first_update.push(x);
            }
            if let Some(x) = finite(|l| l.update_ratio, i, true) {
                ls.last_update.push(x);
            }
            if let Some(x) = finite(|l| l.change_since_start, i, true) {
                ls.final_change.push(x);
            }
        }
        if state == TrialState::Succeeded {
            c.succeeded += 1;
            c.first_succeeded.get_or_insert(s.index);
            if let Some(last) = t.epochs.last() {
                c.final_train_accuracy.push(last.train_accuracy);
                c.final_test_accuracy.push(last.test_accuracy);
            }
        } else {
            let (last, train_loss) = last_finite_epoch(&t.epochs);
            let val_loss = t
                .epochs
                .iter()
                .rev()
                .find(|e| e.val_loss.is_finite())
                .map(|e| (e.epoch, e.val_loss));
            c.diverged.push(DivergedMark {
                index: s.index,
                seed: s.seed,
                diverged_epoch: s.diverged_epoch,
                last_finite_epoch: last,
                train_loss,
                val_loss,
            });
        }
    }

    /// The index of axis `key`.
    pub fn axis(&self, key: &str) -> Option<usize> {
        self.axes.iter().position(|a| a == key)
    }

    /// The most epochs any configuration has.
    pub fn max_epoch(&self) -> u32 {
        self.configs
            .iter()
            .map(|c| c.train_loss.0.len().max(c.val_loss.0.len()) as u32)
            .max()
            .unwrap_or(0)
    }

    /// The most layers any configuration reports.
    pub fn layer_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for c in &self.configs {
            for (i, l) in c.layers.iter().enumerate() {
                if names.len() <= i {
                    names.push(l.name.clone());
                }
            }
        }
        names
    }

    /// `key=label` for the axes in `which`, joined by spaces (`all trials` when none).
    pub fn label(&self, c: &Config, which: &[usize]) -> String {
        let parts: Vec<String> = which
            .iter()
            .filter_map(|&i| Some(format!("{}={}", self.axes.get(i)?, c.values.get(i)?)))
            .collect();
        if parts.is_empty() {
            "all trials".into()
        } else {
            parts.join(" ")
        }
    }

    /// Final-epoch train and test accuracy of the SUCCEEDED trials per value of axis
    /// `key` (every other axis and the seeds pooled), in order of appearance; one group
    /// (`None` label) when the sweep did not vary it.
    pub fn accuracy_by(&self, key: &str) -> Vec<(Option<String>, Stat, Stat)> {
        let axis = self.axis(key);
        let mut out: Vec<(Option<String>, Stat, Stat)> = Vec::new();
        for c in &self.configs {
            let label = axis.and_then(|i| c.values.get(i).cloned());
            let slot = match out.iter().position(|(l, _, _)| *l == label) {
                Some(i) => i,
                None => {
                    out.push((label, Stat::default(), Stat::default()));
                    out.len() - 1
                }
            };
            merge(&mut out[slot].1, &c.final_train_accuracy);
            merge(&mut out[slot].2, &c.final_test_accuracy);
        }
        out
    }
}

/// Merges two Welford accumulators (Chan et al.).
pub fn merge(a: &mut Stat, b: &Stat) {
    if b.n == 0 {
        return;
    }
    if a.n == 0 {
        *a = *b;
        return;
    }
    let n = a.n + b.n;
    let d = b.mean - a.mean;
    let mean = a.mean + d * f64::from(b.n) / f64::from(n);
    let m2 = a.m2 + b.m2 + d * d * f64::from(a.n) * f64::from(b.n) / f64::from(n);
    *a = Stat { n, mean, m2 };
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradsweep_proto::{LayerDiagnostics, TrialSummary};

    fn epoch(n: u32, loss: f64, val: f64, acc: f64, grad: f64) -> EpochReport {
        EpochReport {
            epoch: n,
            train_loss: loss,
            train_accuracy: acc,
            val_loss: val,
            val_accuracy: acc,
            test_loss: val,
            test_accuracy: acc,
            layers: vec![LayerDiagnostics {
                layer: "linear1".into(),
                weight_mean: 0.0,
                weight_std: 0.1,
                grad_norm: grad,
                update_ratio: grad,
                change_since_start: f64::from(n) * grad,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn trial(
        index: u32,
        seed: u64,
        values: &[&str],
        state: TrialState,
        epochs: Vec<EpochReport>,
    ) -> TrialExport {
        TrialExport {
            summary: Some(TrialSummary {
                index,
                seed,
                values: values.iter().map(|v| v.to_string()).collect(),
                state: state as i32,
                diverged_epoch: if state == TrialState::Diverged {
                    epochs.len() as u32 + 1
                } else {
                    0
                },
                flagged: if values[0] == "sigmoid" {
                    vec!["vanishing_gradients".into()]
                } else {
                    vec![]
                },
                ..Default::default()
            }),
            epochs,
        }
    }

    #[test]
    fn stats_are_mean_and_sample_std_skipping_non_finite_values() {
        let mut s = Stat::default();
        assert_eq!(s.mean(), None);
        s.push(1.0);
        assert_eq!(s.mean(), Some(1.0));
        assert_eq!(s.std(), None, "a sample std needs two values");
        s.push(f64::NAN);
        s.push(f64::INFINITY);
        s.push(3.0);
        assert_eq!(s.count(), 2);
        assert_eq!(s.mean(), Some(2.0));
        assert!((s.std().unwrap() - 2f64.sqrt()).abs() < 1e-12);
        // Merging equals pushing everything into one.
        let mut a = Stat::default();
        let mut b = Stat::default();
        let mut all = Stat::default();
        for (i, x) in [0.5, 2.0, -1.0, 4.0, 7.5].into_iter().enumerate() {
            if i < 2 { &mut a } else { &mut b }.push(x);
            all.push(x);
        }
        merge(&mut a, &b);
        assert_eq!(a.count(), all.count());
        assert!((a.mean().unwrap() - all.mean().unwrap()).abs() < 1e-12);
        assert!((a.std().unwrap() - all.std().unwrap()).abs() < 1e-12);
    }

    #[test]
    fn bands_are_mean_and_std_over_seeds_per_configuration() {
        let mut study = Study::new(vec!["activation".into()]);
        for (i, (seed, act, loss)) in [
            (0, "relu", 1.0),
            (1, "relu", 3.0),
            (0, "sigmoid", 2.3),
            (1, "sigmoid", 2.3),
        ]
        .into_iter()
        .enumerate()
        {
            let epochs = (1..=3)
                .map(|n| epoch(n, loss / f64::from(n), loss, 0.5, 1e-3))
                .collect();
            study.add(&trial(
                i as u32,
                seed,
                &[act],
                TrialState::Succeeded,
                epochs,
            ));
        }
        assert_eq!(study.configs.len(), 2);
        let relu = &study.configs[0];
        assert_eq!(relu.values, ["relu"]);
        let p = relu.train_loss.points();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].0, 1);
        assert!((p[0].1 - 2.0).abs() < 1e-12);
        assert!((p[0].2.unwrap() - 2f64.sqrt()).abs() < 1e-12);
        // Epoch 2: losses 0.5 and 1.5.
        assert!((p[1].1 - 1.0).abs() < 1e-12);
        assert!((p[1].2.unwrap() - 0.5f64.sqrt()).abs() < 1e-12);
        let sigmoid = &study.configs[1];
        assert_eq!(sigmoid.trials, 2);
        assert!(sigmoid.val_loss.points()[0].2.unwrap().abs() < 1e-12);
        assert_eq!(sigmoid.flagged["vanishing_gradients"], (2, 2));
        assert_eq!(sigmoid.layers[0].final_change.mean(), Some(3e-3));
        assert_eq!(sigmoid.layers[0].first_update.mean(), Some(1e-3));
        assert_eq!(study.max_epoch(), 3);
        assert_eq!(study.layer_names(), ["linear1"]);
        assert_eq!(study.label(sigmoid, &[0]), "activation=sigmoid");
        assert_eq!(study.label(sigmoid, &[]), "all trials");
    }

    #[test]
    fn a_diverged_trial_ends_at_its_last_finite_epoch() {
        let epochs = vec![
            epoch(1, 2.0, 2.1, 0.3, 1.0),
            epoch(2, 5.0, f64::NAN, 0.1, f64::INFINITY),
        ];
        assert_eq!(last_finite_epoch(&epochs), (2, Some(5.0)));
        assert_eq!(last_finite_epoch(&[]), (0, None));
        let mut study = Study::new(vec!["activation".into()]);
        study.add(&trial(
            0,
            0,
            &["relu"],
            TrialState::Succeeded,
            vec![epoch(1, 1.0, 1.0, 0.9, 1.0), epoch(2, 0.5, 0.6, 0.95, 1.0)],
        ));
        study.add(&trial(1, 1, &["relu"], TrialState::Diverged, epochs));
        study.add(&trial(2, 2, &["relu"], TrialState::Diverged, vec![]));
        study.add(&trial(3, 3, &["relu"], TrialState::Failed, vec![]));
        assert_eq!(study.skipped, 1);
        let c = &study.configs[0];
        assert_eq!(c.trials, 3);
        assert_eq!(c.succeeded, 1);
        assert!(c.any_diverged());
        assert_eq!(
            c.diverged[0],
            DivergedMark {
                index: 1,
                seed: 1,
                diverged_epoch: 3,
                last_finite_epoch: 2,
                train_loss: Some(5.0),
                val_loss: Some((1, 2.1)),
            }
        );
        assert_eq!(c.diverged[1].last_finite_epoch, 0);
        assert_eq!(c.diverged[1].diverged_epoch, 1);
        // The NaN validation loss and the infinite gradient are not averaged in.
        let val = c.val_loss.points();
        assert_eq!(val[1].0, 2);
        assert_eq!(val[1].2, None);
        assert!((val[1].1 - 0.6).abs() < 1e-12);
        assert_eq!(c.layers[0].grad_norm.0[1].count(), 1);
        // Only the succeeded trial's final epoch counts in the accuracy (as the table).
        assert_eq!(c.final_test_accuracy.count(), 1);
        assert_eq!(c.final_test_accuracy.mean(), Some(0.95));
        let by = study.accuracy_by("regularization");
        assert_eq!(by.len(), 1);
        assert_eq!(by[0].0, None);
    }
}
