//! The `coordinator` binary on the network: the two roles' tokens on every service
//! (none, wrong, client, worker × SweepService, WorkerService, Health, Reflection),
//! the refusal of a non-loopback address without tokens and TLS, token files that are
//! empty or missing, health through a graceful shutdown, and JSON logs.

use gradsweep_proto::sweep_service_client::SweepServiceClient;
use gradsweep_proto::worker_service_client::WorkerServiceClient;
use gradsweep_proto::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");
/// The `sweep` binary (crate `gradsweep-client`), built beside this test by
/// `cargo test --workspace`.
fn sweep_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target dir")
        .join("sweep");
    assert!(
        path.exists(),
        "{} is missing: run cargo test --workspace",
        path.display()
    );
    path
}

const SPEC: &str = "name = \"auth\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = 2\nseeds = [0, 1]\n[grid]\nactivation = [\"relu\"]\n";

const CLIENT_TOKEN: &str = "client-7f3a9c";
const WORKER_TOKEN: &str = "worker-51be02";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("gradsweep-security-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A coordinator process, killed when dropped.
struct Coord(Child);

impl Drop for Coord {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `coordinator --db <dir>/db <args>` (on `127.0.0.1:0` unless `args` say) with stderr in `<dir>/stderr`; returns it
/// and the address of its `listening on` line, or the exit status and stderr when it
/// exits first.
fn start(dir: &TempDir, args: &[&str]) -> Result<(Coord, String), (i32, String)> {
    let stderr = dir.0.join("stderr");
    let mut child = Command::new(COORDINATOR)
        .arg("--db")
        .arg(dir.0.join("db"))
        .args(if args.contains(&"--listen") {
            &[][..]
        } else {
            &["--listen", "127.0.0.1:0"][..]
        })
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    match line.trim().strip_prefix("listening on ") {
        Some(addr) => Ok((Coord(child), addr.to_owned())),
        None => {
            let status = child.wait().unwrap();
            Err((
                status.code().unwrap_or(-1),
                std::fs::read_to_string(&stderr).unwrap(),
            ))
        }
    }
}

fn token_args(dir: &TempDir) -> Vec<String> {
    let c = dir.file("client.token", &format!("{CLIENT_TOKEN}\n"));
    let w = dir.file("worker.token", &format!("  {WORKER_TOKEN}  \n"));
    vec![
        "--client-token-file".into(),
        c.display().to_string(),
        "--worker-token-file".into(),
        w.display().to_string(),
    ]
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    request
}

/// What a call answered: Ok, or its code.
fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<(), Code> {
    r.map(|_| ()).map_err(|s| s.code())
}

async fn health(channel: Channel, token: Option<&str>) -> Result<ServingStatus, tonic::Status> {
    let answer = HealthClient::new(channel)
        .check(with_token(
            HealthCheckRequest {
                service: String::new(),
            },
            token,
        ))
        .await?;
    Ok(answer.into_inner().status())
}

/// The services reflection v1 lists.
async fn reflected_v1(channel: Channel, token: Option<&str>) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(with_token(tokio_stream::iter([request]), token))
        .await
        .expect("reflection answers without a token")
        .into_inner();
    let answer = stream.message().await.unwrap().unwrap();
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

/// The services reflection v1alpha lists.
async fn reflected_v1alpha(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match stream.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_opens_only_its_roles_service_and_probes_need_none() {
    let dir = TempDir::new("matrix");
    let args = token_args(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_coord, addr) = start(&dir, &args).expect("coordinator starts on loopback");
    let ch = channel(&addr).await;
    let tokens = [
        ("none", None),
        ("wrong", Some("not-the-token")),
        ("client", Some(CLIENT_TOKEN)),
        ("worker", Some(WORKER_TOKEN)),
    ];
    for (who, token) in tokens {
        let sweeps = code(
            SweepServiceClient::new(ch.clone())
                .list_sweeps(with_token(ListSweepsRequest::default(), token))
                .await,
        );
        let expected = match who {
            "client" => Ok(()),
            "worker" => Err(Code::PermissionDenied),
            _ => Err(Code::Unauthenticated),
        };
        assert_eq!(sweeps, expected, "SweepService with the {who} token");

        let workers = code(
            WorkerServiceClient::new(ch.clone())
                .register(with_token(
                    RegisterRequest {
                        name: format!("w-{who}"),
                        device: "cpu".into(),
                        slots: 1,
                    },
                    token,
                ))
                .await,
        );
        let expected = match who {
            "worker" => Ok(()),
            "client" => Err(Code::PermissionDenied),
            _ => Err(Code::Unauthenticated),
        };
        assert_eq!(workers, expected, "WorkerService with the {who} token");

        assert_eq!(
            health(ch.clone(), token).await.unwrap(),
            ServingStatus::Serving,
            "Health with the {who} token"
        );
        let services = reflected_v1(ch.clone(), token).await;
        for name in ["gradsweep.v1.SweepService", "gradsweep.v1.WorkerService"] {
            assert!(
                services.iter().any(|s| s == name),
                "reflection with the {who} token lists {name}: {services:?}"
            );
        }
    }
    let alpha = reflected_v1alpha(ch.clone()).await;
    assert!(
        alpha.iter().any(|s| s == "gradsweep.v1.SweepService"),
        "{alpha:?}"
    );

    // The messages name the fix.
    let missing = SweepServiceClient::new(ch.clone())
        .list_sweeps(ListSweepsRequest::default())
        .await
        .unwrap_err();
    assert!(
        missing.message().contains("--token-file"),
        "{}",
        missing.message()
    );
    let crossed = WorkerServiceClient::new(ch.clone())
        .register(with_token(RegisterRequest::default(), Some(CLIENT_TOKEN)))
        .await
        .unwrap_err();
    assert!(
        crossed.message().contains("worker token"),
        "{}",
        crossed.message()
    );

    // The sweep CLI: one line naming the flag and the variable; then with the token.
    let out = Command::new(sweep_binary())
        .args(["--coordinator", &addr, "ls"])
        .env_remove("GRADSWEEP_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--token-file") && err.contains("GRADSWEEP_TOKEN"),
        "{err}"
    );
    let out = Command::new(sweep_binary())
        .args(["--coordinator", &addr, "ls"])
        .env("GRADSWEEP_TOKEN", WORKER_TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("client token"), "{err}");
    let token_file = dir.0.join("client.token");
    let out = Command::new(sweep_binary())
        .args(["--coordinator", &addr, "--token-file"])
        .arg(&token_file)
        .arg("ls")
        .env("GRADSWEEP_TOKEN", "ignored-when-a-file-is-given")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(sweep_binary())
        .args(["--coordinator", &addr, "ls"])
        .env("GRADSWEEP_TOKEN", CLIENT_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_non_loopback_address_needs_tokens_and_tls_or_insecure() {
    let dir = TempDir::new("bind");
    let (status, err) = start(&dir, &["--listen", "0.0.0.0:0"])
        .err()
        .expect("refused without tokens and TLS");
    assert_eq!(status, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for flag in [
        "--tls-cert/--tls-key",
        "--client-token-file/--worker-token-file",
        "--insecure",
    ] {
        assert!(err.contains(flag), "names {flag}: {err}");
    }

    // Tokens alone are not enough: TLS is still named.
    let mut args = token_args(&dir);
    args.extend(["--listen".into(), "0.0.0.0:0".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, err) = start(&dir, &args).err().expect("refused without TLS");
    assert!(err.contains("--tls-cert/--tls-key"), "{err}");
    assert!(!err.contains("--client-token-file/"), "{err}");

    let (_coord, addr) = start(&dir, &["--listen", "0.0.0.0:0", "--insecure"])
        .expect("--insecure serves a non-loopback address");
    assert!(addr.starts_with("0.0.0.0:"), "{addr}");
}

#[test]
fn token_files_that_are_empty_missing_or_shared_are_refused_at_start() {
    let dir = TempDir::new("files");
    let empty = dir.file("empty.token", " \n");
    let good = dir.file("good.token", "abc\n");
    let missing = dir.0.join("missing.token");
    let cases: [(&str, &Path, &Path, &str); 3] = [
        ("--client-token-file", &empty, &good, "is empty"),
        ("--worker-token-file", &good, &missing, "cannot read it"),
        ("--client-token-file", &good, &good, "the same token"),
    ];
    for (flag, client, worker, why) in cases {
        let c = client.display().to_string();
        let w = worker.display().to_string();
        let (status, err) = start(
            &dir,
            &["--client-token-file", &c, "--worker-token-file", &w],
        )
        .err()
        .unwrap_or_else(|| panic!("{flag}: {why} must be refused"));
        assert_eq!(status, 1);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(flag) && err.contains(why),
            "{flag} {why}: {err}"
        );
    }
}

#[test]
fn tls_files_that_are_missing_or_not_pem_are_refused_at_start() {
    let dir = TempDir::new("tlsfiles");
    let text = dir.file("notes.txt", "not a certificate\n");
    let junk = dir.file(
        "junk.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let junk_key = dir.file(
        "junk.key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let missing = dir.0.join("missing.pem");
    let p = |p: &Path| p.display().to_string();
    let cases = [
        (p(&missing), p(&junk_key), "--tls-cert", "cannot read it"),
        (
            p(&text),
            p(&junk_key),
            "--tls-cert",
            "not a PEM certificate",
        ),
        (p(&junk), p(&text), "--tls-key", "not a PEM private key"),
        (
            p(&junk),
            p(&junk_key),
            "--tls-cert/--tls-key",
            "cannot serve TLS",
        ),
    ];
    for (cert, key, flag, why) in cases {
        let (status, err) = start(&dir, &["--tls-cert", &cert, "--tls-key", &key])
            .err()
            .unwrap_or_else(|| panic!("{flag}: {why} must be refused"));
        assert_eq!(status, 1);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(flag) && err.contains(why),
            "{flag} {why}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_then_not_serving_once_shutdown_begins() {
    let dir = TempDir::new("health");
    let (mut coord, addr) = start(&dir, &["--drain-delay", "60s"]).unwrap();
    let ch = channel(&addr).await;
    assert_eq!(
        health(ch.clone(), None).await.unwrap(),
        ServingStatus::Serving
    );
    let status = Command::new("kill")
        .args(["-TERM", &coord.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Within the drain delay the server still answers, NOT_SERVING; bounded wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = health(ch.clone(), None).await.unwrap();
        if now == ServingStatus::NotServing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {now:?} 30 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Calls are still served while draining.
    let listed = SweepServiceClient::new(ch.clone())
        .list_sweeps(ListSweepsRequest::default())
        .await;
    assert!(listed.is_ok(), "{listed:?}");
    let log = std::fs::read_to_string(dir.0.join("stderr")).unwrap();
    assert!(log.contains("NOT_SERVING"), "{log}");
    let _ = coord.0.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_sweeps_workers_failures_and_lost_leases() {
    let dir = TempDir::new("logs");
    let (_coord, addr) = start(&dir, &["--log-format", "json", "--lease-ttl", "300ms"]).unwrap();
    let ch = channel(&addr).await;
    let mut sweeps = SweepServiceClient::new(ch.clone());
    let mut workers = WorkerServiceClient::new(ch.clone());
    let sweep = sweeps
        .submit_sweep(SubmitSweepRequest {
            spec_toml: SPEC.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap();
    let worker_id = workers
        .register(RegisterRequest {
            name: "logged".into(),
            device: "cpu".into(),
            slots: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let lease = |workers: &mut WorkerServiceClient<Channel>| {
        let mut workers = workers.clone();
        async move {
            workers
                .lease(LeaseRequest {
                    worker_id,
                    max_trials: 1,
                })
                .await
                .unwrap()
                .into_inner()
                .leases
                .remove(0)
        }
    };
    let first = lease(&mut workers).await;
    workers
        .fail(FailRequest {
            lease: Some(LeaseRef {
                sweep_id: first.sweep_id,
                index: first.index,
                lease_id: first.lease_id,
                worker_id,
            }),
            error: "out of disk for the dataset".into(),
            kind: FailKind::Error as i32,
        })
        .await
        .unwrap();
    // The next lease is left to expire (no heartbeat).
    let _second = lease(&mut workers).await;
    let path = dir.0.join("stderr");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&path)
        .unwrap()
        .contains("worker lost")
    {
        assert!(Instant::now() < deadline, "no lease expired within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sweeps
        .cancel_sweep(CancelSweepRequest { sweep_id: sweep.id })
        .await
        .unwrap();
    // Each log line is one JSON object; the events carry their fields.
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let messages: Vec<String> = events
            .iter()
            .map(|e| e["fields"]["message"].as_str().unwrap_or("").to_owned())
            .collect();
        if messages.iter().any(|m| m == "sweep cancelled") {
            break events;
        }
        assert!(Instant::now() < deadline, "no cancel logged: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |message: &str| {
        events
            .iter()
            .find(|e| e["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} in {events:?}"))
            .clone()
    };
    assert_eq!(find("sweep submitted")["fields"]["sweep"], sweep.id);
    assert_eq!(find("worker registered")["fields"]["name"], "logged");
    let failed = find("trial attempt failed");
    assert_eq!(failed["fields"]["reason"], "out of disk for the dataset");
    assert_eq!(failed["fields"]["index"], first.index);
    assert_eq!(
        find("worker lost: its lease expired")["fields"]["worker"],
        worker_id
    );
    assert_eq!(find("sweep cancelled")["fields"]["sweep"], sweep.id);
    assert_eq!(find("sweep submitted")["level"], "INFO");
}
