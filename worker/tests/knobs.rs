//! The study's knobs: `input_norm` (raw [0, 1] pixels slow a deep tanh net's escape
//! from its plateau, as in PyTorch) and `init_scope` (the init on every Linear layer, or
//! on the hidden ones with the output layer at `nn.Linear`'s default).

use gradsweep_kernels::CpuBackend;
use gradsweep_worker::config::TrialConfig;
use gradsweep_worker::train::{architecture, initial_params, normalisation};
use gradsweep_worker::trial;

const DEEP_TANH: &str = r#"
name = "deep-tanh"
dataset = "synthetic:glyphs-tiny"
epochs = 20
batch_size = 64
hidden = [128, 128, 128, 128, 128, 128, 128, 128]
activation = "tanh"
init = "default"
optimizer = { kind = "sgd", lr = 0.03, momentum = 0.9 }
[gradcheck]
layer = "none"
"#;

/// The first epoch whose train loss is below 98% of chance's (ln 10): the escape.
fn escape(config: &TrialConfig) -> (Option<u32>, f64) {
    let data = trial::load_data(config).unwrap();
    let record = trial::run(&CpuBackend::<f32>::new(2), config, &data, &mut |_| ()).unwrap();
    let at_chance = 0.98 * 10f64.ln();
    for e in &record.epochs {
        println!(
            "{}: epoch {} train loss {:.4} train acc {:.1}%",
            config.input_norm,
            e.epoch,
            e.train_loss,
            e.train_acc * 100.0
        );
    }
    let first = record
        .epochs
        .iter()
        .find(|e| e.train_loss < at_chance)
        .map(|e| e.epoch);
    (first, record.epochs.last().unwrap().train_loss)
}

#[test]
fn raw_pixels_keep_a_deep_tanh_net_on_its_plateau_for_several_epochs_then_it_learns() {
    let standardized = TrialConfig::from_toml_str(DEEP_TANH).unwrap();
    assert_eq!(standardized.input_norm.name(), "standardize", "the default");
    let raw = TrialConfig::from_toml_str(&format!("input_norm = \"none\"\n{DEEP_TANH}")).unwrap();
    let (raw_escape, raw_final) = escape(&raw);
    let (std_escape, std_final) = escape(&standardized);
    let raw_escape = raw_escape.expect("the raw-pixel net learns within 20 epochs");
    let std_escape = std_escape.expect("the standardised net learns");
    // Several stagnant epochs on raw pixels, then learning.
    assert!(
        raw_escape >= 6,
        "raw pixels left the plateau in epoch {raw_escape}"
    );
    assert!(raw_final < 2.0, "raw pixels: final train loss {raw_final}");
    // Standardised inputs leave it sooner.
    assert!(std_escape + 3 <= raw_escape, "{std_escape} vs {raw_escape}");
    assert!(std_final < raw_final);
}

#[test]
fn input_norm_none_feeds_pixels_in_0_1() {
    let config =
        TrialConfig::from_toml_str(&format!("input_norm = \"none\"\n{DEEP_TANH}")).unwrap();
    let data = trial::load_data(&config).unwrap();
    let (scale, shift) = normalisation(&config, &data);
    assert_eq!((scale, shift), (vec![1.0 / 255.0], vec![0.0]));
    let config = TrialConfig::from_toml_str(DEEP_TANH).unwrap();
    let (scale, shift) = normalisation(&config, &data);
    assert!(
        scale[0] > 1.0 / 255.0 && shift[0] < 0.0,
        "standardised: {scale:?} {shift:?}"
    );
}

#[test]
fn init_scope_hidden_leaves_the_output_layer_at_pytorchs_default() {
    let base = "dataset = \"synthetic:glyphs-tiny\"\nhidden = [32, 32]\ninit = \"he_normal\"\n";
    let all = TrialConfig::from_toml_str(base).unwrap();
    let hidden = TrialConfig::from_toml_str(&format!("{base}init_scope = \"hidden\"\n")).unwrap();
    let data = trial::load_data(&all).unwrap();
    let p_all = initial_params(&all, &architecture(&all, &data));
    let p_hidden = initial_params(&hidden, &architecture(&hidden, &data));
    // He init zeroes biases; nn.Linear's default draws them from U(±1/√fan_in).
    assert!(p_all[2].1.iter().all(|&b| b == 0.0));
    let bound = 1.0 / 32f64.sqrt();
    assert!(p_hidden[2].1.iter().any(|&b| b != 0.0));
    assert!(
        p_hidden[2]
            .0
            .iter()
            .chain(&p_hidden[2].1)
            .all(|w| w.abs() <= bound)
    );
    // The hidden layers are the same draws either way.
    assert_eq!(p_all[0], p_hidden[0]);
    assert_eq!(p_all[1], p_hidden[1]);
    assert!(p_hidden[0].1.iter().all(|&b| b == 0.0));
}
