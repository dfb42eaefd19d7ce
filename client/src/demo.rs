//! `sweep demo`: a coordinator on a temporary database (or the one `--coordinator`
//! names) and N local workers (the binaries beside `sweep`), a built-in sweep that shows
//! the assignment's findings, then the tables, the effects and every verdict per
//! configuration (vanishing gradients beside the stagnant loss) with the numbers behind
//! it, and with `--report` its HTML report; everything it started is stopped and the
//! database removed (kept with `--keep DIR`), also on an error.

use crate::{CliError, Result};
use gradsweep_proto::{GetTrialRequest, TrialState};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The built-in sweep, `examples/sweeps/demo.toml`: activation × init × batch norm ×
/// regularisation on a deep net, two seeds (32 trials).
pub const DEMO_SPEC: &str = include_str!("../../examples/sweeps/demo.toml");

/// The built-in sweep on `dataset` for `epochs` epochs.
pub fn spec(dataset: &str, epochs: u32) -> String {
    DEMO_SPEC
        .lines()
        .map(|line| {
            if line.starts_with("dataset = ") {
                format!(
                    "dataset = \"{}\"\n",
                    dataset.replace('\\', "\\\\").replace('"', "\\\"")
                )
            } else if line.starts_with("epochs = ") {
                format!("epochs = {epochs}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// A child killed (and reaped) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo's directory: removed when dropped unless kept (`--keep`).
struct TempDir(PathBuf, bool);

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// What `sweep demo` is asked to do.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Local worker processes to start.
    pub workers: usize,
    /// Where they train.
    pub device: String,
    /// The built-in sweep's dataset.
    pub dataset: String,
    /// Epochs per trial.
    pub epochs: u32,
    /// Keep the database in this directory (and say how to open it again).
    pub keep: Option<PathBuf>,
    /// Write the demo sweep's HTML report here.
    pub report: Option<PathBuf>,
    /// Use this coordinator (given on the command line) instead of starting one, with
    /// its `--ca` and `--token-file`.
    pub coordinator: Option<(String, Option<PathBuf>, Option<PathBuf>)>,
    /// The worker token's file for the local workers (with `coordinator`, when it
    /// requires one).
    pub worker_token: Option<PathBuf>,
}

/// The last non-empty line of a worker's log (what it said as it exited).
fn last_line(log: &std::path::Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "nothing".into())
}

/// A binary beside the running `sweep`.
fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError(format!("cannot find the sweep binary's directory: {e}")))?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        return Err(CliError(format!(
            "{} is missing: `sweep demo` starts the `{name}` binary beside it \
             (cargo build --release --workspace builds both)",
            path.display()
        )));
    }
    Ok(path)
}

/// One configuration's verdicts: its label, its finished seeds, and per verdict the
/// flagged seeds with each one's reason.
#[derive(Default)]
struct ConfigVerdicts {
    label: String,
    seeds: u32,
    test_accuracy: Vec<f64>,
    flagged: Vec<(String, Vec<(u64, String)>)>,
}

