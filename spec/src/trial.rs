//! Trial files: the TOML description of one training run, parsed and validated.
//!
//! A trial file names a dataset and every hyper-parameter of one MLP training run (see
//! `DESIGN.md`, "The sweep spec (TOML)" and "Training semantics"). Every key but
//! `dataset` is optional; [`TrialConfig::default`] holds the defaults.
//!
//! The text is parsed into a [`toml::Table`] and then walked by hand, one small parser
//! per field (`parse_activation`, `parse_optimizer`, …), each of the form
//! `fn(&toml::Value, path: &str) -> Result<T, ConfigError>`. The sweep-spec parser reuses
//! them on every element of a `[grid]` list, passing paths such as
//! `grid.activation[2]`, or calls [`TrialConfig::set_field`] directly.
//!
//! Every error is a [`ConfigError`]: the key path and the reason, on one line, e.g.
//! `optimizer.lr: must be a positive finite number, got -0.1`. Unknown keys are refused
//! at every level, with the list of known keys.

pub use crate::activation::Activation;
use serde::{Serialize, Serializer};
use std::fmt::{self, Write as _};
use std::path::Path;
use std::str::FromStr;
use toml::{Table, Value};

/// The keys of a trial file, in canonical order.
pub const TRIAL_KEYS: [&str; 14] = [
    "name",
    "dataset",
    "val_fraction",
    "epochs",
    "batch_size",
    "eval_batch_size",
    "seed",
    "hidden",
    "activation",
    "init",
    "batchnorm",
    "regularization",
    "optimizer",
    "gradcheck",
];

/// The keys of an `optimizer` table of kind `sgd`.
pub const SGD_KEYS: [&str; 4] = ["kind", "lr", "momentum", "weight_decay"];

/// The keys of an `optimizer` table of kind `adam`.
pub const ADAM_KEYS: [&str; 5] = ["kind", "lr", "betas", "eps", "weight_decay"];

/// The keys of the `[gradcheck]` table.
pub const GRADCHECK_KEYS: [&str; 2] = ["layer", "samples"];

// ---------------------------------------------------------------------------------------
// Errors and paths
// ---------------------------------------------------------------------------------------

/// A trial-file error: where (the key path, possibly prefixed with the file name) and why.
///
/// Displays as one line, `"{path}: {message}"`, or just the message when the path is
/// empty (e.g. a TOML syntax error in a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path (`optimizer.lr`, `hidden[1]`), prefixed by the file name when the
    /// error came from [`TrialConfig::from_file`] (`trial.toml: optimizer.lr`). May be
    /// empty.
    pub path: String,
    /// The reason, one line, without a trailing period.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`. Line breaks in `message` are folded into `"; "` so that the
    /// error always displays as one line.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: one_line(&message.into()),
        }
    }

    /// The same error, located in `file`: its path becomes `"<file>: <key path>"` (or just
    /// the file name when the key path is empty).
    pub fn in_file(self, file: &Path) -> Self {
        let file = file.display().to_string();
        let path = if self.path.is_empty() {
            file
        } else {
            format!("{file}: {}", self.path)
        };
        ConfigError {
            path,
            message: self.message,
        }
    }

    fn missing(path: &str) -> Self {
        ConfigError::new(path, "missing required key")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Folds `s` into one trimmed line without a trailing period.
fn one_line(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    joined.strip_suffix('.').unwrap_or(&joined).to_owned()
}

/// The path of `key` inside the table at `path` (`optimizer` + `lr` → `optimizer.lr`).
pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The path of element `index` of the array at `path` (`hidden` + 1 → `hidden[1]`).
pub fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// A TOML value's type with its article, for messages: `"a string"`, `"an integer"`.
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// The error for a value of the wrong type: `expected {expected}, got a string`.
pub fn type_error(path: &str, expected: &str, got: &Value) -> ConfigError {
    ConfigError::new(path, format!("expected {expected}, got {}", describe(got)))
}

/// Refuses any key of `table` (at `path`) that is not in `known`:
/// `{path}.{key}: unknown key; expected one of …`.
pub fn check_keys(table: &Table, path: &str, known: &[&str]) -> Result<(), ConfigError> {
    check_keys_with(table, path, known, "unknown key")
}

fn check_keys_with(
    table: &Table,
    path: &str,
    known: &[&str],
    reason: &str,
) -> Result<(), ConfigError> {
    match table.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(ConfigError::new(
            join_key(path, key),
            format!("{reason}; expected one of {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// Parses TOML text into a table. A syntax error becomes one line:
/// `line 3, column 9: <toml's message>`.
pub fn parse_toml_table(text: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| syntax_error(text, &e))
}

fn syntax_error(text: &str, err: &toml::de::Error) -> ConfigError {
    let message = one_line(err.message());
    let message = if message.is_empty() {
        "invalid TOML".to_owned()
    } else {
        message
    };
    match err.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            // toml says only "duplicate key"; name it.
            let message = match text.get(span.clone()) {
                Some(key) if message == "duplicate key" && !key.contains('\n') => {
                    format!("duplicate key {}", key.trim())
                }
                _ => message,
            };
            ConfigError::new("", format!("line {line}, column {column}: {message}"))
        }
        None => ConfigError::new("", message),
    }
}

/// 1-based line and column (in characters) of byte offset `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Formats a float for messages and canonical text: the shortest representation that
/// reads back exactly, without a trailing `.0` (`1`, `0.1`, `1e-5`, `0.0001`).
fn fmt_num(x: f64) -> String {
    let s = format!("{x:?}");
    match s.strip_suffix(".0") {
        Some(stripped) => stripped.to_owned(),
        None => s,
    }
}

// ---------------------------------------------------------------------------------------
// Typed value extraction
// ---------------------------------------------------------------------------------------

fn expect_str<'a>(value: &'a Value, path: &str) -> Result<&'a str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| type_error(path, "a string", value))
}

