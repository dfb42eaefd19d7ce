//! `simworkers`: the coordinator under simulated load, over gRPC, without training.
//!
//! Starts a coordinator on a fresh database (the `coordinator` binary beside this one;
//! or `--coordinator URL` for a running one), submits a sweep of `--trials` trials
//! (activation × batch norm × seeds over the built-in dataset, `--epochs` epochs, three
//! Linear layers) and runs `--workers` simulated workers: each leases up to `--slots`
//! trials, reports every epoch of all of them in one `ReportEpochs` call (six numbers,
//! the penalty and three layers of diagnostics: real-sized reports), heartbeats, and
//! completes them (trials with `elu` diverge halfway). Unpaced, each worker sends its
//! next call as soon as the last is answered (the most the coordinator takes, and its
//! latencies at saturation); `--rate R` paces them to R reports a second in all, as
//! GPUs that train between reports would, starting them staggered over one trial's
//! length. Meanwhile a client builds tables in a loop. Then it prints reports/s, Lease
//! latency (p50/p99, overall and while a table was being built), ReportEpochs and
//! Complete latency, the time of GetTable, GetEffects, ListSweeps and GetSweep, the
//! coordinator's RSS, and its restart-to-serving time after a SIGKILL.
//!
//! `--check` (what `tests/tests/scale.rs` runs) verifies instead of timing: the sweep's
//! counts equal a recount from GetTrial; GetTable and GetEffects equal a recomputation
//! from GetTrial's epochs; every acknowledged report is stored exactly once. It exits
//! 1 with the first difference.
//!
//! ```text
//! simworkers --trials 100000 --epochs 40 --workers 200 --slots 4
//! simworkers --trials 100000 --epochs 40 --workers 200 --slots 4 --rate 10500
//! ```

use gradsweep_proto::sweep_service_client::SweepServiceClient;
use gradsweep_proto::worker_service_client::WorkerServiceClient;
use gradsweep_proto::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const USAGE: &str = "usage: simworkers [--trials N] [--epochs E] [--workers W] [--slots S] \
[--rate R] [--cache-mb M] [--db DIR] [--coordinator URL] [--no-tables] [--check]

--rate R paces the workers to R epoch reports a second in all (each worker sends its
ReportEpochs calls at a fixed interval, as a GPU that trains between them would);
without it every worker sends its next call as soon as the last is answered, which
measures the most the coordinator takes (and latencies at saturation).";

const ACTIVATIONS: [&str; 5] = ["sigmoid", "tanh", "relu", "leaky_relu", "elu"];

struct Args {
    trials: u64,
    epochs: u32,
    workers: usize,
    slots: u32,
    rate: Option<u64>,
    cache_mb: Option<u64>,
    db: Option<PathBuf>,
    coordinator: Option<String>,
    tables: bool,
    check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        trials: 2000,
        epochs: 10,
        workers: 50,
        slots: 4,
        rate: None,
        cache_mb: None,
        db: None,
        coordinator: None,
        tables: true,
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name}: needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name}: \"{v}\" is not a positive number"))
        };
        match flag.as_str() {
            "--trials" => a.trials = number("--trials", value("--trials")?)?,
            "--epochs" => a.epochs = number("--epochs", value("--epochs")?)? as u32,
            "--workers" => a.workers = number("--workers", value("--workers")?)? as usize,
            "--slots" => a.slots = number("--slots", value("--slots")?)? as u32,
            "--rate" => a.rate = Some(number("--rate", value("--rate")?)?),
            "--cache-mb" => a.cache_mb = Some(number("--cache-mb", value("--cache-mb")?)?),
            "--db" => a.db = Some(PathBuf::from(value("--db")?)),
            "--coordinator" => a.coordinator = Some(value("--coordinator")?),
            "--no-tables" => a.tables = false,
            "--check" => a.check = true,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("{other}: unknown flag\n{USAGE}")),
        }
    }
    if a.trials > 100_000 {
        return Err(format!("--trials: {}, the limit is 100000", a.trials));
    }
    Ok(a)
}

