//! The coordinator: expands sweeps into trials, leases them to workers and stores every
//! result in sled.
//!
//! Not built yet: the gRPC services, the store and the scheduler arrive with the
//! coordinator/worker protocol. The crate exists so that the workspace's dependency
//! rules (it depends on `proto`, never on `kernels`) are checked from the start.
