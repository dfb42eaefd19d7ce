//! Wire types shared by the coordinator, the workers and the `sweep` CLI.
//!
//! The protocol (`sweep.proto`, generated with protox + tonic-prost-build) lands here
//! with the coordinator; until then this crate only reserves its place in the workspace
//! so that the crate graph of `ARCHITECTURE.md` holds from the first commit.
