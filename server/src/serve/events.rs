//! The event bus: numbers core events, logs the notable ones, broadcasts them.
//!
//! The broadcast is bounded: a subscriber that lags loses events (and the dashboard
//! resynchronises from a snapshot); a publisher never waits, so the mail path is never
//! slowed by a browser.
//!
//! The bus also keeps the dashboard's state ([`DashboardState`]), applying each event
//! under the same lock that numbers and sends it, so a snapshot's `seq` and the
//! broadcast agree: [`EventBus::subscribe_with_snapshot`] returns a receiver that
//! yields exactly the events after the snapshot.
//!
//! When several nodes share grants ([`crate::grants::redis`]), the bus is
//! [`clustered`](EventBus::clustered): each event this node publishes names the node
//! and is also handed (without waiting) to the task that sends it to the others, and
//! the others' events come in through [`EventBus::merge`].

use popgate_core::dashboard::{DashboardState, Retention};
use popgate_core::event::{EventKind, RelayOutcome};
use popgate_core::{Event, Millis};
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::sync::{broadcast, mpsc};

/// Events a lagging subscriber may fall behind before it loses some.
pub const EVENT_CAPACITY: usize = 4096;

#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    /// Held while numbering, applying and sending (`state.seq` is the last number
    /// given), so sequence numbers are in send order and the state matches them. A
    /// std mutex never held across an `.await`: applying one event is a short,
    /// synchronous call.
    state: Mutex<DashboardState>,
    transcripts: bool,
    /// This node's name and the way to the other nodes, when clustered.
    cluster: Option<(String, mpsc::Sender<Event>)>,
}

impl EventBus {
    pub fn new(transcripts: bool) -> EventBus {
        let (tx, _) = broadcast::channel(EVENT_CAPACITY);
        EventBus {
            tx,
            state: Mutex::new(DashboardState::new(Retention::default())),
            transcripts,
            cluster: None,
        }
    }

