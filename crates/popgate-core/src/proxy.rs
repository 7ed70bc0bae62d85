//! The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2), sans IO.
//!
//! A load balancer in front of popgate connects from its own address; the header it
//! sends first names the real client, so grants, per-address limits, logs and events
//! key on that client. The header is trusted only on listeners configured for it and
//! only from configured proxy addresses (the server checks both before calling this);
//! everyone else's header is refused, never believed.
//!
//! The reader is exact: [`next_read`] says how many more octets complete the header,
//! so the driver never reads past it (what follows may be a TLS ClientHello that the
//! handshake must see whole). The driving loop:
//!
//! ```text
//! let mut buf = Vec::new();
//! loop {
//!     match proxy::next_read(&buf)? {
//!         Step::Read(n) => read exactly n more octets into buf (bounded by a timeout),
//!         Step::Done(header) => break header,
//!     }
//! }
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// proxy-protocol.txt §2.2: the twelve octets that start a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// proxy-protocol.txt §2.1: a version 1 line is at most 107 octets, CRLF included.
pub const V1_MAX: usize = 107;

/// The longest version 2 header accepted: the 16 fixed octets, the largest address
/// block (two UNIX paths, 216 octets) and room for TLVs. §2.2 allows 64 KiB of TLVs;
/// popgate reads none of them, so a header this large is refused rather than
/// buffered.
pub const V2_MAX: usize = 16 + 216 + 1024;

/// What the proxy said about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The proxy relays for `source`, which connected to `destination`.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// v2 LOCAL, v1 UNKNOWN, or an address family popgate does not key on (UNSPEC,
    /// UNIX): §2.1, §2.2 say to use the connection's own addresses (a health check
    /// by the proxy itself).
    Local,
}

/// Why a header was refused; the connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// The first octets are neither `PROXY ` nor the v2 signature: a trusted proxy
    /// that did not send a header (§2: the receiver must not guess).
    Missing,
    /// A v1 line that breaks §2.1's grammar.
    BadV1,
    /// A v2 header that breaks §2.2 (version, command or address length).
    BadV2,
    /// Longer than [`V1_MAX`] or [`V2_MAX`].
    TooLong,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProxyError::Missing => "no PROXY header",
            ProxyError::BadV1 => "malformed PROXY v1 header",
            ProxyError::BadV2 => "malformed PROXY v2 header",
            ProxyError::TooLong => "PROXY header too long",
        })
    }
}

impl std::error::Error for ProxyError {}

/// The next step after reading `buf` (every octet of the connection so far).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read exactly this many more octets, then call [`next_read`] again.
    Read(usize),
    /// The header is complete: `buf` was all of it.
    Done(ProxyHeader),
}

const V1_PREFIX: &[u8] = b"PROXY ";
/// Enough octets to tell v1 from v2 (and from neither).
const SNIFF: usize = 8;

/// How to go on after `buf`, the octets read so far (see the module docs).
pub fn next_read(buf: &[u8]) -> Result<Step, ProxyError> {
    let head = &buf[..buf.len().min(SNIFF)];
    let v1 = V1_PREFIX.starts_with(&head[..head.len().min(V1_PREFIX.len())]);
    let v2 = V2_SIGNATURE.starts_with(head);
    if !v1 && !v2 {
        return Err(ProxyError::Missing);
    }
    if buf.len() < SNIFF {
        return Ok(Step::Read(SNIFF - buf.len()));
    }
    if v2 {
        if buf.len() < 16 {
            return Ok(Step::Read(16 - buf.len()));
        }
        if buf[..12] != V2_SIGNATURE {
            return Err(ProxyError::Missing);
        }
        let total = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if total > V2_MAX {
            return Err(ProxyError::TooLong);
        }
        if buf.len() < total {
            return Ok(Step::Read(total - buf.len()));
        }
        return parse_v2(&buf[..total]).map(Step::Done);
    }
    // v1: one octet at a time up to the LF, never past it.
    match buf.last() {
        Some(b'\n') => parse_v1(buf).map(Step::Done),
        _ if buf.len() >= V1_MAX => Err(ProxyError::TooLong),
        _ => Ok(Step::Read(1)),
    }
}

/// proxy-protocol.txt §2.1: `PROXY TCP4|TCP6 src dst sport dport\r\n`, single spaces,
/// or `PROXY UNKNOWN` and anything up to the CRLF.
fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let text = line
        .strip_suffix(b"\r\n")
        .and_then(|l| std::str::from_utf8(l).ok())
        .ok_or(ProxyError::BadV1)?;
    let mut fields = text.split(' ');
    if fields.next() != Some("PROXY") {
        return Err(ProxyError::BadV1);
    }
    let family = fields.next().ok_or(ProxyError::BadV1)?;
    if family == "UNKNOWN" {
        return Ok(ProxyHeader::Local);
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ProxyError::BadV1),
    };
    let mut next = || fields.next().ok_or(ProxyError::BadV1);
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if fields.next().is_some() {
        return Err(ProxyError::BadV1);
    }
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        let ip = if v6 {
            s.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        ip.map_err(|_| ProxyError::BadV1)
    };
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(ip(src)?, port(sport)?),
        destination: SocketAddr::new(ip(dst)?, port(dport)?),
    })
}

