//! Grants in Redis, shared by several popgate nodes, and their events over pub/sub.
//!
//! # Data
//!
//! One hash per grant, `popgate:grant:<key>` (e.g. `popgate:grant:192.0.2.7/32`), whose
//! Redis TTL ends at the grant's expiry (`PEXPIREAT`), so Redis forgets what no node
//! needs. Fields:
//!
//! ```text
//! view       the grant as core computed it (JSON GrantView)
//! expires    Millis; the authoritative expiry (a grant is valid while now < expires)
//! left       messages left, -1 for no count limit      } counted by the scripts,
//! reserved   messages reserved by transactions         } authoritative over `view`
//! ttl, max   what a sliding refresh renews with (ms; -1 for no count limit)
//! rev        bumped on every write of `view`, for compare-and-set
//! h:<node>:<session>   one per reservation held (RFC 5321 §3.3: one transaction at a
//!                      time per session, so at most one per session and grant)
//! ```
//!
//! `popgate:networks` is the set of operator keys a peer lookup cannot derive from the
//! address (see [`shared_grant::candidates`]).
//!
//! # Who decides what
//!
//! Core decides what a grant looks like: a login reads the record, computes the new
//! one with [`shared_grant::login`] (core's deny ranges, key, fresh grant and refresh
//! rule), and writes it with a compare-and-set script that fails when another node
//! wrote meanwhile (then it reads again). Redis only counts: reserve, commit and
//! release are Lua scripts, atomic on the server, that apply core's counting rule
//! (available = left - reserved; a session's second reserve returns its reservation;
//! commit and release without a reservation are no-ops), so one relay never uses a
//! grant twice and two nodes never both spend its last message. Expiry is checked
//! against the node's `now`, not Redis's clock, so it is exact; `PEXPIREAT` only lets
//! Redis forget. Nodes' clocks must agree (NTP), as for any shared expiry.
//!
//! # Failure
//!
//! Every call is bounded by `[grant] store_timeout`; the connection is a
//! [`ConnectionManager`] that reconnects by itself. What a failure means is the
//! caller's rule (see [`super`]). A reserve that timed out may still have run: its
//! reservation is released in the background, as are a commit or a release that
//! failed ([`RedisStore::settle_later`]). A reservation held by a node that died stays
//! until its grant expires or a login refreshes it.
//!
//! # Events
//!
//! Every event this node publishes is sent on the channel `popgate:events` as JSON
//! naming the node ([`Event::node`]); each node merges the others' into its event bus,
//! so every dashboard shows every node. Pub/sub is fire-and-forget: a node that is
//! disconnected misses what was sent meanwhile (grants themselves are never missed:
//! they are read from the store).

use super::{GrantStore, Grants, StoreError, StoreResult};
use crate::config::Config;
use crate::serve::events::EventBus;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, Client, RedisResult, Script};
use anyhow::Context;
use futures_util::StreamExt;
use popgate_core::event::{Event, EventKind, SessionId};
use popgate_core::grant::{GrantTable, GrantView, LoginGrant, RelayRefusal, Reservation};
use popgate_core::net::Cidr;
use popgate_core::shared_grant::{self, SharedLogin, StoredGrant};
use popgate_core::time::Millis;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Every key popgate writes starts with this.
const PREFIX: &str = "popgate:grant:";
/// Operator keys of a width a peer lookup cannot derive.
const NETWORKS: &str = "popgate:networks";
/// The pub/sub channel every node publishes its events on.
pub const CHANNEL: &str = "popgate:events";
/// Events waiting to be sent to the other nodes; past this they are dropped, so a
/// slow or absent Redis never slows the mail path.
const OUTBOX: usize = 4096;
/// Compare-and-set attempts of a login before it gives up (another node writing the
/// same grant at the same moment every time).
const LOGIN_ATTEMPTS: usize = 8;
/// Background attempts to settle a commit or release that failed.
const SETTLE_ATTEMPTS: u32 = 6;
/// Reconnection delays of the pub/sub subscriber.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);

