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
//!
//! # Calling contract
//!
//! ```text
//! POP3 credentials verify      -> login(now, peer, user, session)   before the +OK is written
//! SMTP: first relayed RCPT     -> reserve(now, peer, session)       Ok: the RCPT may relay
//! SMTP: 250 after end of data  -> commit(now, reservation.key, session)
//! RSET, QUIT, drop, refusal    -> release(now, reservation.key, session)
//! operator                     -> add / revoke / revoke_user / flush / list / get
//! driver timer                 -> purge(now) returns the next deadline: sleep until then
//! after every call             -> while let Some(e) = poll_event() { publish(e) }
//! ```
//!
//! Choices the design leaves open, made here:
//!
//! * **Lookup.** A peer is looked up under its host key (/32, /128), its masked key
//!   (the configured prefix) and any operator-added network of another width that
//!   contains it (kept in a small side set, so the common case is two hash probes).
//!   The most specific live grant with a message available wins.
//! * **Reservations** are tracked per session: a session holds at most one reservation
//!   per grant (RFC 5321 §3.3: one mail transaction at a time), so a repeated reserve
//!   returns the reservation it already holds, and a commit or release from a session
//!   that holds none (a double release, a grant replaced meanwhile) is a no-op.
//! * **Replacement.** A fresh grant (a login on an expired or spent grant, an operator
//!   add on an existing key) starts with no reservations: transactions still in flight
//!   on the grant it replaced commit or release as no-ops against it.
//! * **Expired entries** that purge has not reached yet are invisible: every lookup
//!   treats `now >= expires` as gone, and the calls that may change the table (login,
//!   add, reserve, revoke, flush) remove such an entry with a `GrantExpired` event.
//! * **Operator grants** (`add`) ignore the deny ranges (the operator asked for them)
//!   and carry their own time-to-live and message limit, which a sliding refresh
//!   renews with. `messages: Some(0)` means no count limit, as `max_messages = 0` does
//!   in the configuration.

use crate::event::{Event, EventKind, SessionId};
use crate::net::Cidr;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests;
#[cfg(test)]
mod tests;

/// The `reason` strings grant events carry, defined once.
pub mod reason {
    /// `GrantRefused`: the login came from a configured deny range.
    pub const DENY_RANGE: &str = "address in a deny range";
    /// `GrantRevoked`: an operator revoked the grant.
    pub const REVOKED: &str = "revoked";
    /// `GrantRevoked`: an operator flushed the table.
    pub const FLUSHED: &str = "flushed";
    /// `GrantRevoked`: a user whose login made the grant was removed.
    pub const USER_REMOVED: &str = "user removed";
    /// `GrantRevoked`: a user whose login made the grant changed their password.
    pub const PASSWORD_CHANGED: &str = "password changed";
    /// `GrantRevoked`: the table was full and this grant was closest to expiry.
    pub const EVICTED: &str = "evicted";
}

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

/// One stored grant: its public view plus what the table needs to renew and count it.
#[derive(Clone, Debug)]
struct Entry {
    /// `grant.reserved` is always `holders.len()`.
    grant: GrantView,
    /// What a sliding refresh renews with: the configuration's, or the operator's.
    ttl: Duration,
    max_messages: Option<u32>,
    /// The sessions holding a reservation on this grant.
    holders: BTreeSet<SessionId>,
}

impl Entry {
    /// Exact expiry: valid while `now < expires`, invalid at `expires` to the millisecond.
    fn live(&self, now: Millis) -> bool {
        now < self.grant.expires
    }

    /// Messages that a new reservation may take; `None`: no count limit.
    fn available(&self) -> Option<u32> {
        self.grant
            .messages_left
            .map(|left| left.saturating_sub(self.grant.reserved))
    }

    /// Every message was committed: nothing left even if every reservation is released.
    fn spent(&self) -> bool {
        self.grant.messages_left == Some(0)
    }

    fn sync_reserved(&mut self) {
        self.grant.reserved = u32::try_from(self.holders.len()).unwrap_or(u32::MAX);
    }

    fn reservation(&self) -> Reservation {
        Reservation {
            key: self.grant.key,
            user: self.grant.user.clone(),
            granting_session: self.grant.session,
        }
    }
}

