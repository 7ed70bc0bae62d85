use super::*;
use crate::testing::test;

/// Feeds events numbered like the server's bus, at one millisecond per event.
struct Feed {
    state: DashboardState,
    seq: u64,
    /// Every event fed, as the broadcast carried them.
    log: Vec<Event>,
}

impl Feed {
    fn new(limits: Retention) -> Feed {
        Feed {
            state: DashboardState::new(limits),
            seq: 0,
            log: Vec::new(),
        }
    }

    fn ev(&mut self, session: Option<u64>, kind: EventKind) -> Event {
        self.seq += 1;
        let mut e = Event::new(Millis(1000 + self.seq), session.map(SessionId), kind);
        e.seq = self.seq;
        self.state.apply(&e);
        self.log.push(e.clone());
        e
    }

    fn open(&mut self, id: u64, protocol: Protocol, peer: &str) {
        self.ev(
            Some(id),
            EventKind::SessionOpened {
                protocol,
                peer: peer.into(),
                local: "127.0.0.1:2110".into(),
                tls: false,
            },
        );
    }

    fn kinds(&self) -> Vec<&TimelineKind> {
        self.state.timeline.iter().map(|t| &t.kind).collect()
    }
}

fn key(s: &str) -> Cidr {
    s.parse().expect("test cidr")
}

fn grant(k: &str, user: &str, session: Option<u64>, messages_left: Option<u32>) -> GrantView {
    GrantView {
        key: key(k),
        user: user.into(),
        users: vec![user.into()],
        session: session.map(SessionId),
        created: Millis(1000),
        expires: Millis(1_801_000),
        messages_left,
        reserved: 0,
        sliding: true,
        note: None,
    }
}

/// C: USER/PASS from 127.0.0.2 -> grant; the session, the grant and the timeline
/// agree on who made it.
fn pop3_login(f: &mut Feed, messages: Option<u32>) {
    f.open(1, Protocol::Pop3, "127.0.0.2:40000");
    f.ev(
        Some(1),
        EventKind::ClientLine {
            line: "USER taro".into(),
        },
    );
    f.ev(
        Some(1),
        EventKind::ClientLine {
            line: "PASS ****".into(),
        },
    );
    f.ev(
        Some(1),
        EventKind::GrantCreated {
            grant: grant("127.0.0.2/32", "taro@example.test", Some(1), messages),
        },
    );
    f.ev(
        Some(1),
        EventKind::AuthSucceeded {
            user: "taro@example.test".into(),
            mechanism: "USER".into(),
        },
    );
    f.ev(
        Some(1),
        EventKind::ServerLine {
            line: "+OK maildrop has 0 messages".into(),
        },
    );
}

#[test]
fn a_login_makes_a_session_a_grant_and_a_linked_timeline() {
    let mut f = Feed::new(Retention::default());
    pop3_login(&mut f, None);
    let s = &f.state;
    assert_eq!(s.seq, 6);
    assert_eq!(s.now, Millis(1006));
    let session = &s.sessions[&SessionId(1)];
    assert_eq!(session.protocol, Protocol::Pop3);
    assert_eq!(session.user.as_deref(), Some("taro@example.test"));
    assert_eq!(session.grant_made, Some(key("127.0.0.2/32")));
    assert_eq!(session.transcript.len(), 3);
    assert!(session.transcript[1].from_client);
    assert_eq!(session.transcript[1].text, "PASS ****");
    assert!(!session.transcript[2].from_client);
    assert_eq!(
        s.grants[&key("127.0.0.2/32")].session,
        Some(SessionId(1)),
        "the grant names the POP3 session"
    );
    assert_eq!(
        f.kinds(),
        vec![
            &TimelineKind::GrantCreated {
                key: key("127.0.0.2/32"),
                user: "taro@example.test".into(),
                expires: Millis(1_801_000),
                messages_left: None,
            },
            &TimelineKind::Login {
                user: "taro@example.test".into(),
                mechanism: "USER".into(),
                tls: false,
                protocol: Some(Protocol::Pop3),
            },
        ]
    );
    assert_eq!(s.timeline[0].session, Some(SessionId(1)));
    assert_eq!(s.counters.auth_ok, 1);
    assert_eq!(s.counters.grants_created, 1);
    assert_eq!(s.counters.sessions_by_protocol.get("pop3"), Some(&1));
    assert_eq!(s.counters.sessions_open, 1);
}

