//! `--format json` of `sweep ls`, `sweep status` and `sweep trial`: stable keys (listed
//! on each function and in the README), numbers as JSON numbers, and `null` for what is
//! absent, NaN or infinite.

use crate::export::state_name as trial_state;
use gradsweep_proto::*;
use serde_json::{Value, json};

/// A number, or `null` when NaN or infinite.
pub fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn sweep_state(s: SweepState) -> &'static str {
    match s {
        SweepState::Unspecified => "unknown",
        SweepState::Running => "running",
        SweepState::Finished => "finished",
        SweepState::Cancelled => "cancelled",
    }
}

fn counts(c: &TrialCounts) -> Value {
    json!({
        "pending": c.pending,
        "running": c.leased,
        "succeeded": c.succeeded,
        "diverged": c.diverged,
        "failed": c.failed,
        "cancelled": c.cancelled,
    })
}

/// A sweep: `id`, `name`, `state` (running, finished, cancelled), `created_unix_ms`,
/// `trial_count`, `done`, `counts` {pending, running, succeeded, diverged, failed,
/// cancelled}, `axes` [{key, labels}], `seeds`, `dataset_fingerprint` (null until a
/// trial finished).
pub fn sweep(s: &Sweep) -> Value {
    let c = s.counts.unwrap_or_default();
    json!({
        "id": s.id,
        "name": s.name,
        "state": sweep_state(s.state()),
        "created_unix_ms": s.created_unix_ms,
        "trial_count": s.trial_count,
        "done": c.succeeded + c.diverged + c.failed + c.cancelled,
        "counts": counts(&c),
        "axes": s.axes.iter().map(|a| json!({"key": a.key, "labels": a.labels})).collect::<Vec<_>>(),
        "seeds": s.seeds,
        "dataset_fingerprint": if s.dataset_fingerprint.is_empty() {
            Value::Null
        } else {
            s.dataset_fingerprint.clone().into()
        },
    })
}

/// `sweep ls --format json`: `{"sweeps": [sweep…]}`, newest first (see [`sweep`]).
pub fn ls(sweeps: &[Sweep]) -> Value {
    json!({ "sweeps": sweeps.iter().map(sweep).collect::<Vec<_>>() })
}

/// `sweep status --format json`: [`sweep`]'s keys, plus `eta_seconds` (null unless
/// running with finished trials) and `running` [{index, worker_id, worker, device,
/// lease_deadline_unix_ms}].
pub fn status(s: &Sweep, running: &[RunningTrial], eta_seconds: Option<f64>) -> Value {
    let mut v = sweep(s);
    v["eta_seconds"] = eta_seconds.map_or(Value::Null, number);
    v["running"] = running
        .iter()
        .map(|t| {
            json!({
                "index": t.index,
                "worker_id": t.worker_id,
                "worker": if t.worker_name.is_empty() { Value::Null } else { t.worker_name.clone().into() },
                "device": t.device,
                "lease_deadline_unix_ms": t.lease_deadline_unix_ms,
            })
        })
        .collect();
    v
}

/// An epoch: `epoch`, `train_loss`, `train_accuracy`, `val_loss`, `val_accuracy`,
/// `test_loss`, `test_accuracy`, `penalty`, `seconds`, `layers` [{layer, weight_mean,
/// weight_std, grad_norm, grad_max_abs, update_ratio, change_since_start,
/// dead_fraction}].
pub fn epoch(e: &EpochReport) -> Value {
    json!({
        "epoch": e.epoch,
        "train_loss": number(e.train_loss),
        "train_accuracy": number(e.train_accuracy),
        "val_loss": number(e.val_loss),
        "val_accuracy": number(e.val_accuracy),
        "test_loss": number(e.test_loss),
        "test_accuracy": number(e.test_accuracy),
        "penalty": number(e.penalty),
        "seconds": number(e.seconds),
        "layers": e.layers.iter().map(|l| json!({
            "layer": l.layer,
            "weight_mean": number(l.weight_mean),
            "weight_std": number(l.weight_std),
            "grad_norm": number(l.grad_norm),
            "grad_max_abs": number(l.grad_max_abs),
            "update_ratio": number(l.update_ratio),
            "change_since_start": number(l.change_since_start),
            "dead_fraction": l.dead_fraction.map_or(Value::Null, number),
        })).collect::<Vec<_>>(),
    })
}

fn tolerance(t: Option<&Tolerance>) -> Value {
    t.map_or(
        Value::Null,
        |t| json!({"atol": number(t.atol), "rtol": number(t.rtol), "eps": number(t.eps)}),
    )
}

