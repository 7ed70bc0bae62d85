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

/// DESIGN: domains compare case-insensitively and may not end in a dot; one trailing
/// dot on the compared name (`example.test.`) is the same domain written absolutely.
pub fn is_local_domain(local_domains: &[String], domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    local_domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

/// An address in one of the local domains; a bare local part (`postmaster`,
/// RFC 5321 §4.5.1) is local too.
pub fn is_local_address(local_domains: &[String], address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((_, domain)) => is_local_domain(local_domains, domain),
        None => true,
    }
}

/// A login or address as the user database keys it: lowercased, and a bare name
/// (`taro`) at the first local domain (DESIGN "Storage and delivery").
pub fn canonical_user(local_domains: &[String], login: &str) -> String {
    let lower = login.trim().to_ascii_lowercase();
    if lower.contains('@') {
        return lower;
    }
    match local_domains.first() {
        Some(domain) => format!("{lower}@{domain}"),
        None => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    #[test]
    fn local_domains_compare_without_case() {
        let local = vec!["example.test".to_owned()];
        assert!(is_local_domain(&local, "Example.TEST"));
        assert!(is_local_domain(&local, "example.test."));
        assert!(!is_local_domain(&local, "sub.example.test"));
        assert!(is_local_address(&local, "Taro@EXAMPLE.test"));
        assert!(is_local_address(&local, "postmaster"));
        assert!(!is_local_address(&local, "a@remote.test"));
        assert_eq!(canonical_user(&local, " Taro "), "taro@example.test");
        assert_eq!(
            canonical_user(&local, "Hanako@Example.Test"),
            "hanako@example.test"
        );
    }

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