/// User names compare case-insensitively (DESIGN: local parts match case-insensitively).
fn same_user(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
}

/// Two networks overlap iff the wider one contains the other's network address.
fn overlaps(a: &Cidr, b: &Cidr) -> bool {
    a.contains(b.addr()) || b.contains(a.addr())
}

/// The address family's width: the prefix of a single host.
fn host_width(key: &Cidr) -> u8 {
    if key.addr().is_ipv4() { 32 } else { 128 }
}

/// The POP-before-SMTP grant table. See the module documentation for the calling
/// contract and the semantics.
#[derive(Debug)]
pub struct GrantTable {
    config: GrantConfig,
    entries: HashMap<Cidr, Entry>,
    /// `(expires, key)` for every entry, kept in sync with `entries`: the first element
    /// is the next deadline, and purge walks only what expired.
    deadlines: BTreeSet<(Millis, Cidr)>,
    /// Keys a peer lookup cannot derive from the address (operator networks of a width
    /// other than the host's or the configured prefix), most specific first.
    networks: BTreeSet<(Reverse<u8>, Cidr)>,
    /// Changes not yet drained by `poll_event`.
    events: VecDeque<Event>,
}

impl Default for GrantTable {
    fn default() -> GrantTable {
        GrantTable::new(GrantConfig::default())
    }
}

