//! Whole-network gradient checks in f64: every activation × batch norm × dropout (masks
//! held fixed) × L1/L2, every entry of every layer — and a corrupted gradient is caught.

use gradsweep_kernels::CpuBackend;
use gradsweep_worker::check::{self, CheckBatch};
use gradsweep_worker::config::Activation;
use gradsweep_worker::config::{
    GradCheckConfig, GradCheckLayer, Init, Regularization, TrialConfig,
};
use gradsweep_worker::data::{Dataset, ImageShape, Split};
use gradsweep_worker::model::{Mlp, pytorch_index};
use gradsweep_worker::train::{architecture, initial_params};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A small random dataset: 2×2×3 images (two channels, 12 features), three classes.
fn tiny_data() -> Dataset {
    let shape = ImageShape {
        channels: 2,
        height: 2,
        width: 3,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let split = |n: usize, rng: &mut ChaCha8Rng| Split {
        images: (0..n * shape.features()).map(|_| rng.random()).collect(),
        labels: (0..n).map(|i| (i % 3) as u8).collect(),
    };
    let pool = split(40, &mut rng);
    let test = split(10, &mut rng);
    Dataset::from_pool("test:tiny", shape, 3, pool, test, 0.25)
}

fn config(activation: Activation, batchnorm: bool, regularization: Regularization) -> TrialConfig {
    TrialConfig {
        hidden: vec![5, 4],
        activation,
        // PyTorch's default init draws non-zero biases: with zero biases a unit whose
        // inputs are all dropped sits exactly on ReLU's kink, where no derivative exists.
        init: Init::Default,
        batchnorm,
        regularization,
        gradcheck: GradCheckConfig {
            layer: GradCheckLayer::All,
            samples: 10_000,
        },
        ..TrialConfig::default()
    }
}

fn model(config: &TrialConfig, data: &Dataset) -> Mlp<CpuBackend<f64>> {
    let arch = architecture(config, data);
    let params = initial_params(config, &arch);
    Mlp::new(&CpuBackend::new(1), arch, &params, 8).expect("model builds")
}

#[test]
fn every_block_combination_passes_in_f64() {
    let data = tiny_data();
    let cpu = CpuBackend::<f64>::new(1);
    let regs = [
        Regularization::default(),
        "l1:1e-2".parse().unwrap(),
        "l2:1e-2".parse().unwrap(),
    ];
    let mut checked = 0;
    for activation in Activation::ALL {
        for batchnorm in [false, true] {
            for dropout in [None, Some(0.3)] {
                for reg in &regs {
                    let mut reg = *reg;
                    reg.dropout = dropout;
                    let config = config(activation, batchnorm, reg);
                    let mut m = model(&config, &data);
                    let report = check::check_trial(&cpu, &mut m, &config, &data)
                        .expect("check runs")
                        .expect("check is on");
                    for layer in &report.layers {
                        assert!(
                            layer.passed,
                            "{activation} bn={batchnorm} reg={reg}: {} failed: {:?}",
                            layer.layer, layer.worst
                        );
                    }
                    // Every weight and bias entry of all three layers.
                    let total: usize = [12 * 5 + 5, 5 * 4 + 4, 4 * 3 + 3].iter().sum();
                    assert_eq!(
                        report.layers.iter().map(|l| l.checked).sum::<usize>(),
                        total
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 5 * 2 * 2 * 3);
}

#[test]
fn dropout_masks_really_drop_units_in_the_checked_network() {
    // Guard against a check that passes only because dropout was silently off: with
    // fixed masks the loss differs from the loss without dropout.
    let data = tiny_data();
    let cpu = CpuBackend::<f64>::new(1);
    let mut with = config(Activation::Tanh, false, "dropout:0.5".parse().unwrap());
    with.seed = 3;
    let mut without = with.clone();
    without.regularization = Regularization::default();
    let batch = CheckBatch::new(&with, &data);
    let mut m_with = model(&with, &data);
    m_with.draw_masks(&cpu, 8, 3, 0).unwrap();
    let mut m_without = model(&without, &data);
    let a = batch.loss(&cpu, &mut m_with).unwrap();
    let b = batch.loss(&cpu, &mut m_without).unwrap();
    assert!((a - b).abs() > 1e-6, "dropout changed nothing: {a} vs {b}");
}

#[test]
fn a_corrupted_gradient_is_reported_with_its_entry() {
    let data = tiny_data();
    let cpu = CpuBackend::<f64>::new(1);
    let config = config(Activation::Sigmoid, true, "l2:1e-3".parse().unwrap());
    let mut m = model(&config, &data);
    let batch = CheckBatch::new(&config, &data);
    batch.gradients(&cpu, &mut m).unwrap();
    // A backward pass with a bug in one entry of linear2's weight gradient (held as
    // Wᵀ: stored entry 7 of the 5×4 Wᵀ is W[3, 1], PyTorch's flat index 3·5 + 1).
    m.layers[1].weight.grad[7] += 1e-3;
    assert_eq!(pytorch_index(7, 5, 4), 16);
    let report = check::check_layer(&cpu, &mut m, &batch, 1, 10_000, 0).unwrap();
    assert!(!report.passed);
    let (param, entry) = report.worst.expect("the failing entry is reported");
    assert_eq!(param, "linear2.weight");
    assert_eq!(entry.index, 16);
    assert!(report.max_abs_error > 5e-4);
    // The other layers are untouched and still pass.
    let ok = check::check_layer(&cpu, &mut m, &batch, 0, 10_000, 0).unwrap();
    assert!(ok.passed, "{ok:?}");
}
