//! `sweep watch`: follows a sweep until it is finished or cancelled.
//!
//! On a terminal: a bar for the sweep and one per running trial, named by its
//! configuration (axis values and seed), with its last train loss and validation
//! accuracy (from `GetTrial`, at most once a second per trial). Elsewhere (a Slurm log,
//! `> file`): one line per trial that finishes while watching. Either way it ends with
//! a line of counts that names the command showing the table.

use crate::export::state_name;
use crate::{Client, Result, done_count, get_sweep};
use gradsweep_proto::*;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// How often a running trial's bar asks for its last epoch, at most.
const BAR_REFRESH: Duration = Duration::from_secs(1);
/// How often finished trials the events missed are looked up, at most.
const CATCH_UP: Duration = Duration::from_secs(5);

/// A trial's configuration: `activation=relu batchnorm=true seed=1`.
pub fn config_label(axes: &[Axis], choice: &[u32], seed: u64) -> String {
    let mut parts: Vec<String> = axes
        .iter()
        .zip(choice)
        .map(|(a, &c)| {
            format!(
                "{}={}",
                a.key,
                a.labels.get(c as usize).map_or("?", String::as_str)
            )
        })
        .collect();
    parts.push(format!("seed={seed}"));
    parts.join(" ")
}

/// The line for a finished trial: `trial 5 activation=relu seed=1: succeeded, train_loss
/// 0.1234, val_acc 0.8750, test_acc 0.8600; flagged: stagnant_loss`.
pub fn finished_line(s: &TrialSummary, axes: &[Axis]) -> String {
    let mut config: Vec<String> = axes
        .iter()
        .zip(&s.values)
        .map(|(a, v)| format!("{}={v}", a.key))
        .collect();
    config.push(format!("seed={}", s.seed));
    let mut line = format!(
        "trial {} {}: {}",
        s.index,
        config.join(" "),
        state_name(s.state())
    );
    if s.state() == TrialState::Diverged && s.diverged_epoch > 0 {
        line.push_str(&format!(" in epoch {}", s.diverged_epoch));
    }
    if let Some(e) = &s.final_epoch {
        line.push_str(&format!(
            ", train_loss {:.4}, val_acc {:.4}, test_acc {:.4}",
            e.train_loss, e.val_accuracy, e.test_accuracy
        ));
    }
    if !s.flagged.is_empty() {
        line.push_str(&format!("; flagged: {}", s.flagged.join(", ")));
    }
    if s.state() == TrialState::Failed && !s.error.is_empty() {
        line.push_str(&format!("; {}", s.error.replace('\n', " ")));
    }
    line.push('\n');
    line
}

/// What a finished line needs, from `GetTrial`'s answer.
fn summary_of(detail: &TrialDetail, axes: &[Axis]) -> TrialSummary {
    let t = detail.trial.clone().unwrap_or_default();
    let r = t.result.clone().unwrap_or_default();
    TrialSummary {
        index: t.index,
        values: axes
            .iter()
            .zip(&t.choice)
            .map(|(a, &c)| a.labels.get(c as usize).cloned().unwrap_or_default())
            .collect(),
        seed: t.seed,
        state: t.state,
        final_epoch: detail.epochs.last().cloned(),
        flagged: r
            .verdicts
            .iter()
            .filter(|v| v.flagged)
            .map(|v| v.name.clone())
            .collect(),
        diverged_epoch: match r.outcome.and_then(|o| o.kind) {
            Some(outcome::Kind::Diverged(d)) => d.epoch,
            _ => 0,
        },
        error: t.error,
        ..TrialSummary::default()
    }
}

fn finished(state: TrialState) -> bool {
    matches!(
        state,
        TrialState::Succeeded | TrialState::Diverged | TrialState::Failed | TrialState::Cancelled
    )
}

const FINAL_STATES: [TrialState; 4] = [
    TrialState::Succeeded,
    TrialState::Diverged,
    TrialState::Failed,
    TrialState::Cancelled,
];

/// The finished trials' summaries.
async fn finished_trials(client: &mut Client, id: u64) -> Result<Vec<TrialSummary>> {
    let mut stream = client
        .sweeps
        .list_trials(ListTrialsRequest {
            sweep_id: id,
            states: FINAL_STATES.iter().map(|s| *s as i32).collect(),
            filters: vec![],
        })
        .await
        .map_err(|s| client.status(s))?
        .into_inner();
    let mut out = Vec::new();
    while let Some(s) = stream.message().await.map_err(|s| client.status(s))? {
        out.push(s);
    }
    Ok(out)
}

/// Finished-trial lines: which were printed (or finished before the watch began).
struct Lines {
    seen: HashSet<u32>,
    last_catch_up: Instant,
    /// stdout went away: print nothing more.
    closed: bool,
}

impl Lines {
    fn print(&mut self, s: &TrialSummary, axes: &[Axis]) {
        if self.seen.insert(s.index) && !self.closed {
            self.closed = crate::print(&finished_line(s, axes)).is_err();
        }
    }

    /// Prints the finished trials the events did not name (the watch stream coalesces).
    async fn catch_up(&mut self, client: &mut Client, id: u64, axes: &[Axis]) -> Result<()> {
        self.last_catch_up = Instant::now();
        for s in finished_trials(client, id).await? {
            self.print(&s, axes);
        }
        Ok(())
    }
}

/// A running trial's bar and when its numbers were last asked for.
struct Running {
    bar: indicatif::ProgressBar,
    fetched: Option<Instant>,
}

