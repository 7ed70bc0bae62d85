//! The `/api/events` frames decoded by hand, from a [`serde_json::Value`].
//!
//! Why not `serde_json::from_str::<StreamMessage>`: serde's derived decoders are generic
//! code, one visitor per struct and per variant (with a sequence form JSON never uses),
//! and for the stream's types they were about 40 KB of the gzipped WebAssembly module,
//! more than a tenth of the app's 300 KB budget. Here each field is one call of a few
//! small non-generic helpers, and the JSON parser is the one `serde_json::Value` already
//! brings in.
//!
//! The wire format stays core's: it is what core's `Serialize` derives write (the
//! server's side), and the tests decode every event kind, timeline kind and snapshot
//! field that core serialises and compare with the value it came from. A field or
//! variant added to a wire type in core fails to compile those tests until it is
//! decoded here as well (they build every type with exhaustive literals and matches).
//!
//! Read like serde's derive reads it: unknown fields are ignored, an absent or `null`
//! `Option` field is `None`, a field core marks `#[serde(default)]` may be absent; any
//! other missing or ill-typed field makes the frame unreadable (`None`), and the live
//! source skips it as it skipped frames serde could not read.

use popgate_core::dashboard::{
    Closed, Counters, DashboardState, MessageSummary, RelayVia, RelayView, Retention, SessionView,
    StreamMessage, TimelineEntry, TimelineKind, TranscriptLine,
};
use popgate_core::event::{CloseReason, Event, EventKind, Protocol, RelayOutcome};
use popgate_core::grant::{GrantView, RelayRefusal};
use popgate_core::net::Cidr;
use popgate_core::{Millis, SessionId};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One WebSocket text frame: `{"snapshot":{...}}` or `{"event":{...}}`.
pub fn decode_frame(text: &str) -> Option<StreamMessage> {
    let value: Value = serde_json::from_str(text).ok()?;
    let (tag, content) = variant(&value)?;
    match tag {
        "snapshot" => snapshot(content).map(StreamMessage::Snapshot),
        "event" => event(content).map(StreamMessage::Event),
        _ => None,
    }
}

/// A JSON object's fields.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn of(value: &'a Value) -> Option<Fields<'a>> {
        value.as_object().map(Fields)
    }

    /// A field that must be present.
    fn req<T>(&self, name: &str, read: fn(&Value) -> Option<T>) -> Option<T> {
        read(self.0.get(name)?)
    }

    /// An `Option` field: absent or `null` is `None`.
    fn opt<T>(&self, name: &str, read: fn(&Value) -> Option<T>) -> Option<Option<T>> {
        match self.0.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(v) => read(v).map(Some),
        }
    }

    /// A `#[serde(default)]` field: absent is the default.
    fn or_default<T: Default>(&self, name: &str, read: fn(&Value) -> Option<T>) -> Option<T> {
        match self.0.get(name) {
            None => Some(T::default()),
            Some(v) => read(v),
        }
    }

    /// A field with a default other than `Default::default()` (`#[serde(default =
    /// "...")]`): absent is `default()`.
    fn or_else<T>(
        &self,
        name: &str,
        read: fn(&Value) -> Option<T>,
        default: impl FnOnce() -> T,
    ) -> Option<T> {
        match self.0.get(name) {
            None => Some(default()),
            Some(v) => read(v),
        }
    }

    /// `#[serde(deny_unknown_fields)]`: every field is one of `names`.
    fn only(&self, names: &[&str]) -> Option<()> {
        self.0
            .keys()
            .all(|k| names.contains(&k.as_str()))
            .then_some(())
    }

    fn text(&self, name: &str) -> Option<String> {
        self.req(name, text)
    }

    fn key(&self) -> Option<Cidr> {
        self.req("key", cidr)
    }

    fn user(&self) -> Option<String> {
        self.text("user")
    }
}