fn expect_int(value: &Value, path: &str) -> Result<i64, ConfigError> {
    value
        .as_integer()
        .ok_or_else(|| type_error(path, "an integer", value))
}

/// A float or an integer (`lr = 1` is allowed).
fn expect_number(value: &Value, path: &str) -> Result<f64, ConfigError> {
    match value {
        Value::Float(x) => Ok(*x),
        Value::Integer(i) => Ok(*i as f64),
        other => Err(type_error(path, "a number", other)),
    }
}

fn expect_bool(value: &Value, path: &str) -> Result<bool, ConfigError> {
    value
        .as_bool()
        .ok_or_else(|| type_error(path, "a boolean", value))
}

fn expect_array<'a>(value: &'a Value, path: &str) -> Result<&'a [Value], ConfigError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| type_error(path, "an array", value))
}

fn expect_table<'a>(value: &'a Value, path: &str) -> Result<&'a Table, ConfigError> {
    value
        .as_table()
        .ok_or_else(|| type_error(path, "a table", value))
}

// ---------------------------------------------------------------------------------------
// Value checks, shared by the parsers and `TrialConfig::validate`
// ---------------------------------------------------------------------------------------

fn check_fraction(x: f64) -> Result<(), String> {
    if (0.0..1.0).contains(&x) {
        Ok(())
    } else {
        Err(format!("must be in [0, 1), got {}", fmt_num(x)))
    }
}

fn check_positive_finite(x: f64) -> Result<(), String> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(format!(
            "must be a positive finite number, got {}",
            fmt_num(x)
        ))
    }
}

fn check_non_negative_finite(x: f64) -> Result<(), String> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(format!("must be a finite number >= 0, got {}", fmt_num(x)))
    }
}

fn check_positive_count(n: usize) -> Result<(), String> {
    if n > 0 {
        Ok(())
    } else {
        Err("must be a positive integer, got 0".to_owned())
    }
}

fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else if s.chars().any(char::is_control) {
        Err("must not contain control characters (line breaks, tabs)".to_owned())
    } else {
        Ok(())
    }
}

fn check_dataset(s: &str) -> Result<(), String> {
    match s.split_once(':') {
        Some((kind, _)) if !kind.is_empty() => Ok(()),
        _ => Err(format!(
            "expected \"<kind>:<source>\" (synthetic:<name>, cifar10:<dir> or gurmukhi:<dir>), got \"{s}\""
        )),
    }
}

/// Wraps a `Result<_, String>` check with the key path.
fn at<T>(path: &str, r: Result<T, String>) -> Result<T, ConfigError> {
    r.map_err(|m| ConfigError::new(path, m))
}

// ---------------------------------------------------------------------------------------
// Field parsers
// ---------------------------------------------------------------------------------------

