//! The coordinator's services over real gRPC on loopback (port chosen by the OS), with
//! simulated workers.

use gradsweep_coordinator::{LeasePolicy, ServerConfig, Store, run};
use gradsweep_proto::sweep_service_client::SweepServiceClient;
use gradsweep_proto::worker_service_client::WorkerServiceClient;
use gradsweep_proto::*;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

struct Server {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(tag: &str, policy: LeasePolicy) -> Server {
    start_with(tag, policy, |_| {}).await
}

/// A server on a store that `fill` prepared.
async fn start_with(tag: &str, policy: LeasePolicy, fill: impl FnOnce(&Store)) -> Server {
    let dir = std::env::temp_dir().join(format!("gradsweep-grpc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Store::open(&dir, policy).unwrap());
    fill(&store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        run(listener, store, ServerConfig::default(), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        url,
        stop: Some(stop),
        done,
        _dir: TempDir(dir),
    }
}

impl Server {
    async fn clients(&self) -> (SweepServiceClient<Channel>, WorkerServiceClient<Channel>) {
        let channel = Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        (
            SweepServiceClient::new(channel.clone()),
            WorkerServiceClient::new(channel),
        )
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.done).await.unwrap();
    }
}

const SPEC: &str = "name = \"grpc\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = 1\nseeds = [0, 1]\n[grid]\nactivation = [\"relu\", \"tanh\"]\n";

fn lref(l: &TrialLease, worker: u64) -> LeaseRef {
    LeaseRef {
        sweep_id: l.sweep_id,
        index: l.index,
        lease_id: l.lease_id,
        worker_id: worker,
    }
}

async fn register(workers: &mut WorkerServiceClient<Channel>, name: &str, slots: u32) -> u64 {
    workers
        .register(RegisterRequest {
            name: name.into(),
            device: "cpu".into(),
            slots,
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id
}

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
