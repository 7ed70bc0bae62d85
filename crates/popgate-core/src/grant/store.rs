//! How the grant table stores its grants, laid out for size (bench workload 4: at most
//! 128 bytes per grant at a million grants) and for lookups without allocation.
//!
//! * Entries live in a slab (`Vec<Option<Entry>>` with a free list), 64 bytes each.
//! * The index maps a key to its slot: IPv4 hosts, by far the common key, in a map of
//!   `u32 -> u32` (8 bytes a bucket); every other key in a `Cidr -> u32` map.
//! * User names are interned with a reference count, so a grant holds a 4-byte id.
//! * The rare parts (a user history of more than one name, an operator note or
//!   overrides) sit behind one optional box.
//! * Reservations in flight are a side set of `(slot, session)`: its size follows the
//!   transactions in flight, not the table.

use crate::event::SessionId;
use crate::net::Cidr;
use crate::time::Millis;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub(super) type Slot = u32;

/// An interned user name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct UserId(pub(super) u32);

/// User names, interned with a reference count: one copy of each name however many
/// grants carry it, freed when the last one goes.
#[derive(Debug, Default)]
pub(super) struct Names {
    ids: HashMap<Arc<str>, u32>,
    /// Indexed by id: the name and how many references are held on it.
    names: Vec<Option<(Arc<str>, u32)>>,
    free: Vec<u32>,
}

impl Names {
    /// A reference to `name`, interning it when new.
    pub(super) fn acquire(&mut self, name: &str) -> UserId {
        if let Some(&id) = self.ids.get(name) {
            if let Some(Some((_, refs))) = self.names.get_mut(id as usize) {
                *refs += 1;
            }
            return UserId(id);
        }
        let name: Arc<str> = Arc::from(name);
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = Some((name.clone(), 1));
                id
            }
            None => {
                // More distinct names than u32 can count cannot be stored in memory.
                let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
                self.names.push(Some((name.clone(), 1)));
                id
            }
        };
        self.ids.insert(name, id);
        UserId(id)
    }

    /// One more reference to a name already interned.
    pub(super) fn share(&mut self, id: UserId) -> UserId {
        if let Some(Some((_, refs))) = self.names.get_mut(id.0 as usize) {
            *refs += 1;
        }
        id
    }

    pub(super) fn release(&mut self, id: UserId) {
        let Some(slot) = self.names.get_mut(id.0 as usize) else {
            return;
        };
        if let Some((name, refs)) = slot {
            *refs -= 1;
            if *refs == 0 {
                self.ids.remove(&**name);
                *slot = None;
                self.free.push(id.0);
            }
        }
    }

    pub(super) fn get(&self, id: UserId) -> &str {
        match self.names.get(id.0 as usize) {
            Some(Some((name, _))) => name,
            _ => "",
        }
    }

    /// References held per id, for the invariant check.
    #[cfg(test)]
    pub(super) fn refs(&self) -> HashMap<u32, u32> {
        self.names
            .iter()
            .enumerate()
            .filter_map(|(id, n)| n.as_ref().map(|(_, refs)| (id as u32, *refs)))
            .collect()
    }
}

const SLIDING: u8 = 1;
const HAS_SESSION: u8 = 2;
const HAS_LIMIT: u8 = 4;

/// One stored grant. Optional fields are a value plus a flag bit, which keeps the entry
/// at 64 bytes.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: Cidr,
    pub(super) created: Millis,
    pub(super) expires: Millis,
    session: u64,
    /// The latest login on this key.
    pub(super) user: UserId,
    messages_left: u32,
    /// Messages reserved by transactions in flight (their `(slot, session)` pairs are
    /// in the table's holder set).
    pub(super) reserved: u32,
    flags: u8,
    pub(super) extra: Option<Box<Extra>>,
}

/// What few grants have.
#[derive(Debug, Default)]
pub(super) struct Extra {
    /// Every user that logged in on this key, oldest first, without repeats, once it
    /// is more than the one `user` (or a spelling of it other than `user`'s).
    pub(super) users: Vec<UserId>,
    /// Operator note.
    pub(super) note: Option<String>,
    /// Operator overrides of the configured time-to-live and message count.
    pub(super) ttl: Option<Duration>,
    pub(super) max_messages: Option<Option<u32>>,
}

