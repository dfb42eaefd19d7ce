//! The `coordinator` binary as a process: a full disk under its database, a second
//! coordinator on the same database, a host name in `--listen`.

use gradsweep_proto::sweep_service_client::SweepServiceClient;
use gradsweep_proto::worker_service_client::WorkerServiceClient;
use gradsweep_proto::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");

const SPEC: &str = "name = \"disk\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = 2\nseeds = [0, 1, 2, 3]\n[grid]\nactivation = [\"relu\", \"tanh\"]\n";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "gradsweep-coordinator-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process whose stdout lines arrive on a channel; killed when dropped, with
/// any other processes it named.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    also: Vec<u32>,
}

impl Proc {
    fn spawn(mut command: Command, stderr: &Path) -> Proc {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            also: Vec::new(),
        }
    }

    /// The next stdout line (within 30 s), or None when the output ended.
    fn line(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(30)).ok()
    }

    /// Waits for a line starting with `prefix` and returns the rest.
    fn expect(&self, prefix: &str) -> String {
        loop {
            let line = self
                .line()
                .unwrap_or_else(|| panic!("no line starting {prefix:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        for pid in &self.also {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn clients(addr: &str) -> (SweepServiceClient<Channel>, WorkerServiceClient<Channel>) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (
        SweepServiceClient::new(channel.clone()),
        WorkerServiceClient::new(channel),
    )
}

/// A call that must answer within 15 s (never hang).
async fn within<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 15 s (hung)"))
}

fn submit_request() -> SubmitSweepRequest {
    SubmitSweepRequest {
        spec_toml: SPEC.into(),
    }
}

/// Why a real full disk cannot be made here, if it cannot.
fn no_private_tmpfs() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("not running as root".into());
    }
    let unshare = Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !unshare {
        return Some("`unshare -m` is not available or not permitted".into());
    }
    None
}

