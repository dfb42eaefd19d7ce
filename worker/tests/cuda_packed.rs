//! Packed trials on the GPU: a group of differing trials trained in lockstep on one
//! device gives each trial the per-epoch losses it gets alone on that device, to 6
//! significant digits (relative difference under 5e-6), and a diverging member leaves
//! the others as they are. On a machine without a GPU this prints why it was skipped —
//! and fails instead when `GRADSWEEP_REQUIRE_CUDA=1`.

use gradsweep_kernels::{CudaBackend, cuda};
use gradsweep_worker::config::TrialConfig;
use gradsweep_worker::packed::{Member, train_group};
use gradsweep_worker::report::Outcome;
use gradsweep_worker::trial;

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

/// Six significant digits.
const SIGNIFICANT: f64 = 5e-6;

fn config(extra: &str) -> TrialConfig {
    TrialConfig::from_toml_str(&format!(
        r#"
        {extra}
        dataset = "synthetic:glyphs-tiny"
        epochs = 3
        batch_size = 29
        hidden = [256, 128]
        [gradcheck]
        layer = "none"
        "#
    ))
    .unwrap()
}

#[test]
fn a_packed_group_on_the_gpu_gives_each_trial_its_losses_alone() {
    let Some(gpu) = gpu() else { return };
    let sgd = "optimizer = { kind = \"sgd\", lr = 0.05, momentum = 0.9 }";
    let configs = [
        config(&format!(
            "seed = 1\nactivation = \"relu\"\nbatchnorm = true\nregularization = \"l2:1e-3\"\n{sgd}"
        )),
        config(&format!(
            "seed = 2\nactivation = \"sigmoid\"\ninit = \"he_normal\"\nregularization = \"dropout:0.2\"\n{sgd}"
        )),
        config(&format!(
            "seed = 3\nactivation = \"tanh\"\nbatchnorm = true\nregularization = \"l1:1e-4+dropout:0.1\"\n{sgd}"
        )),
        config("seed = 4\nactivation = \"elu\"\noptimizer = { kind = \"sgd\", lr = 0.01 }"),
        config(
            "seed = 5\nactivation = \"relu\"\noptimizer = { kind = \"sgd\", lr = 1e6, momentum = 0.9 }",
        ),
    ];
    let data = trial::load_data(&configs[0]).unwrap();
    let never = || false;
    fn quietly(_: gradsweep_worker::train::Event<'_>) {}
    let mut handlers: Vec<fn(gradsweep_worker::train::Event<'_>)> = vec![quietly; configs.len()];
    let mut members: Vec<Member<'_>> = configs
        .iter()
        .zip(handlers.iter_mut())
        .map(|(config, on_event)| Member {
            config,
            on_event,
            stop: &never,
        })
        .collect();
    let group = train_group(&gpu, &data, &mut members).expect("the group trains");
    drop(members);
    let mut worst = 0.0f64;
    for (g, (config, packed)) in configs.iter().zip(group).enumerate() {
        let packed = packed.unwrap_or_else(|e| panic!("trial {g}: {e}"));
        let alone = trial::run(&gpu, config, &data, &mut |_| {}).unwrap();
        assert_eq!(packed.outcome, alone.outcome, "trial {g}");
        assert_eq!(packed.epochs.len(), alone.epochs.len(), "trial {g}");
        for (p, a) in packed.epochs.iter().zip(&alone.epochs) {
            for (what, x, y) in [
                ("train_loss", p.train_loss, a.train_loss),
                ("val_loss", p.val_loss, a.val_loss),
                ("test_loss", p.test_loss, a.test_loss),
            ] {
                let rel = (x - y).abs() / y.abs().max(1e-12);
                worst = worst.max(rel);
                eprintln!(
                    "trial {g} epoch {} {what}: packed {x:.9} alone {y:.9} (rel {rel:.1e})",
                    p.epoch
                );
                assert!(
                    rel < SIGNIFICANT,
                    "trial {g} epoch {} {what}: packed {x} alone {y}",
                    p.epoch
                );
            }
        }
    }
    eprintln!(
        "largest relative difference, packed vs alone on {}: {worst:.2e}",
        gradsweep_kernels::Backend::name(&gpu)
    );
    let diverged = trial::run(&gpu, &configs[4], &data, &mut |_| {}).unwrap();
    assert!(matches!(diverged.outcome, Outcome::Diverged { .. }));
}