#[test]
fn a_relay_on_a_grant_names_the_granting_session() {
    let mut f = Feed::new(Retention::default());
    pop3_login(&mut f, Some(2));
    f.ev(
        Some(1),
        EventKind::SessionClosed {
            reason: CloseReason::Quit,
        },
    );
    f.open(2, Protocol::Smtp, "127.0.0.2:40001");
    let k = key("127.0.0.2/32");
    f.ev(
        Some(2),
        EventKind::GrantReserved {
            key: k,
            user: "taro@example.test".into(),
        },
    );
    assert_eq!(f.state.grants[&k].reserved, 1);
    f.ev(
        Some(2),
        EventKind::RelayDecision {
            rcpt: "friend@remote.test".into(),
            decision: RelayOutcome::Grant {
                key: k,
                user: "taro@example.test".into(),
                granting_session: SessionId(1),
            },
        },
    );
    f.ev(
        Some(2),
        EventKind::MessageQueued {
            id: "Q1".into(),
            rcpts: vec!["friend@remote.test".into()],
        },
    );
    f.ev(
        Some(2),
        EventKind::MessageAccepted {
            id: "Q1".into(),
            from: "taro@example.test".into(),
            rcpts: vec!["friend@remote.test".into()],
            size: 120,
            relayed: true,
        },
    );
    f.ev(
        Some(2),
        EventKind::GrantUsed {
            key: k,
            user: "taro@example.test".into(),
            messages_left: Some(1),
        },
    );
    let s = &f.state;
    let allowed = s
        .timeline
        .iter()
        .find(|t| matches!(t.kind, TimelineKind::RelayAllowed { .. }))
        .expect("a RelayAllowed entry");
    assert_eq!(allowed.session, Some(SessionId(2)));
    assert_eq!(
        allowed.kind,
        TimelineKind::RelayAllowed {
            rcpt: "friend@remote.test".into(),
            via: RelayVia::Grant {
                key: k,
                user: "taro@example.test".into(),
                granting_session: SessionId(1),
            },
        }
    );
    assert_eq!(s.grants[&k].messages_left, Some(1));
    assert_eq!(s.grants[&k].reserved, 0, "the commit spent the reservation");
    assert_eq!(s.sessions[&SessionId(2)].relays.len(), 1);
    assert_eq!(s.sessions[&SessionId(2)].messages, vec!["Q1".to_string()]);
    assert_eq!(
        s.sessions[&SessionId(1)].closed.as_ref().map(|c| c.at),
        Some(Millis(1007))
    );
    // The queue event came before the 250: one summary, completed by the accept.
    assert_eq!(s.messages.len(), 1);
    let m = &s.messages[0];
    assert_eq!(m.id, "Q1");
    assert_eq!(m.from, "taro@example.test");
    assert_eq!(m.queued_for, vec!["friend@remote.test".to_string()]);
    assert!(m.relayed);
    assert_eq!(
        (
            s.counters.relay_allowed,
            s.counters.relay_by_grant,
            s.counters.grants_used
        ),
        (1, 1, 1)
    );
    assert_eq!(s.counters.messages_accepted, 1);
    assert_eq!(s.counters.messages_queued, 1);
    assert_eq!(s.counters.sessions_open, 1);
}

#[test]
fn denials_expiry_and_revocation() {
    let mut f = Feed::new(Retention::default());
    pop3_login(&mut f, None);
    let k = key("127.0.0.2/32");
    f.ev(None, EventKind::GrantExpired { key: k });
    assert!(f.state.grants.is_empty());
    f.open(2, Protocol::Smtp, "127.0.0.2:40001");
    f.ev(
        Some(2),
        EventKind::RelayDecision {
            rcpt: "x@remote.test".into(),
            decision: RelayOutcome::Denied {
                reason: RelayRefusal::Expired,
            },
        },
    );
    f.ev(
        Some(2),
        EventKind::RelayDecision {
            rcpt: "taro@example.test".into(),
            decision: RelayOutcome::Local,
        },
    );
    f.ev(
        None,
        EventKind::GrantCreated {
            grant: grant("10.0.0.0/8", "operator", None, None),
        },
    );
    f.ev(
        None,
        EventKind::GrantRevoked {
            key: key("10.0.0.0/8"),
            reason: "revoked".into(),
        },
    );
    let kinds = f.kinds();
    assert!(kinds.contains(&&TimelineKind::GrantExpired { key: k }));
    assert!(kinds.contains(&&TimelineKind::RelayDenied {
        rcpt: "x@remote.test".into(),
        reason: RelayRefusal::Expired,
    }));
    assert!(kinds.contains(&&TimelineKind::GrantRevoked {
        key: key("10.0.0.0/8"),
        reason: "revoked".into(),
    }));
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, TimelineKind::RelayAllowed { .. })),
        "a local recipient is not a relay"
    );
    let c = &f.state.counters;
    assert_eq!((c.relay_denied, c.relay_local), (1, 1));
    assert_eq!((c.grants_expired, c.grants_revoked), (1, 1));
    assert!(f.state.grants.is_empty());
}

