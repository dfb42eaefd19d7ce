//! The coordinator under the simulated workers of `simworkers` (`tests/src/bin/`), at a
//! small size, checking correctness only (never speed): the sweep's counts equal a
//! recount from GetTrial, GetTable and GetEffects equal a recomputation from GetTrial's
//! epochs, and every acknowledged epoch report is stored exactly once. The checks are
//! `simworkers --check`'s; this runs it on a fresh coordinator.

use std::process::Command;

fn simworkers(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_simworkers"))
        .args(args)
        .output()
        .expect("simworkers runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "simworkers {args:?} failed:\n{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn simulated_workers_leave_counts_tables_effects_and_reports_exact() {
    // 200 trials of 4 epochs on 12 workers of 3 slots: reports from several trials in
    // every ReportEpochs call, the elu trials diverging halfway.
    let out = simworkers(&[
        "--trials",
        "200",
        "--epochs",
        "4",
        "--workers",
        "12",
        "--slots",
        "3",
        "--check",
    ]);
    assert!(
        out.contains("check passed: 200 trials, 680 acknowledged reports stored once each"),
        "{out}"
    );
}

#[test]
fn one_slot_workers_give_the_same_answers() {
    let out = simworkers(&[
        "--trials",
        "30",
        "--epochs",
        "3",
        "--workers",
        "5",
        "--slots",
        "1",
        "--check",
    ]);
    assert!(out.contains("check passed: 30 trials"), "{out}");
}

#[test]
fn paced_workers_give_the_same_answers() {
    // 40 trials of 3 epochs (the 8 elu trials diverge in epoch 2) on 4 workers of 2
    // slots at 400 reports a second: each worker's calls 20 ms apart, the workers
    // staggered over one trial's length.
    let out = simworkers(&[
        "--trials",
        "40",
        "--epochs",
        "3",
        "--workers",
        "4",
        "--slots",
        "2",
        "--rate",
        "400",
        "--check",
    ]);
    assert!(
        out.contains("check passed: 40 trials, 104 acknowledged reports stored once each"),
        "{out}"
    );
}