impl Entry {
    pub(super) fn new(
        key: Cidr,
        now: Millis,
        expires: Millis,
        user: UserId,
        session: Option<SessionId>,
        messages_left: Option<u32>,
        sliding: bool,
    ) -> Entry {
        let mut entry = Entry {
            key,
            created: now,
            expires,
            session: 0,
            user,
            messages_left: 0,
            reserved: 0,
            flags: if sliding { SLIDING } else { 0 },
            extra: None,
        };
        entry.set_session(session);
        entry.set_messages_left(messages_left);
        entry
    }

    /// Exact expiry: valid while `now < expires`, invalid at `expires` to the millisecond.
    pub(super) fn live(&self, now: Millis) -> bool {
        now < self.expires
    }

    pub(super) fn sliding(&self) -> bool {
        self.flags & SLIDING != 0
    }

    pub(super) fn session(&self) -> Option<SessionId> {
        (self.flags & HAS_SESSION != 0).then_some(SessionId(self.session))
    }

    pub(super) fn set_session(&mut self, session: Option<SessionId>) {
        match session {
            Some(SessionId(id)) => {
                self.session = id;
                self.flags |= HAS_SESSION;
            }
            None => self.flags &= !HAS_SESSION,
        }
    }

    /// `None`: no count limit.
    pub(super) fn messages_left(&self) -> Option<u32> {
        (self.flags & HAS_LIMIT != 0).then_some(self.messages_left)
    }

    pub(super) fn set_messages_left(&mut self, left: Option<u32>) {
        match left {
            Some(n) => {
                self.messages_left = n;
                self.flags |= HAS_LIMIT;
            }
            None => self.flags &= !HAS_LIMIT,
        }
    }

    /// Messages that a new reservation may take; `None`: no count limit.
    pub(super) fn available(&self) -> Option<u32> {
        self.messages_left()
            .map(|left| left.saturating_sub(self.reserved))
    }

    /// Every message was committed: nothing left even if every reservation is released.
    pub(super) fn spent(&self) -> bool {
        self.messages_left() == Some(0)
    }

    pub(super) fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    pub(super) fn note(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|x| x.note.as_deref())
    }
}

/// Key to slot. IPv4 hosts get the compact map.
#[derive(Debug, Default)]
pub(super) struct Index {
    hosts_v4: HostMap,
    other: HashMap<Cidr, Slot>,
}

fn v4_host(key: &Cidr) -> Option<u32> {
    match key.addr() {
        IpAddr::V4(v4) if key.prefix() == 32 => Some(u32::from(v4)),
        _ => None,
    }
}

impl Index {
    pub(super) fn get(&self, key: &Cidr) -> Option<Slot> {
        match v4_host(key) {
            Some(host) => self.hosts_v4.get(host),
            None => self.other.get(key).copied(),
        }
    }

    pub(super) fn insert(&mut self, key: Cidr, slot: Slot) {
        match v4_host(&key) {
            Some(host) => self.hosts_v4.insert(host, slot),
            None => self.other.insert(key, slot),
        };
    }

    pub(super) fn remove(&mut self, key: &Cidr) -> Option<Slot> {
        match v4_host(key) {
            Some(host) => self.hosts_v4.remove(host),
            None => self.other.remove(key),
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.hosts_v4.len() + self.other.len()
    }
}

/// IPv4 host to slot: open addressing with linear probing over one array of
/// `(address, slot)` pairs, so a lookup costs one cache miss where a general hash map
/// costs two (its control bytes and its bucket live apart). Deletion shifts the
/// following run back (no tombstones), so probes stay short however the table churns.
#[derive(Debug)]
struct HostMap {
    /// `slot == EMPTY` marks a free bucket. Length a power of two, or zero.
    buckets: Vec<(u32, Slot)>,
    len: usize,
    /// Mixed into every hash, so which addresses collide differs per process.
    seed: u64,
}

const EMPTY: Slot = Slot::MAX;

impl Default for HostMap {
    fn default() -> HostMap {
        use std::hash::BuildHasher;
        HostMap {
            buckets: Vec::new(),
            len: 0,
            seed: std::collections::hash_map::RandomState::new().hash_one(0u64),
        }
    }
}

impl HostMap {
    /// Fibonacci hashing of the seeded address to a bucket.
    fn home(&self, host: u32) -> usize {
        let bits = self.buckets.len().trailing_zeros();
        let h = (u64::from(host) ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - bits)) as usize
    }

