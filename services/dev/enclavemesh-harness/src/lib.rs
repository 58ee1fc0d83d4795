//! Harness for end-to-end tests and benchmarks: real binaries, real sockets, loopback only.
//!
//! Binaries come from `ENCLAVEMESH_BIN_DIR` (default: the workspace's
//! `target/debug`), built beforehand by `scripts/test.sh`. Every process logs to a
//! file in the test's temp dir; [`Proc`] kills its process on drop, so a failing
//! test leaves nothing behind, and [`Proc::logs`] lets tests scan what was printed.

// A harness is test code: a setup that cannot happen is a failed test, said loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod enclave_qemu;
pub mod fake_agent;
pub mod fake_stack;
pub mod gate;
pub mod in_process_worker;
pub mod kms;
pub mod loopkit;
pub mod mesh;
pub mod proc;
pub mod recorder;
pub mod rogue;
pub mod temporal;

pub use mesh::{DevMesh, MeshOptions};
pub use proc::{Proc, bin_path, free_port, repo_root, venv_bin, wait_for, wait_for_path};
