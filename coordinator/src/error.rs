//! The coordinator's one error type.

use gradsweep_spec::SpecError;

/// Everything that can go wrong in the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("database: {0}")]
    Storage(#[from] sled::Error),
    /// The gRPC server failed.
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A stored value does not decode.
    #[error("database holds a value that does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The database was written by another version of the layout.
    #[error("database schema version {found}, this coordinator reads version {expected}")]
    Schema {
        /// The version found.
        found: u32,
        /// The version this code reads.
        expected: u32,
    },
    /// A sweep spec was refused.
    #[error("{0}")]
    Spec(#[from] SpecError),
    /// A request's field is wrong (an unknown axis or metric); the message names it.
    #[error("{0}")]
    BadRequest(String),
    /// Something that should not happen (a background task died).
    #[error("internal: {0}")]
    Internal(String),
    /// No sweep has this id.
    #[error("no sweep {0}")]
    NoSweep(u64),
    /// No trial has this address.
    #[error("no trial {1} in sweep {0}")]
    NoTrial(u64, u32),
    /// No worker has this id (the coordinator's database was replaced, or it never
    /// registered).
    #[error("no worker {0}; register again")]
    NoWorker(u64),
    /// A call named a lease that is not the trial's current one.
    #[error("lease {lease_id} of trial {index} in sweep {sweep} is not current (trial is {state})")]
    StaleLease {
        /// The sweep.
        sweep: u64,
        /// The trial's index.
        index: u32,
        /// The lease named.
        lease_id: u64,
        /// The trial's state now.
        state: String,
    },
}
