//! Trial files: the TOML description of one training run, parsed and validated.
//!
//! A trial file names a dataset and every hyper-parameter of one MLP training run (the
//! README's "Trial files" lists every key). Every key but
//! `dataset` is optional; [`TrialConfig::default`] holds the defaults.
//!
//! # Layout
//!
//! - `keys`: **the table of trial keys**, one entry per key (name, type, default,
//!   limits), from which [`TrialConfig`], [`TRIAL_KEYS`], the parsers, the validation,
//!   the axis labels and the canonical TOML are all made.
//! - `field`: how each type of field is read, checked and written.
//! - `values`: the structured values ([`Init`], [`Regularization`], [`Optimizer`],
//!   [`GradCheckLayer`], [`GradCheckConfig`]) and their parsers.
//! - `canonical`: the canonical TOML and the axis labels.
//! - `parse`: [`ConfigError`], key paths and TOML helpers shared with the sweep parser.
//!
//! The text is parsed into a [`toml::Table`] and then walked by hand, key by key. The
//! sweep-spec parser reuses the same per-key parsers ([`TrialConfig::set_field`]) on
//! every element of a `[grid]` list, passing paths such as `grid.activation[2]`.
//!
//! Every error is a [`ConfigError`]: the key path and the reason, on one line, e.g.
//! `optimizer.lr: must be a positive finite number, got -0.1`, or
//! `hidden: 100000 layers; the limit is 1024 (limits::MAX_LAYERS)`. Unknown keys are
//! refused at every level, with the list of known keys. Text over
//! [`crate::limits::MAX_TEXT_BYTES`] is refused before it is parsed.

mod canonical;
mod field;
mod keys;
mod parse;
mod values;

pub use crate::activation::Activation;
pub use field::parse_seed;
pub use keys::{TRIAL_KEYS, TrialConfig};
pub(crate) use parse::fmt_num;
pub use parse::{
    ConfigError, check_keys, describe, join_index, join_key, parse_toml_table, type_error,
};
pub use values::{
    ADAM_KEYS, GRADCHECK_KEYS, GradCheckConfig, GradCheckLayer, Init, InitScope, InputNorm,
    Optimizer, Regularization, SGD_KEYS, parse_gradcheck, parse_gradcheck_layer, parse_optimizer,
};

use crate::limits;
use keys::KEYS;
use parse::at;
use std::path::Path;
use toml::{Table, Value};

impl TrialConfig {
    /// Parses and validates trial-file text (refused unread above
    /// [`limits::MAX_TEXT_BYTES`]).
    pub fn from_toml_str(s: &str) -> Result<TrialConfig, ConfigError> {
        limits::check_text_size("trial file", s.len() as u64)?;
        TrialConfig::from_table(&parse_toml_table(s)?)
    }

