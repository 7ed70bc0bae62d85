//! The POP-before-SMTP grant table (DESIGN.md "Grant semantics").
//!
//! A verified POP3 login grants the client's address (canonicalised, masked to a
//! prefix) the right to relay for a time-to-live and optionally a number of messages.
//! The table is pure: time is passed in, expiry is exact to the millisecond (a grant is
//! valid while `now < expires`), and every change pushes an [`Event`] that the caller
//! drains with [`GrantTable::poll_event`].
//!
//! Counting without races: the first relayed RCPT of a transaction
//! [`reserve`](GrantTable::reserve)s one message; the 250 after end of data
//! [`commit`](GrantTable::commit)s it; RSET, QUIT, a dropped connection or a refused
//! message [`release`](GrantTable::release)s it. Available = messages left - reserved,
//! so two transactions can never both spend a grant's last message.
//!
//! The table is a TTL map in the manner of mini-redis `db.rs`: a `HashMap` of grants
//! plus a `BTreeSet<(expires, key)>`, so [`purge`](GrantTable::purge) is cheap and
//! returns the next deadline.

use crate::event::{Event, SessionId};
use crate::net::Cidr;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

/// The grant settings of DESIGN.md `[grant]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantConfig {
    pub ttl: Duration,
    /// `None`: no count limit.
    pub max_messages: Option<u32>,
    /// Each new login on a live grant extends it (the classic default).
    pub sliding: bool,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Ranges that never receive a grant (e.g. shared cloud fetchers).
    pub deny: Vec<Cidr>,
    /// Cap on the table size; when full the grant closest to expiry is evicted.
    pub max_entries: usize,
}

impl Default for GrantConfig {
    fn default() -> GrantConfig {
        GrantConfig {
            ttl: Duration::from_secs(30 * 60),
            max_messages: None,
            sliding: true,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            deny: Vec::new(),
            max_entries: 100_000,
        }
    }
}

/// What a grant looks like from outside: API, events, dashboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    pub key: Cidr,
    /// The latest login on this key.
    pub user: String,
    /// Every user that logged in on this key, oldest first, without repeats.
    pub users: Vec<String>,
    /// The session that made (or last refreshed) the grant; `None` when added by hand.
    pub session: Option<SessionId>,
    pub created: Millis,
    pub expires: Millis,
    /// `None`: no count limit.
    pub messages_left: Option<u32>,
    /// Messages reserved by transactions in flight.
    pub reserved: u32,
    pub sliding: bool,
    /// Operator note for grants added by hand.
    pub note: Option<String>,
}

/// Why a relay on a grant was refused (also why none was found).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayRefusal {
    /// No grant for this address (and no other permission).
    NoGrant,
    /// There was a grant, and it expired.
    Expired,
    /// The grant's message count is spent (or fully reserved by transactions in flight).
    UsedUp,
    /// The listener requires AUTH and the session has not authenticated.
    AuthRequired,
}

/// A message reserved on a grant by one SMTP transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub key: Cidr,
    pub user: String,
    pub granting_session: Option<SessionId>,
}

/// The outcome of a verified login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginGrant {
    Created(GrantView),
    Refreshed(GrantView),
    /// The address is in a deny range: no grant.
    Denied,
}