/// A positive integer (`batch_size`, `gradcheck.samples`, each `hidden` entry):
/// `must be a positive integer, got 0`.
pub fn parse_positive_usize(value: &Value, path: &str) -> Result<usize, ConfigError> {
    let i = expect_int(value, path)?;
    if i <= 0 {
        return Err(ConfigError::new(
            path,
            format!("must be a positive integer, got {i}"),
        ));
    }
    usize::try_from(i)
        .map_err(|_| ConfigError::new(path, format!("must be at most {}, got {i}", usize::MAX)))
}

/// `name`: a non-empty string without control characters.
pub fn parse_name(value: &Value, path: &str) -> Result<String, ConfigError> {
    let s = expect_str(value, path)?;
    at(path, check_name(s))?;
    Ok(s.to_owned())
}

/// `dataset`: `"<kind>:<source>"`, e.g. `synthetic:glyphs`, `cifar10:/data/cifar`. Only
/// the shape is checked here; the data module resolves it.
pub fn parse_dataset(value: &Value, path: &str) -> Result<String, ConfigError> {
    let s = expect_str(value, path)?;
    at(path, check_dataset(s))?;
    Ok(s.to_owned())
}

/// `val_fraction`: a number in [0, 1).
pub fn parse_val_fraction(value: &Value, path: &str) -> Result<f64, ConfigError> {
    let x = expect_number(value, path)?;
    at(path, check_fraction(x))?;
    Ok(x)
}

/// `epochs`: a positive integer that fits in a `u32`.
pub fn parse_epochs(value: &Value, path: &str) -> Result<u32, ConfigError> {
    let i = expect_int(value, path)?;
    if i <= 0 {
        return Err(ConfigError::new(
            path,
            format!("must be a positive integer, got {i}"),
        ));
    }
    u32::try_from(i)
        .map_err(|_| ConfigError::new(path, format!("must be at most {}, got {i}", u32::MAX)))
}

/// `seed`: a non-negative integer.
pub fn parse_seed(value: &Value, path: &str) -> Result<u64, ConfigError> {
    let i = expect_int(value, path)?;
    u64::try_from(i)
        .map_err(|_| ConfigError::new(path, format!("must be a non-negative integer, got {i}")))
}

/// `hidden`: an array of positive integers, possibly empty (logistic regression).
pub fn parse_hidden(value: &Value, path: &str) -> Result<Vec<usize>, ConfigError> {
    expect_array(value, path)?
        .iter()
        .enumerate()
        .map(|(i, v)| parse_positive_usize(v, &join_index(path, i)))
        .collect()
}

/// `activation`: one of `sigmoid`, `tanh`, `relu`, `leaky_relu`, `elu`.
pub fn parse_activation(value: &Value, path: &str) -> Result<Activation, ConfigError> {
    at(path, Activation::from_str(expect_str(value, path)?))
}

/// `init`: one of `default`, `xavier_uniform`, `xavier_normal`, `he_uniform`,
/// `he_normal`.
pub fn parse_init(value: &Value, path: &str) -> Result<Init, ConfigError> {
    at(path, Init::from_str(expect_str(value, path)?))
}

/// `batchnorm`: a boolean.
pub fn parse_batchnorm(value: &Value, path: &str) -> Result<bool, ConfigError> {
    expect_bool(value, path)
}

/// `regularization`: `"none"` or terms joined by `+` (`"l2:1e-4+dropout:0.2"`).
pub fn parse_regularization(value: &Value, path: &str) -> Result<Regularization, ConfigError> {
    at(path, Regularization::from_str(expect_str(value, path)?))
}

