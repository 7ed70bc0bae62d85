//! Grants kept outside the process, in a store several popgate nodes share (the
//! server's Redis store): what a login or an operator add makes of the record such a
//! store keeps, computed here with core's rules so the store only stores and counts.
//!
//! [`GrantTable`] stays the definition of the rules. Every outcome this module can take
//! from it, it does: the key and the deny ranges of a login, the shape of a fresh
//! grant and of an operator grant come from a scratch [`GrantTable`] (empty, so it
//! never evicts), and so do their events. What a login does to a grant another node
//! made (the refresh) cannot be asked of an empty table, so [`login`] applies
//! [`GrantTable::login`]'s documented refresh rule to the stored record; the tests
//! below replay the same logins against both and compare.
//!
//! What a shared store does differently, by design:
//!
//! * Expired records are not reported by the calls here (no `GrantExpired`): every
//!   node watches the deadlines it knows of and reports expiry itself.
//! * `max_entries` is not enforced: a shared store has its own memory limits.

use crate::event::{Event, EventKind, SessionId};
use crate::grant::{GrantTable, GrantView, LoginGrant};
use crate::net::Cidr;
use crate::time::Millis;
use std::cmp::Reverse;
use std::net::IpAddr;
use std::time::Duration;

/// `GrantRefused`: the login verified, but the grant store could not be reached, so
/// no grant was stored (the login itself still succeeds).
pub const STORE_UNAVAILABLE: &str = "grant store unavailable";

/// One grant as a shared store keeps it: its view, and what a sliding refresh renews
/// it with (the configuration's time-to-live and count, or the operator's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGrant {
    pub view: GrantView,
    pub ttl: Duration,
    /// `None`: no count limit.
    pub max_messages: Option<u32>,
}

impl StoredGrant {
    /// Exact expiry: valid while `now < expires`, as in [`GrantTable`].
    pub fn live(&self, now: Millis) -> bool {
        now < self.view.expires
    }

    /// Every message was committed.
    pub fn spent(&self) -> bool {
        self.view.messages_left == Some(0)
    }
}

/// What a verified login makes of the record under its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedLogin {
    /// The address is in a deny range: store nothing.
    Denied,
    /// Store this as a new record, replacing whatever is under its key.
    Created(StoredGrant),
    /// Store this over the record that was read: its user, history, session, note
    /// and expiry; a sliding grant also gets its full count back (reservations in
    /// flight stay, as in the table).
    Refreshed(StoredGrant),
}

impl SharedLogin {
    /// The answer [`GrantTable::login`] would have given.
    pub fn grant(&self) -> LoginGrant {
        match self {
            SharedLogin::Denied => LoginGrant::Denied,
            SharedLogin::Created(g) => LoginGrant::Created(g.view.clone()),
            SharedLogin::Refreshed(g) => LoginGrant::Refreshed(g.view.clone()),
        }
    }
}

/// A verified login from `peer` (see [`GrantTable::login_noted`]), given `existing`:
/// the record stored under `rules.key_for(peer)`, if any. Returns what to store and
/// the events the table would have published.
pub fn login(
    rules: &GrantTable,
    existing: Option<&StoredGrant>,
    now: Millis,
    peer: IpAddr,
    user: &str,
    session: SessionId,
    note: Option<String>,
) -> (SharedLogin, Vec<Event>) {
    // The deny ranges come first, whatever is stored (as in the table).
    let mut scratch = GrantTable::new(rules.config().clone());
    let fresh = scratch.login_noted(now, peer, user, session, note.clone());
    let events: Vec<Event> = std::iter::from_fn(|| scratch.poll_event()).collect();
    let view = match fresh {
        LoginGrant::Denied => return (SharedLogin::Denied, events),
        LoginGrant::Created(view) | LoginGrant::Refreshed(view) => view,
    };
    match existing {
        // The table's refresh: a live grant that is sliding, or fixed with a message
        // left. Anything else (expired, a spent fixed grant) is replaced.
        Some(old) if old.live(now) && (old.view.sliding || !old.spent()) => {
            let mut grant = old.clone();
            grant.view.user = user.to_owned();
            if !grant.view.users.iter().any(|seen| same_user(seen, user)) {
                grant.view.users.push(user.to_owned());
            }
            grant.view.session = Some(session);
            if note.is_some() {
                grant.view.note = note;
            }
            if grant.view.sliding {
                grant.view.expires = now.saturating_add(grant.ttl);
                grant.view.messages_left = grant.max_messages;
            }
            let event = Event::new(
                now,
                Some(session),
                EventKind::GrantRefreshed {
                    grant: grant.view.clone(),
                },
            );
            (SharedLogin::Refreshed(grant), vec![event])
        }
        _ => {
            let grant = StoredGrant {
                ttl: rules.config().ttl,
                max_messages: rules.config().max_messages,
                view,
            };
            (SharedLogin::Created(grant), events)
        }
    }
}

/// An operator grant (see [`GrantTable::add`]): the record to store over whatever is
/// under `key`, and its `GrantCreated` event.
pub fn add(
    rules: &GrantTable,
    now: Millis,
    key: Cidr,
    user: &str,
    ttl: Option<Duration>,
    messages: Option<u32>,
    note: Option<String>,
) -> (StoredGrant, Vec<Event>) {
    let mut scratch = GrantTable::new(rules.config().clone());
    let view = scratch.add(now, key, user, ttl, messages, note);
    let events = std::iter::from_fn(|| scratch.poll_event()).collect();
    let grant = StoredGrant {
        ttl: ttl.unwrap_or(rules.config().ttl),
        // A fresh grant has its whole count left.
        max_messages: view.messages_left,
        view,
    };
    (grant, events)
}

