//! The event bus: numbers core events, logs the notable ones, broadcasts them.
//!
//! The broadcast is bounded: a subscriber that lags loses events (and the dashboard
//! resynchronises from a snapshot); a publisher never waits, so the mail path is never
//! slowed by a browser.

use popgate_core::Event;
use popgate_core::event::{EventKind, RelayOutcome};
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Events a lagging subscriber may fall behind before it loses some.
pub const EVENT_CAPACITY: usize = 4096;

#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    /// Held while numbering and sending, so sequence numbers are in send order.
    seq: Mutex<u64>,
    transcripts: bool,
}

impl EventBus {
    pub fn new(transcripts: bool) -> EventBus {
        let (tx, _) = broadcast::channel(EVENT_CAPACITY);
        EventBus {
            tx,
            seq: Mutex::new(0),
            transcripts,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Publish one event; `peer` is the client of the session that caused it, for the
    /// log line (fail2ban matches `peer=`).
    pub fn publish(&self, mut event: Event, peer: Option<SocketAddr>) {
        let is_transcript = matches!(
            event.kind,
            EventKind::ClientLine { .. } | EventKind::ServerLine { .. }
        );
        if is_transcript && !self.transcripts {
            return;
        }
        log(&event, peer);
        // A poisoned lock only means another publisher panicked mid-send; the
        // counter is still a valid number.
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *seq += 1;
        event.seq = *seq;
        // No subscribers is fine: the event is simply not watched.
        let _ = self.tx.send(event);
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
            tracing::info!("event=tls session={session} peer={peer} version={version} cipher={cipher}")
        }
        EventKind::LoginDelayed { delay_ms, failures } => {
            tracing::warn!("event=login_delayed session={session} peer={peer} failures={failures} delay_ms={delay_ms}")
        }
        EventKind::AddressBlocked { address, failures } => {
            tracing::warn!("event=address_blocked session={session} peer={address} failures={failures}")
        }
        EventKind::ClientLine { line } => tracing::trace!("session={session} C: {line}"),
        EventKind::ServerLine { line } => tracing::trace!("session={session} S: {line}"),
        other => tracing::debug!("session={session} {other:?}"),
    }
}
