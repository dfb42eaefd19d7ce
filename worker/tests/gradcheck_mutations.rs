//! The gradient check against wrong gradients that PyTorch's elementwise tolerance
//! (|a − n| ≤ 1e-5 + 1e-3·|n|) lets through where gradients are small: each mutation
//! below must fail the directional check, naming the tensor it broke; the right
//! gradient passes, untrained and trained, and the study's own check (the weights of
//! `linear5` in the deep net) runs by name and passes.

use gradsweep_kernels::CpuBackend;
use gradsweep_worker::check::{self, CheckBatch, GRADCHECK_ROWS};
use gradsweep_worker::config::{Activation, GradCheckConfig, GradCheckLayer, TrialConfig};
use gradsweep_worker::data::{self, Dataset};
use gradsweep_worker::model::Mlp;
use gradsweep_worker::report::GradCheckReport;
use gradsweep_worker::train::{architecture, initial_params};
use gradsweep_worker::trial;

fn data() -> Dataset {
    data::load("synthetic:glyphs-tiny", 0.1).expect("built-in data")
}

/// The deep net of the study: 8 hidden layers of 128.
fn deep(activation: Activation) -> TrialConfig {
    TrialConfig {
        dataset: "synthetic:glyphs-tiny".into(),
        hidden: vec![128; 8],
        activation,
        epochs: 2,
        batch_size: 64,
        gradcheck: GradCheckConfig {
            layer: GradCheckLayer::All,
            samples: 32,
        },
        ..TrialConfig::default()
    }
}

/// The untrained f64 model of `config` with its gradients on the check batch, after
/// `between` ran between forward and backward.
fn with_gradients(
    config: &TrialConfig,
    data: &Dataset,
    between: impl FnOnce(&mut Mlp<CpuBackend<f64>>),
) -> (Mlp<CpuBackend<f64>>, CheckBatch) {
    let cpu = CpuBackend::<f64>::new(1);
    let arch = architecture(config, data);
    let params = initial_params(config, &arch);
    let mut m = Mlp::new(&cpu, arch, &params, GRADCHECK_ROWS).unwrap();
    let batch = CheckBatch::new(config, data);
    batch.gradients_with(&cpu, &mut m, between).unwrap();
    (m, batch)
}

fn run_check(
    m: &mut Mlp<CpuBackend<f64>>,
    batch: &CheckBatch,
    layers: &[usize],
    name: &str,
) -> GradCheckReport {
    let cpu = CpuBackend::<f64>::new(1);
    let report = check::check_model(&cpu, m, batch, layers, 32, 0, name).unwrap();
    println!("{name}: passed = {}", report.passed);
    for l in &report.layers {
        for t in &l.tensors {
            println!(
                "  {:<16} rms {:.2e}  directional {:.2e} {}  elementwise {}",
                t.param,
                t.grad_rms,
                t.rel_error,
                if t.passed { "ok" } else { "FAIL" },
                if l.elementwise_passed { "ok" } else { "FAIL" }
            );
        }
    }
    for f in report.failures() {
        println!("  failed: {f}");
    }
    report
}

/// Asserts that the check failed, and that exactly `param` is among its failures.
fn assert_fails_at(report: &GradCheckReport, param: &str) {
    assert!(
        !report.passed,
        "{}: the mutation passed the check",
        report.stage
    );
    let failures = report.failures();
    assert!(
        failures.iter().any(|f| f.starts_with(&format!("{param}:"))),
        "{}: {param} not named among the failures {failures:?}",
        report.stage
    );
}

#[test]
fn the_right_gradient_passes_in_the_deep_sigmoid_net_where_pytorch_tolerance_is_blind() {
    let data = data();
    let config = deep(Activation::Sigmoid);
    let (mut m, batch) = with_gradients(&config, &data, |_| ());
    let report = run_check(
        &mut m,
        &batch,
        &(0..9).collect::<Vec<_>>(),
        "deep sigmoid, right",
    );
    assert!(report.passed, "{:?}", report.failures());
    // The premise: linear1's gradient is far below PyTorch's atol of 1e-5.
    let rms = report.layers[0].tensors[0].grad_rms;
    assert!(rms < 1e-6, "linear1 gradient RMS {rms:e}");
}

