//! The dashboard's state: one reducer over the [`Event`] stream, shared by the server
//! (which answers snapshots from it) and the web app (which applies live events to the
//! snapshot it was sent), so both sides agree on what an event means.
//!
//! The reducer is pure: it reads no clock (time comes from each event's `at`), and
//! everything it keeps is bounded by [`Retention`], so a long-running server or an
//! open browser tab holds a fixed amount of state however much mail goes through.
//!
//! # Calling contract
//!
//! ```text
//! server: every published event   -> state.apply(&event)           (under the lock that numbers it)
//! server: a snapshot request      -> state.clone(), then observe(clock now)
//! web:    first WebSocket frame   -> StreamMessage::Snapshot(state) replaces its state
//! web:    every later frame       -> StreamMessage::Event(e): state.apply(&e), skipping
//!                                    e.seq <= state.seq (already in the snapshot)
//! ```
//!
//! JSON: sessions and grants are sent as arrays (sorted by id and by key) rather than
//! objects, so JavaScript and serde's tagged enums need no string-to-number map keys;
//! they are rebuilt into maps on deserialisation.

use crate::event::{CloseReason, Event, EventKind, Protocol, RelayOutcome, SessionId};
use crate::grant::{GrantView, RelayRefusal};
use crate::net::Cidr;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// How much the dashboard keeps. Everything older is dropped, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Sessions, active and recently closed; closed ones are dropped first.
    pub sessions: usize,
    /// Transcript lines per session; the earliest are dropped and counted.
    pub transcript_lines: usize,
    /// Timeline entries.
    pub timeline: usize,
    /// Recently accepted messages.
    pub messages: usize,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            sessions: 200,
            transcript_lines: 500,
            timeline: 500,
            messages: 100,
        }
    }
}

/// Everything the dashboard shows, as of event `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardState {
    /// The last event applied (0: none yet).
    pub seq: u64,
    /// The latest time known: the latest event's `at`, or the server's clock when it
    /// took the snapshot ([`DashboardState::observe`]), whichever is later. Countdowns
    /// are `grant.expires - now` plus the time elapsed locally since it arrived.
    pub now: Millis,
    pub limits: Retention,
    #[serde(with = "as_list")]
    pub sessions: BTreeMap<SessionId, SessionView>,
    /// Live grants by key, as the grant table last reported them.
    #[serde(with = "as_list")]
    pub grants: BTreeMap<Cidr, GrantView>,
    /// Oldest first.
    pub timeline: VecDeque<TimelineEntry>,
    pub counters: Counters,
    /// Recently accepted messages, oldest first.
    pub messages: VecDeque<MessageSummary>,
}

