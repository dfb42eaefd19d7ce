//! `worker serve --pack G` end to end: a real coordinator and real workers on loopback.
//! A sweep trained by a packing worker gives every trial the epochs (every metric, bit
//! for bit) and the sweep the table it gets from a worker that trains one trial at a
//! time (on the CPU, where a packed trial is its own trial exactly); a diverging member
//! ends DIVERGED while its group goes on; a cancelled sweep revokes a whole group and
//! the worker goes on serving; bad `--pack` values are one line.

use gradsweep_proto::*;
use gradsweep_tests::{
    Proc, Sweeps, TempDir, binary, coordinator, submit, trial, wait_finished, worker_command,
};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// 2 activations × 2 batch-norm settings × 2 regularisers × 2 seeds = 16 trials, all
/// of one shape, so a `--pack 4` worker trains them in groups of 4.
const MIXED: &str = r#"
name = "pack-mixed"
dataset = "synthetic:glyphs-tiny"
epochs = 3
batch_size = 32
hidden = [16, 16]
seeds = [0, 1]
[grid]
activation = ["sigmoid", "relu"]
batchnorm = [false, true]
regularization = ["l2:1e-4", "dropout:0.2"]
[gradcheck]
layer = "linear1"
samples = 8
"#;

/// 4 trials of one shape; those with the huge learning rate diverge in their first
/// epoch.
const DIVERGING: &str = r#"
name = "pack-diverging"
dataset = "synthetic:glyphs-tiny"
epochs = 3
batch_size = 32
hidden = [16]
optimizer = { kind = "sgd", lr = 0.05, momentum = 0.0 }
seeds = [0, 1]
[grid]
optimizer.lr = [0.05, 1000000.0]
[gradcheck]
layer = "none"
"#;

/// 4 long trials of one shape: a group that is still training when it is cancelled.
const LONG: &str = r#"
name = "pack-long"
dataset = "synthetic:glyphs-tiny"
epochs = 5000
batch_size = 16
hidden = [128, 128]
seeds = [0, 1, 2, 3]
[gradcheck]
layer = "none"
"#;

/// A `worker serve` with one slot and `extra` flags, logging at info into `log`.
fn serving(addr: &str, name: &str, extra: &[&str], log: &std::path::Path) -> Proc {
    let file = std::fs::File::create(log).expect("worker log file");
    worker_command(&format!("http://{addr}"), name, 1, extra)
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(file))
        .spawn()
        .map(Proc)
        .expect("worker starts")
}

/// Runs `spec` to the end on a fresh one-slot worker with `extra` flags; its id and the
/// worker's log.
async fn run(
    sweeps: &mut Sweeps,
    addr: &str,
    dir: &TempDir,
    spec: &str,
    extra: &[&str],
) -> (u64, String) {
    let log = dir.0.join(format!("worker-{}.log", extra.join("")));
    let mut w = serving(addr, "pack-w", extra, &log);
    let id = submit(sweeps, spec).await.id;
    wait_finished(sweeps, id, Duration::from_secs(240)).await;
    w.kill();
    (id, std::fs::read_to_string(&log).unwrap())
}

/// A trial's state and its epochs without their times, as exact text (`{:?}` of an f64
/// is its shortest round-trip form, so equal text is equal bits).
async fn numbers(sweeps: &mut Sweeps, id: u64, index: u32) -> (TrialState, String) {
    let t = trial(sweeps, id, index).await;
    let state = t.trial.as_ref().unwrap().state();
    let epochs: Vec<EpochReport> = t
        .epochs
        .into_iter()
        .map(|mut e| {
            e.seconds = 0.0;
            e
        })
        .collect();
    (state, format!("{epochs:?}"))
}

