//! The `sweep` binary where things go wrong: a reader that closed the pipe, a
//! coordinator whose disk refuses writes, and the answers only a coordinator with
//! retries and attempt histories gives (`sweep retry`, `sweep trial`'s history) — served
//! here by a scripted SweepService, and by a real coordinator on loopback.

use gradsweep_coordinator::{LeasePolicy, ServerConfig, Store, run};
use gradsweep_proto::sweep_service_client::SweepServiceClient;
use gradsweep_proto::sweep_service_server::{SweepService, SweepServiceServer};
use gradsweep_proto::*;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

fn sweep(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args(args)
        .env("GRADSWEEP_COORDINATOR", addr)
        .output()
        .expect("sweep runs")
}

/// `sweep <args>` with a stdout whose reader is already gone.
fn sweep_into_closed_pipe(addr: &str, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args(args)
        .env("GRADSWEEP_COORDINATOR", addr)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("sweep runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a failure with exactly one `error: …` line on stderr; returns it.
fn one_line_error(o: &Output) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    assert!(
        !err.contains("Status {") && !err.contains("metadata"),
        "tonic's Debug text: {err}"
    );
    err.trim_end().to_owned()
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_every_command_quietly() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("gradsweep-cli-pipe-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let store = Arc::new(Store::open(&dir.0, LeasePolicy::default()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, store, ServerConfig::default(), async {
        let _ = stopped.await;
    }));
    let mut client = SweepServiceClient::connect(addr.clone()).await.unwrap();
    let spec = "name = \"pipe\"\ndataset = \"synthetic:glyphs-tiny\"\nseeds = [0, 1]\n[grid]\nactivation = [\"relu\", \"tanh\"]\n";
    let id = client
        .submit_sweep(SubmitSweepRequest {
            spec_toml: spec.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap()
        .id;
    let (id_s, trial) = (id.to_string(), format!("{id}/0"));
    let commands: [&[&str]; 5] = [
        &["ls"],
        &["status", &id_s],
        &["trial", &trial],
        &["table", &id_s, "--format", "csv"],
        &["--help"],
    ];
    let outputs = tokio::task::spawn_blocking({
        let addr = addr.clone();
        let commands: Vec<Vec<String>> = commands
            .iter()
            .map(|c| c.iter().map(|s| s.to_string()).collect())
            .collect();
        move || {
            commands
                .iter()
                .map(|c| {
                    let args: Vec<&str> = c.iter().map(String::as_str).collect();
                    (c.join(" "), sweep_into_closed_pipe(&addr, &args))
                })
                .collect::<Vec<_>>()
        }
    })
    .await
    .unwrap();
    for (command, out) in outputs {
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "sweep {command}: {err}");
        assert_ne!(out.status.code(), Some(101), "sweep {command}: {err}");
        assert!(err.is_empty(), "sweep {command} said: {err}");
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A SweepService that answers what a test scripted and records the retries asked.
#[derive(Default)]
struct Scripted {
    retries: Mutex<Vec<RetrySweepRequest>>,
}

fn history() -> TrialDetail {
    let end = |attempt, kind: AttemptEndKind, worker_id, name: &str, reason: &str| AttemptEnd {
        attempt,
        kind: kind as i32,
        worker_id,
        worker_name: name.into(),
        reason: reason.into(),
        ended_unix_ms: 1_700_000_000_000,
    };
    TrialDetail {
        trial: Some(Trial {
            sweep_id: 3,
            index: 17,
            key: "abc".into(),
            config_toml: "dataset = \"synthetic:glyphs-tiny\"\n".into(),
            seed: 1,
            state: TrialState::Leased as i32,
            attempt: 3,
            failures: 1,
            lost: 2,
            history: vec![
                end(0, AttemptEndKind::Expired, 4, "box1", "lease expired"),
                end(
                    1,
                    AttemptEndKind::Error,
                    5,
                    "box2",
                    "the trial needs about 9.1 TB of host memory (…)",
                ),
                end(
                    2,
                    AttemptEndKind::HandedBack,
                    6,
                    "",
                    "worker box3 shut down",
                ),
            ],
            ..Default::default()
        }),
        epochs: vec![],
    }
}

#[derive(Clone)]
struct Fake(Arc<Scripted>);

type Events = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<SweepEvent, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl SweepService for Fake {
    async fn submit_sweep(
        &self,
        _: Request<SubmitSweepRequest>,
    ) -> Result<Response<SubmitSweepResponse>, Status> {
        Err(Status::unavailable(
            "storage: No space left on device (os error 28)",
        ))
    }
    async fn list_sweeps(
        &self,
        _: Request<ListSweepsRequest>,
    ) -> Result<Response<ListSweepsResponse>, Status> {
        Err(Status::internal("sled: corrupted\nsecond line"))
    }
    async fn get_sweep(&self, _: Request<GetSweepRequest>) -> Result<Response<Sweep>, Status> {
        Err(Status::not_found("sweep 9 not found"))
    }
    type WatchSweepStream = Events;
    type ListTrialsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<TrialSummary, Status>> + Send + 'static>,
    >;
    type ExportTrialsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<TrialExport, Status>> + Send + 'static>,
    >;

    async fn list_trials(
        &self,
        _: Request<ListTrialsRequest>,
    ) -> Result<Response<Self::ListTrialsStream>, Status> {
        Err(Status::unimplemented(""))
    }

    async fn export_trials(
        &self,
        _: Request<ExportTrialsRequest>,
    ) -> Result<Response<Self::ExportTrialsStream>, Status> {
        Err(Status::unimplemented(""))
    }

    async fn get_effects(
        &self,
        _: Request<GetEffectsRequest>,
    ) -> Result<Response<Effects>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn watch_sweep(&self, _: Request<WatchSweepRequest>) -> Result<Response<Events>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn cancel_sweep(
        &self,
        _: Request<CancelSweepRequest>,
    ) -> Result<Response<Sweep>, Status> {
        Err(Status::failed_precondition("sweep 3 is already finished"))
    }
    async fn retry_sweep(
        &self,
        r: Request<RetrySweepRequest>,
    ) -> Result<Response<RetrySweepResponse>, Status> {
        let r = r.into_inner();
        self.0.retries.lock().unwrap().push(r);
        Ok(Response::new(RetrySweepResponse {
            sweep: None,
            requeued: 2,
        }))
    }
    async fn get_table(&self, _: Request<GetTableRequest>) -> Result<Response<Table>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn get_trial(
        &self,
        _: Request<GetTrialRequest>,
    ) -> Result<Response<TrialDetail>, Status> {
        Ok(Response::new(history()))
    }
    async fn list_running(
        &self,
        _: Request<ListRunningRequest>,
    ) -> Result<Response<ListRunningResponse>, Status> {
        Err(Status::unimplemented(""))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_history_and_refusals_read_as_one_line_each() {
    let scripted = Arc::new(Scripted::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SweepServiceServer::new(Fake(scripted.clone())))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let spec = std::env::temp_dir().join(format!("gradsweep-cli-spec-{}.toml", std::process::id()));
    std::fs::write(&spec, "name = \"x\"\n").unwrap();
    let spec_path = spec.display().to_string();
    let outs = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            [
                sweep(&addr, &["retry", "3"]),
                sweep(&addr, &["retry", "3", "--diverged"]),
                sweep(&addr, &["trial", "3/17"]),
                sweep(&addr, &["submit", &spec_path]),
                sweep(&addr, &["ls"]),
                sweep(&addr, &["cancel", "3"]),
                sweep(&addr, &["status", "9"]),
                sweep(&addr, &["table", "3"]),
            ]
        }
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&spec);
    let [
        retry,
        retry_diverged,
        trial,
        submit,
        ls,
        cancel,
        status,
        table,
    ] = outs;

    assert!(retry.status.success(), "{retry:?}");
    assert_eq!(text(&retry.stdout), "requeued 2 FAILED trials of sweep 3\n");
    assert_eq!(
        text(&retry_diverged.stdout),
        "requeued 2 FAILED or DIVERGED trials of sweep 3\n"
    );
    let asked: Vec<(u64, bool)> = scripted
        .retries
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.sweep_id, r.include_diverged))
        .collect();
    assert_eq!(asked, [(3, false), (3, true)]);

    let trial = text(&trial.stdout);
    assert!(
        trial.starts_with(
            "trial 3/17 [abc]: running (seed 1, attempt 3; 1 failure, 2 leases lost)\n"
        ),
        "{trial}"
    );
    let history: Vec<&str> = trial
        .lines()
        .skip_while(|l| *l != "history:")
        .take(5)
        .collect();
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(cells(history[1]), ["ATTEMPT", "ENDED", "WORKER", "WHY"]);
    assert_eq!(
        cells(history[2]),
        ["0", "lease expired", "box1", "lease expired"]
    );
    assert_eq!(
        cells(history[3]),
        [
            "1",
            "error",
            "box2",
            "the trial needs about 9.1 TB of host memory (…)"
        ]
    );
    assert_eq!(
        cells(history[4]),
        ["2", "handed back", "worker 6", "worker box3 shut down"]
    );

    let e = one_line_error(&submit);
    assert!(
        e.contains(
            "the coordinator's disk refused the write (storage: No space left on device (os error 28)); nothing was stored"
        ),
        "{e}"
    );
    assert_eq!(
        one_line_error(&ls),
        "error: the coordinator failed: sled: corrupted second line"
    );
    assert_eq!(
        one_line_error(&cancel),
        "error: sweep 3 is already finished"
    );
    assert_eq!(one_line_error(&status), "error: sweep 9 not found");
    let e = one_line_error(&table);
    assert!(e.contains("does not support this command"), "{e}");
    server.abort();
}

#[test]
fn retry_help_teaches() {
    let out = Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args(["retry", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    for want in [
        "Requeue a sweep's FAILED trials",
        "--diverged",
        "--max-attempts",
        "--max-lost",
        "history",
        "sweep retry 1",
    ] {
        assert!(help.contains(want), "{want:?} missing from:\n{help}");
    }
}