/// Every verdict per configuration: how many seeds each flagged, and each flagged
/// seed's measured values.
async fn verdicts(client: &mut crate::Client, id: u64) -> Result<String> {
    let sweep = crate::get_sweep(client, id).await?;
    let mut configs: std::collections::BTreeMap<Vec<u32>, ConfigVerdicts> = Default::default();
    for index in 0..sweep.trial_count {
        let detail = client
            .sweeps
            .get_trial(GetTrialRequest {
                sweep_id: id,
                index,
            })
            .await
            .map_err(|s| client.status(s))?
            .into_inner();
        let Some(t) = detail.trial else { continue };
        if t.state() != TrialState::Succeeded && t.state() != TrialState::Diverged {
            continue;
        }
        let entry = configs.entry(t.choice.clone()).or_insert_with(|| {
            let label: Vec<String> = sweep
                .axes
                .iter()
                .zip(&t.choice)
                .map(|(a, &c)| {
                    format!(
                        "{}={}",
                        a.key,
                        a.labels.get(c as usize).map_or("?", String::as_str)
                    )
                })
                .collect();
            ConfigVerdicts {
                label: label.join(" "),
                ..ConfigVerdicts::default()
            }
        });
        entry.seeds += 1;
        if let Some(last) = detail.epochs.last() {
            entry.test_accuracy.push(last.test_accuracy);
        }
        for v in t.result.iter().flat_map(|r| &r.verdicts) {
            let slot = match entry.flagged.iter().position(|(n, _)| *n == v.name) {
                Some(i) => i,
                None => {
                    entry.flagged.push((v.name.clone(), Vec::new()));
                    entry.flagged.len() - 1
                }
            };
            if v.flagged {
                entry.flagged[slot].1.push((t.seed, v.reason.clone()));
            }
        }
    }
    // The columns: vanishing gradients first (the finding the demo is about) with the
    // stagnant loss beside it (the symptom in the loss), then the rest in the order the
    // workers report them.
    let mut names: Vec<String> = vec!["vanishing_gradients".into(), "stagnant_loss".into()];
    for c in configs.values() {
        for (n, _) in &c.flagged {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nVanishing gradients beside the stagnant loss, and the other verdicts, per \
         configuration (flagged seeds / seeds):\n"
    );
    let mut header: Vec<String> = vec!["CONFIGURATION".into()];
    header.extend(names.iter().map(|n| n.to_uppercase()));
    header.push("TEST ACC".into());
    let rows: Vec<Vec<String>> = configs
        .values()
        .map(|c| {
            let mut row = vec![c.label.clone()];
            for n in &names {
                let flagged = c
                    .flagged
                    .iter()
                    .find(|(m, _)| m == n)
                    .map_or(0, |(_, s)| s.len());
                row.push(format!("{flagged}/{}", c.seeds));
            }
            row.push(if c.test_accuracy.is_empty() {
                "-".into()
            } else {
                format!(
                    "{:.1}%",
                    100.0 * c.test_accuracy.iter().sum::<f64>() / c.test_accuracy.len() as f64
                )
            });
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    out.push_str(&crate::render::grid(&header, &rows));
    let _ = writeln!(
        out,
        "\nWhy: each flagged seed's measured values against the verdict's threshold \
         (`sweep trial` shows each criterion):\n"
    );
    let mut any = false;
    for c in configs.values() {
        let flagged: Vec<&(String, Vec<(u64, String)>)> =
            c.flagged.iter().filter(|(_, s)| !s.is_empty()).collect();
        if flagged.is_empty() {
            continue;
        }
        any = true;
        let _ = writeln!(out, "{}", c.label);
        for (name, seeds) in flagged {
            for (seed, reason) in seeds {
                let _ = writeln!(out, "    {name}, seed {seed}: {reason}");
            }
        }
    }
    if !any {
        let _ = writeln!(out, "nothing flagged");
    }
    Ok(out)
}

/// Runs the demo; returns what to print last (progress goes to stderr as it happens,
/// its first line saying which coordinator it uses).
pub async fn run(o: Options) -> Result<String> {
    if o.keep.is_some() && o.coordinator.is_some() {
        return Err(CliError(
            "--keep keeps the database of the coordinator the demo starts; with \
             --coordinator the database is that coordinator's"
                .into(),
        ));
    }
    if let Some(path) = &o.worker_token {
        if o.coordinator.is_none() {
            return Err(CliError(
                "--worker-token-file is for the local workers of a coordinator named with \
                 --coordinator; the demo's own coordinator needs no token"
                    .into(),
            ));
        }
        std::fs::File::open(path).map_err(|e| {
            CliError(format!(
                "--worker-token-file {}: cannot read it: {e}",
                path.display()
            ))
        })?;
    }
    if let Some(path) = &o.report {
        crate::report::check_out(path)?;
    }
    let worker_bin = sibling("worker")?;
    let dir_path = match &o.keep {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| CliError(format!("--keep {}: cannot create it: {e}", d.display())))?;
            std::fs::canonicalize(d)
                .map_err(|e| CliError(format!("--keep {}: {e}", d.display())))?
        }
        None => std::env::temp_dir().join(format!("gradsweep-demo-{}", std::process::id())),
    };
    let dir = TempDir(dir_path, o.keep.is_some());
    if o.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir.0);
    }
    std::fs::create_dir_all(&dir.0)
        .map_err(|e| CliError(format!("cannot create {}: {e}", dir.0.display())))?;
    let db = dir.0.join("db");
    let mut _coordinator = None;
    let (url, mut client) = match &o.coordinator {
        Some((addr, ca, token)) => {
            crate::note(&format!(
                "demo: using the coordinator at {addr} (--coordinator); {} local worker(s) \
                 join it",
                o.workers
            ));
            let client = crate::connect_with(addr, ca.as_deref(), token.as_deref()).await?;
            (client.addr.clone(), client)
        }
        None => {
            crate::note(&format!(
                "demo: starting its own coordinator on {} database {} and {} local \
                 worker(s) (--coordinator URL uses yours instead)",
                if o.keep.is_some() {
                    "the kept"
                } else {
                    "a temporary"
                },
                db.display(),
                o.workers.max(1)
            ));
            let coordinator_bin = sibling("coordinator")?;
            let mut child = Command::new(&coordinator_bin)
                .args(["--listen", "127.0.0.1:0", "--lease-ttl", "10s"])
                .arg("--db")
                .arg(&db)
                // Its warnings and errors only: the demo prints its own progress.
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| {
                    CliError(format!("cannot start {}: {e}", coordinator_bin.display()))
                })?;
            let stdout = child.stdout.take().expect("piped stdout");
            _coordinator = Some(Proc(child));
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .map_err(|e| CliError(format!("coordinator: {e}")))?;
            let addr = line
                .trim()
                .strip_prefix("listening on ")
                .ok_or_else(|| {
                    CliError(format!("the coordinator did not start: {:?}", line.trim()))
                })?
                .to_owned();
            crate::note(&format!("demo: coordinator on {addr}"));
            let client = crate::connect(&addr).await?;
            (format!("http://{addr}"), client)
        }
    };
    // With its own coordinator the demo needs at least one worker; on yours, --workers 0
    // leaves the training to the workers it already has.
    let workers = if o.coordinator.is_some() {
        o.workers
    } else {
        o.workers.max(1)
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / workers.max(1)).max(1).to_string();
    let ca = o.coordinator.as_ref().and_then(|(_, ca, _)| ca.clone());
    let mut procs = Vec::new();
    let mut logs = Vec::new();
    for i in 0..workers {
        let log = dir.0.join(format!("worker-{i}.log"));
        let stderr = std::fs::File::create(&log)
            .map_err(|e| CliError(format!("cannot create {}: {e}", log.display())))?;
        let mut command = Command::new(&worker_bin);
        command
            .args(["serve", "--device", &o.device, "--threads", &threads])
            .args(["--name", &format!("demo-{i}")])
            .arg("--coordinator")
            .arg(&url)
            // GRADSWEEP_TOKEN may hold the client token `sweep` uses: never a worker's.
            .env_remove("GRADSWEEP_TOKEN");
        if let Some(ca) = &ca {
            command.arg("--ca").arg(ca);
        }
        if let Some(token) = &o.worker_token {
            command.arg("--token-file").arg(token);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| CliError(format!("cannot start {}: {e}", worker_bin.display())))?;
        procs.push(Proc(child));
        logs.push(log);
    }
    crate::note(&format!(
        "demo: {} worker(s) on {}, {threads} thread(s) each",
        procs.len(),
        o.device
    ));

    let spec_path = dir.0.join("demo.toml");
    std::fs::write(&spec_path, spec(&o.dataset, o.epochs))
        .map_err(|e| CliError(format!("cannot write {}: {e}", spec_path.display())))?;
    let (submitted, id) = crate::submit(&mut client, &spec_path).await?;
    crate::note(&format!("demo: {}", submitted.trim_end()));
    // Watched while the local workers live: if every one of them exits (a refused
    // token, a device it cannot use), the sweep would wait for them forever.
    let watched = {
        let watching = crate::watch(&mut client, id);
        tokio::pin!(watching);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tokio::select! {
                summary = &mut watching => break Some(summary?),
                _ = tick.tick(), if !procs.is_empty() => {
                    if procs.iter_mut().all(|p| matches!(p.0.try_wait(), Ok(Some(_)))) {
                        break None;
                    }
                }
            }
        }
    };
    let Some(summary) = watched else {
        // The demo's sweep would wait for workers that are gone: it is cancelled.
        let cancelled = match crate::cancel(&mut client, id).await {
            Ok(_) => format!("sweep {id} is cancelled"),
            Err(e) => format!("sweep {id} stays (cancelling it failed: {})", e.0),
        };
        return Err(CliError(format!(
            "demo: every local worker exited before sweep {id} finished ({cancelled}); \
             worker 0 said: {}",
            last_line(&logs[0])
        )));
    };
    crate::note(&format!("demo: {}", summary.trim_end()));
    drop(procs);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nTest accuracy and loss per configuration (mean ± std (seeds)), final epoch:\n"
    );
    let table = crate::table(
        &mut client,
        id,
        vec![],
        vec!["test_accuracy".into(), "test_loss".into()],
        false,
    )
    .await?;
    out.push_str(&crate::render::table(&table, crate::render::Format::Table));
    let _ = writeln!(out);
    let effects = crate::effects::effects(&mut client, id, "test_accuracy", false).await?;
    out.push_str(&crate::effects::render(
        &effects,
        crate::render::Format::Table,
    ));

    out.push_str(&verdicts(&mut client, id).await?);
    if let Some(path) = &o.report {
        let line = crate::report::report(&mut client, id, path).await?;
        let _ = write!(out, "\n{line}");
    }
    if o.coordinator.is_some() {
        let _ = writeln!(
            out,
            "\nThe demo's workers are stopped; sweep {id} stays on the coordinator at {url} \
             (`sweep table {id}`, `sweep report {id} --out report.html`)."
        );
    } else if o.keep.is_some() {
        let exe = |name: &str| {
            sibling(name)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| name.to_owned())
        };
        let _ = writeln!(
            out,
            "\nThe coordinator and workers are stopped; the database is kept in {db}. To \
             open it again and query sweep {id}:\n\n  {} --db {db} --listen 127.0.0.1:7070 &\n  \
             {} --coordinator http://127.0.0.1:7070 table {id} --verdicts\n  \
             {} --coordinator http://127.0.0.1:7070 report {id} --out report.html",
            exe("coordinator"),
            exe("sweep"),
            exe("sweep"),
            db = db.display()
        );
    } else {
        let _ = writeln!(
            out,
            "\nThe coordinator and workers are stopped and the database removed (--keep DIR \
             keeps it); `sweep table`, `sweep trial` and the rest work the same on a real \
             coordinator."
        );
    }
    Ok(out)
}
