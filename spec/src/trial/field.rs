//! How each type of trial field is read from TOML, checked against its key's rule, and
//! written canonically. The key table ([`super::keys`]) gives each key a type and a
//! rule; this module says what the rule means for that type.

use super::canonical::{Canonical, toml_float};
use super::parse::{
    ConfigError, at, check_count, expect_array, expect_bool, expect_int, expect_number, expect_str,
    join_index, parse_count,
};
use super::values::{
    GradCheckConfig, Init, InitScope, InputNorm, Optimizer, Regularization, parse_gradcheck,
    parse_optimizer,
};
use crate::activation::Activation;
use crate::limits::Limit;
use std::str::FromStr;
use toml::Value;

/// A type a trial key can hold.
pub(crate) trait Field: Sized {
    /// What a key of this type adds to the type's own checks: its limits.
    type Rule;

    /// Reads and checks a value (the error names `path`).
    fn parse(value: &Value, path: &str, rule: &Self::Rule) -> Result<Self, ConfigError>;

    /// Checks a value already in a config (built in code, or set by `parse`).
    fn check(&self, path: &str, rule: &Self::Rule) -> Result<(), ConfigError>;

    /// The canonical text.
    fn canonical(&self) -> Canonical;
}

/// The rule of a string key: a length limit and a check of the text.
pub(crate) struct Text {
    /// The most bytes.
    pub max: Limit,
    /// The check of the text; the error is a reason without a path.
    pub check: fn(&str) -> Result<(), String>,
}

impl Field for String {
    type Rule = Text;

    fn parse(value: &Value, path: &str, rule: &Text) -> Result<Self, ConfigError> {
        let s = expect_str(value, path)?;
        // The length first: a long string is not echoed back in a message.
        rule.max.check(path, s.len() as u64)?;
        at(path, (rule.check)(s))?;
        Ok(s.to_owned())
    }

    fn check(&self, path: &str, rule: &Text) -> Result<(), ConfigError> {
        rule.max.check(path, self.len() as u64)?;
        at(path, (rule.check)(self))
    }

    fn canonical(&self) -> Canonical {
        Canonical::Quoted(self.clone())
    }
}

/// Counts: integers > 0 within a [`Limit`].
macro_rules! count_field {
    ($($ty:ty),*) => {$(
        impl Field for $ty {
            type Rule = Limit;

            fn parse(value: &Value, path: &str, rule: &Limit) -> Result<Self, ConfigError> {
                let n = parse_count(value, path, rule)?;
                <$ty>::try_from(n).map_err(|_| {
                    ConfigError::new(path, format!("must be at most {}, got {n}", <$ty>::MAX))
                })
            }

            fn check(&self, path: &str, rule: &Limit) -> Result<(), ConfigError> {
                check_count(path, *self as u64, rule)
            }

            fn canonical(&self) -> Canonical {
                Canonical::Literal(self.to_string())
            }
        }
    )*};
}
count_field!(u32, usize);

/// A seed: any non-negative TOML integer.
impl Field for u64 {
    type Rule = ();

    fn parse(value: &Value, path: &str, _: &()) -> Result<Self, ConfigError> {
        parse_seed(value, path)
    }

    fn check(&self, _: &str, _: &()) -> Result<(), ConfigError> {
        Ok(())
    }

    fn canonical(&self) -> Canonical {
        Canonical::Literal(self.to_string())
    }
}

/// `seed` and each element of a sweep's `seeds`: a non-negative integer.
pub fn parse_seed(value: &Value, path: &str) -> Result<u64, ConfigError> {
    let i = expect_int(value, path)?;
    u64::try_from(i)
        .map_err(|_| ConfigError::new(path, format!("must be a non-negative integer, got {i}")))
}

/// A float key's rule: the check of its range (a reason without a path).
pub(crate) type Range = fn(f64) -> Result<(), String>;

impl Field for f64 {
    type Rule = Range;

    fn parse(value: &Value, path: &str, rule: &Range) -> Result<Self, ConfigError> {
        let x = expect_number(value, path)?;
        at(path, rule(x))?;
        Ok(x)
    }

    fn check(&self, path: &str, rule: &Range) -> Result<(), ConfigError> {
        at(path, rule(*self))
    }

    fn canonical(&self) -> Canonical {
        Canonical::Literal(toml_float(*self))
    }
}

/// The rule of a list of layer widths.
pub(crate) struct Widths {
    /// The most layers.
    pub layers: Limit,
    /// The most units in a layer.
    pub units: Limit,
    /// The most weights between consecutive layers, Σ w\[i\]·w\[i+1\].
    pub weights: Limit,
}

impl Field for Vec<usize> {
    type Rule = Widths;