#[test]
fn outbound_delivery_updates_the_retained_message() {
    let mut f = Feed::new(Retention::default());
    f.open(1, Protocol::Smtp, "127.0.0.2:40001");
    f.ev(
        Some(1),
        EventKind::MessageQueued {
            id: "Q1".into(),
            rcpts: vec!["a@remote.test".into(), "b@remote.test".into()],
        },
    );
    f.ev(
        Some(1),
        EventKind::MessageAccepted {
            id: "Q1".into(),
            from: "taro@example.test".into(),
            rcpts: vec!["a@remote.test".into(), "b@remote.test".into()],
            size: 10,
            relayed: true,
        },
    );
    f.ev(
        None,
        EventKind::MessageDeferred {
            id: "Q1".into(),
            rcpts: vec!["a@remote.test".into(), "b@remote.test".into()],
            reason: "451 try later".into(),
            next_attempt: Millis(9000),
        },
    );
    f.ev(
        None,
        EventKind::MessageDelivered {
            id: "Q1".into(),
            mailbox: "a@remote.test".into(),
        },
    );
    f.ev(
        None,
        EventKind::MessageBounced {
            id: "Q1".into(),
            rcpts: vec!["b@remote.test".into()],
            reason: "550 no such user".into(),
            dsn: Some("taro@example.test".into()),
        },
    );
    // A late event for a message no longer retained adds nothing but counts.
    f.ev(
        None,
        EventKind::MessageDelivered {
            id: "OLD".into(),
            mailbox: "c@remote.test".into(),
        },
    );
    let s = &f.state;
    assert_eq!(s.messages.len(), 1);
    let m = &s.messages[0];
    assert_eq!(m.delivered_to, vec!["a@remote.test".to_string()]);
    assert!(m.deferred_for.is_empty(), "{m:?}");
    assert_eq!(m.bounced_for, vec!["b@remote.test".to_string()]);
    let c = &s.counters;
    assert_eq!(
        (
            c.messages_deferred,
            c.messages_bounced,
            c.messages_delivered
        ),
        (1, 1, 2)
    );
    assert!(matches!(
        s.timeline.back().map(|t| &t.kind),
        Some(TimelineKind::MessageBounced { .. })
    ));
}

#[test]
fn events_for_unknown_sessions_and_grants_do_not_panic() {
    let mut f = Feed::new(Retention::default());
    let k = key("192.0.2.1/32");
    let kinds = vec![
        EventKind::ClientLine {
            line: "NOOP".into(),
        },
        EventKind::ServerLine { line: "+OK".into() },
        EventKind::SessionClosed {
            reason: CloseReason::PeerClosed,
        },
        EventKind::TlsStarted {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        },
        EventKind::AuthSucceeded {
            user: "taro@example.test".into(),
            mechanism: "PLAIN".into(),
        },
        EventKind::GrantReserved {
            key: k,
            user: "u".into(),
        },
        EventKind::GrantReleased { key: k },
        EventKind::GrantUsed {
            key: k,
            user: "u".into(),
            messages_left: None,
        },
        EventKind::GrantExpired { key: k },
        EventKind::MessageDelivered {
            id: "M1".into(),
            mailbox: "taro@example.test".into(),
        },
        EventKind::RelayDecision {
            rcpt: "a@b.test".into(),
            decision: RelayOutcome::Auth { user: "u".into() },
        },
    ];
    for kind in kinds {
        f.ev(Some(77), kind.clone());
        f.ev(None, kind);
    }
    assert!(f.state.sessions.is_empty());
    assert_eq!(f.state.counters.sessions_open, 0, "never below zero");
    assert_eq!(f.state.seq, 22);
}

