//! Temporal side of Enclave Mesh: the `SecureStateLoop` workflow, its `InitState` /
//! `ProcessState` activities (gRPC clients of the enclave agents), and the shared JSON
//! types the `enclavemesh` CLI uses to start and inspect runs.

pub mod activities;
pub mod connect;
pub mod failure;
pub mod history;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod trace_context;
pub mod types;
pub mod worker;
pub mod workflow;

pub use activities::AgentActivities;
pub use workflow::SecureStateLoop;
