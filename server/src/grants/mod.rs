//! The grant store (DESIGN "The grant store is a trait"): where the grants live.
//!
//! * [`memory`]: core's [`GrantTable`](popgate_core::grant::GrantTable) behind a std
//!   mutex: the embedded default, for a node of its own. Every call completes at once.
//! * [`redis`]: grants in Redis, shared by several nodes (`[grant] store =
//!   "redis://..."`), with the events of every node carried over Redis pub/sub.
//!
//! Callers use [`Grants`] (through [`Shared::grants`](crate::serve::state::Shared)),
//! which takes `now` from the server's clock and publishes the events every call
//! makes. Core's rules stay in core: the Redis store computes each grant with core's
//! table and [`popgate_core::shared_grant`], and Redis only stores and counts.
//!
//! Failure is explicit ([`StoreError`]) and every caller says what it means: a relay
//! decision fails closed (451 4.3.0), a login still succeeds without a grant (and an
//! event says so), an API call answers 503.

pub mod memory;
pub mod redis;

use crate::config::Config;
use crate::serve::clock::Clock;
use crate::serve::events::EventBus;
use popgate_core::event::{Event, EventKind, SessionId};
use popgate_core::grant::{GrantView, LoginGrant, RelayRefusal, Reservation};
use popgate_core::net::Cidr;
use popgate_core::smtp::ReserveResult;
use popgate_core::time::Millis;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// A shared store did not answer in time or at all. The memory store never fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// No answer within `[grant] store_timeout`.
    Timeout,
    /// Unreachable, or it answered with an error.
    Unavailable(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("grant store timed out"),
            StoreError::Unavailable(why) => write!(f, "grant store unavailable: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a grant store does: [`GrantTable`](popgate_core::grant::GrantTable)'s calling
/// contract, async, with the events of each call pushed onto `events`.
pub trait GrantStore {
    /// The key a login from `peer` grants (canonicalised, masked to the prefix).
    fn key_for(&self, peer: IpAddr) -> Cidr;

    /// A verified login (POP3, or reported by Dovecot with `note`).
    fn login(
        &self,
        now: Millis,
        peer: IpAddr,
        user: &str,
        session: SessionId,
        note: Option<String>,
        events: &mut Vec<Event>,
    ) -> impl Future<Output = StoreResult<LoginGrant>> + Send;

    /// The first relayed RCPT of a transaction: reserve one message.
    fn reserve(
        &self,
        now: Millis,
        peer: IpAddr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> impl Future<Output = StoreResult<Result<Reservation, RelayRefusal>>> + Send;

    /// The 250 after end of data: the reservation becomes a used message.
    fn commit(
        &self,
        now: Millis,
        key: Cidr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// RSET, QUIT, a drop or a refusal: the reserved message is available again.
    fn release(
        &self,
        now: Millis,
        key: Cidr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// An operator grant (CLI, HTTP API), replacing any grant on `key`.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        now: Millis,
        key: Cidr,
        user: &str,
        ttl: Option<Duration>,
        messages: Option<u32>,
        note: Option<String>,
        events: &mut Vec<Event>,
    ) -> impl Future<Output = StoreResult<GrantView>> + Send;

    /// Revoke the live grant stored under exactly `key`; false when there is none.
    fn revoke(
        &self,
        now: Millis,
        key: Cidr,
        reason: &str,
        events: &mut Vec<Event>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Revoke every live grant whose users include `user` (case-insensitively).
    fn revoke_user(
        &self,
        now: Millis,
        user: &str,
        reason: &str,
        events: &mut Vec<Event>,
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    /// Revoke every grant.
    fn flush(
        &self,
        now: Millis,
        events: &mut Vec<Event>,
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    /// Every live grant, soonest expiry first.
    fn list(&self, now: Millis) -> impl Future<Output = StoreResult<Vec<GrantView>>> + Send;
}

/// The configured store. An enum rather than a trait object: the memory store's calls
/// stay direct (no boxing) when Redis is not configured.
#[derive(Debug)]
// One per process: the memory store's size costs nothing, a box would cost a pointer
// chase on every call.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Memory($store) => $call.await,
            Store::Redis($store) => $call.await,
        }
    };
}

impl GrantStore for Store {
    fn key_for(&self, peer: IpAddr) -> Cidr {
        match self {
            Store::Memory(s) => s.key_for(peer),
            Store::Redis(s) => s.key_for(peer),
        }
    }

    async fn login(
        &self,
        now: Millis,
        peer: IpAddr,
        user: &str,
        session: SessionId,
        note: Option<String>,
        events: &mut Vec<Event>,
    ) -> StoreResult<LoginGrant> {
        dispatch!(self, s => s.login(now, peer, user, session, note, events))
    }

    async fn reserve(
        &self,
        now: Millis,
        peer: IpAddr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> StoreResult<Result<Reservation, RelayRefusal>> {
        dispatch!(self, s => s.reserve(now, peer, session, events))
    }

    async fn commit(
        &self,
        now: Millis,
        key: Cidr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> StoreResult<()> {
        dispatch!(self, s => s.commit(now, key, session, events))
    }

    async fn release(
        &self,
        now: Millis,
        key: Cidr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> StoreResult<()> {
        dispatch!(self, s => s.release(now, key, session, events))
    }

    async fn add(
        &self,
        now: Millis,
        key: Cidr,
        user: &str,
        ttl: Option<Duration>,
        messages: Option<u32>,
        note: Option<String>,
        events: &mut Vec<Event>,
    ) -> StoreResult<GrantView> {
        dispatch!(self, s => s.add(now, key, user, ttl, messages, note, events))
    }

    async fn revoke(
        &self,
        now: Millis,
        key: Cidr,
        reason: &str,
        events: &mut Vec<Event>,
    ) -> StoreResult<bool> {
        dispatch!(self, s => s.revoke(now, key, reason, events))
    }

    async fn revoke_user(
        &self,
        now: Millis,
        user: &str,
        reason: &str,
        events: &mut Vec<Event>,
    ) -> StoreResult<usize> {
        dispatch!(self, s => s.revoke_user(now, user, reason, events))
    }

    async fn flush(&self, now: Millis, events: &mut Vec<Event>) -> StoreResult<usize> {
        dispatch!(self, s => s.flush(now, events))
    }

    async fn list(&self, now: Millis) -> StoreResult<Vec<GrantView>> {
        dispatch!(self, s => s.list(now))
    }
}

/// The grant store with what every call needs around it: the clock, the event bus,
/// and a wake-up for the task that reports expiry.
#[derive(Debug)]
pub struct Grants {
    store: Store,
    clock: Clock,
    events: Arc<EventBus>,
    /// Wakes the expiry task when a grant may expire sooner than it planned for.
    changed: Notify,
}

impl Grants {
    /// The store `[grant] store` names, and the event bus: a shared store's bus also
    /// forwards this node's events to the others. A Redis store connects lazily and
    /// reconnects by itself, so a node starts (and serves local mail) while Redis is
    /// down.
    pub fn open(config: &Config, clock: Clock) -> anyhow::Result<Arc<Grants>> {
        let transcripts = config.log.transcripts;
        let (store, events) = if config.grant.store == crate::config::defaults::GRANT_STORE {
            (
                Store::Memory(memory::MemoryStore::new(config.grant.core())),
                EventBus::new(transcripts),
            )
        } else {
            let node = node_name(config);
            let (store, forward) = redis::RedisStore::open(config, &node)?;
            (
                Store::Redis(store),
                EventBus::clustered(transcripts, node, forward),
            )
        };
        Ok(Arc::new(Grants {
            store,
            clock,
            events: Arc::new(events),
            changed: Notify::new(),
        }))
    }

    /// The event bus every part of the server publishes on.
    pub fn events(&self) -> &Arc<EventBus> {
        &self.events
    }

    /// With a shared store, start carrying events to and from the other nodes.
    pub fn spawn_cluster(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        if let Store::Redis(store) = &self.store {
            redis::spawn_cluster(self, store, shutdown);
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// True when grants and events are shared with other nodes.
    pub fn is_shared(&self) -> bool {
        matches!(self.store, Store::Redis(_))
    }

    pub fn key_for(&self, peer: IpAddr) -> Cidr {
        self.store.key_for(peer)
    }

    pub async fn login(
        &self,
        peer: IpAddr,
        user: &str,
        session: SessionId,
        note: Option<String>,
    ) -> StoreResult<LoginGrant> {
        let mut events = Vec::new();
        let out = self
            .store
            .login(self.clock.now(), peer, user, session, note, &mut events)
            .await;
        self.publish(events);
        out
    }

    /// A verified login that must grant now: when the store fails, the login still
    /// succeeds, a `GrantRefused` event says no grant was stored, and the failure is
    /// logged. DESIGN: the grant is stored before the reply is written, so this
    /// returns only once the store answered or gave up.
    pub async fn login_or_report(
        &self,
        peer: IpAddr,
        user: &str,
        session: SessionId,
        note: Option<String>,
    ) -> Option<LoginGrant> {
        match self.login(peer, user, session, note).await {
            Ok(grant) => Some(grant),
            Err(e) => {
                tracing::warn!(error = %e, user, "login verified but its grant was not stored");
                self.events.publish(
                    Event::new(
                        self.clock.now(),
                        Some(session),
                        EventKind::GrantRefused {
                            key: self.key_for(peer),
                            user: user.to_owned(),
                            reason: popgate_core::shared_grant::STORE_UNAVAILABLE.to_owned(),
                        },
                    ),
                    None,
                );
                None
            }
        }
    }

    pub async fn reserve(
        &self,
        peer: IpAddr,
        session: SessionId,
    ) -> StoreResult<Result<Reservation, RelayRefusal>> {
        let mut events = Vec::new();
        let out = self
            .store
            .reserve(self.clock.now(), peer, session, &mut events)
            .await;
        self.publish(events);
        out
    }

    /// The reservation a relay decision takes (SMTP RCPT, Postfix policy request). A
    /// store that fails makes the decision fail closed, never open: `TempFail`, which
    /// SMTP answers 451 4.3.0 (try again later) and the policy service DEFER.
    pub async fn reserve_for_relay(&self, peer: IpAddr, session: SessionId) -> ReserveResult {
        match self.reserve(peer, session).await {
            Ok(Ok(r)) => ReserveResult::Reserved(r),
            Ok(Err(refusal)) => ReserveResult::Refused(refusal),
            Err(e) => {
                tracing::warn!(error = %e, %peer, session = session.0, "relay decision failed closed: the grant store did not answer");
                ReserveResult::TempFail
            }
        }
    }

    pub async fn commit(&self, key: Cidr, session: SessionId) {
        let mut events = Vec::new();
        let out = self
            .store
            .commit(self.clock.now(), key, session, &mut events)
            .await;
        self.publish(events);
        if let Err(e) = out {
            tracing::warn!(error = %e, %key, session = session.0, "grant commit not stored; retrying in the background");
            if let Store::Redis(s) = &self.store {
                s.settle_later(key, session, true);
            }
        }
    }

    pub async fn release(&self, key: Cidr, session: SessionId) {
        let mut events = Vec::new();
        let out = self
            .store
            .release(self.clock.now(), key, session, &mut events)
            .await;
        self.publish(events);
        if let Err(e) = out {
            tracing::warn!(error = %e, %key, session = session.0, "grant release not stored; retrying in the background");
            if let Store::Redis(s) = &self.store {
                s.settle_later(key, session, false);
            }
        }
    }

    pub async fn add(
        &self,
        key: Cidr,
        user: &str,
        ttl: Option<Duration>,
        messages: Option<u32>,
        note: Option<String>,
    ) -> StoreResult<GrantView> {
        let mut events = Vec::new();
        let out = self
            .store
            .add(
                self.clock.now(),
                key,
                user,
                ttl,
                messages,
                note,
                &mut events,
            )
            .await;
        self.publish(events);
        out
    }

    pub async fn revoke(&self, key: Cidr, reason: &str) -> StoreResult<bool> {
        let mut events = Vec::new();
        let out = self
            .store
            .revoke(self.clock.now(), key, reason, &mut events)
            .await;
        self.publish(events);
        out
    }

    pub async fn revoke_user(&self, user: &str, reason: &str) -> StoreResult<usize> {
        let mut events = Vec::new();
        let out = self
            .store
            .revoke_user(self.clock.now(), user, reason, &mut events)
            .await;
        self.publish(events);
        out
    }

    /// [`revoke_user`](Self::revoke_user) from code that cannot wait (the users file
    /// reload): at once for the memory store, in a task for a shared one.
    pub fn revoke_user_soon(self: &Arc<Self>, user: String, reason: &'static str) {
        if let Store::Memory(m) = &self.store {
            let mut events = Vec::new();
            m.revoke_user_now(self.clock.now(), &user, reason, &mut events);
            self.publish(events);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let grants = self.clone();
        runtime.spawn(async move {
            if let Err(e) = grants.revoke_user(&user, reason).await {
                tracing::error!(error = %e, user, "could not revoke the grants of a changed user");
            }
        });
    }

    pub async fn flush(&self) -> StoreResult<usize> {
        let mut events = Vec::new();
        let out = self.store.flush(self.clock.now(), &mut events).await;
        self.publish(events);
        out
    }

    pub async fn list(&self) -> StoreResult<Vec<GrantView>> {
        self.store.list(self.clock.now()).await
    }

    /// Wake the expiry task: a grant event from another node may have moved the next
    /// deadline.
    pub fn wake(&self) {
        self.changed.notify_one();
    }

    fn publish(&self, events: Vec<Event>) {
        if !events.is_empty() {
            self.changed.notify_one();
        }
        for e in events {
            self.events.publish(e, None);
        }
    }

    /// Report expiry exactly at the deadlines, so expiry events are on time. (Relay
    /// decisions never depend on this: every store checks expiry against `now`.)
    ///
    /// The memory store purges its table. A shared store's records vanish by their
    /// own TTL, so each node reports, for itself, the expiry of the grants its
    /// dashboard shows (its own and those other nodes told of), after asking the store
    /// whether a refresh it missed moved the deadline.
    pub async fn run_expiry(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let now = self.clock.now();
            let next = match &self.store {
                Store::Memory(m) => {
                    let mut events = Vec::new();
                    let next = m.purge(now, &mut events);
                    self.publish(events);
                    next
                }
                Store::Redis(r) => self.expire_shared(r, now).await,
            };
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(self.clock.instant_at(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.changed.notified() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// One pass of a shared store's expiry reports; returns the next deadline.
    async fn expire_shared(&self, store: &redis::RedisStore, now: Millis) -> Option<Millis> {
        let (due, next) = self.events.with_state(|s| {
            let due: Vec<Cidr> = s
                .grants
                .values()
                .filter(|g| g.expires <= now)
                .map(|g| g.key)
                .collect();
            let next = s
                .grants
                .values()
                .map(|g| g.expires)
                .filter(|&e| e > now)
                .min();
            (due, next)
        });
        let mut next = next;
        for key in due {
            let kind = match store.get(key).await {
                // Refreshed by a login whose event this node missed: show it as stored.
                Ok(Some(grant)) if grant.live(now) => {
                    next = Some(next.map_or(grant.view.expires, |n| n.min(grant.view.expires)));
                    EventKind::GrantRefreshed { grant: grant.view }
                }
                // Gone, or unreachable: by the last word this node had, it expired.
                _ => EventKind::GrantExpired { key },
            };
            self.events.publish_here(Event::new(now, None, kind));
        }
        next
    }
}

/// `[grant] node`, else the machine's host name, else the configured `hostname`.
pub fn node_name(config: &Config) -> String {
    if !config.grant.node.is_empty() {
        return config.grant.node.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| config.hostname.clone())
}

/// The first session id of this process. A node of its own counts from 1. Nodes that
/// share a dashboard must not reuse each other's ids (the dashboard keys sessions by
/// id), so a shared node starts in a block of 2^32 ids picked from its name, its
/// process and its start time, below 2^52 so JavaScript reads every id exactly.
pub fn first_session_id(shared: bool, node: &str, start: Millis) -> u64 {
    if !shared {
        return 1;
    }
    // FNV-1a: stable, and enough to spread a handful of nodes over 2^20 blocks.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let seed = format!("{node}/{}/{}", std::process::id(), start.0);
    for byte in seed.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let block = (hash & 0xF_FFFF).max(1);
    (block << 32) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_nodes_number_sessions_in_their_own_blocks() {
        assert_eq!(first_session_id(false, "a", Millis(1)), 1);
        let a = first_session_id(true, "node-a", Millis(1_700_000_000_000));
        let b = first_session_id(true, "node-b", Millis(1_700_000_000_000));
        assert_ne!(a >> 32, b >> 32);
        assert!(a < 1 << 52 && b < 1 << 52, "exact in JavaScript");
        assert!(a >> 32 >= 1, "never the block of a node of its own");
    }
}
