//! `sweep demo`: a coordinator on a temporary database and N local workers (the binaries
//! beside `sweep`), a built-in sweep that shows the assignment's findings, then the
//! tables, the effects and every verdict per configuration with the numbers behind it;
//! everything it started is stopped and the database removed, also on an error.

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

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
    // The columns: vanishing gradients first (the finding the demo is about), then the
    // rest in the order the workers report them.
    let mut names: Vec<String> = vec!["vanishing_gradients".into()];
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
        "\nVanishing gradients and the other verdicts per configuration (flagged seeds / seeds):\n"
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

/// Runs the demo with `workers` local workers on `device`; returns what to print last
/// (progress goes to the terminal as it happens).
pub async fn run(workers: usize, device: &str, dataset: &str, epochs: u32) -> Result<String> {
    let coordinator_bin = sibling("coordinator")?;
    let worker_bin = sibling("worker")?;
    let dir = TempDir(std::env::temp_dir().join(format!("gradsweep-demo-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0)
        .map_err(|e| CliError(format!("cannot create {}: {e}", dir.0.display())))?;
    let mut child = Command::new(&coordinator_bin)
        .args(["--listen", "127.0.0.1:0", "--lease-ttl", "10s"])
        .arg("--db")
        .arg(dir.0.join("db"))
        // Its warnings and errors only: the demo prints its own progress.
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CliError(format!("cannot start {}: {e}", coordinator_bin.display())))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let _coordinator = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| CliError(format!("coordinator: {e}")))?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| CliError(format!("the coordinator did not start: {:?}", line.trim())))?
        .to_owned();
    crate::note(&format!(
        "demo: coordinator on {addr} (database {})",
        dir.0.display()
    ));

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / workers.max(1)).max(1).to_string();
    let mut procs = Vec::new();
    for i in 0..workers.max(1) {
        let child = Command::new(&worker_bin)
            .args(["serve", "--device", device, "--threads", &threads])
            .args(["--name", &format!("demo-{i}")])
            .arg("--coordinator")
            .arg(format!("http://{addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| CliError(format!("cannot start {}: {e}", worker_bin.display())))?;
        procs.push(Proc(child));
    }
    crate::note(&format!(
        "demo: {} worker(s) on {device}, {threads} thread(s) each",
        procs.len()
    ));

    let mut client = crate::connect(&addr).await?;
    let spec_path = dir.0.join("demo.toml");
    std::fs::write(&spec_path, spec(dataset, epochs))
        .map_err(|e| CliError(format!("cannot write {}: {e}", spec_path.display())))?;
    let (submitted, id) = crate::submit(&mut client, &spec_path).await?;
    crate::note(&format!("demo: {}", submitted.trim_end()));
    let summary = crate::watch(&mut client, id).await?;
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
    let _ = writeln!(
        out,
        "\nThe coordinator and workers are stopped; `sweep table`, `sweep trial` and the \
         rest work the same on a real coordinator."
    );
    Ok(out)
}
