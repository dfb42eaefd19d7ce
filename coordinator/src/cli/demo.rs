//! `sweep demo`: a coordinator on a temporary database and N local workers (the binaries
//! beside `sweep`), a built-in sweep that shows the assignment's findings, then the
//! tables, the effects and the vanishing-gradient verdicts; everything it started is
//! stopped and the database removed, also on an error.

use super::{CliError, Result};
use gradsweep_proto::{GetTrialRequest, TrialState};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The built-in sweep: activation × init × batch norm × regularisation on a deep net, two
/// seeds (32 trials).
pub fn spec(dataset: &str, epochs: u32) -> String {
    format!(
        r#"name = "demo"
dataset = "{dataset}"
epochs = {epochs}
batch_size = 32
hidden = [64, 64, 64, 64, 64, 64]
optimizer = {{ kind = "sgd", lr = 0.05, momentum = 0.9 }}
seeds = [0, 1]

[grid]
activation = ["sigmoid", "relu"]
init = ["default", "he_normal"]
batchnorm = [false, true]
regularization = ["none", "l2:1e-4"]

[gradcheck]
layer = "none"
"#
    )
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
    super::note(&format!(
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
    super::note(&format!(
        "demo: {} worker(s) on {device}, {threads} thread(s) each",
        procs.len()
    ));

    let mut client = super::connect(&addr).await?;
    let spec_path = dir.0.join("demo.toml");
    std::fs::write(&spec_path, spec(dataset, epochs))
        .map_err(|e| CliError(format!("cannot write {}: {e}", spec_path.display())))?;
    let (submitted, id) = super::submit(&mut client, &spec_path).await?;
    super::note(&format!("demo: {}", submitted.trim_end()));
    let summary = super::watch(&mut client, id).await?;
    super::note(&format!("demo: {}", summary.trim_end()));
    drop(procs);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nTest accuracy and loss per configuration (mean ± std (seeds)), final epoch:\n"
    );
    let table = super::table(
        &mut client,
        id,
        vec![],
        vec!["test_accuracy".into(), "test_loss".into()],
        false,
    )
    .await?;
    out.push_str(&super::render::table(&table, super::render::Format::Table));
    let _ = writeln!(out);
    let effects = super::effects(&mut client, id, "test_accuracy", false).await?;
    out.push_str(&super::render::effects(
        &effects,
        "test_accuracy",
        super::render::Format::Table,
    ));

    // Vanishing-gradient verdicts per configuration.
    let sweep = super::get_sweep(&mut client, id).await?;
    let mut flagged: std::collections::BTreeMap<Vec<u32>, (String, u32, u32, String)> =
        Default::default();
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
        let entry = flagged
            .entry(t.choice.clone())
            .or_insert_with(|| (label.join(" "), 0, 0, String::new()));
        entry.2 += 1;
        if let Some(v) = t
            .result
            .iter()
            .flat_map(|r| &r.verdicts)
            .find(|v| v.name == "vanishing_gradients" && v.flagged)
        {
            entry.1 += 1;
            entry.3 = v.reason.clone();
        }
    }
    let _ = writeln!(out, "\nVanishing gradients (flagged seeds / seeds):\n");
    let rows: Vec<Vec<String>> = flagged
        .values()
        .map(|(label, n, of, reason)| {
            vec![
                label.clone(),
                format!("{n}/{of}"),
                if *n > 0 {
                    reason.clone()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    out.push_str(&super::render::grid(
        &["CONFIGURATION", "FLAGGED", "REASON (last flagged seed)"],
        &rows,
    ));
    let _ = writeln!(
        out,
        "\nThe coordinator and workers are stopped; `sweep table`, `sweep trial` and the \
         rest work the same on a real coordinator."
    );
    Ok(out)
}
