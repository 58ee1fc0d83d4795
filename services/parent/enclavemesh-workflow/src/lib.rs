//! The workflow contract shared by the worker and the `enclavemesh` CLI.
//!
//! Names, JSON payload types, the client-side workflow definition, the Temporal
//! connection and its flags (plain, TLS, mTLS, API key), how a step's failure is
//! classified, and the trace header. The worker adds the workflow and activity code (and the whole worker SDK); the CLI needs only this and
//! `temporalio-client`.

pub mod connect;
pub mod definition;
pub mod failure;
pub mod history;
pub mod pipeline;
pub mod temporal_settings;
pub mod trace_header;
pub mod types;

pub use definition::{ProgressQuery, SecureStateLoopRun};
pub use temporal_settings::{TemporalArgs, TemporalSettings};