    /// A bus whose events name `node` and are also sent into `forward` (dropped when
    /// it is full: the mail path never waits for the other nodes).
    pub fn clustered(transcripts: bool, node: String, forward: mpsc::Sender<Event>) -> EventBus {
        EventBus {
            cluster: Some((node, forward)),
            ..EventBus::new(transcripts)
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Publish one event; `peer` is the client of the session that caused it, for the
    /// log line (fail2ban matches `peer=`).
    pub fn publish(&self, event: Event, peer: Option<SocketAddr>) {
        let is_transcript = matches!(
            event.kind,
            EventKind::ClientLine { .. } | EventKind::ServerLine { .. }
        );
        if is_transcript && !self.transcripts {
            return;
        }
        log(&event, peer);
        self.send(event, true);
    }

    /// Publish an event only this node's dashboard needs (every node makes its own,
    /// e.g. the expiry of a shared grant): logged, not sent to the other nodes.
    pub fn publish_here(&self, event: Event) {
        log(&event, None);
        self.send(event, false);
    }

    /// An event another node published: applied and broadcast here, not logged (that
    /// node logged it) and not sent on.
    pub fn merge(&self, event: Event) {
        let mut state = self.lock_state();
        Self::number_and_send(&self.tx, &mut state, event);
    }

    fn send(&self, mut event: Event, forward: bool) {
        let mut state = self.lock_state();
        if let Some((node, to_others)) = &self.cluster {
            event.node = Some(node.clone());
            // Under the lock, so the other nodes receive this node's events in order.
            if forward && to_others.try_send(event.clone()).is_err() {
                tracing::debug!("event not sent to the other nodes: the outbox is full");
            }
        }
        Self::number_and_send(&self.tx, &mut state, event);
    }

    fn number_and_send(
        tx: &broadcast::Sender<Event>,
        state: &mut DashboardState,
        mut event: Event,
    ) {
        event.seq = state.seq + 1;
        state.apply(&event);
        // No subscribers is fine: the event is simply not watched.
        let _ = tx.send(event);
    }

    /// A copy of the dashboard's state with `now` moved to the server's clock, and a
    /// receiver of exactly the events published after it.
    pub fn subscribe_with_snapshot(
        &self,
        now: Millis,
    ) -> (DashboardState, broadcast::Receiver<Event>) {
        let state = self.lock_state();
        let rx = self.tx.subscribe();
        let mut snapshot = state.clone();
        drop(state);
        snapshot.observe(now);
        (snapshot, rx)
    }

    /// Read the dashboard's state without copying all of it (keep `f` short: event
    /// publishing waits for it).
    pub fn with_state<T>(&self, f: impl FnOnce(&DashboardState) -> T) -> T {
        f(&self.lock_state())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, DashboardState> {
        // A poisoned lock only means another publisher panicked mid-apply; the
        // dashboard may show one event half-applied, which beats losing the stream.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One `key=value` line per notable event (DESIGN "Logging").
fn log(event: &Event, peer: Option<SocketAddr>) {
    let session = event.session.map(|s| s.0).unwrap_or(0);
    let peer = peer
        .map(|p| p.ip().to_string())
        .unwrap_or_else(|| "-".into());
    match &event.kind {
        EventKind::SessionOpened {
            protocol,
            peer,
            local,
            tls,
        } => {
            tracing::info!(
                "event=connect session={session} protocol={} peer={peer} local={local} tls={tls}",
                protocol.name()
            )
        }
        EventKind::SessionClosed { reason } => {
            tracing::info!("event=disconnect session={session} peer={peer} reason={reason:?}")
        }
        EventKind::AuthSucceeded { user, mechanism } => {
            tracing::info!(
                "event=auth_ok session={session} peer={peer} user={user} mechanism={mechanism}"
            )
        }
        EventKind::AuthFailed { user, mechanism } => tracing::warn!(
            "event=auth_failed session={session} peer={peer} user={} mechanism={mechanism}",
            user.as_deref().unwrap_or("-")
        ),
        EventKind::GrantCreated { grant } | EventKind::GrantRefreshed { grant } => tracing::info!(
            "event=grant session={session} key={} user={} expires={} messages_left={}",
            grant.key,
            grant.user,
            grant.expires.0,
            grant
                .messages_left
                .map(|n| n.to_string())
                .unwrap_or_else(|| "unlimited".into())
        ),
        EventKind::GrantRefused { key, user, reason } => {
            tracing::info!(
                "event=grant_refused session={session} key={key} user={user} reason={reason:?}"
            )
        }
        EventKind::GrantExpired { key } => tracing::info!("event=grant_expired key={key}"),
        EventKind::GrantRevoked { key, reason } => {
            tracing::info!("event=grant_revoked key={key} reason={reason:?}")
        }
        EventKind::RelayDecision { rcpt, decision } => {
            let outcome = match decision {
                RelayOutcome::Local => "local".to_string(),
                RelayOutcome::Trusted => "trusted".to_string(),
                RelayOutcome::Grant { key, user, .. } => format!("grant key={key} user={user}"),
                RelayOutcome::Auth { user } => format!("auth user={user}"),
                RelayOutcome::Denied { reason } => format!("denied reason={reason:?}"),
                RelayOutcome::UnknownUser => "unknown_user".to_string(),
            };
            tracing::info!(
                "event=relay session={session} peer={peer} rcpt={rcpt} decision={outcome}"
            )
        }
        EventKind::MessageAccepted {
            id,
            from,
            rcpts,
            size,
            relayed,
        } => tracing::info!(
            "event=accepted session={session} peer={peer} id={id} from=<{from}> rcpts={} size={size} relayed={relayed}",
            rcpts.len()
        ),
        EventKind::MessageDelivered { id, mailbox } => {
            tracing::info!("event=delivered id={id} mailbox={mailbox}")
        }
        EventKind::MessageQueued { id, rcpts } => {
            tracing::info!("event=queued id={id} rcpts={}", rcpts.len())
        }
        EventKind::TlsStarted { version, cipher } => {
            tracing::info!(
                "event=tls session={session} peer={peer} version={version} cipher={cipher}"
            )
        }
        EventKind::LoginDelayed { delay_ms, failures } => {
            tracing::warn!(
                "event=login_delayed session={session} peer={peer} failures={failures} delay_ms={delay_ms}"
            )
        }
        EventKind::AddressBlocked { address, failures } => {
            tracing::warn!(
                "event=address_blocked session={session} peer={address} failures={failures}"
            )
        }
        EventKind::ClientLine { line } => tracing::trace!("session={session} C: {line}"),
        EventKind::ServerLine { line } => tracing::trace!("session={session} S: {line}"),
        other => tracing::debug!("session={session} {other:?}"),
    }
}