/// `optimizer`: a table with `kind` (`sgd`, the default, or `adam`) and that kind's
/// parameters; parameters left out take the kind's defaults.
pub fn parse_optimizer(value: &Value, path: &str) -> Result<Optimizer, ConfigError> {
    let table = expect_table(value, path)?;
    let kind_path = join_key(path, "kind");
    let kind = match table.get("kind") {
        Some(k) => expect_str(k, &kind_path)?,
        None => "sgd",
    };
    let (mut optimizer, keys): (Optimizer, &[&str]) = match kind {
        "sgd" => (Optimizer::default_sgd(), &SGD_KEYS),
        "adam" => (Optimizer::default_adam(), &ADAM_KEYS),
        other => {
            return Err(ConfigError::new(
                kind_path,
                format!(
                    "unknown optimizer \"{other}\"; expected one of {}",
                    Optimizer::KINDS.join(", ")
                ),
            ));
        }
    };
    check_keys_with(
        table,
        path,
        keys,
        &format!("unknown key for kind \"{kind}\""),
    )?;
    let number = |key: &str, slot: &mut f64| -> Result<(), ConfigError> {
        if let Some(v) = table.get(key) {
            *slot = expect_number(v, &join_key(path, key))?;
        }
        Ok(())
    };
    match &mut optimizer {
        Optimizer::Sgd {
            lr,
            momentum,
            weight_decay,
        } => {
            number("lr", lr)?;
            number("momentum", momentum)?;
            number("weight_decay", weight_decay)?;
        }
        Optimizer::Adam {
            lr,
            betas,
            eps,
            weight_decay,
        } => {
            number("lr", lr)?;
            if let Some(v) = table.get("betas") {
                *betas = parse_betas(v, &join_key(path, "betas"))?;
            }
            number("eps", eps)?;
            number("weight_decay", weight_decay)?;
        }
    }
    optimizer.validate(path)?;
    Ok(optimizer)
}

fn parse_betas(value: &Value, path: &str) -> Result<(f64, f64), ConfigError> {
    match expect_array(value, path)? {
        [b1, b2] => Ok((
            expect_number(b1, &join_index(path, 0))?,
            expect_number(b2, &join_index(path, 1))?,
        )),
        other => Err(ConfigError::new(
            path,
            format!(
                "expected an array of two numbers, got {} element{}",
                other.len(),
                if other.len() == 1 { "" } else { "s" }
            ),
        )),
    }
}

/// `gradcheck`: a table with `layer` and `samples`, both optional. Whether the layer
/// exists depends on `hidden` and is checked by [`TrialConfig::validate`].
pub fn parse_gradcheck(value: &Value, path: &str) -> Result<GradCheckConfig, ConfigError> {
    let table = expect_table(value, path)?;
    check_keys(table, path, &GRADCHECK_KEYS)?;
    let mut config = GradCheckConfig::default();
    if let Some(v) = table.get("layer") {
        config.layer = parse_gradcheck_layer(v, &join_key(path, "layer"))?;
    }
    if let Some(v) = table.get("samples") {
        config.samples = parse_positive_usize(v, &join_key(path, "samples"))?;
    }
    Ok(config)
}

/// `gradcheck.layer`: `"all"`, `"none"` or `"linear<N>"` with N ≥ 1.
pub fn parse_gradcheck_layer(value: &Value, path: &str) -> Result<GradCheckLayer, ConfigError> {
    at(path, GradCheckLayer::from_str(expect_str(value, path)?))
}

// ---------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------

/// Weight initialisation of the Linear layers (see `DESIGN.md`, "Training semantics").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// PyTorch's `nn.Linear` default: W, b ~ U(±1/√fan_in).
    #[default]
    Default,
    /// W ~ U(±√(6/(fan_in+fan_out))), b = 0.
    XavierUniform,
    /// W ~ N(0, 2/(fan_in+fan_out)), b = 0.
    XavierNormal,
    /// W ~ U(±√(6/fan_in)), b = 0.
    HeUniform,
    /// W ~ N(0, 2/fan_in), b = 0.
    HeNormal,
}

impl Init {
    /// Every initialisation, in the order listed to users.
    pub const ALL: [Init; 5] = [
        Init::Default,
        Init::XavierUniform,
        Init::XavierNormal,
        Init::HeUniform,
        Init::HeNormal,
    ];

    /// The name users write in trial files.
    pub fn name(self) -> &'static str {
        match self {
            Init::Default => "default",
            Init::XavierUniform => "xavier_uniform",
            Init::XavierNormal => "xavier_normal",
            Init::HeUniform => "he_uniform",
            Init::HeNormal => "he_normal",
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Init {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Init::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Init::ALL.iter().map(|i| i.name()).collect();
                format!("unknown init \"{s}\"; expected one of {}", names.join(", "))
            })
    }
}

/// Regularisation: any of an L1 penalty, an L2 penalty and dropout, each at most once.
///
/// Written (and displayed, and serialised) as `"none"` or as terms joined by `+` in the
/// fixed order l1, l2, dropout: `"l1:1e-5+l2:0.0001+dropout:0.2"`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Regularization {
    /// λ of the L1 penalty λ·Σ|w| over Linear weights (finite, ≥ 0).
    pub l1: Option<f64>,
    /// λ of the L2 penalty λ·Σw² over Linear weights (finite, ≥ 0).
    pub l2: Option<f64>,
    /// Dropout probability after each hidden activation, in [0, 1).
    pub dropout: Option<f64>,
}