    fn get(&self, host: u32) -> Option<Slot> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.buckets.len() - 1;
        let mut i = self.home(host);
        loop {
            let (key, slot) = self.buckets[i];
            if slot == EMPTY {
                return None;
            }
            if key == host {
                return Some(slot);
            }
            i = (i + 1) & mask;
        }
    }

    fn insert(&mut self, host: u32, slot: Slot) -> Option<Slot> {
        // At most 7/8 full, so every probe ends at an empty bucket.
        if (self.len + 1) * 8 > self.buckets.len() * 7 {
            self.grow();
        }
        let mask = self.buckets.len() - 1;
        let mut i = self.home(host);
        loop {
            let (key, held) = self.buckets[i];
            if held == EMPTY {
                self.buckets[i] = (host, slot);
                self.len += 1;
                return None;
            }
            if key == host {
                self.buckets[i].1 = slot;
                return Some(held);
            }
            i = (i + 1) & mask;
        }
    }

    fn remove(&mut self, host: u32) -> Option<Slot> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.buckets.len() - 1;
        let mut i = self.home(host);
        let removed = loop {
            let (key, slot) = self.buckets[i];
            if slot == EMPTY {
                return None;
            }
            if key == host {
                break slot;
            }
            i = (i + 1) & mask;
        };
        // Backward-shift deletion: move later members of the run into the hole when
        // their home is not between the hole and where they sit.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let (key, slot) = self.buckets[j];
            if slot == EMPTY {
                break;
            }
            let home = self.home(key);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.buckets[hole] = (key, slot);
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.buckets[hole] = (0, EMPTY);
        self.len -= 1;
        Some(removed)
    }

    fn grow(&mut self) {
        let size = (self.buckets.len() * 2).max(16);
        let old = std::mem::replace(&mut self.buckets, vec![(0, EMPTY); size]);
        self.len = 0;
        for (key, slot) in old {
            if slot != EMPTY {
                self.insert(key, slot);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

/// The slab of entries.
#[derive(Debug, Default)]
pub(super) struct Slab {
    slots: Vec<Option<Entry>>,
    free: Vec<Slot>,
    len: usize,
}

impl Slab {
    pub(super) fn insert(&mut self, entry: Entry) -> Slot {
        self.len += 1;
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(entry);
                slot
            }
            None => {
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Some(entry));
                slot
            }
        }
    }

    pub(super) fn remove(&mut self, slot: Slot) -> Option<Entry> {
        let entry = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        self.len -= 1;
        Some(entry)
    }

    pub(super) fn get(&self, slot: Slot) -> Option<&Entry> {
        self.slots.get(slot as usize)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, slot: Slot) -> Option<&mut Entry> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (Slot, &Entry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| e.as_ref().map(|e| (slot as Slot, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test;

    #[test]
    fn an_entry_is_64_bytes() {
        // Workload 4's budget is 128 bytes a grant, index and deadline included.
        assert!(std::mem::size_of::<Option<Entry>>() <= 64);
    }

    #[test]
    fn the_host_map_finds_what_it_holds_through_growth_and_deletion() {
        let mut map = HostMap::default();
        let mut model = HashMap::new();
        // A deterministic mix of inserts, replacements and removals, dense enough to
        // make long probe runs and wrap around the end of the array.
        let mut x: u32 = 12345;
        for step in 0..20_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let host = x % 3000;
            if step % 3 == 2 {
                assert_eq!(map.remove(host), model.remove(&host), "remove {host}");
            } else {
                assert_eq!(
                    map.insert(host, step),
                    model.insert(host, step),
                    "insert {host}"
                );
            }
            assert_eq!(map.len(), model.len());
        }
        for host in 0..3000 {
            assert_eq!(map.get(host), model.get(&host).copied(), "get {host}");
        }
    }

    #[test]
    fn names_are_shared_and_freed_with_the_last_reference() {
        let mut names = Names::default();
        let a = names.acquire("alice");
        let b = names.acquire("alice");
        assert_eq!(a, b);
        assert_eq!(names.get(a), "alice");
        names.release(a);
        assert_eq!(names.get(b), "alice");
        names.release(b);
        assert_eq!(names.get(b), "");
        // The freed id is reused for the next new name.
        let c = names.acquire("carol");
        assert_eq!(c, a);
        assert_eq!(names.get(c), "carol");
    }
}
