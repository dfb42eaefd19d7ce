//! `worker serve` against a scripted coordinator (a small WorkerService in this test):
//! every call names the worker's lease and id, each way a trial cannot run is given back
//! with its `FailKind` and one-line reason, a report the coordinator's storage refuses is
//! retried with backoff and then given back, and a report refused as invalid fails the
//! trial with the coordinator's reason; with `--pack`, a group's epoch reports go in one
//! `ReportEpochs` call, a trial that fits no group trains alone, and a refused report
//! stops only its trial.

use gradsweep_proto::worker_service_server::{WorkerService, WorkerServiceServer};
use gradsweep_proto::*;
use gradsweep_worker::serve::{Backoff, ServeOptions, serve};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Code, Request, Response, Status};

const WORKER_ID: u64 = 42;

/// What the worker called, in order.
#[derive(Debug, Clone)]
enum Call {
    Heartbeat(Vec<LeaseRef>),
    Report {
        lease: LeaseRef,
        epoch: u32,
        stored: bool,
    },
    Complete(LeaseRef),
    Fail {
        lease: LeaseRef,
        kind: FailKind,
        error: String,
    },
}

#[derive(Default)]
struct Script {
    leases: Mutex<VecDeque<TrialLease>>,
    /// Answers to the next reports (then: stored).
    report_errors: Mutex<VecDeque<Status>>,
    /// Refuse every report with this, after `report_errors`.
    report_always: Mutex<Option<Status>>,
    calls: Mutex<Vec<Call>>,
    /// Take `ReportEpochs` (else: answer it UNIMPLEMENTED, as an older coordinator).
    batched: bool,
    /// The worker's `--pack` (0: 1).
    pack: usize,
    /// How many reports each `ReportEpochs` call carried.
    batches: Mutex<Vec<usize>>,
}

#[derive(Clone)]
struct Fake(Arc<Script>);

impl Fake {
    fn record(&self, call: Call) {
        self.0.calls.lock().unwrap().push(call);
    }

    /// Takes one report as the script says: `Some(refusal)` or stored.
    fn take(&self, r: ReportEpochRequest) -> Option<Status> {
        let refusal = self
            .0
            .report_errors
            .lock()
            .unwrap()
            .pop_front()
            .or_else(|| self.0.report_always.lock().unwrap().clone());
        self.record(Call::Report {
            lease: r.lease.unwrap(),
            epoch: r.report.unwrap().epoch,
            stored: refusal.is_none(),
        });
        refusal
    }
}

#[tonic::async_trait]
impl WorkerService for Fake {
    async fn register(
        &self,
        _: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        Ok(Response::new(RegisterResponse {
            worker_id: WORKER_ID,
            lease_ttl_ms: 10_000,
            heartbeat_interval_ms: 20,
        }))
    }

    async fn lease(&self, r: Request<LeaseRequest>) -> Result<Response<LeaseResponse>, Status> {
        let mut leases = self.0.leases.lock().unwrap();
        let n = (r.into_inner().max_trials as usize).min(leases.len());
        let next: Vec<TrialLease> = leases.drain(..n).collect();
        Ok(Response::new(LeaseResponse {
            leases: next,
            retry_after_ms: 20,
        }))
    }

    async fn heartbeat(
        &self,
        r: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let r = r.into_inner();
        self.record(Call::Heartbeat(r.leases.clone()));
        Ok(Response::new(HeartbeatResponse {
            renewed: r.leases,
            revoked: vec![],
        }))
    }

    async fn report_epochs(
        &self,
        r: Request<ReportEpochsRequest>,
    ) -> Result<Response<ReportEpochsResponse>, Status> {
        if !self.0.batched {
            return Err(Status::unimplemented("this fake takes ReportEpoch"));
        }
        let reports = r.into_inner().reports;
        self.0.batches.lock().unwrap().push(reports.len());
        let outcomes = reports
            .into_iter()
            .map(|r| match self.take(r) {
                None => ReportOutcome::default(),
                Some(s) => ReportOutcome {
                    code: s.code() as u32,
                    message: s.message().to_owned(),
                },
            })
            .collect();
        Ok(Response::new(ReportEpochsResponse { outcomes }))
    }