#[test]
fn every_bound_holds() {
    let limits = Retention {
        sessions: 3,
        transcript_lines: 4,
        timeline: 5,
        messages: 2,
    };
    let mut f = Feed::new(limits);
    for id in 1..=10u64 {
        f.open(id, Protocol::Smtp, "192.0.2.9:1");
        for n in 0..7 {
            f.ev(
                Some(id),
                EventKind::ClientLine {
                    line: format!("NOOP {n}"),
                },
            );
        }
        f.ev(
            Some(id),
            EventKind::MessageAccepted {
                id: format!("M{id}"),
                from: "a@b.test".into(),
                rcpts: vec!["c@d.test".into()],
                size: 10,
                relayed: false,
            },
        );
        // Even sessions stay open, odd ones close.
        if id % 2 == 1 {
            f.ev(
                Some(id),
                EventKind::SessionClosed {
                    reason: CloseReason::Quit,
                },
            );
        }
    }
    let s = &f.state;
    assert_eq!(s.sessions.len(), 3);
    // Closed sessions go first: when 10 opened, closed 9 made room, so the open
    // sessions 6 and 8 are kept (open 2 and 4 went when no closed one was left).
    let ids: Vec<u64> = s.sessions.keys().map(|k| k.0).collect();
    assert_eq!(ids, vec![6, 8, 10]);
    let last = &s.sessions[&SessionId(10)];
    assert_eq!(last.transcript.len(), 4);
    assert_eq!(last.truncated, 3);
    assert_eq!(
        last.transcript[0].text, "NOOP 3",
        "the earliest lines go first"
    );
    assert_eq!(s.timeline.len(), 5);
    assert_eq!(s.messages.len(), 2);
    assert_eq!(s.messages[1].id, "M10");
    assert_eq!(
        s.counters.messages_accepted, 10,
        "counters are never trimmed"
    );
    assert_eq!(s.counters.sessions_by_protocol.get("smtp"), Some(&10));
    assert_eq!(s.counters.sessions_open, 5);
}

#[test]
fn the_oldest_closed_session_goes_before_any_open_one() {
    let mut f = Feed::new(Retention {
        sessions: 2,
        ..Retention::default()
    });
    f.open(1, Protocol::Pop3, "192.0.2.1:1");
    f.open(2, Protocol::Pop3, "192.0.2.1:2");
    f.ev(
        Some(2),
        EventKind::SessionClosed {
            reason: CloseReason::Quit,
        },
    );
    f.open(3, Protocol::Pop3, "192.0.2.1:3");
    let ids: Vec<u64> = f.state.sessions.keys().map(|k| k.0).collect();
    assert_eq!(ids, vec![1, 3]);
}

#[test]
fn observe_never_moves_time_back() {
    let mut s = DashboardState::default();
    s.observe(Millis(50));
    s.observe(Millis(20));
    assert_eq!(s.now, Millis(50));
}

#[test]
fn stream_messages_round_trip_through_json() {
    let mut f = Feed::new(Retention::default());
    pop3_login(&mut f, Some(3));
    f.ev(
        Some(1),
        EventKind::RelayDecision {
            rcpt: "x@remote.test".into(),
            decision: RelayOutcome::Denied {
                reason: RelayRefusal::NoGrant,
            },
        },
    );
    let snapshot = StreamMessage::Snapshot(f.state.clone());
    let json = serde_json::to_string(&snapshot).expect("serialise");
    assert!(json.starts_with(r#"{"snapshot":{"seq":7,"#), "{json}");
    assert!(
        json.contains(r#""sessions":[{"id":1,"protocol":"pop3""#),
        "{json}"
    );
    assert!(
        json.contains(r#""grants":[{"key":"127.0.0.2/32""#),
        "{json}"
    );
    let back: StreamMessage = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, snapshot);

    let e = f.ev(
        Some(1),
        EventKind::ServerLine {
            line: "+OK bye".into(),
        },
    );
    let frame = StreamMessage::Event(e);
    let json = serde_json::to_string(&frame).expect("serialise");
    assert_eq!(
        json,
        r#"{"event":{"seq":8,"at":1008,"session":1,"kind":{"server_line":{"line":"+OK bye"}}}}"#
    );
    let back: StreamMessage = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, frame);
}

#[test]
fn a_client_applying_events_to_a_snapshot_agrees_with_the_server() {
    // The server applies every event; a client subscribes, takes a snapshot midway,
    // then reads every event from the broadcast and skips those the snapshot holds.
    let mut server = Feed::new(Retention::default());
    pop3_login(&mut server, None);
    let mut client = server.state.clone();
    server.open(2, Protocol::Smtp, "127.0.0.2:40001");
    server.ev(
        Some(2),
        EventKind::RelayDecision {
            rcpt: "friend@remote.test".into(),
            decision: RelayOutcome::Grant {
                key: key("127.0.0.2/32"),
                user: "taro@example.test".into(),
                granting_session: SessionId(1),
            },
        },
    );
    for e in &server.log {
        if e.seq > client.seq {
            client.apply(e);
        }
    }
    assert_eq!(client, server.state);
}