/// One POP3 or SMTP session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub id: SessionId,
    pub protocol: Protocol,
    pub peer: String,
    pub local: String,
    pub tls: bool,
    /// The TLS version and cipher once a handshake completed.
    #[serde(default)]
    pub tls_version: Option<String>,
    #[serde(default)]
    pub tls_cipher: Option<String>,
    /// The user that authenticated (POP3 login or SMTP AUTH).
    pub user: Option<String>,
    #[serde(default)]
    pub auth_failures: u32,
    pub opened: Millis,
    pub closed: Option<Closed>,
    /// The latest transcript lines (omitted in session lists).
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub transcript: VecDeque<TranscriptLine>,
    /// Transcript lines dropped from the front to keep the bound.
    #[serde(default)]
    pub truncated: u64,
    /// SMTP: each recipient's relay decision, latest [`Retention::transcript_lines`].
    #[serde(default)]
    pub relays: Vec<RelayView>,
    /// POP3: the grant this session's login created or refreshed.
    pub grant_made: Option<Cidr>,
    /// SMTP: ids of the messages this session had accepted.
    #[serde(default)]
    pub messages: Vec<String>,
    /// The node that served the session when several share a dashboard
    /// ([`Event::node`]); `None` on a node of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub at: Millis,
    pub reason: CloseReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptLine {
    pub at: Millis,
    /// `true`: `C:` (already redacted in core); `false`: `S:`.
    pub from_client: bool,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayView {
    pub at: Millis,
    pub rcpt: String,
    pub decision: RelayOutcome,
}

/// One step of cause and effect, for the timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: Millis,
    pub seq: u64,
    pub session: Option<SessionId>,
    pub kind: TimelineKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    /// A login verified (POP3, or SMTP AUTH); `protocol` is `None` when the session is
    /// no longer retained.
    Login {
        user: String,
        mechanism: String,
        tls: bool,
        protocol: Option<Protocol>,
    },
    LoginFailed {
        user: Option<String>,
        mechanism: String,
    },
    GrantCreated {
        key: Cidr,
        user: String,
        expires: Millis,
        messages_left: Option<u32>,
    },
    GrantRefreshed {
        key: Cidr,
        user: String,
        expires: Millis,
        messages_left: Option<u32>,
    },
    /// A verified login made no grant (deny range, TLS required, store failure).
    GrantRefused {
        key: Cidr,
        user: String,
        reason: String,
    },
    /// A relayed message was committed against the grant.
    GrantUsed {
        key: Cidr,
        user: String,
        messages_left: Option<u32>,
    },
    GrantExpired {
        key: Cidr,
    },
    GrantRevoked {
        key: Cidr,
        reason: String,
    },
    /// A non-local recipient was allowed; `via` says by what (and for a grant, the
    /// POP3 session that made it: the link the timeline draws).
    RelayAllowed {
        rcpt: String,
        via: RelayVia,
    },
    /// 554 5.7.1: a non-local recipient was refused.
    RelayDenied {
        rcpt: String,
        reason: RelayRefusal,
    },
    MessageAccepted {
        id: String,
        from: String,
        rcpts: usize,
        relayed: bool,
    },
    /// Outbound delivery gave up on these recipients; `dsn` is where the bounce went.
    MessageBounced {
        id: String,
        rcpts: Vec<String>,
        reason: String,
        dsn: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayVia {
    Grant {
        key: Cidr,
        user: String,
        granting_session: SessionId,
    },
    Auth {
        user: String,
    },
    Trusted,
}

/// Totals since the server started (never reset by retention).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Sessions opened, by protocol name (`smtp`, `pop3`, ...).
    pub sessions_by_protocol: BTreeMap<String, u64>,
    /// Sessions open now.
    pub sessions_open: u64,
    pub auth_ok: u64,
    pub auth_failed: u64,
    pub logins_delayed: u64,
    pub addresses_blocked: u64,
    pub grants_created: u64,
    pub grants_refreshed: u64,
    pub grants_refused: u64,
    pub grants_used: u64,
    pub grants_expired: u64,
    pub grants_revoked: u64,
    /// Relay decisions: non-local recipients allowed (by grant, auth or trust) ...
    pub relay_allowed: u64,
    pub relay_by_grant: u64,
    pub relay_by_auth: u64,
    pub relay_trusted: u64,
    /// ... refused with 554 5.7.1 ...
    pub relay_denied: u64,
    /// ... local recipients (no relaying involved), and 550 5.1.1 unknown users.
    pub relay_local: u64,
    pub relay_unknown_user: u64,
    pub messages_accepted: u64,
    pub messages_relayed: u64,
    pub bytes_accepted: u64,
    /// Deliveries: one per local mailbox, and one per relayed recipient delivered.
    pub messages_delivered: u64,
    pub messages_queued: u64,
    /// Outbound delivery attempts that left recipients for a retry.
    pub messages_deferred: u64,
    /// Outbound deliveries given up (per event, each naming its recipients).
    pub messages_bounced: u64,
    /// POP3 messages removed in UPDATE.
    pub messages_removed: u64,
    /// `grant.mode = "warn"`: grant relays allowed and marked (one per transaction).
    pub grant_relays_warned: u64,
    /// `grant.mode = "off"`: relays that would have used a grant, refused.
    pub grant_relays_switched_off: u64,
    /// Migration notices delivered to users' mailboxes.
    pub migration_notices: u64,
}

/// A message that was accepted (or is being stored: delivery events come just before
/// the 250 that accepts it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSummary {
    /// The id the client was told in `250 ... queued as <id>`.
    pub id: String,
    pub at: Millis,
    pub session: Option<SessionId>,
    pub from: String,
    pub rcpts: Vec<String>,
    pub size: u64,
    pub relayed: bool,
    /// Local mailboxes it was delivered to, then remote recipients the queue
    /// delivered to.
    pub delivered_to: Vec<String>,
    /// Remote recipients it was queued for.
    pub queued_for: Vec<String>,
    /// Remote recipients waiting for a retry after the latest attempt.
    #[serde(default)]
    pub deferred_for: Vec<String>,
    /// Remote recipients given up on (a bounce was sent unless the sender was null).
    #[serde(default)]
    pub bounced_for: Vec<String>,
}

