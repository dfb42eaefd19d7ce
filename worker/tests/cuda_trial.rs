//! A whole trial on the GPU against the same trial on the CPU: the per-epoch losses
//! agree within 1e-3 relative for 3 epochs (no dropout), and the GPU's own f32 gradient
//! passes the gradient check. On a machine without a GPU this prints why it was
//! skipped — and fails instead when `GRADSWEEP_REQUIRE_CUDA=1`.

use gradsweep_kernels::{CpuBackend, CudaBackend, cuda};
use gradsweep_worker::config::TrialConfig;
use gradsweep_worker::report::Outcome;
use gradsweep_worker::trial::{self, TrialRecord};

fn gpu() -> Option<CudaBackend> {
    match cuda::available().and_then(|_| CudaBackend::new(0)) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            if std::env::var("GRADSWEEP_REQUIRE_CUDA").is_ok_and(|v| v == "1") {
                panic!("GRADSWEEP_REQUIRE_CUDA=1 but CUDA is not usable: {e}");
            }
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

fn compare(toml: &str) {
    let Some(gpu) = gpu() else { return };
    let config = TrialConfig::from_toml_str(toml).unwrap();
    let data = trial::load_data(&config).unwrap();
    let on_cpu: TrialRecord =
        trial::run(&CpuBackend::<f32>::new(2), &config, &data, &mut |_| {}).unwrap();
    let on_gpu: TrialRecord = trial::run(&gpu, &config, &data, &mut |_| {}).unwrap();
    assert_eq!(on_gpu.outcome, Outcome::Completed);
    assert!(on_gpu.device.starts_with("cuda:0"), "{}", on_gpu.device);
    assert_eq!(on_cpu.epochs.len(), on_gpu.epochs.len());
    for (c, g) in on_cpu.epochs.iter().zip(&on_gpu.epochs) {
        for (what, a, b) in [
            ("train_loss", g.train_loss, c.train_loss),
            ("val_loss", g.val_loss, c.val_loss),
            ("test_loss", g.test_loss, c.test_loss),
        ] {
            assert!(
                rel(a, b) < 1e-3,
                "epoch {} {what}: gpu {a} cpu {b}",
                c.epoch
            );
        }
        eprintln!(
            "epoch {}: train loss cpu {:.6} gpu {:.6}, test acc cpu {:.4} gpu {:.4}",
            c.epoch, c.train_loss, g.train_loss, c.test_acc, g.test_acc
        );
    }
    let check = on_gpu.gradcheck.expect("gradient check ran");
    assert!(
        check.passed,
        "f64 check of the GPU-trained weights: {check:?}"
    );
    let device = check.device.expect("the GPU's own gradient was checked");
    assert!(device.device.starts_with("cuda:0"));
    assert!(device.passed, "GPU f32 gradient: {device:?}");
}

#[test]
fn a_trial_on_the_gpu_matches_the_cpu_for_three_epochs() {
    compare(
        r#"
        dataset = "synthetic:glyphs-tiny"
        epochs = 3
        batch_size = 64
        hidden = [256, 128]
        activation = "relu"
        init = "he_uniform"
        regularization = "l2:1e-4"
        optimizer = { kind = "sgd", lr = 0.01, momentum = 0.9 }
        [gradcheck]
        layer = "all"
        samples = 32
        "#,
    );
}

#[test]
fn a_batchnorm_sigmoid_trial_with_adam_on_the_gpu_matches_the_cpu() {
    compare(
        r#"
        dataset = "synthetic:glyphs-tiny"
        epochs = 3
        batch_size = 50
        hidden = [128, 128, 64]
        activation = "sigmoid"
        batchnorm = true
        regularization = "l1:1e-5"
        optimizer = { kind = "adam", lr = 1e-3 }
        [gradcheck]
        layer = "all"
        samples = 32
        "#,
    );
}
