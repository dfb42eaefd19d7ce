//! A lab's machines, with real processes: a coordinator and workers on different hosts
//! (network namespaces joined by veth pairs), a worker whose link is cut past its lease
//! and restored, a coordinator stopped for 20 s under running workers, and a worker
//! preempted (SIGTERM) three times during one trial.
//!
//! The hosts test needs root (`ip netns`); elsewhere it says it skipped. The addresses
//! it uses (10.231.x.y/30) exist only inside the namespaces it creates, which it removes
//! again even when it fails.

use gradsweep_proto::*;
use gradsweep_tests::{Pki, Proc, Sweeps, TempDir, binary, submit, trial, wait_finished};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// How the lab's processes secure their connections: every flag and address scheme that
/// depends on it comes from here.
struct Security {
    /// TLS (the test CA's files) and the two role tokens; `None`: plaintext, no tokens.
    secure: Option<Secure>,
}

/// What a secured lab shares: the CA, the coordinator's certificate, and two tokens.
struct Secure {
    pki: Pki,
    client_token_file: std::path::PathBuf,
    worker_token_file: std::path::PathBuf,
    client_token: String,
}

impl Security {
    /// Plaintext, without tokens (loopback only).
    fn plaintext() -> Security {
        Security { secure: None }
    }

    /// TLS with a certificate for `names` from a CA made here, and a token per role,
    /// all written into `dir`: what a coordinator on a shared network needs.
    fn tls_and_tokens(dir: &Path, names: &[&str]) -> Security {
        let pki = Pki::for_names(dir, names);
        let client_token = "lab-client-5d1c9e0a".to_owned();
        let client_token_file = dir.join("client.token");
        let worker_token_file = dir.join("worker.token");
        std::fs::write(&client_token_file, format!("{client_token}\n")).unwrap();
        std::fs::write(&worker_token_file, "lab-worker-7b24f3c6\n").unwrap();
        Security {
            secure: Some(Secure {
                pki,
                client_token_file,
                worker_token_file,
                client_token,
            }),
        }
    }

    /// The coordinator's flags besides `--listen` and `--db`.
    fn coordinator_args(&self) -> Vec<String> {
        let Some(s) = &self.secure else {
            return Vec::new();
        };
        let path = |p: &Path| p.display().to_string();
        vec![
            "--tls-cert".into(),
            path(&s.pki.cert),
            "--tls-key".into(),
            path(&s.pki.key),
            "--client-token-file".into(),
            path(&s.client_token_file),
            "--worker-token-file".into(),
            path(&s.worker_token_file),
        ]
    }

    /// A worker's flags besides the address.
    fn worker_args(&self) -> Vec<String> {
        let Some(s) = &self.secure else {
            return Vec::new();
        };
        vec![
            "--ca".into(),
            s.pki.ca.display().to_string(),
            "--token-file".into(),
            s.worker_token_file.display().to_string(),
        ]
    }

    /// The URL of a coordinator at `addr` (`host:port`).
    fn url(&self, addr: &str) -> String {
        match self.secure {
            Some(_) => format!("https://{addr}"),
            None => format!("http://{addr}"),
        }
    }

    /// A client of the coordinator at `addr`, connected lazily (from whatever network
    /// namespace the calling thread is in), with the client token when secured.
    fn client(&self, addr: &str) -> Sweeps {
        match &self.secure {
            Some(s) => gradsweep_tests::sweeps_client(
                &self.url(addr),
                Some(&s.pki.ca),
                Some(&s.client_token),
            ),
            None => gradsweep_tests::sweeps_client(&self.url(addr), None, None),
        }
    }
}

