//! `ListTrials` and `ExportTrials` over real gRPC on loopback, with a simulated worker:
//! summaries, filters, refusals, exports equal to `GetTrial`, and a reader that stops
//! early.

use gradsweep_coordinator::LeasePolicy;
use gradsweep_proto::sweep_service_client::SweepServiceClient;
use gradsweep_proto::worker_service_client::WorkerServiceClient;
use gradsweep_proto::*;
use tonic::Code;
use tonic::transport::Channel;

mod common;
use common::*;

/// relu s0, relu s1, tanh s0, tanh s1 (seeds vary fastest); two Linear layers.
const SPEC: &str = "name = \"export\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = 2\nhidden = [8]\nseeds = [0, 1]\n[grid]\nactivation = [\"relu\", \"tanh\"]\n";

fn epoch(index: u32, epoch: u32, val_accuracy: f64) -> EpochReport {
    let x = f64::from(index * 10 + epoch);
    let layer = |name: &str, k: f64| LayerDiagnostics {
        layer: name.into(),
        weight_mean: 0.01 * x + k,
        weight_std: 0.1 + k,
        grad_norm: 1e-3 * x,
        grad_max_abs: 2e-3 * x,
        update_ratio: 1e-4 * x,
        change_since_start: 0.5 * k,
        dead_fraction: Some(0.25),
    };
    EpochReport {
        epoch,
        train_loss: 2.0 / x,
        train_accuracy: 0.1 * f64::from(epoch),
        val_loss: 2.1 / x,
        val_accuracy,
        test_loss: 2.2 / x,
        test_accuracy: 0.05 * f64::from(epoch),
        penalty: 0.0,
        seconds: 0.5,
        layers: vec![layer("fc1", 0.0), layer("fc2", 1.0)],
    }
}

async fn report(
    workers: &mut WorkerServiceClient<Channel>,
    l: &TrialLease,
    w: u64,
    e: EpochReport,
) {
    workers
        .report_epoch(ReportEpochRequest {
            lease: Some(lref(l, w)),
            report: Some(e),
        })
        .await
        .unwrap();
}

fn result(outcome: outcome::Kind, epochs: u32, flagged: bool) -> TrialResult {
    TrialResult {
        outcome: Some(Outcome {
            kind: Some(outcome),
        }),
        verdicts: vec![
            Verdict {
                name: "stagnant_loss".into(),
                flagged,
                ..Verdict::default()
            },
            Verdict {
                name: "dead_relu".into(),
                flagged: false,
                ..Verdict::default()
            },
        ],
        dataset_fingerprint: "fp".into(),
        worker_name: "sim".into(),
        device: "cpu".into(),
        epochs,
        seconds: 1.25,
        ..TrialResult::default()
    }
}

async fn list(
    sweeps: &mut SweepServiceClient<Channel>,
    r: ListTrialsRequest,
) -> Result<Vec<TrialSummary>, tonic::Status> {
    let mut stream = sweeps.list_trials(r).await?.into_inner();
    let mut out = Vec::new();
    while let Some(s) = stream.message().await? {
        out.push(s);
    }
    Ok(out)
}

async fn export(
    sweeps: &mut SweepServiceClient<Channel>,
    r: ExportTrialsRequest,
) -> Result<Vec<TrialExport>, tonic::Status> {
    let mut stream = sweeps.export_trials(r).await?.into_inner();
    let mut out = Vec::new();
    while let Some(s) = stream.message().await? {
        out.push(s);
    }
    Ok(out)
}

fn filter(key: &str, label: &str) -> AxisFilter {
    AxisFilter {
        key: key.into(),
        label: label.into(),
    }
}

