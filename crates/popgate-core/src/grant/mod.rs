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
#[cfg(test)]
use std::collections::HashMap;
use std::collections::{BTreeSet, BinaryHeap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

mod store;
use store::{Entry, Index, Names, Slab, Slot, UserId};

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
    /// There was a grant, but POP before SMTP is switched off for its user
    /// (`grant.mode = "off"`, see [`crate::migration`]).
    GrantSwitchedOff,
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

/// A live grant's counts as a relay decision reads them: [`GrantTable::lookup`]
/// answers with this, without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantStatus {
    pub key: Cidr,
    pub expires: Millis,
    /// `None`: no count limit.
    pub messages_left: Option<u32>,
    pub reserved: u32,
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
/// contract and the semantics, and [`store`] for the layout.
#[derive(Debug)]
pub struct GrantTable {
    config: GrantConfig,
    entries: Slab,
    index: Index,
    names: Names,
    /// `(expires, slot)` pushed whenever an entry gets a deadline. An item whose slot
    /// no longer holds an entry expiring then is stale and skipped (lazy deletion, so a
    /// refresh costs a push instead of a search); the heap is rebuilt when stale items
    /// outnumber the live ones.
    deadlines: BinaryHeap<Reverse<(Millis, Slot)>>,
    /// The reservations in flight: `(slot, session)`.
    holders: HashSet<(Slot, SessionId)>,
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

/// Where a peer's lookup ended: the grant that may be used, or the most telling
/// refusal, plus the expired candidates met on the way (to remove).
struct Found {
    usable: Option<Slot>,
    refusal: RelayRefusal,
    expired: Vec<Cidr>,
}

impl GrantTable {
    pub fn new(config: GrantConfig) -> GrantTable {
        GrantTable {
            config,
            entries: Slab::default(),
            index: Index::default(),
            names: Names::default(),
            deadlines: BinaryHeap::new(),
            holders: HashSet::new(),
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
        let refreshable = self.index.get(&key).filter(|&slot| {
            self.entries
                .get(slot)
                .is_some_and(|e| e.sliding() || !e.spent())
        });
        let mut note = note;
        if let Some(view) =
            refreshable.and_then(|slot| self.refresh(now, slot, user, session, note.take()))
        {
            self.push(
                now,
                Some(session),
                EventKind::GrantRefreshed {
                    grant: view.clone(),
                },
            );
            return LoginGrant::Refreshed(view);
        }
        let user = self.names.acquire(user);
        let mut entry = Entry::new(
            key,
            now,
            now.saturating_add(self.config.ttl),
            user,
            Some(session),
            self.config.max_messages,
            self.config.sliding,
        );
        if note.is_some() {
            entry.extra_mut().note = note;
        }
        LoginGrant::Created(self.insert_fresh(now, Some(session), entry))
    }

    /// A login on the live grant in `slot`: the login becomes its user and session and
    /// joins its history; a sliding grant is renewed. Returns the grant's new view.
    fn refresh(
        &mut self,
        now: Millis,
        slot: Slot,
        user: &str,
        session: SessionId,
        note: Option<String>,
    ) -> Option<GrantView> {
        let entry = self.entries.get_mut(slot)?;
        let names = &mut self.names;
        let previous = entry.user;
        let seen = match &entry.extra {
            Some(extra) if !extra.users.is_empty() => {
                extra.users.iter().any(|&id| same_user(names.get(id), user))
            }
            _ => same_user(names.get(previous), user),
        };
        let history_is_implicit = entry.extra.as_ref().is_none_or(|x| x.users.is_empty());
        if history_is_implicit && (!seen || names.get(previous) != user) {
            // The history stops being "just `user`": write it out, oldest first.
            let first = names.share(previous);
            entry.extra_mut().users.push(first);
        }
        if !seen {
            let id = names.acquire(user);
            entry.extra_mut().users.push(id);
        }
        entry.user = names.acquire(user);
        names.release(previous);
        entry.set_session(Some(session));
        if note.is_some() {
            entry.extra_mut().note = note;
        }
        let old_expires = entry.expires;
        if entry.sliding() {
            let (ttl, max_messages) = Self::renewal(&self.config, entry);
            // Reservations in flight stay: there are never more of them than the
            // messages that were left, so available stays >= 0.
            entry.set_messages_left(max_messages);
            entry.expires = now.saturating_add(ttl);
        }
        let view = Self::view(&self.names, entry);
        if view.expires != old_expires {
            self.deadlines.push(Reverse((view.expires, slot)));
            self.compact_deadlines();
        }
        Some(view)
    }

    /// What a sliding refresh renews `entry` with: the configuration's time-to-live
    /// and count, or the operator's.
    fn renewal(config: &GrantConfig, entry: &Entry) -> (Duration, Option<u32>) {
        let extra = entry.extra.as_deref();
        (
            extra.and_then(|x| x.ttl).unwrap_or(config.ttl),
            extra
                .and_then(|x| x.max_messages)
                .unwrap_or(config.max_messages),
        )
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
        let max_messages = match messages {
            None => None,
            Some(0) => Some(None),
            Some(n) => Some(Some(n)),
        };
        self.drop_if_expired(now, key);
        let user = self.names.acquire(user);
        let mut entry = Entry::new(
            key,
            now,
            now.saturating_add(ttl.unwrap_or(self.config.ttl)),
            user,
            None,
            max_messages.unwrap_or(self.config.max_messages),
            self.config.sliding,
        );
        if ttl.is_some() || max_messages.is_some() || note.is_some() {
            let extra = entry.extra_mut();
            extra.ttl = ttl;
            extra.max_messages = max_messages;
            extra.note = note;
        }
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
        let found = self.find(now, peer, Some(session));
        for key in found.expired {
            self.drop_if_expired(now, key);
        }
        let slot = found.usable.ok_or(found.refusal)?;
        let fresh = self.holders.insert((slot, session));
        let Some(entry) = self.entries.get_mut(slot) else {
            return Err(RelayRefusal::NoGrant);
        };
        if fresh {
            entry.reserved += 1;
        }
        let reservation = Reservation {
            key: entry.key,
            user: self.names.get(entry.user).to_owned(),
            granting_session: entry.session(),
        };
        if fresh {
            self.push(
                now,
                Some(session),
                EventKind::GrantReserved {
                    key: reservation.key,
                    user: reservation.user.clone(),
                },
            );
        }
        Ok(reservation)
    }

    /// The live grant covering `peer` that a relay may use, without changing anything
    /// or allocating: what a relay decision reads. `None` when no live grant covers it.
    pub fn lookup(&self, now: Millis, peer: IpAddr) -> Option<GrantStatus> {
        let slot = self.first_live(now, peer)?;
        let entry = self.entries.get(slot)?;
        Some(GrantStatus {
            key: entry.key,
            expires: entry.expires,
            messages_left: entry.messages_left(),
            reserved: entry.reserved,
        })
    }

    /// The relayed message was accepted (250 after end of data): the reservation
    /// becomes a used message. A no-op when `session` holds no reservation on `key`
    /// (the grant was revoked, purged or replaced meanwhile, or this is a repeat).
    pub fn commit(&mut self, now: Millis, key: Cidr, session: SessionId) {
        let Some(slot) = self.take_reservation(key, session) else {
            return;
        };
        let Some(entry) = self.entries.get_mut(slot) else {
            return;
        };
        // Never saturates: a reservation is only taken while left > reserved.
        let left = entry.messages_left().map(|left| left.saturating_sub(1));
        entry.set_messages_left(left);
        let kind = EventKind::GrantUsed {
            key,
            user: self.names.get(entry.user).to_owned(),
            messages_left: left,
        };
        self.push(now, Some(session), kind);
    }

    /// RSET, QUIT, a dropped connection or a refused message: the reserved message is
    /// available again. A no-op when `session` holds no reservation on `key`.
    pub fn release(&mut self, now: Millis, key: Cidr, session: SessionId) {
        if self.take_reservation(key, session).is_some() {
            self.push(now, Some(session), EventKind::GrantReleased { key });
        }
    }

    /// Drop `session`'s reservation on the grant stored under `key`, if it holds one.
    fn take_reservation(&mut self, key: Cidr, session: SessionId) -> Option<Slot> {
        let slot = self.index.get(&key)?;
        if !self.holders.remove(&(slot, session)) {
            return None;
        }
        let entry = self.entries.get_mut(slot)?;
        entry.reserved = entry.reserved.saturating_sub(1);
        Some(slot)
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
        let keys = self.keys_by_expiry(|table, entry| {
            GrantTable::users_of(entry).any(|seen| same_user(table.names.get(seen), user))
        });
        keys.into_iter()
            .filter(|&key| self.revoke(now, key, reason))
            .count()
    }

    /// Revoke every grant. Returns how many live grants were revoked.
    pub fn flush(&mut self, now: Millis) -> usize {
        let keys = self.keys_by_expiry(|_, _| true);
        keys.into_iter()
            .filter(|&key| self.revoke(now, key, reason::FLUSHED))
            .count()
    }

    /// The live grant covering `peer`, the most specific first.
    pub fn get(&self, now: Millis, peer: IpAddr) -> Option<GrantView> {
        self.first_live(now, peer)
            .and_then(|slot| self.view_of(slot))
    }

    /// Every live grant, soonest expiry first.
    pub fn list(&self, now: Millis) -> Vec<GrantView> {
        let mut live: Vec<(Millis, Cidr, Slot)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.live(now))
            .map(|(slot, e)| (e.expires, e.key, slot))
            .collect();
        live.sort_unstable();
        live.into_iter()
            .filter_map(|(_, _, slot)| self.view_of(slot))
            .collect()
    }

    /// Entries stored, including expired ones that purge has not removed yet.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// Remove every grant with `expires <= now` (a `GrantExpired` event each, in
    /// expiry order) and return the next deadline, so the driver sleeps exactly until
    /// then. O(expired log n).
    pub fn purge(&mut self, now: Millis) -> Option<Millis> {
        let mut due = Vec::new();
        while let Some(deadline) = self.next_deadline() {
            if deadline > now {
                break;
            }
            if let Some(Reverse((expires, slot))) = self.deadlines.pop()
                && let Some(entry) = self.entries.get(slot)
            {
                due.push((expires, entry.key));
            }
        }
        // The order of keys sharing an expiry is the keys' own, not the slots'.
        due.sort_unstable();
        due.dedup();
        for (_, key) in due {
            if self.remove(key).is_some() {
                self.push(now, None, EventKind::GrantExpired { key });
            }
        }
        self.next_deadline()
    }

    /// The next change to publish, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push(&mut self, now: Millis, session: Option<SessionId>, kind: EventKind) {
        self.events.push_back(Event::new(now, session, kind));
    }

    /// The soonest deadline of a stored entry, dropping stale heap items on the way.
    fn next_deadline(&mut self) -> Option<Millis> {
        while let Some(&Reverse((expires, slot))) = self.deadlines.peek() {
            if self.entries.get(slot).is_some_and(|e| e.expires == expires) {
                return Some(expires);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Rebuild the deadline heap once stale items outnumber the entries, so refreshes
    /// cannot grow it without bound.
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() > 2 * self.entries.len() + 64 {
            self.deadlines = self
                .entries
                .iter()
                .map(|(slot, e)| Reverse((e.expires, slot)))
                .collect();
        }
    }

    /// The keys that may hold a grant covering `peer`, most specific first: its host
    /// key, its masked key, and the operator networks that contain it (merged in by
    /// prefix). No allocation.
    fn candidates(&self, peer: IpAddr) -> impl Iterator<Item = Cidr> + '_ {
        let host = Cidr::host(peer);
        let masked = self.key_for(peer);
        let mut masked = (masked != host).then_some(masked);
        let mut networks = self
            .networks
            .iter()
            .map(|&(_, net)| net)
            .filter(move |net| net.contains(peer))
            .peekable();
        // Networks are never derivable keys, so none equals the host or masked key.
        std::iter::once(host).chain(std::iter::from_fn(move || match masked {
            Some(m) if networks.peek().is_none_or(|n| n.prefix() < m.prefix()) => {
                masked = None;
                Some(m)
            }
            _ => networks.next(),
        }))
    }

    /// The most specific live entry covering `peer`.
    fn first_live(&self, now: Millis, peer: IpAddr) -> Option<Slot> {
        self.candidates(peer)
            .filter_map(|key| self.index.get(&key))
            .find(|&slot| self.entries.get(slot).is_some_and(|e| e.live(now)))
    }

    /// The grant a relay from `peer` may reserve on (the most specific live one with a
    /// message available, or the one `session` already holds), else the most telling
    /// refusal: a spent grant over an expired one over none.
    fn find(&self, now: Millis, peer: IpAddr, session: Option<SessionId>) -> Found {
        let mut found = Found {
            usable: None,
            refusal: RelayRefusal::NoGrant,
            expired: Vec::new(),
        };
        for key in self.candidates(peer) {
            let Some(slot) = self.index.get(&key) else {
                continue;
            };
            let Some(entry) = self.entries.get(slot) else {
                continue;
            };
            if !entry.live(now) {
                found.expired.push(key);
                if found.refusal == RelayRefusal::NoGrant {
                    found.refusal = RelayRefusal::Expired;
                }
                continue;
            }
            if session.is_some_and(|s| self.holders.contains(&(slot, s)))
                || entry.available() != Some(0)
            {
                found.usable = Some(slot);
                return found;
            }
            found.refusal = RelayRefusal::UsedUp;
        }
        found
    }

    /// Every user in the entry's history, oldest first.
    fn users_of(entry: &Entry) -> impl Iterator<Item = UserId> + '_ {
        let history = entry.extra.as_ref().map(|x| &x.users[..]).unwrap_or(&[]);
        let implicit = history.is_empty().then_some(entry.user);
        history.iter().copied().chain(implicit)
    }

    /// The public view of the entry in `slot`.
    fn view_of(&self, slot: Slot) -> Option<GrantView> {
        self.entries.get(slot).map(|e| Self::view(&self.names, e))
    }

    /// The public view of `entry`, its names read from `names`.
    fn view(names: &Names, entry: &Entry) -> GrantView {
        GrantView {
            key: entry.key,
            user: names.get(entry.user).to_owned(),
            users: Self::users_of(entry)
                .map(|id| names.get(id).to_owned())
                .collect(),
            session: entry.session(),
            created: entry.created,
            expires: entry.expires,
            messages_left: entry.messages_left(),
            reserved: entry.reserved,
            sliding: entry.sliding(),
            note: entry.note().map(str::to_owned),
        }
    }

    /// The keys of the entries `keep` selects, in expiry order (then key order), so
    /// events come out the same every run.
    fn keys_by_expiry(&self, keep: impl Fn(&GrantTable, &Entry) -> bool) -> Vec<Cidr> {
        let mut keys: Vec<(Millis, Cidr)> = self
            .entries
            .iter()
            .filter(|(_, e)| keep(self, e))
            .map(|(_, e)| (e.expires, e.key))
            .collect();
        keys.sort_unstable();
        keys.into_iter().map(|(_, key)| key).collect()
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
        let expired = self
            .index
            .get(&key)
            .and_then(|slot| self.entries.get(slot))
            .is_some_and(|entry| !entry.live(now));
        if expired {
            self.remove(key);
            self.push(now, None, EventKind::GrantExpired { key });
        }
        expired
    }

    /// Store a fresh grant (replacing any entry on its key, else making room) and emit
    /// `GrantCreated`.
    fn insert_fresh(&mut self, now: Millis, session: Option<SessionId>, entry: Entry) -> GrantView {
        let key = entry.key;
        if self.remove(key).is_none() {
            self.make_room(now);
        }
        let expires = entry.expires;
        let view = Self::view(&self.names, &entry);
        let slot = self.entries.insert(entry);
        self.index.insert(key, slot);
        self.deadlines.push(Reverse((expires, slot)));
        self.compact_deadlines();
        if !self.derivable(&key) {
            self.networks.insert((Reverse(key.prefix()), key));
        }
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
    /// entry already expired goes as expired, not as evicted. Among grants expiring at
    /// the same millisecond the lowest key goes first.
    fn make_room(&mut self, now: Millis) {
        let cap = self.config.max_entries.max(1);
        while self.entries.len() >= cap {
            let Some(soonest) = self.next_deadline() else {
                break;
            };
            let mut tied = Vec::new();
            while let Some(&Reverse((expires, slot))) = self.deadlines.peek() {
                if expires != soonest {
                    break;
                }
                self.deadlines.pop();
                if let Some(entry) = self.entries.get(slot)
                    && entry.expires == expires
                {
                    tied.push((entry.key, slot));
                }
            }
            tied.sort_unstable();
            tied.dedup();
            let Some(&(key, _)) = tied.first() else {
                break;
            };
            for &(_, slot) in &tied[1..] {
                self.deadlines.push(Reverse((soonest, slot)));
            }
            self.remove(key);
            let kind = if soonest <= now {
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

    /// Remove `key` from every index. No event: the caller says why it went. Its
    /// deadline stays in the heap, stale.
    fn remove(&mut self, key: Cidr) -> Option<()> {
        let slot = self.index.remove(&key)?;
        let entry = self.entries.remove(slot)?;
        self.networks.remove(&(Reverse(key.prefix()), key));
        if entry.reserved > 0 {
            self.holders.retain(|&(held, _)| held != slot);
        }
        self.names.release(entry.user);
        if let Some(extra) = entry.extra {
            for id in extra.users {
                self.names.release(id);
            }
        }
        Some(())
    }

    /// The stored entry under `key`, expired or not (for tests).
    #[cfg(test)]
    fn stored(&self, key: &Cidr) -> Option<&Entry> {
        self.entries.get(self.index.get(key)?)
    }

    /// True when `session` holds a reservation on the grant stored under `key`.
    #[cfg(test)]
    fn holds(&self, key: &Cidr, session: SessionId) -> bool {
        self.index
            .get(key)
            .is_some_and(|slot| self.holders.contains(&(slot, session)))
    }

    /// Every index agrees with every other, and every count is within its bounds.
    #[cfg(test)]
    fn check_invariants(&self) -> Result<(), String> {
        if self.index.len() != self.entries.len() {
            return Err(format!(
                "{} index keys for {} entries",
                self.index.len(),
                self.entries.len()
            ));
        }
        let scheduled: HashSet<(Millis, Slot)> =
            self.deadlines.iter().map(|&Reverse(item)| item).collect();
        let mut refs: HashMap<u32, u32> = HashMap::new();
        for (slot, entry) in self.entries.iter() {
            let key = entry.key;
            if self.index.get(&key) != Some(slot) {
                return Err(format!("{key}: index does not point at its slot"));
            }
            if !scheduled.contains(&(entry.expires, slot)) {
                return Err(format!("{key}: no deadline at its expiry"));
            }
            let held = self.holders.iter().filter(|&&(s, _)| s == slot).count();
            if entry.reserved as usize != held {
                return Err(format!("{key}: reserved disagrees with the holders"));
            }
            let (_, max) = Self::renewal(&self.config, entry);
            match (entry.messages_left(), max) {
                (None, None) => {}
                (Some(left), Some(max)) if left <= max && entry.reserved <= left => {}
                other => {
                    return Err(format!(
                        "{key}: messages (left, max) {other:?} with {} reserved",
                        entry.reserved
                    ));
                }
            }
            if self.derivable(&key) == self.networks.contains(&(Reverse(key.prefix()), key)) {
                return Err(format!("{key}: networks index out of sync"));
            }
            *refs.entry(entry.user.0).or_default() += 1;
            for id in entry.extra.iter().flat_map(|x| &x.users) {
                *refs.entry(id.0).or_default() += 1;
            }
        }
        if self.networks.len() > self.entries.len() {
            return Err("networks index holds removed keys".to_owned());
        }
        if self
            .holders
            .iter()
            .any(|&(slot, _)| self.entries.get(slot).is_none())
        {
            return Err("a reservation on an empty slot".to_owned());
        }
        if refs != self.names.refs() {
            return Err("user name references disagree with the entries".to_owned());
        }
        Ok(())
    }
}