fn check_layers(layers: &[LayerGradCheck]) -> Value {
    layers
        .iter()
        .map(|l| {
            json!({
                "layer": l.layer,
                "checked": l.checked,
                "max_abs_error": number(l.max_abs_error),
                "max_rel_error": number(l.max_rel_error),
                "passed": l.passed,
                "elementwise_passed": l.elementwise_passed,
                "tensors": l.tensors.iter().map(|t| json!({
                    "param": t.param,
                    "entries": t.entries,
                    "grad_rms": number(t.grad_rms),
                    "directions": t.directions,
                    "rel_error": number(t.rel_error),
                    "passed": t.passed,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn gradcheck(g: Option<&GradCheck>) -> Value {
    g.map_or(Value::Null, |g| {
        json!({
            "stage": g.stage,
            "passed": g.passed,
            "batch": g.batch,
            "criterion": g.criterion,
            "tolerance": tolerance(g.tolerance.as_ref()),
            "directional_rtol": number(g.directional_rtol),
            "layers": check_layers(&g.layers),
            "device": if g.device.is_empty() {
                Value::Null
            } else {
                json!({
                    "device": g.device,
                    "passed": g.device_passed,
                    "tolerance": tolerance(g.device_tolerance.as_ref()),
                    "layers": check_layers(&g.device_layers),
                })
            },
        })
    })
}

fn attempt_end(kind: AttemptEndKind) -> &'static str {
    match kind {
        AttemptEndKind::Unspecified => "ended",
        AttemptEndKind::Error => "error",
        AttemptEndKind::Expired => "lease_expired",
        AttemptEndKind::HandedBack => "handed_back",
        AttemptEndKind::DatasetMismatch => "dataset_mismatch",
        AttemptEndKind::Retried => "retried",
    }
}

/// `sweep trial --format json`: `sweep_id`, `index`, `key`, `state` (pending, running,
/// succeeded, diverged, failed, cancelled), `values` {axis: label}, `seed`, `attempt`,
/// `failures`, `lost`, `worker_id` (null when none), `error` (null when none),
/// `config_toml`, `history` [{attempt, ended (error, lease_expired, handed_back,
/// dataset_mismatch, retried), worker_id, worker, reason, ended_unix_ms}], `epochs`
/// [epoch…] (see [`epoch`]), `result` (null until finished): {outcome (completed,
/// diverged), diverged_epoch, worker, device, seconds, dataset_fingerprint, verdicts
/// [{name, flagged, reason, criterion, value, threshold, below}], gradcheck_initial,
/// gradcheck (each null or {stage, passed, batch, criterion, tolerance {atol, rtol,
/// eps}, directional_rtol, layers [{layer, checked, max_abs_error, max_rel_error,
/// passed, elementwise_passed, tensors [{param, entries, grad_rms, directions,
/// rel_error, passed}]}], device (null or {device, passed, tolerance, layers})}),
/// gradcheck_skipped (null or why)}.
pub fn trial(detail: &TrialDetail, axes: &[Axis]) -> Value {
    let t = detail.trial.clone().unwrap_or_default();
    let values: serde_json::Map<String, Value> = axes
        .iter()
        .zip(&t.choice)
        .map(|(a, &c)| {
            (
                a.key.clone(),
                a.labels
                    .get(c as usize)
                    .map_or(Value::Null, |l| l.clone().into()),
            )
        })
        .collect();
    let result = t.result.as_ref().map_or(Value::Null, |r| {
        let (outcome, diverged_epoch) = match r.outcome.as_ref().and_then(|o| o.kind.as_ref()) {
            Some(outcome::Kind::Completed(_)) => ("completed".into(), Value::Null),
            Some(outcome::Kind::Diverged(d)) => ("diverged".into(), d.epoch.into()),
            None => (Value::Null, Value::Null),
        };
        json!({
            "outcome": outcome,
            "diverged_epoch": diverged_epoch,
            "worker": r.worker_name,
            "device": r.device,
            "seconds": number(r.seconds),
            "dataset_fingerprint": r.dataset_fingerprint,
            "verdicts": r.verdicts.iter().map(|v| json!({
                "name": v.name,
                "flagged": v.flagged,
                "reason": v.reason,
                "criterion": v.criterion,
                "value": number(v.value),
                "threshold": number(v.threshold),
                "below": v.below,
            })).collect::<Vec<_>>(),
            "gradcheck_initial": gradcheck(r.gradcheck_initial.as_ref()),
            "gradcheck": gradcheck(r.gradcheck.as_ref()),
            "gradcheck_skipped": if r.gradcheck_skipped.is_empty() {
                Value::Null
            } else {
                r.gradcheck_skipped.clone().into()
            },
        })
    });
    json!({
        "sweep_id": t.sweep_id,
        "index": t.index,
        "key": t.key,
        "state": trial_state(t.state()),
        "values": values,
        "seed": t.seed,
        "attempt": t.attempt,
        "failures": t.failures,
        "lost": t.lost,
        "worker_id": if t.worker_id == 0 { Value::Null } else { t.worker_id.into() },
        "error": if t.error.is_empty() { Value::Null } else { t.error.clone().into() },
        "config_toml": t.config_toml,
        "history": t.history.iter().map(|h| json!({
            "attempt": h.attempt,
            "ended": attempt_end(h.kind()),
            "worker_id": h.worker_id,
            "worker": if h.worker_name.is_empty() { Value::Null } else { h.worker_name.clone().into() },
            "reason": h.reason,
            "ended_unix_ms": h.ended_unix_ms,
        })).collect::<Vec<_>>(),
        "epochs": detail.epochs.iter().map(epoch).collect::<Vec<_>>(),
        "result": result,
    })
}

/// Pretty JSON text with a final newline.
pub fn text(v: &Value) -> String {
    let mut out = serde_json::to_string_pretty(v).expect("JSON of plain values");
    out.push('\n');
    out
}