impl Regularization {
    /// No regularisation.
    pub const NONE: Regularization = Regularization {
        l1: None,
        l2: None,
        dropout: None,
    };

    /// Whether no term is set.
    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// Checks every term's range; the error is a reason without a path.
    pub fn check(&self) -> Result<(), String> {
        for (kind, value) in [("l1", self.l1), ("l2", self.l2), ("dropout", self.dropout)] {
            if let Some(x) = value {
                check_regularization_term(kind, x)?;
            }
        }
        Ok(())
    }
}

const REGULARIZATION_TERMS: &str = "expected \"none\" or l1:<λ>, l2:<λ>, dropout:<p> joined by '+'";

fn check_regularization_term(kind: &str, x: f64) -> Result<(), String> {
    if kind == "dropout" {
        if (0.0..1.0).contains(&x) {
            Ok(())
        } else {
            Err(format!(
                "dropout probability {} is outside [0, 1)",
                fmt_num(x)
            ))
        }
    } else if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(format!(
            "{kind} strength must be a finite number >= 0, got {}",
            fmt_num(x)
        ))
    }
}

impl fmt::Display for Regularization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = [("l1", self.l1), ("l2", self.l2), ("dropout", self.dropout)]
            .into_iter()
            .filter_map(|(kind, value)| value.map(|x| format!("{kind}:{}", fmt_num(x))))
            .collect();
        if terms.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&terms.join("+"))
        }
    }
}

impl FromStr for Regularization {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "none" {
            return Ok(Self::NONE);
        }
        if s.is_empty() {
            return Err(format!("empty; {REGULARIZATION_TERMS}"));
        }
        let mut r = Self::NONE;
        for term in s.split('+').map(str::trim) {
            if term.is_empty() {
                return Err(format!("empty term in \"{s}\"; {REGULARIZATION_TERMS}"));
            }
            let Some((kind, number)) = term.split_once(':') else {
                return Err(format!("bad term \"{term}\"; {REGULARIZATION_TERMS}"));
            };
            let (kind, number) = (kind.trim(), number.trim());
            let slot = match kind {
                "l1" => &mut r.l1,
                "l2" => &mut r.l2,
                "dropout" => &mut r.dropout,
                _ => return Err(format!("unknown term \"{term}\"; {REGULARIZATION_TERMS}")),
            };
            if slot.is_some() {
                return Err(format!("{kind} given more than once"));
            }
            let x: f64 = number
                .parse()
                .map_err(|_| format!("\"{number}\" in \"{term}\" is not a number"))?;
            check_regularization_term(kind, x)?;
            *slot = Some(x);
        }
        Ok(r)
    }
}

