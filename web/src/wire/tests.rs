//! The decoder against core's serialiser: every wire type is built here with exhaustive
//! literals and matches, so a field or variant added in core fails to compile until it
//! is decoded (and sampled) too.

use super::*;
use std::collections::BTreeMap;

fn key() -> Cidr {
    "192.0.2.0/24".parse().expect("test key")
}

fn grant(messages_left: Option<u32>, note: Option<&str>) -> GrantView {
    GrantView {
        key: key(),
        user: "taro@example.test".into(),
        users: vec!["hanako@example.test".into(), "taro@example.test".into()],
        session: Some(SessionId(4)),
        created: Millis(1_000),
        expires: Millis(1_801_000),
        messages_left,
        reserved: 1,
        sliding: true,
        note: note.map(str::to_owned),
    }
}

/// One of each relay outcome.
fn outcomes() -> Vec<RelayOutcome> {
    let all = vec![
        RelayOutcome::Local,
        RelayOutcome::Trusted,
        RelayOutcome::Grant {
            key: key(),
            user: "taro@example.test".into(),
            granting_session: SessionId(4),
        },
        RelayOutcome::Auth {
            user: "taro@example.test".into(),
        },
        RelayOutcome::Denied {
            reason: RelayRefusal::UsedUp,
        },
        RelayOutcome::UnknownUser,
    ];
    for outcome in &all {
        match outcome {
            RelayOutcome::Local
            | RelayOutcome::Trusted
            | RelayOutcome::Grant { .. }
            | RelayOutcome::Auth { .. }
            | RelayOutcome::Denied { .. }
            | RelayOutcome::UnknownUser => {}
        }
    }
    all
}

fn refusals() -> Vec<RelayRefusal> {
    let all = vec![
        RelayRefusal::NoGrant,
        RelayRefusal::Expired,
        RelayRefusal::UsedUp,
        RelayRefusal::AuthRequired,
        RelayRefusal::GrantSwitchedOff,
    ];
    for refusal in &all {
        match refusal {
            RelayRefusal::NoGrant
            | RelayRefusal::Expired
            | RelayRefusal::UsedUp
            | RelayRefusal::AuthRequired
            | RelayRefusal::GrantSwitchedOff => {}
        }
    }
    all
}

fn protocols() -> Vec<Protocol> {
    let all = vec![
        Protocol::Smtp,
        Protocol::Submission,
        Protocol::Smtps,
        Protocol::Pop3,
        Protocol::Pop3s,
        Protocol::Policy,
        Protocol::Dovecot,
    ];
    for protocol in &all {
        match protocol {
            Protocol::Smtp
            | Protocol::Submission
            | Protocol::Smtps
            | Protocol::Pop3
            | Protocol::Pop3s
            | Protocol::Policy
            | Protocol::Dovecot => {}
        }
    }
    all
}

fn close_reasons() -> Vec<CloseReason> {
    let all = vec![
        CloseReason::Quit,
        CloseReason::PeerClosed,
        CloseReason::Timeout,
        CloseReason::ShuttingDown,
        CloseReason::Error,
    ];
    for reason in &all {
        match reason {
            CloseReason::Quit
            | CloseReason::PeerClosed
            | CloseReason::Timeout
            | CloseReason::ShuttingDown
            | CloseReason::Error => {}
        }
    }
    all
}