/// `cmd` run inside network namespace `ns` (`ip netns exec`, which execs it: the child's
/// pid is the program's own), or as is when `ns` is `None`.
fn in_ns(ns: Option<&str>, program: &Path) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Starts a coordinator (in `ns`) on `listen` with database `db`, and waits for its
/// `listening on <addr>` line; returns it and the port it listens on.
fn coordinator(
    security: &Security,
    ns: Option<&str>,
    db: &Path,
    listen: &str,
    ttl: &str,
) -> (Proc, u16) {
    let mut child = in_ns(ns, &binary("coordinator"))
        .args(["--listen", listen, "--lease-ttl", ttl])
        .args(security.coordinator_args())
        .arg("--db")
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("coordinator starts");
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    (proc, port)
}

/// A `worker serve` (in `ns`) named `name`, one slot, on the CPU, its stderr in
/// `<logs>/<name>.log`.
fn worker(security: &Security, ns: Option<&str>, addr: &str, name: &str, logs: &Path) -> Proc {
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
    Proc(
        in_ns(ns, &binary("worker"))
            .args(["serve", "--device", "cpu", "--threads", "1", "--slots", "1"])
            .args(["--name", name, "--coordinator", &security.url(addr)])
            .args(security.worker_args())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("worker starts"),
    )
}

fn log_of(logs: &Path, name: &str) -> String {
    std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default()
}