/// The frames of the `/api/events` WebSocket, as JSON text: a snapshot first (and
/// again after the client fell behind), then events in `seq` order.
///
/// Enums on the wire (frames, event kinds, timeline kinds, relay outcomes) are
/// externally tagged: `{"event":{...}}`, `{"client_line":{"line":"..."}}`, and a bare
/// `"trusted"` for a variant without fields. An internally tagged (`"type"`) form would
/// make every decoder buffer each object before it knows the variant; in the browser
/// that generic code is a large share of the WebAssembly module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
// A snapshot is sent once per connection (and after a lag); boxing it would only
// complicate every match on a frame.
#[allow(clippy::large_enum_variant)]
pub enum StreamMessage {
    Snapshot(DashboardState),
    Event(Event),
}

impl Default for DashboardState {
    fn default() -> DashboardState {
        DashboardState::new(Retention::default())
    }
}

impl DashboardState {
    pub fn new(limits: Retention) -> DashboardState {
        DashboardState {
            seq: 0,
            now: Millis(0),
            limits,
            sessions: BTreeMap::new(),
            grants: BTreeMap::new(),
            timeline: VecDeque::new(),
            counters: Counters::default(),
            messages: VecDeque::new(),
        }
    }

    /// Move `now` forward to a clock reading (never back).
    pub fn observe(&mut self, now: Millis) {
        self.now = self.now.max(now);
    }