/// Store a computed record. KEYS: grant, networks set. ARGV: expected rev (`*`: any),
/// mode (`fresh` replaces the record, `refresh` keeps its counts and reservations),
/// view JSON, expires, left, ttl, max, sliding (1/0), network key (1/0).
/// Returns 1, or 0 when another node wrote first.
const PUT: &str = r"
local rev = redis.call('HGET', KEYS[1], 'rev')
if ARGV[1] ~= '*' and (rev or '') ~= ARGV[1] then return 0 end
if ARGV[2] == 'fresh' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'view', ARGV[3], 'expires', ARGV[4], 'left', ARGV[5],
    'ttl', ARGV[6], 'max', ARGV[7], 'reserved', 0, 'rev', (tonumber(rev) or 0) + 1)
else
  redis.call('HSET', KEYS[1], 'view', ARGV[3], 'expires', ARGV[4], 'rev', tonumber(rev) + 1)
  if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'left', ARGV[5]) end
end
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
if ARGV[9] == '1' then redis.call('SADD', KEYS[2], KEYS[1]) end
return 1
";

/// Reserve one message on the first key (most specific first) with a live grant and a
/// message available. KEYS: candidates. ARGV: now, holder field.
/// Returns {status, index, view}: status `reserved`, `held` (this session already
/// holds one), or the refusal `no_grant`, `expired`, `used_up` (index 0, view '').
const RESERVE: &str = r"
local refusal = 'no_grant'
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'expires', 'left', 'reserved', 'view')
  if f[1] then
    if now >= tonumber(f[1]) then
      if refusal == 'no_grant' then refusal = 'expired' end
    elseif redis.call('HEXISTS', key, ARGV[2]) == 1 then
      return {'held', i, f[4]}
    else
      local left = tonumber(f[2])
      if left >= 0 and left - tonumber(f[3]) <= 0 then
        refusal = 'used_up'
      else
        redis.call('HSET', key, ARGV[2], ARGV[1])
        redis.call('HINCRBY', key, 'reserved', 1)
        return {'reserved', i, f[4]}
      end
    end
  end
end
return {refusal, 0, ''}
";

/// Commit the holder's reservation. KEYS: grant. ARGV: holder field.
/// Returns {left, view} (left -1: no count limit), or nil when it held none.
const COMMIT: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return false end
redis.call('HINCRBY', KEYS[1], 'reserved', -1)
local left = tonumber(redis.call('HGET', KEYS[1], 'left'))
if left > 0 then left = redis.call('HINCRBY', KEYS[1], 'left', -1) end
return {left, redis.call('HGET', KEYS[1], 'view')}
";

/// Release the holder's reservation. KEYS: grant. ARGV: holder field.
/// Returns 1, or 0 when it held none.
const RELEASE: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'reserved', -1)
return 1
";

/// Remove a grant. KEYS: grant, networks set. ARGV: now.
/// Returns 1 (revoked), 2 (it had expired), 0 (none).
const REVOKE: &str = r"
local e = redis.call('HGET', KEYS[1], 'expires')
redis.call('SREM', KEYS[2], KEYS[1])
if not e then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(ARGV[1]) >= tonumber(e) then return 2 end
return 1
";

#[derive(Debug)]
struct Scripts {
    put: Script,
    reserve: Script,
    commit: Script,
    release: Script,
    revoke: Script,
}

/// The Redis grant store. Cheap to clone (one shared connection manager).
#[derive(Clone, Debug)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// An empty table: core's rules (key, deny ranges, fresh grants), never filled.
    rules: GrantTable,
    client: Client,
    conn: ConnectionManager,
    timeout: Duration,
    node: String,
    scripts: Scripts,
    /// Events to send to the other nodes, taken by [`spawn_cluster`].
    outbox: Mutex<Option<mpsc::Receiver<Event>>>,
}