    /// Reads, parses and validates a trial file. Every error names the file:
    /// `trial.toml: optimizer.lr: must be a positive finite number, got -0.1`. A file
    /// over [`limits::MAX_TEXT_BYTES`] is refused without reading it.
    pub fn from_file(path: &Path) -> Result<TrialConfig, ConfigError> {
        let text = limits::read_text_file(path, "trial file").map_err(|e| e.in_file(path))?;
        TrialConfig::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// Builds and validates a trial from a parsed table: unknown keys are refused,
    /// `dataset` is required, every other key defaults.
    pub fn from_table(table: &Table) -> Result<TrialConfig, ConfigError> {
        check_keys(table, "", &TRIAL_KEYS)?;
        let mut config = TrialConfig::default();
        for key in TRIAL_KEYS {
            match table.get(key) {
                Some(value) => config.set_field(key, value, key)?,
                None if key == "dataset" => return Err(ConfigError::missing(key)),
                None => {}
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets the field named `key` from `value`, reporting errors at `path` (which is `key`
    /// in a trial file, or e.g. `grid.activation[2]` in a sweep spec). Checks the value
    /// on its own, limits included; call [`TrialConfig::validate`] once every field is
    /// set.
    pub fn set_field(&mut self, key: &str, value: &Value, path: &str) -> Result<(), ConfigError> {
        match KEYS.iter().find(|k| k.name == key) {
            Some(k) => (k.set)(self, value, path),
            None => Err(ConfigError::new(
                path,
                format!("unknown key; expected one of {}", TRIAL_KEYS.join(", ")),
            )),
        }
    }

    /// Checks every field's range and limits, and the fields' agreement (the
    /// gradient-check layer must exist). Errors name the field's key path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for key in &KEYS {
            (key.check)(self)?;
        }
        at(
            "gradcheck.layer",
            self.gradcheck.layer.check(self.num_linear_layers()),
        )
    }

    /// The number of Linear layers: one per hidden layer plus the output layer.
    pub fn num_linear_layers(&self) -> usize {
        self.hidden.len() + 1
    }

    /// The Linear layers' names, `linear1` … `linear{hidden.len()+1}`.
    pub fn layer_names(&self) -> Vec<String> {
        (1..=self.num_linear_layers())
            .map(|i| format!("linear{i}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::parse::line_column;
    use super::*;

    const BASE: &str = "dataset = \"synthetic:glyphs\"\n";

    /// The one-line error for `BASE` + `extra`.
    fn err(extra: &str) -> String {
        let text = format!("{BASE}{extra}");
        let e = TrialConfig::from_toml_str(&text).expect_err("should be refused");
        let line = e.to_string();
        assert!(!line.contains('\n'), "multi-line error: {line:?}");
        assert!(!line.ends_with('.'), "trailing period: {line:?}");
        line
    }

    fn ok(extra: &str) -> TrialConfig {
        let text = format!("{BASE}{extra}");
        match TrialConfig::from_toml_str(&text) {
            Ok(c) => c,
            Err(e) => panic!("refused: {e}\n{text}"),
        }
    }

    #[test]
    fn defaults_fill_in() {
        let c = ok("");
        assert_eq!(c, TrialConfig::default());
        assert_eq!(c.name, "trial");
        assert_eq!(c.dataset, "synthetic:glyphs");
        assert_eq!(c.val_fraction, 0.1);
        assert_eq!(c.epochs, 10);
        assert_eq!(c.batch_size, 128);
        assert_eq!(c.eval_batch_size, 1000);
        assert_eq!(c.seed, 0);
        assert_eq!(c.hidden, vec![256, 128]);
        assert_eq!(c.activation, Activation::Relu);
        assert_eq!(c.init, Init::Default);
        assert!(!c.batchnorm);
        assert!(c.regularization.is_none());
        assert_eq!(c.optimizer, Optimizer::default_sgd());
        assert_eq!(
            c.gradcheck,
            GradCheckConfig {
                layer: GradCheckLayer::All,
                samples: 64
            }
        );
        let adam = ok("optimizer = { kind = \"adam\" }");
        assert_eq!(adam.optimizer, Optimizer::default_adam());
        let partial = ok("optimizer = { lr = 0.5 }\n[gradcheck]\nsamples = 8");
        assert_eq!(
            partial.optimizer,
            Optimizer::Sgd {
                lr: 0.5,
                momentum: 0.9,
                weight_decay: 0.0
            }
        );
        assert_eq!(partial.gradcheck.layer, GradCheckLayer::All);
        assert_eq!(partial.gradcheck.samples, 8);
    }

    const FULL: &str = r#"
name = "deep-sigmoid"
dataset = "cifar10:/data/cifar-10-batches-bin"
val_fraction = 0.2
epochs = 20
batch_size = 64
eval_batch_size = 500
seed = 7
hidden = [512, 256, 128]
activation = "leaky_relu"
init = "he_normal"
batchnorm = true
regularization = "l2:1e-4+dropout:0.2"
optimizer = { kind = "adam", lr = 3e-4, betas = [0.8, 0.99], eps = 1e-7, weight_decay = 1 }

[gradcheck]
layer = "linear2"
samples = 16
"#;

    fn full() -> TrialConfig {
        TrialConfig {
            name: "deep-sigmoid".into(),
            dataset: "cifar10:/data/cifar-10-batches-bin".into(),
            val_fraction: 0.2,
            epochs: 20,
            batch_size: 64,
            eval_batch_size: 500,
            seed: 7,
            hidden: vec![512, 256, 128],
            activation: Activation::LeakyRelu,
            init: Init::HeNormal,
            batchnorm: true,
            regularization: Regularization {
                l1: None,
                l2: Some(1e-4),
                dropout: Some(0.2),
            },
            optimizer: Optimizer::Adam {
                lr: 3e-4,
                betas: (0.8, 0.99),
                eps: 1e-7,
                weight_decay: 1.0,
            },
            gradcheck: GradCheckConfig {
                layer: GradCheckLayer::Linear(2),
                samples: 16,
            },
            ..TrialConfig::default()
        }
    }

    #[test]
    fn full_example_parses() {
        assert_eq!(TrialConfig::from_toml_str(FULL).unwrap(), full());
        assert_eq!(
            full().layer_names(),
            vec!["linear1", "linear2", "linear3", "linear4"]
        );
        assert_eq!(full().gradcheck.layer.indices(4), vec![1]);
        assert_eq!(GradCheckLayer::All.indices(3), vec![0, 1, 2]);
        assert!(GradCheckLayer::None.indices(3).is_empty());
    }

    #[test]
    fn round_trips() {
        let mut odd = TrialConfig {
            name: "quote \" back\\slash ünï".into(),
            hidden: vec![],
            regularization: "l1:1e-5+l2:0.0001+dropout:0.5".parse().unwrap(),
            gradcheck: GradCheckConfig {
                layer: GradCheckLayer::None,
                samples: 1,
            },
            ..TrialConfig::default()
        };
        odd.optimizer = Optimizer::Sgd {
            lr: 1.0,
            momentum: 0.0,
            weight_decay: 5e-4,
        };
        for c in [TrialConfig::default(), full(), odd] {
            let text = c.to_toml_string();
            assert_eq!(TrialConfig::from_toml_str(&text).unwrap(), c, "{text}");
            assert_eq!(
                TrialConfig::from_toml_str(&text).unwrap().to_toml_string(),
                text
            );
        }
        let text = full().to_toml_string();
        assert!(
            text.contains("regularization = \"l2:0.0001+dropout:0.2\"\n"),
            "{text}"
        );
        assert!(text.contains(
            "optimizer = { kind = \"adam\", lr = 0.0003, betas = [0.8, 0.99], eps = 1e-7, weight_decay = 1.0 }\n"
        ), "{text}");
        assert!(text.ends_with("[gradcheck]\nlayer = \"linear2\"\nsamples = 16\n"));
    }

    #[test]
    fn unknown_keys() {
        assert_eq!(
            err("activaton = \"relu\""),
            "activaton: unknown key; expected one of name, dataset, val_fraction, epochs, \
             batch_size, eval_batch_size, seed, hidden, activation, init, batchnorm, \
             regularization, optimizer, gradcheck, input_norm, init_scope"
        );
        assert_eq!(
            err("optimizer = { kind = \"sgd\", betas = [0.9, 0.99] }"),
            "optimizer.betas: unknown key for kind \"sgd\"; expected one of kind, lr, momentum, weight_decay"
        );
        assert_eq!(
            err("optimizer = { kind = \"adam\", momentum = 0.9 }"),
            "optimizer.momentum: unknown key for kind \"adam\"; expected one of kind, lr, betas, eps, weight_decay"
        );
        assert_eq!(
            err("[gradcheck]\nlayers = \"all\""),
            "gradcheck.layers: unknown key; expected one of layer, samples"
        );
    }

    #[test]
    fn enum_fields() {
        assert_eq!(
            err("activation = \"relux\""),
            "activation: unknown activation \"relux\"; expected one of sigmoid, tanh, relu, leaky_relu, elu"
        );
        assert_eq!(
            err("activation = \"identity\""),
            "activation: unknown activation \"identity\"; expected one of sigmoid, tanh, relu, leaky_relu, elu"
        );
        assert_eq!(
            err("init = \"glorot\""),
            "init: unknown init \"glorot\"; expected one of default, xavier_uniform, xavier_normal, he_uniform, he_normal"
        );
        assert_eq!(
            err("optimizer = { kind = \"rmsprop\" }"),
            "optimizer.kind: unknown optimizer \"rmsprop\"; expected one of sgd, adam"
        );
        for a in Activation::ALL {
            assert_eq!(ok(&format!("activation = \"{a}\"")).activation, a);
        }
        for i in Init::ALL {
            assert_eq!(ok(&format!("init = \"{i}\"")).init, i);
        }
    }

    #[test]
    fn integers() {
        assert_eq!(
            err("hidden = [128, 0]"),
            "hidden[1]: must be a positive integer, got 0"
        );
        assert_eq!(
            err("hidden = [128, -3]"),
            "hidden[1]: must be a positive integer, got -3"
        );
        assert_eq!(
            err("hidden = [1.5]"),
            "hidden[0]: expected an integer, got a float"
        );
        assert_eq!(
            err("hidden = 128"),
            "hidden: expected an array, got an integer"
        );
        assert_eq!(
            err("batch_size = 0"),
            "batch_size: must be a positive integer, got 0"
        );
        assert_eq!(
            err("eval_batch_size = -1"),
            "eval_batch_size: must be a positive integer, got -1"
        );
        assert_eq!(
            err("epochs = \"20\""),
            "epochs: expected an integer, got a string"
        );
        assert_eq!(
            err("epochs = 2.5"),
            "epochs: expected an integer, got a float"
        );
        assert_eq!(
            err("epochs = 2.0"),
            "epochs: expected an integer, got a float"
        );
        assert_eq!(
            err("epochs = 5000000000"),
            "epochs: 5000000000 epochs; the limit is 100000 (limits::MAX_EPOCHS)"
        );
        assert_eq!(
            err("seed = -1"),
            "seed: must be a non-negative integer, got -1"
        );
        assert_eq!(
            err("[gradcheck]\nsamples = 0"),
            "gradcheck.samples: must be a positive integer, got 0"
        );
        assert!(ok("hidden = []").hidden.is_empty());
        assert_eq!(ok("seed = 9223372036854775807").seed, i64::MAX as u64);
    }

    #[test]
    fn numbers() {
        assert_eq!(
            err("val_fraction = -0.5"),
            "val_fraction: must be in (0, 0.5], got -0.5"
        );
        assert_eq!(
            err("val_fraction = nan"),
            "val_fraction: must be in (0, 0.5], got NaN"
        );
        assert_eq!(
            err("val_fraction = inf"),
            "val_fraction: must be in (0, 0.5], got inf"
        );
        assert_eq!(
            err("val_fraction = \"0.1\""),
            "val_fraction: expected a number, got a string"
        );
        assert_eq!(
            err("optimizer = { lr = -0.1 }"),
            "optimizer.lr: must be a positive finite number, got -0.1"
        );
        assert_eq!(
            err("optimizer = { lr = inf }"),
            "optimizer.lr: must be a positive finite number, got inf"
        );
        assert_eq!(
            err("optimizer = { momentum = 1 }"),
            "optimizer.momentum: must be in [0, 1), got 1"
        );
        assert_eq!(
            err("optimizer = { weight_decay = -1e-4 }"),
            "optimizer.weight_decay: must be a finite number >= 0, got -0.0001"
        );
        assert_eq!(
            err("optimizer = { kind = \"adam\", betas = [0.9, 1] }"),
            "optimizer.betas[1]: must be in [0, 1), got 1"
        );
        assert_eq!(
            err("optimizer = { kind = \"adam\", betas = [0.9] }"),
            "optimizer.betas: expected an array of two numbers, got 1 element"
        );
        assert_eq!(
            err("optimizer = { kind = \"adam\", eps = 0 }"),
            "optimizer.eps: must be a positive finite number, got 0"
        );
        assert_eq!(
            err("optimizer = \"sgd\""),
            "optimizer: expected a table, got a string"
        );
        assert_eq!(
            err("optimizer = { kind = 1 }"),
            "optimizer.kind: expected a string, got an integer"
        );
        assert_eq!(ok("optimizer = { lr = 1 }").optimizer.lr(), 1.0);
        assert_eq!(
            err("batchnorm = 1"),
            "batchnorm: expected a boolean, got an integer"
        );
    }

    #[test]
    fn strings() {
        let e = TrialConfig::from_toml_str("epochs = 3").unwrap_err();
        assert_eq!(e.to_string(), "dataset: missing required key");
        assert_eq!(e.path, "dataset");
        assert_eq!(e.message, "missing required key");
        assert_eq!(
            TrialConfig::from_toml_str("dataset = \"glyphs\"")
                .unwrap_err()
                .to_string(),
            "dataset: expected \"<kind>:<source>\" (synthetic:<name>, cifar10:<dir> or gurmukhi:<dir>), got \"glyphs\""
        );
        assert_eq!(err("name = \"\""), "name: must not be empty");
        assert!(err("name = \"a\\nb\"").starts_with("name: must not contain control characters"));
    }

    #[test]
    fn gradcheck_layer() {
        assert_eq!(
            err("hidden = [128, 128]\n[gradcheck]\nlayer = \"linear9\""),
            "gradcheck.layer: no layer \"linear9\"; this net has linear1 … linear3"
        );
        assert_eq!(
            err("hidden = []\n[gradcheck]\nlayer = \"linear2\""),
            "gradcheck.layer: no layer \"linear2\"; this net has only linear1"
        );
        assert_eq!(
            err("[gradcheck]\nlayer = \"linear0\""),
            "gradcheck.layer: no layer \"linear0\"; layers are numbered from linear1"
        );
        for bad in ["linear", "linear01", "linear+1", "Linear1", "first", ""] {
            assert_eq!(
                err(&format!("[gradcheck]\nlayer = \"{bad}\"")),
                format!(
                    "gradcheck.layer: unknown layer \"{bad}\"; expected \"all\", \"none\" or \"linear<N>\""
                )
            );
        }
        let c = ok("hidden = [128, 128]\n[gradcheck]\nlayer = \"linear3\"");
        assert_eq!(c.gradcheck.layer, GradCheckLayer::Linear(3));
        assert_eq!(c.gradcheck.layer.to_string(), "linear3");
        assert_eq!(
            ok("[gradcheck]\nlayer = \"none\"").gradcheck.layer,
            GradCheckLayer::None
        );
        assert_eq!(GradCheckLayer::All.to_string(), "all");
        assert_eq!(GradCheckLayer::None.to_string(), "none");
    }

    #[test]
    fn regularization() {
        let parse = |s: &str| s.parse::<Regularization>();
        assert_eq!(parse("none"), Ok(Regularization::NONE));
        assert_eq!(Regularization::NONE.to_string(), "none");
        let all = parse("dropout:0.2+l2:1e-4+l1:1e-5").unwrap();
        assert_eq!(
            all,
            Regularization {
                l1: Some(1e-5),
                l2: Some(1e-4),
                dropout: Some(0.2)
            }
        );
        assert_eq!(all.to_string(), "l1:1e-5+l2:0.0001+dropout:0.2");
        assert_eq!(parse("l2:1").unwrap().to_string(), "l2:1");
        assert_eq!(
            parse(" l2 : 0.5 + dropout:0 ").unwrap().to_string(),
            "l2:0.5+dropout:0"
        );
        assert_eq!(parse("l1:0.001").unwrap().l1, Some(1e-3));
        assert_eq!(
            err("regularization = \"dropout:1.5\""),
            "regularization: dropout probability 1.5 is outside [0, 1)"
        );
        assert_eq!(
            err("regularization = \"l2:-1\""),
            "regularization: l2 strength must be a finite number >= 0, got -1"
        );
        assert_eq!(
            err("regularization = \"l1:inf\""),
            "regularization: l1 strength must be a finite number >= 0, got inf"
        );
        assert_eq!(
            err("regularization = \"l2:1e-4+l2:1e-3\""),
            "regularization: l2 given more than once"
        );
        assert_eq!(
            err("regularization = \"l2:abc\""),
            "regularization: \"abc\" in \"l2:abc\" is not a number"
        );
        assert_eq!(
            err("regularization = \"l3:0.1\""),
            "regularization: unknown term \"l3:0.1\"; expected \"none\" or l1:<λ>, l2:<λ>, dropout:<p> joined by '+'"
        );
        assert_eq!(
            err("regularization = \"dropout\""),
            "regularization: bad term \"dropout\"; expected \"none\" or l1:<λ>, l2:<λ>, dropout:<p> joined by '+'"
        );
        assert!(err("regularization = \"l2:1e-4+\"").starts_with("regularization: empty term in"));
        assert!(err("regularization = \"\"").starts_with("regularization: empty;"));
        assert!(
            err("regularization = \"none+l2:1\"").starts_with("regularization: bad term \"none\"")
        );
        // Display always reads back to the same value.
        for s in ["l1:3.3e-7", "l2:123456.5", "dropout:0.999", "l1:0+l2:0"] {
            let r = parse(s).unwrap();
            assert_eq!(parse(&r.to_string()), Ok(r));
        }
    }

    #[test]
    fn serializes_with_names() {
        let json = serde_json::to_value(full()).unwrap();
        assert_eq!(json["activation"], "leaky_relu");
        assert_eq!(json["init"], "he_normal");
        assert_eq!(json["regularization"], "l2:0.0001+dropout:0.2");
        assert_eq!(json["optimizer"]["kind"], "adam");
        assert_eq!(json["optimizer"]["betas"], serde_json::json!([0.8, 0.99]));
        assert_eq!(json["gradcheck"]["layer"], "linear2");
        let sgd = serde_json::to_value(Optimizer::default_sgd()).unwrap();
        assert_eq!(
            sgd,
            serde_json::json!({"kind": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0})
        );
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let e = TrialConfig::from_toml_str("dataset = \"synthetic:glyphs\"\nepochs = = 3\n")
            .unwrap_err();
        let line = e.to_string();
        assert!(line.starts_with("line 2, column "), "{line}");
        assert!(!line.contains('\n'), "{line:?}");
        assert_eq!(e.path, "");
        let dup = TrialConfig::from_toml_str("dataset = \"a:b\"\nepochs = 1\nepochs = 2\n")
            .unwrap_err()
            .to_string();
        assert_eq!(dup, "line 3, column 1: duplicate key epochs");
        let table = TrialConfig::from_toml_str("dataset = \"a:b\"\n[gradcheck]\n[gradcheck]\n")
            .unwrap_err()
            .to_string();
        assert_eq!(table, "line 3, column 2: duplicate key gradcheck");
        assert!(!dup.contains('\n'), "{dup:?}");
        assert_eq!(line_column("ab\ncdé\nf", 8), (3, 1));
        assert_eq!(line_column("ab\ncdé\nf", 6), (2, 3));
        assert_eq!(line_column("ab\ncdé\nf", 7), (2, 4));
        assert_eq!(line_column("", 5), (1, 1));
    }

    #[test]
    fn from_file_names_the_file() {
        let dir = std::env::temp_dir().join(format!("gradsweep-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.toml");
        let e = TrialConfig::from_file(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read file: ", missing.display())),
            "{e}"
        );
        assert!(!e.contains('\n'));

        let bad = dir.join("bad.toml");
        std::fs::write(
            &bad,
            "dataset = \"synthetic:glyphs\"\noptimizer = { lr = -0.1 }\n",
        )
        .unwrap();
        let e = TrialConfig::from_file(&bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: optimizer.lr: must be a positive finite number, got -0.1",
                bad.display()
            )
        );

        let broken = dir.join("broken.toml");
        std::fs::write(&broken, "dataset = \"synthetic:glyphs\"\nepochs = \n").unwrap();
        let e = TrialConfig::from_file(&broken).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: line 2, column ", broken.display())),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e:?}");

        let good = dir.join("good.toml");
        std::fs::write(&good, FULL).unwrap();
        assert_eq!(TrialConfig::from_file(&good).unwrap(), full());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn field_parsers_serve_grid_elements() {
        let mut c = TrialConfig::default();
        let grid: Value = toml::from_str::<Table>("a = [\"sigmoid\", \"tanh\", \"relux\"]")
            .unwrap()
            .remove("a")
            .unwrap();
        let items = grid.as_array().unwrap();
        c.set_field("activation", &items[1], "grid.activation[1]")
            .unwrap();
        assert_eq!(c.activation, Activation::Tanh);
        assert_eq!(
            c.set_field("activation", &items[2], "grid.activation[2]")
                .unwrap_err()
                .to_string(),
            "grid.activation[2]: unknown activation \"relux\"; expected one of sigmoid, tanh, relu, leaky_relu, elu"
        );
        assert!(
            c.set_field("colour", &items[0], "grid.colour")
                .unwrap_err()
                .to_string()
                .starts_with("grid.colour: unknown key; expected one of name, ")
        );
    }

    #[test]
    fn validate_catches_built_configs() {
        let mut c = TrialConfig {
            hidden: vec![4],
            ..TrialConfig::default()
        };
        c.gradcheck.layer = GradCheckLayer::Linear(3);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "gradcheck.layer: no layer \"linear3\"; this net has linear1 … linear2"
        );
        c.batch_size = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "batch_size: must be a positive integer, got 0"
        );
        assert!(TrialConfig::default().validate().is_ok());
        assert_eq!(ConfigError::new("x", "a\nb.").to_string(), "x: a; b");
    }
}
