//! The values of the structured keys: [`Init`], [`Regularization`], [`Optimizer`] and
//! the gradient check ([`GradCheckLayer`], [`GradCheckConfig`]), with their parsers and
//! range checks.

use super::canonical::toml_float;
use super::parse::{
    ConfigError, at, check_count, check_keys, check_keys_with, expect_array, expect_number,
    expect_str, expect_table, fmt_num, join_index, join_key, parse_count,
};
use crate::limits::{self, MAX_EPS, MAX_LR, MAX_PENALTY, check_float_max};
use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use toml::Value;

/// The keys of an `optimizer` table of kind `sgd`.
pub const SGD_KEYS: [&str; 4] = ["kind", "lr", "momentum", "weight_decay"];

/// The keys of an `optimizer` table of kind `adam`.
pub const ADAM_KEYS: [&str; 5] = ["kind", "lr", "betas", "eps", "weight_decay"];

/// The keys of the `[gradcheck]` table.
pub const GRADCHECK_KEYS: [&str; 2] = ["layer", "samples"];

/// Declares a name enum: variants with their names, `ALL`, `name()`, `Display`,
/// `FromStr` (the error lists the names).
macro_rules! names {
    (
        $(#[doc = $doc:literal])+
        $ty:ident, $what:literal {
            $( $(#[doc = $vdoc:literal])+ $variant:ident = $name:literal, )+
        }
    ) => {
        $(#[doc = $doc])+
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $ty {
            $( $(#[doc = $vdoc])+ $variant, )+
        }

        impl $ty {
            /// Every value, in the order listed to users.
            pub const ALL: &[$ty] = &[$($ty::$variant),+];

            /// The name users write in trial files.
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name,)+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
                    let names: Vec<&str> = $ty::ALL.iter().map(|v| v.name()).collect();
                    format!(concat!("unknown ", $what, " \"{}\"; expected one of {}"), s, names.join(", "))
                })
            }
        }
    };
}

names! {
    /// How pixels reach the first layer. `standardize` (the default): scaled to [0, 1],
    /// then per channel `(x − mean)/std` with the training split's statistics, as
    /// `transforms.Normalize(mean, std)` after `ToTensor()`. It is the default because
    /// every trial before this key existed was trained that way (their keys and results
    /// stay valid), and because centred inputs let deep saturating nets leave their
    /// plateau sooner. `none`: [0, 1] pixels, as `ToTensor()` alone gives them (what the
    /// study and many PyTorch scripts feed).
    InputNorm, "input_norm" {
        /// Per-channel standardisation with the training split's mean and std.
        Standardize = "standardize",
        /// Pixels scaled to [0, 1] only.
        None = "none",
    }
}

names! {
    /// Which Linear layers `init` applies to. `all` (the default): every Linear layer,
    /// the output layer included — what PyTorch users write
    /// (`for m in model.modules(): if isinstance(m, nn.Linear): init(m.weight)`, or
    /// `model.apply(init_fn)`), and what gradsweep always did. `hidden`: the hidden
    /// layers only; the output layer keeps `nn.Linear`'s default init.
    InitScope, "init_scope" {
        /// Every Linear layer, the output layer included.
        All = "all",
        /// The hidden Linear layers; the output layer keeps PyTorch's default.
        Hidden = "hidden",
    }
}

/// Weight initialisation of the Linear layers, as PyTorch's `nn.init` schemes.
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
    } else if !(x.is_finite() && x >= 0.0) {
        Err(format!(
            "{kind} strength must be a finite number >= 0, got {}",
            fmt_num(x)
        ))
    } else if x > MAX_PENALTY {
        Err(format!(
            "{kind} strength {}; the limit is {} (limits::MAX_PENALTY)",
            fmt_num(x),
            fmt_num(MAX_PENALTY)
        ))
    } else {
        Ok(())
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
                check_lr(&p("lr"), lr)?;
                at(&p("momentum"), check_fraction(momentum))?;
                check_weight_decay(&p("weight_decay"), weight_decay)?;
            }
            Optimizer::Adam {
                lr,
                betas,
                eps,
                weight_decay,
            } => {
                check_lr(&p("lr"), lr)?;
                at(&join_index(&p("betas"), 0), check_fraction(betas.0))?;
                at(&join_index(&p("betas"), 1), check_fraction(betas.1))?;
                at(&p("eps"), check_positive_finite(eps))?;
                check_float_max(&p("eps"), eps, MAX_EPS, "MAX_EPS")?;
                check_weight_decay(&p("weight_decay"), weight_decay)?;
            }
        }
        Ok(())
    }

    /// The inline TOML table, every parameter written: the canonical text of
    /// `optimizer`.
    pub(crate) fn to_inline_toml(self) -> String {
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
    /// Sampled entries checked per layer (> 0, at most
    /// [`limits::MAX_GRADCHECK_SAMPLES`]).
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

impl GradCheckConfig {
    /// The limit on `samples`.
    pub const SAMPLES_LIMIT: limits::Limit = limits::limit!(MAX_GRADCHECK_SAMPLES, "entries");

    /// Checks `samples` (positive, within [`limits::MAX_GRADCHECK_SAMPLES`]); `path` is
    /// the table's own path (`gradcheck`). Whether `layer` exists depends on `hidden`
    /// and is checked by [`super::TrialConfig::validate`].
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        check_count(
            &join_key(path, "samples"),
            self.samples as u64,
            &Self::SAMPLES_LIMIT,
        )
    }
}

