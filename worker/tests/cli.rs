//! `worker train` as a user runs it: the real binary, real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(args)
        .env("GRADSWEEP_THREADS", "2")
        .output()
        .expect("worker starts")
}

fn write_trial(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gradsweep-cli-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bad_trial_files_get_one_line_errors_naming_the_key() {
    let dir = scratch("bad");
    let base = "dataset = \"synthetic:glyphs-tiny\"\n";
    let cases = [
        (
            "unknown-key.toml",
            format!("{base}activaton = \"relu\"\n"),
            "activaton: unknown key; expected one of",
        ),
        (
            "activation.toml",
            format!("{base}activation = \"relux\"\n"),
            "activation: unknown activation \"relux\"; expected one of sigmoid, tanh, relu, leaky_relu, elu",
        ),
        (
            "init.toml",
            format!("{base}init = \"glorot\"\n"),
            "init: unknown init \"glorot\"; expected one of default, xavier_uniform, xavier_normal, he_uniform, he_normal",
        ),
        (
            "zero-size.toml",
            format!("{base}hidden = [64, 0]\n"),
            "hidden[1]: must be a positive integer, got 0",
        ),
        (
            "negative-size.toml",
            format!("{base}hidden = [-3]\n"),
            "hidden[0]: must be a positive integer, got -3",
        ),
        (
            "zero-batch.toml",
            format!("{base}batch_size = 0\n"),
            "batch_size: must be a positive integer, got 0",
        ),
        (
            "dropout.toml",
            format!("{base}regularization = \"dropout:1.5\"\n"),
            "regularization: dropout probability 1.5 is outside [0, 1)",
        ),
        (
            "dropout-one.toml",
            format!("{base}regularization = \"l2:1e-4+dropout:1\"\n"),
            "regularization: dropout probability 1 is outside [0, 1)",
        ),
        (
            "val.toml",
            format!("{base}val_fraction = -0.1\n"),
            "val_fraction: must be in (0, 0.5], got -0.1",
        ),
    ];
    for (file, body, want) in cases {
        let path = write_trial(&dir, file, &body);
        let out = worker(&["train", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert!(out.stdout.is_empty(), "{file}: nothing on stdout");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{file}: one line, got {stderr:?}"
        );
        let expected = format!("error: {}: {want}", path.display());
        assert!(
            stderr.starts_with(&expected),
            "{file}:\n got  {stderr}\n want {expected}"
        );
    }
    let out = worker(&["train", dir.join("missing.toml").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("missing.toml") && stderr.lines().count() == 1,
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn train_prints_epochs_diagnostics_verdicts_and_gradcheck() {
    let dir = scratch("ok");
    let path = write_trial(
        &dir,
        "t.toml",
        "name = \"cli\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = 4\nhidden = [32, 16]\nbatchnorm = true\n[gradcheck]\nlayer = \"all\"\nsamples = 8\n",
    );
    let out = worker(&["train", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "trial \"cli\"",
        "train_loss",
        "test_acc",
        "per-layer diagnostics, epoch 4",
        "linear3",
        "stagnant loss",
        "vanishing gradients",
        "gradient check, epoch 0 (initial weights) (f64",
        "gradient check, trained (f64",
        "criterion: directional",
        "linear1.weight",
        "PASSED",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    // One line per epoch.
    let epoch_lines = stdout
        .lines()
        .filter(|l| {
            l.contains('%')
                && l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.parse::<u32>().is_ok())
        })
        .count();
    assert_eq!(epoch_lines, 4, "{stdout}");

    let out = worker(&["train", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(record["outcome"]["status"], "completed");
    assert_eq!(record["epochs"].as_array().unwrap().len(), 4);
    assert_eq!(record["epochs"][3]["layers"].as_array().unwrap().len(), 3);
    assert_eq!(record["gradcheck"]["passed"], true);
    assert_eq!(record["config"]["name"], "cli");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn help_teaches_the_train_command() {
    let out = worker(&["train", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("--json") && text.contains("examples/"),
        "{text}"
    );
}
