//! Conversions from the worker's records to the wire types of `gradsweep_proto`.

use crate::report::{EpochReport, GradCheckReport, LayerGradCheck, Outcome, Verdicts};
use crate::trial::TrialRecord;
use gradsweep_kernels::gradcheck::Tolerance;
use gradsweep_proto as wire;

/// One epoch's report on the wire.
pub fn epoch(report: &EpochReport) -> wire::EpochReport {
    wire::EpochReport {
        epoch: report.epoch,
        train_loss: report.train_loss,
        train_accuracy: report.train_acc,
        val_loss: report.val_loss,
        val_accuracy: report.val_acc,
        test_loss: report.test_loss,
        test_accuracy: report.test_acc,
        penalty: report.penalty,
        seconds: report.seconds,
        layers: report
            .layers
            .iter()
            .map(|l| wire::LayerDiagnostics {
                layer: l.layer.clone(),
                weight_mean: l.weight_mean,
                weight_std: l.weight_std,
                grad_norm: l.grad_norm,
                grad_max_abs: l.grad_max_abs,
                update_ratio: l.update_ratio,
                change_since_start: l.change_since_start,
                dead_fraction: l.dead_fraction,
            })
            .collect(),
    }
}

fn outcome(outcome: &Outcome) -> wire::Outcome {
    wire::Outcome {
        kind: Some(match *outcome {
            Outcome::Completed => wire::outcome::Kind::Completed(wire::Completed {}),
            Outcome::Diverged { epoch } => wire::outcome::Kind::Diverged(wire::Diverged { epoch }),
        }),
    }
}

fn verdicts(v: &Verdicts) -> Vec<wire::Verdict> {
    v.all()
        .into_iter()
        .map(|(name, v)| wire::Verdict {
            name: name.to_owned(),
            flagged: v.flagged,
            reason: v.reason.clone(),
            criterion: v.criterion.clone(),
            value: v.value,
            threshold: v.threshold,
            below: v.below,
        })
        .collect()
}

fn tolerance(t: &Tolerance) -> wire::Tolerance {
    wire::Tolerance {
        atol: t.atol,
        rtol: t.rtol,
        eps: t.eps,
    }
}

fn layers(layers: &[LayerGradCheck]) -> Vec<wire::LayerGradCheck> {
    layers
        .iter()
        .map(|l| wire::LayerGradCheck {
            layer: l.layer.clone(),
            checked: l.checked as u32,
            max_abs_error: l.max_abs_error,
            max_rel_error: l.max_rel_error,
            passed: l.passed,
            elementwise_passed: l.elementwise_passed,
            tensors: l
                .tensors
                .iter()
                .map(|t| wire::TensorCheck {
                    param: t.param.clone(),
                    entries: t.entries as u64,
                    grad_rms: t.grad_rms,
                    directions: t.directions as u32,
                    rel_error: t.rel_error,
                    passed: t.passed,
                })
                .collect(),
        })
        .collect()
}

fn gradcheck(g: &GradCheckReport) -> wire::GradCheck {
    let mut out = wire::GradCheck {
        tolerance: Some(tolerance(&g.tolerance)),
        batch: g.batch as u32,
        layers: layers(&g.layers),
        passed: g.passed,
        stage: g.stage.clone(),
        criterion: g.criterion.clone(),
        directional_rtol: g.directional.rtol,
        ..wire::GradCheck::default()
    };
    if let Some(d) = &g.device {
        out.device = d.device.clone();
        out.device_tolerance = Some(tolerance(&d.tolerance));
        out.device_layers = layers(&d.layers);
        out.device_passed = d.passed;
    }
    out
}

/// A finished trial's result on the wire (its epochs travel one by one, before).
pub fn result(record: &TrialRecord, worker_name: &str) -> wire::TrialResult {
    wire::TrialResult {
        outcome: Some(outcome(&record.outcome)),
        verdicts: verdicts(&record.verdicts),
        gradcheck: record.gradcheck.as_ref().map(gradcheck),
        gradcheck_initial: record.gradcheck_initial.as_ref().map(gradcheck),
        gradcheck_skipped: record.gradcheck_skipped.clone().unwrap_or_default(),
        dataset_fingerprint: record.dataset.fingerprint.clone(),
        device: record.device.clone(),
        worker_name: worker_name.to_owned(),
        epochs: record.epochs.len() as u32,
        seconds: record.seconds,
    }
}
