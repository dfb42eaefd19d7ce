//! The coordinator: expands sweeps into trials, leases them to workers and stores every
//! result in sled. It never links `kernels`: it parses specs with `gradsweep_spec` and
//! speaks the wire types of `gradsweep_proto`.
//!
//! # Layout
//!
//! - [`store`]: the sled database and the trial state machine (leases, attempts,
//!   epochs, idempotent completion).
//! - [`table`]: comparison tables (mean ± std per row of chosen axes).
//! - [`service`]: `SweepService` and `WorkerService` over the store.
//! - [`server`]: [`run`]: both services on one listener until shutdown.
//! - [`error`]: the crate's error type.
//!
//! The `coordinator` binary (`src/bin/coordinator.rs`) parses flags, opens the store,
//! binds and calls [`run`].

pub mod cli;
pub mod error;
pub mod server;
pub mod service;
pub mod store;
pub mod table;

pub use error::Error;
pub use server::{ServerConfig, run};
pub use store::{LeasePolicy, Store};
