//! The trial keys, one entry each: its name, type, default and rule (its limits). The
//! entry is all there is to a key: [`TrialConfig`]'s field and its `Default`,
//! [`TRIAL_KEYS`], the parser used by trial files and sweep grids
//! ([`TrialConfig::set_field`]), the check of [`TrialConfig::validate`], the axis label
//! ([`TrialConfig::field_text`]) and the canonical TOML ([`TrialConfig::to_toml_string`])
//! all come from it. The type says how the value is read and written (see
//! [`super::field`]); the rule says what a value of that type may be for this key.
//!
//! The order of the entries is the canonical order: the order of the canonical TOML
//! (the trial key hashes it; table-valued keys such as `gradcheck` are written as
//! sections after the rest) and of a sweep's axes. Changing an entry's canonical text or
//! its place changes every trial's key; so does adding a key whose line every trial's
//! canonical TOML then carries (stored trials keep the keys they were stored with, but
//! the same spec submitted again gets new ones). A key added later is therefore written
//! only when its value differs from its default ([`Canonical::UnlessDefault`]) and goes
//! at the end of the table: `input_norm` and `init_scope` change no existing trial's
//! canonical TOML or key, and the first 14 keys keep their places (and their axis
//! order); `spec/tests/canonical.rs` pins both.

use super::canonical::Canonical;
use super::field::{Field, Range, Text, Widths};
use super::parse::{ConfigError, fmt_num};
use super::values::{GradCheckConfig, Init, InitScope, InputNorm, Optimizer, Regularization};
use crate::activation::Activation;
use crate::dataset;
use crate::limits::{MAX_VAL_FRACTION, limit};
use serde::Serialize;
use toml::Value;

/// One trial key, as the parsers, the validation and the canonical writer use it.
pub(crate) struct Key {
    /// The key as written in a trial file.
    pub name: &'static str,
    /// Reads and checks a value (errors at the given path) and stores it.
    pub set: fn(&mut TrialConfig, &Value, &str) -> Result<(), ConfigError>,
    /// Checks the value in a config (errors at the key's name).
    pub check: fn(&TrialConfig) -> Result<(), ConfigError>,
    /// The value's canonical text.
    pub canonical: fn(&TrialConfig) -> Canonical,
}