    /// Apply one published event. Events for sessions no longer retained (or never
    /// seen, e.g. opened before a snapshot the client missed) still count and still
    /// reach the timeline; only the per-session detail is skipped.
    pub fn apply(&mut self, event: &Event) {
        self.seq = self.seq.max(event.seq);
        self.observe(event.at);
        let at = event.at;
        let sid = event.session;
        match &event.kind {
            EventKind::SessionOpened {
                protocol,
                peer,
                local,
                tls,
            } => {
                *self
                    .counters
                    .sessions_by_protocol
                    .entry(protocol.name().to_owned())
                    .or_default() += 1;
                self.counters.sessions_open += 1;
                if let Some(id) = sid {
                    self.sessions.insert(
                        id,
                        SessionView {
                            id,
                            protocol: *protocol,
                            peer: peer.clone(),
                            local: local.clone(),
                            tls: *tls,
                            tls_version: None,
                            tls_cipher: None,
                            user: None,
                            auth_failures: 0,
                            opened: at,
                            closed: None,
                            transcript: VecDeque::new(),
                            truncated: 0,
                            relays: Vec::new(),
                            grant_made: None,
                            messages: Vec::new(),
                            node: event.node.clone(),
                        },
                    );
                    self.evict_sessions();
                }
            }
            EventKind::SessionClosed { reason } => {
                self.counters.sessions_open = self.counters.sessions_open.saturating_sub(1);
                if let Some(s) = self.session(sid) {
                    s.closed = Some(Closed {
                        at,
                        reason: reason.clone(),
                    });
                }
            }
            EventKind::ClientLine { line } => self.transcript(sid, at, true, line),
            EventKind::ServerLine { line } => self.transcript(sid, at, false, line),
            EventKind::TlsStarted { version, cipher } => {
                if let Some(s) = self.session(sid) {
                    s.tls = true;
                    s.tls_version = Some(version.clone());
                    s.tls_cipher = Some(cipher.clone());
                }
            }
            EventKind::AuthSucceeded { user, mechanism } => {
                self.counters.auth_ok += 1;
                let (tls, protocol) = match self.session(sid) {
                    Some(s) => {
                        s.user = Some(user.clone());
                        (s.tls, Some(s.protocol))
                    }
                    None => (false, None),
                };
                self.timeline(
                    event,
                    TimelineKind::Login {
                        user: user.clone(),
                        mechanism: mechanism.clone(),
                        tls,
                        protocol,
                    },
                );
            }
            EventKind::AuthFailed { user, mechanism } => {
                self.counters.auth_failed += 1;
                if let Some(s) = self.session(sid) {
                    s.auth_failures = s.auth_failures.saturating_add(1);
                }
                self.timeline(
                    event,
                    TimelineKind::LoginFailed {
                        user: user.clone(),
                        mechanism: mechanism.clone(),
                    },
                );
            }
            EventKind::LoginDelayed { .. } => self.counters.logins_delayed += 1,
            EventKind::AddressBlocked { .. } => self.counters.addresses_blocked += 1,
            EventKind::MailFrom { .. } => {}
            EventKind::GrantCreated { grant } | EventKind::GrantRefreshed { grant } => {
                let created = matches!(event.kind, EventKind::GrantCreated { .. });
                if created {
                    self.counters.grants_created += 1;
                } else {
                    self.counters.grants_refreshed += 1;
                }
                if let Some(s) = self.session(sid) {
                    s.grant_made = Some(grant.key);
                }
                self.grants.insert(grant.key, grant.clone());
                let (key, user, expires, messages_left) = (
                    grant.key,
                    grant.user.clone(),
                    grant.expires,
                    grant.messages_left,
                );
                let kind = if created {
                    TimelineKind::GrantCreated {
                        key,
                        user,
                        expires,
                        messages_left,
                    }
                } else {
                    TimelineKind::GrantRefreshed {
                        key,
                        user,
                        expires,
                        messages_left,
                    }
                };
                self.timeline(event, kind);
            }
            EventKind::GrantRefused { key, user, reason } => {
                self.counters.grants_refused += 1;
                self.timeline(
                    event,
                    TimelineKind::GrantRefused {
                        key: *key,
                        user: user.clone(),
                        reason: reason.clone(),
                    },
                );
            }
            EventKind::GrantReserved { key, .. } => {
                if let Some(g) = self.grants.get_mut(key) {
                    g.reserved = g.reserved.saturating_add(1);
                }
            }
            EventKind::GrantReleased { key } => {
                if let Some(g) = self.grants.get_mut(key) {
                    g.reserved = g.reserved.saturating_sub(1);
                }
            }
            EventKind::GrantUsed {
                key,
                user,
                messages_left,
            } => {
                self.counters.grants_used += 1;
                // A commit spends the transaction's reservation.
                if let Some(g) = self.grants.get_mut(key) {
                    g.messages_left = *messages_left;
                    g.reserved = g.reserved.saturating_sub(1);
                }
                self.timeline(
                    event,
                    TimelineKind::GrantUsed {
                        key: *key,
                        user: user.clone(),
                        messages_left: *messages_left,
                    },
                );
            }
            EventKind::GrantExpired { key } => {
                self.counters.grants_expired += 1;
                self.grants.remove(key);
                self.timeline(event, TimelineKind::GrantExpired { key: *key });
            }
            EventKind::GrantRevoked { key, reason } => {
                self.counters.grants_revoked += 1;
                self.grants.remove(key);
                self.timeline(
                    event,
                    TimelineKind::GrantRevoked {
                        key: *key,
                        reason: reason.clone(),
                    },
                );
            }
            EventKind::RelayDecision { rcpt, decision } => {
                self.relay(event, rcpt, decision);
            }
            EventKind::MessageAccepted {
                id,
                from,
                rcpts,
                size,
                relayed,
            } => {
                self.counters.messages_accepted += 1;
                self.counters.bytes_accepted = self.counters.bytes_accepted.saturating_add(*size);
                if *relayed {
                    self.counters.messages_relayed += 1;
                }
                let limit = self.limits.transcript_lines;
                if let Some(s) = self.session(sid) {
                    push_bounded_vec(&mut s.messages, id.clone(), limit);
                }
                let m = self.message(id, at, sid);
                m.from = from.clone();
                m.rcpts = rcpts.clone();
                m.size = *size;
                m.relayed = *relayed;
                self.timeline(
                    event,
                    TimelineKind::MessageAccepted {
                        id: id.clone(),
                        from: from.clone(),
                        rcpts: rcpts.len(),
                        relayed: *relayed,
                    },
                );
            }
            EventKind::MessageDelivered { id, mailbox } => {
                self.counters.messages_delivered += 1;
                // Within the SMTP session: local delivery, just before the 250 that
                // accepts the message. Later (no session): the queue delivered a
                // relayed recipient, perhaps of a message no longer retained.
                let m = match sid {
                    Some(_) => Some(self.message(id, at, sid)),
                    None => self.retained_message(id),
                };
                if let Some(m) = m {
                    m.deferred_for.retain(|r| r != mailbox);
                    m.delivered_to.push(mailbox.clone());
                }
            }
            EventKind::MessageQueued { id, rcpts } => {
                self.counters.messages_queued += 1;
                self.message(id, at, sid)
                    .queued_for
                    .extend(rcpts.iter().cloned());
            }
            EventKind::MessageDeferred { id, rcpts, .. } => {
                self.counters.messages_deferred += 1;
                if let Some(m) = self.retained_message(id) {
                    m.deferred_for = rcpts.clone();
                }
            }
            EventKind::MessageBounced {
                id,
                rcpts,
                reason,
                dsn,
            } => {
                self.counters.messages_bounced += 1;
                if let Some(m) = self.retained_message(id) {
                    m.deferred_for.retain(|r| !rcpts.contains(r));
                    m.bounced_for.extend(rcpts.iter().cloned());
                }
                self.timeline(
                    event,
                    TimelineKind::MessageBounced {
                        id: id.clone(),
                        rcpts: rcpts.clone(),
                        reason: reason.clone(),
                        dsn: dsn.clone(),
                    },
                );
            }
            EventKind::MaildropOpened { .. } => {}
            EventKind::MessagesRemoved { count, .. } => {
                self.counters.messages_removed = self
                    .counters
                    .messages_removed
                    .saturating_add(u64::try_from(*count).unwrap_or(u64::MAX));
            }
            // The refusal itself reaches the timeline as the `RelayDecision` denied
            // with `grant_switched_off`; these only count.
            EventKind::GrantRelayWarned { .. } => self.counters.grant_relays_warned += 1,
            EventKind::GrantRelayRefused { .. } => self.counters.grant_relays_switched_off += 1,
            EventKind::MigrationNoticeSent { .. } => self.counters.migration_notices += 1,
        }
    }