impl Serialize for Regularization {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The optimiser and its hyper-parameters. Serialises as a table with `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Optimizer {
    /// SGD with momentum and (coupled, PyTorch-style) weight decay.
    Sgd {
        /// Learning rate (finite, > 0).
        lr: f64,
        /// Momentum in [0, 1).
        momentum: f64,
        /// Weight decay (finite, ≥ 0).
        weight_decay: f64,
    },
    /// Adam (PyTorch's `torch.optim.Adam`).
    Adam {
        /// Learning rate (finite, > 0).
        lr: f64,
        /// (β1, β2), each in [0, 1).
        betas: (f64, f64),
        /// ε added to the denominator (finite, > 0).
        eps: f64,
        /// Weight decay (finite, ≥ 0).
        weight_decay: f64,
    },
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::default_sgd()
    }
}

impl Optimizer {
    /// The optimiser kinds, as written in `optimizer.kind`.
    pub const KINDS: [&str; 2] = ["sgd", "adam"];

    /// SGD with lr 0.01, momentum 0.9, no weight decay.
    pub fn default_sgd() -> Self {
        Optimizer::Sgd {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
        }
    }

    /// Adam with lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn default_adam() -> Self {
        Optimizer::Adam {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// `"sgd"` or `"adam"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Optimizer::Sgd { .. } => "sgd",
            Optimizer::Adam { .. } => "adam",
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => lr,
        }
    }

    /// The weight decay.
    pub fn weight_decay(&self) -> f64 {
        match *self {
            Optimizer::Sgd { weight_decay, .. } | Optimizer::Adam { weight_decay, .. } => {
                weight_decay
            }
        }
    }

    /// Checks every parameter's range; `path` is the optimiser's own path (`optimizer`).
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let p = |key: &str| join_key(path, key);
        match *self {
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
            } => {
                at(&p("lr"), check_positive_finite(lr))?;
                at(&p("momentum"), check_fraction(momentum))?;
                at(&p("weight_decay"), check_non_negative_finite(weight_decay))?;
            }
            Optimizer::Adam {
                lr,
                betas,
                eps,
                weight_decay,
            } => {
                at(&p("lr"), check_positive_finite(lr))?;
                at(&join_index(&p("betas"), 0), check_fraction(betas.0))?;
                at(&join_index(&p("betas"), 1), check_fraction(betas.1))?;
                at(&p("eps"), check_positive_finite(eps))?;
                at(&p("weight_decay"), check_non_negative_finite(weight_decay))?;
            }
        }
        Ok(())
    }

    fn to_inline_toml(self) -> String {
        match self {
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
            } => format!(
                "{{ kind = \"sgd\", lr = {}, momentum = {}, weight_decay = {} }}",
                toml_float(lr),
                toml_float(momentum),
                toml_float(weight_decay)
            ),
            Optimizer::Adam {
                lr,
                betas,
                eps,
                weight_decay,
            } => format!(
                "{{ kind = \"adam\", lr = {}, betas = [{}, {}], eps = {}, weight_decay = {} }}",
                toml_float(lr),
                toml_float(betas.0),
                toml_float(betas.1),
                toml_float(eps),
                toml_float(weight_decay)
            ),
        }
    }
}

/// Which Linear layers the gradient check covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GradCheckLayer {
    /// Every Linear layer.
    #[default]
    All,
    /// No gradient check.
    None,
    /// One layer, 1-based as the user wrote it (`linear3` → `Linear(3)`).
    Linear(usize),
}

impl GradCheckLayer {
    /// Checks that the layer exists in a net of `num_layers` Linear layers.
    pub fn check(&self, num_layers: usize) -> Result<(), String> {
        match *self {
            GradCheckLayer::Linear(n) if n == 0 || n > num_layers => Err(format!(
                "no layer \"linear{n}\"; {}",
                if num_layers == 1 {
                    "this net has only linear1".to_owned()
                } else {
                    format!("this net has linear1 … linear{num_layers}")
                }
            )),
            _ => Ok(()),
        }
    }

    /// The 0-based indices of the checked layers in a net of `num_layers` Linear layers
    /// (a layer that does not exist yields nothing).
    pub fn indices(&self, num_layers: usize) -> Vec<usize> {
        match *self {
            GradCheckLayer::All => (0..num_layers).collect(),
            GradCheckLayer::None => Vec::new(),
            GradCheckLayer::Linear(n) if n >= 1 && n <= num_layers => vec![n - 1],
            GradCheckLayer::Linear(_) => Vec::new(),
        }
    }
}

impl fmt::Display for GradCheckLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GradCheckLayer::All => f.write_str("all"),
            GradCheckLayer::None => f.write_str("none"),
            GradCheckLayer::Linear(n) => write!(f, "linear{n}"),
        }
    }
}

impl FromStr for GradCheckLayer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => return Ok(GradCheckLayer::All),
            "none" => return Ok(GradCheckLayer::None),
            _ => {}
        }
        let digits = s.strip_prefix("linear").unwrap_or("");
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        match digits.parse::<usize>() {
            Ok(0) if canonical => Err(format!(
                "no layer \"{s}\"; layers are numbered from linear1"
            )),
            Ok(n) if canonical => Ok(GradCheckLayer::Linear(n)),
            _ => Err(format!(
                "unknown layer \"{s}\"; expected \"all\", \"none\" or \"linear<N>\""
            )),
        }
    }
}

impl Serialize for GradCheckLayer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The `[gradcheck]` table: which layers to check and how many entries of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GradCheckConfig {
    /// Which Linear layers to check.
    pub layer: GradCheckLayer,
    /// Sampled entries checked per layer (> 0).
    pub samples: usize,
}

impl Default for GradCheckConfig {
    fn default() -> Self {
        GradCheckConfig {
            layer: GradCheckLayer::All,
            samples: 64,
        }
    }
}

