//! `sweep export` and `sweep trials` end to end: the real `sweep` binary against a real
//! `coordinator` and `worker serve`. Every exported value is checked against what
//! `GetTrial` answers (CSV parsed back with the csv crate, JSON lines with serde_json),
//! for a sweep with succeeded trials (one with an infinite validation loss), diverged
//! ones and failed ones; the filters, the refusals, the JSON formats, a closed pipe, and
//! (ignored, a benchmark) the export's peak memory against the sweep's size.

use gradsweep_proto::worker_service_client::WorkerServiceClient;
use gradsweep_proto::*;
use gradsweep_tests::{TempDir, binary, coordinator, sweeps_client, wait_finished, worker};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tonic::transport::Channel;

fn sweep(addr: &str, args: &[&str]) -> Output {
    Command::new(binary("sweep"))
        .args(args)
        .env("GRADSWEEP_COORDINATOR", addr)
        .output()
        .expect("sweep runs")
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Asserts `o` failed with exit 1 and one line on stderr; returns the line.
fn one_line_error(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8(o.stderr.clone()).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    err.trim_end().to_owned()
}

/// 2 datasets (one a directory that is not there: those trials fail) × 3 learning rates
/// (0.01 learns; 10 completes with an infinite validation loss at seed 0; 30 diverges
/// in epoch 2) × 2 seeds = 12 trials.
const SPEC: &str = r#"
name = "export-e2e"
epochs = 3
batch_size = 64
hidden = [16]
activation = "relu"
optimizer = { kind = "sgd", lr = 0.01, momentum = 0.9 }
seeds = [0, 1]
[grid]
dataset = ["synthetic:glyphs-tiny", "cifar10:/nonexistent/gradsweep-export"]
"optimizer.lr" = [0.01, 10, 30]
[gradcheck]
layer = "none"
"#;

/// The same number: equal, or both NaN.
fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// A CSV number: `NaN`, `inf`, `-inf` or a float; empty is None.
fn csv_num(s: &str) -> Option<f64> {
    if s.is_empty() {
        None
    } else {
        Some(s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}")))
    }
}

/// A JSON number; null stands for a non-finite one.
fn json_same(v: &serde_json::Value, x: f64) -> bool {
    match v.as_f64() {
        Some(y) => y == x,
        None => v.is_null() && !x.is_finite(),
    }
}

fn state_name(s: TrialState) -> &'static str {
    match s {
        TrialState::Unspecified | TrialState::Pending => "pending",
        TrialState::Leased => "running",
        TrialState::Succeeded => "succeeded",
        TrialState::Diverged => "diverged",
        TrialState::Failed => "failed",
        TrialState::Cancelled => "cancelled",
    }
}