// Range checks shared by the parsers and the validation of built values.

pub(crate) fn check_fraction(x: f64) -> Result<(), String> {
    if (0.0..1.0).contains(&x) {
        Ok(())
    } else {
        Err(format!("must be in [0, 1), got {}", fmt_num(x)))
    }
}

pub(crate) fn check_positive_finite(x: f64) -> Result<(), String> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(format!(
            "must be a positive finite number, got {}",
            fmt_num(x)
        ))
    }
}

pub(crate) fn check_non_negative_finite(x: f64) -> Result<(), String> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(format!("must be a finite number >= 0, got {}", fmt_num(x)))
    }
}

/// A learning rate: finite, > 0, at most [`MAX_LR`].
fn check_lr(path: &str, lr: f64) -> Result<(), ConfigError> {
    at(path, check_positive_finite(lr))?;
    check_float_max(path, lr, MAX_LR, "MAX_LR")
}

/// A weight decay: finite, >= 0, at most [`MAX_PENALTY`].
fn check_weight_decay(path: &str, x: f64) -> Result<(), ConfigError> {
    at(path, check_non_negative_finite(x))?;
    check_float_max(path, x, MAX_PENALTY, "MAX_PENALTY")
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
/// exists depends on `hidden` and is checked by [`super::TrialConfig::validate`].
pub fn parse_gradcheck(value: &Value, path: &str) -> Result<GradCheckConfig, ConfigError> {
    let table = expect_table(value, path)?;
    check_keys(table, path, &GRADCHECK_KEYS)?;
    let mut config = GradCheckConfig::default();
    if let Some(v) = table.get("layer") {
        config.layer = parse_gradcheck_layer(v, &join_key(path, "layer"))?;
    }
    if let Some(v) = table.get("samples") {
        config.samples = parse_count(
            v,
            &join_key(path, "samples"),
            &GradCheckConfig::SAMPLES_LIMIT,
        )? as usize;
    }
    Ok(config)
}

/// `gradcheck.layer`: `"all"`, `"none"` or `"linear<N>"` with N ≥ 1.
pub fn parse_gradcheck_layer(value: &Value, path: &str) -> Result<GradCheckLayer, ConfigError> {
    at(path, GradCheckLayer::from_str(expect_str(value, path)?))
}
