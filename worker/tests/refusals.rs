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
    train_with(test, body, &[])
}

fn train_with(test: &str, body: &str, env: &[(&str, &str)]) -> Output {
    let dir = scratch(test);
    let path = dir.join("t.toml");
    std::fs::write(&path, body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["train", path.to_str().unwrap(), "--device", "cpu"])
        .env("GRADSWEEP_THREADS", "1")
        .envs(env.iter().copied())
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
    // Within every spec limit, but about 1.6 GB of parameters, gradients, momentum and
    // the gradient check's f64 copy: more than the 256 MiB this worker may use.
    let body = format!("{TINY}hidden = [8192, 8192, 4096]\n");
    let out = train_with("memory", &body, &[("GRADSWEEP_MAX_MEMORY", "256M")]);
    refused(&out, "error: the trial needs about ");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gradient check's f64 copy of the model"),
        "{err}"
    );
    assert!(
        err.contains("are available (MemAvailable, at most --max-memory 268.4 MB)"),
        "{err}"
    );
    // The same trial under a generous cap is not refused for memory (it would train).
    let out = train_with(
        "memory-ok",
        &format!("{TINY}hidden = [64]\n[gradcheck]\nlayer = \"none\"\n"),
        &[("GRADSWEEP_MAX_MEMORY", "256M")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A malformed cap is one line naming the variable, before any work.
    let out = train_with("memory-bad", TINY, &[("GRADSWEEP_MAX_MEMORY", "lots")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--max-memory"), "{err}");
    assert!(
        err.contains("expected bytes, or a number with K, M, G or T"),
        "{err}"
    );
}

#[test]
fn splits_that_cannot_train_the_trial_are_refused_naming_the_field() {
    // glyphs-tiny has 1,000 training images: 0.0001 of them is none.
    refused(
        &train("no-val", &format!("{TINY}val_fraction = 0.0001\n")),
        "val_fraction = 0.0001 leaves 0 validation images of 1,000",
    );
    refused(
        &train("batch", &format!("{TINY}batch_size = 100000\n")),
        "batch_size = 100000 is larger than the training split (900 images",
    );
}

#[test]
fn a_huge_eval_batch_is_bounded_by_the_splits_and_trains() {
    let out = train(
        "eval-batch",
        &format!("{TINY}hidden = [8]\neval_batch_size = 1000000\n[gradcheck]\nlayer = \"none\"\n"),
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
    refused(&out, "the limit is 262144 (limits::MAX_TEXT_BYTES)");
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