/// The keys that may hold a grant covering `peer`, most specific first: its host key,
/// its masked key, and the operator networks among `networks` that contain it (as
/// [`GrantTable::reserve`] looks them up).
pub fn candidates(rules: &GrantTable, peer: IpAddr, networks: &[Cidr]) -> Vec<Cidr> {
    let mut keys = vec![Cidr::host(peer), rules.key_for(peer)];
    keys.extend(networks.iter().copied().filter(|net| net.contains(peer)));
    keys.sort_by_key(|key| Reverse(key.prefix()));
    keys.dedup();
    keys
}

/// True when a peer lookup cannot derive `key` from the address (an operator network
/// of a width other than the host's or the configured prefix): a store keeps such
/// keys in an index that [`candidates`] is given.
pub fn is_network_key(rules: &GrantTable, key: &Cidr) -> bool {
    let host = if key.addr().is_ipv4() { 32 } else { 128 };
    key.prefix() != host && rules.key_for(key.addr()) != *key
}

/// User names compare case-insensitively (DESIGN: local parts match
/// case-insensitively), as the table's user history and revoke-by-user do.
pub fn same_user(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::GrantConfig;
    use crate::testing::test;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().expect("test cidr")
    }

    fn config(sliding: bool, max: Option<u32>) -> GrantConfig {
        GrantConfig {
            ttl: Duration::from_secs(60),
            max_messages: max,
            sliding,
            deny: vec![cidr("192.0.2.0/24")],
            ..GrantConfig::default()
        }
    }

    /// A store that keeps records the way a shared store does, driven through this
    /// module, next to a table driven directly: both must show the same grant.
    struct Pair {
        table: GrantTable,
        stored: Option<StoredGrant>,
    }

    impl Pair {
        fn new(config: GrantConfig) -> Pair {
            Pair {
                table: GrantTable::new(config),
                stored: None,
            }
        }

        fn login(&mut self, ms: u64, user: &str, session: u64) -> LoginGrant {
            let (now, peer) = (Millis(ms), ip("198.51.100.7"));
            let expected = self.table.login(now, peer, user, SessionId(session));
            let (shared, _) = login(
                &self.table,
                self.stored.as_ref(),
                now,
                peer,
                user,
                SessionId(session),
                None,
            );
            match &shared {
                SharedLogin::Created(g) | SharedLogin::Refreshed(g) => {
                    self.stored = Some(g.clone())
                }
                SharedLogin::Denied => {}
            }
            assert_eq!(shared.grant(), expected, "login of {user} at {ms}");
            expected
        }

        /// Spend one message on both, as reserve and commit do.
        fn spend(&mut self, ms: u64, session: u64) {
            let now = Millis(ms);
            let r = self
                .table
                .reserve(now, ip("198.51.100.7"), SessionId(session))
                .expect("a message to spend");
            self.table.commit(now, r.key, SessionId(session));
            if let Some(g) = &mut self.stored
                && let Some(left) = g.view.messages_left.as_mut()
            {
                *left -= 1;
            }
        }
    }

    #[test]
    fn sliding_logins_refresh_like_the_table() {
        let mut p = Pair::new(config(true, Some(2)));
        assert!(matches!(p.login(1_000, "alice", 1), LoginGrant::Created(_)));
        p.spend(2_000, 2);
        // Later, another user on the same key: expiry moves, the count comes back,
        // the history grows; the same user again in another case does not repeat.
        assert!(matches!(
            p.login(30_000, "bob", 3),
            LoginGrant::Refreshed(_)
        ));
        assert!(matches!(
            p.login(40_000, "ALICE", 4),
            LoginGrant::Refreshed(_)
        ));
        // Expired: replaced by a fresh grant.
        assert!(matches!(
            p.login(40_000 + 60_000, "carol", 5),
            LoginGrant::Created(_)
        ));
    }

    #[test]
    fn fixed_grants_keep_expiry_and_count_until_spent() {
        let mut p = Pair::new(config(false, Some(1)));
        p.login(1_000, "alice", 1);
        let LoginGrant::Refreshed(view) = p.login(20_000, "alice", 2) else {
            panic!("a live fixed grant with a message left is refreshed");
        };
        assert_eq!(view.expires, Millis(61_000), "fixed: expiry kept");
        p.spend(21_000, 3);
        assert!(
            matches!(p.login(22_000, "alice", 4), LoginGrant::Created(_)),
            "a spent fixed grant is replaced"
        );
    }

    #[test]
    fn deny_ranges_refuse_with_the_tables_event() {
        let rules = GrantTable::new(config(true, None));
        let (shared, events) = login(
            &rules,
            None,
            Millis(5),
            ip("192.0.2.9"),
            "alice",
            SessionId(1),
            None,
        );
        assert_eq!(shared, SharedLogin::Denied);
        assert!(matches!(
            events.as_slice(),
            [Event {
                kind: EventKind::GrantRefused { .. },
                ..
            }]
        ));
    }

    #[test]
    fn operator_grants_renew_with_their_own_limits() {
        let rules = GrantTable::new(config(true, Some(5)));
        let key = cidr("203.0.113.0/24");
        let (g, events) = add(
            &rules,
            Millis(0),
            key,
            "operator",
            Some(Duration::from_secs(10)),
            Some(0),
            None,
        );
        assert_eq!(g.ttl, Duration::from_secs(10));
        assert_eq!(g.max_messages, None, "messages 0: no count limit");
        assert_eq!(g.view.expires, Millis(10_000));
        assert_eq!(events.len(), 1);
        assert!(is_network_key(&rules, &key));
        assert!(!is_network_key(&rules, &cidr("203.0.113.4/32")));
        assert_eq!(
            candidates(&rules, ip("203.0.113.4"), &[key, cidr("10.0.0.0/8")]),
            vec![cidr("203.0.113.4/32"), key]
        );
    }
}