/// §2.1: a port is 0..65535 in decimal, without leading zeros.
fn port(s: &str) -> Result<u16, ProxyError> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return Err(ProxyError::BadV1);
    }
    s.parse().map_err(|_| ProxyError::BadV1)
}

/// §2.2: version 2, command LOCAL or PROXY, then the addresses (TLVs after them are
/// skipped).
fn parse_v2(header: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let (version, command) = (header[12] >> 4, header[12] & 0x0f);
    if version != 2 {
        return Err(ProxyError::BadV2);
    }
    let family = header[13] >> 4;
    let body = &header[16..];
    match command {
        // LOCAL: the proxy's own connection; the address block is ignored.
        0x0 => return Ok(ProxyHeader::Local),
        0x1 => {}
        _ => return Err(ProxyError::BadV2),
    }
    match family {
        // AF_INET: 4 + 4 + 2 + 2.
        0x1 => {
            let b = body.get(..12).ok_or(ProxyError::BadV2)?;
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]));
            Ok(ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), u16::from_be_bytes([b[8], b[9]])),
                destination: SocketAddr::new(ip(4), u16::from_be_bytes([b[10], b[11]])),
            })
        }
        // AF_INET6: 16 + 16 + 2 + 2.
        0x2 => {
            let b = body.get(..36).ok_or(ProxyError::BadV2)?;
            let ip = |o: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&b[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Ok(ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), u16::from_be_bytes([b[32], b[33]])),
                destination: SocketAddr::new(ip(16), u16::from_be_bytes([b[34], b[35]])),
            })
        }
        // AF_UNSPEC, AF_UNIX: §2.2 says to use the connection's own addresses.
        0x0 | 0x3 => Ok(ProxyHeader::Local),
        _ => Err(ProxyError::BadV2),
    }
}