/// One of each event kind (several for those with optional fields or nested enums).
fn event_kinds() -> Vec<EventKind> {
    let user = || "taro@example.test".to_owned();
    let rcpts = || vec!["a@example.net".to_owned(), "b@example.net".to_owned()];
    let mut all = vec![
        EventKind::SessionClosed {
            reason: CloseReason::Quit,
        },
        EventKind::ClientLine {
            line: "PASS ****".into(),
        },
        EventKind::ServerLine {
            line: "+OK \"quoted\" \\ 日本語 \u{1}".into(),
        },
        EventKind::TlsStarted {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
        },
        EventKind::AuthSucceeded {
            user: user(),
            mechanism: "PLAIN".into(),
        },
        EventKind::AuthFailed {
            user: Some(user()),
            mechanism: "USER".into(),
        },
        EventKind::AuthFailed {
            user: None,
            mechanism: "APOP".into(),
        },
        EventKind::LoginDelayed {
            delay_ms: 2_000,
            failures: 3,
        },
        EventKind::AddressBlocked {
            address: "198.51.100.7".into(),
            failures: 20,
        },
        EventKind::MailFrom {
            from: "<taro@example.test>".into(),
        },
        EventKind::GrantCreated {
            grant: grant(None, None),
        },
        EventKind::GrantRefreshed {
            grant: grant(Some(2), Some("lab")),
        },
        EventKind::GrantRefused {
            key: key(),
            user: user(),
            reason: "tls required".into(),
        },
        EventKind::GrantReserved {
            key: key(),
            user: user(),
        },
        EventKind::GrantReleased { key: key() },
        EventKind::GrantUsed {
            key: key(),
            user: user(),
            messages_left: Some(0),
        },
        EventKind::GrantUsed {
            key: key(),
            user: user(),
            messages_left: None,
        },
        EventKind::GrantExpired {
            key: "2001:db8::/32".parse().expect("v6 key"),
        },
        EventKind::GrantRevoked {
            key: key(),
            reason: "operator".into(),
        },
        EventKind::MessageAccepted {
            id: "m1".into(),
            from: "taro@example.test".into(),
            rcpts: rcpts(),
            size: u64::MAX,
            relayed: true,
        },
        EventKind::MessageDelivered {
            id: "m1".into(),
            mailbox: "hanako".into(),
        },
        EventKind::MessageQueued {
            id: "m1".into(),
            rcpts: Vec::new(),
        },
        EventKind::MessageDeferred {
            id: "m1".into(),
            rcpts: rcpts(),
            reason: "451 try later".into(),
            next_attempt: Millis(90_000),
        },
        EventKind::MessageBounced {
            id: "m1".into(),
            rcpts: rcpts(),
            reason: "550 no such user".into(),
            dsn: Some("m2".into()),
        },
        EventKind::MessageBounced {
            id: "m1".into(),
            rcpts: rcpts(),
            reason: "550 no such user".into(),
            dsn: None,
        },
        EventKind::MaildropOpened {
            user: user(),
            messages: 3,
            octets: 4_096,
        },
        EventKind::MessagesRemoved {
            user: user(),
            count: 2,
        },
        EventKind::GrantRelayWarned {
            key: key(),
            user: user(),
        },
        EventKind::GrantRelayRefused {
            key: key(),
            user: user(),
        },
        EventKind::MigrationNoticeSent { user: user() },
    ];
    all.extend(
        protocols()
            .into_iter()
            .map(|protocol| EventKind::SessionOpened {
                protocol,
                peer: "127.0.0.2:40000".into(),
                local: "127.0.0.1:2110".into(),
                tls: protocol == Protocol::Smtps,
            }),
    );
    all.extend(
        close_reasons()
            .into_iter()
            .map(|reason| EventKind::SessionClosed { reason }),
    );
    all.extend(
        outcomes()
            .into_iter()
            .chain(
                refusals()
                    .into_iter()
                    .map(|reason| RelayOutcome::Denied { reason }),
            )
            .map(|decision| EventKind::RelayDecision {
                rcpt: "x@example.net".into(),
                decision,
            }),
    );
    for kind in &all {
        match kind {
            EventKind::SessionOpened { .. }
            | EventKind::SessionClosed { .. }
            | EventKind::ClientLine { .. }
            | EventKind::ServerLine { .. }
            | EventKind::TlsStarted { .. }
            | EventKind::AuthSucceeded { .. }
            | EventKind::AuthFailed { .. }
            | EventKind::LoginDelayed { .. }
            | EventKind::AddressBlocked { .. }
            | EventKind::MailFrom { .. }
            | EventKind::GrantCreated { .. }
            | EventKind::GrantRefreshed { .. }
            | EventKind::GrantRefused { .. }
            | EventKind::GrantReserved { .. }
            | EventKind::GrantReleased { .. }
            | EventKind::GrantUsed { .. }
            | EventKind::GrantExpired { .. }
            | EventKind::GrantRevoked { .. }
            | EventKind::RelayDecision { .. }
            | EventKind::MessageAccepted { .. }
            | EventKind::MessageDelivered { .. }
            | EventKind::MessageQueued { .. }
            | EventKind::MessageDeferred { .. }
            | EventKind::MessageBounced { .. }
            | EventKind::MaildropOpened { .. }
            | EventKind::MessagesRemoved { .. }
            | EventKind::GrantRelayWarned { .. }
            | EventKind::GrantRelayRefused { .. }
            | EventKind::MigrationNoticeSent { .. } => {}
        }
    }
    all
}

