//! Relay policy per listener (DESIGN.md): what may relay there.
//!
//! `trusted` (configured networks, empty by default: no address is trusted unless
//! configured, loopback included), `grant` (POP before SMTP) and `auth` (SMTP AUTH).
//! Defaults: SMTP `["grant", "auth"]`; submission and SMTPS `["auth"]`.

use crate::net::Cidr;
use std::net::IpAddr;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayPolicy {
    /// Networks allowed to relay without anything else; empty means none.
    pub trusted: Vec<Cidr>,
    pub grant: bool,
    pub auth: bool,
}

impl RelayPolicy {
    /// The SMTP (port 25) listener's default: POP before SMTP or AUTH.
    pub fn smtp_default() -> RelayPolicy {
        RelayPolicy {
            trusted: Vec::new(),
            grant: true,
            auth: true,
        }
    }

    /// Submission and SMTPS: AUTH only (RFC 6409).
    pub fn submission_default() -> RelayPolicy {
        RelayPolicy {
            trusted: Vec::new(),
            grant: false,
            auth: true,
        }
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    #[test]
    fn nothing_is_trusted_by_default_not_even_loopback() {
        let p = RelayPolicy::smtp_default();
        assert!(!p.trusts("127.0.0.1".parse().expect("ip")));
        let p = RelayPolicy {
            trusted: vec!["127.0.0.0/8".parse().expect("cidr")],
            ..p
        };
        assert!(p.trusts("127.0.0.9".parse().expect("ip")));
    }
}
