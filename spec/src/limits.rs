//! The limits on what a trial file or a sweep spec may ask for, each named so that a
//! refusal says which one it hit:
//! `hidden: 100000 layers; the limit is 1024 (limits::MAX_LAYERS)`.
//!
//! They keep absurd values — a 10⁹-unit layer, a 10⁹-example batch, a 5 MB spec — from
//! reaching a worker or the database, and they sit well above what a demanding study
//! asks for: CIFAR-10 MLPs of 3072-4096-…-4096-10, full-batch training on 45,000
//! images, 10,000 epochs. Whether a trial within them fits in a given machine's memory
//! is for the worker to check against that machine, not for these.
//!
//! The parsers ([`crate::TrialConfig::from_toml_str`], [`crate::SweepSpec::from_toml_str`])
//! enforce every one of them, and [`crate::TrialConfig::validate`] those on single
//! fields.

use crate::trial::ConfigError;

/// The largest trial file or sweep spec, in bytes (256 KiB), checked before the TOML is
/// parsed. Real specs are a few KiB; a long comment or a generated list is not a spec.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;

/// The longest `name`, in bytes: a label for tables and logs.
pub const MAX_NAME_BYTES: usize = 256;

/// The longest `dataset` string, in bytes (`PATH_MAX` on Linux).
pub const MAX_DATASET_BYTES: usize = 4096;

/// The most hidden layers (`hidden`'s length). Signal-propagation studies train MLPs a
/// few hundred layers deep.
pub const MAX_LAYERS: usize = 1024;

/// The most units in one hidden layer.
pub const MAX_UNITS: usize = 65_536;

/// The most hidden-to-hidden weights, Σ hidden\[i\]·hidden\[i+1\] (2³⁰ ≈ 1.07·10⁹, 4 GiB
/// in f32 before gradients and optimiser state): sixty-four 4096×4096 layers fit.
pub const MAX_HIDDEN_WEIGHTS: u64 = 1 << 30;

/// The largest `batch_size` and `eval_batch_size` (2²⁰ = 1,048,576 examples).
/// Full-batch training on CIFAR-10's training split is 45,000.
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// The most `epochs`.
pub const MAX_EPOCHS: u32 = 100_000;

/// The most entries per layer a gradient check may sample (`gradcheck.samples`); each
/// costs two forward passes in f64.
pub const MAX_GRADCHECK_SAMPLES: usize = 10_000;

/// The most seeds in a sweep's `seeds`.
pub const MAX_SEEDS: usize = 10_000;

/// The most trials a sweep's grid × seeds may expand into (the coordinator's default
/// `--max-trials`).
pub const MAX_TRIALS: u64 = 100_000;

/// The most bytes of canonical TOML a sweep may expand into, all trials together
/// (128 MiB), computed before anything is expanded. Each trial's text is what the
/// coordinator stores and hands to a worker; 100,000 trials of a typical config come to
/// about 50 MB, while a 100 KB spec of long names, paths and deep nets times a large
/// grid would come to gigabytes.
pub const MAX_SWEEP_BYTES: u64 = 128 << 20;

/// The largest `val_fraction`: more would hold out more of the training pool than it
/// trains on. (The smallest is anything above 0: without a validation split its
/// metrics would read 0.)
pub const MAX_VAL_FRACTION: f64 = 0.5;

/// The largest learning rate (`optimizer.lr`). Divergence studies use 10³.
pub const MAX_LR: f64 = 1e6;

/// The largest penalty strength: `optimizer.weight_decay` and the `l1:`/`l2:` terms of
/// `regularization`.
pub const MAX_PENALTY: f64 = 1e6;

/// The largest Adam `optimizer.eps`.
pub const MAX_EPS: f64 = 1.0;

/// The text-size limit in bytes ([`MAX_TEXT_BYTES`]), for callers that check a file's
/// size before reading it.
pub fn max_text_bytes() -> u64 {
    MAX_TEXT_BYTES as u64
}

