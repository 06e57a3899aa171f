//! Process plumbing shared by every gateway binary and by the in-process
//! suite: layered configuration, graceful shutdown, one way to assemble a
//! gRPC server (health, reflection, tracing, metrics) and the ops HTTP port.

pub mod config;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod ops;
pub mod process;
pub mod secret;
pub mod shutdown;

pub use tokio_util::sync::CancellationToken;

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Binds a TCP listener, naming what it is for in the error.
pub async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        what: what.to_owned(),
        addr,
        source,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("failed to bind the {what} listener on {addr}: {source}")]
pub struct BindError {
    what: String,
    addr: SocketAddr,
    source: std::io::Error,
}