fn timeline_kinds() -> Vec<TimelineKind> {
    let user = || "taro@example.test".to_owned();
    let mut all = vec![
        TimelineKind::Login {
            user: user(),
            mechanism: "USER".into(),
            tls: true,
            protocol: None,
        },
        TimelineKind::LoginFailed {
            user: Some(user()),
            mechanism: "PLAIN".into(),
        },
        TimelineKind::LoginFailed {
            user: None,
            mechanism: "PLAIN".into(),
        },
        TimelineKind::GrantCreated {
            key: key(),
            user: user(),
            expires: Millis(9),
            messages_left: Some(3),
        },
        TimelineKind::GrantRefreshed {
            key: key(),
            user: user(),
            expires: Millis(10),
            messages_left: None,
        },
        TimelineKind::GrantRefused {
            key: key(),
            user: user(),
            reason: "deny range".into(),
        },
        TimelineKind::GrantUsed {
            key: key(),
            user: user(),
            messages_left: Some(1),
        },
        TimelineKind::GrantExpired { key: key() },
        TimelineKind::GrantRevoked {
            key: key(),
            reason: "flush".into(),
        },
        TimelineKind::RelayAllowed {
            rcpt: "x@example.net".into(),
            via: RelayVia::Grant {
                key: key(),
                user: user(),
                granting_session: SessionId(4),
            },
        },
        TimelineKind::RelayAllowed {
            rcpt: "x@example.net".into(),
            via: RelayVia::Auth { user: user() },
        },
        TimelineKind::RelayAllowed {
            rcpt: "x@example.net".into(),
            via: RelayVia::Trusted,
        },
        TimelineKind::MessageAccepted {
            id: "m1".into(),
            from: String::new(),
            rcpts: 2,
            relayed: false,
        },
        TimelineKind::MessageBounced {
            id: "m1".into(),
            rcpts: vec!["x@example.net".into()],
            reason: "550".into(),
            dsn: None,
        },
    ];
    all.extend(protocols().into_iter().map(|protocol| TimelineKind::Login {
        user: user(),
        mechanism: "USER".into(),
        tls: false,
        protocol: Some(protocol),
    }));
    all.extend(
        refusals()
            .into_iter()
            .map(|reason| TimelineKind::RelayDenied {
                rcpt: "x@example.net".into(),
                reason,
            }),
    );
    for kind in &all {
        match kind {
            TimelineKind::Login { .. }
            | TimelineKind::LoginFailed { .. }
            | TimelineKind::GrantCreated { .. }
            | TimelineKind::GrantRefreshed { .. }
            | TimelineKind::GrantRefused { .. }
            | TimelineKind::GrantUsed { .. }
            | TimelineKind::GrantExpired { .. }
            | TimelineKind::GrantRevoked { .. }
            | TimelineKind::RelayAllowed { .. }
            | TimelineKind::RelayDenied { .. }
            | TimelineKind::MessageAccepted { .. }
            | TimelineKind::MessageBounced { .. } => {}
        }
        if let TimelineKind::RelayAllowed { via, .. } = kind {
            match via {
                RelayVia::Grant { .. } | RelayVia::Auth { .. } | RelayVia::Trusted => {}
            }
        }
    }
    all
}