/// Refuses a text of `len` bytes over [`MAX_TEXT_BYTES`]:
/// `{what} of 5242880 bytes; the limit is 262144 (limits::MAX_TEXT_BYTES)`.
pub fn check_text_size(what: &str, len: u64) -> Result<(), ConfigError> {
    if len > max_text_bytes() {
        Err(ConfigError::new(
            "",
            format!(
                "{what} of {len} bytes; the limit is {MAX_TEXT_BYTES} (limits::MAX_TEXT_BYTES)"
            ),
        ))
    } else {
        Ok(())
    }
}

/// Reads a text file (a trial file, a sweep spec) of at most [`MAX_TEXT_BYTES`]: its
/// size is checked before reading, and no more than the limit is read whatever the size
/// said (a pipe, `/dev/zero`). `what` names the file's kind in the message; the error
/// has no path: add the file's with [`ConfigError::in_file`].
pub fn read_text_file(path: &std::path::Path, what: &str) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| ConfigError::new("", format!("cannot read file: {e}"));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let claimed = file.metadata().map_err(cannot)?.len();
    check_text_size(what, claimed)?;
    let mut bytes = Vec::new();
    file.take(max_text_bytes() + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    check_text_size(what, bytes.len() as u64)?;
    String::from_utf8(bytes)
        .map_err(|_| ConfigError::new("", "cannot read file: stream did not contain valid UTF-8"))
}

/// An upper bound on a count, with its name and unit for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The largest value allowed.
    pub max: u64,
    /// The constant's name in this module (`MAX_LAYERS`).
    pub name: &'static str,
    /// What is counted, plural (`layers`, `bytes`); may be empty.
    pub unit: &'static str,
}

impl Limit {
    /// Refuses `value` over the limit, at `path`:
    /// `{path}: {value} {unit}; the limit is {max} (limits::{name})`.
    pub fn check(&self, path: &str, value: u64) -> Result<(), ConfigError> {
        if value > self.max {
            Err(self.exceeded(path, &value.to_string()))
        } else {
            Ok(())
        }
    }

    /// The refusal of `value` (already formatted) at `path`.
    pub fn exceeded(&self, path: &str, value: &str) -> ConfigError {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        ConfigError::new(
            path,
            format!(
                "{value}{unit}; the limit is {} (limits::{})",
                self.max, self.name
            ),
        )
    }
}

/// A [`Limit`] named after one of this module's constants:
/// `limit!(MAX_LAYERS, "layers")`.
macro_rules! limit {
    ($name:ident, $unit:literal) => {
        $crate::limits::Limit {
            max: $crate::limits::$name as u64,
            name: stringify!($name),
            unit: $unit,
        }
    };
}
pub(crate) use limit;

/// Refuses a finite `x` over `max` (the constant named `name`), at `path`:
/// `optimizer.lr: 5000000; the limit is 1000000 (limits::MAX_LR)`.
pub(crate) fn check_float_max(path: &str, x: f64, max: f64, name: &str) -> Result<(), ConfigError> {
    if x > max {
        Err(ConfigError::new(
            path,
            format!(
                "{}; the limit is {} (limits::{name})",
                crate::trial::fmt_num(x),
                crate::trial::fmt_num(max)
            ),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_messages_name_the_constant() {
        let l = limit!(MAX_LAYERS, "layers");
        assert_eq!(l.max, 1024);
        assert_eq!(l.check("hidden", 1024), Ok(()));
        assert_eq!(
            l.check("hidden", 100_000).unwrap_err().to_string(),
            "hidden: 100000 layers; the limit is 1024 (limits::MAX_LAYERS)"
        );
        assert_eq!(
            check_text_size("spec", 5 << 20).unwrap_err().to_string(),
            "spec of 5242880 bytes; the limit is 262144 (limits::MAX_TEXT_BYTES)"
        );
        assert_eq!(check_text_size("spec", MAX_TEXT_BYTES as u64), Ok(()));
        assert_eq!(max_text_bytes(), 262_144);
    }
}
