//! The embedded grant store: core's [`GrantTable`] in this process.
//!
//! A std mutex, never held across an `.await` (mini-redis `db.rs`): every call is a
//! short, synchronous call into core, so each future here is ready when first polled.

use super::{GrantStore, StoreResult};
use popgate_core::event::{Event, SessionId};
use popgate_core::grant::{
    GrantConfig, GrantTable, GrantView, LoginGrant, RelayRefusal, Reservation,
};
use popgate_core::net::Cidr;
use popgate_core::time::Millis;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug)]
pub struct MemoryStore {
    table: Mutex<GrantTable>,
}

impl MemoryStore {
    pub fn new(config: GrantConfig) -> MemoryStore {
        MemoryStore {
            table: Mutex::new(GrantTable::new(config)),
        }
    }

    /// Run `f` on the table, then drain the events it made onto `events`.
    fn with<T>(&self, events: &mut Vec<Event>, f: impl FnOnce(&mut GrantTable) -> T) -> T {
        let mut table = self.table();
        let out = f(&mut table);
        events.extend(std::iter::from_fn(|| table.poll_event()));
        out
    }

    fn table(&self) -> MutexGuard<'_, GrantTable> {
        // A panic while holding the lock cannot leave the table half-updated in a way
        // that matters more than losing every grant would.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remove expired grants (their events onto `events`); the next deadline.
    pub fn purge(&self, now: Millis, events: &mut Vec<Event>) -> Option<Millis> {
        self.with(events, |g| g.purge(now))
    }

    /// [`GrantStore::revoke_user`] without a future, for callers that cannot wait.
    pub fn revoke_user_now(
        &self,
        now: Millis,
        user: &str,
        reason: &str,
        events: &mut Vec<Event>,
    ) -> usize {
        self.with(events, |g| g.revoke_user_with_reason(now, user, reason))
    }
}

impl GrantStore for MemoryStore {
    fn key_for(&self, peer: IpAddr) -> Cidr {
        self.table().key_for(peer)
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
        Ok(self.with(events, |g| g.login_noted(now, peer, user, session, note)))
    }

    async fn reserve(
        &self,
        now: Millis,
        peer: IpAddr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> StoreResult<Result<Reservation, RelayRefusal>> {
        Ok(self.with(events, |g| g.reserve(now, peer, session)))
    }

    async fn commit(
        &self,
        now: Millis,
        key: Cidr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> StoreResult<()> {
        self.with(events, |g| g.commit(now, key, session));
        Ok(())
    }

    async fn release(
        &self,
        now: Millis,
        key: Cidr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> StoreResult<()> {
        self.with(events, |g| g.release(now, key, session));
        Ok(())
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
        Ok(self.with(events, |g| g.add(now, key, user, ttl, messages, note)))
    }

    async fn revoke(
        &self,
        now: Millis,
        key: Cidr,
        reason: &str,
        events: &mut Vec<Event>,
    ) -> StoreResult<bool> {
        Ok(self.with(events, |g| g.revoke(now, key, reason)))
    }

    async fn revoke_user(
        &self,
        now: Millis,
        user: &str,
        reason: &str,
        events: &mut Vec<Event>,
    ) -> StoreResult<usize> {
        Ok(self.revoke_user_now(now, user, reason, events))
    }

    async fn flush(&self, now: Millis, events: &mut Vec<Event>) -> StoreResult<usize> {
        Ok(self.with(events, |g| g.flush(now)))
    }

    async fn list(&self, now: Millis) -> StoreResult<Vec<GrantView>> {
        Ok(self.table().list(now))
    }
}
