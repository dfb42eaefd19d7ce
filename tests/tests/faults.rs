//! The fault suite: real `coordinator` and `worker serve` processes on loopback, hurt the
//! way a lab's machines hurt them — workers SIGKILLed mid-trial, the coordinator SIGKILLed
//! and restarted (once for longer than the lease TTL), a worker frozen past its lease and
//! woken again (the zombie), the database's disk filling up under a running sweep, and
//! garbage on the port.
//!
//! Shortened by default (CI); `GRADSWEEP_FAULTS_FULL=1` runs the full plan: 40 trials,
//! 10 worker SIGKILLs and 3 coordinator SIGKILLs in one sweep.

use gradsweep_proto::*;
use gradsweep_tests::{
    Proc, Sweeps, TempDir, binary, coordinator, submit, trial, wait_finished, worker,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;

fn full() -> bool {
    std::env::var("GRADSWEEP_FAULTS_FULL").is_ok_and(|v| v == "1")
}

/// A plaintext client of the coordinator at `addr` (`host:port`).
fn http_client(addr: &str) -> Sweeps {
    gradsweep_tests::sweeps_client(&format!("http://{addr}"), None, None)
}

/// A trial's epochs without their wall-clock seconds (everything else is a pure
/// function of the config and the data, so it must be bit-identical run to run).
fn timeless(epochs: &[EpochReport]) -> Vec<EpochReport> {
    epochs
        .iter()
        .map(|e| EpochReport {
            seconds: 0.0,
            ..e.clone()
        })
        .collect()
}

/// `sweep table <id> --format csv` as the user would run it.
fn table_csv(addr: &str, id: u64) -> String {
    let out = Command::new(binary("sweep"))
        .args(["--coordinator", &format!("http://{addr}")])
        .args(["table", &id.to_string(), "--format", "csv"])
        .output()
        .expect("sweep table runs");
    assert!(
        out.status.success(),
        "sweep table: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The chaos sweep: activations × batch norm × seeds, each trial long enough (on the
/// CPU, about a second) to be killed in the middle of.
fn chaos_spec(seeds: usize, activations: &[&str], epochs: u32) -> String {
    let seeds: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
    let activations: Vec<String> = activations.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
name = "chaos"
dataset = "synthetic:glyphs-tiny"
epochs = {epochs}
batch_size = 16
hidden = [96, 96]
seeds = [{}]
[grid]
activation = [{}]
batchnorm = [false, true]
[gradcheck]
layer = "linear1"
samples = 4
"#,
        seeds.join(", "),
        activations.join(", ")
    )
}

/// Every worker kill and coordinator kill of the plan, spread over one sweep: each
/// worker killed is one that holds a lease with epochs stored (found through
/// ListRunning), and is replaced at once; one coordinator outage outlasts the lease TTL.
/// Afterwards every trial has SUCCEEDED with no failure charged to it, every trial's
/// epochs equal the fault-free run's, and the two `sweep table` CSVs are byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_coordinator_kills_change_no_result() {
    let (spec, worker_kills, coordinator_kills) = if full() {
        (
            chaos_spec(5, &["sigmoid", "tanh", "relu", "leaky_relu"], 150),
            10,
            3,
        )
    } else {
        (chaos_spec(3, &["sigmoid", "relu"], 120), 4, 1)
    };
    let trials: u32 = if full() { 40 } else { 12 };

    // The fault-free run.
    let clean_db = TempDir::new("faults-clean");
    let (_clean, clean_addr) = coordinator(&clean_db.0, "127.0.0.1:0", "5s");
    let mut clean = http_client(&clean_addr);
    let _c1 = worker(&clean_addr, "clean-1", 1);
    let _c2 = worker(&clean_addr, "clean-2", 1);
    let reference = submit(&mut clean, &spec).await;
    assert_eq!(reference.trial_count, trials);
    let done = wait_finished(&mut clean, reference.id, Duration::from_secs(600)).await;
    assert_eq!(done.counts.unwrap().succeeded, trials, "{:?}", done.counts);

    // The same sweep under fire.
    let db = TempDir::new("faults-chaos");
    let (mut coord, addr) = coordinator(&db.0, "127.0.0.1:0", "1s");
    let mut sweeps = http_client(&addr);
    let mut workers: Vec<(String, Proc)> = (0..3)
        .map(|i| {
            let name = format!("w{i}");
            (name.clone(), worker(&addr, &name, 1))
        })
        .collect();
    let mut next_worker = workers.len();
    let sweep = submit(&mut sweeps, &spec).await;

    // Coordinator kills go after every (worker_kills / (coordinator_kills + 1))th worker
    // kill; the first outage is longer than the 1 s lease TTL.
    let every = worker_kills / (coordinator_kills + 1);
    let mut coordinator_killed = 0;
    let started = Instant::now();
    let mut killed = 0;
    while killed < worker_kills {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {killed} of {worker_kills} worker kills in 600 s"
        );
        let running = match sweeps
            .list_running(ListRunningRequest { sweep_id: sweep.id })
            .await
        {
            Ok(r) => r.into_inner().trials,
            Err(_) => Vec::new(),
        };
        // A victim with at least one epoch stored, so it dies mid-trial.
        let mut victim = None;
        for r in &running {
            if trial(&mut sweeps, sweep.id, r.index)
                .await
                .epochs
                .is_empty()
            {
                continue;
            }
            if let Some(i) = workers.iter().position(|(n, _)| *n == r.worker_name) {
                victim = Some(i);
                break;
            }
        }
        let Some(i) = victim else {
            let s = sweeps
                .get_sweep(GetSweepRequest { sweep_id: sweep.id })
                .await
                .unwrap()
                .into_inner();
            assert_ne!(
                s.state(),
                SweepState::Finished,
                "the sweep finished after {killed} of {worker_kills} worker kills: make its trials longer"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
            continue;
        };
        let (_, mut proc) = workers.remove(i);
        proc.kill();
        killed += 1;
        let name = format!("w{next_worker}");
        next_worker += 1;
        workers.push((name.clone(), worker(&addr, &name, 1)));

        if coordinator_killed < coordinator_kills && killed % every == 0 {
            coord.kill();
            let outage = if coordinator_killed == 0 {
                Duration::from_millis(2500)
            } else {
                Duration::from_millis(300)
            };
            tokio::time::sleep(outage).await;
            let (again, again_addr) = coordinator(&db.0, &addr, "1s");
            assert_eq!(again_addr, addr);
            coord = again;
            coordinator_killed += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(coordinator_killed, coordinator_kills);

    let done = wait_finished(&mut sweeps, sweep.id, Duration::from_secs(600)).await;
    let counts = done.counts.unwrap();
    assert_eq!(counts.succeeded, trials, "{counts:?}");
    let mut lost = 0;
    for index in 0..trials {
        let ours = trial(&mut sweeps, sweep.id, index).await;
        let theirs = trial(&mut clean, reference.id, index).await;
        let t = ours.trial.unwrap();
        assert_eq!(t.state(), TrialState::Succeeded, "trial {index}");
        assert_eq!(t.failures, 0, "trial {index} was charged: {:?}", t.history);
        assert!(
            t.history.iter().all(|h| h.kind() != AttemptEndKind::Error),
            "trial {index}: {:?}",
            t.history
        );
        assert_eq!(t.history.len() as u32, t.attempt, "trial {index}");
        lost += t.lost;
        assert_eq!(
            timeless(&ours.epochs),
            timeless(&theirs.epochs),
            "trial {index}'s epochs differ from the fault-free run's"
        );
        let (a, b) = (t.result.unwrap(), theirs.trial.unwrap().result.unwrap());
        assert_eq!(a.gradcheck, b.gradcheck, "trial {index}");
        assert_eq!(a.verdicts, b.verdicts, "trial {index}");
    }
    // Each kill took a lease with it (a lease may also end in an outage).
    assert!(
        lost >= worker_kills as u32,
        "{lost} leases lost for {worker_kills} kills"
    );
    assert_eq!(
        table_csv(&addr, sweep.id),
        table_csv(&clean_addr, reference.id)
    );
}

/// A worker frozen (SIGSTOP) past its lease is a zombie: its trial goes to another
/// worker, and when it wakes (SIGCONT) its late reports are refused — the trial is
/// finished once, by the other worker, with one attempt's epochs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_s_late_reports_are_refused() {
    let db = TempDir::new("faults-zombie");
    let (_coord, addr) = coordinator(&db.0, "127.0.0.1:0", "1s");
    let mut sweeps = http_client(&addr);
    let zombie = worker(&addr, "zombie", 1);
    let sweep = submit(&mut sweeps, &chaos_spec(1, &["relu"], 300)).await;
    let started = Instant::now();
    let index = loop {
        let running = sweeps
            .list_running(ListRunningRequest { sweep_id: sweep.id })
            .await
            .unwrap()
            .into_inner()
            .trials;
        if let Some(r) = running.first()
            && !trial(&mut sweeps, sweep.id, r.index)
                .await
                .epochs
                .is_empty()
        {
            break r.index;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no epoch yet");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    zombie.signal(libc::SIGSTOP);
    // Past its lease: requeued, and another worker takes it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let _alive = worker(&addr, "alive", 1);
    let started = Instant::now();
    loop {
        let t = trial(&mut sweeps, sweep.id, index).await.trial.unwrap();
        if t.attempt >= 1 && t.state() == TrialState::Leased {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not re-leased: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    zombie.signal(libc::SIGCONT);
    let done = wait_finished(&mut sweeps, sweep.id, Duration::from_secs(300)).await;
    assert_eq!(done.counts.unwrap().succeeded, 2);
    let detail = trial(&mut sweeps, sweep.id, index).await;
    let t = detail.trial.unwrap();
    assert_eq!(t.result.as_ref().unwrap().worker_name, "alive");
    assert_eq!(t.failures, 0);
    assert_eq!(t.history.len(), 1, "{:?}", t.history);
    assert_eq!(t.history[0].kind(), AttemptEndKind::Expired);
    assert_eq!(t.history[0].worker_name, "zombie");
    let epochs: Vec<u32> = detail.epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, (1..=300).collect::<Vec<u32>>());
}

/// Garbage bytes, a stream of HTTP/2 preface + nonsense, and half-open connections leave
/// the coordinator serving every other client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_port_leaves_the_coordinator_serving() {
    let db = TempDir::new("faults-garbage");
    let (mut coord, addr) = coordinator(&db.0, "127.0.0.1:0", "5s");
    let mut sweeps = http_client(&addr);
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(TcpStream::connect(&addr).unwrap());
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = vec![0u8; 256 * 1024];
    for b in noise.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    for prefix in [
        &b""[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(prefix);
        let _ = s.write_all(&noise);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    // Half-open: a connection that sends half a frame header and then nothing.
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00")
        .unwrap();
    let listed = tokio::time::timeout(
        Duration::from_secs(10),
        sweeps.list_sweeps(ListSweepsRequest {}),
    )
    .await
    .expect("ListSweeps answered within 10 s");
    assert!(listed.unwrap().into_inner().sweeps.is_empty());
    let s = submit(&mut sweeps, &chaos_spec(1, &["relu"], 2)).await;
    assert_eq!(s.trial_count, 2);
    assert!(
        coord.0.try_wait().unwrap().is_none(),
        "the coordinator exited"
    );
    coord.kill();
    drop(idle);
}

/// A directory on its own small tmpfs, in a private mount namespace held open by a
/// `sleep` process, so that coordinators started inside it (`nsenter`) see a real full
/// disk while the rest of the machine does not. `None` (with the reason) where the
/// machine does not allow it (not root, no `unshare`).
struct SmallDisk {
    holder: Proc,
    dir: TempDir,
}

impl SmallDisk {
    fn new(tag: &str, size: &str) -> Result<SmallDisk, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root for a private mount namespace".into());
        }
        let dir = TempDir::new(tag);
        let script = format!(
            "mount -t tmpfs -o size={size} gradsweep-test {} && echo mounted && exec sleep 3600",
            dir.0.display()
        );
        let mut child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() != "mounted" {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("unshare -m + mount tmpfs refused: {}", err.trim()));
        }
        Ok(SmallDisk {
            holder: Proc(child),
            dir,
        })
    }

    /// The directory as seen from inside the namespace, reachable from outside.
    fn inside(&self) -> std::path::PathBuf {
        Path::new(&format!("/proc/{}/root", self.holder.0.id()))
            .join(self.dir.0.strip_prefix("/").unwrap())
    }

    /// A coordinator inside the namespace, its database on the small disk.
    fn coordinator(&self, listen: &str) -> (Proc, String) {
        let mut child = Command::new("nsenter")
            .args(["-t", &self.holder.0.id().to_string(), "-m", "--"])
            .arg(binary("coordinator"))
            .args(["--listen", listen, "--lease-ttl", "2s"])
            .arg("--db")
            .arg(self.dir.0.join("db"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nsenter starts");
        let stdout = child.stdout.take().unwrap();
        let proc = Proc(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        (proc, addr)
    }

    /// Fills the disk with a file until a write is refused.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.inside().join("filler")).unwrap();
        let block = vec![0xa5u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.inside().join("filler")).unwrap();
    }
}

/// The database's disk fills up while a sweep runs: the write that fails is refused to
/// its caller (UNAVAILABLE, "storage: …"), reads go on being served, the workers wait
/// instead of dropping their trials, and once space returns every trial finishes with
/// no failure charged. Where sled cannot recover in place, the coordinator exits
/// non-zero instead, and a supervisor restarting it on the intact database is enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_recovers_when_space_returns() {
    let disk = match SmallDisk::new("faults-disk", "24m") {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipped: a full disk needs a private tmpfs: {why}");
            return;
        }
    };
    let (mut coord, addr) = disk.coordinator("127.0.0.1:0");
    let mut sweeps = http_client(&addr);
    let _w = worker(&addr, "w", 1);
    let sweep = submit(&mut sweeps, &chaos_spec(2, &["relu"], 200)).await;
    // Wait for an epoch, then take the disk's last byte.
    let started = Instant::now();
    while trial(&mut sweeps, sweep.id, 0).await.epochs.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "no epoch yet");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    disk.fill();

    // A write is refused with the cause, within a bounded time (no hang).
    let mut refused = None;
    for attempt in 0..40 {
        let spec = chaos_spec(1, &["tanh"], 2 + attempt);
        let big = format!("{spec}\n# {}\n", "x".repeat(100_000));
        match tokio::time::timeout(
            Duration::from_secs(15),
            sweeps.submit_sweep(SubmitSweepRequest { spec_toml: big }),
        )
        .await
        .expect("SubmitSweep answered within 15 s on a full disk")
        {
            Ok(_) => continue,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("some write was refused on a full disk");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().starts_with("storage:"),
        "{}",
        refused.message()
    );

    let exited = coord.0.try_wait().unwrap();
    if exited.is_none() {
        // Still serving reads.
        let listed = tokio::time::timeout(
            Duration::from_secs(10),
            sweeps.list_sweeps(ListSweepsRequest {}),
        )
        .await
        .expect("ListSweeps answered within 10 s on a full disk")
        .expect("ListSweeps served on a full disk");
        assert!(listed.into_inner().sweeps.iter().any(|s| s.id == sweep.id));
    }
    disk.free();
    // Either writes work again in place, or the coordinator exits non-zero (the
    // documented choice where sled cannot write after a failed write) and a supervisor
    // restarting it on the intact database is enough.
    let started = Instant::now();
    let mut restarted = false;
    let more = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no write accepted 30 s after space returned"
        );
        if !restarted && let Some(status) = coord.0.try_wait().unwrap() {
            assert!(
                !status.success(),
                "the coordinator exited 0 on a storage fault"
            );
            let (again, again_addr) = disk.coordinator(&addr);
            assert_eq!(again_addr, addr);
            coord = again;
            restarted = true;
        }
        let probe = sweeps
            .submit_sweep(SubmitSweepRequest {
                spec_toml: chaos_spec(1, &["tanh"], 2),
            })
            .await;
        match probe {
            Ok(r) => break r.into_inner().sweep.unwrap(),
            Err(s) => assert!(
                s.code() == Code::Unavailable,
                "a write after space returned: {s:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(more.trial_count, 2);
    let done = wait_finished(&mut sweeps, sweep.id, Duration::from_secs(300)).await;
    assert_eq!(done.counts.unwrap().succeeded, 4, "{:?}", done.counts);
    for index in 0..4 {
        let d = trial(&mut sweeps, sweep.id, index).await;
        let t = d.trial.unwrap();
        assert_eq!(t.failures, 0, "trial {index}: {:?}", t.history);
        let epochs: Vec<u32> = d.epochs.iter().map(|e| e.epoch).collect();
        assert_eq!(epochs, (1..=200).collect::<Vec<u32>>(), "trial {index}");
    }
    coord.kill();
}
