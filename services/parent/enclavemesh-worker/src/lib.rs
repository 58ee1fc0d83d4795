//! Temporal side of Enclave Mesh: the `SecureStateLoop` workflow and its `InitState` /
//! `ProcessState` activities (gRPC clients of the enclave agents). The contract it shares
//! with the `enclavemesh` CLI (names, JSON types, connection) is `enclavemesh-workflow`.

pub mod activities;
pub mod pool;
pub mod trace_context;
pub mod worker;
pub mod workflow;

pub use activities::AgentActivities;
pub use workflow::SecureStateLoop;
