//! The coordinator: expands sweeps into trials, leases them to workers and stores every
//! result in sled. It never links `kernels`: it parses specs with `gradsweep_spec` and
//! speaks the wire types of `gradsweep_proto`.
//!
//! # Layout
//!
//! - [`store`]: the sled database and the trial state machine (leases, attempts,
//!   epochs, idempotent completion).
//! - [`table`]: comparison tables (mean ± std per row of chosen axes).
//! - [`export`]: `ListTrials` and `ExportTrials`, streamed trial by trial.
//! - [`readers`]: the low-priority threads that reads growing with a sweep run on.
//! - [`service`]: `SweepService` and `WorkerService` over the store.
//! - [`server`]: [`run`] and [`serve`]: both services, health and reflection on one
//!   listener until shutdown; [`serve`] with tokens and TLS ([`Network`]).
//! - [`auth`]: the two roles' tokens and the interceptor that checks them.
//! - [`error`]: the crate's error type.
//!
//! The `coordinator` binary (`src/bin/coordinator.rs`) parses flags, opens the store,
//! binds and calls [`run`].

pub mod auth;
pub mod effects;
pub mod error;
pub mod export;
pub mod readers;
pub mod server;
pub mod service;
pub mod store;
pub mod summary;
pub mod table;

pub use auth::{Role, Tokens};
pub use error::Error;
pub use server::{Network, ServerConfig, run, serve};
pub use store::{LeasePolicy, Store};
