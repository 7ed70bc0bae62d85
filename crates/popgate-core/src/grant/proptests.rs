//! Property tests: random sequences of logins, reservations, commits, releases,
//! operator actions, time passing and purges never break the table's promises.
//! (Native only: proptest does not run under wasm32; the unit tests do.)

use super::*;
use proptest::prelude::*;

/// Addresses that collide in interesting ways: a mapped IPv4 twin, two hosts in one
/// IPv6 /64, a host in a neighbouring /64.
const PEERS: [&str; 7] = [
    "192.0.2.1",
    "::ffff:192.0.2.1",
    "192.0.2.2",
    "192.0.2.3",
    "2001:db8::1",
    "2001:db8::2",
    "2001:db8:0:1::1",
];
/// Operator keys: hosts and networks of other widths than the configured prefix.
const NETWORKS: [&str; 4] = [
    "192.0.2.0/24",
    "192.0.2.2/32",
    "2001:db8::/48",
    "192.0.0.0/8",
];
const USERS: [&str; 3] = ["alice", "bob", "ALICE"];

#[derive(Clone, Debug)]
enum Op {
    Login {
        peer: usize,
        user: usize,
        session: u64,
    },
    Reserve {
        peer: usize,
        session: u64,
    },
    /// Commit or release one of the reservations handed out (by index), or, when
    /// there is none, a made-up one: both must be safe.
    Commit {
        pick: usize,
    },
    Release {
        pick: usize,
    },
    Add {
        net: usize,
        ttl: Option<u64>,
        messages: Option<u32>,
    },
    Revoke {
        net: usize,
    },
    RevokeUser {
        user: usize,
    },
    Flush,
    Advance {
        ms: u64,
    },
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PEERS.len(), 0..USERS.len(), 0..4u64)
            .prop_map(|(peer, user, session)| Op::Login { peer, user, session }),
        6 => (0..PEERS.len(), 10..16u64).prop_map(|(peer, session)| Op::Reserve { peer, session }),
        4 => any::<usize>().prop_map(|pick| Op::Commit { pick }),
        3 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => (0..NETWORKS.len(), proptest::option::of(0..60u64), proptest::option::of(0..4u32))
            .prop_map(|(net, ttl, messages)| Op::Add { net, ttl, messages }),
        1 => (0..NETWORKS.len()).prop_map(|net| Op::Revoke { net }),
        1 => (0..USERS.len()).prop_map(|user| Op::RevokeUser { user }),
        1 => Just(Op::Flush),
        4 => (0..40u64).prop_map(|ms| Op::Advance { ms }),
        2 => Just(Op::Purge),
    ]
}

