//! Command-line / environment configuration of the bridge.

use std::time::Duration;

use clap::Parser;
use enclavemesh_transport::Address;

use crate::BridgeConfig;

/// Forwards every connection accepted on `--listen` to `--target`, byte for byte.
///
/// Typical use on the parent instance: expose the enclave agent (vsock) to local
/// clients over TCP: `vsock-bridge --listen tcp://127.0.0.1:5005 --target vsock://16:5000`.
/// Addresses: vsock://CID:PORT (CID a number, ANY, HOST, PARENT), unix:///abs/path,
/// unix:relative/path, tcp://host:port.
#[derive(Debug, Clone, Parser)]
#[command(name = "vsock-bridge", version, about, long_about = None)]
pub struct Config {
    /// Address to accept client connections on.
    #[arg(long, env = "BRIDGE_LISTEN", default_value = "tcp://127.0.0.1:5005")]
    pub listen: Address,

    /// Address every accepted connection is forwarded to (e.g. vsock://16:5000).
    #[arg(long, env = "BRIDGE_TARGET")]
    pub target: Address,

    /// Connections served at once; further clients wait in the listen backlog.
    #[arg(long, env = "BRIDGE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Close a connection after this many seconds without a byte in either direction.
    #[arg(long, env = "BRIDGE_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    pub idle_timeout_secs: u64,

    /// Give up dialing the target after this many seconds (the client is then closed).
    #[arg(long, env = "BRIDGE_CONNECT_TIMEOUT_SECS", default_value_t = 5)]
    pub connect_timeout_secs: u64,

    /// On SIGINT/SIGTERM, let in-flight connections finish for up to this many seconds.
    #[arg(long, env = "BRIDGE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// Copy buffer per direction per connection, in bytes.
    #[arg(long, env = "BRIDGE_BUFFER_SIZE", default_value_t = crate::DEFAULT_BUFFER_SIZE)]
    pub buffer_size: usize,

    /// Close a client that has not sent the whole HTTP/2 connection preface (24 bytes)
    /// this many seconds after connecting (slow-loris). Everything the bridge carries
    /// (gRPC, grpcurl, OTLP) is HTTP/2, whose client speaks first.
    #[arg(long, env = "BRIDGE_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10)]
    pub handshake_timeout_secs: u64,
}

impl Config {
    /// The runtime settings for [`crate::run`].
    pub fn bridge_config(&self) -> BridgeConfig {
        BridgeConfig {
            target: self.target.clone(),
            max_connections: self.max_connections,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            buffer_size: self.buffer_size,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_parsing() {
        let c = Config::try_parse_from(["vsock-bridge", "--target", "vsock://16:5000"]).unwrap();
        assert_eq!(c.listen, "tcp://127.0.0.1:5005".parse().unwrap());
        assert_eq!(c.target, Address::Vsock { cid: 16, port: 5000 });
        let b = c.bridge_config();
        assert_eq!(b.max_connections, 1024);
        assert_eq!(b.idle_timeout, Duration::from_secs(300));
        assert!(b.validate().is_ok());
    }

    #[test]
    fn target_is_required_and_bad_addresses_are_explained() {
        assert!(Config::try_parse_from(["vsock-bridge"]).is_err());
        let e = Config::try_parse_from(["vsock-bridge", "--target", "localhost:5000"]).unwrap_err();
        assert!(e.to_string().contains("vsock://CID:PORT"), "{e}");
    }
}