    /// The sessions without their transcripts (for lists).
    pub fn session_list(&self) -> Vec<SessionView> {
        self.sessions
            .values()
            .map(|s| SessionView {
                transcript: VecDeque::new(),
                ..s.clone()
            })
            .collect()
    }

    fn session(&mut self, id: Option<SessionId>) -> Option<&mut SessionView> {
        id.and_then(|id| self.sessions.get_mut(&id))
    }

    /// Keep the bound: drop the oldest closed session, or when every retained session
    /// is still open, the oldest open one (its later events are then skipped).
    fn evict_sessions(&mut self) {
        while self.sessions.len() > self.limits.sessions {
            let victim = self
                .sessions
                .values()
                .find(|s| s.closed.is_some())
                .or_else(|| self.sessions.values().next())
                .map(|s| s.id);
            match victim {
                Some(id) => {
                    self.sessions.remove(&id);
                }
                None => break,
            }
        }
    }

    fn transcript(&mut self, id: Option<SessionId>, at: Millis, from_client: bool, text: &str) {
        let limit = self.limits.transcript_lines;
        if let Some(s) = self.session(id) {
            s.transcript.push_back(TranscriptLine {
                at,
                from_client,
                text: text.to_owned(),
            });
            while s.transcript.len() > limit {
                s.transcript.pop_front();
                s.truncated += 1;
            }
        }
    }