fn config() -> impl Strategy<Value = GrantConfig> {
    (
        1..60u64,
        proptest::option::of(1..4u32),
        any::<bool>(),
        1..5usize,
    )
        .prop_map(|(ttl, max_messages, sliding, max_entries)| GrantConfig {
            ttl: Duration::from_millis(ttl),
            max_messages,
            sliding,
            max_entries,
            ..GrantConfig::default()
        })
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn cidr(s: &str) -> Cidr {
    s.parse().expect("test cidr")
}

/// What the event stream says about one grant's current lifetime.
#[derive(Debug)]
struct Lifetime {
    max: Option<u32>,
    commits: u32,
}

fn run(config: GrantConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut t = GrantTable::new(config);
    let mut now = Millis(1_000);
    let mut held: Vec<(Cidr, SessionId)> = Vec::new();
    let mut lifetimes: HashMap<Cidr, Lifetime> = HashMap::new();
    for op in ops {
        match op {
            Op::Login {
                peer,
                user,
                session,
            } => {
                t.login(now, ip(PEERS[peer]), USERS[user], SessionId(session));
            }
            Op::Reserve { peer, session } => {
                if let Ok(r) = t.reserve(now, ip(PEERS[peer]), SessionId(session)) {
                    let entry = t.stored(&r.key);
                    prop_assert!(entry.is_some_and(|e| now < e.expires));
                    prop_assert!(t.holds(&r.key, SessionId(session)));
                    if !held.contains(&(r.key, SessionId(session))) {
                        held.push((r.key, SessionId(session)));
                    }
                }
            }
            Op::Commit { pick } | Op::Release { pick } => {
                let (key, session) = if held.is_empty() {
                    (
                        cidr(PEERS[pick % PEERS.len()]),
                        SessionId(10 + pick as u64 % 6),
                    )
                } else {
                    held.swap_remove(pick % held.len())
                };
                if matches!(op, Op::Commit { .. }) {
                    t.commit(now, key, session);
                } else {
                    t.release(now, key, session);
                }
            }
            Op::Add { net, ttl, messages } => {
                t.add(
                    now,
                    cidr(NETWORKS[net]),
                    "ops",
                    ttl.map(Duration::from_millis),
                    messages,
                    None,
                );
            }
            Op::Revoke { net } => {
                t.revoke(now, cidr(NETWORKS[net]), reason::REVOKED);
            }
            Op::RevokeUser { user } => {
                t.revoke_user(now, USERS[user]);
            }
            Op::Flush => {
                t.flush(now);
                prop_assert!(t.is_empty());
            }
            Op::Advance { ms } => now = Millis(now.0 + ms),
            Op::Purge => {
                let next = t.purge(now);
                // Nothing due is left, and the deadline is the soonest remaining.
                prop_assert!(t.entries.iter().all(|(_, e)| e.expires > now));
                prop_assert_eq!(next, t.entries.iter().map(|(_, e)| e.expires).min());
            }
        }

        prop_assert_eq!(t.check_invariants(), Ok(()));
        while let Some(event) = t.poll_event() {
            prop_assert_eq!(event.at, now);
            match event.kind {
                EventKind::GrantCreated { grant } => {
                    prop_assert_eq!(grant.reserved, 0);
                    lifetimes.insert(
                        grant.key,
                        Lifetime {
                            max: grant.messages_left,
                            commits: 0,
                        },
                    );
                }
                EventKind::GrantRefreshed { grant } => {
                    let life = lifetimes.get_mut(&grant.key);
                    prop_assert!(life.is_some(), "refresh of an unknown grant");
                    if let Some(life) = life
                        && grant.sliding
                    {
                        // A sliding refresh is a new lifetime with the full count.
                        prop_assert_eq!(grant.messages_left, life.max);
                        life.commits = 0;
                    }
                }
                EventKind::GrantUsed {
                    key, messages_left, ..
                } => {
                    let life = lifetimes.get_mut(&key);
                    prop_assert!(life.is_some(), "commit on an unknown grant");
                    if let Some(life) = life {
                        life.commits += 1;
                        if let Some(max) = life.max {
                            prop_assert!(life.commits <= max, "{} commits of {max}", life.commits);
                            prop_assert_eq!(messages_left, Some(max - life.commits));
                        }
                    }
                }
                EventKind::GrantExpired { key } | EventKind::GrantRevoked { key, .. } => {
                    prop_assert!(lifetimes.remove(&key).is_some(), "{key} ended twice");
                    prop_assert!(t.stored(&key).is_none_or(|e| e.created == now));
                }
                EventKind::GrantReserved { .. }
                | EventKind::GrantReleased { .. }
                | EventKind::GrantRefused { .. } => {}
                other => prop_assert!(false, "unexpected event {other:?}"),
            }
        }
        // Every stored grant's lifetime is known from the events, and vice versa.
        prop_assert_eq!(lifetimes.len(), t.len());
        // The table never holds more than it may.
        prop_assert!(t.len() <= t.config().max_entries.max(1));
        // Live views agree with the stored entries.
        let listed = t.list(now);
        prop_assert!(listed.windows(2).all(|w| w[0].expires <= w[1].expires));
        prop_assert_eq!(
            listed.len(),
            t.entries.iter().filter(|(_, e)| e.live(now)).count()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_operations_keep_every_promise(
        config in config(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run(config, ops)?;
    }
}