    async fn report_epoch(
        &self,
        r: Request<ReportEpochRequest>,
    ) -> Result<Response<ReportEpochResponse>, Status> {
        match self.take(r.into_inner()) {
            Some(s) => Err(s),
            None => Ok(Response::new(ReportEpochResponse {})),
        }
    }

    async fn complete(
        &self,
        r: Request<CompleteRequest>,
    ) -> Result<Response<CompleteResponse>, Status> {
        self.record(Call::Complete(r.into_inner().lease.unwrap()));
        Ok(Response::new(CompleteResponse {
            state: TrialState::Succeeded as i32,
        }))
    }

    async fn fail(&self, r: Request<FailRequest>) -> Result<Response<FailResponse>, Status> {
        let r = r.into_inner();
        self.record(Call::Fail {
            lease: r.lease.unwrap(),
            kind: r.kind(),
            error: r.error,
        });
        Ok(Response::new(FailResponse {
            state: TrialState::Pending as i32,
        }))
    }
}

const TRIAL: &str = "dataset = \"synthetic:glyphs-tiny\"\nepochs = 2\nbatch_size = 64\nhidden = [16]\n[gradcheck]\nlayer = \"none\"\n";

fn lease(index: u32, config: &str, fingerprint: &str) -> TrialLease {
    TrialLease {
        sweep_id: 7,
        index,
        key: format!("key{index}"),
        config_toml: config.to_owned(),
        attempt: 0,
        lease_id: 1000 + u64::from(index),
        deadline_unix_ms: 0,
        dataset_fingerprint: fingerprint.to_owned(),
    }
}

/// Serves `script` on loopback, runs `worker serve` (one CPU slot) against it until
/// `finished` trials were completed or failed, and returns every call.
async fn run(script: Script, finished: usize) -> Vec<Call> {
    run_shared(Arc::new(script), finished).await
}

