//! Training on the built-in dataset: determinism, the vanishing-gradient findings, and
//! divergence handled as a result.

use gradsweep_kernels::CpuBackend;
use gradsweep_worker::config::TrialConfig;
use gradsweep_worker::report::Outcome;
use gradsweep_worker::trial::{self, TrialRecord};

fn run(toml: &str) -> TrialRecord {
    let config = TrialConfig::from_toml_str(toml).expect("valid trial");
    let data = trial::load_data(&config).expect("data loads");
    trial::run(&CpuBackend::<f32>::new(2), &config, &data, &mut |_| {}).expect("trial runs")
}

#[test]
fn same_trial_and_seed_give_identical_metrics() {
    let toml = r#"
        dataset = "synthetic:glyphs-tiny"
        epochs = 3
        batch_size = 32
        seed = 11
        hidden = [96, 64]
        activation = "elu"
        batchnorm = true
        regularization = "l1:1e-5+dropout:0.2"
        optimizer = { kind = "adam", lr = 1e-3 }
        [gradcheck]
        layer = "linear2"
        samples = 16
    "#;
    let a = run(toml);
    let b = run(toml);
    assert_eq!(a.epochs.len(), 3);
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        let strip = |r: &gradsweep_worker::report::EpochReport| {
            let mut r = r.clone();
            r.seconds = 0.0;
            r.train_seconds = 0.0;
            r
        };
        assert_eq!(strip(x), strip(y), "epoch {} differs between runs", x.epoch);
    }
    assert_eq!(a.gradcheck, b.gradcheck);
    // A different seed is a different trial.
    let c = run(&toml.replace("seed = 11", "seed = 12"));
    assert_ne!(a.epochs[0].train_loss, c.epochs[0].train_loss);
}

const DEEP: &str = r#"
    dataset = "synthetic:glyphs"
    epochs = 8
    batch_size = 64
    hidden = [128, 128, 128, 128, 128, 128, 128, 128]
    activation = "sigmoid"
    init = "default"
    batchnorm = false
    optimizer = { kind = "sgd", lr = 0.01, momentum = 0.0 }
    [gradcheck]
    layer = "linear1"
    samples = 16
"#;

#[test]
fn deep_sigmoid_vanishes_and_batchnorm_or_relu_he_cure_it() {
    let sigmoid = run(DEEP);
    let bn = run(&DEEP.replace("batchnorm = false", "batchnorm = true"));
    let relu = run(&DEEP
        .replace("\"sigmoid\"", "\"relu\"")
        .replace("\"default\"", "\"he_normal\""));
    for r in [&sigmoid, &bn, &relu] {
        assert_eq!(r.outcome, Outcome::Completed);
        assert!(r.gradcheck.as_ref().is_some_and(|g| g.passed));
    }
    assert!(
        sigmoid.verdicts.vanishing_gradients.flagged,
        "{:?}",
        sigmoid.verdicts
    );
    assert!(
        sigmoid.verdicts.stagnant_loss.flagged,
        "{:?}",
        sigmoid.verdicts
    );
    let acc = |r: &TrialRecord| r.epochs.last().unwrap().test_acc;
    assert!(
        acc(&sigmoid) < 0.2,
        "deep sigmoid learned: {}",
        acc(&sigmoid)
    );
    for (name, cured) in [("batch norm", &bn), ("relu + he", &relu)] {
        assert!(
            !cured.verdicts.vanishing_gradients.flagged,
            "{name}: {:?}",
            cured.verdicts
        );
        assert!(
            !cured.verdicts.stagnant_loss.flagged,
            "{name}: {:?}",
            cured.verdicts
        );
        assert!(
            acc(cured) > acc(&sigmoid) + 0.3,
            "{name}: test accuracy {} vs deep sigmoid {}",
            acc(cured),
            acc(&sigmoid)
        );
    }
    // The diagnostics show where the gradient dies: each layer's gradient norm is
    // smaller than the next one's.
    let last = sigmoid.epochs.last().unwrap();
    for pair in last.layers.windows(2) {
        assert!(
            pair[0].grad_norm < pair[1].grad_norm,
            "{} vs {}",
            pair[0].layer,
            pair[1].layer
        );
    }
}

#[test]
fn a_diverging_trial_ends_as_diverged_without_panicking() {
    let r = run(r#"
        dataset = "synthetic:glyphs-tiny"
        epochs = 5
        hidden = [64]
        optimizer = { kind = "sgd", lr = 1e3, momentum = 0.9 }
    "#);
    let Outcome::Diverged { epoch } = r.outcome else {
        panic!("expected divergence, got {:?}", r.outcome);
    };
    assert!((1..=5).contains(&epoch));
    assert_eq!(
        r.epochs.len(),
        epoch as usize - 1,
        "epochs before the divergence are kept"
    );
    assert!(r.gradcheck.is_none());
    assert!(
        r.gradcheck_skipped
            .as_deref()
            .is_some_and(|s| s.contains("diverged"))
    );
    // The record serialises (no NaN reaches JSON).
    serde_json::to_string(&r).expect("record serialises");
}

#[test]
fn every_example_trial_file_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            TrialConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn an_overparameterised_net_overfits_and_l2_narrows_the_loss_gap() {
    let base = r#"
        dataset = "synthetic:glyphs-small"
        epochs = 15
        batch_size = 32
        hidden = [512, 512]
        activation = "relu"
        init = "he_normal"
        regularization = "none"
        optimizer = { kind = "adam", lr = 1e-3 }
        [gradcheck]
        layer = "none"
    "#;
    let plain = run(base);
    let l2 = run(&base.replace(
        "\"none\"\n        optimizer",
        "\"l2:1e-2\"\n        optimizer",
    ));
    assert_eq!(l2.config.regularization.l2, Some(1e-2));
    let last = |r: &TrialRecord| r.epochs.last().unwrap().clone();
    let (p, r) = (last(&plain), last(&l2));
    assert!(
        p.train_acc > 0.99,
        "memorises the training set: {}",
        p.train_acc
    );
    assert!(
        p.train_acc - p.test_acc > 0.2,
        "overfits: train {} test {}",
        p.train_acc,
        p.test_acc
    );
    let gap = |e: &gradsweep_worker::report::EpochReport| e.test_loss - e.train_loss;
    assert!(
        gap(&r) < gap(&p) - 0.1,
        "l2 narrows the loss gap: {} vs {}",
        gap(&r),
        gap(&p)
    );
    assert!(r.penalty > 0.0 && p.penalty == 0.0);
}