/// The coordinator this program started: killed when dropped.
struct Started {
    child: Child,
    db: PathBuf,
    temporary: bool,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.db);
        }
    }
}

fn coordinator_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent().expect("own directory").join("coordinator")
}

/// Starts `coordinator` on `db`; returns it and its address once it listens.
fn start_coordinator(
    db: &Path,
    cache_mb: Option<u64>,
    ttl: &str,
) -> Result<(Child, String), String> {
    let bin = coordinator_binary();
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--db",
        db.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--lease-ttl",
        ttl,
    ])
    .env("RUST_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if let Some(mb) = cache_mb {
        cmd.args(["--cache-mb", &mb.to_string()]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: cannot start it: {e}", bin.display()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .map_err(|e| format!("reading the coordinator's address: {e}"))?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("the coordinator printed {line:?}, not its address"))?
        .to_owned();
    Ok((child, format!("http://{addr}")))
}

fn rss_mb(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn spec(trials: u64, epochs: u32) -> String {
    let seeds = trials.div_ceil(10);
    let seeds: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
    format!(
        "name = \"simworkers\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = {epochs}\n\
         hidden = [32, 16]\nseeds = [{}]\n[grid]\nactivation = [{}]\nbatchnorm = [false, true]\n",
        seeds.join(", "),
        ACTIVATIONS.map(|a| format!("\"{a}\"")).join(", ")
    )
}

/// A deterministic number in [0, 1) from `a` and `b`.
fn noise(a: u64, b: u64) -> f64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0x632B_E59B_D9B4_E019);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A real-sized report: the six numbers, the penalty, the time and three layers.
fn report(index: u32, epoch: u32, config: &str) -> EpochReport {
    let base = if config.contains("batchnorm = true") {
        0.8
    } else {
        0.5
    };
    let n = noise(u64::from(index), u64::from(epoch));
    let acc = |shift: f64| {
        (base * (1.0 - 1.0 / (f64::from(epoch) + 1.0)) + 0.05 * n + shift).clamp(0.0, 1.0)
    };
    let loss = |shift: f64| 2.3 * (1.0 - acc(shift)) + 0.01;
    EpochReport {
        epoch,
        train_loss: loss(0.02),
        train_accuracy: acc(0.02),
        val_loss: loss(0.0),
        // A plateau: epochs tie on validation accuracy (the best is the earliest).
        val_accuracy: (acc(0.0) * 20.0).floor() / 20.0,
        test_loss: loss(-0.01),
        test_accuracy: acc(-0.01),
        penalty: 0.001 * n,
        seconds: 0.5 + n,
        layers: (1..=3)
            .map(|l| LayerDiagnostics {
                layer: format!("linear{l}"),
                weight_mean: 0.001 * n,
                weight_std: 0.05 + 0.01 * f64::from(l),
                grad_norm: 0.1 * n + 0.01,
                grad_max_abs: 0.2 * n + 0.02,
                update_ratio: 0.001 * n,
                change_since_start: 0.01 * f64::from(epoch),
                dead_fraction: Some(n / 10.0),
            })
            .collect(),
    }
}

fn result(stored: u32, diverged_in: Option<u32>, index: u32) -> TrialResult {
    let verdict = |name: &str, flagged: bool| Verdict {
        name: name.into(),
        flagged,
        reason: if flagged {
            format!("{name} flagged")
        } else {
            String::new()
        },
        criterion: format!("{name} criterion"),
        value: 0.1,
        threshold: 0.2,
        below: false,
    };
    TrialResult {
        outcome: Some(Outcome {
            kind: Some(match diverged_in {
                Some(epoch) => outcome::Kind::Diverged(Diverged { epoch }),
                None => outcome::Kind::Completed(Completed {}),
            }),
        }),
        epochs: stored,
        seconds: f64::from(stored),
        dataset_fingerprint: "simulated".into(),
        device: "sim".into(),
        worker_name: "sim".into(),
        verdicts: vec![
            verdict("stagnant_loss", index.is_multiple_of(7)),
            verdict("vanishing_gradients", index.is_multiple_of(5)),
            verdict("dead_relu", false),
            verdict("exploding_gradients", false),
            verdict("divergence", diverged_in.is_some()),
        ],
        ..TrialResult::default()
    }
}

#[derive(Default)]
struct Stats {
    acked: AtomicU64,
    leases: Mutex<Vec<f64>>,
    leases_during_tables: Mutex<Vec<f64>>,
    calls: Mutex<Vec<f64>>,
    completes: Mutex<Vec<f64>>,
    /// What was acknowledged, per trial (`--check`).
    stored: Mutex<HashMap<u32, Vec<EpochReport>>>,
}

type Workers = WorkerServiceClient<Channel>;

fn fail(line: String) -> ! {
    eprintln!("simworkers: {line}");
    std::process::exit(1);
}

/// When a worker sends its epoch reports: at once, or on a fixed period from a phase.
#[derive(Clone, Copy)]
struct Pace {
    period: Option<Duration>,
    phase: Duration,
}

async fn sim_worker(
    mut client: Workers,
    n: usize,
    slots: u32,
    pace: Pace,
    stats: Arc<Stats>,
    tables: Arc<AtomicBool>,
    keep: bool,
) -> Result<(), String> {
    let id = client
        .register(RegisterRequest {
            name: format!("sim-{n}"),
            device: "sim".into(),
            slots,
        })
        .await
        .map_err(|s| format!("register: {}", s.message()))?
        .into_inner()
        .worker_id;
    let mut next = tokio::time::Instant::now() + pace.phase;
    loop {
        let during = tables.load(Ordering::Relaxed);
        let t = Instant::now();
        let answer = client
            .lease(LeaseRequest {
                worker_id: id,
                max_trials: slots,
            })
            .await
            .map_err(|s| format!("lease: {}", s.message()))?
            .into_inner();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        stats.leases.lock().unwrap().push(ms);
        if during || tables.load(Ordering::Relaxed) {
            stats.leases_during_tables.lock().unwrap().push(ms);
        }
        if answer.leases.is_empty() {
            return Ok(());
        }
        let held: Vec<(LeaseRef, TrialLease, u32, Option<u32>)> = answer
            .leases
            .into_iter()
            .map(|l| {
                let epochs: u32 = l
                    .config_toml
                    .lines()
                    .find_map(|x| x.strip_prefix("epochs = "))
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(1);
                let diverge = l
                    .config_toml
                    .contains("activation = \"elu\"")
                    .then_some(epochs.div_ceil(2));
                (
                    LeaseRef {
                        sweep_id: l.sweep_id,
                        index: l.index,
                        lease_id: l.lease_id,
                        worker_id: id,
                    },
                    l,
                    epochs,
                    diverge,
                )
            })
            .collect();
        let last = held.iter().map(|h| h.2).max().unwrap_or(0);
        let mut beat = Instant::now();
        for epoch in 1..=last {
            let batch: Vec<(u32, EpochReport, LeaseRef)> = held
                .iter()
                .filter(|(_, _, epochs, diverge)| {
                    epoch <= *epochs && diverge.is_none_or(|d| epoch < d)
                })
                .map(|(r, l, _, _)| (l.index, report(l.index, epoch, &l.config_toml), *r))
                .collect();
            if batch.is_empty() {
                break;
            }
            if let Some(period) = pace.period {
                // A worker that fell behind sends at once (and does not catch up).
                next = (next + period).max(tokio::time::Instant::now());
                tokio::time::sleep_until(next).await;
            }
            let request = ReportEpochsRequest {
                reports: batch
                    .iter()
                    .map(|(_, report, lease)| ReportEpochRequest {
                        lease: Some(*lease),
                        report: Some(report.clone()),
                    })
                    .collect(),
            };
            let t = Instant::now();
            let outcomes = client
                .report_epochs(request)
                .await
                .map_err(|s| format!("report_epochs: {}", s.message()))?
                .into_inner()
                .outcomes;
            stats
                .calls
                .lock()
                .unwrap()
                .push(t.elapsed().as_secs_f64() * 1e3);
            if outcomes.len() != batch.len() {
                return Err(format!(
                    "{} outcomes for {} reports",
                    outcomes.len(),
                    batch.len()
                ));
            }
            for ((index, report, _), o) in batch.into_iter().zip(outcomes) {
                if o.code != 0 {
                    return Err(format!(
                        "report of trial {index} epoch {epoch}: {} {}",
                        o.code, o.message
                    ));
                }
                stats.acked.fetch_add(1, Ordering::Relaxed);
                if keep {
                    stats
                        .stored
                        .lock()
                        .unwrap()
                        .entry(index)
                        .or_default()
                        .push(report);
                }
            }
            if beat.elapsed() > Duration::from_secs(3) {
                beat = Instant::now();
                client
                    .heartbeat(HeartbeatRequest {
                        worker_id: id,
                        leases: held.iter().map(|h| h.0).collect(),
                    })
                    .await
                    .map_err(|s| format!("heartbeat: {}", s.message()))?;
            }
        }
        for (lease, l, epochs, diverge) in &held {
            let stored = diverge.map_or(*epochs, |d| d - 1);
            let t = Instant::now();
            client
                .complete(CompleteRequest {
                    lease: Some(*lease),
                    result: Some(result(stored, *diverge, l.index)),
                })
                .await
                .map_err(|s| format!("complete of trial {}: {}", l.index, s.message()))?;
            stats
                .completes
                .lock()
                .unwrap()
                .push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

/// The median time of `n` runs of `f`, in ms.
async fn timed<F, Fut, T>(n: usize, mut f: F) -> Result<(f64, T), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..n {
        let t = Instant::now();
        last = Some(f().await.map_err(|s| s.message().to_owned())?);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((percentile(&mut times, 0.5), last.expect("n > 0")))
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| fail(e));
    let mut started = None;
    let url = match &args.coordinator {
        Some(url) => url.clone(),
        None => {
            let (db, temporary) = match &args.db {
                Some(db) => (db.clone(), false),
                None => (
                    std::env::temp_dir()
                        .join(format!("gradsweep-simworkers-{}", std::process::id())),
                    true,
                ),
            };
            let (child, url) =
                start_coordinator(&db, args.cache_mb, "30s").unwrap_or_else(|e| fail(e));
            started = Some(Started {
                child,
                db,
                temporary,
            });
            url
        }
    };
    let channel = Channel::from_shared(url.clone())
        .unwrap_or_else(|e| fail(format!("{url}: {e}")))
        .connect()
        .await
        .unwrap_or_else(|e| fail(format!("{url}: {e}")));
    let mut sweeps = SweepServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let workers = WorkerServiceClient::new(channel.clone());

    let t = Instant::now();
    let sweep = sweeps
        .submit_sweep(SubmitSweepRequest {
            spec_toml: spec(args.trials, args.epochs),
        })
        .await
        .unwrap_or_else(|s| fail(format!("submit: {}", s.message())))
        .into_inner()
        .sweep
        .expect("a sweep");
    let id = sweep.id;
    println!(
        "sweep {id}: {} trials × {} epochs submitted in {:.2} s",
        sweep.trial_count,
        args.epochs,
        t.elapsed().as_secs_f64()
    );

    let stats = Arc::new(Stats::default());
    let in_table = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(true));
    // A client building tables in a loop, on its own connection.
    let table_loop = (args.tables && !args.check).then(|| {
        let url = url.clone();
        let in_table = in_table.clone();
        let running = running.clone();
        tokio::spawn(async move {
            let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
            let mut c = SweepServiceClient::new(channel).max_decoding_message_size(64 << 20);
            let mut times = Vec::new();
            while running.load(Ordering::Relaxed) {
                in_table.store(true, Ordering::Relaxed);
                let t = Instant::now();
                let r = c
                    .get_table(GetTableRequest {
                        sweep_id: id,
                        ..GetTableRequest::default()
                    })
                    .await;
                in_table.store(false, Ordering::Relaxed);
                if r.is_err() {
                    break;
                }
                times.push(t.elapsed().as_secs_f64() * 1e3);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            times
        })
    });
    let t = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..args.workers {
        // A connection per 25 workers, as many processes would have.
        let client = if n % 25 == 0 {
            WorkerServiceClient::new(
                Channel::from_shared(url.clone())
                    .unwrap()
                    .connect()
                    .await
                    .unwrap_or_else(|e| fail(e.to_string())),
            )
        } else {
            workers.clone()
        };
        // Each worker's share of the rate: one call of `slots` reports per period. Paced
        // workers start staggered over one trial's length, as workers joining a running
        // cluster and trials of unequal speed are: started together, 200 workers with
        // identical trials finish in lockstep, and all their Completes and Leases arrive
        // within one period.
        let period = args.rate.map(|r| {
            Duration::from_secs_f64(args.workers as f64 * f64::from(args.slots) / r as f64)
        });
        let pace = Pace {
            period,
            phase: period.map_or(Duration::ZERO, |p| {
                p.mul_f64(f64::from(args.epochs) * n as f64 / args.workers as f64)
            }),
        };
        tasks.push(tokio::spawn(sim_worker(
            client,
            n,
            args.slots,
            pace,
            stats.clone(),
            in_table.clone(),
            args.check,
        )));
    }
    for task in tasks {
        task.await
            .unwrap_or_else(|e| fail(format!("a worker panicked: {e}")))
            .unwrap_or_else(|e| fail(e));
    }
    let took = t.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    let table_times = match table_loop {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let acked = stats.acked.load(Ordering::Relaxed);
    let done = sweeps
        .get_sweep(GetSweepRequest { sweep_id: id })
        .await
        .unwrap_or_else(|s| fail(s.message().to_owned()))
        .into_inner();
    if done.state() != SweepState::Finished {
        fail(format!(
            "the sweep is {:?} after every worker stopped",
            done.state()
        ));
    }

    if args.check {
        match check(&mut sweeps, id, &stats).await {
            Ok(line) => println!("{line}"),
            Err(e) => fail(e),
        }
        return;
    }

    println!(
        "{acked} epoch reports in {took:.1} s: {:.0} reports/s ({} workers × {} slots, {})",
        acked as f64 / took,
        args.workers,
        args.slots,
        match args.rate {
            Some(r) => format!("paced to {r}/s"),
            None => "unpaced".into(),
        }
    );
    let mut leases = std::mem::take(&mut *stats.leases.lock().unwrap());
    let mut during = std::mem::take(&mut *stats.leases_during_tables.lock().unwrap());
    let mut calls = std::mem::take(&mut *stats.calls.lock().unwrap());
    println!(
        "Lease: p50 {:.1} ms, p99 {:.1} ms ({} calls); while a table was being built: p50 {:.1} ms, p99 {:.1} ms ({} calls)",
        percentile(&mut leases, 0.5),
        percentile(&mut leases, 0.99),
        leases.len(),
        percentile(&mut during, 0.5),
        percentile(&mut during, 0.99),
        during.len()
    );
    let mut completes = std::mem::take(&mut *stats.completes.lock().unwrap());
    println!(
        "ReportEpochs: p50 {:.1} ms, p99 {:.1} ms ({} calls); Complete: p50 {:.1} ms, p99 {:.1} ms; \
         tables built meanwhile: {}",
        percentile(&mut calls, 0.5),
        percentile(&mut calls, 0.99),
        calls.len(),
        percentile(&mut completes, 0.5),
        percentile(&mut completes, 0.99),
        table_times.len()
    );
    let results = async {
        let (table, t) = timed(3, || {
            let mut c = sweeps.clone();
            async move {
                c.get_table(GetTableRequest {
                    sweep_id: id,
                    ..GetTableRequest::default()
                })
                .await
            }
        })
        .await?;
        let rows = t.into_inner().rows.len();
        let (effects, _) = timed(3, || {
            let mut c = sweeps.clone();
            async move {
                c.get_effects(GetEffectsRequest {
                    sweep_id: id,
                    metric: "test_accuracy".into(),
                    best_val_epoch: false,
                })
                .await
            }
        })
        .await?;
        let (ls, _) = timed(5, || {
            let mut c = sweeps.clone();
            async move { c.list_sweeps(ListSweepsRequest {}).await }
        })
        .await?;
        let (status, _) = timed(5, || {
            let mut c = sweeps.clone();
            async move { c.get_sweep(GetSweepRequest { sweep_id: id }).await }
        })
        .await?;
        Ok::<_, String>((table, rows, effects, ls, status))
    };
    let (table, rows, effects, ls, status) = results.await.unwrap_or_else(|e| fail(e));
    println!(
        "GetTable {table:.1} ms ({rows} rows), GetEffects {effects:.1} ms, ListSweeps {ls:.1} ms, GetSweep {status:.1} ms (medians)"
    );
    let Some(mut coordinator) = started else {
        return;
    };
    let pid = coordinator.child.id();
    if let Some((rss, hwm)) = rss_mb(pid) {
        println!("coordinator RSS {rss:.0} MB (peak {hwm:.0} MB)");
    }
    // Restart after a crash: SIGKILL, start on the same database, time to the first answer.
    let _ = coordinator.child.kill();
    let _ = coordinator.child.wait();
    let t = Instant::now();
    let (child, url) =
        start_coordinator(&coordinator.db, args.cache_mb, "30s").unwrap_or_else(|e| fail(e));
    coordinator.child = child;
    let serving = loop {
        if let Ok(channel) = Channel::from_shared(url.clone()).unwrap().connect().await
            && SweepServiceClient::new(channel)
                .get_sweep(GetSweepRequest { sweep_id: id })
                .await
                .is_ok()
        {
            break t.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let after = rss_mb(coordinator.child.id()).map_or(f64::NAN, |r| r.0);
    println!("restart to serving after SIGKILL: {serving:.2} s (RSS then {after:.0} MB)");
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

fn mean_std(xs: &[f64]) -> (f64, Option<f64>) {
    if xs.is_empty() {
        return (f64::NAN, None);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let std = (xs.len() >= 2)
        .then(|| (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, std)
}

fn same_stat(what: &str, s: &MetricStat, xs: &[f64]) -> Result<(), String> {
    let (mean, std) = mean_std(xs);
    let std_same = match (s.std, std) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    };
    if s.count as usize != xs.len() || !close(s.mean, mean) || !std_same {
        return Err(format!(
            "{what}: the coordinator says {} ± {:?} ({}), the trials give {mean} ± {std:?} ({})",
            s.mean,
            s.std,
            s.count,
            xs.len()
        ));
    }
    Ok(())
}

/// The `--check` mode: counts, tables, effects and stored reports against GetTrial.
async fn check(
    sweeps: &mut SweepServiceClient<Channel>,
    id: u64,
    stats: &Stats,
) -> Result<String, String> {
    let sweep = sweeps
        .get_sweep(GetSweepRequest { sweep_id: id })
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    let mut details = Vec::new();
    for index in 0..sweep.trial_count {
        details.push(
            sweeps
                .get_trial(GetTrialRequest {
                    sweep_id: id,
                    index,
                })
                .await
                .map_err(|s| s.message().to_owned())?
                .into_inner(),
        );
    }
    // Counts.
    let mut recount = TrialCounts::default();
    for d in &details {
        let t = d.trial.as_ref().ok_or("a trial without its record")?;
        match t.state() {
            TrialState::Pending | TrialState::Unspecified => recount.pending += 1,
            TrialState::Leased => recount.leased += 1,
            TrialState::Succeeded => recount.succeeded += 1,
            TrialState::Diverged => recount.diverged += 1,
            TrialState::Failed => recount.failed += 1,
            TrialState::Cancelled => recount.cancelled += 1,
        }
    }
    if sweep.counts != Some(recount) {
        return Err(format!(
            "counts: GetSweep says {:?}, GetTrial {recount:?}",
            sweep.counts
        ));
    }
    let listed = sweeps
        .list_sweeps(ListSweepsRequest {})
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner()
        .sweeps;
    let listed = listed
        .iter()
        .find(|s| s.id == id)
        .ok_or("the sweep is not listed")?;
    if listed.counts != Some(recount) {
        return Err(format!(
            "counts: ListSweeps says {:?}, GetTrial {recount:?}",
            listed.counts
        ));
    }
    // Every acknowledged report stored exactly once, and nothing else.
    let stored = std::mem::take(&mut *stats.stored.lock().unwrap());
    let mut reports = 0;
    for d in &details {
        let index = d.trial.as_ref().map_or(0, |t| t.index);
        let acked = stored.get(&index).map_or(&[][..], Vec::as_slice);
        if d.epochs != acked {
            return Err(format!(
                "trial {index}: {} epochs stored, {} acknowledged, or they differ",
                d.epochs.len(),
                acked.len()
            ));
        }
        reports += acked.len();
    }
    // Tables (final and best-validation epochs), rows by every axis.
    let pick = |d: &TrialDetail, best: bool| -> Option<EpochReport> {
        if best {
            let mut b: Option<&EpochReport> = None;
            for e in &d.epochs {
                if b.is_none_or(|b| e.val_accuracy > b.val_accuracy) {
                    b = Some(e);
                }
            }
            b.cloned()
        } else {
            d.epochs.last().cloned()
        }
    };
    let six = [
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "test_loss",
        "test_accuracy",
    ];
    let value = |e: &EpochReport, m: &str| match m {
        "train_loss" => e.train_loss,
        "train_accuracy" => e.train_accuracy,
        "val_loss" => e.val_loss,
        "val_accuracy" => e.val_accuracy,
        "test_loss" => e.test_loss,
        _ => e.test_accuracy,
    };
    for best in [false, true] {
        let table = sweeps
            .get_table(GetTableRequest {
                sweep_id: id,
                best_val_epoch: best,
                ..GetTableRequest::default()
            })
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner();
        let mut rows: BTreeMap<Vec<u32>, (Vec<&TrialDetail>, [u32; 4])> = BTreeMap::new();
        for d in &details {
            let t = d.trial.as_ref().unwrap();
            let row = rows.entry(t.choice.clone()).or_default();
            match t.state() {
                TrialState::Succeeded => row.0.push(d),
                TrialState::Diverged => row.1[0] += 1,
                TrialState::Failed => row.1[1] += 1,
                TrialState::Cancelled => row.1[2] += 1,
                _ => row.1[3] += 1,
            }
        }
        if table.rows.len() != rows.len() {
            return Err(format!(
                "table: {} rows, the trials give {}",
                table.rows.len(),
                rows.len()
            ));
        }
        for (r, (key, (trials, excluded))) in table.rows.iter().zip(&rows) {
            let labels: Vec<String> = key
                .iter()
                .zip(&sweep.axes)
                .map(|(&c, a)| a.labels[c as usize].clone())
                .collect();
            if r.values != labels || [r.diverged, r.failed, r.cancelled, r.unfinished] != *excluded
            {
                return Err(format!(
                    "table row {labels:?}: {r:?} differs from the trials"
                ));
            }
            for (m, s) in six.iter().zip(&r.stats) {
                let xs: Vec<f64> = trials
                    .iter()
                    .filter_map(|d| pick(d, best))
                    .map(|e| value(&e, m))
                    .collect();
                same_stat(
                    &format!("table row {labels:?} {m} (best_val_epoch {best})"),
                    s,
                    &xs,
                )?;
            }
        }
    }
    // Effects.
    let effects = sweeps
        .get_effects(GetEffectsRequest {
            sweep_id: id,
            metric: "test_loss".into(),
            best_val_epoch: false,
        })
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    if effects.higher_is_better || effects.axes.len() != sweep.axes.len() {
        return Err(format!("effects: {effects:?}"));
    }
    let mut previous: Option<(f64, Option<f64>)> = None;
    for e in &effects.axes {
        let a = sweep
            .axes
            .iter()
            .position(|a| a.key == e.key)
            .ok_or("effects: an unknown axis")?;
        let mut lost: f64 = 0.0;
        let mut means = Vec::new();
        for v in &e.values {
            let c = sweep.axes[a]
                .labels
                .iter()
                .position(|l| *l == v.label)
                .ok_or("an unknown value")? as u32;
            let with: Vec<&TrialDetail> = details
                .iter()
                .filter(|d| d.trial.as_ref().unwrap().choice[a] == c)
                .collect();
            let state = |s: TrialState| {
                with.iter()
                    .filter(|d| d.trial.as_ref().unwrap().state() == s)
                    .count() as u32
            };
            let xs: Vec<f64> = with
                .iter()
                .filter(|d| d.trial.as_ref().unwrap().state() == TrialState::Succeeded)
                .filter_map(|d| d.epochs.last())
                .map(|r| r.test_loss)
                .collect();
            same_stat(
                &format!("effects {}={}", e.key, v.label),
                v.stat.as_ref().ok_or("no stat")?,
                &xs,
            )?;
            let (diverged, failed) = (state(TrialState::Diverged), state(TrialState::Failed));
            if (v.diverged, v.failed, v.cancelled)
                != (diverged, failed, state(TrialState::Cancelled))
            {
                return Err(format!("effects {}={}: counts differ", e.key, v.label));
            }
            let ended = xs.len() as u32 + diverged + failed;
            if ended > 0 {
                lost = lost.max(f64::from(diverged + failed) / f64::from(ended));
            }
            if !xs.is_empty() {
                means.push(mean_std(&xs).0);
            }
        }
        if means.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!(
                "effects {}: values not best (lowest loss) first: {means:?}",
                e.key
            ));
        }
        let spread = (means.len() >= 2).then(|| means[means.len() - 1] - means[0]);
        let spread_same = match (e.spread, spread) {
            (Some(x), Some(y)) => close(x, y),
            (None, None) => true,
            _ => false,
        };
        if !close(e.lost_fraction, lost) || !spread_same {
            return Err(format!(
                "effects {}: lost {} spread {:?}, the trials give {lost} {spread:?}",
                e.key, e.lost_fraction, e.spread
            ));
        }
        if let Some((l, s)) = previous
            && (l < e.lost_fraction
                || (l == e.lost_fraction
                    && s.unwrap_or(f64::NEG_INFINITY) < e.spread.unwrap_or(f64::NEG_INFINITY)))
        {
            return Err(format!("effects: axis {} ranked below a lesser one", e.key));
        }
        previous = Some((e.lost_fraction, e.spread));
    }
    Ok(format!(
        "check passed: {} trials, {reports} acknowledged reports stored once each, counts, \
         tables (final and best-validation epochs) and effects equal a recomputation from GetTrial",
        details.len()
    ))
}
