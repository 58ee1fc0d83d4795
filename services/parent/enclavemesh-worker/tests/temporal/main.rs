//! One test binary for this crate's tests: each file below used to link its own
//! copy of the dependency tree (~130 MB and a link each on 2 cores).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed test

mod refusals;
mod temporal_e2e;