/// One training run, as described by a trial file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialConfig {
    /// A label for tables and logs.
    pub name: String,
    /// `"<kind>:<source>"`: `synthetic:<name>`, `cifar10:<dir>` or `gurmukhi:<dir>`.
    pub dataset: String,
    /// Fraction of the training split held out for validation, in [0, 1).
    pub val_fraction: f64,
    /// Number of epochs (> 0).
    pub epochs: u32,
    /// Training mini-batch size (> 0).
    pub batch_size: usize,
    /// Batch size for evaluation passes (> 0).
    pub eval_batch_size: usize,
    /// Seed of every random choice in the run.
    pub seed: u64,
    /// Hidden layer widths; empty means logistic regression.
    pub hidden: Vec<usize>,
    /// Activation after each hidden layer.
    pub activation: Activation,
    /// Weight initialisation of the Linear layers.
    pub init: Init,
    /// Whether each hidden Linear layer is followed by batch normalisation.
    pub batchnorm: bool,
    /// L1 / L2 penalties and dropout.
    pub regularization: Regularization,
    /// The optimiser.
    pub optimizer: Optimizer,
    /// The gradient check.
    pub gradcheck: GradCheckConfig,
}

impl Default for TrialConfig {
    fn default() -> Self {
        TrialConfig {
            name: "trial".to_owned(),
            dataset: "synthetic:glyphs".to_owned(),
            val_fraction: 0.1,
            epochs: 10,
            batch_size: 128,
            eval_batch_size: 1000,
            seed: 0,
            hidden: vec![256, 128],
            activation: Activation::Relu,
            init: Init::Default,
            batchnorm: false,
            regularization: Regularization::NONE,
            optimizer: Optimizer::default_sgd(),
            gradcheck: GradCheckConfig::default(),
        }
    }
}

impl TrialConfig {
    /// Parses and validates trial-file text.
    pub fn from_toml_str(s: &str) -> Result<TrialConfig, ConfigError> {
        TrialConfig::from_table(&parse_toml_table(s)?)
    }