fn indexes(s: &[TrialSummary]) -> Vec<u32> {
    s.iter().map(|t| t.index).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trials_are_listed_filtered_and_exported_as_stored() {
    let server = start("export-flow", LeasePolicy::default()).await;
    let (mut sweeps, mut workers) = server.clients().await;
    let sweep = sweeps
        .submit_sweep(SubmitSweepRequest {
            spec_toml: SPEC.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap();
    let id = sweep.id;
    let w = register(&mut workers, "sim", 4).await;
    let leases = workers
        .lease(LeaseRequest {
            worker_id: w,
            max_trials: 4,
        })
        .await
        .unwrap()
        .into_inner()
        .leases;
    assert_eq!(leases.len(), 4);
    for l in &leases {
        match l.index {
            // Succeeded, flagged stagnant; its two epochs tie on val accuracy.
            0 => {
                report(&mut workers, l, w, epoch(0, 1, 0.5)).await;
                report(&mut workers, l, w, epoch(0, 2, 0.5)).await;
                workers
                    .complete(CompleteRequest {
                        lease: Some(lref(l, w)),
                        result: Some(result(outcome::Kind::Completed(Completed {}), 2, true)),
                    })
                    .await
                    .unwrap();
            }
            // Diverged in epoch 2.
            1 => {
                report(&mut workers, l, w, epoch(1, 1, 0.3)).await;
                workers
                    .complete(CompleteRequest {
                        lease: Some(lref(l, w)),
                        result: Some(result(
                            outcome::Kind::Diverged(Diverged { epoch: 2 }),
                            1,
                            false,
                        )),
                    })
                    .await
                    .unwrap();
            }
            // Fails below.
            2 => {}
            // Still running, one epoch in; its best is the first.
            _ => {
                report(&mut workers, l, w, epoch(3, 1, 0.7)).await;
            }
        }
    }
    // Trial 2 fails three times: FAILED.
    let mut lease = leases.iter().find(|l| l.index == 2).unwrap().clone();
    for attempt in 0..3 {
        let state = workers
            .fail(FailRequest {
                lease: Some(lref(&lease, w)),
                error: format!("out of memory ({attempt})"),
                kind: FailKind::Error as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .state();
        if attempt < 2 {
            assert_eq!(state, TrialState::Pending);
            lease = workers
                .lease(LeaseRequest {
                    worker_id: w,
                    max_trials: 1,
                })
                .await
                .unwrap()
                .into_inner()
                .leases
                .remove(0);
            assert_eq!(lease.index, 2);
        } else {
            assert_eq!(state, TrialState::Failed);
        }
    }

    let all = list(
        &mut sweeps,
        ListTrialsRequest {
            sweep_id: id,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(indexes(&all), [0, 1, 2, 3]);
    let values: Vec<(&str, u64)> = all.iter().map(|s| (s.values[0].as_str(), s.seed)).collect();
    assert_eq!(values, [("relu", 0), ("relu", 1), ("tanh", 0), ("tanh", 1)]);
    let states: Vec<TrialState> = all.iter().map(|s| s.state()).collect();
    assert_eq!(
        states,
        [
            TrialState::Succeeded,
            TrialState::Diverged,
            TrialState::Failed,
            TrialState::Leased
        ]
    );
    let (s0, s1, s2, s3) = (&all[0], &all[1], &all[2], &all[3]);
    assert_eq!(s0.flagged, ["stagnant_loss"]);
    assert_eq!(s0.epochs, 2);
    assert_eq!(s0.worker_name, "sim");
    assert_eq!(s0.worker_id, w);
    assert_eq!(s0.seconds, 1.25);
    let final0 = s0.final_epoch.as_ref().unwrap();
    assert_eq!(final0.epoch, 2);
    assert!(
        final0.layers.is_empty(),
        "a summary's epochs carry no layers"
    );
    assert_eq!(final0.train_loss, epoch(0, 2, 0.5).train_loss);
    assert_eq!(
        s0.best_val_epoch.as_ref().unwrap().epoch,
        1,
        "earliest on ties"
    );
    assert_eq!(s1.diverged_epoch, 2);
    assert_eq!(s1.epochs, 1);
    assert!(s1.flagged.is_empty());
    assert_eq!((s2.failures, s2.attempt), (3, 2));
    assert!(s2.error.starts_with("out of memory (2)"), "{}", s2.error);
    assert!(s2.final_epoch.is_none() && s2.best_val_epoch.is_none());
    assert_eq!(
        (s2.worker_id, s2.worker_name.as_str()),
        (w, "sim"),
        "its last worker"
    );
    assert_eq!(s3.worker_name, "sim", "a running trial names its worker");
    assert_eq!(s3.best_val_epoch.as_ref().unwrap().epoch, 1);
    assert_eq!(s3.seconds, 0.5, "an unfinished trial's time is its epochs'");

    // States and axis values filter; filters combine.
    let finished = list(
        &mut sweeps,
        ListTrialsRequest {
            sweep_id: id,
            states: vec![TrialState::Succeeded as i32, TrialState::Failed as i32],
            filters: vec![],
        },
    )
    .await
    .unwrap();
    assert_eq!(indexes(&finished), [0, 2]);
    let tanh = list(
        &mut sweeps,
        ListTrialsRequest {
            sweep_id: id,
            states: vec![],
            filters: vec![filter("activation", "tanh")],
        },
    )
    .await
    .unwrap();
    assert_eq!(indexes(&tanh), [2, 3]);
    let none = list(
        &mut sweeps,
        ListTrialsRequest {
            sweep_id: id,
            states: vec![TrialState::Succeeded as i32],
            filters: vec![filter("activation", "tanh")],
        },
    )
    .await
    .unwrap();
    assert!(none.is_empty());

    // Refusals name what is valid.
    let bad_key = list(
        &mut sweeps,
        ListTrialsRequest {
            sweep_id: id,
            states: vec![],
            filters: vec![filter("activaton", "tanh")],
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad_key.code(), Code::InvalidArgument);
    assert!(
        bad_key.message().contains("\"activaton\" is not an axis")
            && bad_key.message().contains("its axes: activation"),
        "{}",
        bad_key.message()
    );
    let bad_label = export(
        &mut sweeps,
        ExportTrialsRequest {
            sweep_id: id,
            filters: vec![filter("activation", "gelu")],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad_label.code(), Code::InvalidArgument);
    assert!(
        bad_label.message().contains("its values: relu, tanh"),
        "{}",
        bad_label.message()
    );
    let bad_state = list(
        &mut sweeps,
        ListTrialsRequest {
            sweep_id: id,
            states: vec![42],
            filters: vec![],
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad_state.code(), Code::InvalidArgument);
    for missing in [
        list(
            &mut sweeps,
            ListTrialsRequest {
                sweep_id: 99,
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
        export(
            &mut sweeps,
            ExportTrialsRequest {
                sweep_id: 99,
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    ] {
        assert_eq!(missing.code(), Code::NotFound, "{}", missing.message());
    }

    // The export is what GetTrial answers, epoch by epoch, with and without layers.
    for layers in [true, false] {
        let exported = export(
            &mut sweeps,
            ExportTrialsRequest {
                sweep_id: id,
                layers,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(exported.len(), 4);
        for (x, summary) in exported.iter().zip(&all) {
            assert_eq!(x.summary.as_ref(), Some(summary));
            let mut detail = sweeps
                .get_trial(GetTrialRequest {
                    sweep_id: id,
                    index: summary.index,
                })
                .await
                .unwrap()
                .into_inner();
            if !layers {
                for e in &mut detail.epochs {
                    e.layers.clear();
                }
            }
            assert_eq!(x.epochs, detail.epochs);
        }
        assert_eq!(
            exported[0].epochs[1].layers.len(),
            if layers { 2 } else { 0 }
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_is_read_to_its_end_or_dropped_midway() {
    let server = start("export-long", LeasePolicy::default()).await;
    let (mut sweeps, _) = server.clients().await;
    let seeds: Vec<String> = (0..300).map(|s| s.to_string()).collect();
    let spec = SPEC.replace("seeds = [0, 1]", &format!("seeds = [{}]", seeds.join(", ")));
    let sweep = sweeps
        .submit_sweep(SubmitSweepRequest { spec_toml: spec })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap();
    assert_eq!(sweep.trial_count, 600);
    // Far more than the channel holds: the reading task waits for the reader.
    let all = list(
        &mut sweeps,
        ListTrialsRequest {
            sweep_id: sweep.id,
            states: vec![TrialState::Pending as i32],
            filters: vec![filter("activation", "tanh")],
        },
    )
    .await
    .unwrap();
    assert_eq!(indexes(&all), (300..600).collect::<Vec<u32>>());
    // A reader that stops early: the server is not held up by it.
    for _ in 0..3 {
        let mut stream = sweeps
            .export_trials(ExportTrialsRequest {
                sweep_id: sweep.id,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            stream
                .message()
                .await
                .unwrap()
                .unwrap()
                .summary
                .unwrap()
                .index,
            0
        );
        drop(stream);
    }
    let again = list(
        &mut sweeps,
        ListTrialsRequest {
            sweep_id: sweep.id,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(again.len(), 600);
    server.stop().await;
}