/// A session with every field set (`full`) or only the required ones.
fn session(id: u64, full: bool) -> SessionView {
    SessionView {
        id: SessionId(id),
        protocol: Protocol::Submission,
        peer: "127.0.0.2:40001".into(),
        local: "127.0.0.1:2587".into(),
        tls: full,
        tls_version: full.then(|| "TLSv1.3".into()),
        tls_cipher: full.then(|| "TLS13_AES_128_GCM_SHA256".into()),
        user: full.then(|| "taro@example.test".into()),
        auth_failures: u32::from(full) * 2,
        opened: Millis(100),
        closed: full.then_some(Closed {
            at: Millis(200),
            reason: CloseReason::Timeout,
        }),
        transcript: if full {
            vec![
                TranscriptLine {
                    at: Millis(101),
                    from_client: true,
                    text: "EHLO laptop".into(),
                },
                TranscriptLine {
                    at: Millis(102),
                    from_client: false,
                    text: "250-mail.example.test".into(),
                },
            ]
            .into()
        } else {
            Default::default()
        },
        truncated: u64::from(full) * 7,
        relays: if full {
            outcomes()
                .into_iter()
                .map(|decision| RelayView {
                    at: Millis(150),
                    rcpt: "x@example.net".into(),
                    decision,
                })
                .collect()
        } else {
            Vec::new()
        },
        grant_made: full.then(key),
        messages: if full { vec!["m1".into()] } else { Vec::new() },
        node: full.then(|| "node-a".into()),
    }
}

fn message(full: bool) -> MessageSummary {
    let some = |s: &str| if full { vec![s.to_owned()] } else { Vec::new() };
    MessageSummary {
        id: "m1".into(),
        at: Millis(150),
        session: full.then_some(SessionId(5)),
        from: "taro@example.test".into(),
        rcpts: vec!["x@example.net".into()],
        size: 1_234,
        relayed: full,
        delivered_to: some("hanako"),
        queued_for: some("x@example.net"),
        deferred_for: some("y@example.net"),
        bounced_for: some("z@example.net"),
    }
}

/// Every counter a different value, so a field read under another's name shows.
fn counters_sample() -> Counters {
    Counters {
        sessions_by_protocol: BTreeMap::from([("pop3".into(), 40), ("smtp".into(), 41)]),
        sessions_open: 1,
        auth_ok: 2,
        auth_failed: 3,
        logins_delayed: 4,
        addresses_blocked: 5,
        grants_created: 6,
        grants_refreshed: 7,
        grants_refused: 8,
        grants_used: 9,
        grants_expired: 10,
        grants_revoked: 11,
        relay_allowed: 12,
        relay_by_grant: 13,
        relay_by_auth: 14,
        relay_trusted: 15,
        relay_denied: 16,
        relay_local: 17,
        relay_unknown_user: 18,
        messages_accepted: 19,
        messages_relayed: 20,
        bytes_accepted: 21,
        messages_delivered: 22,
        messages_queued: 23,
        messages_deferred: 24,
        messages_bounced: 25,
        messages_removed: 26,
        grant_relays_warned: 27,
        grant_relays_switched_off: 28,
        migration_notices: 29,
    }
}

fn snapshot_sample() -> DashboardState {
    let mut grants = BTreeMap::new();
    grants.insert(key(), grant(Some(1), Some("lab")));
    let other = grant(None, None);
    let other = GrantView {
        key: "203.0.113.9".parse().expect("host key"),
        session: None,
        ..other
    };
    grants.insert(other.key, other);
    DashboardState {
        seq: 42,
        now: Millis(123_456),
        limits: Retention {
            sessions: 1,
            transcript_lines: 2,
            timeline: 3,
            messages: 4,
        },
        sessions: [session(5, true), session(6, false)]
            .into_iter()
            .map(|s| (s.id, s))
            .collect(),
        grants,
        timeline: timeline_kinds()
            .into_iter()
            .enumerate()
            .map(|(i, kind)| TimelineEntry {
                at: Millis(1_000 + i as u64),
                seq: i as u64,
                session: (i % 2 == 0).then_some(SessionId(5)),
                kind,
            })
            .collect(),
        counters: counters_sample(),
        messages: vec![message(true), message(false)].into(),
    }
}

fn round_trip(frame: StreamMessage) {
    let text = serde_json::to_string(&frame).expect("serialise");
    assert_eq!(decode_frame(&text), Some(frame), "{text}");
}

