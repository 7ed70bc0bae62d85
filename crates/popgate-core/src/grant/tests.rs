//! Grant table tests. Each reads as a timeline: `at T: call -> result`, then the events
//! that call must have pushed, in order.

use super::*;
use crate::testing::test;

const T0: Millis = Millis(1_700_000_000_000);
/// The default time-to-live, 30 minutes (the classic default).
const TTL_MS: u64 = 30 * 60 * 1000;
const POP: SessionId = SessionId(1);
const SMTP_A: SessionId = SessionId(10);
const SMTP_B: SessionId = SessionId(11);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn cidr(s: &str) -> Cidr {
    s.parse().expect("test cidr")
}

fn at(ms: u64) -> Millis {
    Millis(T0.0 + ms)
}

fn table(config: GrantConfig) -> GrantTable {
    GrantTable::new(config)
}

fn limited(max: u32) -> GrantConfig {
    GrantConfig {
        max_messages: Some(max),
        ..GrantConfig::default()
    }
}

fn fixed() -> GrantConfig {
    GrantConfig {
        sliding: false,
        ..GrantConfig::default()
    }
}

/// Drain the events, checking the table's indexes agree after the call.
fn events(t: &mut GrantTable) -> Vec<Event> {
    assert_eq!(t.check_invariants(), Ok(()));
    std::iter::from_fn(|| t.poll_event()).collect()
}

fn ev(ms: u64, session: Option<SessionId>, kind: EventKind) -> Event {
    Event::new(at(ms), session, kind)
}

fn created(t: &mut GrantTable, ms: u64, peer: &str, user: &str, session: SessionId) -> GrantView {
    match t.login(at(ms), ip(peer), user, session) {
        LoginGrant::Created(view) => view,
        other => panic!("expected a created grant, got {other:?}"),
    }
}

fn refreshed(t: &mut GrantTable, ms: u64, peer: &str, user: &str, session: SessionId) -> GrantView {
    match t.login(at(ms), ip(peer), user, session) {
        LoginGrant::Refreshed(view) => view,
        other => panic!("expected a refreshed grant, got {other:?}"),
    }
}

fn expired(ms: u64, key: &str) -> Event {
    ev(ms, None, EventKind::GrantExpired { key: cidr(key) })
}

fn revoked(ms: u64, key: &str, reason: &str) -> Event {
    ev(
        ms,
        None,
        EventKind::GrantRevoked {
            key: cidr(key),
            reason: reason.to_owned(),
        },
    )
}

fn reserved(ms: u64, session: SessionId, key: &str, user: &str) -> Event {
    ev(
        ms,
        Some(session),
        EventKind::GrantReserved {
            key: cidr(key),
            user: user.to_owned(),
        },
    )
}

fn used(ms: u64, session: SessionId, key: &str, user: &str, left: Option<u32>) -> Event {
    ev(
        ms,
        Some(session),
        EventKind::GrantUsed {
            key: cidr(key),
            user: user.to_owned(),
            messages_left: left,
        },
    )
}

fn released(ms: u64, session: SessionId, key: &str) -> Event {
    ev(
        ms,
        Some(session),
        EventKind::GrantReleased { key: cidr(key) },
    )
}

#[test]
fn a_grant_is_created_only_by_login() {
    let mut t = table(GrantConfig::default());
    assert_eq!(t.config().ttl, Duration::from_millis(TTL_MS));
    // S(smtp): RCPT to a remote domain before any POP3 login: refused, nothing stored.
    assert_eq!(
        t.reserve(T0, ip("192.0.2.7"), SMTP_A),
        Err(RelayRefusal::NoGrant)
    );
    assert_eq!(t.get(T0, ip("192.0.2.7")), None);
    assert!(t.is_empty());
    assert_eq!(events(&mut t), vec![]);

    // C(pop3): PASS verified -> the grant, before +OK.
    let view = created(&mut t, 0, "192.0.2.7", "alice@example.test", POP);
    assert_eq!(
        view,
        GrantView {
            key: cidr("192.0.2.7/32"),
            user: "alice@example.test".into(),
            users: vec!["alice@example.test".into()],
            session: Some(POP),
            created: T0,
            expires: at(TTL_MS),
            messages_left: None,
            reserved: 0,
            sliding: true,
            note: None,
        }
    );
    assert_eq!(
        events(&mut t),
        vec![ev(
            0,
            Some(POP),
            EventKind::GrantCreated {
                grant: view.clone()
            }
        )]
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t.get(T0, ip("192.0.2.7")), Some(view.clone()));
    assert_eq!(t.list(T0), vec![view]);

    // S(smtp): now the RCPT relays on it.
    assert_eq!(
        t.reserve(at(5), ip("192.0.2.7"), SMTP_A),
        Ok(Reservation {
            key: cidr("192.0.2.7/32"),
            user: "alice@example.test".into(),
            granting_session: Some(POP),
        })
    );
    assert_eq!(
        events(&mut t),
        vec![reserved(5, SMTP_A, "192.0.2.7/32", "alice@example.test")]
    );
    // Another address still has nothing.
    assert_eq!(
        t.reserve(at(5), ip("192.0.2.8"), SMTP_B),
        Err(RelayRefusal::NoGrant)
    );
    assert_eq!(events(&mut t), vec![]);
}

