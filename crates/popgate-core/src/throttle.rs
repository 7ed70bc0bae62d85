//! The progressive login-failure delay per client address.
//!
//! Every failed login from an address makes the next reply wait longer: `base`, then
//! `2 * base`, `4 * base` ... up to `max` (failure *n* waits `base * 2^(n-1)`). The
//! server holds one [`Throttle`] for all listeners, so parallel connections from one
//! address share the count while other addresses are unaffected: nobody is locked out,
//! guessing just becomes slow. An address that stays quiet for `forget_after` starts
//! over. Time is passed in; the table emits no events itself: the server publishes
//! `LoginDelayed` for each applied delay and `AddressBlocked` when
//! [`Throttle::is_blocked`] first turns true for an address.
//!
//! Addresses are keyed like grants: canonicalised (`::ffff:a.b.c.d` is `a.b.c.d`),
//! IPv4 per address and IPv6 per /64, since one IPv6 host usually owns a whole /64.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use crate::net::Cidr;
use crate::time::Millis;

/// The prefix one client is assumed to own: a single IPv4 address, an IPv6 /64.
const IPV4_PREFIX: u8 = 32;
const IPV6_PREFIX: u8 = 64;

/// How failures turn into delays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// The delay after the first failure.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// An address without a failure for this long starts over.
    pub forget_after: Duration,
    /// After this many failures the address is blocked: every further failure waits
    /// `max` at once, and a successful login no longer clears the count.
    pub block_after: u32,
    /// At most this many addresses are remembered; a new one evicts the address whose
    /// last failure is oldest, so memory stays bounded under a spray of sources.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            base: Duration::from_secs(2),
            max: Duration::from_secs(15),
            forget_after: Duration::from_secs(10 * 60),
            block_after: 10,
            max_entries: 100_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last: Millis,
}

/// Failures per address; see the module docs.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    entries: HashMap<Cidr, Entry>,
    /// `(last failure, key)` for every entry: the oldest comes first, for purging and
    /// eviction without a scan.
    by_age: BTreeSet<(Millis, Cidr)>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            entries: HashMap::new(),
            by_age: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// Records a failed login from `ip` and returns the delay to apply before the
    /// reply: `base * 2^(n-1)` for the n-th counted failure, at most `max`, and `max`
    /// once the address is blocked.
    pub fn failure(&mut self, now: Millis, ip: IpAddr) -> Duration {
        let key = key(ip);
        let failures = match self.entries.get(&key).copied() {
            Some(entry) => {
                self.by_age.remove(&(entry.last, key));
                if self.expired(now, entry) {
                    1
                } else {
                    entry.failures.saturating_add(1)
                }
            }
            None => {
                self.make_room();
                1
            }
        };
        // A failure reported late (a slow verification on another connection) must not
        // move the entry back in time.
        let last = self.entries.get(&key).map_or(now, |e| e.last.max(now));
        self.entries.insert(key, Entry { failures, last });
        self.by_age.insert((last, key));
        self.delay(failures)
    }

    /// A successful login from `ip` clears its count, as Dovecot's auth penalty does:
    /// a user who mistyped a password once is not slowed down all day. A *blocked*
    /// address keeps its count until `forget_after`, so an attacker who also owns one
    /// valid account cannot reset the penalty between guesses.
    pub fn success(&mut self, ip: IpAddr) {
        let key = key(ip);
        if let Some(entry) = self.entries.get(&key).copied()
            && entry.failures < self.config.block_after
        {
            self.entries.remove(&key);
            self.by_age.remove(&(entry.last, key));
        }
    }

    /// The failures currently counted for `ip` (zero once forgotten).
    pub fn pending(&self, now: Millis, ip: IpAddr) -> u32 {
        match self.entries.get(&key(ip)) {
            Some(entry) if !self.expired(now, *entry) => entry.failures,
            _ => 0,
        }
    }

    /// Whether `ip` has failed `block_after` times and not yet been forgotten. The
    /// failure that turns this true (`pending == block_after`) is the one to announce.
    pub fn is_blocked(&self, now: Millis, ip: IpAddr) -> bool {
        let failures = self.pending(now, ip);
        failures > 0 && failures >= self.config.block_after
    }

    /// Forgets every address quiet for `forget_after`.
    pub fn purge(&mut self, now: Millis) {
        while let Some(&(last, key)) = self.by_age.first() {
            if now < last.saturating_add(self.config.forget_after) {
                break;
            }
            self.by_age.pop_first();
            self.entries.remove(&key);
        }
    }

    /// How many addresses are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expired(&self, now: Millis, entry: Entry) -> bool {
        now >= entry.last.saturating_add(self.config.forget_after)
    }

    /// Evicts the oldest entries until one more fits.
    fn make_room(&mut self) {
        while self.entries.len() >= self.config.max_entries.max(1) {
            let Some((_, key)) = self.by_age.pop_first() else {
                break;
            };
            self.entries.remove(&key);
        }
    }

    fn delay(&self, failures: u32) -> Duration {
        let ThrottleConfig {
            base,
            max,
            block_after,
            ..
        } = self.config;
        if failures > block_after {
            return max;
        }
        let doubling = failures.saturating_sub(1);
        let grown = 1u32
            .checked_shl(doubling)
            .and_then(|factor| base.checked_mul(factor))
            .unwrap_or(max);
        grown.min(max)
    }
}