/// Waits (bounded) for a process to exit; its status.
fn wait_exit(proc: &mut Proc, what: &str, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "{what} still running {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// Sweeps
// ---------------------------------------------------------------------------------------

/// `trials` trials (one per seed) of `epochs` epochs each, small enough that an epoch
/// takes milliseconds on the CPU.
fn spec(name: &str, trials: usize, epochs: u32) -> String {
    let seeds: Vec<String> = (0..trials).map(|s| s.to_string()).collect();
    format!(
        "name = \"{name}\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = {epochs}\nbatch_size = 16\n\
         hidden = [96, 96]\nactivation = \"relu\"\nseeds = [{}]\n[gradcheck]\nlayer = \"linear1\"\nsamples = 4\n",
        seeds.join(", ")
    )
}

/// Waits until `pred` holds for trial `index` of sweep `id` (with its running entry,
/// if it is running); returns the worker running it.
async fn wait_trial(
    sweeps: &mut Sweeps,
    id: u64,
    index: u32,
    what: &str,
    mut pred: impl FnMut(&TrialDetail, Option<&RunningTrial>) -> bool,
) -> Option<RunningTrial> {
    let started = Instant::now();
    loop {
        let running = sweeps
            .list_running(ListRunningRequest { sweep_id: id })
            .await
            .unwrap()
            .into_inner()
            .trials;
        let r = running.into_iter().find(|r| r.index == index);
        let t = trial(sweeps, id, index).await;
        if pred(&t, r.as_ref()) {
            return r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "trial {id}/{index}: not {what} after 90 s: {:?}",
            t.trial
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every trial of the sweep SUCCEEDED once: no failure, no lost lease, one attempt's
/// epochs 1..=`epochs`.
async fn every_trial_once(sweeps: &mut Sweeps, sweep: &Sweep, epochs: u32) {
    for index in 0..sweep.trial_count {
        let d = trial(sweeps, sweep.id, index).await;
        let t = d.trial.unwrap();
        assert_eq!(t.state(), TrialState::Succeeded, "trial {index}: {t:?}");
        assert_eq!(
            (t.failures, t.lost, t.attempt),
            (0, 0, 0),
            "trial {index}: {:?}",
            t.history
        );
        let got: Vec<u32> = d.epochs.iter().map(|e| e.epoch).collect();
        assert_eq!(got, (1..=epochs).collect::<Vec<u32>>(), "trial {index}");
    }
}

// ---------------------------------------------------------------------------------------
// Hosts: network namespaces
// ---------------------------------------------------------------------------------------

/// Network namespaces this test created, deleted when dropped (also when the test
/// fails); the processes inside are killed before, by their own guards.
struct Hosts {
    names: Vec<String>,
}

impl Hosts {
    /// One namespace per name (`gs<pid>-<name>`), each with loopback up; `Err` with the
    /// reason where the machine refuses (not root, no `ip`).
    fn new(names: &[&str]) -> Result<Hosts, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("creating network namespaces needs root".into());
        }
        let mut hosts = Hosts { names: Vec::new() };
        for n in names {
            let ns = format!("gs{}-{n}", std::process::id());
            let out = Command::new("ip")
                .args(["netns", "add", &ns])
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip netns add {ns}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            hosts.names.push(ns.clone());
            hosts.ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        Ok(hosts)
    }

    fn ns(&self, name: &str) -> String {
        format!("gs{}-{name}", std::process::id())
    }

    /// `ip ARGS`, which must succeed.
    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// A veth pair from `a` to `b`: `a`'s end is `to-<b>` with `.1` of `net`.0/30, `b`'s
    /// is `eth0` with `.2`.
    fn link(&self, a: &str, b: &str, net: &str) {
        let (na, nb) = (self.ns(a), self.ns(b));
        let end_a = format!("to-{b}");
        self.ip(&[
            "link", "add", &end_a, "netns", &na, "type", "veth", "peer", "name", "eth0", "netns",
            &nb,
        ]);
        self.ip(&[
            "-n",
            &na,
            "addr",
            "add",
            &format!("{net}.1/30"),
            "dev",
            &end_a,
        ]);
        self.ip(&[
            "-n",
            &nb,
            "addr",
            "add",
            &format!("{net}.2/30"),
            "dev",
            "eth0",
        ]);
        self.ip(&["-n", &na, "link", "set", &end_a, "up"]);
        self.ip(&["-n", &nb, "link", "set", "eth0", "up"]);
    }

    /// Cuts (`false`) or restores (`true`) host `name`'s link.
    fn set_link(&self, name: &str, up: bool) {
        let ns = self.ns(name);
        self.ip(&[
            "-n",
            &ns,
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Moves the calling thread into network namespace `ns` (sockets it opens from then on
/// are that host's).
fn enter(ns: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: setns on a valid namespace file descriptor affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `body` on a thread of its own inside namespace `ns`, on a single-threaded
/// runtime (so that every socket it opens is that host's); its panic is the caller's.
fn on_host<'a, F>(ns: &str, body: impl FnOnce() -> F + Send + 'a)
where
    F: std::future::Future<Output = ()>,
{
    std::thread::scope(|scope| {
        let joined = scope
            .spawn(move || {
                enter(ns);
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(body())
            })
            .join();
        if let Err(panic) = joined {
            std::panic::resume_unwind(panic);
        }
    });
}

/// The coordinator on one host and two workers on two others, each joined to it by its
/// own link (10.231.1.0/30, 10.231.2.0/30): a sweep finishes. Then the link of the worker
/// running a trial is cut for longer than the lease: the trial goes to the other worker;
/// the link comes back, the cut-off worker's late calls are refused (it abandons the
/// trial and lives on), and the trial is finished exactly once, by the other worker.
#[test]
fn across_hosts_a_cut_link_costs_one_lease_and_nothing_else() {
    let hosts = match Hosts::new(&["coord", "w1", "w2"]) {
        Ok(h) => h,
        Err(why) => {
            eprintln!("skipped: the hosts test needs network namespaces: {why}");
            return;
        }
    };
    hosts.link("coord", "w1", "10.231.1");
    hosts.link("coord", "w2", "10.231.2");
    let dir = TempDir::new("lab-hosts");
    let (coord_ns, w1_ns, w2_ns) = (hosts.ns("coord"), hosts.ns("w1"), hosts.ns("w2"));
    let db = dir.0.join("db");
    let logs = dir.0.clone();
    let hosts = &hosts;
    on_host(&coord_ns.clone(), move || async move {
        // A shared network: TLS (a certificate for both of the coordinator's link
        // addresses, from a CA made here) and a token per role.
        let security = Security::tls_and_tokens(&logs, &["10.231.1.1", "10.231.2.1"]);
        let (_coord, port) = coordinator(&security, Some(&coord_ns), &db, "0.0.0.0:0", "2s");
        // Each worker dials the coordinator's address on its own link.
        let _w1 = worker(
            &security,
            Some(&w1_ns),
            &format!("10.231.1.1:{port}"),
            "w1",
            &logs,
        );
        let _w2 = worker(
            &security,
            Some(&w2_ns),
            &format!("10.231.2.1:{port}"),
            "w2",
            &logs,
        );
        let mut sweeps = security.client(&format!("10.231.1.1:{port}"));

        let first = submit(&mut sweeps, &spec("hosts", 4, 20)).await;
        assert_eq!(first.id, 1);
        let done = wait_finished(&mut sweeps, first.id, Duration::from_secs(300)).await;
        assert_eq!(done.counts.unwrap().succeeded, 4, "{:?}", done.counts);
        every_trial_once(&mut sweeps, &done, 20).await;

        // One long trial; cut the link of whichever worker trains it.
        let epochs = 300;
        let long = submit(&mut sweeps, &spec("cut", 1, epochs)).await;
        let holder = wait_trial(&mut sweeps, long.id, 0, "training", |t, r| {
            r.is_some() && !t.epochs.is_empty()
        })
        .await
        .unwrap();
        let (victim, survivor) = if holder.worker_name == "w1" {
            ("w1", "w2")
        } else {
            ("w2", "w1")
        };
        hosts.set_link(victim, false);
        // Past its 2 s lease the trial is requeued and the other worker takes it.
        let took_over = wait_trial(&mut sweeps, long.id, 0, "re-leased", |t, r| {
            t.trial.as_ref().unwrap().attempt >= 1 && r.is_some()
        })
        .await
        .unwrap();
        assert_eq!(took_over.worker_name, survivor);
        hosts.set_link(victim, true);
        // The cut-off worker reaches the coordinator again: its lease is gone, so its
        // calls about the trial are refused and it abandons the trial.
        let started = Instant::now();
        while !log_of(&logs, victim).contains("abandon") {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "{victim} never heard that its lease was gone:\n{}",
                log_of(&logs, victim)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("{victim}'s log:\n{}", log_of(&logs, victim));
        let done = wait_finished(&mut sweeps, long.id, Duration::from_secs(300)).await;
        assert_eq!(done.counts.unwrap().succeeded, 1);
        let d = trial(&mut sweeps, long.id, 0).await;
        let t = d.trial.unwrap();
        assert_eq!(t.result.as_ref().unwrap().worker_name, survivor);
        assert_eq!(t.failures, 0);
        assert_eq!(t.history.len(), 1, "{:?}", t.history);
        assert_eq!(t.history[0].kind(), AttemptEndKind::Expired);
        assert_eq!(t.history[0].worker_name, victim);
        let got: Vec<u32> = d.epochs.iter().map(|e| e.epoch).collect();
        assert_eq!(got, (1..=epochs).collect::<Vec<u32>>());
    });
}

/// The coordinator is stopped (SIGTERM) while both workers are in the middle of a
/// trial, stays down for 20 s, and is started again on the same database and port: the
/// workers, never restarted, back off and reconnect by themselves, and every trial is
/// trained once — no failure, no lost lease, one attempt's epochs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_coordinator_down_for_20_seconds() {
    let dir = TempDir::new("lab-outage");
    let security = Security::plaintext();
    let db = dir.0.join("db");
    let (mut coord, port) = coordinator(&security, None, &db, "127.0.0.1:0", "30s");
    let addr = format!("127.0.0.1:{port}");
    let mut sweeps = security.client(&addr);
    let mut w1 = worker(&security, None, &addr, "w1", &dir.0);
    let mut w2 = worker(&security, None, &addr, "w2", &dir.0);
    let epochs = 300;
    let sweep = submit(&mut sweeps, &spec("outage", 4, epochs)).await;
    // Both workers mid-trial.
    let started = Instant::now();
    loop {
        let running = sweeps
            .list_running(ListRunningRequest { sweep_id: sweep.id })
            .await
            .unwrap()
            .into_inner()
            .trials;
        let mut training = 0;
        for r in &running {
            if !trial(&mut sweeps, sweep.id, r.index)
                .await
                .epochs
                .is_empty()
            {
                training += 1;
            }
        }
        if training == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "two workers not training after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    coord.signal(libc::SIGTERM);
    let status = wait_exit(&mut coord, "the coordinator", Duration::from_secs(30));
    assert!(status.success(), "the coordinator's SIGTERM exit: {status}");
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        w1.0.try_wait().unwrap().is_none(),
        "w1 exited while the coordinator was down"
    );
    assert!(
        w2.0.try_wait().unwrap().is_none(),
        "w2 exited while the coordinator was down"
    );
    let (_again, again_port) = coordinator(&security, None, &db, &addr, "30s");
    assert_eq!(again_port, port);
    let done = wait_finished(&mut sweeps, sweep.id, Duration::from_secs(120)).await;
    assert_eq!(done.counts.unwrap().succeeded, 4, "{:?}", done.counts);
    every_trial_once(&mut sweeps, &done, epochs).await;
    for (name, w) in [("w1", &mut w1), ("w2", &mut w2)] {
        assert!(w.0.try_wait().unwrap().is_none(), "{name} exited");
        let log = log_of(&dir.0, name);
        eprintln!("{name}'s log:\n{log}");
        assert!(
            log.lines().count() < 30,
            "{name} logged a line per retry instead of one per change:\n{log}"
        );
    }
}

/// One trial, its worker preempted (SIGTERM) three times — a Slurm preemption, a spot
/// reclaim, a rolling restart — each time mid-trial, and a new worker started each
/// time: the trial still succeeds, with no failure charged and three hand-backs in its
/// history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_preemptions_during_one_trial_charge_it_nothing() {
    let dir = TempDir::new("lab-preempt");
    let security = Security::plaintext();
    let (_coord, port) = coordinator(&security, None, &dir.0.join("db"), "127.0.0.1:0", "30s");
    let addr = format!("127.0.0.1:{port}");
    let mut sweeps = security.client(&addr);
    let epochs = 600;
    let sweep = submit(&mut sweeps, &spec("preempt", 1, epochs)).await;
    for k in 0..3u32 {
        let name = format!("w{k}");
        let mut w = worker(&security, None, &addr, &name, &dir.0);
        let r = wait_trial(&mut sweeps, sweep.id, 0, "training again", |t, r| {
            t.trial.as_ref().unwrap().attempt == k && r.is_some() && !t.epochs.is_empty()
        })
        .await
        .unwrap();
        assert_eq!(r.worker_name, name);
        w.signal(libc::SIGTERM);
        let status = wait_exit(&mut w, &name, Duration::from_secs(30));
        assert!(status.success(), "{name}'s SIGTERM exit: {status}");
        // Handed back at once, not left to expire.
        let t = trial(&mut sweeps, sweep.id, 0).await.trial.unwrap();
        assert_eq!(
            (t.state(), t.attempt),
            (TrialState::Pending, k + 1),
            "{:?}",
            t.history
        );
    }
    let _last = worker(&security, None, &addr, "w3", &dir.0);
    wait_finished(&mut sweeps, sweep.id, Duration::from_secs(300)).await;
    let d = trial(&mut sweeps, sweep.id, 0).await;
    let t = d.trial.unwrap();
    assert_eq!(t.state(), TrialState::Succeeded);
    assert_eq!(t.failures, 0, "{:?}", t.history);
    assert_eq!(t.result.as_ref().unwrap().worker_name, "w3");
    let ends: Vec<(AttemptEndKind, &str)> = t
        .history
        .iter()
        .map(|h| (h.kind(), h.worker_name.as_str()))
        .collect();
    assert_eq!(
        ends,
        [
            (AttemptEndKind::HandedBack, "w0"),
            (AttemptEndKind::HandedBack, "w1"),
            (AttemptEndKind::HandedBack, "w2"),
        ]
    );
    let got: Vec<u32> = d.epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(got, (1..=epochs).collect::<Vec<u32>>());
}