/// Declares the keys: `/// doc` `key: Type = default, rule;`, in canonical order.
macro_rules! trial_keys {
    ($(
        $(#[doc = $doc:literal])+
        $key:ident: $ty:ty = $default:expr, $rule:expr;
    )+) => {
        /// One training run, as described by a trial file (one field per trial key).
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub struct TrialConfig {
            $( $(#[doc = $doc])+ pub $key: $ty, )+
        }

        impl Default for TrialConfig {
            fn default() -> Self {
                TrialConfig { $( $key: $default, )+ }
            }
        }

        /// The keys of a trial file, in canonical order.
        pub const TRIAL_KEYS: [&str; [$(stringify!($key)),+].len()] = [$(stringify!($key)),+];

        /// Every key, in canonical order.
        pub(crate) static KEYS: [Key; TRIAL_KEYS.len()] = [$(
            Key {
                name: stringify!($key),
                set: |config, value, path| {
                    config.$key = <$ty as Field>::parse(value, path, &$rule)?;
                    Ok(())
                },
                check: |config| <$ty as Field>::check(&config.$key, stringify!($key), &$rule),
                canonical: |config| <$ty as Field>::canonical(&config.$key),
            },
        )+];
    };
}

trial_keys! {
    /// A label for tables and logs: not empty, no control characters, at most
    /// [`crate::limits::MAX_NAME_BYTES`].
    name: String = "trial".to_owned(),
        Text { max: limit!(MAX_NAME_BYTES, "bytes"), check: check_name };
    /// `"<kind>:<source>"`: `synthetic:<name>`, `cifar10:<dir>` or `gurmukhi:<dir>` (see
    /// [`crate::dataset`]), at most [`crate::limits::MAX_DATASET_BYTES`].
    dataset: String = "synthetic:glyphs".to_owned(),
        Text { max: limit!(MAX_DATASET_BYTES, "bytes"), check: dataset::check };
    /// Fraction of the training pool held out for validation, in (0,
    /// [`crate::limits::MAX_VAL_FRACTION`]].
    val_fraction: f64 = 0.1, check_val_fraction as Range;
    /// Number of epochs (> 0, at most [`crate::limits::MAX_EPOCHS`]).
    epochs: u32 = 10, limit!(MAX_EPOCHS, "epochs");
    /// Training mini-batch size (> 0, at most [`crate::limits::MAX_BATCH_SIZE`]).
    batch_size: usize = 128, limit!(MAX_BATCH_SIZE, "examples");
    /// Batch size for evaluation passes (> 0, at most
    /// [`crate::limits::MAX_BATCH_SIZE`]).
    eval_batch_size: usize = 1000, limit!(MAX_BATCH_SIZE, "examples");
    /// Seed of every random choice in the run.
    seed: u64 = 0, ();
    /// Hidden layer widths; empty means logistic regression. At most
    /// [`crate::limits::MAX_LAYERS`] layers of at most [`crate::limits::MAX_UNITS`]
    /// units, and at most [`crate::limits::MAX_HIDDEN_WEIGHTS`] weights between them.
    hidden: Vec<usize> = vec![256, 128],
        Widths {
            layers: limit!(MAX_LAYERS, "layers"),
            units: limit!(MAX_UNITS, "units"),
            weights: limit!(MAX_HIDDEN_WEIGHTS, "hidden-to-hidden weights"),
        };
    /// Activation after each hidden layer.
    activation: Activation = Activation::Relu, ();
    /// Weight initialisation of the Linear layers.
    init: Init = Init::Default, ();
    /// Whether each hidden Linear layer is followed by batch normalisation.
    batchnorm: bool = false, ();
    /// L1 / L2 penalties and dropout.
    regularization: Regularization = Regularization::NONE, ();
    /// The optimiser.
    optimizer: Optimizer = Optimizer::default_sgd(), ();
    /// The gradient check.
    gradcheck: GradCheckConfig = GradCheckConfig::default(), ();
    /// How pixels reach the first layer: standardised per channel (the default), or
    /// [0, 1] as they are (see [`InputNorm`]). Written only when not the default.
    input_norm: InputNorm = InputNorm::Standardize, ();
    /// Which Linear layers `init` applies to: all of them (the default, as PyTorch
    /// users write it) or the hidden ones (see [`InitScope`]). Written only when not
    /// the default.
    init_scope: InitScope = InitScope::All, ();
}

/// `name`: not empty, no control characters (it is printed in one-line messages).
fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else if s.chars().any(char::is_control) {
        Err("must not contain control characters (line breaks, tabs)".to_owned())
    } else {
        Ok(())
    }
}

/// `val_fraction`: in (0, [`MAX_VAL_FRACTION`]]. Without a validation split its loss and
/// accuracy would read 0 as if measured; above the limit more of the pool is held out
/// than trained on (0.999999 would train on nothing).
fn check_val_fraction(x: f64) -> Result<(), String> {
    let range = format!("must be in (0, {}]", fmt_num(MAX_VAL_FRACTION));
    if x > 0.0 && x <= MAX_VAL_FRACTION {
        Ok(())
    } else if x > MAX_VAL_FRACTION && x.is_finite() {
        Err(format!(
            "{range}, got {}: it would hold out more of the training pool than it trains on (limits::MAX_VAL_FRACTION)",
            fmt_num(x)
        ))
    } else if x == 0.0 {
        Err(format!(
            "{range}, got 0: without a validation split the validation loss and accuracy would read 0"
        ))
    } else {
        Err(format!("{range}, got {}", fmt_num(x)))
    }
}
