//! Listeners and connectors for the transports Enclave Mesh runs over.
//!
//! One address syntax everywhere — `vsock://CID:PORT`, `unix:///abs/path` (or
//! `unix:relative`), `tcp://host:port`, and `hvsock:///abs/uds:PORT` (or
//! `hvsock:relative/uds:PORT`) for a VM whose vsock is emulated in user space (QEMU's
//! `nitro-enclave` machine with vhost-device-vsock in hybrid mode, Firecracker) — so
//! a service is moved between a Nitro enclave, a QEMU VM, a laptop and CI by changing
//! a flag, never code. `hvsock://UDS:PORT` dials the guest's vsock port `PORT`
//! through the unix socket `UDS` (`CONNECT PORT` handshake) and listens on the unix
//! socket `UDS_PORT`, where the emulator delivers guest connections to host port `PORT`.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use enclavemesh_transport::{Address, bind, channel, shutdown_signal};
//! let addr: Address = "unix:///tmp/agent.sock".parse()?;
//! let listener = bind(&addr).await?;
//! // tonic::transport::Server::builder().add_service(svc)
//! //     .serve_with_incoming_shutdown(listener.into_incoming(), shutdown_signal()).await?;
//! let ch = channel(&addr)?; // lazy: dials on first call
//! # let _ = (listener, ch); Ok(()) }
//! ```

mod address;
mod conn;
mod dial;
mod error;
pub mod handshake;
mod listener;
mod shutdown;

pub use address::{ACCEPTED_FORMS, Address, AddressParseError, VSOCK_CID_ANY, VSOCK_CID_HOST, VSOCK_CID_PARENT};
pub use conn::{Conn, ConnInfo};
pub use dial::{
    Connector, DEFAULT_CONNECT_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, channel, dial, dial_timeout,
};
pub use error::{TransportError, error_chain};
pub use listener::{Listener, bind};
pub use shutdown::shutdown_signal;