/// [`run`] on a script the caller keeps.
async fn run_shared(script: Arc<Script>, finished: usize) -> Vec<Call> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(WorkerServiceServer::new(Fake(script.clone())))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions {
        coordinator: url,
        device: "cpu".into(),
        slots: 1,
        name: "fake-test".into(),
        threads: Some(1),
        backoff: Backoff {
            first: Duration::from_millis(10),
            cap: Duration::from_millis(80),
            give_up_after: Duration::from_millis(1500),
        },
        max_memory: Some(256 << 20),
        pack: script.pack.max(1),
    };
    let worker = tokio::spawn(serve(options, async {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    loop {
        let done = script
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| matches!(c, Call::Complete(_) | Call::Fail { .. }))
            .count();
        if done >= finished {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the worker finished {done} of {finished} trials in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    server.abort();
    script.calls.lock().unwrap().clone()
}

fn fails(calls: &[Call]) -> Vec<(u32, FailKind, String)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Fail { lease, kind, error } => Some((lease.index, *kind, error.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_names_the_worker_and_each_refusal_has_its_kind() {
    // Within every spec limit, but more than this worker's --max-memory of 256 MiB.
    let huge = "dataset = \"synthetic:glyphs-tiny\"\nhidden = [8192, 8192, 4096]\n";
    let script = Script::default();
    script.leases.lock().unwrap().extend([
        lease(0, TRIAL, ""),
        lease(1, TRIAL, "feedface"),
        lease(2, huge, ""),
        lease(3, &format!("val_fraction = 0.0001\n{TRIAL}"), ""),
        lease(
            4,
            &TRIAL.replace("synthetic:glyphs-tiny", "synthetic:nope"),
            "",
        ),
    ]);
    let calls = run(script, 5).await;

    // Every lease the worker named carries its id.
    for call in &calls {
        let refs: Vec<&LeaseRef> = match call {
            Call::Heartbeat(leases) => leases.iter().collect(),
            Call::Report { lease, .. } | Call::Complete(lease) | Call::Fail { lease, .. } => {
                vec![lease]
            }
        };
        for r in refs {
            assert_eq!(r.worker_id, WORKER_ID, "{call:?}");
            assert_eq!(r.lease_id, 1000 + u64::from(r.index), "{call:?}");
        }
    }
    let completed: Vec<u32> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Complete(l) => Some(l.index),
            _ => None,
        })
        .collect();
    assert_eq!(completed, [0]);
    let reported: Vec<u32> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Report { epoch, stored, .. } => stored.then_some(*epoch),
            _ => None,
        })
        .collect();
    assert_eq!(reported, [1, 2]);

    let fails = fails(&calls);
    assert_eq!(fails.len(), 4, "{fails:?}");
    let (index, kind, error) = &fails[0];
    assert_eq!((*index, *kind), (1, FailKind::DatasetMismatch), "{error}");
    assert!(error.contains("feedface"), "{error}");
    let (index, kind, error) = &fails[1];
    assert_eq!((*index, *kind), (2, FailKind::Error), "{error}");
    assert!(error.starts_with("the trial needs about "), "{error}");
    assert!(
        error.contains("are available (MemAvailable, at most --max-memory 268.4 MB)"),
        "{error}"
    );
    let (index, kind, error) = &fails[2];
    assert_eq!((*index, *kind), (3, FailKind::Error), "{error}");
    assert!(
        error.contains("val_fraction = 0.0001 leaves 0 validation images of 1,000"),
        "{error}"
    );
    let (index, kind, error) = &fails[3];
    assert_eq!((*index, *kind), (4, FailKind::Error), "{error}");
    assert!(error.contains("synthetic:nope"), "{error}");
    for (_, _, error) in &fails {
        assert!(!error.contains('\n'), "one line: {error}");
    }
}

fn storage_full() -> Status {
    Status::unavailable("storage: No space left on device (os error 28)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_refusals_are_retried_then_the_trial_completes() {
    storage_refusals_are_retried(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_refusals_of_batched_reports_are_retried_then_the_trial_completes() {
    storage_refusals_are_retried(true).await;
}

async fn storage_refusals_are_retried(batched: bool) {
    let script = Script {
        batched,
        ..Script::default()
    };
    script.leases.lock().unwrap().push_back(lease(0, TRIAL, ""));
    script
        .report_errors
        .lock()
        .unwrap()
        .extend([storage_full(), storage_full(), storage_full()]);
    let calls = run(script, 1).await;
    let reports: Vec<(u32, bool)> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Report { epoch, stored, .. } => Some((*epoch, *stored)),
            _ => None,
        })
        .collect();
    assert_eq!(
        reports,
        [(1, false), (1, false), (1, false), (1, true), (2, true)]
    );
    assert!(
        calls.iter().any(|c| matches!(c, Call::Complete(_))),
        "{calls:?}"
    );
    assert!(fails(&calls).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_storage_keeps_refusing_gives_the_trial_back() {
    storage_keeps_refusing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_report_the_storage_keeps_refusing_gives_the_trial_back() {
    storage_keeps_refusing(true).await;
}

async fn storage_keeps_refusing(batched: bool) {
    let script = Script {
        batched,
        ..Script::default()
    };
    script.leases.lock().unwrap().push_back(lease(0, TRIAL, ""));
    *script.report_always.lock().unwrap() = Some(storage_full());
    let calls = run(script, 1).await;
    let fails = fails(&calls);
    assert_eq!(fails.len(), 1, "{calls:?}");
    let (index, kind, error) = &fails[0];
    assert_eq!((*index, *kind), (0, FailKind::HandBack), "{error}");
    assert!(
        error.contains("epoch 1's report could not be delivered"),
        "{error}"
    );
    assert!(
        error.contains("its storage refused the write (storage: No space left on device"),
        "{error}"
    );
    // Retried with backoff (not one call, not a busy loop), epoch 1 only, no Complete.
    let attempts = calls
        .iter()
        .filter(|c| matches!(c, Call::Report { .. }))
        .count();
    assert!((3..=60).contains(&attempts), "{attempts} report attempts");
    assert!(!calls.iter().any(|c| matches!(c, Call::Complete(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_report_fails_the_trial_with_the_coordinator_reason() {
    invalid_report_fails(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_batched_report_fails_the_trial_with_the_coordinator_reason() {
    invalid_report_fails(true).await;
}

async fn invalid_report_fails(batched: bool) {
    let script = Script {
        batched,
        ..Script::default()
    };
    script.leases.lock().unwrap().push_back(lease(0, TRIAL, ""));
    *script.report_always.lock().unwrap() = Some(Status::new(
        Code::InvalidArgument,
        "epoch 1: val_accuracy 7.5 is not in [0, 1]",
    ));
    let calls = run(script, 1).await;
    let fails = fails(&calls);
    assert_eq!(fails.len(), 1, "{calls:?}");
    let (_, kind, error) = &fails[0];
    assert_eq!(*kind, FailKind::Error, "{error}");
    assert_eq!(
        error,
        "the coordinator refused epoch 1's report: epoch 1: val_accuracy 7.5 is not in [0, 1]"
    );
    // Not retried, and the trial stopped: one report, no Complete.
    let attempts = calls
        .iter()
        .filter(|c| matches!(c, Call::Report { .. }))
        .count();
    assert_eq!(attempts, 1);
    assert!(!calls.iter().any(|c| matches!(c, Call::Complete(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packed_group_reports_each_epoch_in_one_call_and_a_misfit_trains_alone() {
    // Trials 0, 1 and 3 share a shape and train as one group; trial 2 fits no group.
    let seeded = |seed: u32| format!("seed = {seed}\n{TRIAL}");
    let script = Script {
        batched: true,
        pack: 4,
        ..Script::default()
    };
    script.leases.lock().unwrap().extend([
        lease(0, &seeded(0), ""),
        lease(
            1,
            &format!("activation = \"tanh\"\nbatchnorm = true\n{}", seeded(1)),
            "",
        ),
        lease(2, &seeded(2).replace("hidden = [16]", "hidden = [8]"), ""),
        lease(
            3,
            &format!("regularization = \"dropout:0.2\"\n{}", seeded(3)),
            "",
        ),
    ]);
    let script = Arc::new(script);
    let calls = run_shared(script.clone(), 4).await;
    assert!(fails(&calls).is_empty(), "{calls:?}");
    let mut completed: Vec<u32> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Complete(lease) => Some(lease.index),
            _ => None,
        })
        .collect();
    completed.sort();
    assert_eq!(completed, [0, 1, 2, 3]);
    // The group's two epochs: one call of 3 reports each; then trial 2's, alone.
    assert_eq!(*script.batches.lock().unwrap(), [3, 3, 1, 1]);
    let reported: Vec<(u32, u32)> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Report { lease, epoch, .. } => Some((lease.index, *epoch)),
            _ => None,
        })
        .collect();
    assert_eq!(
        reported,
        [
            (0, 1),
            (1, 1),
            (3, 1),
            (0, 2),
            (1, 2),
            (3, 2),
            (2, 1),
            (2, 2)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_report_in_a_group_stops_only_its_trial() {
    let seeded = |seed: u32| format!("seed = {seed}\n{TRIAL}");
    let script = Script {
        batched: true,
        pack: 3,
        ..Script::default()
    };
    script.leases.lock().unwrap().extend([
        lease(0, &seeded(0), ""),
        lease(1, &seeded(1), ""),
        lease(2, &seeded(2), ""),
    ]);
    // The group's first report (trial 0's epoch 1) is refused as invalid.
    script
        .report_errors
        .lock()
        .unwrap()
        .push_back(Status::invalid_argument("epoch 1: val_loss out of range"));
    let script = Arc::new(script);
    let calls = run_shared(script.clone(), 3).await;
    assert_eq!(
        fails(&calls),
        [(
            0,
            FailKind::Error,
            "the coordinator refused epoch 1's report: epoch 1: val_loss out of range".into()
        )]
    );
    let completed: Vec<u32> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Complete(lease) => Some(lease.index),
            _ => None,
        })
        .collect();
    assert_eq!(completed, [1, 2]);
    // Trial 0 stopped after its refused report; the others reported both epochs.
    assert_eq!(*script.batches.lock().unwrap(), [3, 2]);
}
