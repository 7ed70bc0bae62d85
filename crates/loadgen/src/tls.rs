//! The STARTTLS client: popgate's own unauthenticating client configuration (both
//! servers present the same self-signed bench certificate; signatures are still
//! checked, so each handshake does a real one's work), with session resumption off so
//! every connection pays a full handshake, which is what the workload counts.

use std::sync::Arc;

use anyhow::Result;
use rustls::client::Resumption;
use tokio_rustls::TlsConnector;

pub fn connector() -> Result<TlsConnector> {
    let mut config = popgate_server::tls::unauthenticated_client_config()?;
    config.resumption = Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}
