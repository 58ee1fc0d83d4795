//! One test binary for this crate's tests: each file below used to link its own
//! copy of the dependency tree (~130 MB and a link each on 2 cores).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed test

mod agent_config;
mod audit_trail;
mod bad_input;
mod enclave_image_qemu;
mod faults;
mod fuzz_replay;
mod hostile_parent;
mod load;
mod owner_boundary;
mod pool;
mod rotation;
mod screening;
mod secure_state_loop;
mod temporal_tls;
mod topology;
mod traces;
mod trusted_side;
mod two_hosts;
mod verify;
mod write_your_own_agent;