fn epoch_numbers(e: &EpochReport) -> [(&'static str, f64); 8] {
    [
        ("train_loss", e.train_loss),
        ("train_accuracy", e.train_accuracy),
        ("val_loss", e.val_loss),
        ("val_accuracy", e.val_accuracy),
        ("test_loss", e.test_loss),
        ("test_accuracy", e.test_accuracy),
        ("penalty", e.penalty),
        ("seconds", e.seconds),
    ]
}

fn layer_numbers(l: &LayerDiagnostics) -> [(&'static str, f64); 6] {
    [
        ("weight_mean", l.weight_mean),
        ("weight_std", l.weight_std),
        ("grad_norm", l.grad_norm),
        ("grad_max_abs", l.grad_max_abs),
        ("update_ratio", l.update_ratio),
        ("change_since_start", l.change_since_start),
    ]
}

/// Parses CSV text into (header, rows as column → value).
fn parse_csv(text: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            header
                .iter()
                .cloned()
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect();
    (header, rows)
}

struct Trial {
    detail: TrialDetail,
    /// Axis key → label.
    values: BTreeMap<String, String>,
}

impl Trial {
    fn t(&self) -> &gradsweep_proto::Trial {
        self.detail.trial.as_ref().unwrap()
    }
}

/// The leading columns every row has: index, the axes, seed, state.
fn check_leading(row: &BTreeMap<String, String>, trials: &[Trial]) -> usize {
    let index: usize = row["index"].parse().unwrap();
    let trial = &trials[index];
    for (key, label) in &trial.values {
        assert_eq!(&row[key], label, "trial {index} axis {key}");
    }
    assert_eq!(row["seed"], trial.t().seed.to_string());
    assert_eq!(row["state"], state_name(trial.t().state()));
    index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_equal_what_get_trial_answers_and_trials_filter() {
    let db = TempDir::new("export");
    let (_coordinator, addr) = coordinator(&db.0.join("db"), "127.0.0.1:0", "5s");
    let spec = db.0.join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let out = ok(sweep(&addr, &["submit", spec.to_str().unwrap()]));
    assert!(out.contains("12 trials"), "{out}");
    let id: u64 = 1;
    let _worker = worker(&addr, "export-w", 2);
    let mut client = sweeps_client(&format!("http://{addr}"), None, None);
    let s = wait_finished(&mut client, id, Duration::from_secs(180)).await;
    let mut trials = Vec::new();
    for index in 0..s.trial_count {
        let detail = gradsweep_tests::trial(&mut client, id, index).await;
        let t = detail.trial.as_ref().unwrap();
        let values = s
            .axes
            .iter()
            .zip(&t.choice)
            .map(|(a, &c)| (a.key.clone(), a.labels[c as usize].clone()))
            .collect();
        trials.push(Trial { detail, values });
    }
    let count = |state: TrialState| trials.iter().filter(|t| t.t().state() == state).count();
    assert_eq!(count(TrialState::Failed), 6, "the missing dataset's trials");
    assert!(count(TrialState::Diverged) >= 1, "lr 30 diverges");
    assert!(
        trials
            .iter()
            .flat_map(|t| &t.detail.epochs)
            .any(|e| !e.val_loss.is_finite()),
        "lr 10 gives an infinite validation loss"
    );

    // Epochs, CSV to a file: every epoch of every trial, every number as stored.
    let file = db.0.join("epochs.csv");
    let note = ok(sweep(
        &addr,
        &[
            "export",
            "1",
            "--what",
            "epochs",
            "--format",
            "csv",
            "--out",
            file.to_str().unwrap(),
        ],
    ));
    let stored: usize = trials.iter().map(|t| t.detail.epochs.len()).sum();
    assert_eq!(
        note,
        format!(
            "wrote {stored} rows (12 trials of sweep 1) to {}\n",
            file.display()
        )
    );
    let (header, rows) = parse_csv(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(
        header,
        [
            "index",
            "dataset",
            "optimizer.lr",
            "seed",
            "state",
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "test_loss",
            "test_accuracy",
            "penalty",
            "seconds"
        ]
    );
    assert_eq!(rows.len(), stored);
    for row in &rows {
        let index = check_leading(row, &trials);
        let epoch: usize = row["epoch"].parse().unwrap();
        let e = &trials[index].detail.epochs[epoch - 1];
        for (name, x) in epoch_numbers(e) {
            let got = csv_num(&row[name]).unwrap();
            assert!(
                same(got, x),
                "trial {index} epoch {epoch} {name}: {got} vs {x}"
            );
        }
    }
    assert!(
        rows.iter().any(|r| r["val_loss"] == "inf"),
        "inf written as inf"
    );

    // Layers, CSV to stdout.
    let (header, rows) = parse_csv(&ok(sweep(
        &addr,
        &["export", "1", "--what", "layers", "--format", "csv"],
    )));
    assert_eq!(header[5..7], ["epoch", "layer"]);
    let layers: usize = trials
        .iter()
        .flat_map(|t| &t.detail.epochs)
        .map(|e| e.layers.len())
        .sum();
    assert!(layers > 0);
    assert_eq!(rows.len(), layers);
    for row in &rows {
        let index = check_leading(row, &trials);
        let epoch: usize = row["epoch"].parse().unwrap();
        let e = &trials[index].detail.epochs[epoch - 1];
        let l = e.layers.iter().find(|l| l.layer == row["layer"]).unwrap();
        for (name, x) in layer_numbers(l) {
            let got = csv_num(&row[name]).unwrap();
            assert!(
                same(got, x),
                "trial {index} {} {name}: {got} vs {x}",
                l.layer
            );
        }
        match l.dead_fraction {
            Some(d) => assert!(same(csv_num(&row["dead_fraction"]).unwrap(), d)),
            None => assert_eq!(row["dead_fraction"], ""),
        }
    }

    // Epochs as JSON lines: the same numbers, null where not finite.
    let jsonl = ok(sweep(
        &addr,
        &["export", "1", "--what", "epochs", "--format", "jsonl"],
    ));
    assert_eq!(jsonl.lines().count(), stored);
    for line in jsonl.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let index = v["index"].as_u64().unwrap() as usize;
        let epoch = v["epoch"].as_u64().unwrap() as usize;
        let e = &trials[index].detail.epochs[epoch - 1];
        for (name, x) in epoch_numbers(e) {
            assert!(json_same(&v[name], x), "{name}: {} vs {x}", v[name]);
        }
        assert_eq!(v["optimizer.lr"], trials[index].values["optimizer.lr"]);
    }

    // Trials, CSV and JSON lines: the final epoch, state, attempts, verdicts.
    let (_, rows) = parse_csv(&ok(sweep(
        &addr,
        &["export", "1", "--what", "trials", "--format", "csv"],
    )));
    assert_eq!(rows.len(), 12);
    let jsonl = ok(sweep(
        &addr,
        &["export", "1", "--what", "trials", "--format", "jsonl"],
    ));
    for (row, line) in rows.iter().zip(jsonl.lines()) {
        let index = check_leading(row, &trials);
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["index"], index);
        let trial = &trials[index];
        let t = trial.t();
        assert_eq!(row["failures"], t.failures.to_string());
        assert_eq!(v["failures"], t.failures);
        assert_eq!(row["epochs_done"], trial.detail.epochs.len().to_string());
        let flagged: Vec<String> = t
            .result
            .iter()
            .flat_map(|r| &r.verdicts)
            .filter(|v| v.flagged)
            .map(|v| v.name.clone())
            .collect();
        assert_eq!(row["flagged"], flagged.join(";"));
        assert_eq!(v["flagged"], serde_json::json!(flagged));
        match trial.detail.epochs.last() {
            Some(e) => {
                for (name, x) in &epoch_numbers(e)[..7] {
                    assert!(same(csv_num(&row[*name]).unwrap(), *x), "{name}");
                    assert!(json_same(&v[*name], *x), "{name}");
                }
            }
            None => {
                assert_eq!(row["train_loss"], "");
                assert!(v["train_loss"].is_null());
            }
        }
        if t.state() == TrialState::Failed {
            assert!(
                row["error"].contains("gradsweep-export"),
                "{}",
                row["error"]
            );
        }
    }

    // `sweep trials`: --state and --where select exactly the matching trials.
    let lr30 = &s.axes[1].labels[2];
    let tiny = &s.axes[0].labels[0];
    let selected = |args: &[&str]| -> Vec<usize> {
        let mut a = vec!["trials", "1", "--format", "csv"];
        a.extend_from_slice(args);
        parse_csv(&ok(sweep(&addr, &a)))
            .1
            .iter()
            .map(|r| r["index"].parse().unwrap())
            .collect()
    };
    let expected = |keep: &dyn Fn(&Trial) -> bool| -> Vec<usize> {
        (0..trials.len()).filter(|&i| keep(&trials[i])).collect()
    };
    assert_eq!(
        selected(&["--state", "failed"]),
        expected(&|t| t.t().state() == TrialState::Failed)
    );
    assert_eq!(
        selected(&["--state", "diverged,succeeded"]),
        expected(&|t| matches!(t.t().state(), TrialState::Diverged | TrialState::Succeeded))
    );
    let w_lr = format!("optimizer.lr={lr30}");
    let w_data = format!("dataset={tiny}");
    assert_eq!(
        selected(&["--where", &w_lr, "--where", &w_data]),
        expected(&|t| &t.values["optimizer.lr"] == lr30 && &t.values["dataset"] == tiny)
    );
    assert_eq!(
        selected(&["--where", &w_lr, "--state", "failed", "--state", "pending"]),
        expected(&|t| &t.values["optimizer.lr"] == lr30 && t.t().state() == TrialState::Failed)
    );
    // The table: one line per trial with its values, state, worker and flags.
    let table = ok(sweep(&addr, &["trials", "1", "--where", &w_data]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().take(3).collect::<Vec<_>>(),
        ["#", "dataset", "optimizer.lr"],
        "{table}"
    );
    assert!(
        lines[0].contains("optimizer.lr") && lines[0].contains("flagged"),
        "{table}"
    );
    assert_eq!(lines.len(), 1 + 6 + 1, "{table}");
    assert!(
        table.contains("export-w") && table.contains("diverged@"),
        "{table}"
    );
    assert!(lines[7].starts_with("6 of 12 trials"), "{table}");
    // --format json parses, with the export's keys.
    let doc: serde_json::Value =
        serde_json::from_str(&ok(sweep(&addr, &["trials", "1", "--format", "json"]))).unwrap();
    assert_eq!(doc.as_array().unwrap().len(), 12);
    assert_eq!(doc[3]["index"], 3);
    assert_eq!(doc[3]["dataset"], trials[3].values["dataset"]);

    // Bad selections: one line naming the valid ones, exit 1, no file left.
    let line = one_line_error(&sweep(
        &addr,
        &["trials", "1", "--where", "activation=relu"],
    ));
    assert!(line.contains("its axes: dataset, optimizer.lr"), "{line}");
    let line = one_line_error(&sweep(&addr, &["trials", "1", "--where", "optimizer.lr=3"]));
    assert!(
        line.contains(&format!("its values: {}", s.axes[1].labels.join(", "))),
        "{line}"
    );
    let line = one_line_error(&sweep(&addr, &["trials", "1", "--where", "lr"]));
    assert!(
        line.contains("--where") && line.contains("key=value"),
        "{line}"
    );
    let line = one_line_error(&sweep(&addr, &["trials", "1", "--state", "done"]));
    assert!(
        line.contains("--state \"done\"") && line.contains("diverged"),
        "{line}"
    );
    let line = one_line_error(&sweep(&addr, &["trials", "1", "--format", "xml"]));
    assert!(line.contains("--format"), "{line}");
    let line = one_line_error(&sweep(&addr, &["export", "1", "--what", "weights"]));
    assert!(line.contains("--what \"weights\""), "{line}");
    let line = one_line_error(&sweep(&addr, &["export", "1", "--format", "parquet"]));
    assert!(line.contains("csv or jsonl"), "{line}");
    let missing = db.0.join("missing.csv");
    let line = one_line_error(&sweep(
        &addr,
        &["export", "77", "--out", missing.to_str().unwrap()],
    ));
    assert!(line.contains("77"), "{line}");
    let line = one_line_error(&sweep(
        &addr,
        &["export", "1", "--out", "/nonexistent/dir/x.csv"],
    ));
    assert!(line.contains("--out /nonexistent/dir/x.csv"), "{line}");
    let left: Vec<String> = std::fs::read_dir(&db.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial") || n == "missing.csv")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // --format json of ls, status and trial parses, numbers as numbers.
    let ls: serde_json::Value =
        serde_json::from_str(&ok(sweep(&addr, &["ls", "--format", "json"]))).unwrap();
    assert_eq!(ls["sweeps"][0]["id"], 1);
    assert_eq!(ls["sweeps"][0]["counts"]["failed"], 6);
    assert_eq!(ls["sweeps"][0]["trial_count"], 12);
    let status: serde_json::Value =
        serde_json::from_str(&ok(sweep(&addr, &["status", "1", "--format", "json"]))).unwrap();
    assert_eq!(status["state"], "finished");
    assert_eq!(status["axes"][1]["key"], "optimizer.lr");
    assert!(status["eta_seconds"].is_null());
    assert_eq!(status["running"], serde_json::json!([]));
    for trial in &trials {
        let index = trial.t().index;
        let doc: serde_json::Value = serde_json::from_str(&ok(sweep(
            &addr,
            &["trial", &format!("1/{index}"), "--format", "json"],
        )))
        .unwrap();
        assert_eq!(doc["index"], index);
        assert_eq!(doc["state"], state_name(trial.t().state()));
        assert_eq!(doc["values"]["dataset"], trial.values["dataset"]);
        assert_eq!(doc["failures"], trial.t().failures);
        let epochs = doc["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), trial.detail.epochs.len());
        for (j, e) in epochs.iter().zip(&trial.detail.epochs) {
            for (name, x) in epoch_numbers(e) {
                assert!(json_same(&j[name], x), "{name}");
            }
            for (jl, l) in j["layers"].as_array().unwrap().iter().zip(&e.layers) {
                for (name, x) in layer_numbers(l) {
                    assert!(json_same(&jl[name], x), "{name}");
                }
            }
        }
        match trial.t().state() {
            TrialState::Failed => {
                assert!(doc["result"].is_null());
                assert_eq!(doc["history"].as_array().unwrap().len(), 3);
            }
            TrialState::Diverged => assert_eq!(doc["result"]["outcome"], "diverged"),
            _ => assert_eq!(doc["result"]["outcome"], "completed"),
        }
    }
}

/// `worker train` and `sweep trial` print the same trial the same way: the epoch table,
/// the outcome, the per-layer diagnostics, the verdicts and the gradient checks (times
/// masked: the two runs take different times; `worker train`'s worst-entry lines are
/// its own, the wire types do not carry them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_train_and_sweep_trial_render_a_trial_alike() {
    let db = TempDir::new("render");
    let (_coordinator, addr) = coordinator(&db.0.join("db"), "127.0.0.1:0", "5s");
    let body = "name = \"alike\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = 3\nbatch_size = 64\nhidden = [16, 8]\nactivation = \"relu\"\nseed = 3\n[gradcheck]\nlayer = \"all\"\nsamples = 8\n";
    let trial = db.0.join("trial.toml");
    std::fs::write(&trial, body).unwrap();
    let spec = db.0.join("spec.toml");
    std::fs::write(&spec, body.replace("seed = 3\n", "seeds = [3]\n")).unwrap();
    ok(sweep(&addr, &["submit", spec.to_str().unwrap()]));
    let _worker = worker(&addr, "alike-w", 1);
    let mut client = sweeps_client(&format!("http://{addr}"), None, None);
    let s = wait_finished(&mut client, 1, Duration::from_secs(120)).await;
    assert_eq!(s.counts.unwrap().succeeded, 1);
    let local = Command::new(binary("worker"))
        .args(["train", "--device", "cpu", "--threads", "2"])
        .arg(&trial)
        .output()
        .unwrap();
    let local = ok(local);
    let stored = ok(sweep(&addr, &["trial", "1/0"]));
    // Seconds differ between two runs; everything else must not.
    let mask = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with("worst:"))
            .map(|l| {
                l.split(' ')
                    .map(|w| {
                        let t = w.strip_suffix('s').unwrap_or("");
                        if !t.is_empty() && t.parse::<f64>().is_ok() {
                            "<t>s"
                        } else {
                            w
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    let from = |text: &str| -> Vec<String> {
        let lines = mask(text);
        let start = lines
            .iter()
            .position(|l| l.trim_start().starts_with("epoch  train_loss"))
            .unwrap_or_else(|| panic!("no epoch table in\n{text}"));
        lines[start..].to_vec()
    };
    let (a, b) = (from(&local), from(&stored));
    assert!(a.len() > 20, "{local}");
    assert_eq!(a, b, "worker train:\n{local}\nsweep trial:\n{stored}");
    for part in [
        "per-layer diagnostics, epoch 3",
        "max|g|",
        "dead relu",
        "gradient check, trained (f64",
        "pass when |a − n| ≤",
        "%",
    ] {
        assert!(stored.contains(part), "{part:?} missing in\n{stored}");
    }
}

/// A closed pipe (`sweep export … | head -1`) ends the export quietly, status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_a_long_export_quietly() {
    let db = TempDir::new("pipe");
    let (_coordinator, addr) = coordinator(&db.0.join("db"), "127.0.0.1:0", "30s");
    populate(&addr, 600).await;
    let mut child = Command::new(binary("sweep"))
        .args(["export", "1", "--what", "layers", "--format", "jsonl"])
        .env("GRADSWEEP_COORDINATOR", &addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("{\"index\":0,"), "{first}");
    // The reader is gone: 600 trials × 2 epochs × 2 layers is far more than a pipe holds.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// Fills a fresh coordinator with sweep 1 of `trials` trials (2 activations), every one
/// completed by a hand-driven worker with 2 epochs of 2 layers each.
async fn populate(addr: &str, trials: u32) {
    let seeds: Vec<String> = (0..trials / 2).map(|s| s.to_string()).collect();
    let spec = format!(
        "name = \"big\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = 2\nhidden = [16]\nseeds = [{}]\n[grid]\nactivation = [\"relu\", \"tanh\"]\n",
        seeds.join(", ")
    );
    let mut sweeps = sweeps_client(&format!("http://{addr}"), None, None);
    let s = gradsweep_tests::submit(&mut sweeps, &spec).await;
    assert_eq!(s.trial_count, trials);
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut workers = WorkerServiceClient::new(channel);
    let w = workers
        .register(RegisterRequest {
            name: "filler".into(),
            device: "cpu".into(),
            slots: 1024,
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let mut done = 0;
    while done < trials {
        let leases = workers
            .lease(LeaseRequest {
                worker_id: w,
                max_trials: 1024,
            })
            .await
            .unwrap()
            .into_inner()
            .leases;
        assert!(!leases.is_empty(), "{done} of {trials} done, none to lease");
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in leases.chunks(leases.len().div_ceil(32)) {
            let chunk = chunk.to_vec();
            let mut workers = workers.clone();
            tasks.spawn(async move {
                for l in chunk {
                    let lease = LeaseRef {
                        sweep_id: l.sweep_id,
                        index: l.index,
                        lease_id: l.lease_id,
                        worker_id: w,
                    };
                    for epoch in 1..=2u32 {
                        let x = f64::from(l.index) + f64::from(epoch) / 10.0;
                        let layer = |name: &str| LayerDiagnostics {
                            layer: name.into(),
                            weight_mean: x * 1e-3,
                            weight_std: 0.1,
                            grad_norm: x * 1e-4,
                            grad_max_abs: x * 2e-4,
                            update_ratio: 1e-3,
                            change_since_start: 1e-2,
                            dead_fraction: Some(0.5),
                        };
                        workers
                            .report_epoch(ReportEpochRequest {
                                lease: Some(lease),
                                report: Some(EpochReport {
                                    epoch,
                                    train_loss: 1.0 / x,
                                    train_accuracy: 0.5,
                                    val_loss: 1.1 / x,
                                    val_accuracy: 0.4,
                                    test_loss: 1.2 / x,
                                    test_accuracy: 0.3,
                                    penalty: 0.0,
                                    seconds: 0.01,
                                    layers: vec![layer("linear1"), layer("linear2")],
                                }),
                            })
                            .await
                            .unwrap();
                    }
                    workers
                        .complete(CompleteRequest {
                            lease: Some(lease),
                            result: Some(TrialResult {
                                outcome: Some(Outcome {
                                    kind: Some(outcome::Kind::Completed(Completed {})),
                                }),
                                dataset_fingerprint: "fp".into(),
                                worker_name: "filler".into(),
                                device: "cpu".into(),
                                epochs: 2,
                                seconds: 0.02,
                                ..TrialResult::default()
                            }),
                        })
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        done += leases.len() as u32;
    }
}

/// Runs `sweep <args>` with stdout to /dev/null; its peak resident memory in KiB.
// The child is reaped by `wait4` (which also reports its rusage), not `Child::wait`.
#[allow(clippy::zombie_processes)]
fn peak_rss_kib(addr: &str, args: &[&str]) -> i64 {
    let child = Command::new(binary("sweep"))
        .args(args)
        .env("GRADSWEEP_COORDINATOR", addr)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals above.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    usage.ru_maxrss
}

fn write_out(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_owned()
}

/// The benchmark: peak RSS of `sweep export` for 2,000 and 20,000 trials (a flat
/// memory means it streams). Run it with
/// `cargo test --release -p gradsweep-tests --test export -- --ignored --nocapture`.
/// Filling takes minutes for 20,000 trials (2 cores): every `Complete` answer reads the
/// sweep's counts, which costs a pass over its trials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: populates 22,000 trials"]
async fn export_memory_is_flat_in_the_number_of_trials() {
    for trials in [2_000u32, 20_000] {
        let db = TempDir::new(&format!("mem-{trials}"));
        let (_coordinator, addr) = coordinator(&db.0.join("db"), "127.0.0.1:0", "300s");
        let started = std::time::Instant::now();
        populate(&addr, trials).await;
        let filled = started.elapsed();
        for (what, format) in [("layers", "csv"), ("epochs", "jsonl"), ("trials", "csv")] {
            let out = write_out(&db.0, &format!("{what}.{format}"));
            let started = std::time::Instant::now();
            let kib = peak_rss_kib(
                &addr,
                &[
                    "export", "1", "--what", what, "--format", format, "--out", &out,
                ],
            );
            let bytes = std::fs::metadata(&out).unwrap().len();
            println!(
                "{trials} trials (filled in {:.1}s): export --what {what} --format {format}: \
                 peak RSS {:.1} MiB, {:.1} MiB written in {:.2}s",
                filled.as_secs_f64(),
                kib as f64 / 1024.0,
                bytes as f64 / (1 << 20) as f64,
                started.elapsed().as_secs_f64()
            );
        }
    }
}
