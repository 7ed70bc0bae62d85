//! Addresses as the grant table and relay policy see them.
//!
//! DESIGN: a grant's key is the peer address canonicalised (`::ffff:a.b.c.d` is
//! `a.b.c.d`) and masked to a prefix (default /32 for IPv4, /64 for IPv6).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// `::ffff:a.b.c.d` (an IPv4 client on a dual-stack socket) becomes `a.b.c.d`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// True for 127.0.0.1 and ::1 (after canonicalisation): the addresses DESIGN lets
/// authenticate without TLS. Deliberately not all of 127/8: tests act as other hosts
/// from 127.0.0.2 and up.
pub fn is_local_host(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

/// A network: an address with its host bits cleared and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidrError {
    BadAddress(String),
    BadPrefix(String),
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::BadAddress(s) => write!(f, "{s:?} is not an IP address"),
            CidrError::BadPrefix(s) => write!(f, "{s:?} is not a valid prefix length"),
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The network of `ip` (canonicalised) with `prefix` bits kept; the prefix is
    /// clamped to the address family's width.
    pub fn new(ip: IpAddr, prefix: u8) -> Cidr {
        let ip = canonical(ip);
        match ip {
            IpAddr::V4(v4) => {
                let prefix = prefix.min(32);
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                };
                Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask)),
                    prefix,
                }
            }
            IpAddr::V6(v6) => {
                let prefix = prefix.min(128);
                let mask = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - prefix)
                };
                Cidr {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                    prefix,
                }
            }
        }
    }

    /// A single host (/32 or /128).
    pub fn host(ip: IpAddr) -> Cidr {
        Cidr::new(ip, 128)
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        matches!(
            (ip, self.addr),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
        ) && Cidr::new(ip, self.prefix) == *self
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `192.0.2.0/24`, `2001:db8::/32`, or a bare address meaning one host.
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(addr.to_owned()))?;
        let ip = canonical(ip);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(CidrError::BadPrefix(p.to_owned())),
            },
        };
        Ok(Cidr::new(ip, prefix))
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Cidr, CidrError> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn canonicalises_mapped_v4() {
        assert_eq!(canonical(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
        assert!(is_local_host(ip("::ffff:127.0.0.1")));
        assert!(!is_local_host(ip("127.0.0.2")));
    }

    #[test]
    fn masks_and_contains() {
        let c = Cidr::new(ip("2001:db8:1:2:3:4:5:6"), 64);
        assert_eq!(c.to_string(), "2001:db8:1:2::/64");
        assert!(c.contains(ip("2001:db8:1:2::99")));
        assert!(!c.contains(ip("2001:db8:1:3::1")));
        assert!(!c.contains(ip("192.0.2.1")));
        let v4: Cidr = "10.1.2.3/8".parse().expect("cidr");
        assert_eq!(v4.to_string(), "10.0.0.0/8");
        assert!(v4.contains(ip("::ffff:10.9.9.9")));
        assert_eq!("192.0.2.1".parse::<Cidr>().map(|c| c.prefix()), Ok(32));
        assert_eq!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .map(|c| c.contains(ip("8.8.8.8"))),
            Ok(true)
        );
    }

    #[test]
    fn rejects_bad_ranges() {
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::BadPrefix("33".into()))
        );
        assert_eq!(
            "nope/8".parse::<Cidr>(),
            Err(CidrError::BadAddress("nope".into()))
        );
        assert!("::/129".parse::<Cidr>().is_err());
    }
}
