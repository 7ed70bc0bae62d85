//! Who gets a session: the PROXY header from a trusted load balancer, and the cap on
//! connections per client address.
//!
//! Order for each accepted connection (see `serve::accept_loop`): the total cap
//! (`[limits] max_connections`), then on a `[listen] proxy` listener the peer must be
//! in `proxy_from` and send a valid header, which names the client; then that client's
//! own cap (`[limits] max_connections_per_address`, Postfix
//! `smtpd_client_connection_count_limit`). Refusals are logged with the address in a
//! stable `event=refused peer=... reason=...` line that fail2ban can match.

use popgate_core::Protocol;
use popgate_core::net::{Cidr, canonical};
use popgate_core::proxy::{self, ProxyError, ProxyHeader, Step};
use popgate_core::reply::{POP3_TOO_MANY_CONNECTIONS, TOO_MANY_CONNECTIONS_FROM};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections open per client address. A std mutex, never held across an `.await`:
/// each operation is one map update.
#[derive(Debug, Default)]
pub struct AddressCounts {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct AddressPermit {
    counts: Arc<AddressCounts>,
    ip: IpAddr,
}

impl AddressCounts {
    /// Count a connection from `ip` unless `max` are already open.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressPermit> {
        let ip = canonical(ip);
        let mut open = self.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressPermit {
            counts: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip` now.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.lock().get(&canonical(ip)).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // A poisoned lock only means a panic mid-update of a counter; keep counting.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut open = self.counts.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // The map holds only addresses with open connections: bounded by the
                // total connection cap.
                open.remove(&self.ip);
            }
        }
    }
}

/// Over the per-address cap: one reply naming the address, then close (DESIGN reply
/// table: 421 4.7.0 / -ERR [SYS/TEMP]).
pub async fn refuse_address(protocol: Protocol, mut stream: TcpStream, ip: IpAddr) {
    tracing::warn!(
        "event=refused peer={ip} listener={} reason=too_many_connections_from_address",
        protocol.name()
    );
    let line = match protocol {
        // The policy protocol has no error line: Postfix sees the close.
        Protocol::Policy | Protocol::Dovecot => None,
        p if p.is_pop3() => Some(POP3_TOO_MANY_CONNECTIONS.line()),
        _ => Some(
            TOO_MANY_CONNECTIONS_FROM
                .line_with(&format!("{} {ip}", TOO_MANY_CONNECTIONS_FROM.text)),
        ),
    };
    if let Some(line) = line {
        let _ = stream.write_all(line.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

/// Why a connection on a PROXY listener was closed before its session.
#[derive(Debug)]
pub enum ProxyRefusal {
    /// The peer is not in `[listen] proxy_from`.
    Untrusted,
    /// The header was missing, malformed or too long.
    Header(ProxyError),
    /// No complete header within `[limits] proxy_header_timeout`.
    Timeout,
    /// The peer closed (or the read failed) before the header ended.
    Closed,
}

impl ProxyRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyRefusal::Untrusted => "untrusted_proxy",
            ProxyRefusal::Header(ProxyError::Missing) => "proxy_header_missing",
            ProxyRefusal::Header(ProxyError::TooLong) => "proxy_header_too_long",
            ProxyRefusal::Header(_) => "proxy_header_malformed",
            ProxyRefusal::Timeout => "proxy_header_timeout",
            ProxyRefusal::Closed => "proxy_closed",
        }
    }
}

/// On a PROXY listener: check the peer is a configured proxy and read its header,
/// exactly (nothing after it is consumed: a TLS ClientHello may follow). Returns the
/// client and the address it connected to, as the proxy saw them; a LOCAL/UNKNOWN
/// header (the proxy's own health check) keeps the connection's addresses.
pub async fn read_proxy_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    trusted: &[Cidr],
    timeout: Duration,
) -> Result<(SocketAddr, SocketAddr), ProxyRefusal> {
    if !trusted.iter().any(|c| c.contains(peer.ip())) {
        return Err(ProxyRefusal::Untrusted);
    }
    let read = async {
        let mut buf = Vec::new();
        loop {
            match proxy::next_read(&buf).map_err(ProxyRefusal::Header)? {
                Step::Read(n) => {
                    let start = buf.len();
                    buf.resize(start + n, 0);
                    stream
                        .read_exact(&mut buf[start..])
                        .await
                        .map_err(|_| ProxyRefusal::Closed)?;
                }
                Step::Done(header) => return Ok(header),
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(ProxyRefusal::Timeout),
        Ok(Err(e)) => Err(e),
        Ok(Ok(ProxyHeader::Local)) => Ok((peer, local)),
        Ok(Ok(ProxyHeader::Proxied {
            source,
            destination,
        })) => Ok((
            SocketAddr::new(canonical(source.ip()), source.port()),
            destination,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_slots_are_counted_and_given_back() {
        let counts = Arc::new(AddressCounts::default());
        let a: IpAddr = "192.0.2.7".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        let b: IpAddr = "192.0.2.8".parse().expect("ip");
        let first = counts.try_acquire(a, 2).expect("first");
        let second = counts
            .try_acquire(mapped, 2)
            .expect("second, the same client");
        assert!(
            counts.try_acquire(a, 2).is_none(),
            "a third over the cap of 2"
        );
        let other = counts
            .try_acquire(b, 2)
            .expect("another address is not affected");
        drop(first);
        assert_eq!(counts.open(a), 1);
        let third = counts.try_acquire(a, 2).expect("a slot came back");
        drop((second, third, other));
        assert_eq!(counts.open(a), 0);
        assert!(
            counts.lock().is_empty(),
            "no entry stays for closed addresses"
        );
    }
}