/// A real full disk: the database on a 4 MiB tmpfs in a private mount namespace, under
/// a shell that restarts the coordinator when it exits once space is freed (as a
/// supervisor would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_the_write_then_the_coordinator_exits_and_restarts_intact() {
    if let Some(why) = no_private_tmpfs() {
        eprintln!("skipped: a full disk needs a private tmpfs ({why})");
        return;
    }
    let dir = TempDir::new("fulldisk");
    let mnt = dir.0.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = mnt.display();
    let script = format!(
        "mount -t tmpfs -o size=4m tmpfs {m} || exit 97\n\
         while :; do\n\
           {COORDINATOR} --db {m}/db --listen 127.0.0.1:0 & echo \"pid $!\"; wait $!; echo \"exited $?\"\n\
           [ -e {m}/stop ] && exit 0\n\
           while [ -e {m}/fill ]; do sleep 0.05; done\n\
         done\n"
    );
    let mut command = Command::new("unshare");
    // Only the coordinator's own error lines on stderr: no log lines.
    command
        .args(["-m", "sh", "-c", &script])
        .env("RUST_LOG", "off");
    let stderr = dir.0.join("stderr");
    let mut supervisor = Proc::spawn(command, &stderr);
    // unshare execs the shell: its /proc root is the private namespace's view.
    let inside = |p: &Path| {
        PathBuf::from(format!("/proc/{}/root", supervisor.child.id()))
            .join(p.strip_prefix("/").unwrap())
    };
    let Some(first) = supervisor.line() else {
        let status = supervisor.child.wait().unwrap();
        eprintln!("skipped: could not mount a tmpfs in a private namespace ({status})");
        return;
    };
    let pid: u32 = first.strip_prefix("pid ").unwrap().parse().unwrap();
    supervisor.also.push(pid);
    let addr = supervisor.expect("listening on ");
    let (mut sweeps, mut workers) = clients(&addr).await;
    let before = sweeps
        .submit_sweep(submit_request())
        .await
        .unwrap()
        .into_inner();
    let before = before.sweep.unwrap().id;
    let w = workers
        .register(RegisterRequest {
            name: "w".into(),
            device: "cpu".into(),
            slots: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let l = workers
        .lease(LeaseRequest {
            worker_id: w,
            max_trials: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .leases
        .remove(0);
    let lease = LeaseRef {
        sweep_id: l.sweep_id,
        index: l.index,
        lease_id: l.lease_id,
        worker_id: w,
    };
    let report = |epoch| ReportEpochRequest {
        lease: Some(lease),
        report: Some(EpochReport {
            epoch,
            train_loss: 1.0,
            ..EpochReport::default()
        }),
    };
    // Flushed before it is answered, with everything before it.
    workers.report_epoch(report(1)).await.unwrap();

    // Fill the disk.
    let fill = mnt.join("fill");
    {
        let mut f = std::fs::File::create(inside(&fill)).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
    }
    let mut refused = None;
    for _ in 0..200 {
        if let Err(e) = within(
            "submit on a full disk",
            sweeps.submit_sweep(submit_request()),
        )
        .await
        {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("200 sweeps fit on a full 4 MiB disk");
    assert_eq!(refused.code(), Code::Unavailable, "{}", refused.message());
    assert!(
        refused
            .message()
            .starts_with("storage: No space left on device"),
        "{}",
        refused.message()
    );
    // Reads are still served, and a later write is refused at once, not hung.
    let listed = within(
        "list after the failure",
        sweeps.list_sweeps(ListSweepsRequest {}),
    )
    .await
    .unwrap()
    .into_inner()
    .sweeps;
    assert!(listed.iter().any(|s| s.id == before));
    let again = within(
        "submit after the failure",
        sweeps.submit_sweep(submit_request()),
    )
    .await
    .unwrap_err();
    assert!(
        again.code() == Code::Unavailable && again.message().starts_with("storage:")
            || again.code() == Code::Unavailable && again.message().contains("connect"),
        "{again:?}"
    );
    let e = within(
        "a report after the failure",
        workers.report_epoch(report(2)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());

    // The coordinator exits non-zero for its supervisor…
    assert_eq!(supervisor.expect("exited "), "1");
    let log = std::fs::read_to_string(&stderr).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.iter().all(|l| l.starts_with("coordinator: ")),
        "{log}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("coordinator: storage: No space left on device"))
            .count(),
        1,
        "{log}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("coordinator: exiting: the database's storage failed"),
        "{log}"
    );

    // …which, once there is space again, restarts it on the intact database.
    std::fs::remove_file(inside(&fill)).unwrap();
    let pid: u32 = supervisor.expect("pid ").parse().unwrap();
    supervisor.also.push(pid);
    let addr = supervisor.expect("listening on ");
    let (mut sweeps, mut workers) = clients(&addr).await;
    let listed = sweeps
        .list_sweeps(ListSweepsRequest {})
        .await
        .unwrap()
        .into_inner()
        .sweeps;
    assert!(listed.iter().any(|s| s.id == before));
    // The worker's lease survived, with a fresh deadline: its retried report lands.
    workers.report_epoch(report(2)).await.unwrap();
    let trial = sweeps
        .get_trial(GetTrialRequest {
            sweep_id: lease.sweep_id,
            index: lease.index,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trial.epochs.len(), 2);
    sweeps.submit_sweep(submit_request()).await.unwrap();

    std::fs::File::create(inside(&mnt.join("stop"))).unwrap();
    let _ = Command::new("kill").arg(pid.to_string()).status();
    assert_eq!(supervisor.expect("exited "), "0");
    let status = supervisor.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_coordinator_on_the_same_database_names_the_holder() {
    let dir = TempDir::new("locked");
    let db = dir.0.join("db");
    let mut first = Command::new(COORDINATOR);
    first.args(["--listen", "127.0.0.1:0", "--db"]).arg(&db);
    let first = Proc::spawn(first, &dir.0.join("first.err"));
    first.expect("listening on ");
    let out = Command::new(COORDINATOR)
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "coordinator: database {}: another coordinator holds it",
            db.display()
        )),
        "{err}"
    );
    drop(first);
}

#[test]
fn listen_resolves_host_names_and_bad_addresses_are_one_line() {
    let dir = TempDir::new("listen");
    let mut named = Command::new(COORDINATOR);
    named
        .args(["--listen", "localhost:0", "--db"])
        .arg(dir.0.join("db"));
    let named = Proc::spawn(named, &dir.0.join("named.err"));
    let addr = named.expect("listening on ");
    assert!(
        addr.starts_with("127.0.0.1:") || addr.starts_with("[::1]:"),
        "{addr}"
    );
    drop(named);

    let out = Command::new(COORDINATOR)
        .args(["--listen", "no-such-host.invalid:7070", "--db"])
        .arg(dir.0.join("db2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("coordinator: --listen no-such-host.invalid:7070: "),
        "{err}"
    );
}

#[test]
fn a_database_error_is_one_line_with_its_cause_once() {
    let out = Command::new(COORDINATOR)
        .args(["--listen", "127.0.0.1:0", "--db", "/dev/null/db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        "coordinator: --db /dev/null/db: storage: Not a directory (os error 20)\n"
    );
}
