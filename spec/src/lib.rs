//! What a user asks for: trial files and sweep specs, parsed and validated, with every
//! error naming the key path (`grid.activation[2]: unknown activation "relux"; …`).
//!
//! This crate links neither the kernels nor the network: the coordinator parses and
//! expands sweeps with it, the worker parses trial files with it.
//!
//! # Layout
//!
//! - [`activation`]: the activation names a trial may choose.
//! - [`dataset`]: the dataset kinds and built-in names; a dataset string's check.
//! - [`limits`]: every limit on a trial or a sweep, named.
//! - [`trial`]: one trial (`TrialConfig`): the table of trial keys, parsers, validation,
//!   canonical TOML.
//! - [`sweep`]: a sweep spec: `seeds`, `[grid]` lists, expansion into keyed trials.

pub mod activation;
pub mod dataset;
pub mod limits;
pub mod sweep;
pub mod trial;

pub use activation::Activation;
pub use sweep::{DEFAULT_MAX_TRIALS, SweepSpec, SweepTrial, trial_key};
pub use trial::{ConfigError, TrialConfig};

/// Everything that can be wrong with a sweep spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A key or value is wrong; the error names its path.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// The grid expands into more trials than allowed.
    #[error("the grid expands into {count} trials, more than the limit of {limit}")]
    TooManyTrials {
        /// Trials the grid would expand into (saturating at `u64::MAX`).
        count: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The expanded trials' canonical TOML would exceed [`limits::MAX_SWEEP_BYTES`].
    #[error(
        "the grid's {trials} trials come to {bytes} bytes of canonical TOML; the limit is {limit} (limits::MAX_SWEEP_BYTES)"
    )]
    TooLarge {
        /// Trials the grid expands into.
        trials: u64,
        /// Their canonical TOML, in bytes (saturating at `u64::MAX`).
        bytes: u64,
        /// The limit in force.
        limit: u64,
    },
    /// Two trials of the grid have the same key (the same canonical config).
    #[error("trials {first} and {second} are the same trial (key {key})")]
    DuplicateTrial {
        /// Index of the first trial.
        first: usize,
        /// Index of the second trial.
        second: usize,
        /// Their common key.
        key: String,
    },
}