fn table_csv(addr: &str, id: u64) -> String {
    let o = Command::new(binary("sweep"))
        .args(["table", &id.to_string(), "--format", "csv"])
        .env("GRADSWEEP_COORDINATOR", addr)
        .output()
        .expect("sweep runs");
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// How many trials the log says started packed with `more` others.
fn packed_starts(log: &str, more: usize) -> usize {
    log.lines()
        .filter(|l| l.contains(&format!("packed with {more} more")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packed_sweep_equals_the_same_sweep_trained_one_by_one() {
    let dir = TempDir::new("pack-equal");
    let (_coordinator, addr) = coordinator(&dir.0.join("db"), "127.0.0.1:0", "5s");
    let mut sweeps = gradsweep_tests::sweeps_client(&format!("http://{addr}"), None, None);
    let (alone, alone_log) = run(&mut sweeps, &addr, &dir, MIXED, &[]).await;
    let (packed, packed_log) = run(&mut sweeps, &addr, &dir, MIXED, &["--pack", "4"]).await;
    assert_eq!(packed_starts(&alone_log, 3), 0, "{alone_log}");
    // Every trial of the packed sweep trained in a group of 4.
    assert_eq!(packed_starts(&packed_log, 3), 16, "{packed_log}");
    let mut succeeded = 0;
    for index in 0..16 {
        let (state, epochs) = numbers(&mut sweeps, alone, index).await;
        assert_eq!(
            (state, epochs.clone()),
            numbers(&mut sweeps, packed, index).await,
            "trial {index}"
        );
        assert!(epochs.contains("epoch: 3"), "trial {index}: {epochs}");
        succeeded += usize::from(state == TrialState::Succeeded);
    }
    assert_eq!(succeeded, 16);
    let table = table_csv(&addr, alone);
    assert_eq!(table, table_csv(&addr, packed));
    assert!(table.lines().count() > 8, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverging_member_ends_diverged_and_its_group_goes_on() {
    let dir = TempDir::new("pack-diverging");
    let (_coordinator, addr) = coordinator(&dir.0.join("db"), "127.0.0.1:0", "5s");
    let mut sweeps = gradsweep_tests::sweeps_client(&format!("http://{addr}"), None, None);
    let (alone, _) = run(&mut sweeps, &addr, &dir, DIVERGING, &[]).await;
    let (packed, log) = run(&mut sweeps, &addr, &dir, DIVERGING, &["--pack", "4"]).await;
    assert_eq!(packed_starts(&log, 3), 4, "{log}");
    // Expansion order: the learning rate, then the seeds.
    for (index, expected) in [
        TrialState::Succeeded,
        TrialState::Succeeded,
        TrialState::Diverged,
        TrialState::Diverged,
    ]
    .into_iter()
    .enumerate()
    {
        let index = index as u32;
        let (state, epochs) = numbers(&mut sweeps, packed, index).await;
        assert_eq!(state, expected, "trial {index}: {epochs}");
        assert_eq!(
            (state, epochs),
            numbers(&mut sweeps, alone, index).await,
            "trial {index}"
        );
    }
    let t = trial(&mut sweeps, packed, 2).await;
    assert!(t.epochs.len() < 3, "a diverged trial stops: {:?}", t.epochs);
    assert_eq!(trial(&mut sweeps, packed, 0).await.epochs.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_sweep_revokes_its_whole_group_and_the_worker_serves_on() {
    let dir = TempDir::new("pack-cancel");
    let (_coordinator, addr) = coordinator(&dir.0.join("db"), "127.0.0.1:0", "600ms");
    let mut sweeps = gradsweep_tests::sweeps_client(&format!("http://{addr}"), None, None);
    let log = dir.0.join("worker.log");
    let _w = serving(&addr, "pack-w", &["--pack", "4"], &log);
    let long = submit(&mut sweeps, LONG).await;
    // The four train together: each reports epochs while the others hold their leases.
    let started = Instant::now();
    for index in 0..4 {
        while trial(&mut sweeps, long.id, index).await.epochs.is_empty() {
            assert!(started.elapsed() < Duration::from_secs(60), "no epoch yet");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let cancelled = sweeps
        .cancel_sweep(CancelSweepRequest { sweep_id: long.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state(), SweepState::Cancelled);
    assert_eq!(cancelled.counts.unwrap().cancelled, 4);
    // The worker learns it at its next heartbeat, stops the group and takes new work.
    let short = submit(&mut sweeps, DIVERGING).await;
    let done = wait_finished(&mut sweeps, short.id, Duration::from_secs(120)).await;
    let counts = done.counts.unwrap();
    assert_eq!((counts.succeeded, counts.diverged), (2, 2));
    for index in 0..4 {
        let t = trial(&mut sweeps, long.id, index).await;
        assert_eq!(t.trial.unwrap().state(), TrialState::Cancelled);
        assert!(t.epochs.len() < 5000);
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(packed_starts(&log, 3), 8, "{log}");
    let abandoned = log
        .lines()
        .filter(|l| l.contains("ended: abandoned (lease revoked)"))
        .count();
    assert_eq!(abandoned, 4, "{log}");
}

#[test]
fn bad_pack_values_are_one_line_naming_the_flag_and_the_limit() {
    for (args, expected) in [
        (
            &["--pack", "0"][..],
            "error: --pack: must be 1 to 64, got 0",
        ),
        (
            &["--pack", "1000"],
            "error: --pack: must be 1 to 64, got 1000",
        ),
        (
            &["--pack", "64", "--slots", "17"],
            "error: --pack: --slots 17 × --pack 64 must be at most 1024 trials held at once",
        ),
    ] {
        // Refused before any connection: the coordinator's address is never tried.
        let o = Command::new(binary("worker"))
            .args([
                "serve",
                "--coordinator",
                "http://127.0.0.1:9",
                "--device",
                "cpu",
            ])
            .args(args)
            .env_remove("GRADSWEEP_PACK")
            .output()
            .expect("worker runs");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert_eq!(String::from_utf8_lossy(&o.stderr), format!("{expected}\n"));
    }
    // The environment variable is checked the same way.
    let o = Command::new(binary("worker"))
        .args([
            "serve",
            "--coordinator",
            "http://127.0.0.1:9",
            "--device",
            "cpu",
        ])
        .env("GRADSWEEP_PACK", "0")
        .output()
        .expect("worker runs");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: --pack: must be 1 to 64, got 0\n"
    );
}

/// Two shapes × 2 seeds: one lease of 4 splits into two groups of 2, the second waiting
/// (holding its leases) while the first trains for long.
const TWO_SHAPES: &str = r#"
name = "pack-two-shapes"
dataset = "synthetic:glyphs-tiny"
epochs = 5000
batch_size = 16
seeds = [0, 1]
[grid]
hidden = [[128, 128], [32, 32]]
[gradcheck]
layer = "none"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_leases_are_heartbeated_and_sigterm_hands_every_lease_back() {
    let dir = TempDir::new("pack-sigterm");
    let (_coordinator, addr) = coordinator(&dir.0.join("db"), "127.0.0.1:0", "600ms");
    let mut sweeps = gradsweep_tests::sweeps_client(&format!("http://{addr}"), None, None);
    let log = dir.0.join("worker.log");
    let mut w = serving(&addr, "pack-w", &["--pack", "4"], &log);
    let sweep = submit(&mut sweeps, TWO_SHAPES).await;
    let started = Instant::now();
    for index in 0..2 {
        while trial(&mut sweeps, sweep.id, index).await.epochs.is_empty() {
            assert!(started.elapsed() < Duration::from_secs(60), "no epoch yet");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Several lease TTLs later the waiting group's leases are still the first ones:
    // the heartbeats renew them although they have not started training.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for index in 0..4 {
        let t = trial(&mut sweeps, sweep.id, index).await.trial.unwrap();
        assert_eq!(t.state(), TrialState::Leased, "trial {index}");
        assert_eq!((t.attempt, t.lost), (0, 0), "trial {index}");
    }
    w.terminate();
    let status = w.0.wait().unwrap();
    assert!(status.success(), "worker exit: {status}");
    // Every held lease, trained or waiting, given back at once.
    for index in 0..4 {
        let t = trial(&mut sweeps, sweep.id, index).await.trial.unwrap();
        assert_eq!(t.state(), TrialState::Pending, "trial {index}");
        assert_eq!(t.attempt, 1, "trial {index}");
        assert_eq!((t.failures, t.lost), (0, 1), "trial {index}");
        assert_eq!(t.history[0].kind(), AttemptEndKind::HandedBack);
    }
    let s = sweeps
        .get_sweep(GetSweepRequest { sweep_id: sweep.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.counts.unwrap().leased, 0);
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(packed_starts(&log, 1), 2, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_does_not_fit_trains_its_trials_one_by_one() {
    // One of these trials needs about 90 MB of host memory, four packed well over 100.
    let spec = r#"
name = "pack-memory"
dataset = "synthetic:glyphs-tiny"
epochs = 2
batch_size = 32
hidden = [256, 256]
seeds = [0, 1, 2, 3]
[gradcheck]
layer = "none"
"#;
    let dir = TempDir::new("pack-memory");
    let (_coordinator, addr) = coordinator(&dir.0.join("db"), "127.0.0.1:0", "5s");
    let mut sweeps = gradsweep_tests::sweeps_client(&format!("http://{addr}"), None, None);
    let (id, log) = run(
        &mut sweeps,
        &addr,
        &dir,
        spec,
        &["--pack", "4", "--max-memory", "100M"],
    )
    .await;
    assert!(
        log.contains("a packed group of 4 trials does not fit (the trial needs about"),
        "{log}"
    );
    assert_eq!(packed_starts(&log, 3), 0, "{log}");
    for index in 0..4 {
        let (state, epochs) = numbers(&mut sweeps, id, index).await;
        assert_eq!(state, TrialState::Succeeded, "trial {index}: {epochs}");
    }
}