/// `sweep watch`; with `lines`, one line per finished trial on stdout instead of bars
/// (for a stdout that is not a terminal). Returns the closing line.
pub async fn watch(client: &mut Client, id: u64, lines: bool) -> Result<String> {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    let sweep = get_sweep(client, id).await?;
    let axes = sweep.axes.clone();
    let mut printed = if lines {
        // Trials finished before the watch began are not news.
        let seen = finished_trials(client, id)
            .await?
            .iter()
            .map(|s| s.index)
            .collect();
        Some(Lines {
            seen,
            last_catch_up: Instant::now(),
            closed: false,
        })
    } else {
        None
    };
    let mut stream = client
        .sweeps
        .watch_sweep(WatchSweepRequest { sweep_id: id })
        .await
        .map_err(|s| client.status(s))?
        .into_inner();
    let multi = if lines {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    } else {
        MultiProgress::new()
    };
    let overall = multi.add(ProgressBar::new(u64::from(sweep.trial_count)));
    overall.set_style(
        ProgressStyle::with_template("sweep {prefix} [{bar:40}] {pos}/{len} trials {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    overall.set_prefix(id.to_string());
    let trial_style =
        ProgressStyle::with_template("  trial {prefix} [{bar:20}] epoch {pos}/{len} {msg}")
            .expect("template")
            .progress_chars("=> ");
    let mut running: BTreeMap<u32, Running> = BTreeMap::new();
    let mut last = sweep.clone();
    loop {
        let event = match stream.message().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(s) => return Err(client.status(s)),
        };
        let c = event.counts.unwrap_or_default();
        overall.set_position(u64::from(done_count(&c)));
        overall.set_message(format!(
            "({} running, {} diverged, {} failed)",
            c.leased, c.diverged, c.failed
        ));
        last.counts = Some(c);
        last.state = event.state;
        let state = event.trial_state();
        if state == TrialState::Leased && !lines {
            if let std::collections::btree_map::Entry::Vacant(slot) = running.entry(event.index) {
                let Ok(detail) = crate::get_trial(client, id, event.index).await else {
                    continue;
                };
                let t = detail.trial.clone().unwrap_or_default();
                let epochs = crate::config_epochs(&t.config_toml).unwrap_or(0);
                let bar = multi.add(ProgressBar::new(epochs));
                bar.set_style(trial_style.clone());
                bar.set_prefix(format!(
                    "{:>4} {}",
                    event.index,
                    config_label(&axes, &t.choice, t.seed)
                ));
                slot.insert(Running { bar, fetched: None });
            }
            let due = running
                .get(&event.index)
                .is_some_and(|r| r.fetched.is_none_or(|at| at.elapsed() >= BAR_REFRESH));
            if event.epoch > 0 && due {
                let detail = crate::get_trial(client, id, event.index).await.ok();
                if let (Some(r), Some(e)) = (
                    running.get_mut(&event.index),
                    detail.as_ref().and_then(|d| d.epochs.last()),
                ) {
                    r.fetched = Some(Instant::now());
                    r.bar.set_position(u64::from(e.epoch));
                    r.bar.set_message(format!(
                        "train_loss {:.4}  val_acc {:.2}%",
                        e.train_loss,
                        e.val_accuracy * 100.0
                    ));
                }
            } else if let Some(r) = running.get(&event.index) {
                r.bar
                    .set_position(u64::from(event.epoch).max(r.bar.position()));
            }
        } else if let Some(r) = running.remove(&event.index) {
            r.bar.finish_and_clear();
            multi.remove(&r.bar);
        }
        if let Some(p) = printed.as_mut() {
            if finished(state)
                && !p.seen.contains(&event.index)
                && let Ok(detail) = crate::get_trial(client, id, event.index).await
                && detail.trial.as_ref().is_some_and(|t| finished(t.state()))
            {
                p.print(&summary_of(&detail, &axes), &axes);
            }
            if (done_count(&c) as usize) > p.seen.len() && p.last_catch_up.elapsed() >= CATCH_UP {
                p.catch_up(client, id, &axes).await?;
            }
        }
    }
    for r in running.values() {
        r.bar.finish_and_clear();
    }
    overall.finish_and_clear();
    if let Some(p) = printed.as_mut() {
        p.catch_up(client, id, &axes).await?;
    }
    let c = last.counts.unwrap_or_default();
    Ok(format!(
        "sweep {id} {}: {} succeeded, {} diverged, {} failed, {} cancelled of {} trials; \
         the table: sweep table {id}\n",
        crate::state_name(last.state()),
        c.succeeded,
        c.diverged,
        c.failed,
        c.cancelled,
        last.trial_count
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_the_configuration_and_the_final_numbers() {
        let axes = vec![
            Axis {
                key: "activation".into(),
                labels: vec!["relu".into(), "sigmoid".into()],
            },
            Axis {
                key: "batchnorm".into(),
                labels: vec!["false".into(), "true".into()],
            },
        ];
        assert_eq!(
            config_label(&axes, &[1, 0], 2),
            "activation=sigmoid batchnorm=false seed=2"
        );
        let s = TrialSummary {
            index: 5,
            values: vec!["sigmoid".into(), "false".into()],
            seed: 2,
            state: TrialState::Succeeded as i32,
            final_epoch: Some(EpochReport {
                train_loss: 2.3,
                val_accuracy: 0.1,
                test_accuracy: 0.125,
                ..Default::default()
            }),
            flagged: vec!["stagnant_loss".into()],
            ..Default::default()
        };
        assert_eq!(
            finished_line(&s, &axes),
            "trial 5 activation=sigmoid batchnorm=false seed=2: succeeded, train_loss 2.3000, \
             val_acc 0.1000, test_acc 0.1250; flagged: stagnant_loss\n"
        );
    }
}
