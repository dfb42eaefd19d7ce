//! The coordinator's services over real gRPC on loopback (port chosen by the OS), with
//! simulated workers.

use gradsweep_coordinator::LeasePolicy;
use gradsweep_proto::sweep_service_client::SweepServiceClient;
use gradsweep_proto::*;
use std::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

mod common;
use common::*;

const SPEC: &str = "name = \"grpc\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = 1\nseeds = [0, 1]\n[grid]\nactivation = [\"relu\", \"tanh\"]\n";

async fn submit(sweeps: &mut SweepServiceClient<Channel>, spec: &str) -> Sweep {
    sweeps
        .submit_sweep(SubmitSweepRequest {
            spec_toml: spec.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap()
}

fn done(test_accuracy: f64) -> (EpochReport, TrialResult) {
    (
        EpochReport {
            epoch: 1,
            test_accuracy,
            ..EpochReport::default()
        },
        TrialResult {
            outcome: Some(Outcome {
                kind: Some(outcome::Kind::Completed(Completed {})),
            }),
            dataset_fingerprint: "fp".into(),
            epochs: 1,
            ..TrialResult::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_runs_through_the_services() {
    let server = start("flow", LeasePolicy::default()).await;
    let (mut sweeps, mut workers) = server.clients().await;

    // An invalid spec is refused with the field path, and nothing is stored.
    let bad = sweeps
        .submit_sweep(SubmitSweepRequest {
            spec_toml: SPEC.replace("\"tanh\"", "\"relux\""),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message()
            .starts_with("grid.activation[1]: unknown activation \"relux\""),
        "{}",
        bad.message()
    );
    let listed = sweeps.list_sweeps(ListSweepsRequest {}).await.unwrap();
    assert!(listed.into_inner().sweeps.is_empty());

    let sweep = sweeps
        .submit_sweep(SubmitSweepRequest {
            spec_toml: SPEC.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap();
    assert_eq!(sweep.trial_count, 4);

    let w = workers
        .register(RegisterRequest {
            name: "sim".into(),
            device: "cpu".into(),
            slots: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.lease_ttl_ms, 30_000);
    let mut finished = 0;
    loop {
        let r = workers
            .lease(LeaseRequest {
                worker_id: w.worker_id,
                max_trials: 1,
            })
            .await
            .unwrap()
            .into_inner();
        let Some(l) = r.leases.first() else {
            assert!(r.retry_after_ms > 0);
            break;
        };
        assert!(l.config_toml.contains("synthetic:glyphs-tiny"));
        let (report, result) = done(f64::from(l.index) / 4.0);
        workers
            .report_epoch(ReportEpochRequest {
                lease: Some(lref(l, w.worker_id)),
                report: Some(report),
            })
            .await
            .unwrap();
        let c = workers
            .complete(CompleteRequest {
                lease: Some(lref(l, w.worker_id)),
                result: Some(result.clone()),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(c.state(), TrialState::Succeeded);
        // Complete is idempotent.
        let again = workers
            .complete(CompleteRequest {
                lease: Some(lref(l, w.worker_id)),
                result: Some(result),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.state(), TrialState::Succeeded);
        // A made-up lease is stale.
        let stale = workers
            .report_epoch(ReportEpochRequest {
                lease: Some(LeaseRef {
                    lease_id: l.lease_id ^ 1,
                    ..lref(l, w.worker_id)
                }),
                report: Some(EpochReport {
                    epoch: 1,
                    ..EpochReport::default()
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(stale.code(), Code::FailedPrecondition);
        finished += 1;
    }
    assert_eq!(finished, 4);

    let s = sweeps
        .get_sweep(GetSweepRequest { sweep_id: sweep.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.state(), SweepState::Finished);
    assert_eq!(s.counts.unwrap().succeeded, 4);
    assert_eq!(s.dataset_fingerprint, "fp");

    let trial = sweeps
        .get_trial(GetTrialRequest {
            sweep_id: sweep.id,
            index: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trial.epochs.len(), 1);
    assert_eq!(trial.epochs[0].test_accuracy, 0.75);

    let table = sweeps
        .get_table(GetTableRequest {
            sweep_id: sweep.id,
            rows: vec!["activation".into()],
            metrics: vec!["test_accuracy".into()],
            best_val_epoch: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(table.rows.len(), 2);
    assert_eq!(table.rows[1].values, ["tanh"]);
    assert_eq!(table.rows[1].stats[0].mean, 0.625);
    assert_eq!(table.rows[1].stats[0].count, 2);

    // Watching a finished sweep yields one event and ends.
    let mut watch = sweeps
        .watch_sweep(WatchSweepRequest { sweep_id: sweep.id })
        .await
        .unwrap()
        .into_inner();
    let event = watch.message().await.unwrap().unwrap();
    assert_eq!(event.state(), SweepState::Finished);
    assert!(watch.message().await.unwrap().is_none());

    let missing = sweeps
        .get_sweep(GetSweepRequest { sweep_id: 424242 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

/// Lease + complete throughput with trivial trials from 50 simulated workers
/// (the goal: at least 2,000 trials/s; asserted here only loosely, since the
/// test machine may be shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_simulated_workers_drain_a_sweep() {
    let server = start("throughput", LeasePolicy::default()).await;
    let (mut sweeps, workers) = server.clients().await;
    let values: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    let spec = format!(
        "dataset = \"synthetic:glyphs\"\nepochs = 1\nseeds = [{}]\n[grid]\nbatch_size = [{}]\n",
        values[..20].join(", "),
        values.join(", ")
    );
    // The goal: a 10,000-trial sweep accepted in under 1 s (asserted loosely).
    let big = format!(
        "dataset = \"synthetic:glyphs\"\nseeds = [{}]\n[grid]\nbatch_size = [{}]\n",
        values.join(", "),
        values.join(", ")
    );
    let start = Instant::now();
    let accepted = sweeps
        .submit_sweep(SubmitSweepRequest { spec_toml: big })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap();
    let took = start.elapsed();
    eprintln!("submit of 10,000 trials over gRPC: {took:?}");
    assert_eq!(accepted.trial_count, 10_000);
    assert!(took.as_secs_f64() < 5.0, "{took:?}");
    sweeps
        .cancel_sweep(CancelSweepRequest {
            sweep_id: accepted.id,
        })
        .await
        .unwrap();

    let start = Instant::now();
    let sweep = sweeps
        .submit_sweep(SubmitSweepRequest { spec_toml: spec })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap();
    eprintln!("submit of 2,000 trials: {:?}", start.elapsed());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut client = workers.clone();
        tasks.push(tokio::spawn(async move {
            let id = client
                .register(RegisterRequest {
                    name: format!("sim-{i}"),
                    device: "none".into(),
                    slots: 1,
                })
                .await
                .unwrap()
                .into_inner()
                .worker_id;
            let mut n = 0;
            loop {
                let r = client
                    .lease(LeaseRequest {
                        worker_id: id,
                        max_trials: 1,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let Some(l) = r.leases.first() else { break };
                let (report, result) = done(0.5);
                client
                    .report_epoch(ReportEpochRequest {
                        lease: Some(lref(l, id)),
                        report: Some(report),
                    })
                    .await
                    .unwrap();
                client
                    .complete(CompleteRequest {
                        lease: Some(lref(l, id)),
                        result: Some(result),
                    })
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let took = start.elapsed();
    assert_eq!(total, 2000);
    eprintln!(
        "50 simulated workers: 2,000 lease + complete in {took:?} ({:.0} trials/s)",
        2000.0 / took.as_secs_f64()
    );
    let s = sweeps
        .get_sweep(GetSweepRequest { sweep_id: sweep.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.counts.unwrap().succeeded, 2000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_progress_until_the_sweep_finishes() {
    let server = start("watch", LeasePolicy::default()).await;
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
    let mut watch = sweeps
        .watch_sweep(WatchSweepRequest { sweep_id: sweep.id })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.state(), SweepState::Running);
    assert_eq!(first.counts.unwrap().pending, 4);
    let w = workers
        .register(RegisterRequest {
            name: "sim".into(),
            device: "cpu".into(),
            slots: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let simulated = tokio::spawn(async move {
        loop {
            let r = workers
                .lease(LeaseRequest {
                    worker_id: w.worker_id,
                    max_trials: 1,
                })
                .await
                .unwrap()
                .into_inner();
            let Some(l) = r.leases.first() else { break };
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let (report, result) = done(0.5);
            workers
                .report_epoch(ReportEpochRequest {
                    lease: Some(lref(l, w.worker_id)),
                    report: Some(report),
                })
                .await
                .unwrap();
            workers
                .complete(CompleteRequest {
                    lease: Some(lref(l, w.worker_id)),
                    result: Some(result),
                })
                .await
                .unwrap();
        }
    });
    let mut events = vec![first];
    while let Some(event) = watch.message().await.unwrap() {
        events.push(event);
    }
    simulated.await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.state(), SweepState::Finished);
    assert_eq!(last.counts.unwrap().succeeded, 4);
    assert!(events.len() >= 3, "{} events", events.len());
    // Counts only grow.
    for pair in events.windows(2) {
        assert!(pair[0].counts.unwrap().succeeded <= pair[1].counts.unwrap().succeeded);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_never_reach_clients_and_belong_to_their_worker() {
    let server = start("owner", LeasePolicy::default()).await;
    let (mut sweeps, mut workers) = server.clients().await;
    let sweep = submit(&mut sweeps, SPEC).await;
    let a = register(&mut workers, "a", 1).await;
    let b = register(&mut workers, "b", 1).await;
    let l = workers
        .lease(LeaseRequest {
            worker_id: a,
            max_trials: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .leases
        .remove(0);
    assert_ne!(l.lease_id, 0);

    // No client answer carries the lease id.
    let detail = sweeps
        .get_trial(GetTrialRequest {
            sweep_id: sweep.id,
            index: l.index,
        })
        .await
        .unwrap()
        .into_inner();
    let trial = detail.trial.unwrap();
    assert_eq!((trial.state(), trial.worker_id), (TrialState::Leased, a));
    assert_eq!(trial.lease_id, 0);

    // Worker B, even knowing A's lease id, can neither renew it nor report on it.
    let running = |sweeps: SweepServiceClient<Channel>| async move {
        let mut sweeps = sweeps;
        sweeps
            .list_running(ListRunningRequest { sweep_id: sweep.id })
            .await
            .unwrap()
            .into_inner()
            .trials[0]
            .lease_deadline_unix_ms
    };
    let deadline = running(sweeps.clone()).await;
    assert_eq!(deadline, l.deadline_unix_ms);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let hb = workers
        .heartbeat(HeartbeatRequest {
            worker_id: b,
            leases: vec![lref(&l, b)],
        })
        .await
        .unwrap_err();
    assert_eq!(hb.code(), Code::FailedPrecondition, "{}", hb.message());
    assert!(hb.message().contains("another worker"), "{}", hb.message());
    assert_eq!(running(sweeps.clone()).await, deadline);
    let (report, result) = done(0.999);
    for forged in [lref(&l, b), lref(&l, 0)] {
        let e = workers
            .report_epoch(ReportEpochRequest {
                lease: Some(forged),
                report: Some(report.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        let e = workers
            .complete(CompleteRequest {
                lease: Some(forged),
                result: Some(result.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        let e = workers
            .fail(FailRequest {
                lease: Some(forged),
                error: "x".into(),
                kind: FailKind::Error as i32,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
    }
    let after = sweeps
        .get_trial(GetTrialRequest {
            sweep_id: sweep.id,
            index: l.index,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.trial.unwrap().state(), TrialState::Leased);
    assert!(after.epochs.is_empty());

    // A renews its own lease.
    let hb = workers
        .heartbeat(HeartbeatRequest {
            worker_id: a,
            leases: vec![lref(&l, a)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hb.renewed, [lref(&l, a)]);
    assert!(running(sweeps.clone()).await > deadline);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_stored_specs_leave_every_answer_readable() {
    // Two sweeps whose specs (1 MB and 5 MB of comment) were stored before specs had a
    // size limit: written through the store directly.
    let big = |mb: usize| format!("{SPEC}# {}\n", "x".repeat(mb << 20));
    let (one, five) = (big(1), big(5));
    let server = start_with("bigspecs", LeasePolicy::default(), |store| {
        let spec = gradsweep_spec::SweepSpec::from_toml_str(SPEC).unwrap();
        let trials = spec.expand(100).unwrap();
        for text in [&one, &five] {
            store
                .submit(
                    &gradsweep_coordinator::store::NewSweep {
                        name: &spec.name,
                        spec_toml: text,
                        axes: &spec.axes,
                        seeds: &spec.seeds,
                        trials: &trials,
                    },
                    0,
                )
                .unwrap();
        }
    })
    .await;
    // Clients with tonic's default 4 MiB message limit.
    let (mut sweeps, _) = server.clients().await;
    let listed = sweeps
        .list_sweeps(ListSweepsRequest {})
        .await
        .unwrap()
        .into_inner()
        .sweeps;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|s| s.spec_toml.is_empty()));
    let (five_id, one_id) = (listed[0].id, listed[1].id);
    let got = sweeps
        .get_sweep(GetSweepRequest { sweep_id: one_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.spec_toml, one);
    let got = sweeps
        .get_sweep(GetSweepRequest { sweep_id: five_id })
        .await
        .unwrap()
        .into_inner();
    assert!(
        got.spec_toml.starts_with("# the spec (5242"),
        "{}",
        &got.spec_toml[..80]
    );
    let cancelled = sweeps
        .cancel_sweep(CancelSweepRequest { sweep_id: five_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state(), SweepState::Cancelled);
    assert!(cancelled.spec_toml.is_empty());
    let mut watch = sweeps
        .watch_sweep(WatchSweepRequest { sweep_id: five_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().state(),
        SweepState::Cancelled
    );
    let submitted = submit(&mut sweeps, SPEC).await;
    assert!(submitted.spec_toml.is_empty());
    // A request over the server's limit is refused by the transport, naming the limit,
    // and stores nothing.
    let refused = sweeps
        .submit_sweep(SubmitSweepRequest { spec_toml: five })
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("4194304"),
        "{}",
        refused.message()
    );
    let listed = sweeps.list_sweeps(ListSweepsRequest {}).await.unwrap();
    assert_eq!(listed.into_inner().sweeps.len(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_lost_attempts_history_and_retry() {
    let policy = LeasePolicy {
        max_attempts: 1,
        ..LeasePolicy::default()
    };
    let server = start("retry", policy).await;
    let (mut sweeps, mut workers) = server.clients().await;
    let sweep = submit(&mut sweeps, SPEC).await;
    let w = register(&mut workers, "w", 4).await;
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
    let fail = |l: &TrialLease, kind: FailKind| FailRequest {
        lease: Some(lref(l, w)),
        error: format!("{kind:?}"),
        kind: kind as i32,
    };
    let state = |r: FailResponse| r.state();
    let r = workers
        .fail(fail(&leases[0], FailKind::Error))
        .await
        .unwrap();
    assert_eq!(state(r.into_inner()), TrialState::Failed);
    let r = workers
        .fail(fail(&leases[1], FailKind::HandBack))
        .await
        .unwrap();
    assert_eq!(state(r.into_inner()), TrialState::Pending);
    let r = workers
        .fail(fail(&leases[2], FailKind::DatasetMismatch))
        .await
        .unwrap();
    assert_eq!(state(r.into_inner()), TrialState::Pending);
    let reader = sweeps.clone();
    let trial = |index: u32| {
        let mut sweeps = reader.clone();
        async move {
            sweeps
                .get_trial(GetTrialRequest {
                    sweep_id: sweep.id,
                    index,
                })
                .await
                .unwrap()
                .into_inner()
                .trial
                .unwrap()
        }
    };
    let t = trial(1).await;
    assert_eq!((t.failures, t.lost, t.attempt), (0, 1, 1));
    assert_eq!(t.history[0].kind(), AttemptEndKind::HandedBack);
    assert_eq!(t.history[0].worker_name, "w");
    let t = trial(0).await;
    assert_eq!((t.state(), t.failures, t.lost), (TrialState::Failed, 1, 0));

    let retried = sweeps
        .retry_sweep(RetrySweepRequest {
            sweep_id: sweep.id,
            include_diverged: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.requeued, 1);
    let counts = retried.sweep.unwrap().counts.unwrap();
    assert_eq!((counts.failed, counts.pending, counts.leased), (0, 3, 1));
    let t = trial(0).await;
    assert_eq!(
        (t.state(), t.failures, t.attempt),
        (TrialState::Pending, 0, 1)
    );
    assert_eq!(t.history.last().unwrap().kind(), AttemptEndKind::Retried);
    let missing = sweeps
        .retry_sweep(RetrySweepRequest {
            sweep_id: 999_999,
            include_diverged: true,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_calls_that_break_the_protocol_are_refused() {
    let server = start("validate", LeasePolicy::default()).await;
    let (mut sweeps, mut workers) = server.clients().await;
    let sweep = submit(&mut sweeps, SPEC).await;
    fn refused<T>(r: Result<tonic::Response<T>, tonic::Status>, expected: &str) {
        let Err(e) = r else {
            panic!("accepted; expected {expected}…")
        };
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(
            e.message().starts_with(expected),
            "{} ≠ {expected}…",
            e.message()
        );
    }
    let register_with = |name: String, slots: u32| RegisterRequest {
        name,
        device: "cpu".into(),
        slots,
    };
    refused(
        workers
            .register(register_with("x".repeat(1 << 20), 1))
            .await,
        "name: 1048576 bytes, the limit is 256",
    );
    refused(
        workers.register(register_with("w".into(), 0)).await,
        "slots: 0, must be 1 to 1024",
    );
    let w = register(&mut workers, "w", 2).await;
    // Asking for every pending trial gets the worker's slots' worth.
    let leases = workers
        .lease(LeaseRequest {
            worker_id: w,
            max_trials: 64,
        })
        .await
        .unwrap()
        .into_inner()
        .leases;
    assert_eq!(leases.len(), 2);
    let l = lref(&leases[0], w);
    let report = |epoch: u32, loss: f64, accuracy: f64| ReportEpochRequest {
        lease: Some(l),
        report: Some(EpochReport {
            epoch,
            train_loss: loss,
            test_accuracy: accuracy,
            ..EpochReport::default()
        }),
    };
    refused(
        workers.report_epoch(report(0, 1.0, 0.5)).await,
        "epoch: 0, expected 1",
    );
    refused(
        workers.report_epoch(report(1_000_000, 1.0, 0.5)).await,
        "epoch: 1000000, expected 1",
    );
    refused(
        workers.report_epoch(report(1, f64::NAN, 0.5)).await,
        "train_loss: NaN",
    );
    refused(
        workers.report_epoch(report(1, 1.0, 7.5)).await,
        "test_accuracy: 7.5 is not in [0, 1]",
    );
    let (_, result) = done(0.5);
    refused(
        workers
            .complete(CompleteRequest {
                lease: Some(l),
                result: Some(TrialResult {
                    outcome: None,
                    ..result.clone()
                }),
            })
            .await,
        "result.outcome: missing",
    );
    refused(
        workers
            .complete(CompleteRequest {
                lease: Some(l),
                result: Some(result.clone()),
            })
            .await,
        "result: completed after 1 epochs, but the trial has 1 and 0 are stored",
    );
    workers.report_epoch(report(1, 1.0, 0.5)).await.unwrap();
    // A retry of the same report is answered OK and stores it once.
    workers.report_epoch(report(1, 1.0, 0.5)).await.unwrap();
    refused(
        workers.report_epoch(report(2, 1.0, 0.5)).await,
        "epoch: 2, but the trial has 1 epochs",
    );
    workers
        .complete(CompleteRequest {
            lease: Some(l),
            result: Some(result),
        })
        .await
        .unwrap();
    let detail = sweeps
        .get_trial(GetTrialRequest {
            sweep_id: sweep.id,
            index: l.index,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detail.epochs.len(), 1);
    assert_eq!(detail.trial.unwrap().state(), TrialState::Succeeded);
    server.stop().await;
}