impl GrantTable {
    pub fn new(config: GrantConfig) -> GrantTable {
        GrantTable {
            config,
            entries: HashMap::new(),
            deadlines: BTreeSet::new(),
            networks: BTreeSet::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &GrantConfig {
        &self.config
    }

    /// The key a login from `peer` grants: canonicalised (`::ffff:a.b.c.d` is
    /// `a.b.c.d`) and masked to the configured prefix of its family.
    pub fn key_for(&self, peer: IpAddr) -> Cidr {
        let peer = crate::net::canonical(peer);
        let prefix = if peer.is_ipv4() {
            self.config.ipv4_prefix
        } else {
            self.config.ipv6_prefix
        };
        Cidr::new(peer, prefix)
    }

    /// A verified login from `peer` (DESIGN: called before the POP3 `+OK` is written).
    ///
    /// Creates a grant, or refreshes the live one on the key: a sliding grant gets
    /// `expires = now + ttl` and its full message count back; a fixed grant keeps its
    /// expiry and count. Either way the login becomes the grant's `user` and `session`
    /// and joins its user history. A fixed grant whose messages are all spent, and any
    /// expired grant, is replaced by a fresh one. Denied (no grant, a `GrantRefused`
    /// event) when the key overlaps a deny range.
    pub fn login(
        &mut self,
        now: Millis,
        peer: IpAddr,
        user: &str,
        session: SessionId,
    ) -> LoginGrant {
        self.login_noted(now, peer, user, session, None)
    }

    /// [`login`](Self::login) for a login another server verified (Dovecot's IMAP or
    /// POP3): `note` says which (e.g. `dovecot imap`) and becomes the grant's note,
    /// replacing the previous one when the login refreshes a grant.
    pub fn login_noted(
        &mut self,
        now: Millis,
        peer: IpAddr,
        user: &str,
        session: SessionId,
        note: Option<String>,
    ) -> LoginGrant {
        let key = self.key_for(peer);
        // A grant on a key that covers any denied address would let that address
        // relay, so the check is for overlap, not only for the peer itself.
        if self.config.deny.iter().any(|deny| overlaps(deny, &key)) {
            self.push(
                now,
                Some(session),
                EventKind::GrantRefused {
                    key,
                    user: user.to_owned(),
                    reason: reason::DENY_RANGE.to_owned(),
                },
            );
            return LoginGrant::Denied;
        }
        self.drop_if_expired(now, key);
        let refreshed = match self.entries.get_mut(&key) {
            Some(entry) if entry.grant.sliding || !entry.spent() => {
                entry.grant.user = user.to_owned();
                if !entry.grant.users.iter().any(|seen| same_user(seen, user)) {
                    entry.grant.users.push(user.to_owned());
                }
                entry.grant.session = Some(session);
                if note.is_some() {
                    entry.grant.note = note.clone();
                }
                let old_expires = entry.grant.expires;
                if entry.grant.sliding {
                    entry.grant.expires = now.saturating_add(entry.ttl);
                    // Reservations in flight stay: there are never more of them than
                    // the messages that were left, so available stays >= 0.
                    entry.grant.messages_left = entry.max_messages;
                }
                Some((old_expires, entry.grant.clone()))
            }
            _ => None,
        };
        match refreshed {
            Some((old_expires, view)) => {
                self.reschedule(key, old_expires, view.expires);
                self.push(
                    now,
                    Some(session),
                    EventKind::GrantRefreshed {
                        grant: view.clone(),
                    },
                );
                LoginGrant::Refreshed(view)
            }
            None => {
                let entry = Entry {
                    grant: GrantView {
                        key,
                        user: user.to_owned(),
                        users: vec![user.to_owned()],
                        session: Some(session),
                        created: now,
                        expires: now.saturating_add(self.config.ttl),
                        messages_left: self.config.max_messages,
                        reserved: 0,
                        sliding: self.config.sliding,
                        note,
                    },
                    ttl: self.config.ttl,
                    max_messages: self.config.max_messages,
                    holders: BTreeSet::new(),
                };
                LoginGrant::Created(self.insert_fresh(now, Some(session), entry))
            }
        }
    }

    /// An operator grant (CLI, HTTP API) for a network or a host. `ttl` and `messages`
    /// override the configuration (`Some(0)` messages: no count limit). An existing
    /// grant on the same key is replaced.
    pub fn add(
        &mut self,
        now: Millis,
        key: Cidr,
        user: &str,
        ttl: Option<Duration>,
        messages: Option<u32>,
        note: Option<String>,
    ) -> GrantView {
        let ttl = ttl.unwrap_or(self.config.ttl);
        let max_messages = match messages {
            None => self.config.max_messages,
            Some(0) => None,
            Some(n) => Some(n),
        };
        self.drop_if_expired(now, key);
        let entry = Entry {
            grant: GrantView {
                key,
                user: user.to_owned(),
                users: vec![user.to_owned()],
                session: None,
                created: now,
                expires: now.saturating_add(ttl),
                messages_left: max_messages,
                reserved: 0,
                sliding: self.config.sliding,
                note,
            },
            ttl,
            max_messages,
            holders: BTreeSet::new(),
        };
        self.insert_fresh(now, None, entry)
    }

    /// The first relayed RCPT of a transaction: reserve one message on the grant that
    /// covers `peer`. Valid iff `now < expires` and a message is available (messages
    /// left minus those reserved by transactions in flight).
    pub fn reserve(
        &mut self,
        now: Millis,
        peer: IpAddr,
        session: SessionId,
    ) -> Result<Reservation, RelayRefusal> {
        // The most telling refusal wins: a spent grant over an expired one over none.
        let mut refusal = RelayRefusal::NoGrant;
        for key in self.candidates(peer) {
            if self.drop_if_expired(now, key) {
                if refusal == RelayRefusal::NoGrant {
                    refusal = RelayRefusal::Expired;
                }
                continue;
            }
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            if entry.holders.contains(&session) {
                return Ok(entry.reservation());
            }
            if entry.available() == Some(0) {
                refusal = RelayRefusal::UsedUp;
                continue;
            }
            entry.holders.insert(session);
            entry.sync_reserved();
            let reservation = entry.reservation();
            self.push(
                now,
                Some(session),
                EventKind::GrantReserved {
                    key,
                    user: reservation.user.clone(),
                },
            );
            return Ok(reservation);
        }
        Err(refusal)
    }

    /// The relayed message was accepted (250 after end of data): the reservation
    /// becomes a used message. A no-op when `session` holds no reservation on `key`
    /// (the grant was revoked, purged or replaced meanwhile, or this is a repeat).
    pub fn commit(&mut self, now: Millis, key: Cidr, session: SessionId) {
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        if !entry.holders.remove(&session) {
            return;
        }
        entry.sync_reserved();
        if let Some(left) = entry.grant.messages_left.as_mut() {
            // Never saturates: a reservation is only taken while left > reserved.
            *left = left.saturating_sub(1);
        }
        let kind = EventKind::GrantUsed {
            key,
            user: entry.grant.user.clone(),
            messages_left: entry.grant.messages_left,
        };
        self.push(now, Some(session), kind);
    }

    /// RSET, QUIT, a dropped connection or a refused message: the reserved message is
    /// available again. A no-op when `session` holds no reservation on `key`.
    pub fn release(&mut self, now: Millis, key: Cidr, session: SessionId) {
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        if !entry.holders.remove(&session) {
            return;
        }
        entry.sync_reserved();
        self.push(now, Some(session), EventKind::GrantReleased { key });
    }

    /// Operator revoke of the grant stored under exactly `key`. False when there is no
    /// live grant there (an expired one is removed as expired).
    pub fn revoke(&mut self, now: Millis, key: Cidr, reason: &str) -> bool {
        if self.drop_if_expired(now, key) || self.remove(key).is_none() {
            return false;
        }
        self.push(
            now,
            None,
            EventKind::GrantRevoked {
                key,
                reason: reason.to_owned(),
            },
        );
        true
    }

    /// The user was removed: revoke every grant whose users include them
    /// (case-insensitively). Returns how many live grants were revoked.
    pub fn revoke_user(&mut self, now: Millis, user: &str) -> usize {
        self.revoke_user_with_reason(now, user, reason::USER_REMOVED)
    }

    /// [`revoke_user`](GrantTable::revoke_user) with the reason the events carry, e.g.
    /// [`reason::PASSWORD_CHANGED`].
    pub fn revoke_user_with_reason(&mut self, now: Millis, user: &str, reason: &str) -> usize {
        // Walk in expiry order, not hash order, so the events come out the same every run.
        let keys: Vec<Cidr> = self
            .deadlines
            .iter()
            .map(|&(_, key)| key)
            .filter(|key| {
                self.entries
                    .get(key)
                    .is_some_and(|entry| entry.grant.users.iter().any(|seen| same_user(seen, user)))
            })
            .collect();
        keys.into_iter()
            .filter(|&key| self.revoke(now, key, reason))
            .count()
    }

    /// Revoke every grant. Returns how many live grants were revoked.
    pub fn flush(&mut self, now: Millis) -> usize {
        let keys: Vec<Cidr> = self.deadlines.iter().map(|&(_, key)| key).collect();
        keys.into_iter()
            .filter(|&key| self.revoke(now, key, reason::FLUSHED))
            .count()
    }

    /// The live grant covering `peer`, the most specific first.
    pub fn get(&self, now: Millis, peer: IpAddr) -> Option<GrantView> {
        self.candidates(peer)
            .into_iter()
            .filter_map(|key| self.entries.get(&key))
            .find(|entry| entry.live(now))
            .map(|entry| entry.grant.clone())
    }

    /// Every live grant, soonest expiry first.
    pub fn list(&self, now: Millis) -> Vec<GrantView> {
        self.deadlines
            .iter()
            .skip_while(|&&(expires, _)| expires <= now)
            .filter_map(|(_, key)| self.entries.get(key))
            .map(|entry| entry.grant.clone())
            .collect()
    }

    /// Entries stored, including expired ones that purge has not removed yet.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remove every grant with `expires <= now` (a `GrantExpired` event each, in
    /// expiry order) and return the next deadline, so the driver sleeps exactly until
    /// then. O(expired).
    pub fn purge(&mut self, now: Millis) -> Option<Millis> {
        while let Some(&(expires, key)) = self.deadlines.first() {
            if expires > now {
                return Some(expires);
            }
            self.remove(key);
            self.push(now, None, EventKind::GrantExpired { key });
        }
        None
    }

    /// The next change to publish, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push(&mut self, now: Millis, session: Option<SessionId>, kind: EventKind) {
        self.events.push_back(Event::new(now, session, kind));
    }

    /// The keys that may hold a grant covering `peer`, most specific first: its host
    /// key, its masked key, and the operator networks that contain it.
    fn candidates(&self, peer: IpAddr) -> Vec<Cidr> {
        let host = Cidr::host(peer);
        let masked = self.key_for(peer);
        let mut keys = vec![host];
        if masked != host {
            keys.push(masked);
        }
        keys.extend(
            self.networks
                .iter()
                .map(|&(_, net)| net)
                .filter(|net| net.contains(peer)),
        );
        keys.sort_by_key(|key| Reverse(key.prefix()));
        keys.dedup();
        keys
    }

    /// True when a peer lookup finds `key` without the side set of networks.
    fn derivable(&self, key: &Cidr) -> bool {
        let configured = if key.addr().is_ipv4() {
            self.config.ipv4_prefix
        } else {
            self.config.ipv6_prefix
        };
        key.prefix() == host_width(key) || key.prefix() == configured.min(host_width(key))
    }

    /// Remove the entry under `key` if it has expired, with its `GrantExpired` event.
    fn drop_if_expired(&mut self, now: Millis, key: Cidr) -> bool {
        if self.entries.get(&key).is_some_and(|entry| !entry.live(now)) {
            self.remove(key);
            self.push(now, None, EventKind::GrantExpired { key });
            true
        } else {
            false
        }
    }

    /// Store a fresh grant (replacing any entry on its key, else making room) and emit
    /// `GrantCreated`.
    fn insert_fresh(&mut self, now: Millis, session: Option<SessionId>, entry: Entry) -> GrantView {
        let key = entry.grant.key;
        if self.remove(key).is_none() {
            self.make_room(now);
        }
        let view = entry.grant.clone();
        self.deadlines.insert((view.expires, key));
        if !self.derivable(&key) {
            self.networks.insert((Reverse(key.prefix()), key));
        }
        self.entries.insert(key, entry);
        self.push(
            now,
            session,
            EventKind::GrantCreated {
                grant: view.clone(),
            },
        );
        view
    }

    /// At `max_entries`, evict the grants closest to expiry until one more fits (a
    /// table of zero entries would refuse every login, so it holds at least one). An
    /// entry already expired goes as expired, not as evicted.
    fn make_room(&mut self, now: Millis) {
        let cap = self.config.max_entries.max(1);
        while self.entries.len() >= cap {
            let Some(&(expires, key)) = self.deadlines.first() else {
                break;
            };
            self.remove(key);
            let kind = if expires <= now {
                EventKind::GrantExpired { key }
            } else {
                EventKind::GrantRevoked {
                    key,
                    reason: reason::EVICTED.to_owned(),
                }
            };
            self.push(now, None, kind);
        }
    }

    /// Remove `key` from every index. No event: the caller says why it went.
    fn remove(&mut self, key: Cidr) -> Option<Entry> {
        let entry = self.entries.remove(&key)?;
        self.deadlines.remove(&(entry.grant.expires, key));
        self.networks.remove(&(Reverse(key.prefix()), key));
        Some(entry)
    }

    fn reschedule(&mut self, key: Cidr, old: Millis, new: Millis) {
        if old != new {
            self.deadlines.remove(&(old, key));
            self.deadlines.insert((new, key));
        }
    }

    /// Every index agrees with every other, and every count is within its bounds.
    #[cfg(test)]
    fn check_invariants(&self) -> Result<(), String> {
        if self.deadlines.len() != self.entries.len() {
            return Err(format!(
                "{} deadlines for {} entries",
                self.deadlines.len(),
                self.entries.len()
            ));
        }
        for &(expires, key) in &self.deadlines {
            let entry = self
                .entries
                .get(&key)
                .ok_or_else(|| format!("deadline for {key} without an entry"))?;
            if entry.grant.expires != expires || entry.grant.key != key {
                return Err(format!(
                    "deadline ({expires:?}, {key}) disagrees with its entry"
                ));
            }
            if entry.grant.reserved as usize != entry.holders.len() {
                return Err(format!("{key}: reserved disagrees with the holders"));
            }
            match (entry.grant.messages_left, entry.max_messages) {
                (None, None) => {}
                (Some(left), Some(max)) if left <= max && entry.grant.reserved <= left => {}
                other => {
                    return Err(format!(
                        "{key}: messages (left, max) {other:?} with {} reserved",
                        entry.grant.reserved
                    ));
                }
            }
            if self.derivable(&key) == self.networks.contains(&(Reverse(key.prefix()), key)) {
                return Err(format!("{key}: networks index out of sync"));
            }
        }
        if self.networks.len() > self.entries.len() {
            return Err("networks index holds removed keys".to_owned());
        }
        Ok(())
    }
}
