//! End to end: a real `coordinator` and real `worker serve` processes on loopback (ports
//! chosen by the OS), driven through the gRPC client. The binaries are those built beside
//! this test (`cargo test --release --workspace` builds them).

use gradsweep_proto::worker_service_client::WorkerServiceClient;
use gradsweep_proto::*;
use gradsweep_tests::{Sweeps, TempDir, coordinator, submit, trial, worker};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;

async fn client(addr: &str) -> (Sweeps, WorkerServiceClient<Channel>) {
    let url = format!("http://{addr}");
    let channel = Channel::from_shared(url.clone()).unwrap().connect_lazy();
    (
        gradsweep_tests::sweeps_client(&url, None, None),
        WorkerServiceClient::new(channel),
    )
}

/// Polls the sweep until `done` says so (or panics after `limit`).
async fn wait_for(
    sweeps: &mut Sweeps,
    id: u64,
    limit: Duration,
    done: impl Fn(&Sweep) -> bool,
) -> Sweep {
    let started = Instant::now();
    loop {
        if let Ok(s) = sweeps.get_sweep(GetSweepRequest { sweep_id: id }).await {
            let s = s.into_inner();
            if done(&s) {
                return s;
            }
            assert!(
                started.elapsed() < limit,
                "sweep {id} not done after {limit:?}: {:?}",
                s.counts
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn finished(s: &Sweep) -> bool {
    s.state() == SweepState::Finished
}

/// 4 activations × 2 batch-norm settings × 3 seeds = 24 small trials.
const SPEC_24: &str = r#"
name = "e2e-24"
dataset = "synthetic:glyphs-tiny"
epochs = 2
batch_size = 64
hidden = [16]
seeds = [0, 1, 2]
[grid]
activation = ["sigmoid", "tanh", "relu", "leaky_relu"]
batchnorm = [false, true]
[gradcheck]
layer = "linear1"
samples = 8
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_complete_a_24_trial_sweep() {
    let db = TempDir::new("24");
    let (_coordinator, addr) = coordinator(&db.0, "127.0.0.1:0", "5s");
    let (mut sweeps, _) = client(&addr).await;

    // An invalid spec is refused with the field path; nothing is stored for it.
    let bad = sweeps
        .submit_sweep(SubmitSweepRequest {
            spec_toml: SPEC_24.replace("\"relu\"", "\"relux\""),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message()
            .starts_with("grid.activation[2]: unknown activation \"relux\""),
        "{}",
        bad.message()
    );
    let listed = sweeps.list_sweeps(ListSweepsRequest {}).await.unwrap();
    assert!(listed.into_inner().sweeps.is_empty());

    let _a = worker(&addr, "a", 1);
    let _b = worker(&addr, "b", 2);
    let sweep = submit(&mut sweeps, SPEC_24).await;
    assert_eq!(sweep.trial_count, 24);
    let done = wait_for(&mut sweeps, sweep.id, Duration::from_secs(240), finished).await;
    let counts = done.counts.unwrap();
    assert_eq!(counts.succeeded + counts.diverged, 24, "{counts:?}");
    assert!(!done.dataset_fingerprint.is_empty());
    for index in 0..24 {
        let t = trial(&mut sweeps, sweep.id, index).await;
        let record = t.trial.unwrap();
        assert_eq!(
            record.attempt, 0,
            "trial {index} was retried: {}",
            record.error
        );
        let result = record.result.clone().unwrap();
        assert_eq!(result.dataset_fingerprint, done.dataset_fingerprint);
        assert!(["a", "b"].contains(&result.worker_name.as_str()));
        if record.state() == TrialState::Succeeded {
            let epochs: Vec<u32> = t.epochs.iter().map(|e| e.epoch).collect();
            assert_eq!(epochs, [1, 2], "trial {index}");
            assert_eq!(t.epochs[0].layers.len(), 2);
            assert!(result.gradcheck.unwrap().layers[0].checked > 0);
        }
    }
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
    assert_eq!(table.rows.len(), 4);
}

/// Trials long enough to be killed in the middle of.
const SPEC_SLOW: &str = r#"
name = "e2e-slow"
dataset = "synthetic:glyphs-tiny"
epochs = 12
batch_size = 16
hidden = [128, 128]
seeds = [0, 1, 2]
[gradcheck]
layer = "none"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_trial_is_redone_and_its_late_calls_refused() {
    let db = TempDir::new("kill-worker");
    let (_coordinator, addr) = coordinator(&db.0, "127.0.0.1:0", "1s");
    let (mut sweeps, mut workers) = client(&addr).await;
    let mut a = worker(&addr, "a", 1);
    let sweep = submit(&mut sweeps, SPEC_SLOW).await;
    // Wait until trial 0 has reported an epoch, then kill its worker.
    let started = Instant::now();
    let leased = loop {
        let t = trial(&mut sweeps, sweep.id, 0).await;
        if !t.epochs.is_empty() {
            break t.trial.unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no epoch yet");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    a.kill();
    assert_eq!(leased.state(), TrialState::Leased);
    let _b = worker(&addr, "b", 1);
    let done = wait_for(&mut sweeps, sweep.id, Duration::from_secs(240), finished).await;
    assert_eq!(done.counts.unwrap().succeeded, 3);
    let t = trial(&mut sweeps, sweep.id, 0).await;
    let record = t.trial.unwrap();
    assert_eq!(record.state(), TrialState::Succeeded);
    assert_eq!(record.attempt, 1);
    // The dead worker's lease cost the trial nothing: recorded as lost, not failed.
    assert_eq!((record.failures, record.lost), (0, 1));
    assert_eq!(record.history.len(), 1);
    assert_eq!(record.history[0].kind(), AttemptEndKind::Expired);
    assert_eq!(record.history[0].worker_name, "a");
    assert_eq!(record.result.as_ref().unwrap().worker_name, "b");
    assert_eq!(t.epochs.len(), 12);

    // No client learns a lease id, so none can speak for the dead worker: every guess
    // is refused, and nothing changes.
    assert_eq!(leased.lease_id, 0, "GetTrial revealed a lease id");
    let old = LeaseRef {
        sweep_id: sweep.id,
        index: 0,
        lease_id: 1,
        worker_id: leased.worker_id,
    };
    let late = workers
        .report_epoch(ReportEpochRequest {
            lease: Some(old),
            report: Some(EpochReport {
                epoch: 13,
                ..EpochReport::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    let late = workers
        .complete(CompleteRequest {
            lease: Some(old),
            result: Some(TrialResult::default()),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    let after = trial(&mut sweeps, sweep.id, 0).await;
    assert_eq!(after.trial.unwrap(), record);
    assert_eq!(after.epochs, t.epochs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinator_resumes_on_the_same_db() {
    let db = TempDir::new("kill-coordinator");
    let (mut first, addr) = coordinator(&db.0, "127.0.0.1:0", "2s");
    let (mut sweeps, _) = client(&addr).await;
    let mut w = worker(&addr, "w", 1);
    let sweep = submit(
        &mut sweeps,
        &SPEC_SLOW.replace("epochs = 12", "epochs = 60"),
    )
    .await;
    let _ = wait_for(&mut sweeps, sweep.id, Duration::from_secs(120), |s| {
        s.counts.unwrap().succeeded >= 1
    })
    .await;
    let before: Vec<Trial> = {
        let mut out = Vec::new();
        for index in 0..3 {
            out.push(trial(&mut sweeps, sweep.id, index).await.trial.unwrap());
        }
        out
    };
    first.kill();
    assert!(
        before.iter().any(|t| t.state() != TrialState::Succeeded),
        "the sweep finished before the coordinator was killed"
    );
    let (_second, again) = coordinator(&db.0, &addr, "2s");
    assert_eq!(again, addr);
    let done = wait_for(&mut sweeps, sweep.id, Duration::from_secs(240), finished).await;
    assert_eq!(done.counts.unwrap().succeeded, 3);
    for old in before {
        let detail = trial(&mut sweeps, sweep.id, old.index).await;
        assert_eq!(detail.epochs.len(), 60);
        let now = detail.trial.unwrap();
        if old.state() == TrialState::Succeeded {
            // Not lost, not rerun.
            assert_eq!(now, old);
        }
    }
    w.terminate();
    let status = w.0.wait().unwrap();
    assert!(status.success(), "worker exit: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_lease_back() {
    let db = TempDir::new("sigterm");
    let (_coordinator, addr) = coordinator(&db.0, "127.0.0.1:0", "30s");
    let (mut sweeps, _) = client(&addr).await;
    let mut w = worker(&addr, "w", 1);
    let sweep = submit(
        &mut sweeps,
        &SPEC_SLOW.replace("epochs = 12", "epochs = 500"),
    )
    .await;
    let started = Instant::now();
    while trial(&mut sweeps, sweep.id, 0).await.epochs.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "no epoch yet");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.terminate();
    let status = w.0.wait().unwrap();
    assert!(status.success(), "worker exit: {status}");
    // Given back at once (not after the 30 s lease): pending again, as attempt 1, and
    // the hand-back is not charged to the trial.
    let t = trial(&mut sweeps, sweep.id, 0).await.trial.unwrap();
    assert_eq!(t.state(), TrialState::Pending);
    assert_eq!(t.attempt, 1);
    assert_eq!((t.failures, t.lost), (0, 1));
    assert_eq!(t.history[0].kind(), AttemptEndKind::HandedBack);
    assert!(t.error.contains("shut down"), "{}", t.error);
    let s = sweeps
        .get_sweep(GetSweepRequest { sweep_id: sweep.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.counts.unwrap().leased, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_sweep_s_trial_is_abandoned_and_the_worker_moves_on() {
    let db = TempDir::new("cancel");
    let (_coordinator, addr) = coordinator(&db.0, "127.0.0.1:0", "600ms");
    let (mut sweeps, _) = client(&addr).await;
    let _w = worker(&addr, "w", 1);
    let long = submit(
        &mut sweeps,
        &SPEC_SLOW.replace("epochs = 12", "epochs = 5000"),
    )
    .await;
    let started = Instant::now();
    while trial(&mut sweeps, long.id, 0).await.epochs.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "no epoch yet");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = sweeps
        .cancel_sweep(CancelSweepRequest { sweep_id: long.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state(), SweepState::Cancelled);
    assert_eq!(cancelled.counts.unwrap().cancelled, 3);
    // The worker learns it at its next heartbeat, stops training and takes new work.
    let short = submit(&mut sweeps, SPEC_24).await;
    let done = wait_for(&mut sweeps, short.id, Duration::from_secs(60), finished).await;
    assert_eq!(
        done.counts.unwrap().succeeded + done.counts.unwrap().diverged,
        24
    );
    let t = trial(&mut sweeps, long.id, 0).await;
    assert_eq!(t.trial.unwrap().state(), TrialState::Cancelled);
    assert!(t.epochs.len() < 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_refuses_data_with_another_fingerprint() {
    let db = TempDir::new("fingerprint");
    let (_coordinator, addr) = coordinator(&db.0, "127.0.0.1:0", "5s");
    let (mut sweeps, mut workers) = client(&addr).await;
    let sweep = submit(&mut sweeps, SPEC_24).await;
    // A first trial finished on other data sets the sweep's fingerprint.
    let fake = workers
        .register(RegisterRequest {
            name: "elsewhere".into(),
            device: "cpu".into(),
            slots: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let lease = workers
        .lease(LeaseRequest {
            worker_id: fake.worker_id,
            max_trials: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .leases
        .remove(0);
    let lease_ref = LeaseRef {
        sweep_id: lease.sweep_id,
        index: lease.index,
        lease_id: lease.lease_id,
        worker_id: fake.worker_id,
    };
    for epoch in 1..=2 {
        workers
            .report_epoch(ReportEpochRequest {
                lease: Some(lease_ref),
                report: Some(EpochReport {
                    epoch,
                    train_loss: 2.0,
                    ..EpochReport::default()
                }),
            })
            .await
            .unwrap();
    }
    workers
        .complete(CompleteRequest {
            lease: Some(lease_ref),
            result: Some(TrialResult {
                outcome: Some(Outcome {
                    kind: Some(outcome::Kind::Completed(Completed {})),
                }),
                epochs: 2,
                dataset_fingerprint: "0000other".into(),
                ..TrialResult::default()
            }),
        })
        .await
        .unwrap();
    let _w = worker(&addr, "w", 1);
    let done = wait_for(&mut sweeps, sweep.id, Duration::from_secs(120), finished).await;
    assert_eq!(done.counts.unwrap().failed, 23);
    let t = trial(&mut sweeps, sweep.id, 1).await;
    let record = t.trial.unwrap();
    // A worker with other data is the infrastructure's fault, not the trial's: bounded
    // by --max-lost (20 by default), never charged as a failure.
    assert_eq!((record.failures, record.lost), (0, 20));
    assert_eq!(record.history.len(), 20);
    assert!(
        record
            .history
            .iter()
            .all(|h| h.kind() == AttemptEndKind::DatasetMismatch),
        "{:?}",
        record.history
    );
    assert!(
        record
            .error
            .contains("the sweep's trials trained on 0000other"),
        "{}",
        record.error
    );
    assert!(t.epochs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_registers_again_with_a_coordinator_on_a_new_database() {
    let first_db = TempDir::new("first-db");
    let second_db = TempDir::new("second-db");
    let (mut first, addr) = coordinator(&first_db.0, "127.0.0.1:0", "5s");
    let _w = worker(&addr, "w", 1);
    let (mut sweeps, _) = client(&addr).await;
    // Wait until the worker has registered (its lease calls reach the coordinator).
    let warmup = submit(
        &mut sweeps,
        &SPEC_24.replace("seeds = [0, 1, 2]", "seeds = [0]"),
    )
    .await;
    wait_for(&mut sweeps, warmup.id, Duration::from_secs(60), finished).await;
    first.kill();
    let (_second, again) = coordinator(&second_db.0, &addr, "5s");
    assert_eq!(again, addr);
    let sweep = submit(&mut sweeps, SPEC_24).await;
    let done = wait_for(&mut sweeps, sweep.id, Duration::from_secs(120), finished).await;
    assert_eq!(
        done.counts.unwrap().succeeded + done.counts.unwrap().diverged,
        24
    );
}
