//! One delivery connection: a socket (plaintext, then maybe TLS) driving the core
//! SMTP client (`popgate_core::smtp_client`), with a deadline on everything.

use popgate_core::smtp_client::{
    ClientConfig, ClientEffect, Envelope, Outcome, SmtpClient, TlsMode,
};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::serve::clock::Clock;

/// Read buffer per connection.
const READ_CHUNK: usize = 8 * 1024;

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between the STARTTLS go-ahead and the handshake's end.
    Gone,
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Gone => Ok(0),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => write_flush(s, bytes).await,
            Conn::Tls(s) => write_flush(s.as_mut(), bytes).await,
            Conn::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

async fn write_flush<S: AsyncWrite + AsyncRead + Unpin>(
    s: &mut S,
    bytes: &[u8],
) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

/// What an attempt to use one address came to.
#[derive(Debug)]
pub enum Attempt {
    /// No connection (refused, unreachable, timed out): try the next address.
    NoConnection(String),
    /// The client ran; its outcome per recipient.
    Ran(Outcome),
}

/// Connect to `addr` and run one transaction for `envelope`.
pub async fn deliver(
    clock: Clock,
    addr: SocketAddr,
    server_name: &str,
    config: ClientConfig,
    envelope: Envelope,
    message: &[u8],
) -> Attempt {
    let timeout = config.timeout;
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Attempt::NoConnection(format!("connect to {addr}: {e}")),
        Err(_) => return Attempt::NoConnection(format!("connect to {addr}: timed out")),
    };
    let tls_mode = config.tls;
    let mut client = SmtpClient::new(config, envelope, message, clock.now());
    let mut conn = Conn::Plain(stream);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        while let Some(bytes) = client.poll_transmit() {
            match tokio::time::timeout(timeout, conn.write_all(&bytes)).await {
                Ok(Ok(())) => client.handle_written(clock.now()),
                _ => client.handle_disconnect(clock.now()),
            }
        }
        if let Some(ClientEffect::StartTls) = client.poll_effect() {
            let plain = std::mem::replace(&mut conn, Conn::Gone);
            let Conn::Plain(tcp) = plain else {
                client.handle_disconnect(clock.now());
                continue;
            };
            match tokio::time::timeout(timeout, handshake(tcp, server_name, tls_mode)).await {
                Ok(Ok(tls)) => {
                    conn = Conn::Tls(Box::new(tls));
                    client.handle_tls_established(clock.now());
                }
                Ok(Err(e)) => {
                    tracing::info!(peer = %addr, error = %e, "delivery: TLS handshake failed");
                    client.handle_disconnect(clock.now());
                }
                Err(_) => client.handle_disconnect(clock.now()),
            }
            continue;
        }
        if client.is_closed() {
            break;
        }
        let deadline = client
            .poll_timeout()
            .unwrap_or_else(|| clock.now().saturating_add(timeout));
        tokio::select! {
            read = conn.read(&mut buf) => match read {
                Ok(0) | Err(_) => client.handle_disconnect(clock.now()),
                Ok(n) => client.handle_input(clock.now(), &buf[..n]),
            },
            _ = tokio::time::sleep_until(clock.instant_at(deadline)) => {
                client.handle_timeout(clock.now().max(deadline));
            }
        }
    }
    match client.take_outcome() {
        Some(outcome) => Attempt::Ran(outcome),
        // Closed without an outcome cannot happen (the client decides before it
        // closes); treat it as no connection rather than panic.
        None => Attempt::NoConnection(format!("{addr}: connection ended without an outcome")),
    }
}

/// The STARTTLS handshake. Opportunistic TLS (RFC 7435) encrypts without
/// authenticating: MX certificates are often self-signed or name another host, and
/// refusing them would only push the message to plaintext. A route that requires
/// TLS verifies the chain against the system's roots and the host name.
async fn handshake(
    tcp: TcpStream,
    server_name: &str,
    mode: TlsMode,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let config = if mode == TlsMode::Required {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth()
    } else {
        crate::tls::unauthenticated_client_config()?
    };
    let name = ServerName::try_from(server_name.to_owned())?;
    Ok(TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}