#[test]
fn linear1_gradient_doubled_fails() {
    let data = data();
    let (mut m, batch) = with_gradients(&deep(Activation::Sigmoid), &data, |_| ());
    m.layers[0].weight.grad.iter_mut().for_each(|g| *g *= 2.0);
    let report = run_check(&mut m, &batch, &[0], "mutation: linear1 gradient x2");
    assert_fails_at(&report, "linear1.weight");
    // PyTorch's elementwise test alone passes it: the premise of the mutation.
    assert!(report.layers[0].elementwise_passed);
    assert!((report.layers[0].tensors[0].rel_error - 0.5).abs() < 1e-3);
}

#[test]
fn linear1_gradient_zeroed_fails() {
    let data = data();
    let (mut m, batch) = with_gradients(&deep(Activation::Sigmoid), &data, |_| ());
    m.layers[0].weight.grad.iter_mut().for_each(|g| *g = 0.0);
    let report = run_check(&mut m, &batch, &[0], "mutation: linear1 gradient x0");
    assert_fails_at(&report, "linear1.weight");
    assert!(report.layers[0].elementwise_passed);
    assert!((report.layers[0].tensors[0].rel_error - 1.0).abs() < 1e-3);
}

#[test]
fn one_bias_entry_off_by_one_percent_fails() {
    let data = data();
    let (mut m, batch) = with_gradients(&deep(Activation::Sigmoid), &data, |_| ());
    // The output layer's bias: its largest entry, 1% off.
    let bias = &mut m.layers[8].bias.grad;
    let j = (0..bias.len())
        .max_by(|&a, &b| bias[a].abs().total_cmp(&bias[b].abs()))
        .unwrap();
    bias[j] *= 1.01;
    let report = run_check(&mut m, &batch, &[8], "mutation: linear9.bias entry +1%");
    assert_fails_at(&report, "linear9.bias");
    // The weight of the same layer is untouched and passes.
    assert!(report.layers[0].tensors[0].passed);
}

#[test]
fn batch_norm_gamma_gradient_dropped_fails() {
    let data = data();
    let mut config = deep(Activation::Sigmoid);
    config.batchnorm = true;
    let (mut m, batch) = with_gradients(&config, &data, |_| ());
    let right = run_check(&mut m, &batch, &[0, 3], "deep sigmoid + batch norm, right");
    assert!(right.passed, "{:?}", right.failures());
    for layer in &mut m.layers {
        if let Some(bn) = &mut layer.bn {
            bn.gamma.grad.iter_mut().for_each(|g| *g = 0.0);
        }
    }
    let report = run_check(
        &mut m,
        &batch,
        &[0, 3],
        "mutation: batch norm γ gradient dropped",
    );
    assert_fails_at(&report, "bn1.weight");
    assert_fails_at(&report, "bn4.weight");
}

#[test]
fn dropout_mask_forgotten_in_backward_fails() {
    let data = data();
    let mut config = deep(Activation::Relu);
    config.hidden = vec![64; 3];
    config.init = "he_normal".parse().unwrap();
    config.regularization = "dropout:0.3".parse().unwrap();
    let (mut m, batch) = with_gradients(&config, &data, |_| ());
    let right = run_check(&mut m, &batch, &[0, 1, 2, 3], "relu + dropout, right");
    assert!(right.passed, "{:?}", right.failures());
    let (mut m, batch) = with_gradients(&config, &data, |m| m.forget_dropout_masks());
    let report = run_check(
        &mut m,
        &batch,
        &[0, 1, 2, 3],
        "mutation: dropout mask forgotten",
    );
    assert_fails_at(&report, "linear1.weight");
}

#[test]
fn the_study_check_linear5_of_the_trained_deep_net_runs_by_name_and_passes() {
    let data = data();
    for activation in [Activation::Sigmoid, Activation::Relu] {
        let mut config = deep(activation);
        config.gradcheck.layer = "linear5".parse().unwrap();
        let cpu = CpuBackend::<f32>::new(2);
        let record = trial::run(&cpu, &config, &data, &mut |_| ()).unwrap();
        for report in [record.gradcheck_initial.unwrap(), record.gradcheck.unwrap()] {
            println!("{activation} {}: {:?}", report.stage, report.failures());
            assert_eq!(report.layers.len(), 1);
            assert_eq!(report.layers[0].layer, "linear5");
            let params: Vec<&str> = report.layers[0]
                .tensors
                .iter()
                .map(|t| t.param.as_str())
                .collect();
            assert_eq!(params, ["linear5.weight", "linear5.bias"]);
            assert!(
                report.passed,
                "{activation} {}: {:?}",
                report.stage,
                report.failures()
            );
        }
    }
}
