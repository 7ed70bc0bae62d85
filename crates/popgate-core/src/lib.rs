//! popgate-core: the sans-IO heart of popgate.
//!
//! Nothing in this crate touches a socket, a file or a clock. Every call that needs
//! time takes `now` as [`Millis`]; every action on the outside world (verify a
//! password, open a maildrop, store a message, take a grant) is an *effect* the
//! session asks its driver to perform, whose result is fed back in. The server drives
//! these sessions over real sockets; the browser explainer drives the very same code
//! against an in-memory backend on a virtual clock.
//!
//! # Layout
//!
//! * [`dashboard`]: the dashboard's state, one reducer over events for server and web.
//! * [`api`]: the HTTP API paths clients build (grant keys percent-encoded once).
//! * [`driver`]: the handle_*/poll_* contract both sessions share, as a trait.
//! * [`time`]: the [`Millis`] instant and wall-clock date formatting.
//! * [`net`]: address canonicalisation, prefix masking and CIDR ranges.
//! * [`line`](mod@line): the bounded line receiver both protocols read commands with.
//! * [`reply`]: every SMTP and POP3 reply users and scripts match on, defined once.
//! * [`event`]: the [`Event`] stream the dashboard renders, with secrets redacted.
//! * [`grant`]: the POP-before-SMTP grant table (the heart).
//! * [`shared_grant`]: grants in a store several nodes share, computed with the table's rules.
//! * [`relay`]: per-listener relay policy.
//! * [`migration`]: grant modes (on, warn, off) and who still depends on grants.
//! * [`sasl`]: SASL exchanges (PLAIN, LOGIN, CRAM-MD5) shared by SMTP and POP3 AUTH.
//! * [`throttle`]: the progressive per-address login-failure delay.
//! * [`pop3`]: the POP3 server session (RFC 1939, 2449, 2595 STLS, 5034 AUTH).
//! * [`smtp`]: the SMTP server session (RFC 5321 and extensions).
//! * [`policy`]: Postfix policy delegation answered from the grant table.
//! * [`proxy`]: the PROXY protocol v1/v2 header a load balancer sends first.
//! * [`smtp_client`]: the SMTP client that delivers relayed mail to the next hop.
//! * [`dsn`]: delivery status notifications (RFC 3464 bounces).
//! * [`dkim`]: DKIM canonicalisation and hashes for signing relayed mail (RFC 6376).
//! * [`sim`]: the explainer's simulator: these sessions and the grant table against an
//!   in-memory backend on a virtual clock, and scenarios as data.

pub mod api;
pub mod dashboard;
pub mod dkim;
pub mod driver;
pub mod dsn;
pub mod event;
/// Sessions fed arbitrary bytes for the fuzz targets and property tests; not an API.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod grant;
pub mod line;
pub mod migration;
pub mod net;
pub mod policy;
pub mod proxy;
// Native only: proptest does not run under wasm32.
pub mod pop3;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests_protocol;
pub mod relay;
pub mod reply;
pub mod sasl;
pub mod shared_grant;
pub mod sim;
pub mod smtp;
pub mod smtp_client;
pub mod throttle;
pub mod time;

pub use event::{Event, EventKind, Protocol, SessionId};
pub use time::Millis;

/// A secret from the network (a password, an AUTH payload). Its `Debug` never shows
/// the value, so a secret that ends up in a log line or an event is still hidden.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the code that verifies it and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// Shorthand for tests that must also run on wasm32 under node.
#[cfg(test)]
pub(crate) mod testing {
    #[cfg(not(target_arch = "wasm32"))]
    pub use core::prelude::v1::test;
    #[cfg(target_arch = "wasm32")]
    pub use wasm_bindgen_test::wasm_bindgen_test as test;
}
