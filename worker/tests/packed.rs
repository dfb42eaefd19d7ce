//! Packed trials on the CPU: a group of differing trials trained in lockstep gives each
//! trial exactly (bit for bit) the record it gets alone — every epoch report (losses,
//! accuracies, penalties, per-layer diagnostics), the verdicts, the outcome and both
//! gradient checks; one trial diverging or being stopped leaves the others untouched.

use gradsweep_kernels::CpuBackend;
use gradsweep_worker::config::TrialConfig;
use gradsweep_worker::data::Dataset;
use gradsweep_worker::packed::{GroupError, Member, train_group};
use gradsweep_worker::report::Outcome;
use gradsweep_worker::train::Event;
use gradsweep_worker::trial::{self, TrialError, TrialRecord};
use std::cell::Cell;

/// 900 training images: with 29 a batch the last batch has one sample, which the
/// batch-norm trials skip and the others train on.
const BATCH: usize = 29;

fn config(extra: &str, optimizer: &str) -> TrialConfig {
    let toml = format!(
        r#"
        dataset = "synthetic:glyphs-tiny"
        epochs = 3
        batch_size = {BATCH}
        eval_batch_size = 128
        hidden = [40, 24]
        optimizer = {optimizer}
        [gradcheck]
        layer = "linear2"
        samples = 8
        "#
    );
    // Keys before the first table.
    let (head, tail) = toml.split_at(toml.find("[gradcheck]").unwrap());
    TrialConfig::from_toml_str(&format!("{extra}\n{head}{tail}")).expect("valid trial")
}

/// A member's event handler.
type OnEvent<'a> = Box<dyn FnMut(Event<'_>) + 'a>;

/// A record without its wall-clock times, which no two runs share.
fn timeless(mut r: TrialRecord) -> TrialRecord {
    r.seconds = 0.0;
    for e in &mut r.epochs {
        e.seconds = 0.0;
        e.train_seconds = 0.0;
    }
    r
}

fn alone(cpu: &CpuBackend<f32>, config: &TrialConfig, data: &Dataset) -> TrialRecord {
    timeless(trial::run(cpu, config, data, &mut |_| {}).expect("trial runs alone"))
}

/// The group's answers, with every member's epoch events counted.
fn grouped(
    cpu: &CpuBackend<f32>,
    configs: &[TrialConfig],
    data: &Dataset,
    stop_after: &[Option<usize>],
) -> (Vec<Result<TrialRecord, TrialError>>, Vec<usize>) {
    let batches: Vec<Cell<usize>> = configs.iter().map(|_| Cell::new(0)).collect();
    let mut epochs_seen = vec![0usize; configs.len()];
    let seen: Vec<Cell<usize>> = configs.iter().map(|_| Cell::new(0)).collect();
    let mut events: Vec<OnEvent<'_>> = (0..configs.len())
        .map(|g| {
            let (batches, seen) = (&batches[g], &seen[g]);
            Box::new(move |e: Event<'_>| match e {
                Event::Batch { .. } => batches.set(batches.get() + 1),
                Event::Epoch(_) => seen.set(seen.get() + 1),
            }) as Box<dyn FnMut(Event<'_>)>
        })
        .collect();
    let stops: Vec<Box<dyn Fn() -> bool + '_>> = (0..configs.len())
        .map(|g| {
            let batches = &batches[g];
            let limit = stop_after[g];
            Box::new(move || limit.is_some_and(|n| batches.get() >= n)) as Box<dyn Fn() -> bool>
        })
        .collect();
    let mut members: Vec<Member<'_>> = configs
        .iter()
        .zip(events.iter_mut())
        .zip(&stops)
        .map(|((config, on_event), stop)| Member {
            config,
            on_event: on_event.as_mut(),
            stop: stop.as_ref(),
        })
        .collect();
    let answers = train_group(cpu, data, &mut members).expect("the group trains");
    drop(members);
    for (g, s) in seen.iter().enumerate() {
        epochs_seen[g] = s.get();
    }
    (
        answers.into_iter().map(|a| a.map(timeless)).collect(),
        epochs_seen,
    )
}