/// A version 2 header for `source` -> `destination` (both of one family), as a proxy
/// sends it; for tests and the load generator.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21); // version 2, PROXY
    let mut addrs = Vec::new();
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            addrs.extend_from_slice(&s.octets());
            addrs.extend_from_slice(&d.octets());
            0x11 // AF_INET, STREAM
        }
        (s, d) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            addrs.extend_from_slice(&six(s));
            addrs.extend_from_slice(&six(d));
            0x21 // AF_INET6, STREAM
        }
    };
    addrs.extend_from_slice(&source.port().to_be_bytes());
    addrs.extend_from_slice(&destination.port().to_be_bytes());
    out.push(family);
    out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&addrs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    /// Feed `bytes` the way a driver does, octet counts as asked; the outcome and how
    /// many octets were consumed.
    fn drive(bytes: &[u8]) -> (Result<ProxyHeader, ProxyError>, usize) {
        let mut buf = Vec::new();
        loop {
            match next_read(&buf) {
                Ok(Step::Read(n)) => {
                    assert!(n > 0, "asked to read nothing after {buf:?}");
                    let end = buf.len() + n;
                    if end > bytes.len() {
                        return (Err(ProxyError::Missing), buf.len());
                    }
                    buf.extend_from_slice(&bytes[buf.len()..end]);
                }
                Ok(Step::Done(h)) => return (Ok(h), buf.len()),
                Err(e) => return (Err(e), buf.len()),
            }
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let cases: &[(&[u8], Result<ProxyHeader, ProxyError>)] = &[
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\n",
                Ok(ProxyHeader::Proxied {
                    source: addr("192.0.2.7:56324"),
                    destination: addr("198.51.100.1:25"),
                }),
            ),
            (
                b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 110\r\n",
                Ok(ProxyHeader::Proxied {
                    source: addr("[2001:db8::7]:65535"),
                    destination: addr("[2001:db8::1]:110"),
                }),
            ),
            (b"PROXY UNKNOWN\r\n", Ok(ProxyHeader::Local)),
            (
                b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
                Ok(ProxyHeader::Local),
            ),
            // §2.1 grammar violations.
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\n",
                Err(ProxyError::BadV1),
            ),
            (
                b"PROXY TCP4  192.0.2.7 198.51.100.1 1 25\r\n",
                Err(ProxyError::BadV1),
            ),
            (
                b"PROXY TCP4 2001:db8::7 198.51.100.1 1 25\r\n",
                Err(ProxyError::BadV1),
            ),
            (
                b"PROXY TCP6 192.0.2.7 2001:db8::1 1 25\r\n",
                Err(ProxyError::BadV1),
            ),
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 065 25\r\n",
                Err(ProxyError::BadV1),
            ),
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n",
                Err(ProxyError::BadV1),
            ),
            (
                b"PROXY TCP4 192.0.2.7 198.51.100.1 1 25 x\r\n",
                Err(ProxyError::BadV1),
            ),
            (
                b"PROXY UDP4 192.0.2.7 198.51.100.1 1 25\r\n",
                Err(ProxyError::BadV1),
            ),
            (b"PROXY TCP4 192.0.2.7\r\n", Err(ProxyError::BadV1)),
            // Not a header at all: a trusted proxy that forgot it, or a client.
            (b"EHLO client.example\r\n", Err(ProxyError::Missing)),
            (b"USER bob\r\n", Err(ProxyError::Missing)),
            (
                b"proxy TCP4 192.0.2.7 198.51.100.1 1 25\r\n",
                Err(ProxyError::Missing),
            ),
        ];
        for (bytes, want) in cases {
            let (got, used) = drive(bytes);
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(bytes));
            if got.is_ok() {
                assert_eq!(used, bytes.len(), "read past the header");
            }
        }
    }

    #[test]
    fn v1_never_reads_past_the_line_nor_beyond_107_octets() {
        let mut bytes = b"PROXY TCP4 192.0.2.7 198.51.100.1 1 25\r\nEHLO x\r\n".to_vec();
        let (got, used) = drive(&bytes);
        assert!(got.is_ok());
        assert_eq!(&bytes[used..], b"EHLO x\r\n");
        bytes = b"PROXY UNKNOWN ".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 200));
        let (got, used) = drive(&bytes);
        assert_eq!(got, Err(ProxyError::TooLong));
        assert_eq!(used, V1_MAX);
    }

    #[test]
    fn v2_inet_inet6_local_and_tlvs() {
        let header = encode_v2(addr("192.0.2.7:56324"), addr("198.51.100.1:25"));
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"\x16\x03\x01"); // a TLS ClientHello follows
        let (got, used) = drive(&bytes);
        assert_eq!(
            got,
            Ok(ProxyHeader::Proxied {
                source: addr("192.0.2.7:56324"),
                destination: addr("198.51.100.1:25"),
            })
        );
        assert_eq!(used, header.len(), "read past the header");
        assert_eq!(header.len(), 16 + 12);

        let six = encode_v2(addr("[2001:db8::7]:1"), addr("[2001:db8::1]:995"));
        assert_eq!(
            drive(&six).0,
            Ok(ProxyHeader::Proxied {
                source: addr("[2001:db8::7]:1"),
                destination: addr("[2001:db8::1]:995"),
            })
        );

        // TLVs after the addresses are skipped, and counted in the length.
        let mut tlv = header.clone();
        tlv.extend_from_slice(&[0x04, 0x00, 0x02, b'h', b'i']);
        let len = (tlv.len() - 16) as u16;
        tlv[14..16].copy_from_slice(&len.to_be_bytes());
        assert_eq!(drive(&tlv), (drive(&header).0, tlv.len()));

        // LOCAL (a health check), UNSPEC and UNIX: the connection's own addresses.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(drive(&local).0, Ok(ProxyHeader::Local));
        let mut unix = V2_SIGNATURE.to_vec();
        unix.extend_from_slice(&[0x21, 0x31, 0x00, 216]);
        unix.extend(std::iter::repeat_n(0u8, 216));
        assert_eq!(drive(&unix).0, Ok(ProxyHeader::Local));
    }

    #[test]
    fn v2_malformed() {
        let good = encode_v2(addr("192.0.2.7:1"), addr("198.51.100.1:25"));
        let mut version1 = good.clone();
        version1[12] = 0x11;
        let mut command = good.clone();
        command[12] = 0x22;
        let mut short = good.clone();
        short[15] = 8; // an AF_INET block needs 12
        short.truncate(16 + 8);
        let mut family = good.clone();
        family[13] = 0x41;
        let mut huge = good.clone();
        huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        let mut signature = good.clone();
        signature[10] = b'X';
        for (what, bytes, want) in [
            ("version 1 in a v2 header", version1, ProxyError::BadV2),
            ("command 2", command, ProxyError::BadV2),
            ("an address block too short", short, ProxyError::BadV2),
            ("an unknown family", family, ProxyError::BadV2),
            ("64 KiB of TLVs", huge, ProxyError::TooLong),
            ("a broken signature", signature, ProxyError::Missing),
        ] {
            assert_eq!(drive(&bytes).0, Err(want), "{what}");
        }
    }
}