#[test]
fn a_login_from_a_deny_range_creates_nothing() {
    let mut t = table(GrantConfig {
        deny: vec![cidr("198.51.100.0/24"), cidr("2001:db8:ff:1::/96")],
        ..GrantConfig::default()
    });
    assert_eq!(
        t.login(T0, ip("198.51.100.9"), "alice", POP),
        LoginGrant::Denied
    );
    assert_eq!(
        events(&mut t),
        vec![ev(
            0,
            Some(POP),
            EventKind::GrantRefused {
                key: cidr("198.51.100.9/32"),
                user: "alice".into(),
                reason: "address in a deny range".into(),
            }
        )]
    );
    assert!(t.is_empty());
    assert_eq!(
        t.reserve(at(1), ip("198.51.100.9"), SMTP_A),
        Err(RelayRefusal::NoGrant)
    );
    // The mapped form of a denied address is denied too.
    assert_eq!(
        t.login(T0, ip("::ffff:198.51.100.10"), "alice", POP),
        LoginGrant::Denied
    );
    // A /64 grant would cover the denied /96 inside it, so the whole /64 is refused,
    // even from an address outside the /96.
    assert_eq!(
        t.login(T0, ip("2001:db8:ff:1:1::5"), "alice", POP),
        LoginGrant::Denied
    );
    assert!(t.is_empty());
    let refused: Vec<Cidr> = events(&mut t)
        .into_iter()
        .map(|e| match e.kind {
            EventKind::GrantRefused { key, .. } => key,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        refused,
        vec![cidr("198.51.100.10/32"), cidr("2001:db8:ff:1::/64")]
    );
    // Next door is fine.
    created(&mut t, 0, "198.51.101.9", "alice", POP);
}

#[test]
fn keys_are_canonical_and_masked() {
    let t = table(GrantConfig::default());
    assert_eq!(t.key_for(ip("::ffff:192.0.2.7")), cidr("192.0.2.7/32"));
    assert_eq!(
        t.key_for(ip("2001:db8:1:2:aaaa::1")),
        cidr("2001:db8:1:2::/64")
    );
    let t = table(GrantConfig {
        ipv4_prefix: 24,
        ipv6_prefix: 56,
        ..GrantConfig::default()
    });
    assert_eq!(t.key_for(ip("::ffff:192.0.2.7")), cidr("192.0.2.0/24"));
    assert_eq!(
        t.key_for(ip("2001:db8:1:2ff::1")),
        cidr("2001:db8:1:200::/56")
    );
}

#[test]
fn a_mapped_ipv4_login_grants_the_plain_ipv4_address() {
    let mut t = table(GrantConfig::default());
    // POP3 on a dual-stack socket sees ::ffff:192.0.2.7; SMTP on a v4 socket sees 192.0.2.7.
    let view = created(&mut t, 0, "::ffff:192.0.2.7", "alice", POP);
    assert_eq!(view.key, cidr("192.0.2.7/32"));
    assert!(t.reserve(at(1), ip("192.0.2.7"), SMTP_A).is_ok());
    // And the other way round.
    created(&mut t, 0, "192.0.2.8", "bob", POP);
    assert!(t.reserve(at(1), ip("::ffff:192.0.2.8"), SMTP_B).is_ok());
}

#[test]
fn ipv6_addresses_share_a_grant_per_64() {
    let mut t = table(GrantConfig::default());
    let view = created(&mut t, 0, "2001:db8:1:2::1", "alice", POP);
    assert_eq!(view.key, cidr("2001:db8:1:2::/64"));
    // Privacy addresses change within the /64: same grant.
    assert_eq!(
        t.reserve(at(1), ip("2001:db8:1:2:dead:beef:0:9"), SMTP_A)
            .map(|r| r.key),
        Ok(cidr("2001:db8:1:2::/64"))
    );
    assert_eq!(
        t.reserve(at(1), ip("2001:db8:1:3::1"), SMTP_B),
        Err(RelayRefusal::NoGrant)
    );
    // A login from elsewhere in the /64 refreshes the same grant.
    let again = refreshed(&mut t, 2, "2001:db8:1:2::77", "alice", SessionId(2));
    assert_eq!(again.key, view.key);
    assert_eq!(t.len(), 1);
}

#[test]
fn expiry_is_exact_to_the_millisecond() {
    let mut t = table(GrantConfig::default());
    created(&mut t, 0, "192.0.2.7", "alice", POP);
    events(&mut t);
    // ttl - 1 ms: valid.
    let r = t
        .reserve(at(TTL_MS - 1), ip("192.0.2.7"), SMTP_A)
        .expect("valid one millisecond before expiry");
    assert!(t.get(at(TTL_MS - 1), ip("192.0.2.7")).is_some());
    t.release(at(TTL_MS - 1), r.key, SMTP_A);
    assert_eq!(
        events(&mut t),
        vec![
            reserved(TTL_MS - 1, SMTP_A, "192.0.2.7/32", "alice"),
            released(TTL_MS - 1, SMTP_A, "192.0.2.7/32"),
        ]
    );
    // ttl exactly: invalid, though purge never ran.
    assert_eq!(t.get(at(TTL_MS), ip("192.0.2.7")), None);
    assert_eq!(t.list(at(TTL_MS)), vec![]);
    assert_eq!(t.len(), 1);
    assert_eq!(
        t.reserve(at(TTL_MS), ip("192.0.2.7"), SMTP_B),
        Err(RelayRefusal::Expired)
    );
    assert_eq!(events(&mut t), vec![expired(TTL_MS, "192.0.2.7/32")]);
    assert!(t.is_empty());
    // Once gone it is simply not there.
    assert_eq!(
        t.reserve(at(TTL_MS), ip("192.0.2.7"), SMTP_B),
        Err(RelayRefusal::NoGrant)
    );
    assert_eq!(t.purge(at(TTL_MS)), None);
    assert_eq!(events(&mut t), vec![]);
}

#[test]
fn sliding_login_extends_to_now_plus_ttl() {
    let mut t = table(GrantConfig::default());
    let first = created(&mut t, 0, "192.0.2.7", "alice", POP);
    let half = TTL_MS / 2;
    let second = refreshed(&mut t, half, "192.0.2.7", "bob", SessionId(2));
    assert_eq!(
        second,
        GrantView {
            user: "bob".into(),
            users: vec!["alice".into(), "bob".into()],
            session: Some(SessionId(2)),
            expires: at(half + TTL_MS),
            ..first.clone()
        }
    );
    assert_eq!(
        events(&mut t),
        vec![
            ev(0, Some(POP), EventKind::GrantCreated { grant: first }),
            ev(
                half,
                Some(SessionId(2)),
                EventKind::GrantRefreshed {
                    grant: second.clone()
                }
            ),
        ]
    );
    // Valid past the first expiry, up to the new one.
    assert_eq!(t.purge(at(TTL_MS)), Some(at(half + TTL_MS)));
    assert!(t.reserve(at(TTL_MS), ip("192.0.2.7"), SMTP_A).is_ok());
    assert_eq!(
        t.reserve(at(half + TTL_MS), ip("192.0.2.7"), SMTP_B),
        Err(RelayRefusal::Expired)
    );
    // The user history has no repeats, case-insensitively, and keeps the first spelling.
    let mut t = table(GrantConfig::default());
    created(&mut t, 0, "192.0.2.7", "alice", POP);
    refreshed(&mut t, 1, "192.0.2.7", "bob", POP);
    let view = refreshed(&mut t, 2, "192.0.2.7", "ALICE", POP);
    assert_eq!(view.user, "ALICE");
    assert_eq!(view.users, vec!["alice".to_owned(), "bob".to_owned()]);
}

#[test]
fn fixed_login_leaves_expiry_alone() {
    let mut t = table(fixed());
    let first = created(&mut t, 0, "192.0.2.7", "alice", POP);
    assert!(!first.sliding);
    let half = TTL_MS / 2;
    let second = refreshed(&mut t, half, "192.0.2.7", "bob", SessionId(2));
    assert_eq!(second.expires, at(TTL_MS));
    assert_eq!(second.created, T0);
    assert_eq!(second.user, "bob");
    assert_eq!(second.users, vec!["alice".to_owned(), "bob".to_owned()]);
    assert_eq!(
        events(&mut t),
        vec![
            ev(0, Some(POP), EventKind::GrantCreated { grant: first }),
            ev(
                half,
                Some(SessionId(2)),
                EventKind::GrantRefreshed { grant: second }
            ),
        ]
    );
    assert_eq!(
        t.reserve(at(TTL_MS), ip("192.0.2.7"), SMTP_A),
        Err(RelayRefusal::Expired)
    );
    events(&mut t);
    // After expiry a login starts a fresh grant with a fresh history.
    let later = TTL_MS + 5;
    let fresh = created(&mut t, later, "192.0.2.7", "carol", SessionId(3));
    assert_eq!(fresh.created, at(later));
    assert_eq!(fresh.expires, at(later + TTL_MS));
    assert_eq!(fresh.users, vec!["carol".to_owned()]);
}

#[test]
fn a_login_on_an_expired_unpurged_grant_replaces_it() {
    let mut t = table(GrantConfig::default());
    created(&mut t, 0, "192.0.2.7", "alice", POP);
    events(&mut t);
    let view = created(&mut t, TTL_MS, "192.0.2.7", "bob", SessionId(2));
    assert_eq!(view.users, vec!["bob".to_owned()]);
    assert_eq!(
        events(&mut t),
        vec![
            expired(TTL_MS, "192.0.2.7/32"),
            ev(
                TTL_MS,
                Some(SessionId(2)),
                EventKind::GrantCreated { grant: view }
            ),
        ]
    );
    assert_eq!(t.len(), 1);
}

#[test]
fn messages_count_down_to_used_up() {
    let mut t = table(limited(2));
    let view = created(&mut t, 0, "192.0.2.7", "alice", POP);
    assert_eq!(view.messages_left, Some(2));
    events(&mut t);
    for (i, left) in [(1u64, 1u32), (2, 0)] {
        let r = t
            .reserve(at(i), ip("192.0.2.7"), SMTP_A)
            .expect("a message left");
        assert_eq!(t.get(at(i), ip("192.0.2.7")).map(|g| g.reserved), Some(1));
        t.commit(at(i), r.key, SMTP_A);
        assert_eq!(
            events(&mut t),
            vec![
                reserved(i, SMTP_A, "192.0.2.7/32", "alice"),
                used(i, SMTP_A, "192.0.2.7/32", "alice", Some(left)),
            ]
        );
    }
    assert_eq!(
        t.reserve(at(3), ip("192.0.2.7"), SMTP_A),
        Err(RelayRefusal::UsedUp)
    );
    assert_eq!(events(&mut t), vec![]);
    // A spent grant stays listed (0 left) until it expires, so the refusal says why.
    let spent = t.get(at(3), ip("192.0.2.7")).expect("still listed");
    assert_eq!((spent.messages_left, spent.reserved), (Some(0), 0));

    // Sliding: a new login gives the count back.
    let back = refreshed(&mut t, 4, "192.0.2.7", "alice", POP);
    assert_eq!(back.messages_left, Some(2));
    assert!(t.reserve(at(5), ip("192.0.2.7"), SMTP_A).is_ok());

    // Fixed: a login on a spent grant starts a fresh one.
    let mut t = table(GrantConfig {
        sliding: false,
        ..limited(1)
    });
    created(&mut t, 0, "192.0.2.7", "alice", POP);
    let r = t
        .reserve(at(1), ip("192.0.2.7"), SMTP_A)
        .expect("one message");
    t.commit(at(1), r.key, SMTP_A);
    let fresh = created(&mut t, 2, "192.0.2.7", "alice", SessionId(2));
    assert_eq!(
        (fresh.created, fresh.expires, fresh.messages_left),
        (at(2), at(2 + TTL_MS), Some(1))
    );
}

#[test]
fn a_fixed_login_leaves_the_count_alone() {
    let mut t = table(GrantConfig {
        sliding: false,
        ..limited(2)
    });
    created(&mut t, 0, "192.0.2.7", "alice", POP);
    let r = t
        .reserve(at(1), ip("192.0.2.7"), SMTP_A)
        .expect("a message");
    t.commit(at(1), r.key, SMTP_A);
    let view = refreshed(&mut t, 2, "192.0.2.7", "alice", SessionId(2));
    assert_eq!((view.messages_left, view.expires), (Some(1), at(TTL_MS)));
}

#[test]
fn two_transactions_cannot_both_spend_the_last_message() {
    let mut t = table(limited(1));
    created(&mut t, 0, "192.0.2.7", "alice", POP);
    events(&mut t);
    let a = t.reserve(at(1), ip("192.0.2.7"), SMTP_A).expect("first");
    // Second transaction, same address (NAT), while the first is in flight.
    assert_eq!(
        t.reserve(at(2), ip("192.0.2.7"), SMTP_B),
        Err(RelayRefusal::UsedUp)
    );
    // The first is refused at end of data: the message is available again.
    t.release(at(3), a.key, SMTP_A);
    let b = t.reserve(at(4), ip("192.0.2.7"), SMTP_B).expect("released");
    t.commit(at(5), b.key, SMTP_B);
    assert_eq!(
        events(&mut t),
        vec![
            reserved(1, SMTP_A, "192.0.2.7/32", "alice"),
            released(3, SMTP_A, "192.0.2.7/32"),
            reserved(4, SMTP_B, "192.0.2.7/32", "alice"),
            used(5, SMTP_B, "192.0.2.7/32", "alice", Some(0)),
        ]
    );
    assert_eq!(
        t.reserve(at(6), ip("192.0.2.7"), SMTP_A),
        Err(RelayRefusal::UsedUp)
    );
}

#[test]
fn reservations_are_per_session_and_never_underflow() {
    let mut t = table(limited(2));
    created(&mut t, 0, "192.0.2.7", "alice", POP);
    events(&mut t);
    let key = cidr("192.0.2.7/32");
    // A second relayed RCPT of the same transaction keeps the one reservation.
    let r1 = t.reserve(at(1), ip("192.0.2.7"), SMTP_A).expect("first");
    let r2 = t.reserve(at(2), ip("192.0.2.7"), SMTP_A).expect("same");
    assert_eq!(r1, r2);
    assert_eq!(t.get(at(2), ip("192.0.2.7")).map(|g| g.reserved), Some(1));
    // Release twice, commit without a reservation: only the first does anything.
    t.release(at(3), key, SMTP_A);
    t.release(at(4), key, SMTP_A);
    t.commit(at(5), key, SMTP_A);
    t.commit(at(5), key, SMTP_B);
    t.release(at(5), cidr("203.0.113.1/32"), SMTP_A);
    assert_eq!(
        events(&mut t),
        vec![
            reserved(1, SMTP_A, "192.0.2.7/32", "alice"),
            released(3, SMTP_A, "192.0.2.7/32"),
        ]
    );
    let view = t.get(at(6), ip("192.0.2.7")).expect("grant");
    assert_eq!((view.messages_left, view.reserved), (Some(2), 0));
    // Commit twice: counted once.
    t.reserve(at(7), ip("192.0.2.7"), SMTP_A).expect("again");
    t.commit(at(8), key, SMTP_A);
    t.commit(at(9), key, SMTP_A);
    let view = t.get(at(9), ip("192.0.2.7")).expect("grant");
    assert_eq!((view.messages_left, view.reserved), (Some(1), 0));
}

#[test]
fn commit_after_revoke_is_a_no_op() {
    let mut t = table(limited(3));
    created(&mut t, 0, "192.0.2.7", "alice", POP);
    let r = t.reserve(at(1), ip("192.0.2.7"), SMTP_A).expect("reserve");
    events(&mut t);
    assert!(t.revoke(at(2), r.key, reason::REVOKED));
    assert!(!t.revoke(at(2), r.key, reason::REVOKED));
    t.commit(at(3), r.key, SMTP_A);
    t.release(at(3), r.key, SMTP_A);
    assert_eq!(events(&mut t), vec![revoked(2, "192.0.2.7/32", "revoked")]);
    assert!(t.is_empty());

    // A grant replaced meanwhile does not count the old transaction.
    created(&mut t, 4, "192.0.2.7", "alice", POP);
    t.commit(at(5), r.key, SMTP_A);
    assert_eq!(
        t.get(at(5), ip("192.0.2.7")).and_then(|g| g.messages_left),
        Some(3)
    );
    // Nor does a purged one.
    let r = t.reserve(at(6), ip("192.0.2.7"), SMTP_B).expect("reserve");
    events(&mut t);
    assert_eq!(t.purge(at(4 + TTL_MS)), None);
    t.commit(at(4 + TTL_MS), r.key, SMTP_B);
    assert_eq!(events(&mut t), vec![expired(4 + TTL_MS, "192.0.2.7/32")]);
}

#[test]
fn revoking_a_user_revokes_every_grant_they_logged_in_on() {
    let mut t = table(GrantConfig::default());
    created(&mut t, 0, "192.0.2.1", "alice", POP);
    created(&mut t, 1, "192.0.2.2", "bob", POP);
    created(&mut t, 2, "192.0.2.3", "bob", POP);
    // alice logged in on bob's address later: the grant's history includes her.
    refreshed(&mut t, 3, "192.0.2.3", "alice", POP);
    events(&mut t);
    assert_eq!(t.revoke_user(at(4), "ALICE"), 2);
    assert_eq!(
        events(&mut t),
        vec![
            revoked(4, "192.0.2.1/32", "user removed"),
            revoked(4, "192.0.2.3/32", "user removed"),
        ]
    );
    assert_eq!(
        t.list(at(4)).into_iter().map(|g| g.key).collect::<Vec<_>>(),
        vec![cidr("192.0.2.2/32")]
    );
    assert_eq!(t.revoke_user(at(5), "alice"), 0);
    assert_eq!(
        t.revoke_user_with_reason(at(5), "bob", reason::PASSWORD_CHANGED),
        1
    );
    assert_eq!(
        events(&mut t),
        vec![revoked(5, "192.0.2.2/32", "password changed")]
    );
    assert!(t.is_empty());
}

#[test]
fn flush_revokes_everything_in_expiry_order() {
    let mut t = table(GrantConfig::default());
    created(&mut t, 2, "192.0.2.2", "bob", POP);
    created(&mut t, 1, "192.0.2.1", "alice", POP);
    created(&mut t, 3, "2001:db8::1", "carol", POP);
    events(&mut t);
    assert_eq!(t.flush(at(10)), 3);
    assert_eq!(
        events(&mut t),
        vec![
            revoked(10, "192.0.2.1/32", "flushed"),
            revoked(10, "192.0.2.2/32", "flushed"),
            revoked(10, "2001:db8::/64", "flushed"),
        ]
    );
    assert!(t.is_empty());
    assert_eq!(t.flush(at(11)), 0);
    // An entry already expired goes as expired, not counted as flushed.
    created(&mut t, 0, "192.0.2.1", "alice", POP);
    created(&mut t, 100, "192.0.2.2", "bob", POP);
    events(&mut t);
    assert_eq!(t.flush(at(TTL_MS + 50)), 1);
    assert_eq!(
        events(&mut t),
        vec![
            expired(TTL_MS + 50, "192.0.2.1/32"),
            revoked(TTL_MS + 50, "192.0.2.2/32", "flushed"),
        ]
    );
}

#[test]
fn purge_returns_the_next_deadline_and_expires_in_order() {
    let mut t = table(GrantConfig::default());
    assert_eq!(t.purge(T0), None);
    created(&mut t, 0, "192.0.2.1", "alice", POP);
    created(&mut t, 20, "192.0.2.3", "carol", POP);
    created(&mut t, 10, "192.0.2.2", "bob", POP);
    events(&mut t);
    assert_eq!(t.purge(at(5)), Some(at(TTL_MS)));
    assert_eq!(events(&mut t), vec![]);
    // One millisecond early: nothing goes.
    assert_eq!(t.purge(at(TTL_MS - 1)), Some(at(TTL_MS)));
    assert_eq!(t.purge(at(TTL_MS)), Some(at(TTL_MS + 10)));
    assert_eq!(events(&mut t), vec![expired(TTL_MS, "192.0.2.1/32")]);
    // A late sweep takes everything due, soonest first.
    assert_eq!(t.purge(at(TTL_MS + 20)), None);
    assert_eq!(
        events(&mut t),
        vec![
            expired(TTL_MS + 20, "192.0.2.2/32"),
            expired(TTL_MS + 20, "192.0.2.3/32"),
        ]
    );
    assert!(t.is_empty());
}

#[test]
fn a_refresh_moves_the_deadline() {
    let mut t = table(GrantConfig::default());
    created(&mut t, 0, "192.0.2.1", "alice", POP);
    created(&mut t, 10, "192.0.2.2", "bob", POP);
    assert_eq!(t.purge(at(11)), Some(at(TTL_MS)));
    refreshed(&mut t, 20, "192.0.2.1", "alice", POP);
    assert_eq!(t.purge(at(21)), Some(at(TTL_MS + 10)));
    assert_eq!(
        t.list(at(21))
            .into_iter()
            .map(|g| g.key)
            .collect::<Vec<_>>(),
        vec![cidr("192.0.2.2/32"), cidr("192.0.2.1/32")]
    );
}

#[test]
fn a_full_table_evicts_the_grant_closest_to_expiry() {
    let mut t = table(GrantConfig {
        max_entries: 2,
        ..GrantConfig::default()
    });
    created(&mut t, 0, "192.0.2.1", "alice", POP);
    created(&mut t, 1, "192.0.2.2", "bob", POP);
    refreshed(&mut t, 2, "192.0.2.1", "alice", POP);
    events(&mut t);
    // Full: bob's grant now expires first, so it goes.
    let carol = created(&mut t, 3, "192.0.2.3", "carol", SessionId(3));
    assert_eq!(
        events(&mut t),
        vec![
            revoked(3, "192.0.2.2/32", "evicted"),
            ev(
                3,
                Some(SessionId(3)),
                EventKind::GrantCreated { grant: carol }
            ),
        ]
    );
    assert_eq!(t.len(), 2);
    // A refresh of a stored key evicts nothing.
    refreshed(&mut t, 4, "192.0.2.3", "carol", SessionId(3));
    assert_eq!(t.len(), 2);
    assert_eq!(events(&mut t).len(), 1);
    // An expired entry makes room as expired, not evicted.
    let later = 2 + TTL_MS;
    let dave = created(&mut t, later, "192.0.2.4", "dave", SessionId(4));
    assert_eq!(
        events(&mut t),
        vec![
            expired(later, "192.0.2.1/32"),
            ev(
                later,
                Some(SessionId(4)),
                EventKind::GrantCreated { grant: dave }
            ),
        ]
    );
}

#[test]
fn a_table_capped_at_zero_still_holds_one_grant() {
    let mut t = table(GrantConfig {
        max_entries: 0,
        ..GrantConfig::default()
    });
    created(&mut t, 0, "192.0.2.1", "alice", POP);
    created(&mut t, 1, "192.0.2.2", "bob", POP);
    assert_eq!(t.len(), 1);
    assert!(t.get(at(1), ip("192.0.2.2")).is_some());
}

#[test]
fn operator_grants_cover_networks_and_override_limits() {
    let mut t = table(limited(5));
    let net = t.add(
        T0,
        cidr("203.0.113.0/24"),
        "ops",
        Some(Duration::from_secs(60)),
        Some(1),
        Some("branch office".into()),
    );
    assert_eq!(
        net,
        GrantView {
            key: cidr("203.0.113.0/24"),
            user: "ops".into(),
            users: vec!["ops".into()],
            session: None,
            created: T0,
            expires: at(60_000),
            messages_left: Some(1),
            reserved: 0,
            sliding: true,
            note: Some("branch office".into()),
        }
    );
    assert_eq!(
        events(&mut t),
        vec![ev(0, None, EventKind::GrantCreated { grant: net.clone() })]
    );
    // Containment: any host in the /24.
    assert_eq!(t.get(at(1), ip("203.0.113.77")), Some(net.clone()));
    assert_eq!(t.get(at(1), ip("203.0.114.77")), None);
    let r = t
        .reserve(at(1), ip("::ffff:203.0.113.77"), SMTP_A)
        .expect("covered by the /24");
    assert_eq!((r.key, r.granting_session), (net.key, None));
    // The one message is in flight; a login inside the network makes a host grant,
    // which is more specific and has messages of its own.
    assert_eq!(
        t.reserve(at(2), ip("203.0.113.78"), SMTP_B),
        Err(RelayRefusal::UsedUp)
    );
    created(&mut t, 3, "203.0.113.78", "alice", POP);
    assert_eq!(
        t.reserve(at(4), ip("203.0.113.78"), SMTP_B).map(|r| r.key),
        Ok(cidr("203.0.113.78/32"))
    );
    // A wider, unlimited network: the most specific live grant with room wins.
    let wide = t.add(T0, cidr("203.0.0.0/16"), "ops", None, Some(0), None);
    assert_eq!((wide.messages_left, wide.expires), (None, at(TTL_MS)));
    assert_eq!(
        t.reserve(at(5), ip("203.0.113.79"), SessionId(12))
            .map(|r| r.key),
        Ok(cidr("203.0.0.0/16"))
    );
    // When the /24 expires, the /16 still covers its hosts.
    assert_eq!(
        t.get(at(60_000), ip("203.0.113.77")).map(|g| g.key),
        Some(wide.key)
    );
    assert_eq!(t.purge(at(60_000)), Some(wide.expires));
    // Revoked by its key; an IPv6 host key works by exact lookup.
    assert!(t.revoke(at(60_001), wide.key, reason::REVOKED));
    let host6 = t.add(T0, cidr("2001:db8::5/128"), "ops", None, None, None);
    assert_eq!(t.get(at(1), ip("2001:db8::5")), Some(host6));
    assert_eq!(t.get(at(1), ip("2001:db8::6")), None);
    assert_eq!(t.check_invariants(), Ok(()));
}

#[test]
fn an_operator_add_replaces_the_grant_on_its_key() {
    let mut t = table(limited(2));
    created(&mut t, 0, "192.0.2.7", "alice", POP);
    let r = t.reserve(at(1), ip("192.0.2.7"), SMTP_A).expect("reserve");
    events(&mut t);
    let view = t.add(at(2), cidr("192.0.2.7"), "ops", None, Some(3), None);
    assert_eq!((view.messages_left, view.reserved), (Some(3), 0));
    assert_eq!(t.len(), 1);
    assert_eq!(
        events(&mut t),
        vec![ev(2, None, EventKind::GrantCreated { grant: view })]
    );
    // The old transaction does not count against the new grant.
    t.commit(at(3), r.key, SMTP_A);
    assert_eq!(events(&mut t), vec![]);
    // A sliding refresh renews with the grant's own limit.
    let again = refreshed(&mut t, 4, "192.0.2.7", "alice", POP);
    assert_eq!(again.messages_left, Some(3));
}

#[test]
fn list_is_live_grants_soonest_expiry_first() {
    let mut t = table(GrantConfig::default());
    created(&mut t, 0, "192.0.2.1", "alice", POP);
    t.add(
        T0,
        cidr("198.51.100.0/24"),
        "ops",
        Some(Duration::from_secs(10)),
        None,
        None,
    );
    created(&mut t, 5, "2001:db8::1", "bob", POP);
    let keys =
        |t: &GrantTable, ms| -> Vec<Cidr> { t.list(at(ms)).into_iter().map(|g| g.key).collect() };
    assert_eq!(
        keys(&t, 1),
        vec![
            cidr("198.51.100.0/24"),
            cidr("192.0.2.1/32"),
            cidr("2001:db8::/64")
        ]
    );
    assert_eq!(
        keys(&t, 10_000),
        vec![cidr("192.0.2.1/32"), cidr("2001:db8::/64")]
    );
    assert_eq!(keys(&t, TTL_MS + 5), vec![]);
    // list and get never change the table.
    assert_eq!(t.len(), 3);
}

#[test]
fn grant_events_serialise_for_the_dashboard() {
    let mut t = table(limited(1));
    created(&mut t, 0, "192.0.2.7", "alice", POP);
    let e = t.poll_event().expect("created");
    let json = serde_json::to_value(&e).expect("serialise");
    let grant = &json["kind"]["grant_created"]["grant"];
    assert_eq!(grant["key"], "192.0.2.7/32");
    assert_eq!(grant["messages_left"], 1);
    assert_eq!(json["session"], 1);
}