#[test]
fn a_group_of_differing_sgd_trials_gives_each_its_record_alone_bit_for_bit() {
    let sgd = "{ kind = \"sgd\", lr = 0.05, momentum = 0.9 }";
    let configs = vec![
        config(
            "seed = 1\nactivation = \"relu\"\nbatchnorm = true\nregularization = \"l2:1e-3\"",
            sgd,
        ),
        config(
            "seed = 2\nactivation = \"sigmoid\"\ninit = \"he_normal\"\nregularization = \"dropout:0.2\"",
            "{ kind = \"sgd\", lr = 0.2, momentum = 0.5, weight_decay = 1e-4 }",
        ),
        config(
            "seed = 3\nactivation = \"tanh\"\ninit = \"xavier_uniform\"\nbatchnorm = true\nregularization = \"l1:1e-4+dropout:0.1\"",
            sgd,
        ),
        config(
            "seed = 4\nactivation = \"leaky_relu\"\ninit = \"he_uniform\"",
            "{ kind = \"sgd\", lr = 0.01 }",
        ),
        // Diverges in its first epoch; the others must not notice.
        config(
            "seed = 5\nactivation = \"relu\"",
            "{ kind = \"sgd\", lr = 1e6, momentum = 0.9 }",
        ),
    ];
    let cpu = CpuBackend::<f32>::new(2);
    let data = trial::load_data(&configs[0]).unwrap();
    assert_eq!(
        data.train.len() % BATCH,
        1,
        "the one-sample last batch is exercised"
    );
    let (group, epochs_seen) = grouped(&cpu, &configs, &data, &[None; 5]);
    for (g, (config, answer)) in configs.iter().zip(group).enumerate() {
        let packed = answer.unwrap_or_else(|e| panic!("trial {g}: {e}"));
        let single = alone(&cpu, config, &data);
        for (p, s) in packed.epochs.iter().zip(&single.epochs) {
            println!(
                "trial {g} epoch {}: train loss {:.9} (packed) {:.9} (alone), val loss {:.9} {:.9}",
                p.epoch, p.train_loss, s.train_loss, p.val_loss, s.val_loss
            );
            assert_eq!(p.train_loss.to_bits(), s.train_loss.to_bits(), "trial {g}");
        }
        assert_eq!(
            packed, single,
            "trial {g}'s record in the group differs from alone"
        );
        assert_eq!(
            epochs_seen[g],
            single.epochs.len(),
            "trial {g}'s epoch events"
        );
    }
    let diverged = alone(&cpu, &configs[4], &data);
    assert_eq!(diverged.outcome, Outcome::Diverged { epoch: 1 });
}

#[test]
fn an_adam_group_matches_too_and_a_stopped_trial_leaves_only_itself() {
    let configs = vec![
        config(
            "seed = 10\nactivation = \"elu\"\nbatchnorm = true\nregularization = \"dropout:0.3\"",
            "{ kind = \"adam\", lr = 1e-3 }",
        ),
        config(
            "seed = 11\nactivation = \"relu\"\nregularization = \"l2:1e-4\"",
            "{ kind = \"adam\", lr = 3e-3, betas = [0.8, 0.99], weight_decay = 1e-4 }",
        ),
        config(
            "seed = 12\nactivation = \"tanh\"",
            "{ kind = \"adam\", lr = 1e-2, eps = 1e-6 }",
        ),
    ];
    let cpu = CpuBackend::<f32>::new(2);
    let data = trial::load_data(&configs[0]).unwrap();
    // Trial 1 is stopped (its lease revoked) after 40 batches, in epoch 2.
    let (group, _) = grouped(&cpu, &configs, &data, &[None, Some(40), None]);
    let mut group = group.into_iter();
    assert_eq!(
        group.next().unwrap().unwrap(),
        alone(&cpu, &configs[0], &data)
    );
    assert!(matches!(group.next().unwrap(), Err(TrialError::Stopped)));
    assert_eq!(
        group.next().unwrap().unwrap(),
        alone(&cpu, &configs[2], &data)
    );
}

#[test]
fn incompatible_trials_are_refused_and_bad_splits_answered_per_member() {
    let cpu = CpuBackend::<f32>::new(1);
    let a = config("seed = 1", "{ kind = \"sgd\", lr = 0.1 }");
    let data = trial::load_data(&a).unwrap();
    let mut b = a.clone();
    b.hidden = vec![40];
    let mut events = |_: Event<'_>| {};
    let mut events2 = |_: Event<'_>| {};
    let never = || false;
    let mut members = vec![
        Member {
            config: &a,
            on_event: &mut events,
            stop: &never,
        },
        Member {
            config: &b,
            on_event: &mut events2,
            stop: &never,
        },
    ];
    match train_group(&cpu, &data, &mut members) {
        Err(GroupError::Incompatible { index: 1, reason }) => {
            assert_eq!(reason, "`hidden` differs ([40, 24] vs [40])")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("an incompatible group trained"),
    }
    // A batch larger than the training split: refused for that member alone.
    let mut c = a.clone();
    c.batch_size = 5_000;
    let mut members = vec![Member {
        config: &c,
        on_event: &mut events,
        stop: &never,
    }];
    let answers = train_group(&cpu, &data, &mut members).unwrap();
    assert!(
        matches!(&answers[0], Err(TrialError::Splits(m)) if m.starts_with("batch_size = 5000"))
    );
}