#[test]
fn every_event_kind_decodes_as_core_serialised_it() {
    for (i, kind) in event_kinds().into_iter().enumerate() {
        round_trip(StreamMessage::Event(Event {
            seq: i as u64 + 1,
            at: Millis(5_000 + i as u64),
            session: (i % 2 == 1).then_some(SessionId(i as u64)),
            kind,
            node: (i % 3 == 0).then(|| "node-b".into()),
        }));
    }
}

#[test]
fn a_snapshot_decodes_as_core_serialised_it() {
    round_trip(StreamMessage::Snapshot(snapshot_sample()));
    round_trip(StreamMessage::Snapshot(DashboardState::default()));
}

/// Text written by hand, read by serde's derived decoder and by ours: they agree on
/// what may be absent, `null`, or unknown.
#[test]
fn absent_null_and_unknown_fields_read_as_serde_reads_them() {
    let frames = [
        // Optional fields absent or null, an unknown field, unit variants as strings.
        r#"{"event":{"seq":1,"at":5,"kind":{"auth_failed":{"mechanism":"USER"}},"extra":[1]}}"#,
        r#"{"event":{"seq":1,"at":5,"session":null,"node":null,"kind":{"relay_decision":{"rcpt":"x","decision":"trusted"}}}}"#,
        r#"{"event":{"seq":1,"at":5,"session":2,"kind":{"relay_decision":{"rcpt":"x","decision":{"denied":{"reason":"no_grant"}}}}}}"#,
        // `#[serde(default)]` fields absent: a session without its transcript, as in
        // lists, and empty counters.
        r#"{"snapshot":{"seq":0,"now":0,"limits":{"sessions":1,"transcript_lines":1,"timeline":1,"messages":1},
            "sessions":[{"id":3,"protocol":"pop3","peer":"p","local":"l","tls":false,"opened":1}],
            "grants":[],"timeline":[],"counters":{},"messages":[
              {"id":"m","at":1,"from":"","rcpts":[],"size":0,"relayed":false,"delivered_to":[],"queued_for":[]}]}}"#,
    ];
    for text in frames {
        let serde: StreamMessage = serde_json::from_str(text).expect("serde reads it");
        assert_eq!(decode_frame(text), Some(serde), "{text}");
    }
}

#[test]
fn what_serde_refuses_is_unreadable() {
    let frames = [
        "",
        "not json",
        "[]",
        r#"{"event":{}}"#,
        r#"{"unknown_frame":{}}"#,
        // Two tags where one is expected.
        r#"{"event":{"seq":1,"at":5,"kind":{"client_line":{"line":"a"},"server_line":{"line":"b"}}}}"#,
        // A variant this build does not know.
        r#"{"event":{"seq":1,"at":5,"kind":{"from_the_future":{"x":1}}}}"#,
        // A required field missing, or of the wrong type.
        r#"{"event":{"seq":1,"at":5,"kind":{"client_line":{}}}}"#,
        r#"{"event":{"seq":"1","at":5,"kind":{"client_line":{"line":"a"}}}}"#,
        r#"{"event":{"seq":1,"at":5.5,"kind":{"client_line":{"line":"a"}}}}"#,
        r#"{"event":{"seq":1,"at":-5,"kind":{"client_line":{"line":"a"}}}}"#,
        r#"{"event":{"seq":1,"at":5,"kind":{"login_delayed":{"delay_ms":1,"failures":4294967296}}}}"#,
        r#"{"event":{"seq":1,"at":5,"kind":{"grant_expired":{"key":"not an address"}}}}"#,
        r#"{"event":{"seq":1,"at":5,"kind":{"relay_decision":{"rcpt":"x","decision":{"grant":{}}}}}}"#,
        // A defaulted field present but null.
        r#"{"snapshot":{"seq":0,"now":0,"limits":{"sessions":1,"transcript_lines":1,"timeline":1,"messages":1},
            "sessions":[],"grants":[],"timeline":[],"counters":{"auth_ok":null},"messages":[]}}"#,
    ];
    for text in frames {
        assert!(
            serde_json::from_str::<StreamMessage>(text).is_err(),
            "serde reads {text}"
        );
        assert_eq!(decode_frame(text), None, "{text}");
    }
}