impl RedisStore {
    /// A store on `[grant] store` (the URL carries AUTH as `redis://user:pass@host`
    /// and TLS as `rediss://`). Nothing is connected yet: the first call connects, and
    /// every call after a failure reconnects. Returns the sender the event bus
    /// forwards this node's events into.
    pub fn open(config: &Config, node: &str) -> anyhow::Result<(RedisStore, mpsc::Sender<Event>)> {
        let client = Client::open(config.grant.store.as_str())
            .context("key `grant.store`: not a Redis URL")?;
        if config.grant.store.starts_with("rediss://") {
            // The redis crate builds its rustls client from the process's default
            // provider: make it ring, like the rest of popgate (already set is fine).
            // The server is verified against the system's CA roots.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let timeout = config.grant.store_timeout;
        // Few retries with short delays: a call that finds Redis down fails within the
        // timeout anyway, and the next call starts a fresh reconnection.
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .context("setting up the Redis connection")?;
        let (tx, rx) = mpsc::channel(OUTBOX);
        let store = RedisStore {
            inner: Arc::new(Inner {
                rules: GrantTable::new(config.grant.core()),
                client,
                conn,
                timeout,
                node: node.to_owned(),
                scripts: Scripts {
                    put: Script::new(PUT),
                    reserve: Script::new(RESERVE),
                    commit: Script::new(COMMIT),
                    release: Script::new(RELEASE),
                    revoke: Script::new(REVOKE),
                },
                outbox: Mutex::new(Some(rx)),
            }),
        };
        Ok((store, tx))
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The grant stored under exactly `key`, live or not.
    pub async fn get(&self, key: Cidr) -> StoreResult<Option<StoredGrant>> {
        let mut conn = self.conn();
        self.bounded(async move {
            let map: HashMap<String, String> = conn.hgetall(redis_key(key)).await?;
            Ok(record(&map))
        })
        .await
    }

    /// Settle a commit (or release) that failed, in the background: the reservation
    /// must not keep a message reserved until the grant expires.
    pub fn settle_later(&self, key: Cidr, session: SessionId, commit: bool) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            for _ in 0..SETTLE_ATTEMPTS {
                tokio::time::sleep(delay).await;
                let mut events = Vec::new();
                let done = if commit {
                    store.commit(Millis(0), key, session, &mut events).await
                } else {
                    store.release(Millis(0), key, session, &mut events).await
                };
                if done.is_ok() {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            tracing::error!(%key, session = session.0, "gave up settling a grant reservation; it stays until the grant expires");
        });
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    fn holder(&self, session: SessionId) -> String {
        format!("h:{}:{}", self.inner.node, session.0)
    }

    /// One call, bounded by `[grant] store_timeout`.
    async fn bounded<T>(&self, call: impl Future<Output = RedisResult<T>>) -> StoreResult<T> {
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_timeout() => Err(StoreError::Timeout),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Write `grant` under its key. `expect` is the `rev` read ("" when there was no
    /// record; "*" replaces whatever is there). False when another node wrote first.
    async fn put(&self, grant: &StoredGrant, expect: &str, fresh: bool) -> RedisResult<bool> {
        let key = grant.view.key;
        let view = serde_json::to_string(&grant.view).map_err(json_error)?;
        let written: i64 = self
            .inner
            .scripts
            .put
            .key(redis_key(key))
            .key(NETWORKS)
            .arg(expect)
            .arg(if fresh { "fresh" } else { "refresh" })
            .arg(view)
            .arg(grant.view.expires.0)
            .arg(count(grant.view.messages_left))
            .arg(u64::try_from(grant.ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(count(grant.max_messages))
            .arg(u8::from(grant.view.sliding))
            .arg(u8::from(shared_grant::is_network_key(
                &self.inner.rules,
                &key,
            )))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(written == 1)
    }

    async fn login_once(
        &self,
        now: Millis,
        peer: IpAddr,
        user: &str,
        session: SessionId,
        note: Option<String>,
        events: &mut Vec<Event>,
    ) -> RedisResult<Option<LoginGrant>> {
        let key = self.inner.rules.key_for(peer);
        let map: HashMap<String, String> = self.conn().hgetall(redis_key(key)).await?;
        let existing = record(&map);
        let rev = map.get("rev").map_or("", String::as_str);
        let (outcome, made) = shared_grant::login(
            &self.inner.rules,
            existing.as_ref(),
            now,
            peer,
            user,
            session,
            note,
        );
        let stored = match &outcome {
            SharedLogin::Denied => true,
            SharedLogin::Created(g) => self.put(g, rev, true).await?,
            SharedLogin::Refreshed(g) => self.put(g, rev, false).await?,
        };
        if !stored {
            return Ok(None);
        }
        events.extend(made);
        Ok(Some(outcome.grant()))
    }

    async fn revoke_key(
        &self,
        now: Millis,
        key: Cidr,
        reason: &str,
        events: &mut Vec<Event>,
    ) -> StoreResult<bool> {
        let mut conn = self.conn();
        let script = &self.inner.scripts.revoke;
        let gone: i64 = self
            .bounded(async move {
                script
                    .key(redis_key(key))
                    .key(NETWORKS)
                    .arg(now.0)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        if gone == 1 {
            events.push(Event::new(
                now,
                None,
                EventKind::GrantRevoked {
                    key,
                    reason: reason.to_owned(),
                },
            ));
        }
        Ok(gone == 1)
    }

    /// Every record under [`PREFIX`], found with SCAN (never KEYS, which blocks Redis
    /// for the whole key space), each round trip bounded.
    async fn scan(&self) -> StoreResult<Vec<StoredGrant>> {
        let pattern = format!("{PREFIX}*");
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let mut conn = self.conn();
            let (next, keys): (u64, Vec<String>) = self
                .bounded(
                    ::redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(256)
                        .query_async(&mut conn),
                )
                .await?;
            if !keys.is_empty() {
                let mut pipe = ::redis::pipe();
                for key in &keys {
                    pipe.cmd("HGETALL").arg(key);
                }
                let maps: Vec<HashMap<String, String>> =
                    self.bounded(pipe.query_async(&mut conn)).await?;
                found.extend(maps.iter().filter_map(record));
            }
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }
}

impl GrantStore for RedisStore {
    fn key_for(&self, peer: IpAddr) -> Cidr {
        self.inner.rules.key_for(peer)
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
        self.bounded(async {
            for _ in 0..LOGIN_ATTEMPTS {
                if let Some(grant) = self
                    .login_once(now, peer, user, session, note.clone(), events)
                    .await?
                {
                    return Ok(grant);
                }
            }
            Err(::redis::RedisError::from((
                ::redis::ErrorKind::Client,
                "grant written by other nodes at every attempt",
            )))
        })
        .await
    }

    async fn reserve(
        &self,
        now: Millis,
        peer: IpAddr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> StoreResult<Result<Reservation, RelayRefusal>> {
        let holder = self.holder(session);
        let mut conn = self.conn();
        let rules = &self.inner.rules;
        let script = &self.inner.scripts.reserve;
        let call = async {
            let networks: Vec<String> = conn.smembers(NETWORKS).await?;
            let networks: Vec<Cidr> = networks
                .iter()
                .filter_map(|k| k.strip_prefix(PREFIX)?.parse().ok())
                .collect();
            let keys = shared_grant::candidates(rules, peer, &networks);
            let mut invocation = script.prepare_invoke();
            for key in &keys {
                invocation.key(redis_key(*key));
            }
            let (status, index, view): (String, usize, String) = invocation
                .arg(now.0)
                .arg(&holder)
                .invoke_async(&mut conn)
                .await?;
            Ok((keys, status, index, view))
        };
        let (keys, status, index, view) = match self.bounded(call).await {
            Ok(answer) => answer,
            Err(e) => {
                // The script may have run after we stopped waiting: give back what it
                // may have reserved, so the message is not held until expiry.
                for key in shared_grant::candidates(rules, peer, &[]) {
                    self.settle_later(key, session, false);
                }
                return Err(e);
            }
        };
        let refusal = match status.as_str() {
            "reserved" | "held" => None,
            "expired" => Some(RelayRefusal::Expired),
            "used_up" => Some(RelayRefusal::UsedUp),
            _ => Some(RelayRefusal::NoGrant),
        };
        if let Some(refusal) = refusal {
            return Ok(Err(refusal));
        }
        let key = index
            .checked_sub(1)
            .and_then(|i| keys.get(i).copied())
            .ok_or_else(|| StoreError::Unavailable("reserve answered no key".into()))?;
        let view: GrantView = serde_json::from_str(&view)
            .map_err(|e| StoreError::Unavailable(format!("stored grant unreadable: {e}")))?;
        if status == "reserved" {
            events.push(Event::new(
                now,
                Some(session),
                EventKind::GrantReserved {
                    key,
                    user: view.user.clone(),
                },
            ));
        }
        Ok(Ok(Reservation {
            key,
            user: view.user,
            granting_session: view.session,
        }))
    }

    async fn commit(
        &self,
        now: Millis,
        key: Cidr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> StoreResult<()> {
        let mut conn = self.conn();
        let holder = self.holder(session);
        let script = &self.inner.scripts.commit;
        let done: Option<(i64, String)> = self
            .bounded(async move {
                script
                    .key(redis_key(key))
                    .arg(holder)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        if let Some((left, view)) = done {
            let user = serde_json::from_str::<GrantView>(&view)
                .map(|v| v.user)
                .unwrap_or_default();
            events.push(Event::new(
                now,
                Some(session),
                EventKind::GrantUsed {
                    key,
                    user,
                    messages_left: u32::try_from(left).ok(),
                },
            ));
        }
        Ok(())
    }

    async fn release(
        &self,
        now: Millis,
        key: Cidr,
        session: SessionId,
        events: &mut Vec<Event>,
    ) -> StoreResult<()> {
        let mut conn = self.conn();
        let holder = self.holder(session);
        let script = &self.inner.scripts.release;
        let released: i64 = self
            .bounded(async move {
                script
                    .key(redis_key(key))
                    .arg(holder)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        if released == 1 {
            events.push(Event::new(
                now,
                Some(session),
                EventKind::GrantReleased { key },
            ));
        }
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
        let (grant, made) =
            shared_grant::add(&self.inner.rules, now, key, user, ttl, messages, note);
        self.bounded(self.put(&grant, "*", true)).await?;
        events.extend(made);
        Ok(grant.view)
    }

    async fn revoke(
        &self,
        now: Millis,
        key: Cidr,
        reason: &str,
        events: &mut Vec<Event>,
    ) -> StoreResult<bool> {
        self.revoke_key(now, key, reason, events).await
    }

    async fn revoke_user(
        &self,
        now: Millis,
        user: &str,
        reason: &str,
        events: &mut Vec<Event>,
    ) -> StoreResult<usize> {
        let mut revoked = 0;
        for grant in self.list(now).await? {
            if grant
                .users
                .iter()
                .any(|seen| shared_grant::same_user(seen, user))
                && self.revoke_key(now, grant.key, reason, events).await?
            {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    async fn flush(&self, now: Millis, events: &mut Vec<Event>) -> StoreResult<usize> {
        let mut revoked = 0;
        for grant in self.list(now).await? {
            if self
                .revoke_key(now, grant.key, popgate_core::grant::reason::FLUSHED, events)
                .await?
            {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    async fn list(&self, now: Millis) -> StoreResult<Vec<GrantView>> {
        let mut grants: Vec<GrantView> = self
            .scan()
            .await?
            .into_iter()
            .filter(|g| g.live(now))
            .map(|g| g.view)
            .collect();
        // Soonest expiry first, as the table lists them.
        grants.sort_by_key(|g| (g.expires, g.key));
        Ok(grants)
    }
}

fn redis_key(key: Cidr) -> String {
    format!("{PREFIX}{key}")
}

/// A count as stored: -1 for no limit.
fn count(n: Option<u32>) -> i64 {
    n.map_or(-1, i64::from)
}

fn json_error(e: serde_json::Error) -> ::redis::RedisError {
    ::redis::RedisError::from((
        ::redis::ErrorKind::Client,
        "grant not serialisable",
        e.to_string(),
    ))
}

/// A stored record, its counts and expiry taken from the fields the scripts keep.
/// `None` for no record, or one this version cannot read.
fn record(map: &HashMap<String, String>) -> Option<StoredGrant> {
    let mut view: GrantView = serde_json::from_str(map.get("view")?).ok()?;
    let number = |field: &str| map.get(field)?.parse::<i64>().ok();
    view.expires = Millis(u64::try_from(number("expires")?).ok()?);
    view.messages_left = u32::try_from(number("left")?).ok();
    view.reserved = u32::try_from(number("reserved")?).unwrap_or(0);
    Some(StoredGrant {
        view,
        ttl: Duration::from_millis(u64::try_from(number("ttl")?).unwrap_or(0)),
        max_messages: u32::try_from(number("max")?).ok(),
    })
}

/// Start carrying events between this node and the others: one task sends this node's
/// events, one merges the others'. Both end at shutdown.
pub fn spawn_cluster(grants: &Arc<Grants>, store: &RedisStore, shutdown: watch::Receiver<bool>) {
    let outbox = store
        .inner
        .outbox
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(outbox) = outbox {
        tokio::spawn(send_events(store.clone(), outbox, shutdown.clone()));
    }
    tokio::spawn(receive_events(grants.clone(), store.clone(), shutdown));
}

/// PUBLISH every event of this node, in order. While Redis is away they are dropped
/// (said once per outage): the dashboards of the other nodes miss them.
async fn send_events(
    store: RedisStore,
    mut outbox: mpsc::Receiver<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let event = tokio::select! {
            e = outbox.recv() => match e { Some(e) => e, None => return },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let Ok(payload) = serde_json::to_vec(&event) else {
            continue;
        };
        let mut conn = store.conn();
        let sent: StoreResult<i64> = store.bounded(conn.publish(CHANNEL, payload)).await;
        match sent {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("sending events to the other nodes again");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot send events to the other nodes; their dashboards miss this node's until Redis is back");
            }
            Err(_) => {}
        }
    }
}

/// SUBSCRIBE to the other nodes' events and merge them into this node's bus;
/// resubscribe (with a growing delay) whenever the subscription is lost.
async fn receive_events(
    grants: Arc<Grants>,
    store: RedisStore,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = store.node().to_owned();
    let bus: &EventBus = &grants.events;
    let mut delay = RESUBSCRIBE_MIN;
    let mut failing = false;
    loop {
        let subscribed = async {
            let mut pubsub = store.inner.client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            RedisResult::Ok(pubsub)
        };
        match tokio::time::timeout(store.inner.timeout.max(RESUBSCRIBE_MAX), subscribed).await {
            Ok(Ok(pubsub)) => {
                if failing {
                    tracing::info!("receiving events from the other nodes again");
                }
                failing = false;
                delay = RESUBSCRIBE_MIN;
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        m = messages.next() => m,
                        _ = shutdown.wait_for(|s| *s) => return,
                    };
                    let Some(message) = message else { break };
                    let Ok(event) = serde_json::from_slice::<Event>(message.get_payload_bytes())
                    else {
                        tracing::debug!("ignored an unreadable event from another node");
                        continue;
                    };
                    if event.node.as_deref() == Some(me.as_str()) {
                        continue;
                    }
                    let grant_event = matches!(
                        event.kind,
                        EventKind::GrantCreated { .. } | EventKind::GrantRefreshed { .. }
                    );
                    bus.merge(event);
                    if grant_event {
                        grants.wake();
                    }
                }
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot receive events from the other nodes; retrying");
            }
            Err(_) if !failing => {
                failing = true;
                tracing::warn!("cannot receive events from the other nodes (timed out); retrying");
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(RESUBSCRIBE_MAX);
    }
}
