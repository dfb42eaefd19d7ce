//! The coordinator: expands sweeps into trials, leases them to workers and stores every
//! result in sled. It never links `kernels`: it parses specs with `gradsweep_spec` and
//! speaks the wire types of `gradsweep_proto`.
//!
//! # Layout
//!
//! - [`store`]: the sled database and the trial state machine (leases, attempts,
//!   epochs, idempotent completion).
//! - [`error`]: the crate's error type.

pub mod error;
pub mod store;

pub use error::Error;
pub use store::{LeasePolicy, Store};