    /// Reads, parses and validates a trial file. Every error names the file:
    /// `trial.toml: optimizer.lr: must be a positive finite number, got -0.1`.
    pub fn from_file(path: &Path) -> Result<TrialConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read file: {e}")).in_file(path))?;
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
    /// on its own; call [`TrialConfig::validate`] once every field is set.
    pub fn set_field(&mut self, key: &str, value: &Value, path: &str) -> Result<(), ConfigError> {
        match key {
            "name" => self.name = parse_name(value, path)?,
            "dataset" => self.dataset = parse_dataset(value, path)?,
            "val_fraction" => self.val_fraction = parse_val_fraction(value, path)?,
            "epochs" => self.epochs = parse_epochs(value, path)?,
            "batch_size" => self.batch_size = parse_positive_usize(value, path)?,
            "eval_batch_size" => self.eval_batch_size = parse_positive_usize(value, path)?,
            "seed" => self.seed = parse_seed(value, path)?,
            "hidden" => self.hidden = parse_hidden(value, path)?,
            "activation" => self.activation = parse_activation(value, path)?,
            "init" => self.init = parse_init(value, path)?,
            "batchnorm" => self.batchnorm = parse_batchnorm(value, path)?,
            "regularization" => self.regularization = parse_regularization(value, path)?,
            "optimizer" => self.optimizer = parse_optimizer(value, path)?,
            "gradcheck" => self.gradcheck = parse_gradcheck(value, path)?,
            _ => {
                return Err(ConfigError::new(
                    path,
                    format!("unknown key; expected one of {}", TRIAL_KEYS.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// Checks every field's range and the fields' agreement (the gradient-check layer
    /// must exist). Errors name the field's key path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at("name", check_name(&self.name))?;
        at("dataset", check_dataset(&self.dataset))?;
        at("val_fraction", check_fraction(self.val_fraction))?;
        at("epochs", check_positive_count(self.epochs as usize))?;
        at("batch_size", check_positive_count(self.batch_size))?;
        at(
            "eval_batch_size",
            check_positive_count(self.eval_batch_size),
        )?;
        for (i, &width) in self.hidden.iter().enumerate() {
            at(&join_index("hidden", i), check_positive_count(width))?;
        }
        at("regularization", self.regularization.check())?;
        self.optimizer.validate("optimizer")?;
        at(
            "gradcheck.samples",
            check_positive_count(self.gradcheck.samples),
        )?;
        at(
            "gradcheck.layer",
            self.gradcheck.layer.check(self.num_linear_layers()),
        )?;
        Ok(())
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

    /// The canonical text of one field, as tables and axis labels show it: strings
    /// without quotes (`relu`, `l2:0.0001`), everything else as its TOML literal
    /// (`[512, 256]`, `true`, `{ kind = "sgd", lr = 0.01, … }`). `None` for an unknown
    /// key. Two values of a field are equal exactly when their texts are.
    pub fn field_text(&self, key: &str) -> Option<String> {
        Some(match key {
            "name" => self.name.clone(),
            "dataset" => self.dataset.clone(),
            "val_fraction" => toml_float(self.val_fraction),
            "epochs" => self.epochs.to_string(),
            "batch_size" => self.batch_size.to_string(),
            "eval_batch_size" => self.eval_batch_size.to_string(),
            "seed" => self.seed.to_string(),
            "hidden" => {
                let widths: Vec<String> = self.hidden.iter().map(usize::to_string).collect();
                format!("[{}]", widths.join(", "))
            }
            "activation" => self.activation.name().to_owned(),
            "init" => self.init.name().to_owned(),
            "batchnorm" => self.batchnorm.to_string(),
            "regularization" => self.regularization.to_string(),
            "optimizer" => self.optimizer.to_inline_toml(),
            "gradcheck" => format!(
                "{{ layer = \"{}\", samples = {} }}",
                self.gradcheck.layer, self.gradcheck.samples
            ),
            _ => return None,
        })
    }

    /// The canonical trial file: every key, in [`TRIAL_KEYS`] order, floats in their
    /// shortest exact form. Reads back to an equal config with
    /// [`TrialConfig::from_toml_str`] (for any config that passes
    /// [`TrialConfig::validate`] and whose seed fits in an `i64`, TOML's integer range).
    pub fn to_toml_string(&self) -> String {
        let hidden: Vec<String> = self.hidden.iter().map(usize::to_string).collect();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "name = {}\n\
             dataset = {}\n\
             val_fraction = {}\n\
             epochs = {}\n\
             batch_size = {}\n\
             eval_batch_size = {}\n\
             seed = {}\n\
             hidden = [{}]\n\
             activation = \"{}\"\n\
             init = \"{}\"\n\
             batchnorm = {}\n\
             regularization = \"{}\"\n\
             optimizer = {}\n\
             \n\
             [gradcheck]\n\
             layer = \"{}\"\n\
             samples = {}\n",
            toml_string(&self.name),
            toml_string(&self.dataset),
            toml_float(self.val_fraction),
            self.epochs,
            self.batch_size,
            self.eval_batch_size,
            self.seed,
            hidden.join(", "),
            self.activation.name(),
            self.init.name(),
            self.batchnorm,
            self.regularization,
            self.optimizer.to_inline_toml(),
            self.gradcheck.layer,
            self.gradcheck.samples,
        );
        out
    }
}

/// A TOML float literal that reads back exactly (`0.1`, `1e-5`, `1.0`, `nan`, `inf`).
fn toml_float(x: f64) -> String {
    if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        // Debug always has a '.' or an exponent, so it is a TOML float, not an integer.
        format!("{x:?}")
    }
}

/// A TOML basic string literal, quoted and escaped.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
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
             regularization, optimizer, gradcheck"
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
            "epochs: must be at most 4294967295, got 5000000000"
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
            err("val_fraction = 1"),
            "val_fraction: must be in [0, 1), got 1"
        );
        assert_eq!(
            err("val_fraction = 1.0"),
            "val_fraction: must be in [0, 1), got 1"
        );
        assert_eq!(
            err("val_fraction = -0.5"),
            "val_fraction: must be in [0, 1), got -0.5"
        );
        assert_eq!(
            err("val_fraction = nan"),
            "val_fraction: must be in [0, 1), got NaN"
        );
        assert_eq!(
            err("val_fraction = \"0.1\""),
            "val_fraction: expected a number, got a string"
        );
        assert_eq!(ok("val_fraction = 0").val_fraction, 0.0);
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
        for s in ["l1:3.3e-7", "l2:123456789.5", "dropout:0.999", "l1:0+l2:0"] {
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
