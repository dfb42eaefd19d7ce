//! The worker: trains trials of MLPs and reports what happened inside them.
//!
//! # Layout
//!
//! - [`config`]: the trial file (TOML), re-exported from `gradsweep_spec::trial`.
//! - [`data`]: datasets held as `u8` (built-in `synthetic:` glyphs so far).
//! - [`device`]: `--device auto|cpu|cuda:N`, probed at run time.
//! - [`init`]: PyTorch's weight initialisation schemes.
//! - [`model`]: the MLP on any [`gradsweep_kernels::Backend`]: forward, backward.
//! - [`memory`]: a trial's memory estimate, checked against what the worker has.
//! - [`packed`]: groups of compatible trials trained in lockstep as one packed model
//!   ([`packed::can_pack`], [`packed::train_group`]).
//! - [`train`]: the training loop, evaluation and per-layer diagnostics.
//! - [`bench`]: training throughput on CIFAR-shaped data, beside the PyTorch anchor.
//! - [`check`]: the gradient check of a trained model, in f64.
//! - [`report`]: epoch reports, verdicts (stagnant loss, vanishing gradients), outcomes.
//! - [`trial`]: one trial end to end, as `worker train` runs it.
//! - [`serve`]: `worker serve`, the lease loop against a coordinator.
//! - [`wire`]: records → `gradsweep_proto` messages.

pub mod bench;
pub mod check;
/// The trial file, defined in `gradsweep_spec` (kept here under its old name).
pub use gradsweep_spec::trial as config;
pub mod data;
pub mod device;
pub mod init;
pub mod memory;
pub mod model;
pub mod packed;
pub mod report;
pub mod serve;
pub mod train;
pub mod trial;
pub mod wire;
