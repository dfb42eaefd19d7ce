//! The study's knobs in trial files and sweeps: dotted grid keys for nested fields
//! (`"optimizer.lr" = [..]`), `input_norm` and `init_scope` (written in the canonical
//! TOML only when not their default, so no stored trial's key changes).

use gradsweep_spec::{SweepSpec, TrialConfig, trial_key};

const BASE: &str = "name = \"s\"\ndataset = \"synthetic:glyphs\"\noptimizer = { kind = \"sgd\", lr = 0.01, momentum = 0.5 }\n";

fn err(text: &str) -> String {
    SweepSpec::from_toml_str(text)
        .and_then(|s| s.expand(1000))
        .expect_err("refused")
        .to_string()
}

#[test]
fn a_dotted_grid_key_expands_labels_short_and_round_trips() {
    let spec = SweepSpec::from_toml_str(&format!(
        "{BASE}[grid]\n\"optimizer.lr\" = [0.01, 0.1, 1e-3]\nactivation = [\"relu\", \"tanh\"]\n"
    ))
    .unwrap();
    let keys: Vec<&str> = spec.axes.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["activation", "optimizer.lr"]);
    assert_eq!(spec.axes[1].labels, ["lr=0.01", "lr=0.1", "lr=0.001"]);
    let trials = spec.expand(1000).unwrap();
    assert_eq!(trials.len(), 6);
    let mut total = 0;
    for t in &trials {
        // The other fields of the top-level optimizer are kept.
        assert!(t.toml.contains("momentum = 0.5"), "{}", t.toml);
        let back = TrialConfig::from_toml_str(&t.toml).unwrap();
        assert_eq!(back, t.config);
        assert_eq!(t.key, trial_key(&t.toml));
        total += t.toml.len() as u64;
    }
    assert!(trials[1].toml.contains("lr = 0.1,"), "{}", trials[1].toml);
    assert_eq!(spec.expanded_bytes(), total);
    // TOML's own dotted keys mean the same.
    let dotted = SweepSpec::from_toml_str(&format!(
        "{BASE}[grid]\noptimizer.lr = [0.01, 0.1, 1e-3]\nactivation = [\"relu\", \"tanh\"]\n"
    ))
    .unwrap()
    .expand(1000)
    .unwrap();
    assert_eq!(dotted, trials);
}

#[test]
fn two_nested_axes_of_one_table_combine() {
    let spec = SweepSpec::from_toml_str(&format!(
        "{BASE}[grid]\n\"optimizer.lr\" = [0.01, 0.1]\n\"optimizer.momentum\" = [0.0, 0.9]\n\"optimizer.weight_decay\" = [0.0, 5e-4]\n"
    ))
    .unwrap();
    assert_eq!(
        spec.axes[2].labels,
        ["weight_decay=0.0", "weight_decay=0.0005"]
    );
    let trials = spec.expand(1000).unwrap();
    assert_eq!(trials.len(), 8);
    assert!(trials[7].toml.contains(
        "optimizer = { kind = \"sgd\", lr = 0.1, momentum = 0.9, weight_decay = 0.0005 }"
    ));
    let total: u64 = trials.iter().map(|t| t.toml.len() as u64).sum();
    assert_eq!(spec.expanded_bytes(), total);
}

#[test]
fn bad_nested_keys_and_values_are_refused_with_their_path() {
    assert_eq!(
        err(&format!("{BASE}[grid]\n\"optimizer.lrx\" = [1.0]\n")),
        "grid.optimizer.lrx: unknown nested key; expected one of optimizer.lr, \
         optimizer.momentum, optimizer.weight_decay, optimizer.betas, optimizer.eps"
    );
    assert_eq!(
        err(&format!("{BASE}[grid]\noptimizer.lrx = [1.0]\n")),
        "grid.optimizer.lrx: unknown nested key; expected one of optimizer.lr, \
         optimizer.momentum, optimizer.weight_decay, optimizer.betas, optimizer.eps"
    );
    assert!(
        err(&format!("{BASE}[grid]\n\"model.depth\" = [1]\n"))
            .starts_with("grid.model.depth: unknown key; a grid varies these nested fields")
    );
    assert!(
        err(&format!("{BASE}[grid]\n\"optimizer.lr\" = [0.1, -1.0]\n"))
            .starts_with("grid.optimizer.lr[1]: "),
        "{}",
        err(&format!("{BASE}[grid]\n\"optimizer.lr\" = [0.1, -1.0]\n"))
    );
    assert_eq!(
        err(&format!(
            "{BASE}[grid]\n\"optimizer.lr\" = [1e-4, 0.0001]\n"
        )),
        "grid.optimizer.lr[1]: the same value as grid.optimizer.lr[0] (lr=0.0001)"
    );
    assert_eq!(
        err(&format!("{BASE}[grid]\n\"optimizer.lr\" = []\n")),
        "grid.optimizer.lr: empty list; give at least one value"
    );
    assert_eq!(
        err(
            "name = \"s\"\ndataset = \"synthetic:glyphs\"\n[grid]\noptimizer = [{ kind = \"sgd\" }]\n\"optimizer.lr\" = [0.1]\n"
        ),
        "grid.optimizer.lr: grid.optimizer varies the whole table already; give one of the two"
    );
    // Adam has no momentum: the field is refused at its grid path.
    assert!(
        err("name = \"s\"\ndataset = \"synthetic:glyphs\"\noptimizer = { kind = \"adam\" }\n[grid]\n\"optimizer.momentum\" = [0.9]\n")
            .starts_with("grid.optimizer.momentum[0]"),
    );
}