    fn relay(&mut self, event: &Event, rcpt: &str, decision: &RelayOutcome) {
        let limit = self.limits.transcript_lines;
        if let Some(s) = self.session(event.session) {
            push_bounded_vec(
                &mut s.relays,
                RelayView {
                    at: event.at,
                    rcpt: rcpt.to_owned(),
                    decision: decision.clone(),
                },
                limit,
            );
        }
        let c = &mut self.counters;
        let via = match decision {
            RelayOutcome::Local => {
                c.relay_local += 1;
                return;
            }
            RelayOutcome::UnknownUser => {
                c.relay_unknown_user += 1;
                return;
            }
            RelayOutcome::Denied { reason } => {
                c.relay_denied += 1;
                let kind = TimelineKind::RelayDenied {
                    rcpt: rcpt.to_owned(),
                    reason: *reason,
                };
                self.timeline(event, kind);
                return;
            }
            RelayOutcome::Trusted => {
                c.relay_trusted += 1;
                RelayVia::Trusted
            }
            RelayOutcome::Auth { user } => {
                c.relay_by_auth += 1;
                RelayVia::Auth { user: user.clone() }
            }
            RelayOutcome::Grant {
                key,
                user,
                granting_session,
            } => {
                c.relay_by_grant += 1;
                RelayVia::Grant {
                    key: *key,
                    user: user.clone(),
                    granting_session: *granting_session,
                }
            }
        };
        c.relay_allowed += 1;
        let kind = TimelineKind::RelayAllowed {
            rcpt: rcpt.to_owned(),
            via,
        };
        self.timeline(event, kind);
    }

    fn retained_message(&mut self, id: &str) -> Option<&mut MessageSummary> {
        self.messages.iter_mut().rev().find(|m| m.id == id)
    }

    /// The retained message with this id, made (and the bound kept) when absent.
    fn message(&mut self, id: &str, at: Millis, session: Option<SessionId>) -> &mut MessageSummary {
        let index = match self.messages.iter().rposition(|m| m.id == id) {
            Some(i) => i,
            None => {
                self.messages.push_back(MessageSummary {
                    id: id.to_owned(),
                    at,
                    session,
                    from: String::new(),
                    rcpts: Vec::new(),
                    size: 0,
                    relayed: false,
                    delivered_to: Vec::new(),
                    queued_for: Vec::new(),
                    deferred_for: Vec::new(),
                    bounced_for: Vec::new(),
                });
                // Keep at least the one just made, whatever the limit says.
                while self.messages.len() > self.limits.messages.max(1) {
                    self.messages.pop_front();
                }
                self.messages.len() - 1
            }
        };
        &mut self.messages[index]
    }

    fn timeline(&mut self, event: &Event, kind: TimelineKind) {
        self.timeline.push_back(TimelineEntry {
            at: event.at,
            seq: event.seq,
            session: event.session,
            kind,
        });
        while self.timeline.len() > self.limits.timeline {
            self.timeline.pop_front();
        }
    }
}

fn push_bounded_vec<T>(v: &mut Vec<T>, item: T, limit: usize) {
    v.push(item);
    if v.len() > limit {
        let excess = v.len() - limit;
        v.drain(..excess);
    }
}

/// A map whose values carry their own key, sent as a JSON array of the values.
trait Keyed {
    type Key: Ord;
    fn key(&self) -> Self::Key;
}

impl Keyed for SessionView {
    type Key = SessionId;
    fn key(&self) -> SessionId {
        self.id
    }
}

impl Keyed for GrantView {
    type Key = Cidr;
    fn key(&self) -> Cidr {
        self.key
    }
}

mod as_list {
    use super::Keyed;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer, K, V: Serialize>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.values())
    }

    pub fn deserialize<'de, D, V>(d: D) -> Result<BTreeMap<V::Key, V>, D::Error>
    where
        D: Deserializer<'de>,
        V: Keyed + Deserialize<'de>,
    {
        let values = Vec::<V>::deserialize(d)?;
        Ok(values.into_iter().map(|v| (v.key(), v)).collect())
    }
}

#[cfg(test)]
mod tests;