fn key(ip: IpAddr) -> Cidr {
    let prefix = match crate::net::canonical(ip) {
        IpAddr::V4(_) => IPV4_PREFIX,
        IpAddr::V6(_) => IPV6_PREFIX,
    };
    Cidr::new(ip, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            base: ms(100),
            max: ms(1_000),
            forget_after: ms(60_000),
            block_after: 6,
            max_entries: 3,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut t = Throttle::new(config());
        let a = ip("192.0.2.1");
        let delays: Vec<u64> = (0..8)
            .map(|i| t.failure(Millis(i), a).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        assert_eq!(t.pending(Millis(8), a), 8);
    }

    #[test]
    fn blocked_addresses_get_the_maximum_at_once() {
        // A cap far above the doubling shows that blocking, not the cap, sets the delay.
        let mut t = Throttle::new(ThrottleConfig {
            max: ms(1_000_000),
            block_after: 3,
            ..config()
        });
        let a = ip("192.0.2.1");
        let delays: Vec<(u64, bool)> = (0..5)
            .map(|i| {
                let d = t.failure(Millis(i), a).as_millis() as u64;
                (d, t.is_blocked(Millis(i), a))
            })
            .collect();
        assert_eq!(
            delays,
            [
                (100, false),
                (200, false),
                (400, true),
                (1_000_000, true),
                (1_000_000, true)
            ]
        );
        // Success does not unblock; forgetting does.
        t.success(a);
        assert!(t.is_blocked(Millis(10), a));
        assert!(!t.is_blocked(Millis(4 + 60_000), a));
    }

    #[test]
    fn huge_counts_never_overflow() {
        let mut t = Throttle::new(ThrottleConfig {
            base: Duration::from_secs(u64::MAX / 4),
            max: Duration::MAX,
            block_after: u32::MAX,
            ..config()
        });
        let a = ip("192.0.2.1");
        for i in 0..70 {
            t.failure(Millis(i), a);
        }
        assert_eq!(t.failure(Millis(70), a), Duration::MAX);
    }

    #[test]
    fn addresses_are_independent() {
        let mut t = Throttle::new(config());
        let (a, b) = (ip("127.0.0.2"), ip("127.0.0.3"));
        for i in 0..5 {
            t.failure(Millis(i), a);
        }
        assert_eq!(t.pending(Millis(5), b), 0);
        assert_eq!(t.failure(Millis(5), b), ms(100));
        assert_eq!(t.pending(Millis(5), a), 5);
        // An IPv4-mapped IPv6 peer is the same client as its IPv4 form.
        assert_eq!(t.pending(Millis(5), ip("::ffff:127.0.0.2")), 5);
    }

    #[test]
    fn ipv6_is_grouped_by_64() {
        let mut t = Throttle::new(config());
        assert_eq!(t.failure(Millis(0), ip("2001:db8:1:2::1")), ms(100));
        assert_eq!(t.failure(Millis(1), ip("2001:db8:1:2:ffff::9")), ms(200));
        assert_eq!(t.failure(Millis(2), ip("2001:db8:1:3::1")), ms(100));
        assert_eq!(t.pending(Millis(3), ip("2001:db8:1:2::77")), 2);
    }

    #[test]
    fn a_quiet_address_starts_over() {
        let mut t = Throttle::new(config());
        let a = ip("192.0.2.1");
        t.failure(Millis(0), a);
        t.failure(Millis(1_000), a);
        assert_eq!(t.pending(Millis(60_999), a), 2);
        assert_eq!(t.pending(Millis(61_000), a), 0);
        assert_eq!(t.failure(Millis(61_000), a), ms(100));

        t.purge(Millis(61_000 + 59_999));
        assert_eq!(t.len(), 1);
        t.purge(Millis(61_000 + 60_000));
        assert!(t.is_empty());
    }

    #[test]
    fn success_clears_the_count() {
        let mut t = Throttle::new(config());
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        t.failure(Millis(0), a);
        t.failure(Millis(1), a);
        t.failure(Millis(1), b);
        t.success(a);
        assert_eq!(t.pending(Millis(2), a), 0);
        assert_eq!(t.failure(Millis(2), a), ms(100));
        assert_eq!(t.pending(Millis(2), b), 1);
        t.success(ip("192.0.2.3"));
    }

    #[test]
    fn memory_is_bounded_by_evicting_the_oldest() {
        let mut t = Throttle::new(config());
        for (i, a) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].into_iter().enumerate() {
            t.failure(Millis(i as u64), ip(a));
        }
        // 10.0.0.1 fails again, so 10.0.0.2 is now the oldest.
        t.failure(Millis(3), ip("10.0.0.1"));
        t.failure(Millis(4), ip("10.0.0.4"));
        assert_eq!(t.len(), 3);
        assert_eq!(t.pending(Millis(5), ip("10.0.0.2")), 0);
        assert_eq!(t.pending(Millis(5), ip("10.0.0.1")), 2);
        for i in 0..1000u32 {
            t.failure(Millis(10 + u64::from(i)), IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.by_age.len(), 3);
    }

    #[test]
    fn a_late_failure_does_not_move_time_back() {
        let mut t = Throttle::new(config());
        let a = ip("192.0.2.1");
        t.failure(Millis(50_000), a);
        t.failure(Millis(40_000), a);
        assert_eq!(t.pending(Millis(109_999), a), 2);
        t.purge(Millis(110_000));
        assert!(t.is_empty());
    }
}
