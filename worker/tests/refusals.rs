//! `worker train` refuses what cannot train before any work is spent: one line, exit 2,
//! never an abort — trials larger than the machine's memory, splits that cannot train
//! the trial, oversized trial files.

use std::path::PathBuf;
use std::process::{Command, Output};

fn scratch(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gradsweep-refusals-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn train(test: &str, body: &str) -> Output {
    let dir = scratch(test);
    let path = dir.join("t.toml");
    std::fs::write(&path, body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["train", path.to_str().unwrap(), "--device", "cpu"])
        .env("GRADSWEEP_THREADS", "1")
        .output()
        .expect("worker starts");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Asserts exit 2 and a single `error: …` line on stderr containing `want`.
fn refused(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(want), "expected {want:?} in {err}");
    assert!(out.stdout.is_empty(), "nothing trained or printed");
}

const TINY: &str = "dataset = \"synthetic:glyphs-tiny\"\nepochs = 1\n";

#[test]
fn a_trial_larger_than_memory_is_refused_with_the_estimate_and_what_is_available() {
    // 50 hidden layers of 20,000 units: about 2·10¹⁰ parameters, hundreds of GB.
    let hidden = vec!["20000"; 50].join(", ");
    let out = train("memory", &format!("{TINY}hidden = [{hidden}]\n"));
    refused(&out, "error: the trial needs about ");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gradient check's f64 copy of the model"),
        "{err}"
    );
    assert!(err.contains("are available (MemAvailable)"), "{err}");
}

#[test]
fn splits_that_cannot_train_the_trial_are_refused_naming_the_field() {
    refused(
        &train("no-train", &format!("{TINY}val_fraction = 0.9999\n")),
        "val_fraction = 0.9999 leaves 0 training images of 1,000",
    );
    refused(
        &train("no-val", &format!("{TINY}val_fraction = 0.0\n")),
        "val_fraction = 0 leaves 0 validation images of 1,000",
    );
    refused(
        &train("batch", &format!("{TINY}batch_size = 1000000000\n")),
        "batch_size = 1000000000 is larger than the training split (900 images",
    );
}

#[test]
fn a_huge_eval_batch_is_bounded_by_the_splits_and_trains() {
    let out = train(
        "eval-batch",
        &format!(
            "{TINY}hidden = [8]\neval_batch_size = 1000000000\n[gradcheck]\nlayer = \"none\"\n"
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_oversized_trial_file_is_refused_before_it_is_read() {
    let comment = format!("# {}\n", "x".repeat(2 << 20));
    let out = train("big-file", &format!("{TINY}hidden = [8]\n{comment}"));
    refused(&out, "a trial file may be at most 1048576 bytes");
}

#[test]
fn worker_bench_refuses_sizes_it_cannot_hold() {
    let bench = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_worker"))
            .args(["bench", "--device", "cpu", "--epochs", "1"])
            .args(args)
            .env("GRADSWEEP_THREADS", "1")
            .output()
            .expect("worker starts")
    };
    refused(
        &bench(&["--n", "100000000000000"]),
        "--n: 100000000000000 CIFAR-shaped samples need about ",
    );
    refused(
        &bench(&["--n", "1000", "--batch", "5000", "--cases", "relu"]),
        "--batch: batch_size = 5000 is larger than the training split (1,000 images",
    );
}
