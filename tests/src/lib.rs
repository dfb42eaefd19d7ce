//! End-to-end tests live in `tests/tests/`; they start the real binaries built by the
//! workspace (`worker`, later `coordinator` and `sweep`) as child processes.
