//! The `sweep` CLI end to end: the real `sweep` binary against a real `coordinator` and
//! `worker serve` on loopback. Numbers in `sweep table` are checked against mean/std
//! computed here from the epochs `GetTrial` returns.

use gradsweep_proto::sweep_service_client::SweepServiceClient;
use gradsweep_proto::*;
use gradsweep_tests::{TempDir, binary, coordinator, worker};
use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Runs `sweep <args>` against `addr` (through the environment variable, so that the
/// flag's fallback is exercised too).
fn sweep(addr: &str, args: &[&str]) -> Output {
    Command::new(binary("sweep"))
        .args(args)
        .env("GRADSWEEP_COORDINATOR", addr)
        .output()
        .expect("sweep runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Asserts `o` failed with exactly one line on stderr, and returns that line.
fn one_line_error(o: &Output) -> String {
    assert!(!o.status.success(), "expected failure, got {o:?}");
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    err.trim_end().to_owned()
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    let top = sweep("http://127.0.0.1:1", &["--help"]);
    assert!(top.status.success());
    assert!(stdout(&top).contains("Examples:"));
    for sub in [
        "submit", "ls", "status", "watch", "cancel", "table", "trial", "trials", "export",
    ] {
        let o = sweep("http://127.0.0.1:1", &[sub, "--help"]);
        assert!(o.status.success(), "sweep {sub} --help: {o:?}");
        let text = stdout(&o);
        assert!(text.contains("Example"), "sweep {sub} --help: {text}");
        assert!(text.contains(&format!("sweep {sub}")), "{text}");
    }
}

#[test]
fn an_unreachable_coordinator_is_one_line_naming_the_address() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    for args in [&["ls"][..], &["status", "1"], &["table", "1"]] {
        let o = sweep(&addr, args);
        let line = one_line_error(&o);
        assert!(line.contains(&format!("http://{addr}")), "{line}");
        assert!(line.contains("running"), "{line}");
        assert!(line.contains("GRADSWEEP_COORDINATOR"), "{line}");
    }
    // The flag wins over the environment variable.
    let o = Command::new(binary("sweep"))
        .args(["--coordinator", &addr, "ls"])
        .env("GRADSWEEP_COORDINATOR", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(one_line_error(&o).contains(&addr));
}

#[test]
fn a_wrong_sweep_id_or_a_bad_spec_is_one_line() {
    let db = TempDir::new("wrong-id");
    let (_coordinator, addr) = coordinator(&db.0.join("db"), "127.0.0.1:0", "5s");
    for args in [
        &["status", "4242"][..],
        &["cancel", "4242"],
        &["watch", "4242"],
        &["table", "4242"],
        &["trial", "4242/0"],
    ] {
        let line = one_line_error(&sweep(&addr, args));
        assert!(line.contains("4242"), "{args:?}: {line}");
    }
    let bad = db.0.join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"bad\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = 0\n",
    )
    .unwrap();
    let line = one_line_error(&sweep(&addr, &["submit", bad.to_str().unwrap()]));
    assert!(line.contains("epochs"), "{line}");
    let ls = sweep(&addr, &["ls"]);
    assert!(ls.status.success());
    assert!(stdout(&ls).contains("no sweeps"));
    // The README's example sweep is accepted.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/sweeps/activations.toml"
    );
    let o = sweep(&addr, &["submit", example]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains(": 24 trials"), "{}", stdout(&o));
}

const SPEC: &str = r#"
name = "cli-e2e"
dataset = "synthetic:glyphs-tiny"
epochs = 2
batch_size = 64
hidden = [16]
seeds = [0, 1, 2]
[grid]
activation = ["sigmoid", "relu"]
batchnorm = [false, true]
"#;

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_csv_and_json_match_the_stored_epochs() {
    let db = TempDir::new("e2e");
    let (_coordinator, addr) = coordinator(&db.0.join("db"), "127.0.0.1:0", "5s");
    let spec = db.0.join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let o = sweep(&addr, &["submit", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(out.contains("12 trials"), "{out}");
    let id: u64 = out
        .strip_prefix("submitted sweep ")
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no sweep id in {out:?}"));
    // `sweep watch` started before any worker: it follows the sweep and ends with it.
    let watcher = Command::new(binary("sweep"))
        .args(["watch", &id.to_string()])
        .env("GRADSWEEP_COORDINATOR", &addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sweep watch starts");
    // Let it take its first look (the trials finished before it began are not news).
    std::thread::sleep(Duration::from_millis(500));
    let _worker = worker(&addr, "cli-w", 1);

    let mut client = SweepServiceClient::new(
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy(),
    );
    let started = Instant::now();
    let sweep_msg = loop {
        let s = client
            .get_sweep(GetSweepRequest { sweep_id: id })
            .await
            .unwrap()
            .into_inner();
        if s.state() == SweepState::Finished {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let watched = watcher.wait_with_output().unwrap();
    assert!(watched.status.success(), "{watched:?}");
    // Its stdout is a pipe: one line per trial that finished while it watched, naming
    // the trial's configuration, then the counts and the command that shows the table.
    let end = format!(
        "sweep {id} finished: 12 succeeded, 0 diverged, 0 failed, 0 cancelled of 12 trials; \
         the table: sweep table {id}\n"
    );
    let text = stdout(&watched);
    assert!(text.ends_with(&end), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("trial ")).collect();
    assert_eq!(lines.len(), 12, "{text}");
    for i in 0..12 {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("trial {i} ")))
            .unwrap_or_else(|| panic!("no line for trial {i}: {text}"));
        assert!(
            line.contains("activation=")
                && line.contains("batchnorm=")
                && line.contains(": succeeded, train_loss ")
                && line.contains("val_acc "),
            "{line}"
        );
    }
    // Watching a finished sweep returns at once with the end line only.
    assert_eq!(stdout(&sweep(&addr, &["watch", &id.to_string()])), end);

    let status = stdout(&sweep(&addr, &["status", &id.to_string()]));
    assert!(status.contains("finished"), "{status}");
    assert!(status.contains("succeeded  12"), "{status}");
    assert!(stdout(&sweep(&addr, &["ls"])).contains("cli-e2e"));
    let trial = sweep(&addr, &["trial", &format!("{id}/0")]);
    assert!(trial.status.success());
    let trial = stdout(&trial);
    for part in [
        "config:",
        "epoch  train_loss",
        "verdicts (",
        "activation = ",
        "per-layer diagnostics",
    ] {
        assert!(trial.contains(part), "{part} missing: {trial}");
    }

    // Expected: per activation, mean/std of the final epoch over the succeeded trials.
    let metrics = ["test_accuracy", "val_loss"];
    let act = sweep_msg
        .axes
        .iter()
        .position(|a| a.key == "activation")
        .unwrap();
    let mut expected: BTreeMap<String, Vec<[f64; 2]>> = BTreeMap::new();
    for index in 0..sweep_msg.trial_count {
        let d = client
            .get_trial(GetTrialRequest {
                sweep_id: id,
                index,
            })
            .await
            .unwrap()
            .into_inner();
        let t = d.trial.unwrap();
        assert_eq!(t.state(), TrialState::Succeeded);
        let last = d.epochs.last().unwrap();
        let label = sweep_msg.axes[act].labels[t.choice[act] as usize].clone();
        expected
            .entry(label)
            .or_default()
            .push([last.test_accuracy, last.val_loss]);
    }
    let check = |label: &str, metric: usize, mean: f64, std: f64, n: u64| {
        let xs: Vec<f64> = expected[label].iter().map(|v| v[metric]).collect();
        let (m, s) = mean_std(&xs);
        assert_eq!(n, xs.len() as u64, "{label}");
        assert!(close(mean, m), "{label} {}: {mean} vs {m}", metrics[metric]);
        assert!(close(std, s), "{label} {}: {std} vs {s}", metrics[metric]);
    };

    let args = |format: &str| {
        vec![
            "table".to_owned(),
            id.to_string(),
            "--by".into(),
            "activation".into(),
            "--metric".into(),
            "test_acc,val_loss".into(),
            "--format".into(),
            format.into(),
        ]
    };
    let run = |format: &str| {
        let a = args(format);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = sweep(&addr, &a);
        assert!(o.status.success(), "{o:?}");
        stdout(&o)
    };

    let csv = run("csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "activation,test_accuracy_mean,test_accuracy_std,test_accuracy_n,\
         val_loss_mean,val_loss_std,val_loss_n,diverged,failed,cancelled,unfinished"
    );
    let mut rows = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 11, "{line}");
        assert_eq!(f[7..], ["0", "0", "0", "0"], "{line}");
        let num = |i: usize| f[i].parse::<f64>().unwrap();
        check(f[0], 0, num(1), num(2), f[3].parse().unwrap());
        check(f[0], 1, num(4), num(5), f[6].parse().unwrap());
        rows += 1;
    }
    assert_eq!(rows, 2, "{csv}");

    let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(json["sweep_id"], id);
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let label = row["values"]["activation"].as_str().unwrap();
        assert_eq!(row["diverged"], 0);
        for (i, m) in metrics.iter().enumerate() {
            let s = &row["stats"][m];
            check(
                label,
                i,
                s["mean"].as_f64().unwrap(),
                s["std"].as_f64().unwrap(),
                s["count"].as_u64().unwrap(),
            );
        }
    }

    // The human formats show the same rows with the seed counts.
    let table = run("table");
    assert!(
        table.contains("sigmoid") && table.contains("relu"),
        "{table}"
    );
    assert!(table.contains("± ") && table.contains("(6)"), "{table}");
    let md = run("md");
    assert!(
        md.starts_with("| activation | test_accuracy | val_loss |"),
        "{md}"
    );

    // --sort orders the rows, highest accuracy first.
    let sorted = sweep(
        &addr,
        &[
            "table",
            &id.to_string(),
            "--by",
            "activation,batchnorm",
            "--metric",
            "test_acc",
            "--sort",
            "test_acc",
            "--format",
            "csv",
        ],
    );
    assert!(sorted.status.success(), "{sorted:?}");
    let means: Vec<f64> = stdout(&sorted)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(means.len(), 4);
    assert!(means.windows(2).all(|w| w[0] >= w[1]), "{means:?}");
    let line = one_line_error(&sweep(
        &addr,
        &[
            "table",
            &id.to_string(),
            "--metric",
            "test_acc",
            "--sort",
            "val_loss",
        ],
    ));
    assert!(line.contains("--sort"), "{line}");

    // An unknown axis is the coordinator's one line.
    let line = one_line_error(&sweep(&addr, &["table", &id.to_string(), "--by", "colour"]));
    assert!(line.contains("colour"), "{line}");
}

/// A deep sigmoid net: without batch norm its gradients vanish and it stays at chance;
/// with it, it learns. `eval_batch_size` changes nothing the metrics see.
const EFFECTS_SPEC: &str = r#"
name = "cli-effects"
dataset = "synthetic:glyphs-tiny"
epochs = 3
batch_size = 32
hidden = [32, 32, 32, 32, 32, 32]
activation = "sigmoid"
optimizer = { kind = "sgd", lr = 0.01, momentum = 0.0 }
seeds = [0, 1]
[grid]
eval_batch_size = [100, 1000]
batchnorm = [false, true]
[gradcheck]
layer = "none"
"#;

#[test]
fn effects_rank_the_dominant_factor_first() {
    let db = TempDir::new("effects");
    let (_coordinator, addr) = coordinator(&db.0.join("db"), "127.0.0.1:0", "5s");
    let spec = db.0.join("spec.toml");
    std::fs::write(&spec, EFFECTS_SPEC).unwrap();
    let _worker = worker(&addr, "cli-w", 1);
    // `submit --watch` returns when the sweep is finished.
    let o = sweep(&addr, &["submit", spec.to_str().unwrap(), "--watch"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let id = out
        .strip_prefix("submitted sweep ")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert!(
        out.contains(&format!("sweep {id} finished: 8 succeeded")),
        "{out}"
    );

    let o = sweep(&addr, &["table", &id, "--effects", "--format", "json"]);
    assert!(o.status.success(), "{o:?}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["metric"], "test_accuracy");
    let axes = json["axes"].as_array().unwrap();
    assert_eq!(axes.len(), 2);
    assert_eq!(axes[0]["axis"], "batchnorm", "{json}");
    assert_eq!(axes[0]["values"][0]["value"], "true", "{json}");
    let spread = axes[0]["spread"].as_f64().unwrap();
    let hi = axes[0]["values"][0]["mean"].as_f64().unwrap();
    let lo = axes[0]["values"][1]["mean"].as_f64().unwrap();
    assert!(spread > 0.0 && (spread - (hi - lo)).abs() < 1e-12, "{json}");
    assert!(axes[1]["spread"].as_f64().unwrap() < spread, "{json}");
    let text = stdout(&sweep(&addr, &["table", &id, "--effects"]));
    assert!(
        text.starts_with("effect of each axis on test_accuracy"),
        "{text}"
    );
}

#[test]
fn demo_runs_end_to_end_and_cleans_up() {
    let device = std::env::var("GRADSWEEP_E2E_DEVICE").unwrap_or_else(|_| "cpu".into());
    let child = Command::new(binary("sweep"))
        .args(["demo", "--workers", "2", "--device", &device])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sweep demo starts");
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        stderr(&o).contains("finished: 32 succeeded"),
        "{}",
        stderr(&o)
    );
    for part in [
        "activation  init       batchnorm  regularization  test_accuracy",
        "effect of each axis on test_accuracy",
        "Vanishing gradients",
        "activation=sigmoid init=default batchnorm=false regularization=none         2/2",
    ] {
        assert!(out.contains(part), "{part:?} missing:\n{out}");
    }
    // Batch norm is what matters most for this deep net.
    let first_axis = out
        .lines()
        .skip_while(|l| !l.starts_with("AXIS"))
        .nth(1)
        .unwrap();
    assert!(first_axis.starts_with("batchnorm"), "{out}");
    let db = std::env::temp_dir().join(format!("gradsweep-demo-{pid}"));
    assert!(!db.exists(), "{} left behind", db.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_workers_and_their_trials() {
    use gradsweep_proto::worker_service_client::WorkerServiceClient;
    let db = TempDir::new("status");
    let (_coordinator, addr) = coordinator(&db.0.join("db"), "127.0.0.1:0", "5s");
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/sweeps/activations.toml"
    );
    let o = sweep(&addr, &["submit", example]);
    assert!(o.status.success(), "{o:?}");
    // A hand-driven worker leases two trials.
    let mut workers = WorkerServiceClient::new(
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy(),
    );
    let me = workers
        .register(RegisterRequest {
            name: "by-hand".into(),
            device: "cpu-test".into(),
            slots: 2,
        })
        .await
        .unwrap()
        .into_inner();
    let leases = workers
        .lease(LeaseRequest {
            worker_id: me.worker_id,
            max_trials: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .leases;
    assert_eq!(leases.len(), 2);
    // The first sweep of a database is sweep 1.
    let status = stdout(&sweep(&addr, &["status", "1"]));
    let expected = format!(
        "worker by-hand (cpu-test) running 1/{}, 1/{}",
        leases[0].index, leases[1].index
    );
    assert!(status.contains(&expected), "{expected:?} not in {status}");
    assert!(status.contains("running    2"), "{status}");
}

/// A learning rate at which every trial diverges in its first epoch.
const DIVERGING_SPEC: &str = r#"
name = "cli-diverging"
dataset = "synthetic:glyphs-tiny"
epochs = 2
batch_size = 32
hidden = [16]
optimizer = { kind = "sgd", lr = 0.05, momentum = 0.0 }
seeds = [0, 1]
[grid]
activation = ["relu", "leaky_relu"]
optimizer.lr = [0.05, 1000000.0]
[gradcheck]
layer = "none"
"#;

#[test]
fn effects_rank_first_an_axis_whose_value_always_diverges() {
    let db = TempDir::new("effects-diverging");
    let (_coordinator, addr) = coordinator(&db.0.join("db"), "127.0.0.1:0", "5s");
    let spec = db.0.join("spec.toml");
    std::fs::write(&spec, DIVERGING_SPEC).unwrap();
    let _worker = worker(&addr, "cli-w", 2);
    let o = sweep(&addr, &["submit", spec.to_str().unwrap(), "--watch"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let id = out
        .strip_prefix("submitted sweep ")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert!(out.contains("4 succeeded, 4 diverged"), "{out}");

    let o = sweep(&addr, &["table", &id, "--effects", "--format", "json"]);
    assert!(o.status.success(), "{o:?}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let axes = json["axes"].as_array().unwrap();
    // The learning rate ranks first: all of its worst value's trials diverged.
    assert_eq!(axes[0]["axis"], "optimizer.lr", "{json}");
    assert_eq!(axes[0]["lost_fraction"], 1.0, "{json}");
    let values = axes[0]["values"].as_array().unwrap();
    assert_eq!(
        (values[0]["count"].as_u64(), values[0]["diverged"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(
        (values[1]["count"].as_u64(), values[1]["diverged"].as_u64()),
        (Some(0), Some(4))
    );
    assert!(
        values[1]["mean"].is_null() && values[1]["std"].is_null(),
        "{json}"
    );
    // Only one value has a mean: no spread.
    assert!(axes[0]["spread"].is_null(), "{json}");
    // The activation: each value has two succeeded and two diverged trials.
    assert_eq!(axes[1]["axis"], "activation");
    assert_eq!(axes[1]["lost_fraction"], 0.5, "{json}");
    for v in axes[1]["values"].as_array().unwrap() {
        assert_eq!(
            (v["count"].as_u64(), v["diverged"].as_u64()),
            (Some(2), Some(2)),
            "{json}"
        );
    }
    let text = stdout(&sweep(&addr, &["table", &id, "--effects"]));
    let first = text
        .lines()
        .skip_while(|l| !l.starts_with("AXIS"))
        .nth(1)
        .unwrap();
    assert!(
        first.starts_with("optimizer.lr") && first.contains("100% lost"),
        "{text}"
    );
    assert!(text.contains("4 diverged"), "{text}");
}
