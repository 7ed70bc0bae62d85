//! Where a recipient domain's mail goes: the transport map, else the smarthost, else
//! the domain's MX records (then its A/AAAA records), RFC 5321 §5.1.

use crate::config::RelaySettings;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use popgate_core::Secret;
use popgate_core::smtp_client::{Credentials, Failure, TlsMode};
use std::net::{IpAddr, SocketAddr};

/// One next hop by name (or address literal) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hop {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How to reach a group of recipients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Hosts in the order to try them (MX preference order).
    pub hops: Vec<Hop>,
    pub tls: TlsMode,
    pub auth: Option<Credentials>,
}

impl Route {
    /// Recipients with the same key share one transaction and one concurrency limit.
    pub fn key(&self) -> String {
        self.hops
            .iter()
            .map(Hop::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The routing table and the DNS resolver.
#[derive(Debug)]
pub struct Router {
    settings: RelaySettings,
    resolver: TokioResolver,
}

impl Router {
    pub fn new(settings: RelaySettings) -> anyhow::Result<Router> {
        let resolver = match settings.resolver {
            Some(addr) => {
                let mut config = ResolverConfig::new();
                config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
                let mut builder =
                    TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
                // A configured resolver is the only truth: no caching across tests of
                // changing records, no /etc/hosts.
                builder.options_mut().use_hosts_file =
                    hickory_resolver::config::ResolveHosts::Never;
                builder.options_mut().cache_size = 0;
                builder.build()
            }
            None => TokioResolver::builder_tokio()?.build(),
        };
        Ok(Router { settings, resolver })
    }

    /// The route of `domain` (lowercase, no trailing dot).
    pub async fn route(&self, domain: &str) -> Result<Route, Failure> {
        let s = &self.settings;
        let required = s.require_tls.iter().any(|d| d == "*" || d == domain);
        let tls = if required {
            TlsMode::Required
        } else {
            TlsMode::Opportunistic
        };
        if let Some(next) = s.transport.get(domain) {
            return Ok(Route {
                hops: vec![parse_hop(next)?],
                tls,
                auth: None,
            });
        }
        if !s.smarthost.is_empty() {
            let auth = (!s.smarthost_user.is_empty()).then(|| Credentials {
                user: s.smarthost_user.clone(),
                password: Secret::new(s.smarthost_password.clone()),
            });
            let tls = if s.smarthost_require_tls {
                TlsMode::Required
            } else {
                tls
            };
            return Ok(Route {
                hops: vec![parse_hop(&s.smarthost)?],
                tls,
                auth,
            });
        }
        let hosts = self.mx_hosts(domain).await?;
        Ok(Route {
            hops: hosts
                .into_iter()
                .map(|host| Hop {
                    host,
                    port: s.mx_port,
                })
                .collect(),
            tls,
            auth: None,
        })
    }

    /// RFC 5321 §5.1: the MX hosts by preference; no MX records means the domain
    /// itself (the implicit MX); a null MX (RFC 7505) or a domain that does not exist
    /// is a permanent failure; any other lookup failure is temporary.
    async fn mx_hosts(&self, domain: &str) -> Result<Vec<String>, Failure> {
        let name = format!("{domain}.");
        match self.resolver.mx_lookup(name.as_str()).await {
            Ok(lookup) => {
                let mut records: Vec<(u16, String)> = lookup
                    .iter()
                    .map(|mx| {
                        let host = mx.exchange().to_ascii();
                        (
                            mx.preference(),
                            host.trim_end_matches('.').to_ascii_lowercase(),
                        )
                    })
                    .collect();
                // RFC 7505 §3: a single MX of "." with preference 0 says "no mail".
                if records.iter().any(|(_, host)| host.is_empty()) {
                    return Err(Failure::permanent(
                        "5.1.10",
                        format!("{domain} accepts no mail (null MX, RFC 7505)"),
                    ));
                }
                // RFC 5321 §5.1: lowest preference first; equal ones in any order.
                records.sort();
                records.dedup_by(|a, b| a.1 == b.1);
                if records.is_empty() {
                    return Ok(vec![domain.to_owned()]);
                }
                Ok(records.into_iter().map(|(_, host)| host).collect())
            }
            Err(e) if e.is_nx_domain() => Err(Failure::permanent(
                "5.1.2",
                format!("{domain} does not exist (DNS: no such domain)"),
            )),
            // RFC 5321 §5.1: no MX records: the domain is its own mail host.
            Err(e) if e.is_no_records_found() => Ok(vec![domain.to_owned()]),
            Err(e) => Err(dns_temporary(domain, "MX", &e)),
        }
    }

    /// The addresses of a hop, IPv6 and IPv4 as the resolver returns them.
    pub async fn addresses(&self, hop: &Hop) -> Result<Vec<SocketAddr>, Failure> {
        if let Ok(ip) = hop.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, hop.port)]);
        }
        let name = format!("{}.", hop.host);
        match self.resolver.lookup_ip(name.as_str()).await {
            Ok(lookup) => Ok(lookup
                .iter()
                .map(|ip| SocketAddr::new(ip, hop.port))
                .collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Err(Failure::permanent(
                "5.1.2",
                format!("mail host {} has no address", hop.host),
            )),
            Err(e) => Err(dns_temporary(&hop.host, "A/AAAA", &e)),
        }
    }
}

fn dns_temporary(name: &str, what: &str, e: &ResolveError) -> Failure {
    Failure::temporary("4.4.3", format!("DNS {what} lookup of {name} failed: {e}"))
}

/// "host:port" as the configuration checked it; `[v6]:port` too.
fn parse_hop(text: &str) -> Result<Hop, Failure> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Hop {
            host: addr.ip().to_string(),
            port: addr.port(),
        });
    }
    match text.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(port) => Ok(Hop {
                host: host.trim_end_matches('.').to_ascii_lowercase(),
                port,
            }),
            Err(_) => Err(bad_hop(text)),
        },
        None => Err(bad_hop(text)),
    }
}

fn bad_hop(text: &str) -> Failure {
    Failure::temporary("4.3.5", format!("next hop {text:?} is not host:port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_parse_and_print() {
        let h = parse_hop("127.0.0.1:2626").expect("hop");
        assert_eq!(h.to_string(), "127.0.0.1:2626");
        let h = parse_hop("[::1]:25").expect("hop");
        assert_eq!((h.host.as_str(), h.port), ("::1", 25));
        assert_eq!(h.to_string(), "[::1]:25");
        let h = parse_hop("Smtp.Example.net.:587").expect("hop");
        assert_eq!(h.to_string(), "smtp.example.net:587");
        assert!(parse_hop("nowhere").is_err());
    }

    #[tokio::test]
    async fn transport_map_wins_over_smarthost() {
        let mut s = RelaySettings::default();
        s.transport
            .insert("partner.test".into(), "127.0.0.1:2626".into());
        s.smarthost = "smart.example.net:587".into();
        s.require_tls = vec!["partner.test".into()];
        let r = Router::new(s).expect("router");
        let route = r.route("partner.test").await.expect("route");
        assert_eq!(route.key(), "127.0.0.1:2626");
        assert_eq!(route.tls, TlsMode::Required);
        let route = r.route("other.test").await.expect("route");
        assert_eq!(route.key(), "smart.example.net:587");
        assert_eq!(route.tls, TlsMode::Opportunistic);
    }
}
