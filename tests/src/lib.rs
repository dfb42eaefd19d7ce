//! The harness of the end-to-end tests in `tests/tests/`: they start the real binaries
//! built by the workspace (`coordinator`, `worker`, `sweep`) as child processes, on
//! loopback ports chosen by the OS, and kill whatever they started when they end.

use gradsweep_proto::client::{AuthChannel, Bearer};
use gradsweep_proto::sweep_service_client::SweepServiceClient;
use gradsweep_proto::{
    GetSweepRequest, GetTrialRequest, SubmitSweepRequest, Sweep, SweepState, TrialDetail,
};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::service::interceptor::InterceptedService;

/// A binary built beside the running test executable (`target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo test --release --workspace builds every binary)",
        path.display()
    );
    path
}

/// A child process killed (SIGKILL) when dropped, so a failed test leaves none behind.
pub struct Proc(pub Child);

impl Proc {
    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM (the process shuts down on its own).
    pub fn terminate(&mut self) {
        // SAFETY: sending a signal to our own child's pid has no memory-safety
        // preconditions.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
    }
}

impl Proc {
    /// Sends `sig` (SIGSTOP, SIGCONT, …) to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.0.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh, empty temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `<tmp>/gradsweep-e2e-<tag>-<pid>`, emptied and created.
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("gradsweep-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The log filter of the processes the tests start: `RUST_LOG` when set, else warnings
/// only (their stderr is the test's, and a failure's output should not drown in
/// per-trial info lines).
pub fn quiet_log() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())
}

/// Starts a coordinator on `listen` with database `db` and lease TTL `ttl` (at most 3
/// attempts a trial), and waits for its `listening on <addr>` line; returns it and the
/// address it listens on.
pub fn coordinator(db: &Path, listen: &str, ttl: &str) -> (Proc, String) {
    coordinator_with(db, listen, ttl, &[])
}

/// [`coordinator`] with more flags (`--tls-cert`, token files, `--log-format`).
pub fn coordinator_with(db: &Path, listen: &str, ttl: &str, extra: &[&str]) -> (Proc, String) {
    let mut child = Command::new(binary("coordinator"))
        .args([
            "--listen",
            listen,
            "--lease-ttl",
            ttl,
            "--max-attempts",
            "3",
        ])
        .args(extra)
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", quiet_log())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("coordinator starts");
    let stdout = child.stdout.take().expect("coordinator stdout");
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("coordinator's first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (proc, addr)
}

/// A `worker serve` named `name` with `slots` slots, on `GRADSWEEP_E2E_DEVICE` (default
/// `cpu`, so that the tests run anywhere; `cuda:0` on a GPU machine).
pub fn worker(addr: &str, name: &str, slots: usize) -> Proc {
    worker_command(&format!("http://{addr}"), name, slots, &[])
        .env("RUST_LOG", quiet_log())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Proc)
        .expect("worker starts")
}

/// The command of a `worker serve` for the coordinator at `url` (`http://` or
/// `https://`) with more flags (`--ca`, `--token-file`), as [`worker`] starts it;
/// stdout to /dev/null, stderr for the caller to choose.
pub fn worker_command(url: &str, name: &str, slots: usize, extra: &[&str]) -> Command {
    let device = std::env::var("GRADSWEEP_E2E_DEVICE").unwrap_or_else(|_| "cpu".into());
    let mut command = Command::new(binary("worker"));
    command
        .args(["serve", "--device", &device, "--threads", "2"])
        .args(["--slots", &slots.to_string(), "--name", name])
        .arg("--coordinator")
        .arg(url)
        .args(extra)
        .env_remove("GRADSWEEP_TOKEN")
        .stdout(Stdio::null());
    command
}

/// A test certificate authority and a server certificate it signed (for `localhost`
/// and `127.0.0.1`), written as PEM files into a directory.
pub struct Pki {
    /// The CA's certificate (what clients pass as `--ca`).
    pub ca: PathBuf,
    /// The server's certificate (`--tls-cert`).
    pub cert: PathBuf,
    /// The server's private key (`--tls-key`).
    pub key: PathBuf,
    /// Another CA's certificate, which did not sign the server's.
    pub other_ca: PathBuf,
}

impl Pki {
    /// Generates the certificates into `dir`, the server's for `localhost` and
    /// `127.0.0.1`.
    pub fn new(dir: &Path) -> Pki {
        Pki::for_names(dir, &["localhost", "127.0.0.1"])
    }

    /// Generates the certificates into `dir`, the server's for `names` (host names or
    /// IP addresses).
    pub fn for_names(dir: &Path, names: &[&str]) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let authority = |name: &str| {
            let key = KeyPair::generate().expect("CA key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key).expect("CA certificate");
            (cert, Issuer::new(params, key))
        };
        let (ca_cert, issuer) = authority("gradsweep test CA");
        let (other_cert, _) = authority("another test CA");
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "gradsweep coordinator");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write a PEM file");
            path
        };
        Pki {
            ca: write("ca.pem", ca_cert.pem()),
            cert: write("server.pem", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            other_ca: write("other-ca.pem", other_cert.pem()),
        }
    }
}

/// A SweepService client as the tests use it: TLS and a token when given.
pub type Sweeps = SweepServiceClient<AuthChannel>;

/// A client of the coordinator at `url` (`http://` or `https://`, with `ca` and the
/// client `token` when given), connected on first use; a call waits at most 20 s, so a
/// coordinator that is down makes calls fail instead of hang.
pub fn sweeps_client(url: &str, ca: Option<&Path>, token: Option<&str>) -> Sweeps {
    let endpoint = gradsweep_proto::client::endpoint(url, ca)
        .expect("a test address")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(20));
    let bearer = Bearer::new(token).expect("a test token");
    SweepServiceClient::new(InterceptedService::new(endpoint.connect_lazy(), bearer))
}

/// Submits `spec`, which must be accepted.
pub async fn submit(sweeps: &mut Sweeps, spec: &str) -> Sweep {
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

/// Trial `index` of sweep `id` with its epochs.
pub async fn trial(sweeps: &mut Sweeps, id: u64, index: u32) -> TrialDetail {
    sweeps
        .get_trial(GetTrialRequest {
            sweep_id: id,
            index,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Polls the sweep (riding over a coordinator that is down) until it is finished; panics
/// after `limit`, or when nothing has answered for `limit` + 30 s.
pub async fn wait_finished(sweeps: &mut Sweeps, id: u64, limit: Duration) -> Sweep {
    let started = Instant::now();
    loop {
        if let Ok(s) = sweeps.get_sweep(GetSweepRequest { sweep_id: id }).await {
            let s = s.into_inner();
            if s.state() == SweepState::Finished {
                return s;
            }
            assert!(
                started.elapsed() < limit,
                "sweep {id} not finished after {limit:?}: {:?}",
                s.counts
            );
        }
        assert!(
            started.elapsed() < limit + Duration::from_secs(30),
            "sweep {id}: no answer for {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
