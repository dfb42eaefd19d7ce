//! The verdicts on the demo's grid (`examples/sweeps/demo.toml`, the sweep `sweep demo`
//! runs, on built-in data): every configuration that stays at chance is flagged on every
//! seed, each flagged reason's measured value is on the flagged side of its threshold,
//! and the batch norm and ReLU + He configurations that learn are not flagged.

use gradsweep_kernels::CpuBackend;
use gradsweep_spec::SweepSpec;
use gradsweep_worker::report::Verdict;
use gradsweep_worker::trial::{self, TrialRecord};
use std::collections::BTreeMap;

fn demo_spec() -> SweepSpec {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/sweeps/demo.toml");
    let text = std::fs::read_to_string(path).expect("examples/sweeps/demo.toml");
    SweepSpec::from_toml_str(&text).expect("the demo spec parses")
}

/// A flagged verdict's deciding value is on the flagged side of its threshold, and its
/// reason cites that value.
fn assert_on_flagged_side(name: &str, v: &Verdict, label: &str) {
    if !v.flagged {
        return;
    }
    let crossed = if v.below {
        v.value < v.threshold
    } else {
        v.value >= v.threshold
    };
    assert!(
        crossed,
        "{label}: {name} flagged with {} {} {} — the wrong side: {}",
        v.value,
        if v.below { "<" } else { "≥" },
        v.threshold,
        v.reason
    );
    assert!(
        !v.reason.contains("(≥") && !v.reason.contains("(<"),
        "{label}: {name}'s flagged reason cites a value that did not cross: {}",
        v.reason
    );
}

#[test]
fn every_demo_configuration_at_chance_is_explained_and_those_that_learn_are_not_flagged() {
    let spec = demo_spec();
    let trials = spec.expand(1000).unwrap();
    assert_eq!(trials.len(), 32);
    let data = trial::load_data(&trials[0].config).unwrap();
    let chance = 1.0 / data.classes as f64;
    let cpu = CpuBackend::<f32>::new(2);
    let mut configs: BTreeMap<Vec<usize>, Vec<TrialRecord>> = BTreeMap::new();
    for t in &trials {
        let record = trial::run(&cpu, &t.config, &data, &mut |_| ()).unwrap();
        configs.entry(t.choice.clone()).or_default().push(record);
    }
    let (mut at_chance, mut learned_clean) = (0, 0);
    for records in configs.values() {
        let c = &records[0].config;
        let label = format!(
            "{} init={} batchnorm={} reg={}",
            c.activation, c.init, c.batchnorm, c.regularization
        );
        let test_acc: f64 = records
            .iter()
            .map(|r| r.epochs.last().unwrap().test_acc)
            .sum::<f64>()
            / records.len() as f64;
        for r in records {
            for (name, v) in r.verdicts.all() {
                assert_on_flagged_side(name, v, &label);
            }
        }
        if test_acc < chance + 0.05 {
            at_chance += 1;
            for r in records {
                let flagged: Vec<&str> = r
                    .verdicts
                    .all()
                    .into_iter()
                    .filter(|(_, v)| v.flagged)
                    .map(|(n, _)| n)
                    .collect();
                println!(
                    "{label} seed {}: at chance, flagged {flagged:?}",
                    r.config.seed
                );
                assert!(
                    !flagged.is_empty(),
                    "{label} seed {}: at chance ({:.1}% test accuracy) and no verdict says why: {:#?}",
                    r.config.seed,
                    test_acc * 100.0,
                    r.verdicts
                );
            }
        }
        let cure = c.batchnorm
            || (c.activation == gradsweep_worker::config::Activation::Relu
                && c.init.to_string() == "he_normal");
        if cure && test_acc > chance + 0.1 {
            learned_clean += 1;
            for r in records {
                for (name, v) in r.verdicts.all() {
                    assert!(
                        !v.flagged,
                        "{label} seed {} learned ({:.1}%) but {name} flagged it: {}",
                        r.config.seed,
                        test_acc * 100.0,
                        v.reason
                    );
                }
            }
        }
    }
    // The grid's shape: the 4 sigmoid configurations without batch norm stay at chance;
    // the 8 batch norm ones and the 2 ReLU + He ones without it learn.
    assert_eq!(at_chance, 4, "configurations at chance");
    assert_eq!(
        learned_clean, 10,
        "batch norm and ReLU + He configurations that learn"
    );
}