/// An externally tagged enum value: `"name"` for a variant without fields, or
/// `{"name": content}`.
fn variant(value: &Value) -> Option<(&str, &Value)> {
    match value {
        Value::String(name) => Some((name, &Value::Null)),
        Value::Object(map) if map.len() == 1 => map.iter().next().map(|(k, v)| (k.as_str(), v)),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn number(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn number32(v: &Value) -> Option<u32> {
    u32::try_from(v.as_u64()?).ok()
}

fn count(v: &Value) -> Option<usize> {
    usize::try_from(v.as_u64()?).ok()
}

fn flag(v: &Value) -> Option<bool> {
    v.as_bool()
}

fn millis(v: &Value) -> Option<Millis> {
    v.as_u64().map(Millis)
}

fn session_id(v: &Value) -> Option<SessionId> {
    v.as_u64().map(SessionId)
}

fn cidr(v: &Value) -> Option<Cidr> {
    v.as_str()?.parse().ok()
}

fn list<T>(v: &Value, read: fn(&Value) -> Option<T>) -> Option<Vec<T>> {
    v.as_array()?.iter().map(read).collect()
}

fn texts(v: &Value) -> Option<Vec<String>> {
    list(v, text)
}

fn protocol(v: &Value) -> Option<Protocol> {
    Some(match v.as_str()? {
        "smtp" => Protocol::Smtp,
        "submission" => Protocol::Submission,
        "smtps" => Protocol::Smtps,
        "pop3" => Protocol::Pop3,
        "pop3s" => Protocol::Pop3s,
        "policy" => Protocol::Policy,
        "dovecot" => Protocol::Dovecot,
        _ => return None,
    })
}

fn close_reason(v: &Value) -> Option<CloseReason> {
    Some(match v.as_str()? {
        "quit" => CloseReason::Quit,
        "peer_closed" => CloseReason::PeerClosed,
        "timeout" => CloseReason::Timeout,
        "shutting_down" => CloseReason::ShuttingDown,
        "error" => CloseReason::Error,
        _ => return None,
    })
}

fn refusal(v: &Value) -> Option<RelayRefusal> {
    Some(match v.as_str()? {
        "no_grant" => RelayRefusal::NoGrant,
        "expired" => RelayRefusal::Expired,
        "used_up" => RelayRefusal::UsedUp,
        "auth_required" => RelayRefusal::AuthRequired,
        "grant_switched_off" => RelayRefusal::GrantSwitchedOff,
        _ => return None,
    })
}

fn relay_outcome(v: &Value) -> Option<RelayOutcome> {
    let (tag, content) = variant(v)?;
    let f = Fields::of(content);
    Some(match tag {
        "local" => RelayOutcome::Local,
        "trusted" => RelayOutcome::Trusted,
        "unknown_user" => RelayOutcome::UnknownUser,
        "grant" => {
            let f = f?;
            RelayOutcome::Grant {
                key: f.key()?,
                user: f.user()?,
                granting_session: f.req("granting_session", session_id)?,
            }
        }
        "auth" => RelayOutcome::Auth { user: f?.user()? },
        "denied" => RelayOutcome::Denied {
            reason: f?.req("reason", refusal)?,
        },
        _ => return None,
    })
}

fn relay_via(v: &Value) -> Option<RelayVia> {
    let (tag, content) = variant(v)?;
    let f = Fields::of(content);
    Some(match tag {
        "trusted" => RelayVia::Trusted,
        "grant" => {
            let f = f?;
            RelayVia::Grant {
                key: f.key()?,
                user: f.user()?,
                granting_session: f.req("granting_session", session_id)?,
            }
        }
        "auth" => RelayVia::Auth { user: f?.user()? },
        _ => return None,
    })
}

fn grant_view(v: &Value) -> Option<GrantView> {
    let f = Fields::of(v)?;
    Some(GrantView {
        key: f.key()?,
        user: f.user()?,
        users: f.req("users", texts)?,
        session: f.opt("session", session_id)?,
        created: f.req("created", millis)?,
        expires: f.req("expires", millis)?,
        messages_left: f.opt("messages_left", number32)?,
        reserved: f.req("reserved", number32)?,
        sliding: f.req("sliding", flag)?,
        note: f.opt("note", text)?,
    })
}

fn event(v: &Value) -> Option<Event> {
    let f = Fields::of(v)?;
    Some(Event {
        seq: f.req("seq", number)?,
        at: f.req("at", millis)?,
        session: f.opt("session", session_id)?,
        kind: f.req("kind", event_kind)?,
        node: f.opt("node", text)?,
    })
}

fn event_kind(v: &Value) -> Option<EventKind> {
    let (tag, content) = variant(v)?;
    // Every event kind has fields.
    let f = Fields::of(content)?;
    Some(match tag {
        "session_opened" => EventKind::SessionOpened {
            protocol: f.req("protocol", protocol)?,
            peer: f.text("peer")?,
            local: f.text("local")?,
            tls: f.req("tls", flag)?,
        },
        "session_closed" => EventKind::SessionClosed {
            reason: f.req("reason", close_reason)?,
        },
        "client_line" => EventKind::ClientLine {
            line: f.text("line")?,
        },
        "server_line" => EventKind::ServerLine {
            line: f.text("line")?,
        },
        "tls_started" => EventKind::TlsStarted {
            version: f.text("version")?,
            cipher: f.text("cipher")?,
        },
        "auth_succeeded" => EventKind::AuthSucceeded {
            user: f.user()?,
            mechanism: f.text("mechanism")?,
        },
        "auth_failed" => EventKind::AuthFailed {
            user: f.opt("user", text)?,
            mechanism: f.text("mechanism")?,
        },
        "login_delayed" => EventKind::LoginDelayed {
            delay_ms: f.req("delay_ms", number)?,
            failures: f.req("failures", number32)?,
        },
        "address_blocked" => EventKind::AddressBlocked {
            address: f.text("address")?,
            failures: f.req("failures", number32)?,
        },
        "mail_from" => EventKind::MailFrom {
            from: f.text("from")?,
        },
        "grant_created" => EventKind::GrantCreated {
            grant: f.req("grant", grant_view)?,
        },
        "grant_refreshed" => EventKind::GrantRefreshed {
            grant: f.req("grant", grant_view)?,
        },
        "grant_refused" => EventKind::GrantRefused {
            key: f.key()?,
            user: f.user()?,
            reason: f.text("reason")?,
        },
        "grant_reserved" => EventKind::GrantReserved {
            key: f.key()?,
            user: f.user()?,
        },
        "grant_released" => EventKind::GrantReleased { key: f.key()? },
        "grant_used" => EventKind::GrantUsed {
            key: f.key()?,
            user: f.user()?,
            messages_left: f.opt("messages_left", number32)?,
        },
        "grant_expired" => EventKind::GrantExpired { key: f.key()? },
        "grant_revoked" => EventKind::GrantRevoked {
            key: f.key()?,
            reason: f.text("reason")?,
        },
        "relay_decision" => EventKind::RelayDecision {
            rcpt: f.text("rcpt")?,
            decision: f.req("decision", relay_outcome)?,
        },
        "message_accepted" => EventKind::MessageAccepted {
            id: f.text("id")?,
            from: f.text("from")?,
            rcpts: f.req("rcpts", texts)?,
            size: f.req("size", number)?,
            relayed: f.req("relayed", flag)?,
        },
        "message_delivered" => EventKind::MessageDelivered {
            id: f.text("id")?,
            mailbox: f.text("mailbox")?,
        },
        "message_queued" => EventKind::MessageQueued {
            id: f.text("id")?,
            rcpts: f.req("rcpts", texts)?,
        },
        "message_deferred" => EventKind::MessageDeferred {
            id: f.text("id")?,
            rcpts: f.req("rcpts", texts)?,
            reason: f.text("reason")?,
            next_attempt: f.req("next_attempt", millis)?,
        },
        "message_bounced" => EventKind::MessageBounced {
            id: f.text("id")?,
            rcpts: f.req("rcpts", texts)?,
            reason: f.text("reason")?,
            dsn: f.opt("dsn", text)?,
        },
        "maildrop_opened" => EventKind::MaildropOpened {
            user: f.user()?,
            messages: f.req("messages", count)?,
            octets: f.req("octets", number)?,
        },
        "messages_removed" => EventKind::MessagesRemoved {
            user: f.user()?,
            count: f.req("count", count)?,
        },
        "grant_relay_warned" => EventKind::GrantRelayWarned {
            key: f.key()?,
            user: f.user()?,
        },
        "grant_relay_refused" => EventKind::GrantRelayRefused {
            key: f.key()?,
            user: f.user()?,
        },
        "migration_notice_sent" => EventKind::MigrationNoticeSent { user: f.user()? },
        _ => return None,
    })
}

fn snapshot(v: &Value) -> Option<DashboardState> {
    let f = Fields::of(v)?;
    // Lists on the wire, maps by id and by key in memory (core's `as_list`). Inserted
    // one by one: collecting into a map sorts first, a sort instance per type.
    let mut sessions = BTreeMap::new();
    for s in f.req("sessions", |v| list(v, session_view))? {
        sessions.insert(s.id, s);
    }
    let mut grants = BTreeMap::new();
    for g in f.req("grants", |v| list(v, grant_view))? {
        grants.insert(g.key, g);
    }
    Some(DashboardState {
        seq: f.req("seq", number)?,
        now: f.req("now", millis)?,
        limits: f.req("limits", retention)?,
        sessions,
        grants,
        timeline: f.req("timeline", |v| list(v, timeline_entry))?.into(),
        counters: f.req("counters", counters)?,
        messages: f.req("messages", |v| list(v, message_summary))?.into(),
    })
}

fn retention(v: &Value) -> Option<Retention> {
    let f = Fields::of(v)?;
    Some(Retention {
        sessions: f.req("sessions", count)?,
        transcript_lines: f.req("transcript_lines", count)?,
        timeline: f.req("timeline", count)?,
        messages: f.req("messages", count)?,
    })
}

fn session_view(v: &Value) -> Option<SessionView> {
    let f = Fields::of(v)?;
    Some(SessionView {
        id: f.req("id", session_id)?,
        protocol: f.req("protocol", protocol)?,
        peer: f.text("peer")?,
        local: f.text("local")?,
        tls: f.req("tls", flag)?,
        tls_version: f.opt("tls_version", text)?,
        tls_cipher: f.opt("tls_cipher", text)?,
        user: f.opt("user", text)?,
        auth_failures: f.or_default("auth_failures", number32)?,
        opened: f.req("opened", millis)?,
        closed: f.opt("closed", closed)?,
        transcript: f
            .or_default("transcript", |v| list(v, transcript_line))?
            .into(),
        truncated: f.or_default("truncated", number)?,
        relays: f.or_default("relays", |v| list(v, relay_view))?,
        grant_made: f.opt("grant_made", cidr)?,
        messages: f.or_default("messages", texts)?,
        node: f.opt("node", text)?,
    })
}

fn closed(v: &Value) -> Option<Closed> {
    let f = Fields::of(v)?;
    Some(Closed {
        at: f.req("at", millis)?,
        reason: f.req("reason", close_reason)?,
    })
}

fn transcript_line(v: &Value) -> Option<TranscriptLine> {
    let f = Fields::of(v)?;
    Some(TranscriptLine {
        at: f.req("at", millis)?,
        from_client: f.req("from_client", flag)?,
        text: f.text("text")?,
    })
}

fn relay_view(v: &Value) -> Option<RelayView> {
    let f = Fields::of(v)?;
    Some(RelayView {
        at: f.req("at", millis)?,
        rcpt: f.text("rcpt")?,
        decision: f.req("decision", relay_outcome)?,
    })
}

fn timeline_entry(v: &Value) -> Option<TimelineEntry> {
    let f = Fields::of(v)?;
    Some(TimelineEntry {
        at: f.req("at", millis)?,
        seq: f.req("seq", number)?,
        session: f.opt("session", session_id)?,
        kind: f.req("kind", timeline_kind)?,
    })
}

fn timeline_kind(v: &Value) -> Option<TimelineKind> {
    let (tag, content) = variant(v)?;
    // Every timeline kind has fields.
    let f = Fields::of(content)?;
    Some(match tag {
        "login" => TimelineKind::Login {
            user: f.user()?,
            mechanism: f.text("mechanism")?,
            tls: f.req("tls", flag)?,
            protocol: f.opt("protocol", protocol)?,
        },
        "login_failed" => TimelineKind::LoginFailed {
            user: f.opt("user", text)?,
            mechanism: f.text("mechanism")?,
        },
        "grant_created" => TimelineKind::GrantCreated {
            key: f.key()?,
            user: f.user()?,
            expires: f.req("expires", millis)?,
            messages_left: f.opt("messages_left", number32)?,
        },
        "grant_refreshed" => TimelineKind::GrantRefreshed {
            key: f.key()?,
            user: f.user()?,
            expires: f.req("expires", millis)?,
            messages_left: f.opt("messages_left", number32)?,
        },
        "grant_refused" => TimelineKind::GrantRefused {
            key: f.key()?,
            user: f.user()?,
            reason: f.text("reason")?,
        },
        "grant_used" => TimelineKind::GrantUsed {
            key: f.key()?,
            user: f.user()?,
            messages_left: f.opt("messages_left", number32)?,
        },
        "grant_expired" => TimelineKind::GrantExpired { key: f.key()? },
        "grant_revoked" => TimelineKind::GrantRevoked {
            key: f.key()?,
            reason: f.text("reason")?,
        },
        "relay_allowed" => TimelineKind::RelayAllowed {
            rcpt: f.text("rcpt")?,
            via: f.req("via", relay_via)?,
        },
        "relay_denied" => TimelineKind::RelayDenied {
            rcpt: f.text("rcpt")?,
            reason: f.req("reason", refusal)?,
        },
        "message_accepted" => TimelineKind::MessageAccepted {
            id: f.text("id")?,
            from: f.text("from")?,
            rcpts: f.req("rcpts", count)?,
            relayed: f.req("relayed", flag)?,
        },
        "message_bounced" => TimelineKind::MessageBounced {
            id: f.text("id")?,
            rcpts: f.req("rcpts", texts)?,
            reason: f.text("reason")?,
            dsn: f.opt("dsn", text)?,
        },
        _ => return None,
    })
}

fn message_summary(v: &Value) -> Option<MessageSummary> {
    let f = Fields::of(v)?;
    Some(MessageSummary {
        id: f.text("id")?,
        at: f.req("at", millis)?,
        session: f.opt("session", session_id)?,
        from: f.text("from")?,
        rcpts: f.req("rcpts", texts)?,
        size: f.req("size", number)?,
        relayed: f.req("relayed", flag)?,
        delivered_to: f.req("delivered_to", texts)?,
        queued_for: f.req("queued_for", texts)?,
        deferred_for: f.or_default("deferred_for", texts)?,
        bounced_for: f.or_default("bounced_for", texts)?,
    })
}

/// Every counter is `#[serde(default)]` (the whole struct is).
fn counters(v: &Value) -> Option<Counters> {
    let f = Fields::of(v)?;
    let n = |name: &str| f.or_default(name, number);
    Some(Counters {
        sessions_by_protocol: f.or_default("sessions_by_protocol", |v| {
            let mut map = BTreeMap::new();
            for (k, v) in v.as_object()? {
                map.insert(k.clone(), v.as_u64()?);
            }
            Some(map)
        })?,
        sessions_open: n("sessions_open")?,
        auth_ok: n("auth_ok")?,
        auth_failed: n("auth_failed")?,
        logins_delayed: n("logins_delayed")?,
        addresses_blocked: n("addresses_blocked")?,
        grants_created: n("grants_created")?,
        grants_refreshed: n("grants_refreshed")?,
        grants_refused: n("grants_refused")?,
        grants_used: n("grants_used")?,
        grants_expired: n("grants_expired")?,
        grants_revoked: n("grants_revoked")?,
        relay_allowed: n("relay_allowed")?,
        relay_by_grant: n("relay_by_grant")?,
        relay_by_auth: n("relay_by_auth")?,
        relay_trusted: n("relay_trusted")?,
        relay_denied: n("relay_denied")?,
        relay_local: n("relay_local")?,
        relay_unknown_user: n("relay_unknown_user")?,
        messages_accepted: n("messages_accepted")?,
        messages_relayed: n("messages_relayed")?,
        bytes_accepted: n("bytes_accepted")?,
        messages_delivered: n("messages_delivered")?,
        messages_queued: n("messages_queued")?,
        messages_deferred: n("messages_deferred")?,
        messages_bounced: n("messages_bounced")?,
        messages_removed: n("messages_removed")?,
        grant_relays_warned: n("grant_relays_warned")?,
        grant_relays_switched_off: n("grant_relays_switched_off")?,
        migration_notices: n("migration_notices")?,
    })
}

pub mod scenario;

#[cfg(test)]
mod tests;