    fn parse(value: &Value, path: &str, rule: &Widths) -> Result<Self, ConfigError> {
        let items = expect_array(value, path)?;
        rule.layers.check(path, items.len() as u64)?;
        let widths = items
            .iter()
            .enumerate()
            .map(|(i, v)| usize::parse(v, &join_index(path, i), &rule.units))
            .collect::<Result<Vec<usize>, _>>()?;
        check_weights(&widths, path, rule)?;
        Ok(widths)
    }

    fn check(&self, path: &str, rule: &Widths) -> Result<(), ConfigError> {
        rule.layers.check(path, self.len() as u64)?;
        for (i, width) in self.iter().enumerate() {
            width.check(&join_index(path, i), &rule.units)?;
        }
        check_weights(self, path, rule)
    }

    fn canonical(&self) -> Canonical {
        let widths: Vec<String> = self.iter().map(usize::to_string).collect();
        Canonical::Literal(format!("[{}]", widths.join(", ")))
    }
}

/// Σ w\[i\]·w\[i+1\] within `rule.weights` (widths already within `rule.units`, so no
/// product overflows).
fn check_weights(widths: &[usize], path: &str, rule: &Widths) -> Result<(), ConfigError> {
    let total = widths
        .windows(2)
        .map(|w| w[0] as u64 * w[1] as u64)
        .fold(0u64, u64::saturating_add);
    if total > rule.weights.max {
        return Err(rule.weights.exceeded(path, &total.to_string()));
    }
    Ok(())
}

impl Field for bool {
    type Rule = ();

    fn parse(value: &Value, path: &str, _: &()) -> Result<Self, ConfigError> {
        expect_bool(value, path)
    }

    fn check(&self, _: &str, _: &()) -> Result<(), ConfigError> {
        Ok(())
    }

    fn canonical(&self) -> Canonical {
        Canonical::Literal(self.to_string())
    }
}

/// Names (`activation`, `init`): a string read with `FromStr`, written as its name.
macro_rules! name_field {
    ($($ty:ty),*) => {$(
        impl Field for $ty {
            type Rule = ();

            fn parse(value: &Value, path: &str, _: &()) -> Result<Self, ConfigError> {
                at(path, <$ty>::from_str(expect_str(value, path)?))
            }

            fn check(&self, _: &str, _: &()) -> Result<(), ConfigError> {
                Ok(())
            }

            fn canonical(&self) -> Canonical {
                Canonical::Quoted(self.name().to_owned())
            }
        }
    )*};
}
name_field!(Activation, Init);

/// Names of keys added after trials were stored (`input_norm`, `init_scope`): written
/// in the canonical TOML only when not the default ([`Canonical::UnlessDefault`]).
macro_rules! later_name_field {
    ($($ty:ty = $default:expr),*) => {$(
        impl Field for $ty {
            type Rule = ();

            fn parse(value: &Value, path: &str, _: &()) -> Result<Self, ConfigError> {
                at(path, <$ty>::from_str(expect_str(value, path)?))
            }

            fn check(&self, _: &str, _: &()) -> Result<(), ConfigError> {
                Ok(())
            }

            fn canonical(&self) -> Canonical {
                Canonical::UnlessDefault {
                    value: Box::new(Canonical::Quoted(self.name().to_owned())),
                    is_default: *self == $default,
                }
            }
        }
    )*};
}
later_name_field!(
    InputNorm = InputNorm::Standardize,
    InitScope = InitScope::All
);

impl Field for Regularization {
    type Rule = ();

    fn parse(value: &Value, path: &str, _: &()) -> Result<Self, ConfigError> {
        at(path, Regularization::from_str(expect_str(value, path)?))
    }

    fn check(&self, path: &str, _: &()) -> Result<(), ConfigError> {
        at(path, Regularization::check(self))
    }

    fn canonical(&self) -> Canonical {
        Canonical::Quoted(self.to_string())
    }
}

impl Field for Optimizer {
    type Rule = ();

    fn parse(value: &Value, path: &str, _: &()) -> Result<Self, ConfigError> {
        parse_optimizer(value, path)
    }

    fn check(&self, path: &str, _: &()) -> Result<(), ConfigError> {
        self.validate(path)
    }

    fn canonical(&self) -> Canonical {
        Canonical::Literal(self.to_inline_toml())
    }
}

impl Field for GradCheckConfig {
    type Rule = ();

    fn parse(value: &Value, path: &str, _: &()) -> Result<Self, ConfigError> {
        parse_gradcheck(value, path)
    }

    fn check(&self, path: &str, _: &()) -> Result<(), ConfigError> {
        self.validate(path)
    }

    fn canonical(&self) -> Canonical {
        Canonical::Section(vec![
            ("layer", format!("\"{}\"", self.layer)),
            ("samples", self.samples.to_string()),
        ])
    }
}
