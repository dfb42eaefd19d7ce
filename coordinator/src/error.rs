//! The coordinator's one error type.

use gradsweep_spec::SpecError;
use std::path::PathBuf;

/// Everything that can go wrong in the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database's storage failed (a full disk, an IO error). Answered `UNAVAILABLE`.
    #[error("storage: {}", storage_cause(.0))]
    Storage(#[from] sled::Error),
    /// An earlier write failed, and sled cannot write again until the database is
    /// reopened: this coordinator refuses every write and is about to exit.
    #[error(
        "storage: an earlier write failed ({0}); this coordinator takes no more writes and \
         exits so that it is restarted on the intact database"
    )]
    StorageFailed(String),
    /// A flush failed (its cause); the store takes no more writes from then on.
    #[error("storage: {0}")]
    FlushFailed(String),
    /// Another process (a coordinator) holds the database's lock.
    #[error(
        "database {}: another coordinator holds it (stop that one, or give this one another --db)",
        .0.display()
    )]
    Locked(PathBuf),
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
    /// A request's field is wrong (an unknown axis or metric, a worker report that
    /// breaks the protocol); the message names it.
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
    /// A call named the trial's current lease, but the caller is not its worker.
    #[error("trial {index} in sweep {sweep} is leased to another worker than worker {caller}")]
    NotLeaseHolder {
        /// The sweep.
        sweep: u64,
        /// The trial's index.
        index: u32,
        /// The worker that called.
        caller: u64,
    },
}

/// sled's error as one line: an IO error's own text (`No space left on device (os
/// error 28)`), without sled's prefix. (Some of sled's paths wrap an IO error's debug
/// text, `Os { code: 28, kind: StorageFull, message: "…" }`, in a new one: that is
/// turned back into the error's own text.)
fn storage_cause(e: &sled::Error) -> String {
    let sled::Error::Io(io) = e else {
        return e.to_string();
    };
    if let Some(code) = io.raw_os_error() {
        return std::io::Error::from_raw_os_error(code).to_string();
    }
    let text = io.to_string();
    let code = text
        .strip_prefix("Os { code: ")
        .and_then(|rest| rest.split(',').next())
        .and_then(|code| code.trim().parse::<i32>().ok());
    match code {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => text,
    }
}