#[test]
fn gradcheck_layer_can_be_a_nested_axis() {
    let spec = SweepSpec::from_toml_str(
        "name = \"s\"\ndataset = \"synthetic:glyphs\"\nhidden = [8, 8, 8, 8, 8]\n[gradcheck]\nsamples = 8\n[grid]\n\"gradcheck.layer\" = [\"linear5\", \"none\"]\n",
    )
    .unwrap();
    assert_eq!(spec.axes[0].labels, ["layer=linear5", "layer=none"]);
    let trials = spec.expand(100).unwrap();
    assert!(
        trials[0]
            .toml
            .ends_with("[gradcheck]\nlayer = \"linear5\"\nsamples = 8\n")
    );
}

#[test]
fn new_keys_are_written_only_when_not_their_default() {
    let plain = TrialConfig::from_toml_str("dataset = \"synthetic:glyphs\"").unwrap();
    let explicit = TrialConfig::from_toml_str(
        "dataset = \"synthetic:glyphs\"\ninput_norm = \"standardize\"\ninit_scope = \"all\"",
    )
    .unwrap();
    assert_eq!(plain, explicit);
    let text = plain.to_toml_string();
    assert!(
        !text.contains("input_norm") && !text.contains("init_scope"),
        "{text}"
    );
    assert_eq!(plain.field_text("input_norm").unwrap(), "standardize");
    assert_eq!(plain.field_text("init_scope").unwrap(), "all");

    let raw = TrialConfig::from_toml_str(
        "dataset = \"synthetic:glyphs\"\ninput_norm = \"none\"\ninit_scope = \"hidden\"",
    )
    .unwrap();
    let text = raw.to_toml_string();
    assert!(
        text.contains("optimizer = { kind = \"sgd\", lr = 0.01, momentum = 0.9, weight_decay = 0.0 }\ninput_norm = \"none\"\ninit_scope = \"hidden\"\n\n[gradcheck]"),
        "{text}"
    );
    assert_eq!(TrialConfig::from_toml_str(&text).unwrap(), raw);
    assert_ne!(trial_key(&text), trial_key(&plain.to_toml_string()));

    assert_eq!(
        TrialConfig::from_toml_str("dataset = \"synthetic:glyphs\"\ninput_norm = \"raw\"")
            .unwrap_err()
            .to_string(),
        "input_norm: unknown input_norm \"raw\"; expected one of standardize, none"
    );
    let spec = SweepSpec::from_toml_str(
        "name = \"s\"\ndataset = \"synthetic:glyphs\"\n[grid]\ninput_norm = [\"standardize\", \"none\"]\ninit_scope = [\"all\", \"hidden\"]\n",
    )
    .unwrap();
    let keys: Vec<&str> = spec.axes.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["input_norm", "init_scope"]);
    assert_eq!(spec.axes[0].labels, ["standardize", "none"]);
    let trials = spec.expand(100).unwrap();
    // The all-default point is the plain trial: its key is what it was before the keys.
    let mut plain_named = plain.clone();
    plain_named.name = "s".into();
    assert_eq!(trials[0].toml, plain_named.to_toml_string());
    let total: u64 = trials.iter().map(|t| t.toml.len() as u64).sum();
    assert_eq!(spec.expanded_bytes(), total);
}
