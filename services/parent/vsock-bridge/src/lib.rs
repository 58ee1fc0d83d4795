//! The bridge as a library, so tests and benchmarks drive exactly the code the
//! binary runs: [`run`] accepts on any transport [`Listener`] and copies every
//! connection to [`BridgeConfig::target`], byte for byte, without looking inside.
//!
//! [`Listener`]: enclavemesh_transport::Listener

mod activity;
mod bridge;
mod config;
mod forward;
mod stats;

use std::time::Duration;

use enclavemesh_transport::Address;

pub use bridge::run;
pub use config::Config;
pub use stats::BridgeStats;

/// Copy buffer per direction: large enough for bulk throughput, small enough that
/// 1024 connections cost at most 64 MiB.
pub const DEFAULT_BUFFER_SIZE: usize = 32 * 1024;

/// Runtime settings of [`run`].
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Where every accepted connection is forwarded.
    pub target: Address,
    /// Connections served concurrently; more wait in the kernel's listen backlog.
    pub max_connections: usize,
    /// A connection with no byte moving in either direction this long is closed,
    /// so idle or slow-loris clients do not hold a slot forever.
    pub idle_timeout: Duration,
    /// Dial timeout towards the target; on failure the client is closed.
    pub connect_timeout: Duration,
    /// After the shutdown future resolves: how long in-flight connections may finish.
    pub shutdown_grace: Duration,
    /// Copy buffer per direction per connection.
    pub buffer_size: usize,
    /// Time a client has to send the 24-byte HTTP/2 connection preface; a client that
    /// stalls before it is closed, so it cannot hold a slot (slow-loris). The same
    /// deadline every Enclave Mesh server applies (`enclavemesh-server`).
    pub handshake_timeout: Duration,
}

impl BridgeConfig {
    /// Defaults matching the binary's flags, towards `target`.
    pub fn new(target: Address) -> Self {
        Self {
            target,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            buffer_size: DEFAULT_BUFFER_SIZE,
            handshake_timeout: enclavemesh_transport::handshake::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Rejects settings that would make the bridge useless (zero slots, zero timeouts).
    pub fn validate(&self) -> Result<(), BridgeError> {
        let bad = |what: &str| Err(BridgeError::InvalidConfig(what.to_owned()));
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return bad("max_connections is too large");
        }
        if self.idle_timeout.is_zero() {
            return bad("idle timeout must be positive");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect timeout must be positive");
        }
        if self.buffer_size == 0 {
            return bad("buffer size must be positive");
        }
        if self.handshake_timeout.is_zero() {
            return bad("handshake timeout must be positive");
        }
        Ok(())
    }
}

/// Why [`run`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("invalid bridge configuration: {0}")]
    InvalidConfig(String),
}
